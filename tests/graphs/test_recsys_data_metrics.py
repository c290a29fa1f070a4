"""Interaction loaders, RecBole's per-user split, negative sampling, full-ranking metrics, training."""

import math

import pytest
import torch

from excite.graphs import (
    load_interactions,
    recbole_movielens_path,
    sample_negatives,
    split_per_user,
    topk_metrics,
    train_model,
)
from excite.graphs.data import Interactions, split_counts


def reference_metrics(scores, held, known, k):
    """RecBole's Recall@K and NDCG@K written out per user in plain Python."""
    recalls, ndcgs = [], []
    for user in range(scores.shape[0]):
        relevant = {i for u, i in held if u == user}
        if not relevant:
            continue
        masked = {i for u, i in known if u == user}
        ranking = sorted(
            (i for i in range(scores.shape[1]) if i not in masked), key=lambda i: -scores[user, i]
        )
        top = ranking[:k]
        hits = [1.0 if i in relevant else 0.0 for i in top]
        recalls.append(sum(hits) / len(relevant))
        dcg = sum(h / math.log2(r + 2) for r, h in enumerate(hits))
        idcg = sum(1 / math.log2(r + 2) for r in range(min(len(relevant), k)))
        ndcgs.append(dcg / idcg)
    return sum(recalls) / len(recalls), sum(ndcgs) / len(ndcgs)


def _random_problem(seed, users=30, items=40):
    generator = torch.Generator().manual_seed(seed)
    scores = torch.rand(users, items, generator=generator, dtype=torch.float64)
    pairs = torch.stack(torch.meshgrid(torch.arange(users), torch.arange(items), indexing="ij"), -1).reshape(
        -1, 2
    )
    kind = torch.rand(pairs.shape[0], generator=generator)
    known, held = pairs[kind < 0.25], pairs[(kind >= 0.25) & (kind < 0.32)]
    return scores, known, held


@pytest.mark.parametrize("k", [5, 20])
def test_topk_metrics_match_the_written_out_definition(k):
    scores, known, held = _random_problem(0)
    ours = topk_metrics(lambda u: scores[u], 30, 40, held, [known], ks=(k,), batch_users=7)
    recall, ndcg = reference_metrics(scores, held.tolist(), known.tolist(), k)
    assert ours["recall@" + str(k)] == pytest.approx(recall)
    assert ours["ndcg@" + str(k)] == pytest.approx(ndcg)
    assert ours["users"] == len({u for u, _ in held.tolist()})


def test_topk_metrics_agree_with_torchmetrics():
    torchmetrics = pytest.importorskip("torchmetrics")
    scores, known, held = _random_problem(1)
    ours = topk_metrics(lambda u: scores[u], 30, 40, held, [known], ks=(10,))
    known_set, held_set = set(map(tuple, known.tolist())), set(map(tuple, held.tolist()))
    held_users = {u for u, _ in held_set}
    preds, target, indexes = [], [], []
    for user in sorted(held_users):
        for item in range(40):
            if (user, item) not in known_set:
                preds.append(float(scores[user, item]))
                target.append((user, item) in held_set)
                indexes.append(user)
    args = (torch.tensor(preds), torch.tensor(target), torch.tensor(indexes))
    recall = torchmetrics.retrieval.RetrievalRecall(top_k=10)(*args)
    ndcg = torchmetrics.retrieval.RetrievalNormalizedDCG(top_k=10)(*args)
    assert ours["recall@10"] == pytest.approx(float(recall), abs=1e-6)
    assert ours["ndcg@10"] == pytest.approx(float(ndcg), abs=1e-6)


def test_split_counts_follow_recbole():
    # RecBole's _calcu_split_ids: floor for the later parts, the rest to the first, then parts whose share
    # is in (0, 1) get one interaction while the first keeps more than one.
    assert split_counts(10, [0.8, 0.1, 0.1]) == [8, 1, 1]
    assert split_counts(5, [0.8, 0.1, 0.1]) == [3, 1, 1]
    assert split_counts(2, [0.8, 0.1, 0.1]) == [1, 0, 1]
    assert split_counts(1, [0.8, 0.1, 0.1]) == [1, 0, 0]
    assert split_counts(27, [0.8, 0.1, 0.1]) == [23, 2, 2]


