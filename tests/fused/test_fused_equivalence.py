"""The fused path against the plain-autograd reference path, for every module, dim, dtype and layout.

The oracle is the reference path itself (``excite.use_reference()``: the modules' own torch ops,
differentiated by autograd), run in float64 as the ground truth. In half precision the fused path and
the reference path both round, differently (the fused kernels accumulate in fp32 and round once; the
reference rounds every intermediate product), so each is measured against the float64 truth and the
fused error must stay within twice the reference's own error plus two units in the last place of the
dtype. In fp32 both are within a few ulps of the truth. Outputs, input gradients, parameter gradients
and BatchNorm running statistics (training mode) are all compared, and outputs and input gradients
must keep the input's memory layout.
"""

from __future__ import annotations

import pytest
import torch
from excite_test_helpers import FOUNDATION_NAMES, build, sample

import excite
from excite.fused import forced_backend

DTYPES = (torch.float32, torch.bfloat16, torch.float16)
LAYOUTS = ("contiguous", "channels_last")
# Unit roundoff of each dtype: the tolerance unit. In float64 the reference *is* the truth (its own
# error is 0), so cancellation in gradients that vanish in theory needs a looser unit.
ULP = {torch.float64: 2.0**-40, torch.float32: 2.0**-23, torch.bfloat16: 2.0**-8, torch.float16: 2.0**-11}
BATCH = 4  # BatchNorm over pooled descriptors is ill-conditioned at batch 2 (two values normalise to ±1)


def in_layout(x: torch.Tensor, layout: str) -> torch.Tensor:
    """``x`` with unit stride along channels for ``channels_last`` (1-D: a transposed ``(N, L, C)``)."""
    if layout == "contiguous":
        return x.contiguous()
    if x.dim() == 3:
        return x.transpose(1, 2).contiguous().transpose(1, 2)
    return x.contiguous(memory_format=torch.channels_last if x.dim() == 4 else torch.channels_last_3d)


def run(
    name: str, dim: int, dtype: torch.dtype, layout: str, reference: bool, device: str = "cpu"
) -> dict[str, torch.Tensor]:
    """Output, gradients (input and every parameter) and floating buffers after one training step, on
    ``device`` (returned on the CPU)."""
    module = build(name, dim).train().to(device=device, dtype=dtype)
    x = in_layout(sample(name, dim, batch=BATCH, dtype=torch.float64), layout)
    x = x.to(device=device, dtype=dtype).requires_grad_()
    generator = torch.Generator().manual_seed(7)
    grad = torch.randn(x.shape, generator=generator, dtype=torch.float64)
    with excite.use_reference(reference):
        y = module(x)
        grad = in_layout(grad, layout).to(device=device, dtype=dtype)
        names = ["x"] + [n for n, _ in module.named_parameters()]
        grads = torch.autograd.grad(y, [x] + list(module.parameters()), grad, allow_unused=True)
    out = {"y": y, "x.stride": torch.tensor(y.stride()), "grad.stride": torch.tensor(grads[0].stride())}
    for key, value in zip(names, grads):
        if value is not None:
            out[f"grad {key}"] = value
    for key, buffer in module.named_buffers():
        if buffer.is_floating_point():
            out[f"buffer {key}"] = buffer
    return {key: value.detach().cpu() for key, value in out.items()}


def assert_as_accurate(name: str, fused: dict, ref: dict, truth: dict, dtype: torch.dtype) -> None:
    assert set(fused) == set(ref) == set(truth)
    assert torch.equal(fused["x.stride"], ref["x.stride"]), "the output does not keep the input's layout"
    assert torch.equal(fused["grad.stride"], ref["grad.stride"]), "grad_x does not keep the input's layout"
    # Gradients that are exactly zero in theory (biases in front of a training-mode BatchNorm) are
    # compared on the scale of the module's other parameter gradients.
    parameter_scale = max([truth[k].abs().max().item() for k in truth if k.startswith("grad ")] + [1e-12])
    failures: list[str] = []
    for key in truth:
        if key.endswith("stride"):
            continue
        t = truth[key]
        scale = max(t.abs().max().item(), 0.1 * parameter_scale if key.startswith("grad ") else 0.0, 1e-6)
        error_fused = (fused[key].double() - t).abs().max().item()
        error_ref = (ref[key].double() - t).abs().max().item()
        allowed = 2.0 * error_ref + 16 * ULP[dtype] * scale
        if error_fused > allowed:
            failures.append(
                f"{key}: fused error {error_fused:.3g} > {allowed:.3g} (reference {error_ref:.3g})"
            )
    assert not failures, f"{name}: " + "; ".join(failures)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).split(".")[-1])
@pytest.mark.parametrize("dim", (1, 2, 3))
@pytest.mark.parametrize("name", FOUNDATION_NAMES)
def test_fused_matches_reference(name: str, dim: int, dtype: torch.dtype, layout: str) -> None:
    truth = run(name, dim, torch.float64, layout, reference=True)
    ref = run(name, dim, dtype, layout, reference=True)
    fused = run(name, dim, dtype, layout, reference=False)
    assert_as_accurate(name, fused, ref, truth, dtype)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dim", (1, 2, 3))
