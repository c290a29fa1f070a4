"""Properties of every module: exact gradients (gradcheck in float64), and hypothesis tests over random
shapes and dims: shape preservation, the range of the effective gate y/x, and the symmetries each
module has (channel permutations, cyclic channel shifts, spatial permutations)."""

from __future__ import annotations

import pytest
import torch
from excite_test_helpers import DIMS, TESTED_NAMES, build, randomize_, sample
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.func import functional_call

import excite

# ---------------------------------------------------------------------------------------------------
# Gradients
# ---------------------------------------------------------------------------------------------------

GRAD_CASES = [pytest.param(name, dim, id=f"{name}-{dim}d") for name in TESTED_NAMES for dim in DIMS]


@pytest.mark.parametrize("path", ["reference", "default"])
@pytest.mark.parametrize("name, dim", GRAD_CASES)
def test_gradcheck(name, dim, path):
    """Input and parameter gradients against finite differences, in training mode (BatchNorm uses
    batch statistics). ``reference`` forces the plain-autograd path; ``default`` is what users get
    (the fused kernels where they exist)."""
    module = build(name, dim).double().train()
    x = sample(name, dim, batch=3, dtype=torch.float64).requires_grad_()
    names = [n for n, _ in module.named_parameters()]
    parameters = tuple(p.detach().clone().requires_grad_() for _, p in module.named_parameters())

    def function(inputs, *weights):
        return functional_call(module, dict(zip(names, weights)), (inputs,))

    with excite.use_reference(path == "reference"):
        assert torch.autograd.gradcheck(function, (x, *parameters), fast_mode=True)


@pytest.mark.parametrize("name, dim", GRAD_CASES)
def test_backward_twice_with_retained_graph(name, dim):
    """``backward(retain_graph=True)`` then ``backward()`` gives the same gradients twice (gradcheck,
    gradient penalties and several losses on one output rely on it)."""
    module = build(name, dim).train()
    x = sample(name, dim, batch=3).requires_grad_()
    y = module(x)
    weights = torch.randn_like(y)
    (first,) = torch.autograd.grad((y * weights).sum(), x, retain_graph=True)
    (second,) = torch.autograd.grad((y * weights).sum(), x)
    torch.testing.assert_close(first, second)


# ---------------------------------------------------------------------------------------------------
# Hypothesis: random shapes
# ---------------------------------------------------------------------------------------------------

PROPERTY_SETTINGS = settings(max_examples=25, deadline=None, derandomize=True, database=None)


@st.composite
def module_and_input(draw, names=TESTED_NAMES, options=None):
    """A module with random weights and an input of random batch, channels and spatial size."""
    name = draw(st.sampled_from(names))
    dim = draw(st.sampled_from(DIMS))
    batch = draw(st.integers(1, 3))
    chosen = dict((options or {}).get(name, {}))
    if name == "rgse":
        # pool 2 then (optionally) a stride-2 fusion conv must leave one value per axis.
        fusion = draw(st.sampled_from([None, 2]))
        chosen.update(pool_size=2, fusion_kernel=fusion, reduction=4)
        size = [draw(st.integers(2, 3) if fusion is None else st.integers(4, 5)) for _ in range(dim)]
    else:
        size = [draw(st.integers(1, 6)) for _ in range(dim)]
        size[0] = max(size[0], 2)  # SimAM needs two positions
    if name == "fca":
        chosen.setdefault("frequencies", draw(st.sampled_from(["top1", "top2", "low4", "bot4"])))
        chosen.setdefault("reduction", 2)
        parts = len(excite.layers.fca.named_frequencies(chosen["frequencies"]))
        channels = parts * draw(st.integers(1, 4))
        channels = max(channels, 4)
    else:
        channels = draw(st.integers(4, 24))
    if name not in ("sse", "eca", "simam", "eca_coord"):
        chosen.setdefault("reduction", draw(st.sampled_from([1, 2, 4])))
    seed = draw(st.integers(0, 2**16))
    module = randomize_(excite.create(name, channels, dim=dim, **chosen), seed).train(draw(st.booleans()))
    generator = torch.Generator().manual_seed(seed)
    x = 2 * torch.randn(batch, channels, *size, generator=generator)
    return name, module, x


@PROPERTY_SETTINGS
@given(module_and_input())
def test_output_shape_equals_input_shape(case):
    name, module, x = case
    with torch.no_grad():
        y = module(x)
    expected = list(x.shape)
    if getattr(module, "aggregation", None) == "concat":
        expected[1] *= 2
    assert list(y.shape) == expected


@PROPERTY_SETTINGS
@given(module_and_input(names=[n for n in TESTED_NAMES if n != "scse"]))
def test_gate_lies_in_unit_interval(case):
    """Every module except scSE's non-max aggregations multiplies x by a product of sigmoids."""
    name, module, x = case
    with torch.no_grad():
        y = module(x)
    mask = x.abs() > 1e-3
    gate = y[mask] / x[mask]
    assert gate.min() >= -1e-6 and gate.max() <= 1 + 1e-6


@PROPERTY_SETTINGS
@given(module_and_input(names=["simam"]))
def test_simam_gate_lies_between_sigmoid_half_and_one(case):
    """σ(E⁻¹) with E⁻¹ >= 1/2: SimAM never suppresses a neuron below σ(0.5) ≈ 0.62."""
    _, module, x = case
    mask = x.abs() > 1e-3
    gate = module(x)[mask] / x[mask]
    assert gate.min() >= torch.sigmoid(torch.tensor(0.5)) - 1e-6 and gate.max() <= 1 + 1e-6


