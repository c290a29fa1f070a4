"""Where attention goes in the blocks :func:`excite.attach` recognises.

A *site* is a point in a block where an attention module is inserted: after a named module, or in an
empty attribute slot (timm's ``se``, excite's ``attention``). Three placements exist, with the same
meaning as in :mod:`excite.models`:

* ``"residual"``: after the last norm of the residual branch, before the sum with the shortcut (SE,
  ECA, FcaNet, SPSE, RGSE, CBAM, cSE/sSE/scSE in ResNets; ECA in inverted residuals, after the pw-linear
  BN, as in ECA-MobileNetV2);
* ``"hidden"``: on the expanded width, after the depthwise convolution with its norm and activation
  (Coordinate Attention's ``mbv2_ca.py``, and SE-like modules in MobileNetV2/EfficientNet blocks), only in
  blocks that expand (expand ratio != 1, the CA rule). In a ResNet block: after the 3x3 conv's BN
  (bn2 of a Bottleneck, bn1 of a BasicBlock), before the ReLU, because the ReLU module is shared;
* ``"conv"``: right after the spatial (3x3 or depthwise) convolution, before its norm (SimAM, in every
  block, as in the official SimAM ResNets and MobileNetV2).

Block patterns are structural (attribute names and layer layout), so any model whose blocks follow
them is recognised, not only the listed classes:

=====================================  =============================================================
pattern                                matches
=====================================  =============================================================
ResNet basic/bottleneck                ``conv1, bn1, conv2, bn2[, conv3, bn3]`` and ``downsample``:
                                       torchvision, timm (fills the ``se`` slot), MONAI ``ResNetBlock``
                                       / ``ResNetBottleneck``, excite ResNets (fill ``attention``)
torchvision inverted residual          ``InvertedResidual`` (MobileNetV2 ``conv``, MobileNetV3
                                       ``block``), ``MBConv``, ``FusedMBConv`` (EfficientNet V1/V2)
timm efficientnet blocks               ``InvertedResidual``, ``DepthwiseSeparableConv``,
                                       ``EdgeResidual`` (timm MobileNetV2/V3, EfficientNet, MixNet...)
torchvision ConvNeXt                   ``CNBlock``: after the block's last layer, before layer scale
MONAI UNet (whole model)               after every encoder block, the bottom block and every decoder
                                       block except the last (which outputs the segmentation)
excite networks (whole model)          their empty ``attention`` slots, at the placement their own
                                       builder picks for the name (``attach(net, "se")`` builds what
                                       ``net(attention="se")`` builds)
=====================================  =============================================================

In inverted residuals (torchvision/timm MobileNetV2 and EfficientNet blocks, and
:class:`excite.models.MobileNetV2`) SE-like modules go on the hidden width after the depthwise conv, where
MobileNetV3 and EfficientNet have their SE and where CA goes; ECA goes after the pw-linear BN. The SimAM
release put its SE/CBAM comparators at the residual site instead: pass ``placement="residual"`` for that.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from torch import nn

PLACEMENTS = ("residual", "hidden", "conv")

_CONV_DIMS = (
    (nn.Conv1d, 1),
    (nn.Conv2d, 2),
    (nn.Conv3d, 3),
    (nn.ConvTranspose1d, 1),
    (nn.ConvTranspose2d, 2),
    (nn.ConvTranspose3d, 3),
)
_CONVS = tuple(t for t, _ in _CONV_DIMS)
_NORMS_WITH_FEATURES = (nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm)


@dataclass
class Site:
    """One insertion point, with absolute module paths.

    ``mechanism`` is ``"slot"`` (``target`` is an attribute holding None or ``nn.Identity``),
    ``"insert"`` (a new named child of the Sequential holding ``target``, right after it) or
    ``"after"`` (insert after the module at ``target``). ``probe`` is a module whose output has the
    shape the attention sees, for the dry run; ``channels``/``dim`` are None when the structure does
    not tell.
    """

    block: str
    block_type: str
    target: str
    mechanism: str
    channels: int | None
    dim: int | None
    probe: str | None


BlockResult = tuple[str, list[Site], list[tuple[str, str]]]


def join(*parts: str) -> str:
    return ".".join(p for p in parts if p)


def default_placement(attention_name: str | None) -> str:
    """The paper's placement family for an attention name: SimAM at the conv, ECA after the last norm of
    the branch in every block type, everything else (SE-like, CA, CBAM, unknown callables) at the
    residual site in ResNets and on the hidden width in inverted residuals."""
    if attention_name == "simam":
        return "conv"
    if attention_name == "eca":
        return "eca"
    return "channel"


def conv_dim(module: nn.Module) -> int | None:
    """Spatial dimensions of the first convolution inside ``module``."""
    for m in module.modules():
        for kind, dim in _CONV_DIMS:
            if isinstance(m, kind):
                return dim
    return None


def out_channels(module: nn.Module | None) -> int | None:
    """The channel count a module returns, read from its structure (None when it does not say)."""
    if module is None:
        return None
    if isinstance(module, _CONVS):
        return module.out_channels
    if isinstance(module, _NORMS_WITH_FEATURES):
        return module.num_features
    if isinstance(module, nn.GroupNorm):
        return module.num_channels
    if isinstance(module, nn.Linear):
        return module.out_features
    declared = getattr(module, "out_channels", None)
    if isinstance(declared, int):
        return declared
    if isinstance(module, nn.Sequential):
        for child in reversed(list(module.children())):
            found = out_channels(child)
            if found is not None:
                return found
    return None


def label(module: nn.Module) -> str:
    """``"torchvision Bottleneck"``: the top-level package and the class name."""
    package = type(module).__module__.split(".")[0]
    return f"{package} {type(module).__name__}"


def is_empty_slot(value: object) -> bool:
    return value is None or type(value) is nn.Identity


def _has_modules(module: nn.Module, names: Iterable[str]) -> bool:
    return all(isinstance(getattr(module, name, None), nn.Module) for name in names)


def _kernel_is_spatial(conv: nn.Module) -> bool:
    return isinstance(conv, _CONVS) and any(k > 1 for k in conv.kernel_size)


# -------------------------------------------------------------------------------------------------------
# Block patterns: (path, module, placement family, user placement) -> (block type, sites, skipped) or None


def _resnet(path: str, block: nn.Module, family: str, placement: str | None) -> BlockResult | None:
    if not _has_modules(block, ("conv1", "bn1", "conv2", "bn2")) or not hasattr(block, "downsample"):
        return None
    bottleneck = _has_modules(block, ("conv3", "bn3"))
    dim = conv_dim(block)
    kind = placement or ("conv" if family == "conv" else "residual")
    block_type = label(block)
    if kind == "conv":
        target = join(path, "conv2")
        return (
            block_type,
            [Site(path, block_type, target, "after", out_channels(block.conv2), dim, target)],
            [],
        )
    if kind == "hidden":
        norm = "bn2" if bottleneck else "bn1"
        target = join(path, norm)
        channels = out_channels(getattr(block, norm))
        return block_type, [Site(path, block_type, target, "after", channels, dim, target)], []
    last = join(path, "bn3" if bottleneck else "bn2")
    channels = out_channels(block.bn3 if bottleneck else block.bn2)
    # timm keeps an ``se`` slot at exactly this point; excite's blocks an ``attention`` slot when their
    # placement is "residual".
    slot = None
    if hasattr(block, "se"):
        slot = "se"
    elif hasattr(block, "attention") and getattr(block, "placement", "residual") == "residual":
        slot = "attention"
    if slot is not None and is_empty_slot(getattr(block, slot)):
        return block_type, [Site(path, block_type, join(path, slot), "slot", channels, dim, last)], []
    if slot is not None:
        target = join(path, slot)
        return block_type, [Site(path, block_type, target, "after", channels, dim, target)], []
    return block_type, [Site(path, block_type, last, "after", channels, dim, last)], []


def _torchvision_inverted(
    path: str, block: nn.Module, family: str, placement: str | None
) -> BlockResult | None:
    name = type(block).__name__
    if name not in ("InvertedResidual", "MBConv", "FusedMBConv"):
        return None
    branch_name = None
    for candidate in ("conv", "block"):
        if type(getattr(block, candidate, None)) is nn.Sequential:
            branch_name = candidate
    if branch_name is None:
        return None
    branch = getattr(block, branch_name)
    children = list(branch.named_children())
    spatial_index = None
    for index, (_, child) in enumerate(children):
        if isinstance(child, nn.Sequential) and len(child) > 0 and _kernel_is_spatial(child[0]):
            spatial_index = index
            break
    if spatial_index is None:
        return None
    spatial_name, spatial_layer = children[spatial_index]
    depthwise = spatial_layer[0].groups > 1 and spatial_layer[0].groups == spatial_layer[0].in_channels
    expands = spatial_index > 0 if depthwise else len(children) > 1
    dim = conv_dim(block)
    block_type = label(block)
    branch_path = join(path, branch_name)
    kind = placement or {"conv": "conv", "eca": "residual"}.get(family, "hidden")
    if kind == "conv":
        target = join(branch_path, spatial_name, "0")
        return (
            block_type,
            [Site(path, block_type, target, "after", spatial_layer[0].out_channels, dim, target)],
            [],
        )
    if kind == "residual":
        return (
            block_type,
            [Site(path, block_type, branch_path, "after", out_channels(branch), dim, branch_path)],
            [],
        )
    if not expands:
        return (
            block_type,
            [],
            [(path, "expand ratio 1: no hidden width (channel attention only where the block expands)")],
        )
    target = join(branch_path, spatial_name)
    return block_type, [Site(path, block_type, target, "after", out_channels(spatial_layer), dim, target)], []


def _timm_efficientnet(path: str, block: nn.Module, family: str, placement: str | None) -> BlockResult | None:
    if not hasattr(block, "se"):
        return None
    if _has_modules(block, ("conv_pw", "bn1", "conv_dw", "bn2", "conv_pwl", "bn3")):
        spatial, expands, last = "conv_dw", block.conv_pw.out_channels != block.conv_pw.in_channels, "bn3"
    elif _has_modules(block, ("conv_exp", "bn1", "conv_pwl", "bn2")):
        spatial, expands, last = "conv_exp", block.conv_exp.out_channels != block.conv_exp.in_channels, "bn2"
    elif _has_modules(block, ("conv_dw", "bn1", "conv_pw", "bn2")):
        spatial, expands, last = "conv_dw", False, "bn2"
    else:
        return None
    dim = conv_dim(block)
    block_type = label(block)
    kind = placement or {"conv": "conv", "eca": "residual"}.get(family, "hidden")
    if kind == "conv":
        target = join(path, spatial)
        channels = getattr(block, spatial).out_channels
        return block_type, [Site(path, block_type, target, "after", channels, dim, target)], []
    if kind == "residual":
        target = join(path, last)
        return (
            block_type,
            [Site(path, block_type, target, "after", out_channels(getattr(block, last)), dim, target)],
            [],
        )
    if not expands:
        return (
            block_type,
            [],
            [(path, "expand ratio 1: no hidden width (channel attention only where the block expands)")],
        )
    channels = getattr(block, spatial).out_channels
    slot = join(path, "se")
    if is_empty_slot(block.se):
        probe = (
            slot if isinstance(block.se, nn.Module) else join(path, "bn2" if spatial == "conv_dw" else "bn1")
        )
        return block_type, [Site(path, block_type, slot, "slot", channels, dim, probe)], []
    return block_type, [Site(path, block_type, slot, "after", channels, dim, slot)], []


def _convnext(path: str, block: nn.Module, family: str, placement: str | None) -> BlockResult | None:
    if type(block).__name__ != "CNBlock" or type(getattr(block, "block", None)) is not nn.Sequential:
        return None
    if not hasattr(block, "layer_scale") or not _kernel_is_spatial(block.block[0]):
        return None
    block_type = label(block)
    kind = placement or ("conv" if family == "conv" else "residual")
    channels = block.block[0].out_channels
    if kind == "conv":
        target = join(path, "block", "0")
        return block_type, [Site(path, block_type, target, "after", channels, 2, target)], []
    if kind == "hidden":
        return block_type, [], [(path, "ConvNeXt blocks have no channels-first hidden site")]
    target = join(path, "block")
    return block_type, [Site(path, block_type, target, "after", channels, 2, target)], []


BLOCK_PATTERNS: list[Callable[..., BlockResult | None]] = [
    _resnet,
    _torchvision_inverted,
    _timm_efficientnet,
    _convnext,
]


# -------------------------------------------------------------------------------------------------------
# Whole-model patterns


def _monai_unet(
    model: nn.Module, family: str, placement: str | None, attention_name: str | None = None
) -> tuple[list[Site], list] | None:
    if type(model).__name__ != "UNet" or not type(model).__module__.startswith("monai"):
        return None
    root = getattr(model, "model", None)
    if not isinstance(root, nn.Sequential) or len(root) != 3:
        return None
    dim = getattr(model, "dimensions", None) or conv_dim(model)
    sites: list[Site] = []

    def add(path: str, module: nn.Module, role: str) -> None:
        sites.append(Site(path, f"monai UNet {role} block", path, "after", out_channels(module), dim, path))

    def walk(level: nn.Sequential, path: str, top: bool) -> None:
        down, skip, up = level[0], level[1], level[2]
        add(join(path, "0"), down, "encoder")
        sub = skip.submodule
        sub_path = join(path, "1", "submodule")
        if isinstance(sub, nn.Sequential) and len(sub) == 3 and type(sub[1]).__name__ == "SkipConnection":
            walk(sub, sub_path, False)
        else:
            add(sub_path, sub, "bottom")
        if not top:
            add(join(path, "2"), up, "decoder")

    walk(root, "model", True)
    skipped = [("model.2", "the last decoder block outputs the segmentation")]
    return sites, skipped


# excite's networks: the placement their builder picks for an attention name (its own default table and
# fallback), so that attach(network, name) builds what network(attention=name) builds.
_EXCITE_DEFAULTS = {
    "ResNet": ("excite.models.resnet", "DEFAULT_PLACEMENT", "residual"),
    "MobileNetV2": ("excite.models.mobilenet", "MOBILENET_V2_DEFAULT_PLACEMENT", "hidden"),
    "MobileNeXt": ("excite.models.mobilenet", "MOBILENEXT_DEFAULT_PLACEMENT", "hidden"),
}
_EXCITE_SINGLE_SITE = ("UNetBlock", "DenseLayer", "InceptionModule")


def excite_network_placement(model: nn.Module, attention_name: str | None) -> str | None:
    """The placement ``type(model)(attention=attention_name)`` would use, for excite's multi-site networks."""
    entry = _EXCITE_DEFAULTS.get(type(model).__name__)
    if entry is None:
        return None
    import importlib

    defaults = getattr(importlib.import_module(entry[0]), entry[1], {})
    return defaults.get(attention_name or "", entry[2])


