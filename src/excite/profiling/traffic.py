"""Op-level memory-traffic measurement: the bytes every eager kernel reads and writes.

:class:`TrafficCounter` is a ``TorchDispatchMode`` that, for every ATen operation that runs (forward and,
on CPU, backward), adds the bytes of its tensor inputs to ``read`` and of its outputs to ``written``.
Views (``view``, ``expand``, ``permute``...) move no data and are skipped; a broadcast (expanded) input
counts the bytes of its storage, not of its logical size. The count assumes every kernel streams its
operands from memory once and nothing stays in cache between kernels: the traffic of unfused eager
execution, which is what the analytic model in :mod:`excite.profiling.costs` describes and what this
counter cross-checks.

excite's fused kernels (:mod:`excite.fused`) are compiled C++/Triton functions that the dispatcher does
not look inside, so the counter also wraps the kernel namespace those modules call (``kernels=True``):
every kernel call adds the bytes of its tensor arguments to ``read`` and of its results to ``written``
(for kernels that return nothing, the last tensor argument is the ``out`` buffer they write). That is the
kernels' own contract: each streams its operands once. When the kernels fall back to torch ops, the
dispatcher sees those ops and the wrapper stays out of the way.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

# Operations that only reinterpret metadata although their schema does not mark them as views.
_NO_DATA = {"detach", "alias", "lift_fresh", "_unsafe_view", "empty", "empty_like", "empty_strided"}
# Pointwise-tagged operations that move data without arithmetic.
_COPIES = {
    "clone",
    "copy",
    "copy_",
    "_to_copy",
    "fill",
    "fill_",
    "zero_",
    "zeros_like",
    "ones_like",
    "full_like",
}


def tensor_bytes(t: torch.Tensor) -> int:
    """Bytes a kernel touches for ``t``: its logical size, or its storage if smaller (broadcasts)."""
    logical = t.numel() * t.element_size()
    try:
        storage = t.untyped_storage().nbytes()
    except (RuntimeError, NotImplementedError):
        return logical
    return min(logical, storage)


class TrafficCounter(TorchDispatchMode):
    """Count bytes read and written by every ATen op run inside the ``with`` block.

    It also counts the elementwise arithmetic that ``torch.utils.flop_counter`` leaves out: one FLOP
    per output element of every pointwise operation (``mul``, ``sigmoid``, ``pow``... but not copies)
    and one per input element of every reduction (``sum``, ``mean``, ``amax``...).

    Attributes:
        read, written: totals in bytes.
        elementwise: elementwise FLOPs, as above.
        by_op: ``{op name: [calls, bytes read, bytes written]}``.
        trace: ``(op name, bytes read, bytes written)`` in call order, when ``trace=True``.
    """

    def __init__(self, trace: bool = False, kernels: bool = True) -> None:
        super().__init__()
        self.wrap_kernels = kernels
        self._patched: list[tuple[Any, Any]] = []
        self.read = 0
        self.written = 0
        self.elementwise = 0
        self.by_op: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
        self.keep_trace = trace
        self.trace: list[tuple[str, int, int]] = []

    @property
    def total(self) -> int:
        return self.read + self.written

    def __enter__(self) -> TrafficCounter:
        if self.wrap_kernels:
            self._patch_kernels()
        return super().__enter__()

    def __exit__(self, *exc: Any) -> Any:
        for module, original in self._patched:
            module.kernels = original
        self._patched = []
        return super().__exit__(*exc)

    def _patch_kernels(self) -> None:
        try:
            from ..fused import _torch_ops
            from ..fused import functions as fused_functions
        except ImportError:
            return
        original = getattr(fused_functions, "kernels", None)
        if original is None:
            return
        counter = self

        def recording(x: torch.Tensor) -> Any:
            namespace = original(x)
            return namespace if namespace is _torch_ops else _RecordingKernels(namespace, counter)

        fused_functions.kernels = recording
        self._patched.append((fused_functions, original))

    def add(self, name: str, read: int, written: int) -> None:
        self.read += read
        self.written += written
        entry = self.by_op[name]
        entry[0] += 1
        entry[1] += read
        entry[2] += written
        if self.keep_trace:
            self.trace.append((name, read, written))

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        name = func.overloadpacket.__name__
        if getattr(func, "is_view", False) or name in _NO_DATA:
            return out
        read = sum(tensor_bytes(t) for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor))
        written = sum(tensor_bytes(t) for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor))
        self.add(name, read, written)
        tags = getattr(func, "tags", ())
        if torch.Tag.pointwise in tags and name not in _COPIES:
            self.elementwise += sum(t.numel() for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor))
        elif torch.Tag.reduction in tags and args and isinstance(args[0], torch.Tensor):
            self.elementwise += args[0].numel()
        return out


class _RecordingKernels:
    """A kernel namespace whose calls are added to a :class:`TrafficCounter`."""

    def __init__(self, namespace: Any, counter: TrafficCounter) -> None:
        self._namespace = namespace
        self._counter = counter

    def __getattr__(self, name: str) -> Any:
        function = getattr(self._namespace, name)
        counter = self._counter

        def call(*args: Any, **kwargs: Any) -> Any:
            tensors = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
            result = function(*args, **kwargs)
            outputs = [t for t in tree_flatten(result)[0] if isinstance(t, torch.Tensor)]
            if result is None and tensors:
                outputs = [tensors.pop()]
            read = sum(tensor_bytes(t) for t in tensors)
            written = sum(tensor_bytes(t) for t in outputs)
            counter.add(f"fused.{name}", read, written)
            return result

        return call
