"""Coordinate Attention (CA).

Hou, Zhou, Feng. "Coordinate Attention for Efficient Mobile Network Design", CVPR 2021. Official code:
houqb/CoordAttention (``coordatt.py``; ``mbv2_ca.py`` holds the same math with other layer names).
"""

from __future__ import annotations

from typing import List, Optional

import torch
from torch import Tensor, nn

from .. import fused
from .._nd import accumulation_dtype, check_channels, check_dim, check_input, make_activation
from .._registry import register
from ..fused import fused_enabled

NORMS = ("batch", "layer", "none")


@register("coord")
class CoordAttention(nn.Module):
    r"""Coordinate Attention: direction-aware strip pooling, a shared bottleneck, one gate per axis.

    For 2-D input:

    .. math::

        z^h_c(h) = \tfrac1W \sum_w x_c(h, w),\quad z^w_c(w) = \tfrac1H \sum_h x_c(h, w)

        f = \delta\big(\mathrm{BN}(W_1 [z^h; z^w] + b_1)\big) \in \mathbb{R}^{N\times m\times (H+W)}

        a^h = \sigma(W_h f^h + b_h),\quad a^w = \sigma(W_w f^w + b_w),\qquad
        y = (x \odot a^w) \odot a^h

    with ``m = max(8, C // reduction)``, δ = h-swish (``x·ReLU6(x+3)/6``), and 1x1 convolutions with
    bias. In general each spatial axis gets the mean over all the *other* spatial axes, so in 3-D the
    module pools along D, H and W and multiplies three gates (W first, then H, then D, extending the
    official left-to-right order). In 1-D there is no other axis to pool over: the strip is the input
    itself and the gate is per position and channel.

    Defaults follow ``coordatt.py``: ``reduction=32``, mid width floor 8, biases on all three convs,
    BatchNorm after the shared conv, h-swish.

    BatchNorm after pooling: its statistics span ``N x (H+W)`` values, so batch size 1 in training
    works but normalises over a single sample's strips. ``norm="layer"`` (GroupNorm with one group,
    batch-independent) or ``norm="none"`` avoid batch statistics altogether; neither is official.

    Deployment note: the official code pools with ``AdaptiveAvgPool2d((None, 1))``, whose ONNX export
    freezes the window at the traced size and is silently wrong at any other size. Here pooling is a
    plain ``mean`` over axes, which exports correctly with dynamic spatial axes.

    Parameters: ``C·m + m`` (shared conv) ``+ 2m`` (BN) ``+ dim·(m·C + C)`` (per-axis convs); for 2-D
    ``3·C·m + 3·m + 2·C``.

    Raises:
        ValueError: unknown norm, wrong rank or channel count.
    """

    def __init__(
        self,
        channels: Optional[int] = None,
        *,
        dim: int = 2,
        reduction: int = 32,
        min_hidden: int = 8,
        norm: str = "batch",
        activation: str = "hardswish",
    ) -> None:
        super().__init__()
        check_dim(dim, "CoordAttention")
        channels = check_channels(channels, "CoordAttention")
        if norm not in NORMS:
            raise ValueError(f"CoordAttention: norm must be one of {NORMS}, got {norm!r}")
        if reduction < 1:
            raise ValueError(f"CoordAttention: reduction must be >= 1, got {reduction}")
        mid = max(min_hidden, channels // reduction)
        self.dim = dim
        self.channels = channels
        self.mid_channels = mid
        self.conv1 = nn.Conv1d(channels, mid, kernel_size=1, bias=True)
        if norm == "batch":
            self.norm = nn.BatchNorm1d(mid)
        elif norm == "layer":
            self.norm = nn.GroupNorm(1, mid)
        else:
            self.norm = nn.Identity()
        self.act = make_activation(activation, "CoordAttention")
        self.convs = nn.ModuleList([nn.Conv1d(mid, channels, kernel_size=1, bias=True) for _ in range(dim)])

    def strips(self, x: Tensor) -> List[Tensor]:
        """One ``(N, C, S_a)`` descriptor per spatial axis ``a``: the mean over the other axes."""
        out: List[Tensor] = []
        for axis in range(2, self.dim + 2):
            others: List[int] = []
            for other in range(2, self.dim + 2):
                if other != axis:
                    others.append(other)
            if len(others) == 0:
                out.append(x)
            else:
                strip = x.mean(dim=others, dtype=accumulation_dtype(x)).to(x.dtype)
                out.append(strip.reshape(x.shape[0], x.shape[1], x.shape[axis]))
        return out

    def axis_gates(self, x: Tensor) -> List[Tensor]:
        """The per-axis gates, each shaped to broadcast against ``x`` (``(N, C, H, 1)``, ``(N, C, 1, W)``)."""
        strips = self.strips(x)
        sizes: List[int] = [s.shape[2] for s in strips]
        shared = self.act(self.norm(self.conv1(torch.cat(strips, dim=2))))
        gates: List[Tensor] = []
        parts = torch.split(shared, sizes, dim=2)
        for axis, conv in enumerate(self.convs):
            shape = [x.shape[0], self.channels]
            for other in range(self.dim):
                shape.append(sizes[other] if other == axis else 1)
            gates.append(torch.sigmoid(conv(parts[axis])).reshape(shape))
        return gates

    @torch.jit.unused
    def _forward_fused(self, x: Tensor) -> Tensor:
        return fused.coord(self, x)

    def forward(self, x: Tensor) -> Tensor:
        check_input(x, self.dim, self.channels, "CoordAttention")
        if not torch.jit.is_scripting():
            if fused_enabled(x):
                return self._forward_fused(x)
        gates = self.axis_gates(x)
        out = x
        for axis in range(self.dim - 1, -1, -1):
            out = out * gates[axis]
        return out
