"""Spatial SE (sSE) and concurrent spatial and channel SE (scSE).

Roy, Navab, Wachinger. "Concurrent Spatial and Channel 'Squeeze & Excitation' in Fully Convolutional
Networks", MICCAI 2018 (arXiv 1803.02579), and "Recalibrating Fully Convolutional Networks with Spatial
and Channel 'Squeeze and Excitation' Blocks", IEEE TMI 38(2), 2019 (arXiv 1808.08127).
Official code: ai-med/squeeze_and_excitation (2-D and 3-D).
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from .. import fused
from .._nd import check_channels, check_dim, check_input, conv_nd, reduced_width
from .._registry import register
from ..fused import fused_enabled
from .se import ChannelSE


@register("sse")
class SpatialSE(nn.Module):
    r"""Spatial SE (sSE): channel squeeze, spatial excitation.

    .. math:: q = \sigma(w^\top x_{:,i} + b) \in \mathbb{R}^{N\times 1\times \ldots},\qquad y = x \odot q

    A 1x1 convolution ``C -> 1`` with bias, a sigmoid, and a product broadcast over channels. One gate
    value per position, so the module commutes with any permutation of the channels that also permutes
    ``w``. Parameters: ``C + 1``.

    Official-code quirk: ``SpatialSELayer.forward(x, weights=None)`` can take external few-shot weights,
    averaged over dim 0 and used without bias. That path is not reproduced; load such weights into
    ``conv.weight`` instead.

    Raises:
        ValueError: wrong rank or channel count at call time.
    """

    def __init__(self, channels: Optional[int] = None, *, dim: int = 2) -> None:
        super().__init__()
        name = type(self).__name__
        check_dim(dim, name)
        self.dim = dim
        self.channels = check_channels(channels, name)
        self.conv = conv_nd(dim)(self.channels, 1, kernel_size=1, bias=True)

    def spatial_gate(self, x: Tensor) -> Tensor:
        """The gate ``q`` of shape ``(N, 1, *spatial)``."""
        return torch.sigmoid(self.conv(x))

    @torch.jit.unused
    def _forward_fused(self, x: Tensor) -> Tensor:
        return fused.sse(self, x)

    def forward(self, x: Tensor) -> Tensor:
        check_input(x, self.dim, self.channels, "SpatialSE")
        if not torch.jit.is_scripting():
            if fused_enabled(x):
                return self._forward_fused(x)
        return x * self.spatial_gate(x)


AGGREGATIONS = ("max", "add", "mul", "concat")


@register("scse")
class SCSE(nn.Module):
    r"""Concurrent spatial and channel SE (scSE): cSE and sSE side by side, then aggregated.

    .. math:: \hat x_c = \mathrm{cSE}(x),\quad \hat x_s = \mathrm{sSE}(x),\quad
              y = \mathrm{agg}(\hat x_c, \hat x_s)

    ``aggregation``:

    * ``"max"`` (default, official code ``torch.max`` since its first commit; reported best in TMI
      2019): element-wise max-out. The effective gate ``y / x`` stays in [0, 1].
    * ``"add"`` (MICCAI 2018 paper, and segmentation_models_pytorch's ``SCSEModule``, which computes
      ``x*cSE + x*sSE``): the effective gate lies in [0, 2].
    * ``"mul"`` (TMI 2019): the element-wise product of the two recalibrated maps, ``x² · s · q``.
    * ``"concat"`` (TMI 2019): the two maps stacked along channels, so the output has **2C** channels
      and the next layer must be widened accordingly.

    Defaults follow the official code: ``reduction=2`` for the cSE branch. smp uses ``reduction=16``.
    Parameters: cSE ``2·C·⌊C/r⌋ + ⌊C/r⌋ + C`` plus sSE ``C + 1``.

    Raises:
        ValueError: unknown aggregation, ``C < reduction``, wrong rank or channel count.
    """

    def __init__(
        self,
        channels: Optional[int] = None,
        *,
        dim: int = 2,
        reduction: int = 2,
        aggregation: str = "max",
    ) -> None:
        super().__init__()
        name = type(self).__name__
        check_dim(dim, name)
        if aggregation not in AGGREGATIONS:
            raise ValueError(f"{name}: aggregation must be one of {AGGREGATIONS}, got {aggregation!r}")
        self.dim = dim
        self.channels = check_channels(channels, name)
        reduced_width(self.channels, reduction, name)  # so that C < r is reported as SCSE's error
        self.aggregation = aggregation
        self.cse = ChannelSE(self.channels, dim=dim, reduction=reduction)
        self.sse = SpatialSE(self.channels, dim=dim)

    @torch.jit.unused
    def _forward_fused(self, x: Tensor) -> Tensor:
        return fused.scse(self, x)

    def forward(self, x: Tensor) -> Tensor:
        check_input(x, self.dim, self.channels, "SCSE")
        if not torch.jit.is_scripting():
            if fused_enabled(x):
                return self._forward_fused(x)
        channel_recalibrated = self.cse(x)
        spatial_recalibrated = self.sse(x)
        if self.aggregation == "max":
            return torch.maximum(channel_recalibrated, spatial_recalibrated)
        if self.aggregation == "add":
            return channel_recalibrated + spatial_recalibrated
        if self.aggregation == "mul":
            return channel_recalibrated * spatial_recalibrated
        return torch.cat([channel_recalibrated, spatial_recalibrated], dim=1)
