"""The hand-derived backwards against finite differences, and what the fused Functions keep for backward.

``gradcheck`` (float64) compares every Function's closed-form backward with central differences of its
own forward, for the input and every parameter, in training mode (BatchNorm on batch statistics), for
both kernel backends and both memory layouts.

The memory property is measured with ``torch.autograd.graph.saved_tensors_hooks``: every tensor packed
for backward during the forward is recorded by storage, and storages that are the input's or the
module's own parameters and buffers are not extra memory. The fused path must keep the input and
nothing else of its size; the reference path, for contrast, keeps several full-size intermediates.
"""

from __future__ import annotations

import pytest
import torch
from excite_test_helpers import FOUNDATION_NAMES, build, sample
from torch.func import functional_call

import excite
from excite.fused import forced_backend
from excite.fused.functions import SmallConvFunction


def in_layout(x: torch.Tensor, layout: str) -> torch.Tensor:
    if layout == "contiguous":
        return x.contiguous()
    if x.dim() == 3:
        return x.transpose(1, 2).contiguous().transpose(1, 2)
    return x.contiguous(memory_format=torch.channels_last if x.dim() == 4 else torch.channels_last_3d)


GRADCHECK_CASES = [(name, dim, "cpp", "contiguous") for name in FOUNDATION_NAMES for dim in (1, 2, 3)]
GRADCHECK_CASES += [(name, dim, "cpp", "channels_last") for name in FOUNDATION_NAMES for dim in (1, 3)]
GRADCHECK_CASES += [(name, 2, "torch", "contiguous") for name in FOUNDATION_NAMES]


@pytest.mark.parametrize("name, dim, backend, layout", GRADCHECK_CASES)
def test_gradcheck(name: str, dim: int, backend: str, layout: str) -> None:
    module = build(name, dim).double().train()
    x = in_layout(sample(name, dim, batch=3, dtype=torch.float64), layout).requires_grad_()
    names = [n for n, _ in module.named_parameters()]
    parameters = tuple(p.detach().clone().requires_grad_() for _, p in module.named_parameters())

    def function(inputs, *weights):
        return functional_call(module, dict(zip(names, weights)), (inputs,))

    with forced_backend(backend):
        y = function(x, *parameters)
        assert "Function" in type(y.grad_fn).__name__, "the fused path was not taken"
        assert torch.autograd.gradcheck(function, (x, *parameters), fast_mode=True)


CONVS = {1: torch.nn.functional.conv1d, 2: torch.nn.functional.conv2d, 3: torch.nn.functional.conv3d}


