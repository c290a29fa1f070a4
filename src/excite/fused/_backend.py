"""Which kernels run: C++/OpenMP on CPU, Triton on CUDA, torch ops everywhere else (and as fallback).

``EXCITE_FUSED_BACKEND`` (``"cpp"``, ``"triton"`` or ``"torch"``) or :func:`forced_backend` pins one, for
tests and benchmarks; a pinned backend that cannot run on the input's device falls back to torch ops.
"""

from __future__ import annotations

import os
from typing import Any

from torch import Tensor

from . import _cpu, _torch_ops

BACKENDS = ("cpp", "triton", "torch")
_pinned: str | None = None


class forced_backend:
    """Context manager pinning the kernel backend (``"cpp"``, ``"triton"``, ``"torch"``); ``None`` unpins."""

    def __init__(self, name: str | None) -> None:
        if name is not None and name not in BACKENDS:
            raise ValueError(f"excite.fused: backend must be one of {BACKENDS} or None, got {name!r}")
        global _pinned
        self._previous = _pinned
        _pinned = name

    def __enter__(self) -> forced_backend:
        return self

    def __exit__(self, *exc) -> None:
        global _pinned
        _pinned = self._previous


def _requested() -> str | None:
    if _pinned is not None:
        return _pinned
    name = os.environ.get("EXCITE_FUSED_BACKEND")
    return name if name in BACKENDS else None


def kernels(x: Tensor) -> Any:
    """The kernel namespace for ``x``: every backend offers the functions of :mod:`._torch_ops`."""
    name = _requested()
    if name == "torch":
        return _torch_ops
    if (x.device.type == "cuda" and name is None) or name == "triton":
        # Pinned, Triton also takes CPU tensors: that runs under TRITON_INTERPRET=1 (the tests do).
        from . import _triton

        module = _triton.load()
        if module is not None:
            return module
    if x.device.type == "cpu" and name in (None, "cpp"):
        module = _cpu.load()
        if module is not None:
            return module
    return _torch_ops


def backend_name(x: Tensor) -> str:
    """``"cpp"``, ``"triton"`` or ``"torch"``: what :func:`kernels` picks for ``x``."""
    module = kernels(x)
    if module is _torch_ops:
        return "torch"
    return "triton" if x.device.type == "cuda" else "cpp"
