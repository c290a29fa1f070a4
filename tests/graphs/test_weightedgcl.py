"""WeightedGCL, SimGCL and LightGCN against a transcription of the official code's arithmetic.

The ``official_*`` functions below are written from the spec's reading of ``Jinfeng-Xu/WeightedGCL``
(``weightedgcl.py``) and RecBole / RecBole-GNN (``LightGCN``, ``BPRLoss``, ``EmbLoss``,
``get_norm_adj_mat``): dense matrices, the official operation order, exponentials divided rather than
log-sum-exp. They share nothing with the implementation under test except the weights.
"""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from excite.graphs import (
    FeatureExcitation,
    LightGCN,
    SimGCL,
    WeightedGCL,
    info_nce,
    normalized_adjacency,
    perturb,
)

N_USERS, N_ITEMS = 7, 9
TRAIN = torch.tensor(
    [
        [0, 0],
        [0, 3],
        [1, 1],
        [1, 2],
        [2, 0],
        [2, 4],
        [3, 5],
        [3, 6],
        [4, 7],
        [4, 1],
        [5, 2],
        [5, 8],
        [6, 3],
        [6, 8],
    ]
)


def official_adjacency(n_users, n_items, train):
    nodes = n_users + n_items
    a = torch.zeros(nodes, nodes, dtype=torch.float64)
    for u, i in train.tolist():
        a[u, n_users + i] = 1.0
        a[n_users + i, u] = 1.0
    degree = a.sum(1)
    degree = torch.where(degree == 0, torch.ones_like(degree), degree)
    d = torch.diag(degree.pow(-0.5))
    return d @ a @ d


def official_forward(ego, adjacency, n_layers, perturbed, eps, generator):
    all_embs = ego
    embeddings_list = []
    for layer_idx in range(n_layers):
        all_embs = adjacency @ all_embs
        if perturbed and layer_idx >= n_layers - 1:
            random_noise = torch.rand(all_embs.shape, generator=generator, dtype=all_embs.dtype)
            all_embs = all_embs + torch.sign(all_embs) * F.normalize(random_noise, dim=-1) * eps
        embeddings_list.append(all_embs)
    mean = torch.stack(embeddings_list, dim=1).mean(dim=1)
    return mean[:N_USERS], mean[N_USERS:]


def official_weight_features(excitation, view1, view2):
    mid1, mid2 = torch.mean(view1, dim=1, keepdim=True), torch.mean(view2, dim=1, keepdim=True)
    return excitation(mid1) * view1, excitation(mid2) * view2


def official_cl_loss(x1, x2, temperature):
    x1, x2 = F.normalize(x1, dim=-1), F.normalize(x2, dim=-1)
    pos_score = torch.exp((x1 * x2).sum(dim=-1) / temperature)
    ttl_score = torch.exp(torch.matmul(x1, x2.transpose(0, 1)) / temperature).sum(dim=1)
    return -torch.log(pos_score / ttl_score).sum()


def official_bpr(pos, neg):
    return -torch.log(1e-10 + torch.sigmoid(pos - neg)).mean()


def official_emb_loss(*embeddings):
    return sum(torch.norm(e, p=2) for e in embeddings) / embeddings[-1].shape[0]


def _model(cls=WeightedGCL, **options):
    torch.manual_seed(0)
    return cls(N_USERS, N_ITEMS, TRAIN, embedding_size=32, **options).double()


def test_adjacency_is_the_symmetric_normalised_bipartite_graph():
    sparse = normalized_adjacency(N_USERS, N_ITEMS, TRAIN).to_dense().double()
    torch.testing.assert_close(sparse, official_adjacency(N_USERS, N_ITEMS, TRAIN), rtol=1e-6, atol=1e-7)


def test_perturbation_has_norm_eps_in_the_embedding_orthant():
    torch.manual_seed(1)
    e = torch.randn(50, 16, dtype=torch.float64)
    noisy = perturb(e, 0.1, torch.Generator().manual_seed(3))
    noise = noisy - e
    torch.testing.assert_close(noise.norm(dim=1), torch.full((50,), 0.1, dtype=torch.float64))
    assert bool((noise * e >= 0).all())
    uniform = torch.rand(e.shape, generator=torch.Generator().manual_seed(3), dtype=e.dtype)
    torch.testing.assert_close(noisy, e + torch.sign(e) * F.normalize(uniform, dim=-1) * 0.1)


@pytest.mark.parametrize("perturbed", [False, True])
def test_propagation_matches_the_official_forward(perturbed):
    model = _model()
    adjacency = official_adjacency(N_USERS, N_ITEMS, TRAIN)
    layers = (model.n_layers,) if perturbed else ()
    ours = model.propagate(layers, 0.1, torch.Generator().manual_seed(5))
    official = official_forward(
        model.ego_embeddings(), adjacency, 2, perturbed, 0.1, torch.Generator().manual_seed(5)
    )
    for a, b in zip(ours, official):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-8)


def test_lightgcn_includes_layer_zero_and_the_contrastive_models_do_not():
    adjacency = official_adjacency(N_USERS, N_ITEMS, TRAIN)
    light = _model(LightGCN)
    ego = light.ego_embeddings()
    expected = (ego + adjacency @ ego + adjacency @ adjacency @ ego) / 3
    torch.testing.assert_close(torch.cat(light.propagate()), expected, rtol=1e-6, atol=1e-8)
    sim = _model(SimGCL)
    ego = sim.ego_embeddings()
    expected = (adjacency @ ego + adjacency @ adjacency @ ego) / 2
    torch.testing.assert_close(torch.cat(sim.propagate()), expected, rtol=1e-6, atol=1e-8)


