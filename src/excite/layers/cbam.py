"""CBAM: Convolutional Block Attention Module (the usual comparator).

Woo, Park, Lee, Kweon. "CBAM: Convolutional Block Attention Module", ECCV 2018. Official code:
Jongchan/attention-module (``MODELS/cbam.py``).
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import Tensor, nn

from .. import fused
from .._nd import (
    GateTap,
    accumulation_dtype,
    check_channels,
    check_dim,
    check_input,
    conv_nd,
    reduced_width,
    scale_channels,
    spatial_amax,
    spatial_mean,
)
from .._registry import register
from ..fused import fused_enabled

_BATCHNORM = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}


@register("cbam")
class CBAM(nn.Module):
    r"""CBAM: a channel gate from average- and max-pooled descriptors, then a spatial gate.

    .. math::

        M_c = \sigma\big(\mathrm{MLP}(\mathrm{AvgPool}(x)) + \mathrm{MLP}(\mathrm{MaxPool}(x))\big),\qquad
        x' = x \odot M_c

        M_s = \sigma\big(\mathrm{BN}(f^{7\times 7}([\max_c x';\ \mathrm{mean}_c x']))\big),\qquad
        y = x' \odot M_s

    ``MLP`` is shared: ``Linear(C, C//r) → ReLU → Linear(C//r, C)``. ``f`` is a ``k x k`` convolution
    from 2 maps to 1, zero-padded to keep the size, without bias, followed by BatchNorm.

    Defaults follow the official ``MODELS/cbam.py``: ``reduction=16``, ``spatial_kernel=7``, MLP with
    biases, channel pool order **[max, mean]** (the paper writes [avg; max]), BatchNorm with
    ``eps=1e-5, momentum=0.01`` after the spatial conv, no ReLU there.

    Peer differences, available as options: timm's ``CbamModule`` has no MLP biases
    (``mlp_bias=False``), concatenates **[mean, max]** (``spatial_pool_order=("mean", "max")``) and
    rounds the hidden width (``hidden_channels``); External-Attention's ``CBAMBlock`` defaults to a
    49-wide kernel and adds an extra residual, which is not CBAM as published.

    ``spatial=False`` keeps only the channel gate (the official ``no_spatial`` option).

    Parameters: ``2·C·⌊C/r⌋ + ⌊C/r⌋ + C`` (MLP with bias) ``+ 2·k^dim`` (conv) ``+ 2`` (BN).

    Raises:
        ValueError: ``C < reduction``, even ``spatial_kernel``, a bad pool order, wrong rank or
            channel count.
    """

    def __init__(
        self,
        channels: Optional[int] = None,
        *,
        dim: int = 2,
        reduction: int = 16,
        spatial_kernel: int = 7,
        hidden_channels: Optional[int] = None,
        mlp_bias: bool = True,
        spatial_pool_order: Sequence[str] = ("max", "mean"),
        spatial: bool = True,
    ) -> None:
        super().__init__()
        check_dim(dim, "CBAM")
        channels = check_channels(channels, "CBAM")
        if hidden_channels is None:
            hidden_channels = reduced_width(channels, reduction, "CBAM")
        if spatial_kernel < 1 or spatial_kernel % 2 == 0:
            raise ValueError(f"CBAM: spatial_kernel must be a positive odd integer, got {spatial_kernel}")
        order = tuple(spatial_pool_order)
        if sorted(order) != ["max", "mean"]:
            raise ValueError(f"CBAM: spatial_pool_order must order 'max' and 'mean', got {order}")
        self.dim = dim
        self.channels = channels
        self.max_first = order[0] == "max"
        self.fc1 = nn.Linear(channels, hidden_channels, bias=mlp_bias)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(hidden_channels, channels, bias=mlp_bias)
        self.tap = GateTap()
        self.use_spatial = spatial
        if spatial:
            self.spatial_conv = conv_nd(dim)(
                2, 1, spatial_kernel, padding=(spatial_kernel - 1) // 2, bias=False
            )
            self.spatial_norm = _BATCHNORM[dim](1, eps=1e-5, momentum=0.01)
        else:
            self.spatial_conv = nn.Identity()
            self.spatial_norm = nn.Identity()

    def mlp(self, z: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(z)))

    def channel_gate(self, x: Tensor) -> Tensor:
        """``M_c`` as ``(N, C)``."""
        return self.tap(torch.sigmoid(self.mlp(spatial_mean(x)) + self.mlp(spatial_amax(x))))

    def spatial_gate(self, x: Tensor) -> Tensor:
        """``M_s`` as ``(N, 1, *spatial)``."""
        channel_max = x.amax(dim=1, keepdim=True)
        channel_mean = x.mean(dim=1, keepdim=True, dtype=accumulation_dtype(x)).to(x.dtype)
        if self.max_first:
            pooled = torch.cat([channel_max, channel_mean], dim=1)
        else:
            pooled = torch.cat([channel_mean, channel_max], dim=1)
        return torch.sigmoid(self.spatial_norm(self.spatial_conv(pooled)))

    @torch.jit.unused
    def _forward_fused(self, x: Tensor) -> Tensor:
        return fused.cbam(self, x)

    def forward(self, x: Tensor) -> Tensor:
        check_input(x, self.dim, self.channels, "CBAM")
        if not torch.jit.is_scripting():
            if fused_enabled(x):
                return self._forward_fused(x)
        out = scale_channels(x, self.channel_gate(x))
        if self.use_spatial:
            out = out * self.spatial_gate(out)
        return out
