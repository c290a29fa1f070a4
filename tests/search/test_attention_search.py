"""Per-layer attention search: the mixture, the planted choice, the cost term, derivation, reports."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import excite
from excite.search import MixedAttention, derive, find_slots, mixture_factory

CANDIDATES = ["none", "se", "eca", "sse"]


def planted_data(count: int, seed: int):
    """Four classes from two independent facts, each visible to one branch of :class:`TwoSlotNet`.

    * Branch ``a`` (channels 0-1): the per-sample channel mean is removed, so the global average is 0
      for every sample; the class bit is the *energy* (standard deviation 1 or 3). Any channel gate
      ``x * s(GAP(x))`` keeps the average at 0, so none, SE and ECA see nothing; a per-position gate
      ``x * σ(w·x + b)`` (sSE) has first-order term ``σ'(b)·w·mean(x²)``, the energy. Only sSE solves it.
    * Branch ``b`` (channels 2-3): the class bit is the sign of a mean offset, which the plain global
      average already shows, so no attention is needed there and any parameter is pure cost.
    """
    generator = torch.Generator().manual_seed(seed)
    energy = torch.randint(0, 2, (count,), generator=generator)
    sign = torch.randint(0, 2, (count,), generator=generator)
    a = torch.randn(count, 2, 8, 8, generator=generator) * (1 + 2 * energy.float()).view(count, 1, 1, 1)
    a = a - a.mean(dim=(2, 3), keepdim=True)
    b = torch.randn(count, 2, 8, 8, generator=generator) + (sign.float() - 0.5).view(count, 1, 1, 1)
    return torch.cat([a, b], dim=1), 2 * energy + sign


class TwoSlotNet(nn.Module):
    """``attention`` at two slots, one per branch; a linear head on the two pooled branches.

    The pooled features get a fixed gain of 4, so that sSE's small first-order signal trains in a few
    hundred steps. (A BatchNorm there would defeat the search: it removes the scale by which the
    mixture weight of the only informative candidate shows in the output.)"""

    def __init__(self, attention) -> None:
        super().__init__()
        self.a = attention(2, dim=2)
        self.b = attention(2, dim=2)
        self.head = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled_a = self.a(x[:, :2]).mean(dim=(2, 3))
        pooled_b = self.b(x[:, 2:]).mean(dim=(2, 3))
        return self.head(4 * torch.cat([pooled_a, pooled_b], dim=1))


def loaders(train: int = 2048, val: int = 512, batch: int = 64):
    x, y = planted_data(train, 1)
    xv, yv = planted_data(val, 2)
    train_loader = DataLoader(
        TensorDataset(x, y), batch_size=batch, shuffle=True, generator=torch.Generator().manual_seed(0)
    )
    val_loader = DataLoader(
        TensorDataset(xv, yv), batch_size=128, shuffle=True, generator=torch.Generator().manual_seed(1)
    )
    return train_loader, val_loader


SEARCH = dict(
    cost="params",
    candidate_options={"se": {"reduction": 1}},
    weight_lr=1e-2,
    arch_lr=5e-2,
    progress=False,
)


def test_mixture_is_the_softmax_weighted_sum_of_its_candidates() -> None:
    torch.manual_seed(0)
    mixture = MixedAttention(
        8, dim=2, candidates=["none", "se", "eca", "sse"], candidate_options={"se": {"reduction": 2}}
    )
    with torch.no_grad():
        mixture.arch_logits.copy_(torch.tensor([0.3, -1.0, 2.0, 0.5]))
    x = torch.randn(2, 8, 5, 6)
    logits = [0.3, -1.0, 2.0, 0.5]
    weights = [math.exp(v) / sum(math.exp(u) for u in logits) for v in logits]
    expected = weights[0] * x
    for weight, op in zip(weights[1:], list(mixture.ops)[1:]):
        expected = expected + weight * op(x)
    torch.testing.assert_close(mixture(x), expected)
    assert isinstance(mixture.ops[0], nn.Identity)


def test_search_finds_the_planted_spatial_gate_and_leaves_the_other_slot_empty(tmp_path) -> None:
    train_loader, val_loader = loaders()
    result = excite.search.attention(
        TwoSlotNet,
        train_loader,
        val_loader,
        CANDIDATES,
        cost_weight=0.5,
        epochs=4,
        retrain_epochs=3,
        **SEARCH,
    )
    assert result.choices == {"a": "sse", "b": "none"}
    assert result.slots[0].probabilities["sse"] > 0.5
    assert result.slots[1].probabilities["none"] > 0.5
    # The derived network solves both facts: well above the 50% that branch b alone gives.
    assert result.retrain["metrics"]["val"] > 0.9
    assert result.derived_cost == 3.0  # sSE on 2 channels: C + 1 parameters
    assert isinstance(result.model.a, excite.SpatialSE) and isinstance(result.model.b, nn.Identity)
    paths = result.save(tmp_path)
    record = json.loads(paths["json"].read_text())
    assert record["choices"] == {"a": "sse", "b": "none"}
    assert len(record["probability_history"]) == len(record["steps"]) > 10
    assert "| `a` |" in paths["markdown"].read_text()
    if "figure" in paths:
        assert paths["figure"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_heavy_cost_term_drives_every_slot_to_the_free_candidate() -> None:
    train_loader, val_loader = loaders(train=512, val=256)
    # "none" last, so that an untrained search (uniform α, argmax takes the first) cannot pass.
    result = excite.search.attention(
        TwoSlotNet,
        train_loader,
        val_loader,
        ["se", "eca", "sse", "none"],
        cost_weight=50.0,
        epochs=4,
        **SEARCH,
    )
    assert result.choices == {"a": "none", "b": "none"}
    for slot in result.slots:
        # ECA here has k=1, one parameter: nearly free, so it rises with none at first.
        assert slot.probabilities["se"] + slot.probabilities["sse"] < 0.2


def test_budget_is_respected_by_the_derived_network() -> None:
    train_loader, val_loader = loaders(train=512, val=256)
    result = excite.search.attention(
        TwoSlotNet,
        train_loader,
        val_loader,
        ["sse", "se", "none"],
        budget=2.0,
        cost_weight=0.0,
        epochs=1,
        **SEARCH,
    )
    assert result.derived_cost <= 2.0
    assert set(result.choices.values()) <= {"none"}  # every candidate but none costs > 2 parameters here


def test_derive_takes_argmax_then_the_cheapest_loss_of_probability_per_cost_saved() -> None:
    probabilities = [{"none": 0.1, "se": 0.6, "eca": 0.3}, {"none": 0.2, "se": 0.7, "eca": 0.1}]
    costs = [{"none": 0.0, "se": 10.0, "eca": 1.0}, {"none": 0.0, "se": 10.0, "eca": 1.0}]
    assert derive(probabilities, costs, None)[0] == ["se", "se"]
    # Budget 11: one SE must go. Slot 0 se->eca loses log(0.6/0.3)/9 = 0.077 per unit, slot 1 se->eca
    # log(0.7/0.1)/9 = 0.216, slot 0 se->none log(6)/10 = 0.179, slot 1 se->none log(3.5)/10 = 0.125.
    choices, notes = derive(probabilities, costs, 11.0)
    assert choices == ["eca", "se"]
    assert notes == ["slot 0: se -> eca to meet the budget"]
    # Nothing fits a budget below zero-cost everywhere? Budget 0.5 forces none at both.
    assert derive(probabilities, costs, 0.5)[0] == ["none", "none"]


def test_derived_network_rebuilds_in_slot_order_and_refuses_another_builder() -> None:
    train_loader, val_loader = loaders(train=128, val=128)
    result = excite.search.attention(TwoSlotNet, train_loader, val_loader, CANDIDATES, epochs=0.25, **SEARCH)
    derived = result.build(TwoSlotNet)
    for slot in result.slots:
        module = getattr(derived, slot.name)
        expected = nn.Identity if slot.choice == "none" else excite._registry.lookup(slot.choice)
        assert type(module) is expected

    class Wider(TwoSlotNet):
        def __init__(self, attention) -> None:
            nn.Module.__init__(self)
            self.a = attention(4, dim=2)

    with pytest.raises(ValueError, match="slot 0 has 4 channels"):
        result.build(Wider)


def test_errors_name_the_problem() -> None:
    train_loader, val_loader = loaders(train=64, val=64)
    with pytest.raises(ValueError, match="cost must be one of"):
        excite.search.attention(TwoSlotNet, train_loader, val_loader, cost="energy")
    with pytest.raises(ValueError, match="budget must be positive"):
        excite.search.attention(TwoSlotNet, train_loader, val_loader, budget=0.0)
    with pytest.raises(ValueError, match="built no MixedAttention"):
        excite.search.attention(lambda attention: nn.Conv2d(4, 4, 1), train_loader, val_loader, **SEARCH)
    with pytest.raises(ValueError, match="candidate 'se' cannot be built"):
        MixedAttention(8, candidates=["none", "se"])  # reduction 16 > 8 channels
    with pytest.raises(ValueError, match="candidates must be distinct"):
        MixedAttention(8, candidates=["eca", "eca"])
    mixture = MixedAttention(
        8, candidates=["none", "scse"], candidate_options={"scse": {"aggregation": "concat"}}
    )
    with pytest.raises(ValueError, match="changed the shape"):
        mixture(torch.randn(1, 8, 4, 4))


def random_loaders(shape, target_shape, classes, count=8, batch=4):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(count, *shape, generator=generator)
    y = torch.randint(0, classes, (count, *target_shape), generator=generator)
    loader = DataLoader(TensorDataset(x, y), batch_size=batch)
    return loader, loader


def test_search_runs_on_our_resnet_and_unet() -> None:
    models = pytest.importorskip("excite.models")
    options = {"se": {"reduction": 4}}
    resnet = lambda attention: models.resnet18(  # noqa: E731
        attention=attention, stem="small", width=8, in_channels=1, num_classes=3
    )
    loader, _ = random_loaders((1, 12, 12), (), 3)
    result = excite.search.attention(
        resnet,
        loader,
        loader,
        ["none", "se", "eca", "simam"],
        candidate_options=options,
        epochs=1,
        **{k: v for k, v in SEARCH.items() if k != "candidate_options"},
    )
    assert [s.name for s in result.slots] == [f"layer{i}.{j}.attention" for i in (1, 2, 3, 4) for j in (0, 1)]
    assert [s.channels for s in result.slots] == [8, 8, 16, 16, 32, 32, 64, 64]
    assert [s.input_shape[2:] for s in result.slots] == [[12, 12]] * 2 + [[6, 6]] * 2 + [[3, 3]] * 2 + [
        [2, 2]
    ] * 2
    # Parameter costs are the candidates' own counts: SE(C, r=4) has 2·C·C/4 + C/4 + C.
    for slot in result.slots:
        c = slot.channels
        assert slot.costs["se"] == 2 * c * (c // 4) + c // 4 + c
        assert slot.costs["simam"] == 0 and slot.costs["none"] == 0
    assert result.build(resnet)(torch.randn(2, 1, 12, 12)).shape == (2, 3)

    unet = lambda attention: models.unet(  # noqa: E731
        dim=2, in_channels=1, out_channels=3, features=(4, 8), attention=attention
    )
    loader, _ = random_loaders((1, 8, 8), (8, 8), 3)
    result = excite.search.attention(
        unet,
        loader,
        loader,
        ["none", "sse", "scse"],
        task="segmentation",
        epochs=1,
        **{k: v for k, v in SEARCH.items() if k != "candidate_options"},
    )
    assert result.metric_name == "mean_dice"
    assert len(result.slots) == 3 and [s.channels for s in result.slots] == [4, 8, 4]
    assert result.build(unet)(torch.randn(1, 1, 8, 8)).shape == (1, 3, 8, 8)


@pytest.mark.parametrize("library", ["torchvision", "timm"])
def test_search_reaches_peer_resnets_through_attach(library: str) -> None:
    pytest.importorskip(library)
    pytest.importorskip("excite.surgery")
    if library == "torchvision":
        import torchvision

        build = lambda: torchvision.models.resnet18(num_classes=3)  # noqa: E731
    else:
        import timm

        build = lambda: timm.create_model("resnet18", pretrained=False, num_classes=3)  # noqa: E731
    model_fn = excite.search.via_attach(build)
    loader, _ = random_loaders((3, 64, 64), (), 3, count=4, batch=2)
    result = excite.search.attention(
        model_fn,
        loader,
        loader,
        ["none", "eca", "simam"],
        epochs=1,
        **{k: v for k, v in SEARCH.items() if k != "candidate_options"},
    )
    assert [s.channels for s in result.slots] == [64, 64, 128, 128, 256, 256, 512, 512]
    derived = result.build(model_fn)
    chosen = [m for m in derived.modules() if isinstance(m, (excite.ECA, excite.SimAM))]
    assert len(chosen) == sum(s.choice != "none" for s in result.slots)


def test_latency_cost_comes_from_the_profiler() -> None:
    profiling = pytest.importorskip("excite.profiling")
    if not hasattr(profiling, "measure"):
        pytest.skip("excite.profiling.measure is not available")
    net = TwoSlotNet(mixture_factory(["none", "se", "sse"], {"se": {"reduction": 1}}))
    slots = find_slots(net)
    costs = excite.search.candidate_costs(
        slots[0][1].candidates, slots[0][1].ops, [4, 2, 8, 8], "latency", repeats=3
    )
    assert costs["none"] == 0.0
    assert costs["se"] > 0 and costs["sse"] > 0
