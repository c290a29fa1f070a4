"""Fused training kernels and the switch between them and the plain-autograd reference path.

Every module's ``forward`` asks :func:`fused_enabled` whether to take its fused path. The reference
path (plain PyTorch ops, differentiated by autograd) is what the tests compare the fused path against,
and what TorchScript, ``torch.compile``, ``torch.jit.trace`` and ONNX export always trace.

    >>> import excite
    >>> excite.use_reference(True)        # globally
    >>> with excite.use_reference():      # or for a block
    ...     y = module(x)

The fused path (:mod:`excite.fused.functions`) reads the input once for the gate's statistics and once
more to write the output, and in backward reads ``(grad, x)`` twice and writes ``grad_x`` once, saving
only ``x`` and statistics-sized tensors. Its kernels are C++/OpenMP on CPU (compiled on first use,
cached; see :mod:`excite.fused._cpu`), Triton on CUDA (:mod:`excite.fused._triton`), and torch ops where
neither is available (:mod:`excite.fused._torch_ops`). One call per module hides all of it:
``fused.se(module, x)``, ``fused.scse(module, x)``, ... Inputs the kernels do not cover (integer or
complex dtypes, other devices, empty tensors, tensor subclasses, functorch transforms) take the
reference path.
"""

from __future__ import annotations

import threading

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
        self._previous: bool | None = _reference_forced()
        _state.reference = self.enabled

    def __enter__(self) -> use_reference:
        return self

    def __exit__(self, *exc) -> None:
        _state.reference = self._previous


def reference_forced() -> bool:
    """True while :func:`use_reference` is in force."""
    return _reference_forced()


_FUSED_DTYPES = (torch.float32, torch.bfloat16, torch.float16, torch.float64)
_FUSED_DEVICES = ("cpu", "cuda")
# Looked up once: fused_enabled runs on every module call.
_is_compiling = torch.compiler.is_compiling
_is_in_onnx_export = torch.onnx.is_in_onnx_export
_is_tracing = torch.jit.is_tracing
_functorch_transforms_active = getattr(torch._C, "_are_functorch_transforms_active", None)
_dispatch_mode_depth = getattr(torch._C, "_len_torch_dispatch_stack", None)


def _counting_flops() -> bool:
    """Whether a ``torch.utils.flop_counter.FlopCounterMode`` is active.

    The counter knows the FLOPs of ATen's products (convolutions, matmuls), not of compiled kernels:
    sSE's channel sum ``Σ_c w_c x`` is a 1x1 convolution on the reference path and part of a statistics
    kernel here, and FcaNet/SPSE/RGSE fold their pooling into a filter with an ``einsum``. Under the
    counter the modules therefore take the reference path, so that FLOP counts are the reference's
    (the modules' arithmetic as the papers define it) whichever path runs otherwise.
    """
    if _dispatch_mode_depth is None or _dispatch_mode_depth() == 0:
        return False
    from torch.utils._python_dispatch import _get_current_dispatch_mode_stack

    return any(
        type(mode).__module__ == "torch.utils.flop_counter" for mode in _get_current_dispatch_mode_stack()
    )


@torch.jit.ignore
def fused_enabled(x: torch.Tensor) -> bool:
    """Whether a module should take its fused path for input ``x``.

    False under ``use_reference``, while ``torch.compile`` traces (Inductor fuses the reference graph
    itself), during ONNX export and ``torch.jit.trace`` (they need plain ops), under
    ``torch.utils.flop_counter.FlopCounterMode`` (FLOPs are counted on the reference path; see
    :func:`_counting_flops`), and for inputs the
    kernels do not cover: dtypes other than fp32/bf16/fp16/fp64, devices other than CPU and CUDA, empty
    tensors, tensor subclasses, and functorch transforms (``vmap``, ``grad``).
    """
    if getattr(_state, "reference", False):
        return False
    if _is_compiling() or _is_in_onnx_export() or _is_tracing():
        return False
    if x.dtype not in _FUSED_DTYPES or x.device.type not in _FUSED_DEVICES or x.numel() == 0:
        return False
    if type(x) is not torch.Tensor and type(x) is not torch.nn.Parameter:
        return False
    if _functorch_transforms_active is not None and _functorch_transforms_active():
        return False
    return not _counting_flops()


from ._backend import backend_name, forced_backend  # noqa: E402
from .functions import cbam, coord, eca, fca, rgse, scse, se, simam, spse, sse  # noqa: E402

__all__ = [
    "backend_name",
    "cbam",
    "coord",
    "eca",
    "fca",
    "forced_backend",
    "fused_enabled",
    "reference_forced",
    "rgse",
    "scse",
    "se",
    "simam",
    "spse",
    "sse",
    "use_reference",
]
