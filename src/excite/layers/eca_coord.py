"""ECA + Coordinate Attention: our hybrid ``eca_coord`` (no published reference implementation).

The survey lists "hybrid approaches, e.g. ECA + Coordinate Attention" as an open direction. The closest
published design is ELA, Efficient Local Attention (Wei Xu, Yi Wan, arXiv 2403.01123, 2024): CA's strip
pooling, then one shared depthwise Conv1d **along space** per channel, GroupNorm and a sigmoid per
direction, with no channel reduction. ESCA (Liu, Zhang, Chen, Symmetry 16(8):952, 2024) also pairs
ECA-style local cross-channel interaction with a spatial branch, but its equations are not public.

Ours differs from ELA on purpose: the 1-D convolution runs along the **channel** axis, exactly ECA's
``k = ψ(C)`` tap, separately at every position of each strip. That keeps ECA's "local cross-channel
interaction without reduction" and CA's direction-aware gates, at ``dim·k`` parameters, and it needs no
normalisation layer (so no batch statistics, unlike CA's BatchNorm and ELA's GroupNorm).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import fused
from .._nd import accumulation_dtype, check_channels, check_dim, check_input
from .._registry import register
from ..fused import fused_enabled
from .coord import CoordAttention
from .eca import ECA, adaptive_kernel_size

VARIANTS = ("fused", "serial")


def axis_strips(x: Tensor, dim: int) -> list[Tensor]:
    """One ``(N, C, S_a)`` descriptor per spatial axis ``a``: the mean over every other spatial axis,
    accumulated in at least fp32 (float64 stays float64). In 1-D there is no other axis, so the strip
    is ``x`` itself."""
    out: list[Tensor] = []
    for axis in range(2, dim + 2):
        others: list[int] = []
        for other in range(2, dim + 2):
            if other != axis:
                others.append(other)
        if len(others) == 0:
            out.append(x)
        else:
            strip = x.mean(dim=others, dtype=accumulation_dtype(x)).to(x.dtype)
            out.append(strip.reshape(x.shape[0], x.shape[1], x.shape[axis]))
    return out


class ChannelConv(nn.Module):
    r"""ECA's ``k``-tap convolution across channels, at every position of a strip: ``(N, C, S) → (N, C, S)``.

    .. math:: a_{c,s} = \sum_{j=0}^{k-1} w_j\, z_{c+j-(k-1)/2,\ s}

    zero padding, no bias. Evaluated as the sum of ``k`` channel-shifted copies of the zero-padded strip
    (the strips are small, so this costs nothing), which needs no transposes, exports to ONNX with dynamic
    sizes, and compiles with ``torch.compile(dynamic=True)``: the equivalent ``(k, 1)`` ``conv2d`` over
    the ``(C, S)`` plane makes Inductor (torch 2.14) fail on the symbolic stride order of the size-1
    channel axis. ``weight`` has ECA's layout ``(1, 1, k)`` (an ECA kernel loads directly) and
    ``nn.Conv1d``'s default initialisation, U(±1/√k).
    """

    def __init__(self, kernel_size: int) -> None:
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"ChannelConv: kernel_size must be a positive odd integer, got {kernel_size}")
        self.kernel_size = kernel_size
        self.weight = nn.Parameter(torch.empty(1, 1, kernel_size))
        bound = 1.0 / math.sqrt(kernel_size)
        nn.init.uniform_(self.weight, -bound, bound)

    def forward(self, z: Tensor) -> Tensor:
        half = (self.kernel_size - 1) // 2
        channels = z.shape[1]
        padded = F.pad(z, [0, 0, half, half])
        taps = self.weight.reshape(-1)
        out = padded[:, 0:channels] * taps[0]
        for j in range(1, self.kernel_size):
            out = out + padded[:, j : j + channels] * taps[j]
        return out


class DirectionalECA(nn.Module):
    r"""The directional half of :class:`ECACoord` (``variant="fused"``): an ECA gate per strip position.

    For every spatial axis ``a`` with strip ``z^a \in \mathbb{R}^{N\times C\times S_a}``:

    .. math::

        a^a_{c,s} = \sigma\Big(\sum_{j=0}^{k-1} w^a_j\, z^a_{c+j-(k-1)/2,\ s}\Big),\qquad
        y = x \odot a^{W} \odot a^{H} \ (\odot\, a^{D})

    zero padding across channels, no bias, one ``k``-tap kernel per axis (:class:`ChannelConv`).

    The module has Coordinate Attention's layout, ``conv1 → norm → act`` on the concatenated strips,
    then ``convs[a]`` and a sigmoid per axis, with the first three the identity. So the fused
    Coordinate-Attention kernels (:func:`excite.fused.coord`: strip sums, per-axis gates, the gating
    product and its closed-form backward) run it unchanged in 2-D and 3-D; ``use_reference`` (and every
    1-D input) gives the plain path below.

    Raises:
        ValueError: even or non-positive ``kernel_size``, wrong rank or channel count.
    """

    def __init__(self, channels: int, *, dim: int = 2, kernel_size: int = 3) -> None:
        super().__init__()
        check_dim(dim, "DirectionalECA")
        channels = check_channels(channels, "DirectionalECA")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"DirectionalECA: kernel_size must be a positive odd integer, got {kernel_size}")
        self.dim = dim
        self.channels = channels
        self.kernel_size = kernel_size
        # CA's embedding step, reduced to nothing: no channel reduction, no normalisation.
        self.conv1 = nn.Identity()
        self.norm = nn.Identity()
        self.act = nn.Identity()
        self.convs = nn.ModuleList([ChannelConv(kernel_size) for _ in range(dim)])

    def strips(self, x: Tensor) -> list[Tensor]:
        return axis_strips(x, self.dim)

    def axis_gates(self, x: Tensor) -> list[Tensor]:
        """The per-axis gates, each shaped to broadcast against ``x`` (``(N, C, H, 1)``, ``(N, C, 1, W)``)."""
        strips = self.strips(x)
        gates: list[Tensor] = []
        for axis, conv in enumerate(self.convs):
            shape = [x.shape[0], self.channels]
            for other in range(self.dim):
                shape.append(strips[other].shape[2] if other == axis else 1)
            gates.append(torch.sigmoid(conv(strips[axis])).reshape(shape))
        return gates

    @torch.jit.unused
    def _forward_fused(self, x: Tensor) -> Tensor:
        return fused.coord(self, x)

    def forward(self, x: Tensor) -> Tensor:
        check_input(x, self.dim, self.channels, "DirectionalECA")
        # In 1-D the gate is per element and the fused 1-D CA kernel hard-codes CA's 1x1 convolution in its
        # backward, so 1-D inputs take the reference path.
        if not torch.jit.is_scripting():
            if self.dim > 1 and fused_enabled(x):
                return self._forward_fused(x)
        gates = self.axis_gates(x)
        out = x
        # W first, then H, then D: Coordinate Attention's official left-to-right order.
        for axis in range(self.dim - 1, -1, -1):
            out = out * gates[axis]
        return out


@register("eca_coord")
class ECACoord(nn.Module):
    r"""ECA + Coordinate Attention hybrid: direction-aware gates from ECA-style channel convolutions.

    ``variant="fused"`` (default; applications.md §9, "fused"): CA's strip pooling, then in place of CA's
    shared ``C → C/r`` bottleneck, an ECA convolution across channels at every strip position, one
    sigmoid gate per direction. For 2-D input:

    .. math::

        z^h_c(h) = \tfrac1W \sum_w x_c(h, w),\qquad z^w_c(w) = \tfrac1H \sum_h x_c(h, w)

        a^h = \sigma\big(\mathrm{Conv1D}^{h}_{k,\,\text{channels}}(z^h)\big),\qquad
        a^w = \sigma\big(\mathrm{Conv1D}^{w}_{k,\,\text{channels}}(z^w)\big),\qquad
        y = (x \odot a^w) \odot a^h

    with ``k = ψ(C) = |log2(C)/γ + b/γ|_odd`` (γ=2, b=1, as :func:`excite.layers.adaptive_kernel_size`),
    zero padding, no bias, no reduction and no normalisation: ``dim·k`` parameters (6 for C=64 in 2-D).
    In 3-D each of D, H, W gets its strip (mean over the other two) and gate; in 1-D the strip is the
    input itself, so the gate is per position and channel, as in CA.

    ``variant="serial"``: ``y = CA(ECA(x))``, ECA's channel recalibration followed by the full
    Coordinate Attention (``reduction=32``, mid width floor 8, BatchNorm, h-swish unless overridden).
    Parameters ``k`` + CA's.

    Design choices where nothing is published (documented because they are ours):

    * The channel convolution is per axis (``dim`` kernels), not shared between H and W as ELA's
      spatial convolution is: a gate along H and one along W see differently pooled statistics.
    * No GroupNorm (ELA) or BatchNorm (CA): ECA has none and the gate stays batch independent.
    * Initialisation: PyTorch's Conv1d default, as ECA.

    Closest published design: ELA (Xu & Wan, arXiv 2403.01123), whose 1-D convolution runs along
    space per channel; ours runs along channels per position (ECA's axis). The proposal is in
    applications.md §9 of the project spec.

    Args:
        channels: C.
        dim: spatial dimensions (1, 2 or 3).
        variant: ``"fused"`` or ``"serial"``.
        kernel_size: odd k, or None for ``ψ(C)``.
        gamma, b: the adaptive rule's constants.
        reduction, min_hidden, norm, activation: CA's options, ``"serial"`` only (defaults 32, 8,
            ``"batch"``, ``"hardswish"``).

    Raises:
        ValueError: unknown variant, CA options with ``variant="fused"``, an invalid kernel size, wrong
            rank or channel count.
    """

    def __init__(
        self,
        channels: int | None = None,
        *,
        dim: int = 2,
        variant: str = "fused",
        kernel_size: int | None = None,
        gamma: float = 2,
        b: float = 1,
        reduction: int | None = None,
        min_hidden: int | None = None,
        norm: str | None = None,
        activation: str | None = None,
    ) -> None:
        super().__init__()
        check_dim(dim, "ECACoord")
        channels = check_channels(channels, "ECACoord")
        if variant not in VARIANTS:
            raise ValueError(f"ECACoord: variant must be one of {VARIANTS}, got {variant!r}")
        coord_options = {
            "reduction": reduction,
            "min_hidden": min_hidden,
            "norm": norm,
            "activation": activation,
        }
        given = sorted(name for name, value in coord_options.items() if value is not None)
        if variant == "fused" and given:
            raise ValueError(
                f"ECACoord: {given} configure Coordinate Attention and apply only to variant='serial'; "
                f"got variant='fused'"
            )
        if kernel_size is None:
            kernel_size = adaptive_kernel_size(channels, gamma, b)
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"ECACoord: kernel_size must be a positive odd integer, got {kernel_size}")
        self.dim = dim
        self.channels = channels
        self.variant = variant
        self.kernel_size = kernel_size
        self.channel: nn.Module
        self.directional: nn.Module
        if variant == "fused":
            self.channel = nn.Identity()
            self.directional = DirectionalECA(channels, dim=dim, kernel_size=kernel_size)
        else:
            defaults = {"reduction": 32, "min_hidden": 8, "norm": "batch", "activation": "hardswish"}
            options = {
                name: defaults[name] if value is None else value for name, value in coord_options.items()
            }
            self.channel = ECA(channels, dim=dim, kernel_size=kernel_size)
            self.directional = CoordAttention(channels, dim=dim, **options)

    def axis_gates(self, x: Tensor) -> list[Tensor]:
        """The directional gates for input ``x`` (after the ECA stage in the serial variant), each
        shaped to broadcast against ``x``, in axis order (H before W)."""
        return self.directional.axis_gates(self.channel(x))

    def forward(self, x: Tensor) -> Tensor:
        check_input(x, self.dim, self.channels, "ECACoord")
        return self.directional(self.channel(x))