def _excite_network(model: nn.Module, family: str, placement: str | None, attention_name: str | None = None):
    """Fill the empty ``attention`` slots of an excite network where its builder would put the module.

    Multi-site blocks (ResNet, MobileNetV2, MobileNeXt) get their ``placement`` set to the network's
    choice for this attention (or the user's), then the slot filled; the ``"conv"`` site is a named slot
    inside the depthwise ``ConvNormAct`` (``conv → attention → norm``), or a hook after ``conv2`` in
    ResNet blocks, whose builder layout ``conv2 = Sequential(conv, attention)`` would rename keys.
    Single-site blocks (U-Net, DenseNet, Inception) get their slot filled.
    """
    if not type(model).__module__.startswith("excite.models") or not hasattr(model, "attention_modules"):
        return None
    if model.attention_modules():
        return None  # already attended: the generic patterns insert after the existing modules
    name = type(model).__name__
    sites: list[Site] = []
    skipped: list[tuple[str, str]] = []
    if name in _EXCITE_DEFAULTS:
        chosen = placement or excite_network_placement(model, attention_name)
        for path, block in model.named_modules():
            if not hasattr(block, "placement") or not hasattr(block, "attention") or block is model:
                continue
            site = _excite_block_site(path, block, chosen)
            if site is None:
                skipped.append((path, f"no {chosen!r} site in this {type(block).__name__}"))
            else:
                sites.append(site)
        model.placement = chosen
        return sites, skipped
    for path, block in model.named_modules():
        if type(block).__name__ in _EXCITE_SINGLE_SITE and is_empty_slot(getattr(block, "attention", False)):
            slot = join(path, "attention")
            sites.append(Site(path, label(block), slot, "slot", None, getattr(model, "dim", None), slot))
    return (sites, skipped) if sites else None


