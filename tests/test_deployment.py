"""Deployment of every module in every dim: TorchScript, ``torch.compile``, ONNX export run at a new size,
channels_last, autocast, pure fp16, batch size 1 in training; and the ValueErrors for bad input.

Reference outputs are always the eager module on the same input, so each check asks "does this path
compute the same function", at fp32 rounding for the fp32 paths.
"""

from __future__ import annotations

import io
import warnings

import pytest
import torch
from excite_test_helpers import CHANNELS, DIMS, TESTED_NAMES, build, sample, spatial_size

import excite

CASES = [pytest.param(name, dim, id=f"{name}-{dim}d") for name in TESTED_NAMES for dim in DIMS]


def assert_same_function(actual, expected):
    torch.testing.assert_close(actual, expected, atol=2e-6, rtol=2e-5)


# ---------------------------------------------------------------------------------------------------
# TorchScript
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, dim", CASES)
def test_torchscript(name, dim):
    module = build(name, dim)
    scripted = torch.jit.script(module)
    for other in (False, True):
        x = sample(name, dim, batch=3 if other else 2, other=other)
        assert_same_function(scripted(x), module(x))


# ---------------------------------------------------------------------------------------------------
# torch.compile
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, dim", CASES)
def test_torch_compile_fullgraph_dynamic(name, dim):
    """Inductor on CPU, one graph, two batch sizes and spatial sizes. Run under no_grad: with parameters
    that require grad Inductor also lowers the backward, whose 1-D convolution specialises the length
    and recompiles at the second size (correct, only slower)."""
    module = build(name, dim)
    torch._dynamo.reset()
    compiled = torch.compile(module, fullgraph=True, dynamic=True)
    with torch.no_grad():
        for other in (False, True):
            x = sample(name, dim, batch=3 if other else 2, other=other)
            assert_same_function(compiled(x), module(x))


# ---------------------------------------------------------------------------------------------------
# ONNX
# ---------------------------------------------------------------------------------------------------


def export_onnx(module, x, dynamo: bool) -> bytes:
    dim = x.dim() - 2
    axes = {0: "batch", **{axis: f"s{axis}" for axis in range(2, dim + 2)}}
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            dynamic = {axis: torch.export.Dim.DYNAMIC for axis in axes}
            program = torch.onnx.export(
                module, (x,), dynamic_shapes=({**dynamic},), dynamo=True, verbose=False
            )
            program.save(buffer)
        else:
            torch.onnx.export(
                module,
                (x,),
                buffer,
                dynamo=False,
                input_names=["x"],
                output_names=["y"],
                dynamic_axes={"x": axes, "y": axes},
            )
    return buffer.getvalue()


