"""X3D: an efficient 3-D video network with SE in every other bottleneck, from excite's 3-D modules.

Feichtenhofer, "X3D: Expanding Architectures for Efficient Video Recognition", CVPR 2020. Reference
implementation: PyTorchVideo ``pytorchvideo/models/x3d.py`` (``create_x3d``), whose arithmetic this
follows:

* stem: a 1x3x3 spatial conv (stride 1,2,2), then a depthwise 5x1x1 temporal conv, BN, ReLU;
* four stages of residual bottlenecks, depths ``ceil(depth_factor · (1, 2, 5, 3))`` and widths
  ``round_width(12·2^s, width_factor)``; the first block of each stage has spatial stride 2;
* bottleneck: 1x1x1 conv → BN → ReLU → **depthwise** 3x3x3 conv → BN → **SE** → Swish → 1x1x1 conv →
  BN, inner width ``int(2.25 · out)``; SE only in blocks 0, 2, 4, ... of each stage (every other block),
  hidden width ``round_width(inner, 1/16)`` (1/16 of the inner width, rounded to a multiple of 8, at
  least 8), squeezing over (T, H, W);
* shortcut: a strided 1x1x1 conv when the width or stride changes, followed by BN only when the width
  changes (the reference's rule), then ReLU after the sum;
* head: 1x1x1 conv to the last inner width, BN, ReLU, average pool, 1x1x1 conv to 2048, ReLU, dropout,
  linear classifier.

Differences from the reference, both harmless to the weights: the head pools globally (the reference's
fixed ``AvgPool3d`` kernel equals the final feature size for the preset clip, so the numbers match there
and other clip sizes also work), and the network returns logits (the reference head applies a softmax).

``attention=`` swaps SE for any excite family (``excite.create(name, C, dim=3, **attention_options)``)
or a callable ``(channels, dim=3, **options) -> nn.Module``; ``attention_every=1`` puts it in every block.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Union

from torch import Tensor, nn

from .._registry import create

AttentionSpec = Union[None, str, Callable[..., nn.Module]]

# (clip length, crop size, depth factor) of the published models; all use width factor 2.0.
PRESETS = {
    "xs": {"clip": 4, "crop": 160, "depth_factor": 2.2},
    "s": {"clip": 13, "crop": 160, "depth_factor": 2.2},
    "m": {"clip": 16, "crop": 224, "depth_factor": 2.2},
    "l": {"clip": 16, "crop": 312, "depth_factor": 5.0},
}


def round_width(width: float, multiplier: float, min_width: int = 8, divisor: int = 8) -> int:
    """X3D's channel rounding: ``width·multiplier`` to the nearest multiple of ``divisor`` (at least
    ``min_width``), bumped up by one ``divisor`` if rounding lost more than 10%."""
    if not multiplier:
        return int(width)
    width = width * multiplier
    rounded = max(min_width, int(width + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * width:
        rounded += divisor
    return int(rounded)


def round_repeats(repeats: int, multiplier: float) -> int:
    """X3D's depth scaling: ``ceil(multiplier · repeats)``."""
    return int(math.ceil(multiplier * repeats))


def make_attention(
    attention: AttentionSpec, channels: int, options: dict[str, Any] | None, dim: int = 3
) -> nn.Module:
    """The attention module for ``channels``: a registered name, or a callable; None gives Identity.

    Raises:
        ValueError: an attention that is neither None, a string nor a callable.
    """
    if attention is None:
        return nn.Identity()
    if isinstance(attention, str):
        return create(attention, channels, dim=dim, **(options or {}))
    if callable(attention):
        return attention(channels, dim=dim, **(options or {}))
    raise ValueError(
        f"attention must be None, a registered name or a callable, got {type(attention).__name__}"
    )


