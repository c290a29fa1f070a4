"""``excite.attach``: insert an attention module at the documented point of every recognised block."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from typing import Any, Union

from torch import nn

from ._install import (
    AttentionSpec,
    attention_name,
    build_attention,
    check_attention,
    describe,
    dry_run,
    install,
    match_model,
    needs_feature_size,
    split_path,
    state_keys,
)
from .identity import identity_init
from .report import SurgeryPoint, SurgeryReport
from .sites import PLACEMENTS, Site, conv_dim, default_placement, find_sites, label

Where = Union[str, Sequence[str], Callable[[str, nn.Module], bool]]
INITS = ("default", "identity")


def attach(
    model: nn.Module,
    attention: AttentionSpec,
    *,
    where: Where = "auto",
    init: str = "default",
    placement: str | None = None,
    input_size: Sequence[int] | None = None,
    **options: Any,
) -> SurgeryReport:
    """Insert ``attention`` into ``model`` in place, at the paper's point of every block it recognises.

        >>> model = torchvision.models.resnet50()
        >>> report = excite.attach(model, "se", init="identity")
        >>> print(report)                      # every insertion point and its new keys
        >>> report.load_pretrained(torchvision.models.resnet50(weights="DEFAULT").state_dict())

    Recognised blocks and placements are listed in :mod:`excite.surgery.sites`: torchvision ResNet
    (Bottleneck after bn3, BasicBlock after bn2, before the add; SimAM after conv2, before bn2),
    MobileNetV2/V3 and EfficientNet (SE-like and CA after the depthwise conv on the expanded width, only
    in expanding blocks; ECA after the pw-linear BN; SimAM after the depthwise conv, before its BN),
    ConvNeXt, timm ResNets (the ``se`` slot) and efficientnet-family blocks, MONAI's ResNet and UNet, and
    excite's own networks (their empty ``attention`` slots). A slot that already holds a module (timm
    EfficientNet's SE) gets the new module right after it.

    No existing parameter or buffer is renamed: a new module is an empty slot's new content, or a child
    named ``attention`` of the module it follows (appended when that is a ``Sequential``, applied by a
    forward hook otherwise; e.g. ``layer1.0.bn3.attention.fc1.weight``). Hence a checkpoint of the
    original model loads with exactly the report's :attr:`~SurgeryReport.new_keys` missing. Forward
    hooks are not seen by ``torch.fx`` symbolic tracing or TorchScript; eager, ``torch.compile``,
    ``torch.export`` and ``torch.save``/``deepcopy`` of the whole model keep them.

    Args:
        model: the network, modified in place.
        attention: a name from :func:`excite.available`, a module class, or a factory
            ``(channels, dim=..., **options) -> nn.Module``. Names and registered classes get the
            per-site options a reference network would choose unless ``options`` sets them: FcaNet's
            ``dct_size`` = the feature-map size at the site (56/28/14/7 in a ResNet at 224, the official
            ``c2wh``) with fewer frequencies where C is not divisible by 16, RGSE's window and fusion
            kernel. ECA uses the adaptive k = ψ(C) unless ``kernel_size`` is given (ResNet-50: 5,5,5,7,
            86 parameters; the official release hand-set 3,5,5,7, which :mod:`excite.models` presets
            reproduce).
        where: ``"auto"`` (recognised blocks), a list of module names to insert after, or a predicate
            ``(name, module) -> bool`` choosing such modules. A named ``nn.Identity`` is replaced (a
            slot). Channels and sizes at named modules come from a dry run.
        init: ``"default"`` (the module's own initialisation) or ``"identity"`` (the model's output is
            unchanged until training; see :mod:`excite.surgery.identity` for which module gets a gate-sum
            start and which a zero-initialised residual scale).
        placement: override the paper's placement: ``"residual"``, ``"hidden"`` or ``"conv"`` (see
            :mod:`excite.surgery.sites`); None picks per attention and block type.
        input_size: shape ``(N, C, *spatial)`` of the dry-run input used when the structure does not
            give channels or when FcaNet/RGSE need feature-map sizes; default ``(1, C_in, 224, 224)``
            (3-D: 64 per axis). The dry run is in eval mode without gradients and leaves BN statistics
            alone.
        **options: passed to every module (e.g. ``reduction=8``).

    Returns:
        A :class:`SurgeryReport` (print it; ``new_keys``, ``new_parameters``, ``load_pretrained``).

    Raises:
        ValueError: an unrecognised architecture with ``where="auto"`` (the message names the block types
            it saw), unknown module names in ``where``, an unknown attention or option, a module that
            changes the channel count, a failed dry run.
    """
    owner = "attach"
    check_attention(attention, owner)
    if init not in INITS:
        raise ValueError(f"{owner}: init must be one of {INITS}, got {init!r}")
    if placement is not None and placement not in PLACEMENTS:
        raise ValueError(f"{owner}: placement must be one of {PLACEMENTS} or None, got {placement!r}")
    name = attention_name(attention)
    skipped: list[tuple[str, str]] = []
    if isinstance(where, str) and where == "auto":
        sites, skipped = find_sites(model, default_placement(name), placement, name)
        description = ""
    else:
        sites = _named_sites(model, where, owner)
        description = "sites chosen by where="
    if not sites:
        raise ValueError(f"{owner}: no insertion point found; skipped: {skipped}")

    needs_size = needs_feature_size(attention)
    probes = [s.probe for s in sites if s.probe and (needs_size or s.channels is None or s.dim is None)]
    shapes = dry_run(model, probes, input_size, owner) if probes else {}

    keys_before = set(state_keys(model))
    params_before = {n for n, _ in model.named_parameters()}
    points: list[SurgeryPoint] = []
    for site in sites:
        shape = shapes.get(site.probe or "")
        channels, dim, spatial = site.channels, site.dim, None
        if shape is not None:
            channels, dim, spatial = int(shape[1]), len(shape) - 2, tuple(int(s) for s in shape[2:])
        if channels is None or dim is None:
            raise ValueError(
                f"{owner}: could not tell the channels at {site.target!r}; pass input_size=(N, C, ...)"
            )
        module = build_attention(attention, channels, dim, spatial, options, owner)
        identity = ""
        if init == "identity":
            module, identity = identity_init(module)
        match_model(module, model)
        path, mechanism = install(model, site.target, site.mechanism, module)
        new_parameters = [join_key(path, n) for n, _ in module.named_parameters()]
        new_keys = [join_key(path, k) for k in module.state_dict().keys()]
        points.append(
            SurgeryPoint(
                path=path,
                after=site.target,
                block=site.block,
                block_type=site.block_type,
                mechanism=mechanism,
                module_type=describe(module),
                channels=channels,
                spatial_size=spatial,
                identity=identity,
                new_parameters=[n for n in new_parameters if n not in params_before],
                new_keys=[k for k in new_keys if k not in keys_before],
                parameter_count=sum(p.numel() for p in module.parameters()),
            )
        )
    return SurgeryReport("attach", model, points, skipped, description)


def join_key(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _named_sites(model: nn.Module, where: Where, owner: str) -> list[Site]:
    modules = dict(model.named_modules())
    if callable(where):
        names = [n for n, m in modules.items() if n and where(n, m)]
        if not names:
            raise ValueError(f"{owner}: the where= predicate selected no module")
    elif isinstance(where, str):
        raise ValueError(
            f"{owner}: where must be 'auto', a list of module names or a predicate, got {where!r}"
        )
    else:
        names = list(where)
    sites = []
    for path in names:
        if path not in modules:
            parent_path, leaf = split_path(path)
            parent = modules.get(parent_path)
            if parent is not None and hasattr(parent, leaf) and getattr(parent, leaf) is None:
                raise ValueError(
                    f"{owner}: {path!r} is an empty (None) slot, whose width a dry run cannot see; "
                    f"name the module "
                    f"before it, or use where='auto'"
                )
            close = difflib.get_close_matches(path, list(modules), n=3)
            raise ValueError(
                f"{owner}: no module named {path!r} in {type(model).__name__}; close names: {close}"
            )
        module = modules[path]
        mechanism = "slot" if type(module) is nn.Identity else "after"
        sites.append(Site("", label(module), path, mechanism, None, conv_dim(module), path))
    return sites
