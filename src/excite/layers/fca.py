"""FcaNet: multi-spectral channel attention.

Qin, Zhang, Wu, Li. "FcaNet: Frequency Channel Attention Networks", ICCV 2021. Official code:
cfzd/FcaNet (``model/layer.py``, ``MultiSpectralAttentionLayer``).
"""

from __future__ import annotations

import math
import re
from typing import List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

from .. import fused
from .._nd import (
    GateTap,
    check_channels,
    check_dim,
    check_input,
    fold_adaptive_pool,
    reduced_width,
    scale_channels,
    weighted_spatial_sum,
)
from .._registry import register
from ..fused import fused_enabled

# The official 32-entry tables on the 7x7 reference grid; pairs are (u, v) = (row/height, col/width).
# "top" ranks single frequencies by ImageNet accuracy (two-step selection, FcaNet-TS).
TOP_U = [0, 0, 6, 0, 0, 1, 1, 4, 5, 1, 3, 0, 0, 0, 3, 2, 4, 6, 3, 5, 5, 2, 6, 5, 5, 3, 3, 4, 2, 2, 6, 1]
TOP_V = [0, 1, 0, 5, 2, 0, 2, 0, 0, 6, 0, 4, 6, 3, 5, 2, 6, 3, 3, 3, 5, 1, 1, 2, 4, 2, 1, 1, 3, 0, 5, 3]
LOW_U = [0, 0, 1, 1, 0, 2, 2, 1, 2, 0, 3, 4, 0, 1, 3, 0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 5, 6, 1, 2, 3, 4]
LOW_V = [0, 1, 0, 1, 2, 0, 1, 2, 2, 3, 0, 0, 4, 3, 1, 5, 4, 3, 2, 1, 0, 6, 5, 4, 3, 2, 1, 0, 6, 5, 4, 3]
BOT_U = [6, 1, 3, 3, 2, 4, 1, 2, 4, 4, 5, 1, 4, 6, 2, 5, 6, 1, 6, 2, 2, 4, 3, 3, 5, 5, 6, 2, 5, 5, 3, 6]
BOT_V = [6, 4, 4, 6, 6, 3, 1, 4, 4, 5, 6, 5, 2, 2, 5, 1, 4, 3, 5, 0, 3, 1, 1, 2, 4, 2, 1, 1, 5, 3, 3, 3]
TABLES = {"top": (TOP_U, TOP_V), "low": (LOW_U, LOW_V), "bot": (BOT_U, BOT_V)}
REFERENCE_GRID = 7
_METHOD = re.compile(r"^(top|low|bot)(1|2|4|8|16|32)$")


def named_frequencies(method: str, dim: int = 2) -> List[Tuple[int, ...]]:
    """The official frequency pairs for ``method`` (``"top16"``, ``"low2"``, ...) on the 7x7 grid.

    The tables are 2-D. For ``dim=1`` the row index ``u`` is used (so entries can repeat); for
    ``dim=3`` a DC depth index is prepended, ``(0, u, v)``, i.e. each volume gets the official in-plane
    frequencies averaged over depth.
    """
    match = _METHOD.match(method)
    if match is None:
        raise ValueError(
            f"FCA: frequencies must be top|low|bot followed by 1, 2, 4, 8, 16 or 32 (e.g. 'top16'), "
            f"or a list of index tuples; got {method!r}"
        )
    us, vs = TABLES[match.group(1)]
    count = int(match.group(2))
    pairs = list(zip(us[:count], vs[:count]))
    if dim == 1:
        return [(u,) for u, _ in pairs]
    if dim == 3:
        return [(0, u, v) for u, v in pairs]
    return [(u, v) for u, v in pairs]


def dct_basis(frequency: int, length: int) -> Tensor:
    r"""The orthonormal DCT-II basis vector :math:`B(p) = \cos(\pi f (p + 1/2) / L) / \sqrt{L}`,
    times :math:`\sqrt 2` for ``f > 0``, computed in float64."""
    pos = torch.arange(length, dtype=torch.float64)
    basis = torch.cos(math.pi * frequency * (pos + 0.5) / length) / math.sqrt(length)
    return basis * math.sqrt(2.0) if frequency != 0 else basis


def dct_filters(channels: int, dct_size: Sequence[int], frequencies: Sequence[Sequence[int]]) -> Tensor:
    """The ``(C, *dct_size)`` filter bank: channel block ``k`` (``C // K`` channels, in channel order)
    holds the separable DCT basis of frequency ``k``."""
    count = len(frequencies)
    part = channels // count
    bank = torch.zeros((channels, *dct_size), dtype=torch.float64)
    for k, freq in enumerate(frequencies):
        basis = dct_basis(freq[0], dct_size[0])
        for axis in range(1, len(dct_size)):
            basis = basis.unsqueeze(-1) * dct_basis(freq[axis], dct_size[axis])
        bank[k * part : (k + 1) * part] = basis
    return bank.float()


