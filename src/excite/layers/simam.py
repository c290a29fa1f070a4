"""SimAM: a simple, parameter-free attention module.

Yang, Zhang, Li, Xie. "SimAM: A Simple, Parameter-Free Attention Module for Convolutional Neural
Networks", ICML 2021. Official code: ZjjConan/SimAM (``networks/attentions/simam_module.py``).
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from .. import fused
from .._nd import accumulation_dtype, check_dim, check_input, spatial_axes
from .._registry import register
from ..fused import fused_enabled


@register("simam")
class SimAM(nn.Module):
    r"""SimAM: every neuron is weighted by the inverse of its minimal energy; no parameters.

    .. math::

        n = HW - 1,\quad \mu = \mathrm{mean}_{HW}(x),\quad d = (x - \mu)^2,\quad
        v = \tfrac1n \textstyle\sum_{HW} d

        E^{-1} = \frac{d}{4(v + \lambda)} + \frac12,\qquad y = x \odot \sigma(E^{-1})

    which is :math:`1/e^*_t` with :math:`e^*_t = 4(\sigma^2+\lambda) / ((t-\mu)^2 + 2\sigma^2 + 2\lambda)`.
    Statistics are per sample and per channel over the whole spatial extent (``n`` = number of
    positions - 1 in 1-D and 3-D as well), including the neuron itself, in the official order:
    ``d.sum / n``, ``+ λ``, ``× 4``, ``d / (...)``, ``+ 0.5``.

    Default ``lambda_=1e-4`` (the module's default and the paper's ablation optimum). Note: the
    official ImageNet training commands and mmdetection configs use **λ = 0.1**, so the released
    checkpoints appear to be trained with 0.1; pass ``lambda_=0.1`` to reproduce them.

    Precision: the statistics and the energy are computed in at least fp32 (fp64 stays fp64), then the
    output is cast back, because ``(x - μ)²`` overflows fp16 for ``|x - μ| > 256`` (peer
    implementations return inf/NaN there).

    ``channels`` is optional (no parameters depend on it); when given, inputs are checked against it.

    Raises:
        ValueError: a single spatial position (``n = 0``: the official code divides 0 by 0 and returns
            NaN), wrong rank, or a channel count different from ``channels``.
    """

    def __init__(self, channels: Optional[int] = None, *, dim: int = 2, lambda_: float = 1e-4) -> None:
        super().__init__()
        check_dim(dim, "SimAM")
        if lambda_ < 0:
            raise ValueError(f"SimAM: lambda_ must be >= 0, got {lambda_}")
        self.dim = dim
        self.channels = channels
        self.lambda_ = float(lambda_)

    def attention(self, x: Tensor) -> Tensor:
        """The 3-D weight ``σ(E⁻¹)`` in at least fp32, same shape as ``x``."""
        positions = 1
        for size in x.shape[2:]:
            positions = positions * size
        if positions == 1:
            raise ValueError(
                f"SimAM: needs more than one spatial position per channel (n = positions - 1 = 0 "
                f"divides by zero); got shape {list(x.shape)}"
            )
        n = positions - 1
        axes = spatial_axes(self.dim)
        xf = x.to(accumulation_dtype(x))
        squared_deviation = (xf - xf.mean(dim=axes, keepdim=True)).pow(2)
        variance = squared_deviation.sum(dim=axes, keepdim=True) / n
        energy_inverse = squared_deviation / (4 * (variance + self.lambda_)) + 0.5
        return torch.sigmoid(energy_inverse)

    @torch.jit.unused
    def _forward_fused(self, x: Tensor) -> Tensor:
        return fused.simam(self, x)

    def forward(self, x: Tensor) -> Tensor:
        check_input(x, self.dim, self.channels, "SimAM")
        if not torch.jit.is_scripting():
            if fused_enabled(x):
                return self._forward_fused(x)
        return (x.to(accumulation_dtype(x)) * self.attention(x)).to(x.dtype)
