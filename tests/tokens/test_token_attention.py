"""Token-sequence SE-family modules against transcriptions of each family's formula over tokens."""

import math

import pytest
import torch

import excite
from excite.layers import SE
from excite.tokens import REFUSED_FAMILIES, TOKEN_FAMILIES, create_token_attention


def _se_reference(x, module, prefix):
    """SE over tokens: z = mean of the non-prefix tokens, s = σ(W2 ReLU(W1 z + b1) + b2), y = x ⊙ s."""
    se = module.attention
    z = x[:, prefix:].double().mean(dim=1)
    hidden = torch.relu(z @ se.fc1.weight.double().T + se.fc1.bias.double())
    gate = torch.sigmoid(hidden @ se.fc2.weight.double().T + se.fc2.bias.double())
    return x.double() * gate[:, None, :], gate


@pytest.mark.parametrize("prefix", [0, 1, 2])
def test_se_over_tokens_matches_formula(prefix):
    torch.manual_seed(0)
    module = excite.create("se", 32, layout="tokens", reduction=4, num_prefix_tokens=prefix)
    x = torch.randn(3, 10, 32)
    expected, _ = _se_reference(x, module, prefix)
    torch.testing.assert_close(module(x).double(), expected, rtol=1e-5, atol=1e-6)


def test_prefix_is_left_out_of_the_squeeze_and_optionally_unscaled():
    torch.manual_seed(1)
    module = excite.create("se", 16, layout="tokens", reduction=4, exclude_cls=True, scale_prefix=False)
    x = torch.randn(2, 6, 16)
    y = module(x)
    torch.testing.assert_close(y[:, 0], x[:, 0])
    changed = x.clone()
    changed[:, 0] += 100.0
    # The class token is not part of the squeeze, so the patch tokens' output does not move.
    torch.testing.assert_close(module(changed)[:, 1:], y[:, 1:])
    _, gate = _se_reference(x, module, 1)
    torch.testing.assert_close(y[:, 1:].double(), x[:, 1:].double() * gate[:, None], rtol=1e-5, atol=1e-6)


def test_se_over_tokens_is_the_1d_module_on_the_transposed_view():
    torch.manual_seed(2)
    module = excite.create("se", 24, layout="tokens", reduction=4)
    channels_first = SE(24, dim=1, reduction=4)
    channels_first.load_state_dict(module.attention.state_dict())
    x = torch.randn(2, 7, 24)
    # The token module runs SE's plain-autograd arithmetic, so it equals SE's reference path exactly
    # (and its fused path to rounding).
    with excite.use_reference():
        assert torch.equal(module(x), channels_first(x.transpose(1, 2)).transpose(1, 2))
    torch.testing.assert_close(module(x), channels_first(x.transpose(1, 2)).transpose(1, 2))


def test_eca_over_tokens_matches_formula():
    torch.manual_seed(3)
    module = excite.create("eca", 16, layout="tokens", kernel_size=5, exclude_cls=True)
    x = torch.randn(2, 9, 16)
    weights = module.attention.conv.weight.detach().reshape(-1).double()
    z = x[:, 1:].double().mean(dim=1)
    gate = torch.zeros_like(z)
    for c in range(16):
        for j in range(5):
            neighbour = c + j - 2
            if 0 <= neighbour < 16:
                gate[:, c] += weights[j] * z[:, neighbour]
    expected = x.double() * torch.sigmoid(gate)[:, None]
    torch.testing.assert_close(module(x).double(), expected, rtol=1e-5, atol=1e-6)


def _dct(frequency, length):
    scale = math.sqrt(2.0) if frequency else 1.0
    return torch.tensor(
        [
            math.cos(math.pi * frequency * (p + 0.5) / length) / math.sqrt(length) * scale
            for p in range(length)
        ],
        dtype=torch.float64,
    )


def test_fca_over_a_token_grid_matches_the_dct_formula():
    torch.manual_seed(4)
    frequencies = [(0, 0), (1, 2), (3, 1), (4, 3)]
    module = excite.create(
        "fca", 8, layout="tokens", grid=(5, 4), frequencies=frequencies, reduction=2, exclude_cls=True
    )
    x = torch.randn(2, 1 + 20, 8)
    grid = x[:, 1:].double().transpose(1, 2).reshape(2, 8, 5, 4)
    z = torch.zeros(2, 8, dtype=torch.float64)
    for c in range(8):
        u, v = frequencies[c // 2]
        basis = _dct(u, 5)[:, None] * _dct(v, 4)[None, :]
        z[:, c] = (grid[:, c] * basis).sum(dim=(1, 2))
    fca = module.attention
    gate = torch.sigmoid(torch.relu(z @ fca.fc1.weight.double().T) @ fca.fc2.weight.double().T)
    torch.testing.assert_close(module(x).double(), x.double() * gate[:, None], rtol=1e-5, atol=1e-6)


def test_simam_over_tokens_matches_formula_and_leaves_prefix_alone():
    torch.manual_seed(5)
    module = excite.create("simam", 12, layout="tokens", exclude_cls=True, lambda_=1e-3)
    x = torch.randn(2, 8, 12)
    tokens = x[:, 1:].double()
    d = (tokens - tokens.mean(dim=1, keepdim=True)) ** 2
    v = d.sum(dim=1, keepdim=True) / (tokens.shape[1] - 1)
    expected = tokens * torch.sigmoid(d / (4 * (v + 1e-3)) + 0.5)
    y = module(x)
    torch.testing.assert_close(y[:, 0], x[:, 0])
    torch.testing.assert_close(y[:, 1:].double(), expected, rtol=1e-5, atol=1e-6)


def test_gradients_reach_input_and_weights():
    torch.manual_seed(6)
    for name in ("se", "eca", "cse"):
        module = create_token_attention(name, 16, exclude_cls=True)
        x = torch.randn(2, 5, 16, requires_grad=True)
        module(x).square().sum().backward()
        assert x.grad.abs().sum() > 0
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())


@pytest.mark.parametrize("name", sorted(REFUSED_FAMILIES))
def test_families_without_a_token_meaning_are_refused_with_the_list(name):
    with pytest.raises(ValueError) as error:
        excite.create(name, 16, layout="tokens")
    for family in TOKEN_FAMILIES:
        assert family in str(error.value)


def test_invalid_calls_raise_value_errors_that_name_the_problem():
    with pytest.raises(ValueError, match="unknown attention"):
        create_token_attention("squeeze", 16)
    with pytest.raises(ValueError, match="grid"):
        create_token_attention("fca", 16)
    with pytest.raises(ValueError, match="contradicts"):
        create_token_attention("se", 16, exclude_cls=False, num_prefix_tokens=1)
    module = create_token_attention("se", 16, reduction=4)
    with pytest.raises(ValueError, match=r"C=16"):
        module(torch.randn(2, 5, 8))
    with pytest.raises(ValueError, match=r"\(N, L, C\)"):
        module(torch.randn(2, 16, 5, 5))
    fca = create_token_attention("fca", 16, grid=(2, 2), frequencies=[(0, 0)], reduction=4)
    with pytest.raises(ValueError, match="grid"):
        fca(torch.randn(2, 5, 16))