@pytest.mark.parametrize("name", FOUNDATION_NAMES)
def test_torch_op_kernels_match_reference(name: str, dim: int, layout: str) -> None:
    """The fallback kernels (no compiler, no Triton) give the same results."""
    truth = run(name, dim, torch.float64, layout, reference=True)
    ref = run(name, dim, torch.float32, layout, reference=True)
    with forced_backend("torch"):
        fused = run(name, dim, torch.float32, layout, reference=False)
    assert_as_accurate(name, fused, ref, truth, torch.float32)


@pytest.mark.parametrize("aggregation", ("add", "mul", "concat"))
@pytest.mark.parametrize("dtype", (torch.float32, torch.bfloat16), ids=lambda d: str(d).split(".")[-1])
def test_scse_aggregations(aggregation: str, dtype: torch.dtype) -> None:
    """scSE's other aggregations (TMI 2019, segmentation_models_pytorch) take their own kernels."""

    def run_scse(precision: torch.dtype, reference: bool) -> dict[str, torch.Tensor]:
        module = build("scse", 2, aggregation=aggregation).train().to(precision)
        x = sample("scse", 2, batch=BATCH, dtype=torch.float64).to(precision).requires_grad_()
        with excite.use_reference(reference):
            y = module(x)
            grad = torch.linspace(-1, 1, y.numel(), dtype=torch.float64).view_as(y).to(precision)
            grads = torch.autograd.grad(y, [x] + list(module.parameters()), grad)
        out = {"y": y, "x.stride": torch.tensor(y.stride()), "grad.stride": torch.tensor(y.stride())}
        out.update({f"grad {i}": g for i, g in enumerate(grads)})
        return out

    truth = run_scse(torch.float64, True)
    assert_as_accurate("scse", run_scse(dtype, False), run_scse(dtype, True), truth, dtype)


@pytest.mark.parametrize("name", ("cbam", "rgse", "fca", "spse"))
def test_variants(name: str) -> None:
    """Options that change the fused path: CBAM without its spatial gate, RGSE without a fusion conv
    (stage 4), a learnable FcaNet bank, SPSE at a size its pyramid does not divide."""
    options = {
        "cbam": {"spatial": False},
        "rgse": {"pool_size": 2, "fusion_kernel": None},
        "fca": {"learnable": True},
        "spse": {},
    }[name]
    size = {"rgse": (3, 2), "spse": (7, 5)}.get(name, (6, 5))

    def run_variant(precision: torch.dtype, reference: bool) -> dict[str, torch.Tensor]:
        module = build(name, 2, **options).train().to(precision)
        generator = torch.Generator().manual_seed(3)
        x = torch.randn((BATCH, 16, *size), generator=generator, dtype=torch.float64)
        x = x.to(precision).requires_grad_()
        with excite.use_reference(reference):
            y = module(x)
            grad = torch.linspace(-1, 1, y.numel(), dtype=torch.float64).view_as(y).to(precision)
            grads = torch.autograd.grad(y, [x] + list(module.parameters()), grad)
        out = {"y": y, "x.stride": torch.tensor(y.stride()), "grad.stride": torch.tensor(grads[0].stride())}
        out.update({f"grad {i}": g for i, g in enumerate(grads)})
        return out

    truth = run_variant(torch.float64, True)
    assert_as_accurate(
        name, run_variant(torch.float32, False), run_variant(torch.float32, True), truth, torch.float32
    )


@pytest.mark.parametrize("dtype", (torch.float32, torch.bfloat16), ids=lambda d: str(d).split(".")[-1])
@pytest.mark.parametrize("size", [(13, 11), (97, 91), (5, 3, 7)], ids=str)
def test_coordinate_attention_plane_sizes(size: tuple[int, ...], dtype: torch.dtype) -> None:
    """Coordinate Attention's gradient statistics take four lines at a time from a per-row product
    buffer, with a remainder (13 lines), and in blocks of whole lines when a plane exceeds the buffer
    (97 x 91 = 8,827 positions > 8,192: 90 lines, then 7); against the reference path, in 2-D and 3-D."""
    dim = len(size)

    def run_coord(precision: torch.dtype, reference: bool) -> dict[str, torch.Tensor]:
        module = build("coord", dim).train().to(precision)
        generator = torch.Generator().manual_seed(5)
        x = torch.randn((2, 16, *size), generator=generator, dtype=torch.float64)
        x = x.to(precision).requires_grad_()
        with excite.use_reference(reference):
            y = module(x)
            grad = torch.randn(y.shape, generator=generator, dtype=torch.float64).to(precision)
            grads = torch.autograd.grad(y, [x] + list(module.parameters()), grad)
        out = {"y": y, "x.stride": torch.tensor(y.stride()), "grad.stride": torch.tensor(grads[0].stride())}
        out.update({f"grad {i}": g for i, g in enumerate(grads)})
        return out

    truth = run_coord(torch.float64, True)
    assert_as_accurate("coord", run_coord(dtype, False), run_coord(dtype, True), truth, dtype)
