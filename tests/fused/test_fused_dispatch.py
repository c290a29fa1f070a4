"""Dispatch between the fused and the reference path, and the situations the fused path must survive.

The reference path is the oracle throughout: the same module under ``excite.use_reference()``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest
import torch
from excite_test_helpers import FOUNDATION_NAMES, build, sample

import excite
from excite.fused import backend_name, forced_backend, fused_enabled, reference_forced

FUSED_NODES = {
    "se": "ChannelGateFunction",
    "cse": "ChannelGateFunction",
    "eca": "ChannelGateFunction",
    "fca": "ChannelGateFunction",
    "spse": "ChannelGateFunction",
    "rgse": "ChannelGateFunction",
    "cbam": "CBAMFunction",
    "sse": "PositionGateFunction",
    "scse": "PositionGateFunction",
    "coord": "CoordFunction",
    "simam": "SimAMFunction",
}


def outputs_and_grads(module, x, reference: bool):
    x = x.detach().clone().requires_grad_()
    with excite.use_reference(reference):
        y = module(x)
        grads = torch.autograd.grad(y, [x] + list(module.parameters()), torch.ones_like(y))
    return y, grads


def assert_same(module, x, atol: float = 1e-5, rtol: float = 1e-4) -> None:
    y_ref, g_ref = outputs_and_grads(module, x, True)
    y, g = outputs_and_grads(module, x, False)
    torch.testing.assert_close(y, y_ref, atol=atol, rtol=rtol)
    for a, b in zip(g, g_ref):
        torch.testing.assert_close(a, b, atol=atol, rtol=rtol)


@pytest.mark.parametrize("name", FOUNDATION_NAMES)
def test_fused_path_is_the_default_and_use_reference_switches_back(name: str) -> None:
    module = build(name, 2)
    x = sample(name, 2).requires_grad_()
    assert type(module(x).grad_fn).__name__ == FUSED_NODES[name] + "Backward"
    excite.use_reference(True)
    try:
        assert reference_forced()
        assert "excite" not in type(module(x).grad_fn).__module__
        assert not type(module(x).grad_fn).__name__.startswith(FUSED_NODES[name])
    finally:
        excite.use_reference(False)
    assert type(module(x).grad_fn).__name__ == FUSED_NODES[name] + "Backward"


def test_use_reference_context_restores_and_nests() -> None:
    x = torch.randn(2, 3, 4, 4)
    assert fused_enabled(x)
    with excite.use_reference():
        assert not fused_enabled(x)
        with excite.use_reference(False):
            assert fused_enabled(x)
        assert not fused_enabled(x)
    assert fused_enabled(x)


def test_use_reference_is_per_thread() -> None:
    seen = {}

    def other() -> None:
        seen["other"] = reference_forced()

    with excite.use_reference():
        thread = threading.Thread(target=other)
        thread.start()
        thread.join()
        assert reference_forced()
    assert seen["other"] is False


def test_unsupported_inputs_take_the_reference_path() -> None:
    assert not fused_enabled(torch.zeros(0, 3, 4, 4))
    assert not fused_enabled(torch.zeros(2, 3, 4, 4, dtype=torch.int32))
    assert not fused_enabled(torch.zeros(2, 3, 4, 4, device="meta"))
    module = build("se", 2)
    empty = torch.zeros(0, 16, 6, 5)
    assert module(empty).shape == empty.shape


def test_jit_trace_records_plain_ops() -> None:
    module = build("simam", 2)
    x = sample("simam", 2)
    traced = torch.jit.trace(module, x)
    assert "excite_fused" not in str(traced.graph)
    with excite.use_reference():
        expected = module(x)
    torch.testing.assert_close(traced(sample("simam", 2, seed=4)), module(sample("simam", 2, seed=4)))
    torch.testing.assert_close(traced(x), expected)


@pytest.mark.parametrize("name", ("scse", "fca"))
def test_torchscript_takes_the_reference_path(name: str) -> None:
    """Scripting works also after fused calls (which must not leave unscriptable state behind)."""
    module = build(name, 2)
    x = sample(name, 2)
    module(x)
    scripted = torch.jit.script(module)
    with excite.use_reference():
        expected = module(x)
    torch.testing.assert_close(scripted(x), expected)


@pytest.mark.parametrize("name", ("se", "scse", "coord", "simam", "cbam", "spse"))
def test_no_grad_and_inference_mode(name: str) -> None:
    module = build(name, 2).eval()
    x = sample(name, 2)
    with excite.use_reference():
        expected = module(x)
    with torch.no_grad():
        y = module(x)
    assert y.grad_fn is None
    torch.testing.assert_close(y, expected, atol=1e-6, rtol=1e-5)
    with torch.inference_mode():
        torch.testing.assert_close(module(x), expected, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("name", ("se", "sse", "cbam", "coord"))
def test_frozen_parameters_or_input_without_grad(name: str) -> None:
    """A frozen module (only x needs gradients), and a first layer (only the weights do)."""
    module = build(name, 2).train()
    x = sample(name, 2, batch=3)
    for p in module.parameters():
        p.requires_grad_(False)
    xg = x.clone().requires_grad_()
    with excite.use_reference():
        (expected,) = torch.autograd.grad(module(xg).square().sum(), xg)
    (got,) = torch.autograd.grad(module(xg).square().sum(), xg)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)
    for p in module.parameters():
        p.requires_grad_(True)
    with excite.use_reference():
        expected = torch.autograd.grad(module(x).square().sum(), list(module.parameters()))
    got = torch.autograd.grad(module(x).square().sum(), list(module.parameters()))
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", ("se", "scse", "coord", "simam", "cbam"))
def test_gradient_in_another_layout_and_strided_input(name: str) -> None:
    """A channels_last input whose gradient arrives contiguous, and a non-contiguous slice as input."""
    module = build(name, 2).train()
    x = sample(name, 2, batch=3).contiguous(memory_format=torch.channels_last)

    def loss_grads(reference: bool):
        xg = x.detach().clone().requires_grad_()
        with excite.use_reference(reference):
            y = module(xg)
            weight = torch.linspace(-1, 1, y.numel()).view_as(y).contiguous()
            return torch.autograd.grad((y * weight).sum(), [xg] + list(module.parameters()))

    for a, b in zip(loss_grads(False), loss_grads(True)):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    wide = sample(name, 2, batch=3, other=True)
    strided = wide[:, :, ::2, 1:]
    assert not strided.is_contiguous()
    assert_same(build(name, 2).train(), strided)


@pytest.mark.parametrize("name", ("se", "scse", "coord", "simam", "cbam", "spse", "eca"))
def test_autocast_bf16(name: str) -> None:
    module = build(name, 2).train()
    x = sample(name, 2, batch=4)

    def run(reference: bool):
        xg = x.clone().requires_grad_()
        with excite.use_reference(reference), torch.autocast("cpu", dtype=torch.bfloat16):
            y = module(xg)
            grads = torch.autograd.grad(y.float().sum(), [xg] + list(module.parameters()))
        return [y] + list(grads)

    fused, reference = run(False), run(True)
    # Gradients that vanish in theory (biases in front of training-mode BatchNorm) are compared on the
    # scale of the others.
    floor = 0.1 * max(g.abs().max().item() for g in reference[1:])
    for got, expected in zip(fused, reference):
        assert got.dtype == expected.dtype
        scale = max(expected.abs().max().item(), floor)
        torch.testing.assert_close(got.float(), expected.float(), atol=3e-2 * scale, rtol=3e-2)


def test_backward_twice_with_retained_graph() -> None:
    for name in ("cbam", "coord", "spse", "scse"):
        module = build(name, 2).train()
        x = sample(name, 2, batch=3).requires_grad_()
        y = module(x)
        (first,) = torch.autograd.grad(y.sum(), x, retain_graph=True)
        (second,) = torch.autograd.grad(y.sum(), x)
        torch.testing.assert_close(first, second)


def test_errors_match_the_reference_path() -> None:
    with pytest.raises(ValueError, match="more than one spatial position"):
        excite.create("simam", dim=2)(torch.randn(2, 3, 1, 1))
    rgse = excite.create("rgse", 16, dim=2, reduction=4, pool_size=2, fusion_kernel=2)
    with pytest.raises(ValueError, match="values per channel, not 1"):
        rgse(torch.randn(2, 16, 9, 9))
    with pytest.raises(ValueError, match="smaller than the 2-wide pooling window"):
        rgse(torch.randn(2, 16, 1, 5))


def test_cpu_kernels_are_compiled_where_a_compiler_exists() -> None:
    from excite.fused import _cpu

    x = torch.randn(2, 3, 4, 4)
    if _cpu.load() is None:
        pytest.skip(f"no C++ toolchain here: {_cpu.failure()}")
    assert backend_name(x) == "cpp"
    with forced_backend("torch"):
        assert backend_name(x) == "torch"


def test_without_the_extension_the_torch_op_kernels_are_used() -> None:
    """EXCITE_FUSED_CPP=0 stands in for a machine without a compiler."""
    code = (
        "import torch, excite\n"
        "from excite.fused import backend_name\n"
        "m = excite.create('simam', dim=2)\n"
        "x = torch.randn(2, 3, 5, 4, requires_grad=True)\n"
        "y = m(x); y.sum().backward()\n"
        "with excite.use_reference():\n"
        "    r = m(x.detach())\n"
        "assert torch.allclose(y, r, atol=1e-6), (y - r).abs().max()\n"
        "print(backend_name(x), type(y.grad_fn).__name__)\n"
    )
    env = dict(os.environ, EXCITE_FUSED_CPP="0")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["torch", "SimAMFunctionBackward"]


def _flops(module, x, train: bool) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    if train:
        xg = x.clone().requires_grad_()
        with counter:
            y = module.train()(xg)
            y.backward(torch.ones_like(y))
    else:
        with torch.no_grad(), counter:
            module.eval()(x)
    return counter.get_total_flops()


@pytest.mark.parametrize("name", FOUNDATION_NAMES)
def test_flop_counter_counts_the_reference_arithmetic(name: str) -> None:
    """FlopCounterMode sees the fused kernels as opaque; under it the modules take the reference path,
    so FLOP counts (excite.profiling's) are the reference's, and nothing fails in backward."""
    module = build(name, 2)
    x = sample(name, 2)
    for train in (False, True):
        with excite.use_reference():
            expected = _flops(module, x, train)
        assert _flops(module, x, train) == expected
    if name in ("se", "sse", "coord", "cbam"):  # products the counter knows (linear, 1x1 and k x k convs)
        assert expected > 0


@pytest.mark.parametrize(("name", "dim"), [("fca", 2), ("cbam", 2), ("coord", 1), ("coord", 2), ("spse", 2)])
def test_module_tracker_hooks_survive_the_fused_backward(name: str, dim: int) -> None:
    """Module-level backward hooks (torch.utils.module_tracker, as memory and FLOP tools use them) are
    put on the gate layers' inputs; the nested autograd.grad of the fused backward must not trip them.
    (``.backward()``: the tracker itself refuses an outer ``autograd.grad`` on leaves, on both paths.)"""
    from torch.utils.module_tracker import ModuleTracker

    module = build(name, dim).train()
    x = sample(name, dim, batch=3)

    def run(reference: bool) -> list[torch.Tensor]:
        module.zero_grad(set_to_none=True)
        xg = x.clone().requires_grad_()
        with excite.use_reference(reference), ModuleTracker():
            y = module(xg)
            y.backward(torch.linspace(-1, 1, y.numel()).view_as(y))
        return [y.detach(), xg.grad] + [p.grad for p in module.parameters()]

    for got, expected in zip(run(False), run(True)):
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", ("spse", "rgse"))
def test_cached_pooling_banks_follow_the_weights(name: str) -> None:
    """SPSE/RGSE fold their pooling into a bank cached per module, size and weight version: evaluation
    after an optimizer step, training after cached evaluation, and another size all match the
    reference path."""
    module = build(name, 2)
    x = sample(name, 2)
    weights = [p for p in module.parameters() if p.dim() >= 3]  # the depthwise fusion convolutions
    assert weights, "the variant under test must have a learnable fusion"

    def evaluate() -> None:
        module.eval()
        with torch.no_grad():
            with excite.use_reference():
                expected = module(x)
            module(x)  # fills the cache
            torch.testing.assert_close(module(x), expected, atol=1e-6, rtol=1e-5)

    evaluate()
    optimizer = torch.optim.SGD(module.parameters(), lr=0.5)
    optimizer.zero_grad()
    module.train()(x.clone().requires_grad_()).square().sum().backward()
    optimizer.step()  # bumps the weights' versions in place
    evaluate()
    assert_same(module.train(), x)  # training after a cache hit: the bank is in the graph again
    other = sample(name, 2, other=True)
    with torch.no_grad(), excite.use_reference():
        expected = module.eval()(other)
    with torch.no_grad():
        torch.testing.assert_close(module(other), expected, atol=1e-6, rtol=1e-5)
