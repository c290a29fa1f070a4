"""Honest cost of attention: parameters, counted FLOPs, the elementwise work and memory traffic FLOP
counters miss, latency measured side by side, and peak training memory.

    >>> import excite
    >>> table = excite.profile("resnet50", (1, 3, 224, 224), attentions=["se", "eca", "simam"])
    >>> print(table)                       # or rich.print(table)
    >>> table.to_csv("r50.csv"); table.plot("r50.png")
    >>> excite.profiling.measure(model, (8, 3, 224, 224))   # one model, a dict (the study's contract)

The command line: ``excite profile resnet50 --attention all``.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Union

from torch import nn

from .costs import ModuleCost, PassModel, attention_costs, attention_modules, pass_model
from .measure import MEASURE_KEYS, Arm, count_flops, measure, peak_train_bytes, run_interleaved
from .table import BASELINE, COLUMNS, ProfileTable, add_overheads
from .traffic import TrafficCounter

ModelSpec = Union[str, nn.Module]


def profile(
    model_or_name: ModelSpec,
    input_size: Sequence[int],
    *,
    attentions: Union[str, Sequence[str]] = "all",
    device: Any = "cpu",
    warmup: int = 1,
    repeats: int = 3,
    attention_options: Mapping[str, Mapping[str, Any]] | None = None,
    presets: bool = True,
    progress: bool = True,
) -> ProfileTable:
    """Profile a model without attention and with each attention, measured side by side.

    Args:
        model_or_name: the name of an :mod:`excite.models` builder (``"resnet50"``, ``"mobilenet_v2"``;
            each arm is built by ``builder(attention=name, ...)`` so every module sits at its paper's
            placement), ``"torchvision:NAME"`` or ``"timm:NAME"`` (a peer model, randomly initialised,
            with :func:`excite.attach`), or an ``nn.Module`` (copied per arm, then ``attach``).
        input_size: the full input shape ``(N, C, *spatial)``, e.g. ``(1, 3, 224, 224)``; excite
            builders are also told the spatial size, which sets FcaNet's DCT grid and RGSE's window.
        attentions: names from :func:`excite.available`, or ``"all"``.
        device: ``"cpu"`` or a CUDA device.
        warmup, repeats: untimed steps per arm, then timed rounds over all arms.
        attention_options: per-attention options, e.g. ``{"se": {"reduction": 8}}``.
        presets: for an excite model, use the official preset ``<attention>_<model>`` (e.g.
            ``eca_resnet50``, ECA's hand-set k = 3,5,5,7) when it exists *and* has the same backbone
            as the plain model (same convolutions and pooling, so FLOP differences are the attention's);
            otherwise the builder with ``attention=``.
        progress: show a progress bar (tqdm) on stderr.

    Returns:
        A :class:`ProfileTable`: row ``"none"`` first, then one row per attention, with the keys of
        :func:`measure` plus overheads relative to ``"none"`` (see :data:`COLUMNS`). Arms that cannot be
        built at this size (RGSE's window, SimAM on a 1x1 map) are listed in ``table.skipped``.

    Latency is the median over ``repeats`` rounds that visit every arm in turn (alternating
    direction), after ``warmup`` steps each, so drift and order effects fall on every arm alike. On a
    shared CPU the absolute numbers are noisy; compare arms within one table.

    Raises:
        ValueError: an unknown model or attention name, a bad ``input_size``.
    """
    from .._registry import available, lookup
    from .measure import check_input_size, resolve_device

    size = check_input_size(input_size, "profile")
    resolved = resolve_device(device)
    names = (
        list(available())
        if attentions == "all"
        else ([attentions] if isinstance(attentions, str) else list(attentions))
    )
    for name in names:
        lookup(name)
    options = {k: dict(v) for k, v in (attention_options or {}).items()}
    label, builders = _builders(model_or_name, names, size, options, presets)

    bar = _progress_bar(
        progress, total=2 * len(builders) + repeats * len(builders), description=f"profile {label}"
    )
    arms: list[tuple[str, Arm, str]] = []
    skipped: list[tuple[str, str]] = []
    try:
        for attention, build in builders:
            try:
                model, note = build()
                arm = Arm(model, size, resolved)
                arm.count()
                arms.append((attention, arm, note))
            except (ValueError, RuntimeError) as error:
                if attention == BASELINE:
                    raise
                skipped.append((attention, f"{type(error).__name__}: {error}"))
            _advance(bar, f"count {attention}")
        run_interleaved([arm for _, arm, _ in arms], warmup, repeats, lambda text: _advance(bar, text))
    finally:
        if bar is not None:
            bar.close()
    rows: list[dict[str, Any]] = []
    for attention, arm, note in arms:
        row = arm.result()
        row.update(
            model=label,
            attention=attention,
            input_size=list(size),
            device=str(resolved),
            repeats=repeats,
            note=note,
        )
        rows.append(row)
    add_overheads(rows)
    title = f"{label} at {list(size)}: the cost of each attention"
    return ProfileTable(rows, skipped, title)


Builder = Callable[[], tuple[nn.Module, str]]


def _builders(
    model_or_name: ModelSpec,
    names: Sequence[str],
    size: tuple[int, ...],
    options: dict[str, dict[str, Any]],
    presets: bool,
) -> tuple[str, list[tuple[str, Builder]]]:
    """The label of the model and one builder per arm (``"none"`` first)."""
    from ..surgery import attach

    if isinstance(model_or_name, nn.Module):
        template = model_or_name
        label = type(template).__name__

        def copy_of() -> nn.Module:
            return copy.deepcopy(template)

        return label, _attach_builders(copy_of, names, size, options, attach)
    if not isinstance(model_or_name, str):
        raise ValueError(
            f"profile: model_or_name must be a name or an nn.Module, got {type(model_or_name).__name__}"
        )
    if ":" in model_or_name:
        source, name = model_or_name.split(":", 1)
        return model_or_name, _attach_builders(_peer_factory(source, name), names, size, options, attach)
    return model_or_name, _excite_builders(model_or_name, names, size, options, presets)


def _attach_builders(
    factory: Callable[[], nn.Module],
    names: Sequence[str],
    size: tuple[int, ...],
    options: dict[str, dict[str, Any]],
    attach: Callable[..., Any],
) -> list[tuple[str, Builder]]:
    builders: list[tuple[str, Builder]] = [(BASELINE, lambda: (factory(), ""))]
    for name in names:

        def build(name: str = name) -> tuple[nn.Module, str]:
            model = factory()
            report = attach(model, name, input_size=(1,) + size[1:], **options.get(name, {}))
            return model, f"attach: {len(report)} sites"

        builders.append((name, build))
    return builders


def _peer_factory(source: str, name: str) -> Callable[[], nn.Module]:
    if source == "torchvision":
        import torchvision

        return lambda: torchvision.models.get_model(name, weights=None)
    if source == "timm":
        import timm

        return lambda: timm.create_model(name, pretrained=False)
    raise ValueError(
        f"profile: unknown model source {source!r}; use 'torchvision:NAME', 'timm:NAME' "
        f"or an excite model name"
    )


def _excite_builders(
    name: str, names: Sequence[str], size: tuple[int, ...], options: dict[str, dict[str, Any]], presets: bool
) -> list[tuple[str, Builder]]:
    from .. import models

    builder = getattr(models, name, None)
    if builder is None or not callable(builder) or name.startswith("_"):
        known = sorted(
            n for n in dir(models) if not n.startswith("_") and callable(getattr(models, n)) and n.islower()
        )
        raise ValueError(f"profile: no excite model named {name!r}; excite.models has {known}")
    common = _size_arguments(builder, size)
    builders: list[tuple[str, Builder]] = [(BASELINE, lambda: (builder(**common), ""))]
    baseline_signature: list[Any] = []

    def signature_of_baseline() -> list[Any]:
        if not baseline_signature:
            baseline_signature.append(backbone_signature(builder(**common)))
        return baseline_signature[0]

    for attention in names:

        def build(attention: str = attention) -> tuple[nn.Module, str]:
            preset = getattr(models, f"{attention}_{name}", None)
            given = options.get(attention, {})
            if presets and preset is not None and not given:
                model = preset(**_size_arguments(preset, size))
                if backbone_signature(model) == signature_of_baseline():
                    return model, f"preset {attention}_{name}"
            model = builder(attention=attention, attention_options=given, **common)
            return model, f"{name}(attention={attention!r})"

        builders.append((attention, build))
    return builders


def _size_arguments(builder: Callable[..., nn.Module], size: tuple[int, ...]) -> dict[str, Any]:
    """``in_channels`` and ``input_size`` for builders that take them (via ``**kwargs`` too)."""
    try:
        parameters = inspect.signature(builder).parameters
    except (TypeError, ValueError):
        return {}
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    arguments: dict[str, Any] = {}
    if takes_any or "in_channels" in parameters:
        arguments["in_channels"] = size[1]
    if takes_any or "input_size" in parameters:
        arguments["input_size"] = tuple(size[2:])
    return arguments


def backbone_signature(model: nn.Module) -> list[tuple[Any, ...]]:
    """The convolutions, linear layers and poolings outside the attention modules, in order: two models
    with the same signature differ only in their attention."""
    inside = {id(m) for _, a in attention_modules(model) for m in a.modules()}
    signature: list[tuple[Any, ...]] = []
    for module in model.modules():
        if id(module) in inside:
            continue
        if isinstance(module, nn.modules.conv._ConvNd):
            signature.append(
                (
                    type(module).__name__,
                    tuple(module.weight.shape),
                    module.stride,
                    module.padding,
                    module.dilation,
                    module.groups,
                )
            )
        elif isinstance(module, nn.Linear):
            signature.append(("Linear", tuple(module.weight.shape)))
        elif isinstance(module, (nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AvgPoolNd)):
            signature.append(
                (
                    type(module).__name__,
                    module.kernel_size,
                    module.stride,
                    module.padding,
                    getattr(module, "ceil_mode", False),
                )
            )
    return signature


def _progress_bar(enabled: bool, total: int, description: str) -> Any:
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc=description, leave=False, dynamic_ncols=True)


def _advance(bar: Any, text: str) -> None:
    if bar is not None:
        bar.set_postfix_str(text, refresh=False)
        bar.update(1)


__all__ = [
    "COLUMNS",
    "MEASURE_KEYS",
    "ModuleCost",
    "PassModel",
    "ProfileTable",
    "TrafficCounter",
    "attention_costs",
    "backbone_signature",
    "count_flops",
    "measure",
    "pass_model",
    "peak_train_bytes",
    "profile",
]