def test_feature_excitation_is_the_official_linear_chain():
    torch.manual_seed(2)
    module = FeatureExcitation(64)
    widths = [(m.in_features, m.out_features) for m in module.excitation if isinstance(m, nn.Linear)]
    assert widths == [(1, 4), (4, 16), (16, 64)]
    assert not any(isinstance(m, (nn.ReLU, nn.GELU, nn.SiLU)) for m in module.excitation)
    official = nn.Sequential(nn.Linear(1, 4), nn.Linear(4, 16), nn.Linear(16, 64), nn.Sigmoid())
    official.load_state_dict(module.excitation.state_dict())
    view1, view2 = torch.randn(10, 64), torch.randn(10, 64)
    expected = official_weight_features(official, view1, view2)
    torch.testing.assert_close((module(view1), module(view2)), expected)
    # The chain is linear, so each weight is a sigmoid of an affine function of the node's mean.
    w = [m for m in module.excitation if isinstance(m, nn.Linear)]
    slope = w[2].weight @ w[1].weight @ w[0].weight
    offset = w[2].weight @ (w[1].weight @ w[0].bias + w[1].bias) + w[2].bias
    mean = view1.mean(dim=1, keepdim=True)
    torch.testing.assert_close(
        module.weights(view1), torch.sigmoid(mean @ slope.T + offset), rtol=1e-5, atol=1e-6
    )
    with pytest.raises(ValueError, match="hidden widths"):
        FeatureExcitation(8)


def test_info_nce_matches_the_official_sum_and_selfrec_mean():
    torch.manual_seed(3)
    x1, x2 = torch.randn(12, 8, dtype=torch.float64), torch.randn(12, 8, dtype=torch.float64)
    torch.testing.assert_close(info_nce(x1, x2, 0.2), official_cl_loss(x1, x2, 0.2))
    torch.testing.assert_close(info_nce(x1, x2, 0.2, "mean"), official_cl_loss(x1, x2, 0.2) / 12)


def test_weightedgcl_loss_matches_the_official_calculate_loss():
    model = _model()
    adjacency = official_adjacency(N_USERS, N_ITEMS, TRAIN)
    users = torch.tensor([0, 1, 1, 3, 5, 0])
    positives = torch.tensor([0, 2, 1, 6, 8, 3])
    negatives = torch.tensor([5, 7, 4, 0, 1, 2])
    torch.manual_seed(11)
    ours = model.loss(users, positives, negatives)

    torch.manual_seed(11)
    ego = model.ego_embeddings()
    user_all, item_all = official_forward(ego, adjacency, 2, False, 0.1, None)
    u = user_all[users]
    bpr = official_bpr((u * item_all[positives]).sum(1), (u * item_all[negatives]).sum(1))
    reg = official_emb_loss(
        model.user_embedding.weight[users],
        model.item_embedding.weight[positives],
        model.item_embedding.weight[negatives],
    )
    unique_users, unique_items = torch.unique(users), torch.unique(positives)
    gen = torch.default_generator
    u1, i1 = official_forward(ego, adjacency, 2, True, 0.1, gen)
    u2, i2 = official_forward(ego, adjacency, 2, True, 0.1, gen)
    uv1, uv2 = official_weight_features(model.excitation.excitation, u1[unique_users], u2[unique_users])
    iv1, iv2 = official_weight_features(model.excitation.excitation, i1[unique_items], i2[unique_items])
    cl = 1e-3 * (official_cl_loss(uv1, uv2, 0.2) + official_cl_loss(iv1, iv2, 0.2))

    torch.testing.assert_close(ours["bpr"], bpr)
    torch.testing.assert_close(ours["reg"], 1e-4 * reg)
    torch.testing.assert_close(ours["cl"], cl)
    torch.testing.assert_close(ours["total"], bpr + 1e-4 * reg + cl)


def test_simgcl_perturbs_every_layer_and_weights_nothing():
    model = _model(SimGCL)
    assert model.perturbed_layers() == (1, 2)
    assert _model(WeightedGCL).perturbed_layers() == (2,)
    assert not any(isinstance(m, FeatureExcitation) for m in model.modules())
    recbole_port = _model(SimGCL, unique_nodes=False, cl_reduction="sum")
    users, items = torch.tensor([0, 0, 1]), torch.tensor([0, 3, 1])
    torch.manual_seed(4)
    term = recbole_port.contrastive_loss(users, items)
    torch.manual_seed(4)
    (u1, i1), (u2, i2) = recbole_port.views()
    expected = 0.5 * (
        official_cl_loss(u1[users], u2[users], 0.2) + official_cl_loss(i1[items], i2[items], 0.2)
    )
    torch.testing.assert_close(term, expected)


@pytest.mark.parametrize("cls", [LightGCN, SimGCL, WeightedGCL])
def test_gradients_flow_to_embeddings_and_excitation(cls):
    model = _model(cls)
    model.loss(torch.tensor([0, 2, 4]), torch.tensor([0, 4, 7]), torch.tensor([8, 8, 2]))["total"].backward()
    assert model.user_embedding.weight.grad[[0, 2, 4]].abs().sum() > 0
    assert model.item_embedding.weight.grad.abs().sum() > 0
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name
    if cls is WeightedGCL:
        assert all(p.grad.abs().sum() > 0 for p in model.excitation.parameters())
