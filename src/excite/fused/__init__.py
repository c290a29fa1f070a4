"""Fused training kernels and the switch between them and the plain-autograd reference path.

Every module's ``forward`` asks :func:`fused_enabled` whether to take its fused path. The reference
path (plain PyTorch ops, differentiated by autograd) is what the tests compare the fused path against,
and what TorchScript, ``torch.compile`` and ONNX export always trace.

    >>> import excite
    >>> excite.use_reference(True)        # globally
    >>> with excite.use_reference():      # or for a block
    ...     y = module(x)
"""

from __future__ import annotations

import threading
from typing import Optional

import torch

_state = threading.local()


def _reference_forced() -> bool:
    return getattr(_state, "reference", False)


class use_reference:
    """Switch every module to the plain-autograd reference path.

    Called as a function (``use_reference(True)``) it sets the switch for the current thread until it
    is changed again. Used as a context manager it sets it for the block only and restores the previous
    setting on exit.
    """

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = bool(enabled)
        self._previous: Optional[bool] = _reference_forced()
        _state.reference = self.enabled

    def __enter__(self) -> "use_reference":
        return self

    def __exit__(self, *exc) -> None:
        _state.reference = self._previous


def reference_forced() -> bool:
    """True while :func:`use_reference` is in force."""
    return _reference_forced()


@torch.jit.ignore
def fused_enabled(x: torch.Tensor) -> bool:
    """Whether a module should take its fused path for input ``x``.

    False under ``use_reference``, while ``torch.compile`` traces (Inductor fuses the reference graph
    itself) and during ONNX export (the exporter needs plain ops).
    """
    if _reference_forced():
        return False
    if torch.compiler.is_compiling() or torch.onnx.is_in_onnx_export():
        return False
    return True
