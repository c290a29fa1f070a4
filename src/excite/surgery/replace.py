"""``excite.replace``: swap a network's existing SE-like modules for another family."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Sequence
from typing import Any, Union

from torch import nn

from ._install import (
    AttentionSpec,
    build_attention,
    check_attention,
    describe,
    dry_run,
    match_model,
    needs_feature_size,
    split_path,
)
from .identity import identity_init
from .report import SurgeryPoint, SurgeryReport
from .sites import label

# Peer classes by family, imported lazily (each package is optional). timm's ``SqueezeExcite`` is the
# EfficientNet/MobileNetV3 flavour, ``SEModule`` the ResNet one; torchvision's ``SqueezeExcitation``
# serves MobileNetV3, EfficientNet and RegNet.
PEER_FAMILIES: dict[str, list[tuple[str, str]]] = {
    "se": [
        ("timm.layers.squeeze_excite", "SEModule"),
        ("timm.models._efficientnet_blocks", "SqueezeExcite"),
        ("timm.models.senet", "SEModule"),
        ("torchvision.ops.misc", "SqueezeExcitation"),
    ],
    "ese": [("timm.layers.squeeze_excite", "EffectiveSEModule")],
    "eca": [("timm.layers.eca", "EcaModule"), ("timm.layers.eca", "CecaModule")],
    "cbam": [("timm.layers.cbam", "CbamModule"), ("timm.layers.cbam", "LightCbamModule")],
    "coord": [("timm.layers.coord_attn", "CoordAttn")],
    "cse": [("monai.networks.blocks.squeeze_and_excitation", "ChannelSELayer")],
    "scse": [("segmentation_models_pytorch.base.modules", "SCSEModule")],
}

Old = Union[str, type, tuple[type, ...], Callable[[str, nn.Module], bool]]


def _peer_classes_from(locations: Sequence[tuple[str, str]]) -> tuple[type, ...]:
    """The classes at ``(module, class name)`` locations whose package is already imported: a model
    cannot hold an instance of a class from a package nobody imported, and importing MONAI or smp just
    to look would cost seconds."""
    found = []
    for module_name, class_name in locations:
        if module_name.split(".")[0] not in sys.modules:
            continue
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        cls = getattr(module, class_name, None)
        if isinstance(cls, type):
            found.append(cls)
    return tuple(found)


def _peer_classes(family: str) -> tuple[type, ...]:
    return _peer_classes_from(PEER_FAMILIES.get(family, []))


_PEER_CACHE: dict = {}


def all_peer_classes() -> tuple[type, ...]:
    """Every peer SE-family class in :data:`PEER_FAMILIES` whose package is imported (cached per set of
    imported packages: the profiler asks once per module of a network)."""
    locations = [location for family in PEER_FAMILIES.values() for location in family]
    key = tuple(sorted({m.split(".")[0] for m, _ in locations if m.split(".")[0] in sys.modules}))
    if key not in _PEER_CACHE:
        _PEER_CACHE[key] = _peer_classes_from(locations)
    return _PEER_CACHE[key]


def family_matcher(old: Old, owner: str) -> Callable[[str, nn.Module], bool]:
    """A predicate ``(name, module) -> bool`` for ``old``.

    * a family name (``"se"``, ``"eca"``, ``"cbam"``, ``"coord"``, ``"cse"``, ``"scse"``, ``"ese"``, or any
      name in :func:`excite.available`): the excite module registered under it (exact class, so ``"se"``
      does not take cSE) and the peer classes of that family (timm, torchvision, MONAI, smp);
    * ``"any"``: every family above;
    * a class or a tuple of classes (``isinstance``);
    * a predicate.
    """
    from .._registry import available

    if isinstance(old, str):
        names = sorted(set(available()) | set(PEER_FAMILIES)) if old == "any" else [old]
        unknown = [n for n in names if n not in PEER_FAMILIES and n not in available()]
        if unknown:
            raise ValueError(
                f"{owner}: unknown module family {old!r}; use 'any', "
                f"one of {sorted(set(available()) | set(PEER_FAMILIES))}, "
                f"a class or a predicate"
            )
        peers = tuple(cls for n in names for cls in _peer_classes(n))
        excite_names = set(names)

        def matches(name: str, module: nn.Module) -> bool:
            return getattr(type(module), "registry_name", None) in excite_names or isinstance(module, peers)

        return matches
    if isinstance(old, type) or (isinstance(old, tuple) and all(isinstance(t, type) for t in old)):
        classes = old

        def matches_class(name: str, module: nn.Module) -> bool:
            return isinstance(module, classes)

        return matches_class
    if callable(old):
        return old
    raise ValueError(
        f"{owner}: old must be a family name, a class, a tuple of classes or a predicate, got {old!r}"
    )


def input_channels(module: nn.Module) -> int | None:
    """The channel count an SE-like module takes, read from its layers (None when they do not say)."""
    declared = getattr(module, "channels", None)
    if isinstance(declared, int):
        return declared
    for attribute in ("fc1", "conv_reduce", "fc", "conv"):
        layer = getattr(module, attribute, None)
        if isinstance(layer, nn.Sequential) and len(layer) > 0:
            layer = layer[0]
        # ECA's Conv1d runs across channels and says nothing about C.
        if isinstance(layer, (nn.Conv2d, nn.Conv3d)):
            return layer.in_channels
        if isinstance(layer, nn.Linear):
            return layer.in_features
    return None


_POOL_DIMS = (
    (nn.AdaptiveAvgPool1d, 1),
    (nn.AdaptiveAvgPool2d, 2),
    (nn.AdaptiveAvgPool3d, 3),
    (nn.Conv2d, 2),
    (nn.Conv3d, 3),
)


def input_dim(module: nn.Module) -> int | None:
    """Spatial dimensions an SE-like module works on: excite's ``dim``, else its pooling or 2-D/3-D conv."""
    declared = getattr(module, "dim", None)
    if isinstance(declared, int):
        return declared
    for m in module.modules():
        for kind, dim in _POOL_DIMS:
            if isinstance(m, kind):
                return dim
    return None


