"""FcaNet frequency search: the mixed DCT pooling against the transcribed formula, sparsemax, the planted
frequency, and the fixed-basis FCA layers built from the result."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import excite
from excite.search import FrequencySearchFCA, candidate_grid
from excite.search.frequency import sparsemax


def dct_vector(frequency: int, length: int) -> torch.Tensor:
    """The orthonormal DCT-II basis, written from its definition: cos(π f (p + ½) / L) / √L, ×√2 for f > 0."""
    values = [math.cos(math.pi * frequency * (p + 0.5) / length) / math.sqrt(length) for p in range(length)]
    scale = math.sqrt(2.0) if frequency > 0 else 1.0
    return torch.tensor(values, dtype=torch.float64) * scale


def fca_by_formula(module: FrequencySearchFCA, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """z_c = Σ_f p_f Σ_ij x_cij B_u(i) B_v(j) with (u, v) = reference · (L // 7); y = x · σ(W2 ReLU(W1 z))."""
    height, width = x.shape[2:]
    z = torch.zeros(x.shape[0], x.shape[1], dtype=torch.float64)
    index = 0
    for u in range(7):
        for v in range(7):
            basis = (
                dct_vector(u * (height // 7), height)[:, None] * dct_vector(v * (width // 7), width)[None, :]
            )
            z = z + weights[index] * (x * basis).sum(dim=(2, 3))
            index += 1
    hidden = torch.relu(z @ module.fc1.weight.double().T)
    gate = torch.sigmoid(hidden @ module.fc2.weight.double().T)
    return x * gate[:, :, None, None]


def test_candidate_grid_follows_fcanet_scaling() -> None:
    dct, reference, absolute = candidate_grid((28, 28))
    assert dct == (28, 28) and len(reference) == 49
    assert reference[9] == (1, 2) and absolute[9] == (4, 8)
    dct, reference, absolute = candidate_grid((4, 4))  # smaller than the grid: pooled up to 7x7
    assert dct == (7, 7) and absolute == reference
    dct, _, absolute = candidate_grid((14, 10))
    assert dct == (14, 10) and absolute[-1] == (12, 6)


@pytest.mark.parametrize("size", [7, 14])
def test_mixed_pooling_matches_the_transcribed_dct(size: int) -> None:
    torch.manual_seed(0)
    module = FrequencySearchFCA(8, dim=2, reduction=2).double()
    with torch.no_grad():
        module.arch_logits.copy_(torch.randn(49))
    x = torch.randn(2, 8, size, size, dtype=torch.float64)
    expected = fca_by_formula(module, x, torch.softmax(module.arch_logits.detach(), 0))
    torch.testing.assert_close(module(x), expected)


def test_one_hot_sparsemax_is_fca_with_that_single_frequency() -> None:
    torch.manual_seed(1)
    module = FrequencySearchFCA(8, dim=2, reduction=2, relaxation="sparsemax")
    with torch.no_grad():
        module.arch_logits.zero_()
        module.arch_logits[7 * 3 + 5] = 5.0  # reference (3, 5)
    assert module.weights()[7 * 3 + 5] == 1.0 and module.weights().sum() == 1.0
    fca = excite.create("fca", 8, dct_size=14, frequencies=[(6, 10)], reduction=2)
    fca.fc1.load_state_dict(module.fc1.state_dict())
    fca.fc2.load_state_dict(module.fc2.state_dict())
    x = torch.randn(3, 8, 14, 14)
    torch.testing.assert_close(module(x), fca(x), rtol=1e-5, atol=1e-6)
    assert module.selected(1) == ([(3, 5)], [(6, 10)])


def test_sparsemax_is_the_projection_onto_the_simplex() -> None:
    # Martins & Astudillo's worked case: support {0, 1}, τ = (1 + 0.5 − 1) / 2 = 0.25.
    torch.testing.assert_close(sparsemax(torch.tensor([1.0, 0.5, -1.0])), torch.tensor([0.75, 0.25, 0.0]))
    torch.testing.assert_close(sparsemax(torch.zeros(4)), torch.full((4,), 0.25))
    z = torch.randn(49, dtype=torch.float64)
    p = sparsemax(z)
    assert abs(float(p.sum()) - 1.0) < 1e-12 and bool((p >= 0).all())
    # KKT: p_i = z_i − τ on the support, and z_i ≤ τ off it.
    tau = float((z - p)[p > 0].mean())
    torch.testing.assert_close((z - p)[p > 0], torch.full_like(z[p > 0], tau))
    assert bool((z[p == 0] <= tau + 1e-12).all())


PLANTED = (2, 3)


def planted_data(count: int, seed: int):
    """The class is the sign of the (2, 3) DCT component of every channel; the rest is noise around a DC
    level of 1. The network below sees the input only through the FCA gate, so the search must put its
    weight on (2, 3) to read the class."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 2, (count,), generator=generator)
    basis = (dct_vector(PLANTED[0], 7)[:, None] * dct_vector(PLANTED[1], 7)[None, :]).float()
    x = torch.randn(count, 16, 7, 7, generator=generator) + 1.0
    return x + (2 * labels - 1).float().view(count, 1, 1, 1) * 1.5 * basis, labels


class GateOnly(nn.Module):
    def __init__(self, attention) -> None:
        super().__init__()
        self.att = attention(16, dim=2)
        self.head = nn.Linear(16, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The (2, 3) component averages to 0 over space: only the gate can carry it to the head.
        return self.head(4 * self.att(x).mean(dim=(2, 3)))


@pytest.mark.parametrize("relaxation", ["softmax", "sparsemax"])
def test_search_finds_the_planted_frequency(tmp_path, relaxation: str) -> None:
    x, y = planted_data(1024, 1)
    xv, yv = planted_data(256, 2)
    train = DataLoader(
        TensorDataset(x, y), batch_size=64, shuffle=True, generator=torch.Generator().manual_seed(0)
    )
    val = DataLoader(
        TensorDataset(xv, yv), batch_size=128, shuffle=True, generator=torch.Generator().manual_seed(1)
    )
    result = excite.search.frequencies(
        GateOnly,
        train,
        val,
        k=4,
        reduction=4,
        relaxation=relaxation,
        epochs=4,
        weight_lr=1e-2,
        arch_lr=5e-2,
        retrain_epochs=2,
        progress=False,
    )
    layer = result.layers[0]
    assert layer.reference[0] == list(PLANTED)
    assert max(layer.weights) == layer.weights[7 * PLANTED[0] + PLANTED[1]]
    assert result.retrain["metrics"]["val"] > 0.95
    fca = result.model.att
    assert isinstance(fca, excite.FCA) and fca.frequencies[0] == PLANTED and len(fca.frequencies) == 4
    paths = result.save(tmp_path)
    assert "(2,3)" in paths["markdown"].read_text()
    assert json.loads(paths["json"].read_text())["layers"][0]["reference"][0] == list(PLANTED)


def test_factories_build_fixed_fca_layers_on_the_searched_grids() -> None:
    models = pytest.importorskip("excite.models")
    model_fn = lambda attention: models.resnet18(  # noqa: E731
        attention=attention, stem="small", width=16, in_channels=1, num_classes=3
    )
    x = torch.randn(4, 1, 28, 28)
    loader = DataLoader(TensorDataset(x, torch.randint(0, 3, (4,))), batch_size=2)
    result = excite.search.frequencies(model_fn, loader, loader, k=16, reduction=4, epochs=1, progress=False)
    assert [layer.dct_size for layer in result.layers] == [[28, 28]] * 2 + [[14, 14]] * 2 + [[7, 7]] * 4
    derived = result.build(model_fn)
    layers = [m for m in derived.modules() if isinstance(m, excite.FCA)]
    assert [m.frequencies for m in layers] == result.frequencies
    named = model_fn(attention=result.named_factory("low16"))
    expected = excite.create("fca", 16, dct_size=28, frequencies="low16", reduction=4).frequencies
    assert [m for m in named.modules() if isinstance(m, excite.FCA)][0].frequencies == expected
    assert derived(x).shape == named(x).shape == (4, 3)


def test_errors_name_the_problem() -> None:
    with pytest.raises(ValueError, match="relaxation must be one of"):
        FrequencySearchFCA(16, relaxation="gumbel")
    module = FrequencySearchFCA(16, reduction=4)
    with pytest.raises(ValueError, match="run a forward pass"):
        module.selected(4)
    module(torch.randn(1, 16, 7, 7))
    with pytest.raises(ValueError, match="fixes the DCT grid"):
        module(torch.randn(1, 16, 9, 9))
    x, y = planted_data(8, 0)
    loader = DataLoader(TensorDataset(x, y), batch_size=4)
    with pytest.raises(ValueError, match="k=5 must divide"):
        excite.search.frequencies(GateOnly, loader, loader, k=5, reduction=4, progress=False)