@pytest.mark.parametrize("exporter", ["dynamo", "torchscript"])
@pytest.mark.parametrize("name, dim", CASES)
def test_onnx_export_runs_at_a_new_size(name, dim, exporter):
    """Exported at one size, run in onnxruntime at another batch and spatial size (pooling frozen at the
    traced size, as with AdaptiveAvgPool2d((None, 1)), shows up here)."""
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    module = build(name, dim)
    model = export_onnx(module, sample(name, dim), dynamo=exporter == "dynamo")
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    for other in (False, True):
        x = sample(name, dim, batch=3 if other else 2, other=other, seed=7)
        (y,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
        assert_same_function(torch.from_numpy(y), module(x).detach())


# ---------------------------------------------------------------------------------------------------
# Memory format, precision, batch size 1
# ---------------------------------------------------------------------------------------------------

LAYOUTS = {2: torch.channels_last, 3: torch.channels_last_3d}


@pytest.mark.parametrize("name, dim", [c for c in CASES if c.values[1] in LAYOUTS])
def test_channels_last_input_keeps_its_layout(name, dim):
    module = build(name, dim)
    x = sample(name, dim)
    layout = LAYOUTS[dim]
    x_last = x.contiguous(memory_format=layout)
    y = module(x_last)
    assert y.is_contiguous(memory_format=layout)
    assert_same_function(y, module(x))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("name, dim", CASES)
def test_autocast(name, dim, dtype):
    module = build(name, dim)
    x = sample(name, dim)
    with torch.autocast("cpu", dtype=dtype):
        y = module(x)
    assert torch.isfinite(y).all()
    tolerance = 5e-2 if dtype == torch.bfloat16 else 1e-2
    torch.testing.assert_close(y.float(), module(x), atol=tolerance, rtol=tolerance)


@pytest.mark.parametrize("name, dim", CASES)
def test_pure_fp16_on_large_inputs(name, dim):
    """fp16 weights and inputs in [0, 600]: ``(x - μ)²`` and spatial sums exceed fp16's 65504, so the
    statistics must be accumulated in fp32 (SimAM returns inf/NaN here in peer libraries)."""
    module = build(name, dim)
    x = 600 * torch.rand(2, CHANNELS, *spatial_size(name, dim), generator=torch.Generator().manual_seed(3))
    x16 = x.half()
    y16 = module.half()(x16)
    assert y16.dtype == torch.float16
    assert torch.isfinite(y16).all()
    y32 = module.float()(x16.float())
    # fp16 weights shift saturated pre-sigmoid values of magnitude ~10³ by a few units, which moves a
    # handful of gates by several percent; a wrong statistic would move all of them.
    relative_error = (y16.float() - y32).abs() / (y32.abs() + 1)
    assert relative_error.mean() < 3e-2


@pytest.mark.parametrize("name, dim", CASES)
def test_batch_of_one_trains(name, dim):
    module = build(name, dim).train()
    x = sample(name, dim, batch=1).requires_grad_()
    y = module(x)
    (y * torch.randn_like(y)).sum().backward()
    assert torch.isfinite(y).all() and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    for parameter_name, parameter in module.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), parameter_name


# ---------------------------------------------------------------------------------------------------
# Bad input: a ValueError naming the module, what it expected and what it got
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, dim", CASES)
def test_wrong_rank(name, dim):
    module = build(name, dim)
    good = sample(name, dim)
    for bad in (good[..., 0], good.unsqueeze(-1)):
        with pytest.raises(ValueError) as info:
            module(bad)
        message = str(info.value)
        assert type(module).__name__ in message
        assert f"expected a {dim + 2}-D input" in message
        assert str(list(bad.shape)) in message


@pytest.mark.parametrize("name, dim", CASES)
def test_wrong_channel_count(name, dim):
    module = build(name, dim)
    bad = sample(name, dim, channels=CHANNELS + 1)
    with pytest.raises(ValueError) as info:
        module(bad)
    message = str(info.value)
    assert type(module).__name__ in message
    assert f"built for {CHANNELS} channels" in message and f"{CHANNELS + 1} channels" in message


REDUCED = {
    "se": {},
    "cse": {"reduction": 16},
    "scse": {"reduction": 16},
    "fca": {"frequencies": "top8"},
    "spse": {},
    "rgse": {},
    "cbam": {},
}


@pytest.mark.parametrize("name", sorted(REDUCED))
def test_channels_below_reduction(name):
    """C < r gives a 0-wide bottleneck, which smp builds silently and then crashes on."""
    class_name = excite._registry.lookup(name).__name__
    with pytest.raises(
        ValueError, match=rf"^{class_name}: channels=8 < reduction=16 gives a 0-wide bottleneck"
    ):
        excite.create(name, 8, **REDUCED[name])


@pytest.mark.parametrize(
    "channels, frequencies, count", [(24, "top16", 16), (30, "low4", 4), (10, [(0, 0), (1, 1), (2, 2)], 3)]
)
def test_fca_channels_not_divisible_by_frequencies(channels, frequencies, count):
    with pytest.raises(
        ValueError,
        match=rf"FCA: channels={channels} must be divisible by the number of frequencies \({count}\)",
    ):
        excite.create("fca", channels, frequencies=frequencies, reduction=2)


@pytest.mark.parametrize("dim", DIMS)
def test_simam_single_position(dim):
    x = torch.randn(2, 4, *([1] * dim))
    with pytest.raises(ValueError, match=r"SimAM: needs more than one spatial position.*got shape"):
        excite.create("simam", dim=dim)(x)
