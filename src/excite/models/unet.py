"""U-Net, 2-D and 3-D (and 1-D), with an attention module after every encoder and decoder block.

Ronneberger, Fischer, Brox. "U-Net: Convolutional Networks for Biomedical Image Segmentation", MICCAI
2015; Çiçek et al. "3D U-Net", MICCAI 2016. Placement follows Roy, Navab, Wachinger ("Concurrent Spatial
and Channel Squeeze & Excitation in Fully Convolutional Networks", MICCAI 2018; IEEE TMI 2019): one
module after each encoder block, the bottleneck and each decoder block, after the block's
conv-norm-ReLU stack and before pooling or upsampling.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._common import (
    AttentionBuilder,
    AttentionSpec,
    SizeSpec,
    as_size,
    attention_name,
    batch_norm,
    check_network_dim,
    conv,
    conv_transpose,
    instance_norm,
    kaiming_conv_init,
    max_pool,
    output_channels,
    resolve_placement,
)

NORMS = ("batch", "instance", "none")
UPSAMPLINGS = ("transpose", "interpolate")


class DoubleConv(nn.Sequential):
    """``(conv3 → norm → ReLU) × 2``, the U-Net block; named ``conv1, norm1, act1, conv2, norm2, act2``."""

    def __init__(self, in_channels: int, out_channels: int, *, dim: int, norm: str) -> None:
        super().__init__()
        use_bias = norm == "none"
        for index, channels_in in ((1, in_channels), (2, out_channels)):
            self.add_module(f"conv{index}", conv(dim)(channels_in, out_channels, 3, 1, 1, bias=use_bias))
            if norm == "batch":
                self.add_module(f"norm{index}", batch_norm(dim)(out_channels))
            elif norm == "instance":
                self.add_module(f"norm{index}", instance_norm(dim)(out_channels, affine=True))
            self.add_module(f"act{index}", nn.ReLU(inplace=True))


class UNetBlock(nn.Module):
    """A :class:`DoubleConv` followed by its attention module (``nn.Identity`` without attention)."""

    def __init__(self, block: DoubleConv, attention: nn.Module | None) -> None:
        super().__init__()
        self.block = block
        self.attention = attention if attention is not None else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.attention(self.block(x))


class UNet(nn.Module):
    r"""U-Net for ``(N, C, L)``, ``(N, C, H, W)`` or ``(N, C, D, H, W)`` with attention after every block.

    With ``features = (f_0, …, f_{L-1})``: encoder block ``i`` (``f_i`` channels) → attention → max-pool 2
    (the last, ``f_{L-1}``, is the bottleneck); decoder step ``i`` upsamples by 2 to ``f_i`` channels,
    concatenates the skip from encoder ``i``, runs a block to ``f_i`` channels → attention; a 1x1
    convolution gives ``out_channels`` logits. That is ``2L - 1`` attention modules.

    Attention that changes the channel count (scSE with ``aggregation="concat"`` returns 2C, the TMI
    paper's variant) widens whatever follows it: the next encoder block, the skip concatenation, the
    upsampling convolution or the output convolution.

    Odd sizes work: max-pooling floors, and an upsampled map one short of its skip is zero-padded on the
    far side before the concatenation.

    Args:
        dim: spatial dimensions (1, 2 or 3).
        in_channels: input channels (1 for a single MRI contrast).
        out_channels: output channels (segmentation classes, background included).
        features: channels per level, shallowest first; the last is the bottleneck.
        attention: None, a name from :func:`excite.available`, or a callable
            ``(C, dim=..., **attention_options) -> nn.Module``.
        attention_options: options for every attention module.
        placement: only ``"block"`` (after each block), the default.
        norm: ``"batch"`` (default), ``"instance"`` (affine; batch-size independent, common for 3-D
            patches) or ``"none"`` (then the convolutions get biases).
        upsampling: ``"transpose"`` (2x2 transposed convolution, default) or ``"interpolate"``
            (nearest-neighbour x2 then a 1x1 convolution).
        input_size: the input size the network is built for (int or one per axis). FcaNet's DCT grid is
            set to each level's map size (``size // 2**level``); RGSE needs it (its window is tied to the
            size). Without it FcaNet uses its 7-grid default and adapts by pooling.

    Initialisation: convolutions ``kaiming_normal_(fan_out, relu)``, norms weight 1 and bias 0;
    attention modules keep their own.

    Raises:
        ValueError: bad options, ``features`` with fewer than 2 levels, ``'rgse'`` without
            ``input_size``, or an input of the wrong rank or channel count, or too small to pool
            ``len(features) - 1`` times.
    """

    def __init__(
        self,
        *,
        dim: int = 2,
        in_channels: int = 1,
        out_channels: int = 2,
        features: Sequence[int] = (32, 64, 128, 256),
        attention: AttentionSpec = None,
        attention_options: Mapping[str, Any] | None = None,
        placement: str | None = None,
        norm: str = "batch",
        upsampling: str = "transpose",
        input_size: SizeSpec = None,
    ) -> None:
        super().__init__()
        owner = "UNet"
        check_network_dim(dim, owner)
        features = tuple(int(f) for f in features)
        if len(features) < 2 or min(features) < 1:
            raise ValueError(f"{owner}: features needs at least 2 positive channel counts, got {features}")
        if norm not in NORMS:
            raise ValueError(f"{owner}: norm must be one of {NORMS}, got {norm!r}")
        if upsampling not in UPSAMPLINGS:
            raise ValueError(f"{owner}: upsampling must be one of {UPSAMPLINGS}, got {upsampling!r}")
        if in_channels < 1 or out_channels < 1:
            raise ValueError(
                f"{owner}: in_channels and out_channels must be >= 1, got {in_channels}, {out_channels}"
            )
        self.placement = resolve_placement(
            placement, attention_name(attention), {}, "block", ("block",), owner
        )
        builder = AttentionBuilder(attention, attention_options, dim=dim, owner=owner)
        self.dim = dim
        self.in_channels = in_channels
        self.features = features
        size = as_size(input_size, dim, owner)
        self.input_size = size

        def level_size(level: int):
            if size is None:
                return None
            return tuple(max(s // 2**level, 1) for s in size)

        def with_attention(block: DoubleConv, channels: int, level: int) -> tuple:
            site = builder.build(channels, spatial_size=level_size(level)) if builder.enabled else None
            width = output_channels(site, channels) if site is not None else channels
            return UNetBlock(block, site), width

        self.encoder = nn.ModuleList()
        skip_channels: list[int] = []
        channels = in_channels
        for level, width in enumerate(features):
            block, channels = with_attention(DoubleConv(channels, width, dim=dim, norm=norm), width, level)
            self.encoder.append(block)
            skip_channels.append(channels)
        self.pool = max_pool(dim)(kernel_size=2, stride=2)

        self.upsample = nn.ModuleList()
        self.decoder = nn.ModuleList()
        for level in range(len(features) - 2, -1, -1):
            width = features[level]
            if upsampling == "transpose":
                up: nn.Module = conv_transpose(dim)(channels, width, kernel_size=2, stride=2)
            else:
                up = nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), conv(dim)(channels, width, 1))
            self.upsample.append(up)
            block, channels = with_attention(
                DoubleConv(width + skip_channels[level], width, dim=dim, norm=norm), width, level
            )
            self.decoder.append(block)
        self.head = conv(dim)(channels, out_channels, kernel_size=1)
        kaiming_conv_init(self, skip=self.attention_modules())

    def attention_modules(self) -> list:
        """The attention modules, encoder (shallow to deep) then decoder (deep to shallow)."""
        blocks = list(self.encoder) + list(self.decoder)
        return [b.attention for b in blocks if not isinstance(b.attention, nn.Identity)]

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != self.dim + 2 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"UNet: built for dim={self.dim} and {self.in_channels} input channels, expected "
                f"(N, {self.in_channels}, ...) with {self.dim} spatial axes, got shape {list(x.shape)}"
            )
        depth = len(self.features) - 1
        if min(x.shape[2:]) < 2**depth:
            raise ValueError(
                f"UNet: {depth} poolings need every spatial size >= {2**depth}, got shape {list(x.shape)}"
            )
        skips: list[Tensor] = []
        for level, block in enumerate(self.encoder):
            if level > 0:
                x = self.pool(x)
            x = block(x)
            skips.append(x)
        skips.pop()
        for up, block in zip(self.upsample, self.decoder):
            skip = skips.pop()
            x = up(x)
            x = _pad_to(x, skip)
            x = block(torch.cat([skip, x], dim=1))
        return self.head(x)


def _pad_to(x: Tensor, reference: Tensor) -> Tensor:
    """Zero-pad ``x`` at the far end of each spatial axis up to ``reference``'s size (odd sizes)."""
    padding: list[int] = []
    for axis in range(x.dim() - 1, 1, -1):
        padding.extend([0, reference.shape[axis] - x.shape[axis]])
    if any(p != 0 for p in padding):
        x = F.pad(x, padding)
    return x


def unet(
    *,
    dim: int = 2,
    in_channels: int = 1,
    out_channels: int = 2,
    features: Sequence[int] = (32, 64, 128, 256),
    attention: AttentionSpec = None,
    attention_options: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> UNet:
    """A :class:`UNet`; ``unet(dim=3, features=(16, 32, 64), attention="scse")`` for volumes."""
    return UNet(
        dim=dim,
        in_channels=in_channels,
        out_channels=out_channels,
        features=features,
        attention=attention,
        attention_options=attention_options,
        **kwargs,
    )


__all__ = ["DoubleConv", "UNet", "UNetBlock", "unet"]
