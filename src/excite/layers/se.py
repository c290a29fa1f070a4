"""Squeeze-and-Excitation (SE) and its segmentation name, channel SE (cSE).

Hu, Shen, Sun. "Squeeze-and-Excitation Networks", CVPR 2018 / TPAMI 2019. Official code: Caffe,
hujie-frank/SENet. cSE: Roy, Navab, Wachinger, "Concurrent Spatial and Channel 'Squeeze & Excitation'
in Fully Convolutional Networks", MICCAI 2018; official code ai-med/squeeze_and_excitation.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from .. import fused
from .._nd import (
    GateTap,
    check_channels,
    check_dim,
    check_input,
    make_activation,
    make_gate,
    reduced_width,
    scale_channels,
    spatial_mean,
)
from .._registry import register
from ..fused import fused_enabled


@register("se")
class SE(nn.Module):
    r"""Squeeze-and-Excitation, for ``(N, C, L)``, ``(N, C, H, W)`` and ``(N, C, D, H, W)``.

    .. math::

        z = \mathrm{GAP}(x) \in \mathbb{R}^{N\times C},\quad
        s = \sigma\big(W_2\,\delta(W_1 z + b_1) + b_2\big),\quad
        y = x \odot s

    with :math:`W_1 \in \mathbb{R}^{C/r \times C}`, :math:`W_2 \in \mathbb{R}^{C \times C/r}`,
    :math:`\delta` = ReLU and :math:`\sigma` = sigmoid.

    Defaults follow the official release: ``reduction=16`` in every released model ("We set r=16 in
    all our models"), hidden width ``C // r`` (floor), biases on both FCs (Caffe ``bias_term`` default).

    Official-code quirks and how to get each variant:

    * **Biases.** The Caffe models have FC biases; the ECA and FcaNet papers count SE-ResNet-50 without
      them (28,071,976 params vs 28,088,024). ``bias=False`` gives that variant.
    * **Hidden width.** timm rounds with ``make_divisible(C/16, 8)`` (C=64 gives 8, not 4); pass
      ``hidden_channels`` to reproduce it. torchvision's MobileNetV3 uses ``_make_divisible(C//4, 8)``
      with ``gate="hardsigmoid"``.
    * **FC form.** The official model uses 1x1 convolutions; here they are ``nn.Linear`` on the pooled
      vector, the same arithmetic for every dim. :func:`excite.load_official` reshapes 1x1 kernels.

    Parameters: ``2·C·⌊C/r⌋ + ⌊C/r⌋ + C`` with bias, ``2·C·⌊C/r⌋`` without.

    Args:
        channels: C.
        dim: spatial dimensions (1, 2 or 3).
        reduction: r, the bottleneck ratio.
        hidden_channels: overrides the bottleneck width ``C // reduction``.
        bias: biases on both FCs.
        gate: ``"sigmoid"`` or ``"hardsigmoid"``.
        activation: the hidden activation δ (``"relu"``, ``"silu"``, ``"hardswish"``, ...).

    Raises:
        ValueError: ``C < reduction`` (a 0-wide bottleneck), an unknown activation or gate, and at
            call time a wrong rank or channel count.
    """

    def __init__(
        self,
        channels: Optional[int] = None,
        *,
        dim: int = 2,
        reduction: int = 16,
        hidden_channels: Optional[int] = None,
        bias: bool = True,
        gate: str = "sigmoid",
        activation: str = "relu",
    ) -> None:
        super().__init__()
        name = type(self).__name__
        check_dim(dim, name)
        channels = check_channels(channels, name)
        if hidden_channels is None:
            hidden_channels = reduced_width(channels, reduction, name)
        elif hidden_channels < 1:
            raise ValueError(f"{name}: hidden_channels must be >= 1, got {hidden_channels}")
        self._name = name
        self.dim = dim
        self.channels = channels
        self.hidden_channels = hidden_channels
        self.fc1 = nn.Linear(channels, hidden_channels, bias=bias)
        self.act = make_activation(activation, name)
        self.fc2 = nn.Linear(hidden_channels, channels, bias=bias)
        self.gate = make_gate(gate, name)
        self.tap = GateTap()

    def excitation(self, z: Tensor) -> Tensor:
        """The channel gate ``s`` (N, C) from the squeezed descriptor ``z`` (N, C)."""
        return self.tap(self.gate(self.fc2(self.act(self.fc1(z)))))

    @torch.jit.unused
    def _forward_fused(self, x: Tensor) -> Tensor:
        return fused.se(self, x)

    def forward(self, x: Tensor) -> Tensor:
        check_input(x, self.dim, self.channels, self._name)
        if not torch.jit.is_scripting():
            if fused_enabled(x):
                return self._forward_fused(x)
        return scale_channels(x, self.excitation(spatial_mean(x)))


@register("cse")
class ChannelSE(SE):
    r"""Channel SE (cSE): spatial squeeze, channel excitation, as in Roy et al.'s U-Nets.

    The arithmetic is SE's, :math:`y = x \odot \sigma(W_2\,\mathrm{ReLU}(W_1\,\mathrm{GAP}(x)+b_1)+b_2)`,
    with the official ai-med defaults: ``reduction=2`` (hidden width ``C // 2``) and ``nn.Linear`` FCs
    with bias. MONAI's ``ChannelSELayer`` uses the same defaults. Parameters: ``2·C·⌊C/2⌋ + ⌊C/2⌋ + C``.

    Args and Raises: as :class:`SE`.
    """

    def __init__(
        self,
        channels: Optional[int] = None,
        *,
        dim: int = 2,
        reduction: int = 2,
        hidden_channels: Optional[int] = None,
        bias: bool = True,
        gate: str = "sigmoid",
        activation: str = "relu",
    ) -> None:
        super().__init__(
            channels,
            dim=dim,
            reduction=reduction,
            hidden_channels=hidden_channels,
            bias=bias,
            gate=gate,
            activation=activation,
        )