def _excite_block_site(path: str, block: nn.Module, placement: str) -> Site | None:
    block_type = label(block)
    kind = type(block).__name__
    dim = conv_dim(block)
    if placement == "conv":
        if kind in ("BasicBlock", "Bottleneck"):
            target = join(path, "conv2")
            return Site(path, block_type, target, "after", out_channels(block.conv2), dim, target)
        if kind == "InvertedResidual":
            unit = "depthwise"
        elif kind == "SandglassBlock":
            unit = "depthwise1" if block.kind == "full" else "depthwise2" if block.kind == "strided" else None
        else:
            unit = None
        if unit is None or not isinstance(getattr(block, unit), nn.Sequential):
            return None
        target = join(path, unit, "conv")
        return Site(path, block_type, target, "insert", out_channels(getattr(block, unit).conv), dim, target)
    if kind == "InvertedResidual" and placement == "hidden" and type(block.expand) is nn.Identity:
        return None  # t = 1: Coordinate Attention's rule, as the builder applies it
    if kind == "SandglassBlock":
        from ..models.mobilenet import sandglass_site

        if sandglass_site(block.kind, placement, 0, 0) is None:
            return None
    block.placement = placement
    slot = join(path, "attention")
    return Site(path, block_type, slot, "slot", None, dim, slot)


