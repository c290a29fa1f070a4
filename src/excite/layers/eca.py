"""Efficient Channel Attention (ECA) and its circular variant (CECA).

Wang, Wu, Zhu, Li, Zuo, Hu. "ECA-Net: Efficient Channel Attention for Deep Convolutional Neural
Networks", CVPR 2020. Official code: BangguWu/ECANet. CECA (circular padding) is a timm addition.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import fused
from .._nd import GateTap, check_dim, check_input, scale_channels, spatial_mean
from .._registry import register
from ..fused import fused_enabled


def adaptive_kernel_size(channels: int, gamma: float = 2, b: float = 1) -> int:
    r"""ECA's :math:`k = \psi(C) = |\log_2(C)/\gamma + b/\gamma|_{odd}`, as the code computes it.

    ``t = int(abs((log2(C) + b) / gamma))``, bumped to ``t + 1`` when even. This equals the paper's
    "nearest odd number" with ties (even ``t``) rounded up. C = 64, 128, 256, 512, 1024, 2048 give
    3, 5, 5, 5, 5, 7. timm additionally clamps the result to at least 3; this function does not.
    """
    t = int(abs((math.log2(channels) + b) / gamma))
    return t if t % 2 else t + 1


@register("eca")
class ECA(nn.Module):
    r"""Efficient Channel Attention: a shared k-tap 1-D convolution across channels, no reduction.

    .. math::

        z = \mathrm{GAP}(x),\qquad
        a_c = \sum_{j=0}^{k-1} w_j\, z_{c + j - (k-1)/2},\qquad
        y = x \odot \sigma(a)

    with zero padding (out-of-range ``z`` are 0) and no bias: exactly ``k`` parameters.

    ``kernel_size=None`` computes k from C with :func:`adaptive_kernel_size` (γ=2, b=1).

    Official-code quirks:

    * The released ``eca_layer(channel, k_size=3)`` **ignores** ``channel``; the released ResNets set k
      per stage by hand (ECA-ResNet-50 uses 3, 5, 5, 7, giving the paper's 80 parameters), which does
      not follow ψ(C) (5, 5, 5, 7). Pass ``kernel_size`` explicitly to reproduce a release.
    * timm's ``EcaModule`` clamps the adaptive k to >= 3, so ``ecaresnet*`` use 5, 5, 5, 7.
    * ``padding="circular"`` gives timm's CECA: channel C-1 wraps round to channel 0.

    Args:
        channels: C; needed only when ``kernel_size`` is None.
        dim: spatial dimensions.
        kernel_size: odd k, or None for the adaptive rule.
        gamma, b: the adaptive rule's constants.
        padding: ``"zeros"`` (official) or ``"circular"`` (CECA).

    Raises:
        ValueError: no ``channels`` and no ``kernel_size``; even or non-positive ``kernel_size``;
            unknown padding; wrong rank or channel count.
    """

    def __init__(
        self,
        channels: Optional[int] = None,
        *,
        dim: int = 2,
        kernel_size: Optional[int] = None,
        gamma: float = 2,
        b: float = 1,
        padding: str = "zeros",
    ) -> None:
        super().__init__()
        check_dim(dim, "ECA")
        if padding not in ("zeros", "circular"):
            raise ValueError(f"ECA: padding must be 'zeros' or 'circular', got {padding!r}")
        if kernel_size is None:
            if channels is None:
                raise ValueError("ECA: pass channels (for the adaptive kernel size) or kernel_size")
            kernel_size = adaptive_kernel_size(channels, gamma, b)
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"ECA: kernel_size must be a positive odd integer, got {kernel_size}")
        self.dim = dim
        self.channels = channels
        self.kernel_size = kernel_size
        self.padding = padding
        self.conv = nn.Conv1d(1, 1, kernel_size=kernel_size, padding=0, bias=False)
        self.tap = GateTap()

    def excitation(self, z: Tensor) -> Tensor:
        """The channel gate (N, C) from the squeezed descriptor (N, C)."""
        half = (self.kernel_size - 1) // 2
        mode = "circular" if self.padding == "circular" else "constant"
        neighbours = F.pad(z.unsqueeze(1), [half, half], mode=mode)
        return self.tap(self.conv(neighbours).squeeze(1).sigmoid())

    @torch.jit.unused
    def _forward_fused(self, x: Tensor) -> Tensor:
        return fused.eca(self, x)

    def forward(self, x: Tensor) -> Tensor:
        check_input(x, self.dim, self.channels, "ECA")
        if not torch.jit.is_scripting():
            if fused_enabled(x):
                return self._forward_fused(x)
        return scale_channels(x, self.excitation(spatial_mean(x)))