class X3DBottleneck(nn.Module):
    """1x1x1 → BN → ReLU → depthwise 3x3x3 → BN → attention → Swish → 1x1x1 → BN."""

    def __init__(
        self, dim_in: int, dim_inner: int, dim_out: int, spatial_stride: int, attention: nn.Module
    ) -> None:
        super().__init__()
        self.conv_a = nn.Conv3d(dim_in, dim_inner, kernel_size=1, bias=False)
        self.norm_a = nn.BatchNorm3d(dim_inner)
        self.act_a = nn.ReLU(inplace=True)
        self.conv_b = nn.Conv3d(
            dim_inner,
            dim_inner,
            kernel_size=3,
            stride=(1, spatial_stride, spatial_stride),
            padding=1,
            groups=dim_inner,
            bias=False,
        )
        self.norm_b = nn.BatchNorm3d(dim_inner)
        self.attention = attention
        self.act_b = nn.SiLU()
        self.conv_c = nn.Conv3d(dim_inner, dim_out, kernel_size=1, bias=False)
        self.norm_c = nn.BatchNorm3d(dim_out)

    def forward(self, x: Tensor) -> Tensor:
        x = self.act_a(self.norm_a(self.conv_a(x)))
        x = self.act_b(self.attention(self.norm_b(self.conv_b(x))))
        return self.norm_c(self.conv_c(x))


class X3DBlock(nn.Module):
    """A residual X3D block: ``ReLU(shortcut(x) + bottleneck(x))``."""

    def __init__(
        self, dim_in: int, dim_inner: int, dim_out: int, spatial_stride: int, attention: nn.Module
    ) -> None:
        super().__init__()
        self.shortcut: nn.Module | None = None
        if dim_in != dim_out or spatial_stride > 1:
            layers: list[nn.Module] = [
                nn.Conv3d(
                    dim_in, dim_out, kernel_size=1, stride=(1, spatial_stride, spatial_stride), bias=False
                )
            ]
            if dim_in != dim_out:
                layers.append(nn.BatchNorm3d(dim_out))
            self.shortcut = nn.Sequential(*layers)
        self.branch = X3DBottleneck(dim_in, dim_inner, dim_out, spatial_stride, attention)
        self.act = nn.ReLU(inplace=True)

    @property
    def has_attention(self) -> bool:
        return not isinstance(self.branch.attention, nn.Identity)

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.shortcut is None else self.shortcut(x)
        return self.act(identity + self.branch(x))


