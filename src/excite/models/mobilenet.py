"""MobileNetV2 and MobileNeXt with SE-family attention, and the official attention-MobileNetV2 presets.

Sandler, Howard, Zhu, Zhmoginov, Chen. "MobileNetV2: Inverted Residuals and Linear Bottlenecks", CVPR
2018 (torchvision's ``mobilenet_v2`` is the reference layout). Zhou, Hou, Chen, Feng, Yan. "Rethinking
Bottleneck Structure for Efficient Mobile Network Design" (MobileNeXt), ECCV 2020; official code
yitu-opensource/MobileNeXt ``mnext.py``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from torch import Tensor, nn

from ..layers import ECA
from ._common import (
    AttentionBuilder,
    AttentionSpec,
    ConvNormAct,
    SizeSpec,
    as_size,
    attention_name,
    check_input_rank,
    check_network_dim,
    conv_output_size,
    default_input_size,
    make_divisible,
    require_same_channels,
    resolve_placement,
    spatial_mean,
)

# t (expansion), c (output channels), n (blocks), s (stride of the first block)
MOBILENET_V2_SETTING = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
# t (reduction), c, n, s; from mnext.py
MOBILENEXT_SETTING = (
    (2, 96, 1, 2),
    (6, 144, 1, 1),
    (6, 192, 3, 2),
    (6, 288, 3, 2),
    (6, 384, 4, 1),
    (6, 576, 4, 2),
    (6, 960, 3, 1),
    (6, 1280, 1, 1),
)

PLACEMENTS = ("residual", "hidden", "conv")
# SE-like modules go on the hidden width after the depthwise conv, where MobileNetV3, MnasNet and
# EfficientNet put SE and the CA paper puts its SE/CBAM comparators; ECA goes after the projection BN as in
# ECA-MobileNetV2; SimAM inside the depthwise conv as in the SimAM release. excite.attach uses the same rule
# on torchvision/timm blocks, so builder and surgery agree.
MOBILENET_V2_DEFAULT_PLACEMENT = {"simam": "conv", "eca": "residual"}
MOBILENEXT_DEFAULT_PLACEMENT = {"simam": "conv"}


def mobile_init(model: nn.Module) -> None:
    """The MobileNetV2/MobileNeXt release init (torchvision, ECA, CA, SimAM and MobileNeXt agree):
    every convolution ``N(0, 2/fan_out)`` (= ``kaiming_normal_(fan_out)``) with zero bias, BN weight 1
    and bias 0, every Linear ``N(0, 0.01²)`` with zero bias. The loops of those releases reach attention
    layers too (CA's convolutions, SE's Linear layers), so this one does; ECA's 1-D convolution keeps
    PyTorch's default, as in the ECA release, where the loop only touches ``Conv2d``."""
    skipped = {id(m) for e in model.modules() if isinstance(e, ECA) for m in e.modules()}
    for m in model.modules():
        if id(m) in skipped:
            continue
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif (
            isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.GroupNorm))
            and m.weight is not None
        ):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class InvertedResidual(nn.Module):
    """MobileNetV2's block: 1x1 expand (absent for t=1) → depthwise 3x3 → 1x1 linear projection, with a
    residual when the stride is 1 and the width is kept. Children: ``expand``, ``depthwise``,
    ``attention``, ``project`` (each :class:`ConvNormAct` has ``conv``, ``norm`` and ``act``).

    Placements: ``"residual"`` after the projection BN, before the sum (ECA; SE and CBAM in the SimAM
    release); ``"hidden"`` after the depthwise conv + BN + ReLU6 on the expanded width (Coordinate
    Attention); ``"conv"`` inside the depthwise unit, ``dw → attention → BN → ReLU6`` (SimAM).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        stride: int,
        expand_ratio: float,
        dim: int,
        attention: nn.Module | None = None,
        placement: str = "residual",
        owner: str = "MobileNetV2",
    ) -> None:
        super().__init__()
        hidden = int(round(in_channels * expand_ratio))
        self.placement = placement
        self.use_residual = stride == 1 and in_channels == out_channels
        if attention is not None:
            site_channels = out_channels if placement == "residual" else hidden
            require_same_channels(
                attention, site_channels, owner, f"the {placement!r} site of an inverted residual"
            )
        self.expand = (
            ConvNormAct(in_channels, hidden, 1, dim=dim, activation=nn.ReLU6(inplace=True))
            if expand_ratio != 1
            else nn.Identity()
        )
        self.depthwise = ConvNormAct(
            hidden,
            hidden,
            3,
            dim=dim,
            stride=stride,
            groups=hidden,
            activation=nn.ReLU6(inplace=True),
            attention=attention if placement == "conv" else None,
        )
        self.attention = attention if attention is not None and placement != "conv" else nn.Identity()
        self.project = ConvNormAct(hidden, out_channels, 1, dim=dim)

    def forward(self, x: Tensor) -> Tensor:
        out = self.depthwise(self.expand(x))
        if self.placement == "hidden":
            out = self.attention(out)
        out = self.project(out)
        if self.placement == "residual":
            out = self.attention(out)
        return x + out if self.use_residual else out


class MobileNetV2(nn.Module):
    r"""MobileNetV2 (torchvision layout) for 1-D, 2-D or 3-D input with attention in its blocks.

    Args:
        attention: None, a name from :func:`excite.available`, or a callable
            ``(C, dim=..., **attention_options) -> nn.Module``.
        attention_options: options for every attention module.
        stage_options: seven dicts (one per ``(t, c, n, s)`` row) merged over ``attention_options``.
        placement: ``"residual"``, ``"hidden"`` or ``"conv"`` (see :class:`InvertedResidual`); None picks
            the paper's: ECA ``"residual"`` in every block (ECA release); SimAM ``"conv"`` in every block
            (SimAM release); Coordinate Attention and every other module ``"hidden"``, **only in blocks with
            t != 1** (the CA release; also where MobileNetV3/EfficientNet put SE). ``"hidden"`` always skips
            the t = 1 block, as CA does. The SimAM release's SE/CBAM comparators sit at ``"residual"``:
            pass ``placement="residual"`` for those.
        in_channels: input channels.
        num_classes: classifier outputs; 0 leaves out the classifier.
        width_mult: channel multiplier (channels rounded to multiples of ``round_nearest``).
        dropout: before the classifier (torchvision 0.2; the ECA release 0.25, CA 0.1).
        dim: spatial dimensions.
        input_size: the input size it is built for (None: 224 in 1-D/2-D, none in 3-D); sets FcaNet's
            DCT grid and RGSE's pooling.

    Parameters: 3,504,872 at 1000 classes (torchvision's count).

    Init: :func:`mobile_init`.

    Raises:
        ValueError: bad options, an attention that changes the channel count, or a wrong input rank.
    """

    def __init__(
        self,
        *,
        attention: AttentionSpec = None,
        attention_options: Mapping[str, Any] | None = None,
        stage_options: Sequence[Mapping[str, Any]] | None = None,
        placement: str | None = None,
        in_channels: int = 3,
        num_classes: int = 1000,
        width_mult: float = 1.0,
        round_nearest: int = 8,
        dropout: float = 0.2,
        dim: int = 2,
        input_size: SizeSpec = None,
        setting: Sequence[Sequence[float]] = MOBILENET_V2_SETTING,
    ) -> None:
        super().__init__()
        owner = "MobileNetV2"
        check_network_dim(dim, owner)
        if width_mult <= 0 or in_channels < 1 or num_classes < 0:
            raise ValueError(
                f"{owner}: width_mult must be > 0, in_channels >= 1, num_classes >= 0; got "
                f"{width_mult}, {in_channels}, {num_classes}"
            )
        builder = AttentionBuilder(
            attention,
            attention_options,
            dim=dim,
            owner=owner,
            stage_options=stage_options,
            stages=len(setting),
        )
        self.placement = resolve_placement(
            placement,
            attention_name(attention),
            MOBILENET_V2_DEFAULT_PLACEMENT,
            "hidden",
            PLACEMENTS,
            owner,
        )
        self.dim = dim
        size = as_size(default_input_size(input_size, dim, False), dim, owner)
        self.input_size = size
        channels = make_divisible(32 * width_mult, round_nearest)
        last_channels = make_divisible(1280 * max(1.0, width_mult), round_nearest)
        self.stem = ConvNormAct(
            in_channels, channels, 3, dim=dim, stride=2, activation=nn.ReLU6(inplace=True)
        )
        size = conv_output_size(size, 3, 2, 1)
        blocks: list[nn.Module] = []
        for stage, (t, c, n, s) in enumerate(setting):
            out_channels = make_divisible(c * width_mult, round_nearest)
            for index in range(int(n)):
                stride = int(s) if index == 0 else 1
                size = conv_output_size(size, 3, stride, 1)
                site = None
                wants_site = builder.enabled and not (self.placement == "hidden" and t == 1)
                if wants_site:
                    site_channels = out_channels if self.placement == "residual" else int(round(channels * t))
                    site = builder.build(site_channels, spatial_size=size, stage=stage)
                blocks.append(
                    InvertedResidual(
                        channels,
                        out_channels,
                        stride=stride,
                        expand_ratio=t,
                        dim=dim,
                        attention=site,
                        placement=self.placement,
                        owner=owner,
                    )
                )
                channels = out_channels
        self.blocks = nn.Sequential(*blocks)
        self.head = ConvNormAct(channels, last_channels, 1, dim=dim, activation=nn.ReLU6(inplace=True))
        self.num_features = last_channels
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(last_channels, num_classes) if num_classes > 0 else nn.Identity()
        mobile_init(self)

    def attention_modules(self) -> list:
        """The attention module of every block that has one, in forward order."""
        found = []
        for block in self.blocks:
            if hasattr(block.depthwise, "attention"):
                found.append(block.depthwise.attention)
            elif not isinstance(block.attention, nn.Identity):
                found.append(block.attention)
        return found

    def forward_features(self, x: Tensor) -> Tensor:
        check_input_rank(x, self.dim, "MobileNetV2")
        return self.head(self.blocks(self.stem(x)))

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.dropout(spatial_mean(self.forward_features(x))))


def mobilenet_v2(**kwargs: Any) -> MobileNetV2:
    """MobileNetV2 1.0 (torchvision; 3,504,872 parameters at 1000 classes). Options: :class:`MobileNetV2`."""
    return MobileNetV2(**kwargs)


def _preset(kwargs: dict, fixed: dict) -> dict:
    clash = sorted(set(kwargs) & set(fixed))
    if clash:
        raise ValueError(
            f"this preset fixes {clash} to the official release; use mobilenet_v2(...) to change them"
        )
    return {**fixed, **kwargs}


def ca_mobilenet_v2(**kwargs: Any) -> MobileNetV2:
    """MobileNetV2 + Coordinate Attention as released (houqb/CoordAttention ``mbv2_ca.py``): CA with
    r=32 (mid width ``max(8, C//32)``) after the depthwise conv + BN + ReLU6 of every block with t != 1,
    classifier dropout 0.1, the release's init (CA's convolutions included, bias 0). 3,950,648 parameters."""
    kwargs.setdefault("dropout", 0.1)
    return MobileNetV2(**_preset(kwargs, {"attention": "coord", "placement": "hidden"}))


def eca_mobilenet_v2(*, original_rule: bool = False, **kwargs: Any) -> MobileNetV2:
    """ECA-MobileNetV2 as released (BangguWu/ECANet ``eca_mobilenetv2.py``): ECA after the projection BN
    of every block, ``k = 1`` for stages with ``c < 96`` and 3 otherwise (3,504,903 parameters), dropout
    0.25. ``original_rule=True`` uses the ``c <= 96`` rule of the code before commit a46e411 (3,504,897),
    which the released ``k13`` checkpoint predates."""
    kwargs.setdefault("dropout", 0.25)
    kernels = [
        {"kernel_size": 1 if (c <= 96 if original_rule else c < 96) else 3}
        for _, c, _, _ in MOBILENET_V2_SETTING
    ]
    return MobileNetV2(
        **_preset(kwargs, {"attention": "eca", "placement": "residual", "stage_options": kernels})
    )


# ----------------------------------------------------------------------------------------------------------
# MobileNeXt


def sandglass_hidden(in_channels: int, out_channels: int, reduction: int) -> int:
    """``in // t``, raised to ``make_divisible(ceil(out/6), 16)`` when below ``out/6`` (``mnext.py``)."""
    hidden = in_channels // reduction
    if hidden < out_channels / 6.0:
        hidden = make_divisible(math.ceil(out_channels / 6.0), 16)
    return hidden


def sandglass_kind(in_channels: int, out_channels: int, stride: int, reduction: int, keep_3x3: bool) -> str:
    """Which layers ``mnext.py`` builds: ``"full"`` (both depthwise convs), ``"strided"`` (width change at
    stride 2: no first depthwise) or ``"pointwise"`` (width change at stride 1: the two 1x1 only)."""
    if reduction == 2 or in_channels == out_channels or keep_3x3:
        return "full"
    return "strided" if stride == 2 else "pointwise"


def sandglass_site(kind: str, placement: str, in_channels: int, out_channels: int) -> tuple | None:
    """``(channels, at_output_size)`` of a sandglass block's attention site, or None where there is none
    (SimAM's ``"conv"`` site needs a 3x3 conv, which a pointwise block lacks)."""
    if placement == "residual":
        return out_channels, True
    if kind == "full":
        return in_channels, False
    if placement == "hidden":
        return out_channels, False
    return (out_channels, True) if kind == "strided" else None


class SandglassBlock(nn.Module):
    """MobileNeXt's sandglass block, as in ``mnext.py``: depthwise 3x3 on the wide input (BN, ReLU6) → 1x1
    reduce to the hidden width (BN, linear) → 1x1 expand (BN, ReLU6) → depthwise 3x3 (BN, linear; carries
    the stride), with the shortcut between the wide tensors. The official code builds fewer layers in
    three cases, kept here (see :func:`sandglass_kind`):

    * a width change at stride 1 (``"pointwise"``): only the two 1x1 convolutions, no shortcut;
    * a width change at stride 2 (``"strided"``): no first depthwise conv, no shortcut;
    * the first (t = 2) block and ``keep_3x3`` blocks (single-block stride-1 stages): all four layers
      but no shortcut.

    Children: ``depthwise1``, ``attention``, ``reduce``, ``expand``, ``depthwise2`` (absent layers are
    ``nn.Identity``).

    Placements: ``"hidden"`` after the first depthwise conv + BN + ReLU6, on the wide input (where the
    Coordinate Attention authors put it); blocks without a first depthwise conv get it after the
    expanding 1x1 + BN + ReLU6, the wide tensor before the last depthwise conv. ``"conv"`` (SimAM)
    inside the first depthwise unit (``dw → attention → BN → ReLU6``), in strided blocks inside the last
    one, and not at all in pointwise blocks, which have no 3x3 conv. ``"residual"`` after the last BN,
    before the sum.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        stride: int,
        reduction: int,
        keep_3x3: bool,
        dim: int,
        attention: nn.Module | None = None,
        placement: str = "hidden",
        owner: str = "MobileNeXt",
    ) -> None:
        super().__init__()
        hidden = sandglass_hidden(in_channels, out_channels, reduction)
        kind = sandglass_kind(in_channels, out_channels, stride, reduction, keep_3x3)
        self.kind = kind
        self.placement = placement
        self.use_residual = kind == "full" and reduction != 2 and not keep_3x3 and in_channels == out_channels
        site = sandglass_site(kind, placement, in_channels, out_channels)
        if attention is not None:
            if site is None:
                raise ValueError(f"{owner}: a {kind} sandglass block has no {placement!r} attention site")
            require_same_channels(attention, site[0], owner, f"the {placement!r} site of a sandglass block")
        inside_first = attention if placement == "conv" and kind == "full" else None
        inside_last = attention if placement == "conv" and kind == "strided" else None
        self.depthwise1: nn.Module = nn.Identity()
        if kind == "full":
            self.depthwise1 = ConvNormAct(
                in_channels,
                in_channels,
                3,
                dim=dim,
                groups=in_channels,
                activation=nn.ReLU6(inplace=True),
                attention=inside_first,
            )
        self.attention = attention if attention is not None and placement != "conv" else nn.Identity()
        self.reduce = ConvNormAct(in_channels, hidden, 1, dim=dim)
        self.expand = ConvNormAct(hidden, out_channels, 1, dim=dim, activation=nn.ReLU6(inplace=True))
        self.depthwise2: nn.Module = nn.Identity()
        if kind != "pointwise":
            self.depthwise2 = ConvNormAct(
                out_channels,
                out_channels,
                3,
                dim=dim,
                stride=stride,
                groups=out_channels,
                attention=inside_last,
            )

    def forward(self, x: Tensor) -> Tensor:
        out = self.depthwise1(x)
        if self.placement == "hidden" and self.kind == "full":
            out = self.attention(out)
        out = self.expand(self.reduce(out))
        if self.placement == "hidden" and self.kind != "full":
            out = self.attention(out)
        out = self.depthwise2(out)
        if self.placement == "residual":
            out = self.attention(out)
        return x + out if self.use_residual else out


class MobileNeXt(nn.Module):
    r"""MobileNeXt (sandglass blocks) for 1-D, 2-D or 3-D input with attention in every block.

    The official 1.0x network: 3x3 stem (32, stride 2), the eight ``(t, c, n, s)`` stages of
    :data:`MOBILENEXT_SETTING` ending at 1280 channels, global pooling, dropout 0.2 and the classifier
    (no final 1x1 conv). The official code's ``identity_div`` (adding the shortcut to a fraction of the
    channels) is 1, i.e. a full shortcut, and is not exposed.

    Args:
        attention, attention_options: as :class:`MobileNetV2`.
        stage_options: eight dicts merged over ``attention_options`` per stage.
        placement: ``"hidden"`` (default; after the first depthwise 3x3, as the Coordinate Attention
            authors recommend for MobileNeXt), ``"conv"`` (default for SimAM) or ``"residual"``; see
            :class:`SandglassBlock`.
        in_channels, num_classes, width_mult, dropout, dim, input_size: as :class:`MobileNetV2`.

    Init: :func:`mobile_init` (the release's: convolutions ``N(0, 2/(k²·out))``, BN 1/0, Linear
    ``N(0, 0.01²)``).
    """

    def __init__(
        self,
        *,
        attention: AttentionSpec = None,
        attention_options: Mapping[str, Any] | None = None,
        stage_options: Sequence[Mapping[str, Any]] | None = None,
        placement: str | None = None,
        in_channels: int = 3,
        num_classes: int = 1000,
        width_mult: float = 1.0,
        dropout: float = 0.2,
        dim: int = 2,
        input_size: SizeSpec = None,
    ) -> None:
        super().__init__()
        owner = "MobileNeXt"
        check_network_dim(dim, owner)
        if width_mult <= 0 or in_channels < 1 or num_classes < 0:
            raise ValueError(
                f"{owner}: width_mult must be > 0, in_channels >= 1, num_classes >= 0; got "
                f"{width_mult}, {in_channels}, {num_classes}"
            )
        setting = MOBILENEXT_SETTING
        builder = AttentionBuilder(
            attention,
            attention_options,
            dim=dim,
            owner=owner,
            stage_options=stage_options,
            stages=len(setting),
        )
        self.placement = resolve_placement(
            placement, attention_name(attention), MOBILENEXT_DEFAULT_PLACEMENT, "hidden", PLACEMENTS, owner
        )
        self.dim = dim
        size = as_size(default_input_size(input_size, dim, False), dim, owner)
        self.input_size = size
        divisor = 4 if width_mult == 0.1 else 8
        channels = make_divisible(32 * width_mult, divisor)
        self.stem = ConvNormAct(
            in_channels, channels, 3, dim=dim, stride=2, activation=nn.ReLU6(inplace=True)
        )
        size = conv_output_size(size, 3, 2, 1)
        blocks: list[nn.Module] = []
        for stage, (t, c, n, s) in enumerate(setting):
            out_channels = make_divisible(c * width_mult, divisor)
            if c == 1280 and width_mult < 1:
                out_channels = 1280
            for index in range(n):
                stride = s if index == 0 else 1
                keep_3x3 = index == 0 and n == 1 and s == 1
                after = conv_output_size(size, 3, stride, 1)
                kind = sandglass_kind(channels, out_channels, stride, t, keep_3x3)
                site_spec = sandglass_site(kind, self.placement, channels, out_channels)
                site = None
                if builder.enabled and site_spec is not None:
                    site_channels, at_output = site_spec
                    site = builder.build(
                        site_channels, spatial_size=after if at_output else size, stage=stage
                    )
                blocks.append(
                    SandglassBlock(
                        channels,
                        out_channels,
                        stride=stride,
                        reduction=t,
                        keep_3x3=keep_3x3,
                        dim=dim,
                        attention=site,
                        placement=self.placement,
                        owner=owner,
                    )
                )
                channels = out_channels
                size = after
        self.blocks = nn.Sequential(*blocks)
        self.num_features = channels
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(channels, num_classes) if num_classes > 0 else nn.Identity()
        mobile_init(self)

    def attention_modules(self) -> list:
        found = []
        for block in self.blocks:
            for unit in (block.depthwise1, block.depthwise2):
                if hasattr(unit, "attention"):
                    found.append(unit.attention)
            if not isinstance(block.attention, nn.Identity):
                found.append(block.attention)
        return found

    def forward_features(self, x: Tensor) -> Tensor:
        check_input_rank(x, self.dim, "MobileNeXt")
        return self.blocks(self.stem(x))

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.dropout(spatial_mean(self.forward_features(x))))


def mobilenext(**kwargs: Any) -> MobileNeXt:
    """MobileNeXt 1.0x (official ``mnext``). Options: :class:`MobileNeXt`."""
    return MobileNeXt(**kwargs)


__all__ = [
    "MOBILENET_V2_SETTING",
    "MOBILENEXT_SETTING",
    "InvertedResidual",
    "MobileNeXt",
    "MobileNetV2",
    "SandglassBlock",
    "ca_mobilenet_v2",
    "eca_mobilenet_v2",
    "mobilenet_v2",
    "mobilenext",
]
