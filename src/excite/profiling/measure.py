"""Per-model measurements: parameters, counted FLOPs, the attention's elementwise work and traffic,
latency and peak training memory. :func:`measure` is the contract other code (the study) relies on."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils._pytree import tree_flatten

from .costs import attention_costs

MEASURE_KEYS = (
    "params",
    "flops",
    "macs",
    "elementwise_flops",
    "attention_bytes",
    "latency_fwd_ms",
    "latency_fwdbwd_ms",
    "peak_train_bytes",
)


def check_input_size(input_size: Sequence[int], owner: str) -> tuple[int, ...]:
    size = tuple(int(s) for s in input_size)
    if len(size) < 3 or min(size) < 1:
        raise ValueError(
            f"{owner}: input_size is the full input shape (N, C, *spatial), e.g. (1, 3, 224, 224); "
            f"got {tuple(input_size)}"
        )
    return size


def count_parameters(model: nn.Module) -> int:
    """All parameters (shared ones once), trainable or not."""
    return sum(p.numel() for p in model.parameters())


def count_flops(model: nn.Module, example: Tensor, shapes_only: bool = False) -> int:
    """Forward FLOPs counted by ``torch.utils.flop_counter.FlopCounterMode`` (eval mode, no grad).

    The counter covers matrix products and convolutions (2 FLOPs per multiply-add, so MACs = FLOPs/2)
    and nothing elementwise: BN, activations, pooling, residual sums and the attention's gating are 0
    there. Modules are left in the train/eval state they had.

    ``shapes_only=True`` runs under a fake-tensor mode: no arithmetic, so a ResNet-50 (even one built
    on the ``meta`` device) is counted in a moment. excite modules then take their reference path,
    which counts the same products except FcaNet's DCT fold, which the fused path caches.
    """
    from torch.utils.flop_counter import FlopCounterMode

    with _eval_mode(model), torch.no_grad():
        counter = FlopCounterMode(display=False)
        if shapes_only:
            from torch._subclasses.fake_tensor import FakeTensorMode

            with FakeTensorMode(allow_non_fake_inputs=True), counter:
                model(torch.zeros(example.shape, dtype=example.dtype, device=example.device))
        else:
            with counter:
                model(example)
    return int(counter.get_total_flops())


@contextmanager
def _eval_mode(model: nn.Module, training: bool = False) -> Iterator[None]:
    flags = {m: m.training for m in model.modules()}
    model.train(training)
    try:
        yield
    finally:
        for m, flag in flags.items():
            m.training = flag


@contextmanager
def preserved_state(model: nn.Module) -> Iterator[None]:
    """Restore buffers (BN statistics) and ``.grad`` after timing runs, so that profiling a model
    leaves it exactly as it was."""
    buffers = {name: b.detach().clone() for name, b in model.named_buffers()}
    grads = {p: (None if p.grad is None else p.grad.detach().clone()) for p in model.parameters()}
    flags = {m: m.training for m in model.modules()}
    try:
        yield
    finally:
        with torch.no_grad():
            for name, b in model.named_buffers():
                if name in buffers:
                    b.copy_(buffers[name])
        for p, g in grads.items():
            p.grad = g
        for m, flag in flags.items():
            m.training = flag


def scalar_loss(output: Any) -> Tensor:
    """A scalar to backpropagate from any output structure: the sum of every floating tensor in it."""
    tensors = [t for t in tree_flatten(output)[0] if isinstance(t, Tensor) and t.is_floating_point()]
    if not tensors:
        raise ValueError("measure: the model returned no floating-point tensor to backpropagate from")
    loss = tensors[0].float().mean()
    for t in tensors[1:]:
        loss = loss + t.float().mean()
    return loss


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_forward(model: nn.Module, example: Tensor) -> float:
    """One inference forward (eval mode, no grad), in milliseconds."""
    model.eval()
    _synchronize(example.device)
    start = time.perf_counter()
    with torch.no_grad():
        model(example)
    _synchronize(example.device)
    return (time.perf_counter() - start) * 1e3


def time_forward_backward(model: nn.Module, example: Tensor) -> float:
    """One training forward + backward (train mode, gradients freed first), in milliseconds."""
    model.train()
    for p in model.parameters():
        p.grad = None
    _synchronize(example.device)
    start = time.perf_counter()
    scalar_loss(model(example)).backward()
    _synchronize(example.device)
    return (time.perf_counter() - start) * 1e3


def peak_train_bytes(model: nn.Module, example: Tensor) -> int:
    """Peak memory of one training step (forward + backward).

    * CUDA: ``torch.cuda.max_memory_allocated`` over the step, from a reset; it includes parameters,
      gradients, the input, saved activations and every transient buffer.
    * CPU (no allocator statistics): parameters + gradients (one per trainable parameter) + the
      tensors autograd saves for backward, recorded with ``torch.autograd.graph.saved_tensors_hooks``
      and counted once per storage (parameters excluded, the input included). That is the memory held
      when the forward ends, which is where a training step peaks; transient buffers of single kernels
      are not included, so it is a slight underestimate.
    """
    device = example.device
    for p in model.parameters():
        p.grad = None
    model.train()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        scalar_loss(model(example)).backward()
        torch.cuda.synchronize(device)
        peak = int(torch.cuda.max_memory_allocated(device))
        for p in model.parameters():
            p.grad = None
        return peak
    parameter_storages = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, int] = {}

    def pack(t: Tensor) -> Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in parameter_storages:
            saved[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = scalar_loss(model(example))
    loss.backward()
    for p in model.parameters():
        p.grad = None
    param_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    grad_bytes = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    return param_bytes + grad_bytes + sum(saved.values())


class Arm:
    """One model being measured: static counts once, latency samples appended by the timing loop."""

    def __init__(self, model: nn.Module, input_size: Sequence[int], device: torch.device) -> None:
        self.model = model.to(device)
        self.example = torch.randn(tuple(input_size), device=device)
        # Without trainable parameters (SimAM on its own) a training step is the backward to the input,
        # as it would be inside a network.
        if not any(p.requires_grad for p in model.parameters()):
            self.example.requires_grad_(True)
        self.input_size = tuple(input_size)
        self.forward_ms: list[float] = []
        self.forward_backward_ms: list[float] = []
        self.counts: dict[str, Any] = {}

    def count(self) -> dict[str, Any]:
        # One forward first: lazily built kernels and per-size caches (FcaNet's folded DCT bank) are
        # then in place, so the FLOP count is that of every later call.
        with _eval_mode(self.model), torch.no_grad():
            self.model(self.example)
        costs = attention_costs(self.model, self.input_size, self.example.dtype)
        flops = count_flops(self.model, self.example)
        self.counts = {
            "params": count_parameters(self.model),
            "flops": flops,
            "macs": flops // 2,
            "elementwise_flops": sum(c.elementwise_flops for c in costs),
            "attention_bytes": sum(c.bytes_fwd for c in costs),
            "attention_bytes_fwdbwd": sum(c.bytes_fwdbwd for c in costs),
            "attention_modules": len(costs),
            "traffic_source": ",".join(sorted({c.source for c in costs})),
            "peak_train_bytes": self._first_training_step(),
        }
        return self.counts

    def _first_training_step(self) -> int:
        """The peak training memory, from the first training step: the step that finds out whether the
        model can train on this input at all."""
        try:
            return peak_train_bytes(self.model, self.example)
        except ValueError as error:
            if "more than 1 value per channel" not in str(error):
                raise
            raise ValueError(
                f"measure: a training step of {type(self.model).__name__} on input "
                f"{list(self.input_size)} fails: {error}. BatchNorm cannot train on a single value per "
                "channel (batch 1 reaching a 1x1 feature map); use a batch of at least 2 or a larger input."
            ) from error

    def warm_up(self, steps: int) -> None:
        for _ in range(steps):
            time_forward(self.model, self.example)
            time_forward_backward(self.model, self.example)

    def time_once(self) -> None:
        self.forward_ms.append(time_forward(self.model, self.example))
        self.forward_backward_ms.append(time_forward_backward(self.model, self.example))

    def result(self) -> dict[str, Any]:
        out = dict(self.counts)
        out["latency_fwd_ms"] = statistics.median(self.forward_ms) if self.forward_ms else float("nan")
        out["latency_fwdbwd_ms"] = (
            statistics.median(self.forward_backward_ms) if self.forward_backward_ms else float("nan")
        )
        return out


def run_interleaved(
    arms: Sequence[Arm], warmup: int, repeats: int, progress: Callable[[str], None] | None = None
) -> None:
    """Warm every arm up, then time them round-robin: round ``r`` visits the arms forwards when ``r`` is
    even and backwards when odd, so slow drift (thermal, other processes) and order effects (caches,
    allocator) fall on every arm alike."""
    for index, arm in enumerate(arms):
        arm.warm_up(warmup)
        if progress is not None:
            progress(f"warm-up {index + 1}/{len(arms)}")
    for round_index in range(repeats):
        order = list(arms) if round_index % 2 == 0 else list(reversed(arms))
        for arm in order:
            arm.time_once()
            if progress is not None:
                progress(f"round {round_index + 1}/{repeats}")


def resolve_device(device: Any) -> torch.device:
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"measure: device {device!r} requested but CUDA is not available")
    return resolved


def measure(
    model: nn.Module, input_size: Sequence[int], *, device: Any = "cpu", warmup: int = 1, repeats: int = 3
) -> dict[str, Any]:
    """Measure one model; the per-arm numbers of :func:`excite.profile`.

    Args:
        model: the network (moved to ``device``; its weights, BN statistics, gradients and train/eval
            mode are restored afterwards).
        input_size: the full input shape ``(N, C, *spatial)``, e.g. ``(1, 3, 224, 224)``.
        device: ``"cpu"`` or a CUDA device.
        warmup: untimed forward and forward+backward steps first (allocator, caches, cuDNN autotune).
        repeats: timed steps; the latencies are their medians.

    Returns:
        A dict with exactly these keys:

        * ``params``: all parameters;
        * ``flops``, ``macs``: forward, counted by ``torch.utils.flop_counter`` (matrix products and
          convolutions only; ``macs = flops // 2``);
        * ``elementwise_flops``: forward elementwise FLOPs of the attention modules the counter
          misses (pooling, gating, SimAM's energy; :mod:`excite.profiling.costs`), 0 without attention;
        * ``attention_bytes``: forward memory traffic of the attention modules (same model);
        * ``latency_fwd_ms``: median inference forward (eval, no grad);
        * ``latency_fwdbwd_ms``: median training forward + backward (train mode);
        * ``peak_train_bytes``: peak memory of one training step (:func:`peak_train_bytes`).

    Raises:
        ValueError: an ``input_size`` that is not ``(N, C, *spatial)``, CUDA requested without CUDA.
    """
    size = check_input_size(input_size, "measure")
    resolved = resolve_device(device)
    if warmup < 0 or repeats < 1:
        raise ValueError(f"measure: warmup must be >= 0 and repeats >= 1, got {warmup}, {repeats}")
    original_device = _model_device(model)
    arm = Arm(model, size, resolved)
    try:
        with preserved_state(model):
            arm.count()
            run_interleaved([arm], warmup, repeats)
    finally:
        if original_device is not None:
            model.to(original_device)
    result = arm.result()
    return {key: result[key] for key in MEASURE_KEYS}


def _model_device(model: nn.Module) -> torch.device | None:
    for p in model.parameters():
        return p.device
    return None