class X3D(nn.Module):
    """The X3D network; see the module docstring. Build it with :func:`x3d` or :func:`x3d_tiny`.

    Args:
        in_channels: clip channels (3).
        num_classes: classifier outputs.
        width_factor, depth_factor: X3D's expansion factors (2.0, 2.2 for XS/S/M; 5.0 depth for L).
        stem_width: X3D's ``stem_dim_in`` (12), the base width before ``width_factor``.
        bottleneck_factor: inner width over block width (2.25).
        head_width: the head's projection width (2048).
        dropout: before the classifier (0.5).
        attention, attention_options: the module after the depthwise BN (default ``"se"``, X3D's SE with
            hidden width ``round_width(inner, 1/16)`` unless options say otherwise); None for no attention.
        attention_every: 2 (X3D: blocks 0, 2, 4, ... of each stage) or 1 (every block).

    Raises:
        ValueError: ``attention_every`` below 1, or an invalid attention.
    """

    def __init__(
        self,
        *,
        in_channels: int = 3,
        num_classes: int = 400,
        width_factor: float = 2.0,
        depth_factor: float = 2.2,
        stem_width: int = 12,
        bottleneck_factor: float = 2.25,
        head_width: int = 2048,
        dropout: float = 0.5,
        attention: AttentionSpec = "se",
        attention_options: dict[str, Any] | None = None,
        attention_every: int = 2,
    ) -> None:
        super().__init__()
        if attention_every < 1:
            raise ValueError(f"X3D: attention_every must be >= 1, got {attention_every}")
        stem_out = round_width(stem_width, width_factor)
        self.stem = nn.Sequential(
            nn.Conv3d(
                in_channels, stem_out, kernel_size=(1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1), bias=False
            ),
            nn.Conv3d(
                stem_out, stem_out, kernel_size=(5, 1, 1), padding=(2, 0, 0), groups=stem_out, bias=False
            ),
            nn.BatchNorm3d(stem_out),
            nn.ReLU(inplace=True),
        )
        base_widths = [stem_width]
        for _ in range(3):
            base_widths.append(round_width(base_widths[-1], 2.0))
        stages = []
        dim_in = stem_out
        for base_width, base_depth in zip(base_widths, (1, 2, 5, 3)):
            dim_out = round_width(base_width, width_factor)
            dim_inner = int(bottleneck_factor * dim_out)
            blocks = []
            for index in range(round_repeats(base_depth, depth_factor)):
                module: nn.Module = nn.Identity()
                if index % attention_every == 0:
                    options = dict(attention_options or {})
                    if attention == "se" and not {"reduction", "hidden_channels"} & set(options):
                        options["hidden_channels"] = round_width(dim_inner, 1 / 16)
                    module = make_attention(attention, dim_inner, options)
                blocks.append(
                    X3DBlock(
                        dim_in if index == 0 else dim_out, dim_inner, dim_out, 2 if index == 0 else 1, module
                    )
                )
            stages.append(nn.Sequential(*blocks))
            dim_in = dim_out
        self.stages = nn.Sequential(*stages)
        self.head = nn.Sequential(
            nn.Conv3d(dim_in, dim_inner, kernel_size=1, bias=False),
            nn.BatchNorm3d(dim_inner),
            nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool3d(1),
            nn.Conv3d(dim_inner, head_width, kernel_size=1, bias=False),
            nn.ReLU(inplace=True),
            nn.Flatten(1),
            nn.Dropout(dropout) if dropout > 0 else nn.Identity(),
            nn.Linear(head_width, num_classes),
        )

    def blocks(self) -> list[X3DBlock]:
        """Every residual block, stage by stage."""
        return [block for stage in self.stages for block in stage]

    def forward(self, clip: Tensor) -> Tensor:
        if clip.dim() != 5:
            raise ValueError(f"X3D: expected a clip (N, C, T, H, W), got shape {list(clip.shape)}")
        return self.head(self.stages(self.stem(clip)))


def x3d(
    preset: str = "m",
    *,
    attention: AttentionSpec = "se",
    attention_options: dict[str, Any] | None = None,
    in_channels: int = 3,
    num_classes: int = 400,
    **options: Any,
) -> X3D:
    """X3D-XS/S/M/L (``preset``). XS, S and M share one network (3.79 M parameters with 400 classes,
    PyTorchVideo's model zoo) and differ only in the clip they take: 4x160², 13x160², 16x224²; L
    (6.15 M) uses depth factor 5.0 and 16x312². ``PRESETS[preset]`` holds the clip sizes.

    Raises:
        ValueError: an unknown preset.
    """
    if preset not in PRESETS:
        raise ValueError(f"x3d: unknown preset {preset!r}; choose from {sorted(PRESETS)}")
    options.setdefault("depth_factor", PRESETS[preset]["depth_factor"])
    return X3D(
        in_channels=in_channels,
        num_classes=num_classes,
        attention=attention,
        attention_options=attention_options,
        **options,
    )


def x3d_tiny(
    *,
    attention: AttentionSpec = "se",
    attention_options: dict[str, Any] | None = None,
    in_channels: int = 3,
    num_classes: int = 10,
    **options: Any,
) -> X3D:
    """A CPU-sized X3D: width and depth factors 1.0 (stage widths 16/24/48/96, depths 1/2/5/3), head
    width 256, no dropout; same block structure and SE rule as the full model."""
    settings = {"width_factor": 1.0, "depth_factor": 1.0, "head_width": 256, "dropout": 0.0}
    settings.update(options)
    return X3D(
        in_channels=in_channels,
        num_classes=num_classes,
        attention=attention,
        attention_options=attention_options,
        **settings,
    )
