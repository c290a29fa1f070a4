"""Views shared by every fused function: ``(N, C, *spatial)`` as ``(N, C, S)``, in either memory layout.

A kernel walks its unit-stride axis in the inner loop: positions for contiguous tensors ("NCS"),
channels for channels_last ones ("NSC"). Outputs are allocated with ``torch.empty_like`` so they keep
the input's layout, and gradients arriving in another layout are copied into the input's.
"""

from __future__ import annotations

import torch
from torch import Tensor


def accumulation_dtype(x: Tensor) -> torch.dtype:
    """float32 for every input dtype except float64, which keeps float64 (gradcheck)."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def as_rows(x: Tensor) -> tuple[Tensor, Tensor, bool]:
    """``(x', view, channels_last)``: ``x'`` is ``x`` or a contiguous copy when its strides fit neither
    layout, ``view`` is ``x'`` seen as ``(N, C, S)`` with unit stride along S (``channels_last=False``)
    or along C (``channels_last=True``)."""
    batch, channels = x.shape[0], x.shape[1]
    positions = 1
    for size in x.shape[2:]:
        positions *= size
    try:
        view = x.view(batch, channels, positions)
    except RuntimeError:
        view = None
    if view is not None:
        if positions <= 1 or view.stride(2) == 1:
            return x, view, False
        if channels <= 1 or view.stride(1) == 1:
            return x, view, True
    x = x.contiguous()
    return x, x.view(batch, channels, positions), False


def rows_like(t: Tensor, reference: Tensor, channels_last: bool) -> Tensor:
    """``t`` (same shape as ``reference``) as an ``(N, C, S)`` view in ``reference``'s layout; copied
    into that layout when it arrives in another one (a gradient from a layout-changing consumer)."""
    if t.shape != reference.shape:
        raise ValueError(
            f"excite.fused: expected a tensor of shape {list(reference.shape)}, got {list(t.shape)}"
        )
    batch, channels = reference.shape[0], reference.shape[1]
    positions = reference[0, 0].numel() if reference.numel() else 0
    try:
        view = t.view(batch, channels, positions)
        if positions <= 1 or (
            view.stride(2) == 1 if not channels_last else (channels <= 1 or view.stride(1) == 1)
        ):
            return view
    except RuntimeError:
        pass
    return torch.empty_like(reference).copy_(t).view(batch, channels, positions)


def strips_for(t: Tensor, channels_last: bool) -> Tensor:
    """An ``[N, C, L]`` per-axis tensor laid out for the kernels: unit stride along L, or along C for
    channels_last inputs (so that the inner loop over channels reads it contiguously)."""
    if channels_last:
        return t.transpose(1, 2).contiguous().transpose(1, 2)
    return t.contiguous()


def filter_for(t: Tensor, channels_last: bool) -> Tensor:
    """A ``(C, S)`` filter bank laid out like :func:`strips_for`."""
    if channels_last:
        return t.t().contiguous().t()
    return t.contiguous()