MODEL_PATTERNS = [_monai_unet, _excite_network]


def find_sites(
    model: nn.Module, family: str, placement: str | None, attention_name: str | None = None
) -> tuple[list[Site], list[tuple[str, str]]]:
    """Every recognised site in ``model`` for a placement family (``"channel"``, ``"eca"`` or
    ``"conv"``) or an explicit ``placement``; excite networks follow their builder's choice for
    ``attention_name``.

    Raises:
        ValueError: nothing recognised; the message names the block types seen.
    """
    for pattern in MODEL_PATTERNS:
        found = pattern(model, family, placement, attention_name)
        if found is not None:
            return found
    sites: list[Site] = []
    skipped: list[tuple[str, str]] = []
    recognised = 0

    def visit(path: str, module: nn.Module) -> None:
        nonlocal recognised
        for block_pattern in BLOCK_PATTERNS:
            result = block_pattern(path, module, family, placement)
            if result is not None:
                recognised += 1
                sites.extend(result[1])
                skipped.extend(result[2])
                return
        for name, child in module.named_children():
            visit(join(path, name), child)

    visit("", model)
    if recognised == 0:
        raise ValueError(
            f"attach: no block of a recognised pattern in {type(model).__name__}; it contains "
            f"{describe_types(model)}. Recognised: ResNet basic/bottleneck blocks (conv1, bn1, conv2, bn2, "
            f"downsample), torchvision InvertedResidual/MBConv/FusedMBConv/CNBlock, "
            f"timm efficientnet blocks, "
            f"MONAI UNet. Pass where=[module names] or where=lambda name, module: ... to insert after "
            f"modules of your choice"
        )
    return sites, skipped


def describe_types(model: nn.Module, limit: int = 12) -> str:
    """The container module types in ``model`` with counts, most frequent first."""
    counts = Counter(type(m).__name__ for m in model.modules() if len(m._modules) > 0)
    parts = [f"{name} x{count}" for name, count in counts.most_common(limit)]
    if len(counts) > limit:
        parts.append(f"... ({len(counts) - limit} more)")
    return ", ".join(parts) if parts else "no container modules"