@pytest.mark.parametrize("backend", ("cpp", "torch"))
@pytest.mark.parametrize(
    "size, kernel",
    [((17,), 7), ((13, 11), 7), ((3, 2), 7), ((9, 10), 3), ((4, 5, 6), 5), ((3, 4, 5), 3)],
    ids=str,
)
def test_small_conv_against_torch_convolution(backend: str, size: tuple[int, ...], kernel: int) -> None:
    """CBAM's spatial convolution (2 -> 1 channels, odd kernel, "same" zero padding): output, input
    gradient and weight gradient equal ``F.conv{1,2,3}d`` and its autograd, maps smaller than the kernel
    included, and the backward passes gradcheck."""
    dim = len(size)
    generator = torch.Generator().manual_seed(dim * 100 + kernel)
    inp = torch.randn((3, 2, *size), generator=generator, dtype=torch.float64, requires_grad=True)
    weight = torch.randn((1, 2, *(kernel,) * dim), generator=generator, dtype=torch.float64).requires_grad_()
    grad = torch.randn((3, 1, *size), generator=generator, dtype=torch.float64)
    expected = CONVS[dim](inp, weight, padding=kernel // 2)
    with forced_backend(backend):
        out = SmallConvFunction.apply(inp, weight)
        torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
        got = torch.autograd.grad(out, (inp, weight), grad)
        want = torch.autograd.grad(expected, (inp, weight), grad)
        for a, b in zip(got, want):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
        small = (inp[:2].detach().requires_grad_(), weight)
        assert torch.autograd.gradcheck(SmallConvFunction.apply, small)


@pytest.mark.parametrize("dtype", (torch.float32, torch.bfloat16, torch.float16), ids=str)
def test_small_conv_low_precision(dtype: torch.dtype) -> None:
    """In fp32/bf16/fp16 the C++ kernels accumulate in fp32 and round once: within one rounding (plus
    the fp32 accumulation error) of the fp64 convolution of the same rounded values."""
    generator = torch.Generator().manual_seed(1)
    inp = torch.randn((4, 2, 20, 19), generator=generator).to(dtype).requires_grad_()
    weight = torch.randn((1, 2, 7, 7), generator=generator, requires_grad=True)
    grad = torch.randn((4, 1, 20, 19), generator=generator).to(dtype)
    wide_inp = inp.detach().double().requires_grad_()
    wide_weight = weight.detach().to(dtype).double().requires_grad_()
    expected = torch.nn.functional.conv2d(wide_inp, wide_weight, padding=3)
    want = torch.autograd.grad(expected, (wide_inp, wide_weight), grad.double())
    with forced_backend("cpp"):
        out = SmallConvFunction.apply(inp, weight)
        got = torch.autograd.grad(out, (inp, weight), grad)
    assert out.dtype == dtype and got[0].dtype == dtype and got[1].dtype == torch.float32
    # One rounding to the dtype, plus fp32 rounding in each of the (at most 98) accumulated products.
    step = torch.finfo(dtype).eps + 98 * torch.finfo(torch.float32).eps
    torch.testing.assert_close(out.double(), expected, rtol=step, atol=step * expected.abs().max().item())
    torch.testing.assert_close(got[0].double(), want[0], rtol=step, atol=step * want[0].abs().max().item())
    torch.testing.assert_close(got[1].double(), want[1], rtol=1e-5, atol=1e-5 * want[1].abs().max().item())


def saved_storage_bytes(
    name: str, reference: bool, layout: str = "contiguous", dtype: torch.dtype = torch.float32
) -> tuple[int, int, dict[str, int]]:
    """``(input bytes, extra bytes saved for backward, {kind: bytes})`` for one training forward.

    Shape ``[8, 32, 16, 16]``: per-(n, c), per-position and per-(c, position) statistics are then at
    most 1/8 of the input each, so "input-sized" is unambiguous.
    """
    module = excite.create(
        name, 32, dim=2, **({"reduction": 4} if name not in ("simam", "sse", "eca") else {})
    )
    if name == "rgse":
        module = excite.create(name, 32, dim=2, reduction=4, pool_size=4, fusion_kernel=4)
    module = module.train().to(dtype)
    x = in_layout(torch.randn(8, 32, 16, 16), layout).to(dtype).requires_grad_()
    owned = {t.untyped_storage().data_ptr() for t in list(module.parameters()) + list(module.buffers())}
    input_storage = x.untyped_storage().data_ptr()
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        seen[storage.data_ptr()] = storage.nbytes()
        return t

    with excite.use_reference(reference), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = module(x)
    del y
    kinds = {"input": 0, "extra": 0}
    for pointer, nbytes in seen.items():
        if pointer == input_storage:
            kinds["input"] += nbytes
        elif pointer not in owned:
            kinds["extra"] += nbytes
    return x.untyped_storage().nbytes(), kinds["extra"], kinds


@pytest.mark.parametrize("layout", ("contiguous", "channels_last"))
@pytest.mark.parametrize("name", FOUNDATION_NAMES)
def test_fused_saves_only_the_input_and_statistics(name: str, layout: str) -> None:
    input_bytes, extra, kinds = saved_storage_bytes(name, reference=False, layout=layout)
    assert kinds["input"] == input_bytes, f"{name}: the input itself should be saved (once), got {kinds}"
    # What else is kept is statistics-sized, each at most 1/8 of the input at this shape: per-(n, c)
    # and per-position gates, Coordinate Attention's strips and its small graph (~1/3 in all), SPSE's,
    # RGSE's and FcaNet's (C, S) fp32 pooling filter (1/8).
    assert extra <= input_bytes // 2, (
        f"{name}: {extra} extra bytes saved for backward, input is {input_bytes}"
    )


@pytest.mark.parametrize("name", ("simam", "scse", "coord", "cbam"))
def test_reference_path_keeps_full_size_intermediates(name: str) -> None:
    """The measurement sees full-size tensors: for these four the plain-autograd path keeps at least one
    besides x (SE-like channel gates are already lean on the reference path: ``x * s`` saves x and s)."""
    input_bytes, extra, _ = saved_storage_bytes(name, reference=True)
    assert extra >= input_bytes, f"{name}: reference saved only {extra} extra bytes"


def test_half_precision_saves_half_precision_input() -> None:
    input_bytes, extra, kinds = saved_storage_bytes("simam", reference=False, dtype=torch.bfloat16)
    assert kinds["input"] == input_bytes == 8 * 32 * 16 * 16 * 2
    assert extra <= input_bytes // 2
