"""SPSE and RGSE: richer spatial pooling for the SE squeeze.

Jin, Xie, Wei, Zhao, Chen, Tan. "Delving deep into spatial pooling for squeeze-and-excitation
networks", Pattern Recognition 121:108159, 2022. Official code: megvii-research/RG-SENet_SP-SENet
(``spse_resnet.py``, ``rgse_resnet.py``).
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import fused
from .._nd import (
    GateTap,
    PooledBatchNorm,
    accumulation_dtype,
    check_channels,
    check_dim,
    check_input,
    conv_nd,
    fold_adaptive_pool,
    reduced_width,
    scale_channels,
    weighted_spatial_sum,
    window_mean,
)
from .._registry import register
from ..fused import fused_enabled


class _PooledSE(nn.Module):
    """The shared excitation of SPSE and RGSE: ReLU → FC(C→C/r, bias) → ReLU → FC(C/r→C, bias) → σ."""

    def __init__(self, channels: int, reduction: int, name: str) -> None:
        super().__init__()
        hidden = reduced_width(channels, reduction, name)
        self.fc1 = nn.Linear(channels, hidden)
        self.fc2 = nn.Linear(hidden, channels)
        self.tap = GateTap()

    def excitation(self, z: Tensor) -> Tensor:
        return self.tap(torch.sigmoid(self.fc2(F.relu(self.fc1(F.relu(z))))))


@register("spse")
class SPSE(_PooledSE):
    r"""Spatial-pyramid SE: 1x1, 2x2 and 4x4 average-pooled descriptors fused by learned weights.

    .. math::

        z = \mathrm{BN}\Big(\sum_{k \in \{1,2,4\}}
            \mathrm{DWConv}_k\big(\mathrm{AdaptiveAvgPool}_k(x)\big)\Big),
        \qquad s = \sigma\big(W_2\,\mathrm{ReLU}(W_1\,\mathrm{ReLU}(z) + b_1) + b_2\big),\qquad y = x \odot s

    ``DWConv_k`` is a depthwise convolution with a k x k kernel and bias that collapses level k to one
    value per channel, i.e. a learned per-channel weighted sum of its ``k²`` cells: 21 taps and 3
    biases per channel in 2-D. In 1-D and 3-D the pyramid has ``k`` and ``k³`` cells per level.

    Defaults follow ``spse_resnet.py``: levels (1, 2, 4), ``reduction=16``, FCs with bias, BatchNorm
    after the fused descriptor.

    Implementation note: pooling and the depthwise convolutions are folded into one ``(C, *spatial)``
    filter bank at the input's size (:func:`excite._nd.fold_adaptive_pool`), so the input is read once;
    the result equals pool-then-convolve.

    Batch size 1 in training: BatchNorm sees one value per channel there; :class:`PooledBatchNorm`
    then normalises with its running statistics (and leaves them unchanged) instead of failing.

    Parameters: SE's ``2·C·⌊C/r⌋ + ⌊C/r⌋ + C`` plus ``Σ_k (k^dim + 1)·C`` fusion weights and biases plus
    ``2·C`` BN, i.e. SE + ``26·C`` in 2-D.

    Raises:
        ValueError: ``C < reduction``, wrong rank or channel count.
    """

    def __init__(
        self,
        channels: Optional[int] = None,
        *,
        dim: int = 2,
        reduction: int = 16,
        levels: Sequence[int] = (1, 2, 4),
    ) -> None:
        check_dim(dim, "SPSE")
        channels = check_channels(channels, "SPSE")
        super().__init__(channels, reduction, "SPSE")
        self.dim = dim
        self.channels = channels
        self.levels = tuple(int(k) for k in levels)
        conv = conv_nd(dim)
        self.fusion = nn.ModuleList(
            [conv(channels, channels, kernel_size=k, groups=channels, bias=True) for k in self.levels]
        )
        self.norm = PooledBatchNorm(channels)

    def squeeze(self, x: Tensor) -> Tensor:
        """The fused pyramid descriptor before BN, ``(N, C)`` in at least fp32."""
        size = list(x.shape[2:])
        accumulate = accumulation_dtype(x)
        weight = torch.zeros([self.channels] + size, dtype=accumulate, device=x.device)
        bias = torch.zeros([self.channels], dtype=accumulate, device=x.device)
        for conv in self.fusion:
            weight = weight + fold_adaptive_pool(conv.weight.to(accumulate).squeeze(1), size)
            conv_bias = conv.bias
            if conv_bias is not None:
                bias = bias + conv_bias.to(accumulate)
        return weighted_spatial_sum(x, weight) + bias

    @torch.jit.unused
    def _forward_fused(self, x: Tensor) -> Tensor:
        return fused.spse(self, x)

    def forward(self, x: Tensor) -> Tensor:
        check_input(x, self.dim, self.channels, "SPSE")
        if not torch.jit.is_scripting():
            if fused_enabled(x):
                return self._forward_fused(x)
        z = self.norm(self.squeeze(x).to(x.dtype))
        return scale_channels(x, self.excitation(z))


@register("rgse")
class RGSE(_PooledSE):
    r"""Resolution-guided SE: fixed-window average pooling, then a learned strided fusion to one value.

    .. math::

        z = \mathrm{BN}\big(\mathrm{DWConv}_{k,\,\mathrm{stride}\,k}
            (\mathrm{AvgPool}_{7,\,\mathrm{stride}\,7}(x))\big),
        \qquad s = \sigma\big(W_2\,\mathrm{ReLU}(W_1\,\mathrm{ReLU}(z) + b_1) + b_2\big),\qquad y = x \odot s

    The official ResNets pool with a fixed 7x7 window, so at 224 input the pooled maps are 8x8, 4x4,
    2x2 and 1x1 in stages 1-4, fused by depthwise k x k convolutions (no bias) with k = 8, 4, 2 and
    BatchNorm. Stage 4 has **no** fusion conv and no BN (``fusion_kernel=None``, the default here),
    but still applies the ReLU to the pooled value.

    The fused descriptor must come out at one value per channel, which ties the module to its input
    resolution as in the official code (``pool_size x fusion_kernel`` per axis, e.g. 56 for k=8). Other
    sizes raise a ValueError rather than silently pooling differently.

    Batch size 1 in training: see :class:`SPSE` (the BN after the fusion conv uses
    :class:`PooledBatchNorm`).

    Parameters: SE's ``2·C·⌊C/r⌋ + ⌊C/r⌋ + C`` plus ``(k^dim + 2)·C`` with a fusion conv.

    Raises:
        ValueError: ``C < reduction``, an input too small for the pooling window, a descriptor with
            more than one value per channel, wrong rank or channel count.
    """

    def __init__(
        self,
        channels: Optional[int] = None,
        *,
        dim: int = 2,
        reduction: int = 16,
        pool_size: int = 7,
        fusion_kernel: Optional[int] = None,
    ) -> None:
        check_dim(dim, "RGSE")
        channels = check_channels(channels, "RGSE")
        super().__init__(channels, reduction, "RGSE")
        self.dim = dim
        self.channels = channels
        self.pool_size = pool_size
        self.fusion_kernel = fusion_kernel
        if fusion_kernel is not None:
            self.fusion = conv_nd(dim)(
                channels,
                channels,
                kernel_size=fusion_kernel,
                stride=fusion_kernel,
                groups=channels,
                bias=False,
            )
            self.norm = PooledBatchNorm(channels)
        else:
            self.fusion = nn.Identity()
            self.norm = nn.Identity()

    @torch.jit.unused
    def _forward_fused(self, x: Tensor) -> Tensor:
        return fused.rgse(self, x)

    def forward(self, x: Tensor) -> Tensor:
        check_input(x, self.dim, self.channels, "RGSE")
        if not torch.jit.is_scripting():
            if fused_enabled(x):
                return self._forward_fused(x)
        if min(x.shape[2:]) < self.pool_size:
            raise ValueError(
                f"RGSE: spatial size {list(x.shape[2:])} is smaller than the {self.pool_size}-wide "
                "pooling window"
            )
        pooled = window_mean(x, self.pool_size)
        descriptor = self.norm(self.fusion(pooled))
        if descriptor.numel() != x.shape[0] * x.shape[1]:
            raise ValueError(
                f"RGSE: the pooled descriptor has {list(descriptor.shape[2:])} values per channel, not 1; "
                f"with pool_size={self.pool_size} and fusion_kernel={self.fusion_kernel} the input must be "
                f"pool_size x fusion_kernel per axis (got {list(x.shape[2:])})"
            )
        z = descriptor.reshape(x.shape[0], x.shape[1])
        return scale_channels(x, self.excitation(z))