def replace(
    model: nn.Module,
    old: Old,
    new: AttentionSpec,
    *,
    init: str = "default",
    input_size: Sequence[int] | None = None,
    **options: Any,
) -> SurgeryReport:
    """Swap every module matching ``old`` for a ``new`` one of the same width, in place.

        >>> model = timm.create_model("seresnet50")
        >>> excite.replace(model, "se", "eca")     # ECA-ResNet-50 (timm's k rule: 5, 5, 5, 7)
        >>> excite.replace(model, "eca", "fca")    # FcaNet-50: DCT grid 56/28/14/7 from a dry run at 224

    The new module sits at the old one's path (``layer1.0.se`` stays ``layer1.0.se``), so the forward
    code that called the old module calls the new one. The report lists the keys that disappeared and
    the new ones; :meth:`SurgeryReport.load_pretrained` loads a checkpoint of the model before the swap
    with exactly those keys unexpected and missing.

    Args:
        model: the network, modified in place.
        old: what to replace: a family name (``"se"`` matches excite SE, timm ``SEModule`` /
            ``SqueezeExcite``, torchvision ``SqueezeExcitation`` in MobileNetV3, EfficientNet and
            RegNet; ``"eca"`` excite ECA and timm ``EcaModule``/``CecaModule``; any excite name; see
            :func:`family_matcher`), ``"any"``, a class, a tuple of classes, or a predicate
            ``(name, module) -> bool``.
        new: a name, a class or a factory ``(channels, dim=..., **options) -> nn.Module``, as in
            :func:`excite.attach`; names get the same per-site options (FcaNet's DCT grid, RGSE's window).
        init: ``"default"`` or ``"identity"`` (the new module starts as the identity: the network then
            computes what it would compute *without* the old module).
        input_size: ``(N, C, *spatial)`` for the dry run that measures channels and feature sizes where
            the old module does not expose its width (timm ``EcaModule``) and for FcaNet/RGSE;
            default ``(1, C_in, 224, 224)``.
        **options: passed to every new module.

    Raises:
        ValueError: nothing matches ``old`` (the message lists the module types seen), an unknown
            family or attention, a failed dry run.
    """
    owner = "replace"
    check_attention(new, owner)
    if init not in ("default", "identity"):
        raise ValueError(f"{owner}: init must be 'default' or 'identity', got {init!r}")
    matches = family_matcher(old, owner)
    targets: list[tuple[str, nn.Module]] = []
    inside_match: list[str] = []
    for name, module in model.named_modules():
        if not name or any(name.startswith(prefix + ".") for prefix in inside_match):
            continue
        if matches(name, module):
            targets.append((name, module))
            inside_match.append(name)
    if not targets:
        from .sites import describe_types

        kinds = sorted({type(m).__name__ for m in model.modules()})
        raise ValueError(
            f"{owner}: nothing in {type(model).__name__} matches {old!r}; its containers are "
            f"{describe_types(model)}; module types: {', '.join(kinds[:30])}"
        )

    needs_size = needs_feature_size(new)
    probe_inputs = [n for n, m in targets if needs_size or input_channels(m) is None or input_dim(m) is None]
    shapes = _input_shapes(model, probe_inputs, input_size, owner) if probe_inputs else {}

    points: list[SurgeryPoint] = []
    for path, old_module in targets:
        shape = shapes.get(path)
        channels, dim, spatial = input_channels(old_module), input_dim(old_module), None
        if shape is not None:
            channels, dim, spatial = int(shape[1]), len(shape) - 2, tuple(int(s) for s in shape[2:])
        if channels is None or dim is None:
            raise ValueError(f"{owner}: could not tell the channels of {path!r}; pass input_size=(N, C, ...)")
        module = build_attention(new, channels, dim, spatial, options, owner)
        identity = ""
        if init == "identity":
            module, identity = identity_init(module)
        match_model(module, model)
        removed = [f"{path}.{k}" for k in old_module.state_dict().keys()]
        parent_path, leaf = split_path(path)
        setattr(model.get_submodule(parent_path), leaf, module)
        points.append(
            SurgeryPoint(
                path=path,
                after=path,
                block="",
                block_type=label(model.get_submodule(parent_path)),
                mechanism="swap",
                module_type=describe(module),
                channels=channels,
                spatial_size=spatial,
                identity=identity,
                new_parameters=[f"{path}.{n}" for n, _ in module.named_parameters()],
                new_keys=[f"{path}.{k}" for k in module.state_dict().keys()],
                removed_keys=removed,
                replaced_type=type(old_module).__name__,
                parameter_count=sum(p.numel() for p in module.parameters())
                - sum(p.numel() for p in old_module.parameters()),
            )
        )
    return SurgeryReport("replace", model, points)


def _input_shapes(
    model: nn.Module, paths: Sequence[str], input_size: Sequence[int] | None, owner: str
) -> dict:
    """Input shapes of the modules at ``paths`` in one dry run (their output has the same shape)."""
    return dry_run(model, paths, input_size, owner)