def test_split_per_user_partitions_each_users_history():
    generator = torch.Generator().manual_seed(2)
    pairs = torch.stack([torch.randint(6, (200,), generator=generator), torch.arange(200)], 1)
    parts = split_per_user(pairs, 6, seed=7)
    together = torch.cat(parts)
    assert sorted(map(tuple, together.tolist())) == sorted(map(tuple, pairs.tolist()))
    for user in range(6):
        counts = [int((p[:, 0] == user).sum()) for p in parts]
        assert counts == split_counts(sum(counts), [0.8, 0.1, 0.1])
    again = split_per_user(pairs, 6, seed=7)
    assert all(torch.equal(a, b) for a, b in zip(parts, again))
    with pytest.raises(ValueError, match="sum to 1"):
        split_per_user(pairs, 6, ratios=(0.5, 0.1))


def test_negatives_are_never_training_items_and_cover_the_rest():
    train = torch.tensor([[0, 0], [0, 1], [0, 2], [1, 3]])
    keys = torch.sort(train[:, 0] * 5 + train[:, 1]).values
    users = torch.zeros(2000, dtype=torch.long)
    negatives = sample_negatives(users, keys, 5, torch.Generator().manual_seed(0))
    assert set(negatives.tolist()) == {3, 4}
    with pytest.raises(ValueError, match="every item"):
        sample_negatives(torch.tensor([0]), torch.tensor([0, 1]), 2, torch.Generator().manual_seed(0))


def test_loaders_read_recbole_and_lightgcn_formats(tmp_path):
    inter = tmp_path / "toy.inter"
    inter.write_text(
        "user_id:token\titem_id:token\trating:float\n"
        + "".join(f"u{u}\ti{i}\t{1 + (u + i) % 5}\n" for u in range(4) for i in range(10))
        + "u0\ti0\t5\n"
    )
    data = load_interactions(inter, seed=1)
    assert (data.n_users, data.n_items) == (4, 10)
    assert data.train.shape[0] + data.valid.shape[0] + data.test.shape[0] == 40  # the repeat is dropped
    assert data.valid.shape[0] == data.test.shape[0] == 4
    high = load_interactions(inter, min_rating=4)
    # (u + i) % 5 in {3, 4} keeps 16 of the grid; the repeated (u0, i0) row rated 5 passes as well.
    assert sum(p.shape[0] for p in (high.train, high.valid, high.test)) == 17
    folder = tmp_path / "lightgcn"
    folder.mkdir()
    (folder / "train.txt").write_text("0 1 2 3\n1 2\n2 0 4\n")
    (folder / "test.txt").write_text("0 4\n1 3 0\n")
    split = load_interactions(folder)
    assert split.train.shape[0] == 6 and split.test.shape[0] == 3 and split.valid.shape[0] == 0
    assert split.users[split.test[0, 0]] == "0" and split.items[split.test[0, 1]] == "4"
    pairs = load_interactions(folder, format="pairs")
    assert pairs.train.shape[0] == 3
    with pytest.raises(FileNotFoundError, match="recbole"):
        load_interactions(tmp_path / "missing.inter")


def test_recbole_movielens_100k_has_the_published_size():
    if recbole_movielens_path() is None:
        pytest.skip("recbole is not installed (pip install --no-deps recbole)")
    data = load_interactions()
    stats = data.summary()
    # GroupLens MovieLens-100K: 943 users, 1682 movies, 100,000 ratings.
    assert (stats["users"], stats["items"], stats["interactions"]) == (943, 1682, 100000)
    assert stats["valid"] == stats["test"] and stats["train"] > 0.8 * 100000


def _planted_communities():
    """Two user groups that each like one half of the items; the held-out items follow the same rule."""
    generator = torch.Generator().manual_seed(0)
    pairs = []
    for user in range(40):
        half = 0 if user < 20 else 1
        items = torch.randperm(20, generator=generator)[:12] + 20 * half
        pairs += [(user, int(i)) for i in items]
    pairs = torch.tensor(pairs)
    train, valid, test = split_per_user(pairs, 40, (0.6, 0.2, 0.2), seed=0)
    return Interactions(
        "planted", 40, 40, train, valid, test, [str(u) for u in range(40)], [str(i) for i in range(40)]
    )


@pytest.mark.parametrize("name", ["lightgcn", "weightedgcl"])
def test_training_learns_the_planted_communities(name):
    data = _planted_communities()
    result = train_model(
        name,
        data,
        epochs=30,
        lr=0.02,
        batch_size=128,
        eval_every=10,
        progress=False,
        model_options={"embedding_size": 16},
    )
    # A random top 10 of the ~32 unmasked items holds about a third of a user's held-out items.
    assert result["test"]["recall@10"] > 0.8
    assert [h["epoch"] for h in result["history"]] == [10, 20, 30]