@register("fca")
class FCA(nn.Module):
    r"""Multi-spectral channel attention (FcaNet): GAP generalised to several 2-D DCT frequencies.

    .. math::

        \tilde x = \mathrm{AdaptiveAvgPool}(x, \text{dct\_size}),\qquad
        z_c = \sum_{i,j} \tilde x_{c,i,j}\, B^{u_k, v_k}_{i,j}\ \ (c \text{ in block } k),\qquad
        y = x \odot \sigma\big(W_2\,\mathrm{ReLU}(W_1 z)\big)

    The channels are split into ``K`` contiguous blocks, block ``k`` pooled with frequency
    ``(u_k, v_k)``. ``B`` is the orthonormal DCT-II basis (``cos(π f (p + ½)/L)/√L``, ``×√2`` for
    ``f > 0``). FCs have **no bias** and hidden width ``C // reduction``.

    Defaults: ``frequencies="top16"`` (all released models), ``dct_size=7`` per axis (the last ResNet
    stage; FcaNet ResNets use 56, 28, 14, 7 by stage), ``reduction=16``.

    Official-code quirks, kept:

    * The descriptor is a **sum**, not a mean: the DC frequency gives ``√(HW)·GAP(x)``, not ``GAP(x)``.
    * Table indices live on a 7x7 grid and are scaled by ``dct_size // 7`` (integer division, so a
      ``dct_size`` that is not a multiple of 7 truncates the scale; below 7 everything collapses to DC).
    * ``u`` indexes height (dim 2) and ``v`` width (dim 3), although the code calls them x and y.
    * Inputs whose size differs from ``dct_size`` are adaptive-average-pooled to it first (windows
      overlap when sizes do not divide, cells repeat when the input is smaller); the product uses the
      **original** ``x``. Here the pooling is folded into the filter bank with pooling matrices built
      from the runtime size, which gives the same numbers and stays correct in exported graphs.
    * The filter bank is a fixed buffer (the official checkpoint stores it as ``dct_layer.weight``).
      ``learnable=True`` makes it a parameter initialised from the DCT (the FAQ's "learnable DCT",
      78.35 top-1 vs 78.57 fixed).

    Explicit ``frequencies`` (a list of index tuples, one entry per axis) are used as absolute indices
    on the ``dct_size`` grid, without the 7-grid scaling.

    Parameters: ``2·C·⌊C/r⌋`` (plus ``C·∏dct_size`` if learnable).

    Raises:
        ValueError: C not divisible by the number of frequencies, an unknown method name, indices out
            of range, ``C < reduction``, wrong rank or channel count.
    """

    def __init__(
        self,
        channels: Optional[int] = None,
        *,
        dim: int = 2,
        dct_size: Union[int, Sequence[int], None] = None,
        frequencies: Union[str, Sequence[Sequence[int]]] = "top16",
        reduction: int = 16,
        learnable: bool = False,
    ) -> None:
        super().__init__()
        check_dim(dim, "FCA")
        channels = check_channels(channels, "FCA")
        if dct_size is None:
            dct_size = (REFERENCE_GRID,) * dim
        elif isinstance(dct_size, int):
            dct_size = (dct_size,) * dim
        dct_size = tuple(int(s) for s in dct_size)
        if len(dct_size) != dim or min(dct_size) < 1:
            raise ValueError(f"FCA: dct_size needs {dim} positive entries for dim={dim}, got {dct_size}")
        if isinstance(frequencies, str):
            scale = [s // REFERENCE_GRID for s in dct_size]
            freqs = [
                tuple(f * sc for f, sc in zip(freq, scale)) for freq in named_frequencies(frequencies, dim)
            ]
        else:
            freqs = [tuple(int(f) for f in freq) for freq in frequencies]
            for freq in freqs:
                if len(freq) != dim or any(f < 0 or f >= s for f, s in zip(freq, dct_size)):
                    raise ValueError(
                        f"FCA: frequency {freq} must have {dim} indices within dct_size {dct_size}"
                    )
        if not freqs:
            raise ValueError("FCA: at least one frequency is needed")
        if channels % len(freqs) != 0:
            raise ValueError(
                f"FCA: channels={channels} must be divisible by the number of frequencies ({len(freqs)})"
            )
        hidden = reduced_width(channels, reduction, "FCA")
        self.dim = dim
        self.channels = channels
        self.dct_size = dct_size
        self.frequencies = freqs
        filters = dct_filters(channels, dct_size, freqs)
        if learnable:
            self.dct_filter = nn.Parameter(filters)
        else:
            self.register_buffer("dct_filter", filters, persistent=False)
        self.fc1 = nn.Linear(channels, hidden, bias=False)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(hidden, channels, bias=False)
        self.tap = GateTap()

    def squeeze(self, x: Tensor) -> Tensor:
        """The multi-spectral descriptor ``z`` (N, C), accumulated in fp32."""
        return weighted_spatial_sum(x, fold_adaptive_pool(self.dct_filter, list(x.shape[2:])))

    def excitation(self, z: Tensor) -> Tensor:
        return self.tap(torch.sigmoid(self.fc2(self.act(self.fc1(z)))))

    @torch.jit.unused
    def _forward_fused(self, x: Tensor) -> Tensor:
        return fused.fca(self, x)

    def forward(self, x: Tensor) -> Tensor:
        check_input(x, self.dim, self.channels, "FCA")
        if not torch.jit.is_scripting():
            if fused_enabled(x):
                return self._forward_fused(x)
        return scale_channels(x, self.excitation(self.squeeze(x).to(x.dtype)))