@PROPERTY_SETTINGS
@given(
    module_and_input(names=["scse"], options={"scse": {"aggregation": "max"}}),
    st.sampled_from(["max", "add", "mul", "concat"]),
)
def test_scse_aggregation_bounds(case, aggregation):
    """max: y/x in [0, 1]; add: y/x in [0, 2]; mul: 0 <= y <= x²; concat: each half's ratio in [0, 1]."""
    _, module, x = case
    module.aggregation = aggregation
    with torch.no_grad():
        y = module(x)
    mask = x.abs() > 1e-3
    eps = 1e-6
    if aggregation == "mul":
        assert (y >= -eps).all() and (y <= x**2 * (1 + eps) + eps).all()
        return
    if aggregation == "concat":
        channels = x.shape[1]
        for half in (y[:, :channels], y[:, channels:]):
            ratio = half[mask] / x[mask]
            assert ratio.min() >= -eps and ratio.max() <= 1 + eps
        return
    ratio = y[mask] / x[mask]
    upper = 2.0 if aggregation == "add" else 1.0
    assert ratio.min() >= -eps and ratio.max() <= upper + eps


# ---------------------------------------------------------------------------------------------------
# Hypothesis: symmetries
# ---------------------------------------------------------------------------------------------------


def permutation(draw, n):
    return torch.tensor(draw(st.permutations(list(range(n)))))


@PROPERTY_SETTINGS
@given(module_and_input(names=["simam"]), st.data())
def test_simam_commutes_with_channel_and_spatial_permutations(case, data):
    """Statistics are per channel over all positions: permuting channels, or positions, commutes."""
    _, module, x = case
    channel_order = permutation(data.draw, x.shape[1])
    torch.testing.assert_close(module(x[:, channel_order]), module(x)[:, channel_order])
    flat = x.flatten(2)
    position_order = permutation(data.draw, flat.shape[2])
    permuted = module(flat[:, :, position_order].reshape(x.shape)).flatten(2)
    torch.testing.assert_close(permuted, module(x).flatten(2)[:, :, position_order])


@PROPERTY_SETTINGS
@given(module_and_input(names=["sse"]), st.data())
def test_sse_commutes_with_a_channel_permutation_of_input_and_weight(case, data):
    _, module, x = case
    order = permutation(data.draw, x.shape[1])
    permuted = excite.create("sse", x.shape[1], dim=x.dim() - 2)
    with torch.no_grad():
        permuted.conv.weight.copy_(module.conv.weight[:, order])
        permuted.conv.bias.copy_(module.conv.bias)
    torch.testing.assert_close(permuted(x[:, order]), module(x)[:, order])


@PROPERTY_SETTINGS
@given(module_and_input(names=["se", "cse"]), st.data())
def test_se_commutes_with_a_channel_permutation_of_input_and_weights(case, data):
    """Permuting fc1's input columns and fc2's output rows with the channels commutes with SE."""
    name, module, x = case
    order = permutation(data.draw, x.shape[1])
    permuted = excite.create(name, x.shape[1], dim=x.dim() - 2, hidden_channels=module.hidden_channels)
    state = dict(module.state_dict())
    state["fc1.weight"] = state["fc1.weight"][:, order]
    state["fc2.weight"] = state["fc2.weight"][order]
    state["fc2.bias"] = state["fc2.bias"][order]
    permuted.load_state_dict(state)
    torch.testing.assert_close(permuted(x[:, order]), module(x)[:, order])


@PROPERTY_SETTINGS
@given(module_and_input(names=["eca"], options={"eca": {"padding": "circular"}}), st.integers(1, 23))
def test_circular_eca_commutes_with_cyclic_channel_shifts(case, shift):
    """A shared kernel with circular padding: rolling the channels rolls the output."""
    _, module, x = case
    shifted = module(torch.roll(x, shift, dims=1))
    torch.testing.assert_close(shifted, torch.roll(module(x), shift, dims=1))


@PROPERTY_SETTINGS
@given(module_and_input(names=["eca"]))
def test_eca_channel_reversal_flips_the_kernel(case):
    """Zero padding breaks the shift symmetry but keeps reflection: reversing the channels equals
    using the reversed kernel."""
    _, module, x = case
    mirrored = excite.create("eca", x.shape[1], dim=x.dim() - 2, kernel_size=module.kernel_size)
    with torch.no_grad():
        mirrored.conv.weight.copy_(module.conv.weight.flip(-1))
    torch.testing.assert_close(mirrored(x.flip(1)), module(x).flip(1))


@PROPERTY_SETTINGS
@given(module_and_input(names=["se", "cse", "eca", "sse"]), st.data())
def test_global_pooling_modules_commute_with_spatial_permutations(case, data):
    """SE, cSE and ECA see positions only through their mean; sSE acts per position."""
    _, module, x = case
    flat = x.flatten(2)
    order = permutation(data.draw, flat.shape[2])
    permuted = module(flat[:, :, order].reshape(x.shape)).flatten(2)
    torch.testing.assert_close(permuted, module(x).flatten(2)[:, :, order])
