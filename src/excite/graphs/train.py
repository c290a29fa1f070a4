"""Training, evaluation and the LightGCN / SimGCL / WeightedGCL comparison table.

The protocol follows WeightedGCL's configuration (``overall.yaml``): Adam, batch 4096, one uniformly
sampled negative per training pair (an item the user has not interacted with in training), per-user
random 8/1/1 split with seed 2023, full-ranking Recall and NDCG, model selection and early stopping on
validation NDCG@10 with patience 10 evaluations, test metrics of the selected model with training and
validation items masked.

Two budgets (``preset``):

* ``"quick"`` (default; on MovieLens-100K about 5-12 CPU minutes per model with one thread on a busy
  shared 2-core machine, less on an idle one): lr 1e-3, at most 30 epochs, evaluation
  every 5 epochs. The higher learning rate is our deviation: at the official 1e-4, 30 epochs leave every
  model far from converged, and the comparison would measure speed of convergence rather than the
  methods.
* ``"official"``: lr 1e-4, up to 500 epochs, evaluation every epoch (hours on CPU).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from .data import Interactions, load_interactions
from .metrics import topk_metrics
from .models import MODELS

PRESETS: dict[str, dict[str, Any]] = {
    "quick": {"epochs": 30, "lr": 1e-3, "batch_size": 4096, "eval_every": 5, "patience": 10},
    "official": {"epochs": 500, "lr": 1e-4, "batch_size": 4096, "eval_every": 1, "patience": 10},
}


def sample_negatives(users: Tensor, known_keys: Tensor, n_items: int, generator: torch.Generator) -> Tensor:
    """One item per user drawn uniformly from the items the user has no training interaction with.

    ``known_keys`` is the sorted tensor of ``user * n_items + item`` for the training pairs; collisions
    are redrawn until none is left (a user who has interacted with every item cannot be served).
    """
    negatives = torch.randint(n_items, users.shape, generator=generator)
    pending = torch.ones_like(users, dtype=torch.bool)
    for _ in range(1000):
        keys = users[pending] * n_items + negatives[pending]
        position = torch.searchsorted(known_keys, keys).clamp(max=known_keys.numel() - 1)
        collided = known_keys[position] == keys
        if not bool(collided.any()):
            return negatives
        index = pending.nonzero().squeeze(1)
        pending = torch.zeros_like(pending)
        pending[index[collided]] = True
        negatives[pending] = torch.randint(n_items, (int(pending.sum()),), generator=generator)
    raise ValueError("sample_negatives: a user has interacted with (almost) every item; no negative to draw")


def evaluate(
    model: torch.nn.Module, data: Interactions, split: str, ks: Sequence[int] = (10, 20)
) -> dict[str, float]:
    """Full-ranking metrics on ``"valid"`` (training items masked) or ``"test"`` (training and validation
    items masked)."""
    model.eval()
    with torch.no_grad():
        user_final, item_final = model.propagate()
    held = data.valid if split == "valid" else data.test
    known = [data.train] if split == "valid" else [data.train, data.valid]
    device = user_final.device
    return topk_metrics(
        lambda u: (user_final[u.to(device)] @ item_final.T).cpu(), data.n_users, data.n_items, held, known, ks
    )


def train_model(
    name: str,
    data: Interactions,
    *,
    preset: str = "quick",
    seed: int = 2023,
    progress: bool = True,
    valid_metric: str = "ndcg@10",
    model_options: dict[str, Any] | None = None,
    device: str | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """Train one model and return its selected-epoch test metrics and the validation history.

    Args:
        name: ``"lightgcn"``, ``"simgcl"`` or ``"weightedgcl"``.
        data: the split interactions.
        preset: ``"quick"`` or ``"official"`` (module docstring); ``overrides`` replace its entries
            (``epochs``, ``lr``, ``batch_size``, ``eval_every``, ``patience``).
        seed: seeds the initialisation, the shuffling, the negatives and the noise.
        progress: show a tqdm bar (if tqdm is installed).
        valid_metric: the validation metric used for selection and early stopping.
        model_options: keyword options for the model class.
        device: where to train (default CPU); the split stays on the CPU, batches are moved.

    Raises:
        ValueError: an unknown model, preset or override.
    """
    if name not in MODELS:
        raise ValueError(f"train_model: unknown model {name!r}; choose from {sorted(MODELS)}")
    if preset not in PRESETS:
        raise ValueError(f"train_model: unknown preset {preset!r}; choose from {sorted(PRESETS)}")
    settings = dict(PRESETS[preset])
    unknown = sorted(set(overrides) - set(settings))
    if unknown:
        raise ValueError(f"train_model: unknown setting(s) {unknown}; settings are {sorted(settings)}")
    settings.update(overrides)
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = MODELS[name](data.n_users, data.n_items, data.train, **(model_options or {})).to(device or "cpu")
    optimizer = torch.optim.Adam(model.parameters(), lr=settings["lr"])
    known_keys = torch.sort(data.train[:, 0] * data.n_items + data.train[:, 1]).values
    batches = math.ceil(data.train.shape[0] / settings["batch_size"])
    history: list[dict[str, float]] = []
    best_score, best_state, best_epoch, stale = -1.0, None, 0, 0
    bar = None
    if progress:
        try:
            from tqdm.auto import tqdm

            bar = tqdm(total=settings["epochs"], desc=name, leave=False)
        except ImportError:
            bar = None
    started = time.perf_counter()
    for epoch in range(1, settings["epochs"] + 1):
        model.train()
        order = torch.randperm(data.train.shape[0], generator=generator)
        total = 0.0
        for b in range(batches):
            batch = data.train[order[b * settings["batch_size"] : (b + 1) * settings["batch_size"]]]
            users, positives = batch[:, 0], batch[:, 1]
            negatives = sample_negatives(users, known_keys, data.n_items, generator)
            triples = (t.to(device or "cpu") for t in (users, positives, negatives))
            loss = model.loss(*triples)["total"]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach())
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{total / batches:.4f}")
        if epoch % settings["eval_every"] == 0 or epoch == settings["epochs"]:
            metrics = evaluate(model, data, "valid")
            metrics.update(epoch=epoch, loss=total / batches)
            history.append(metrics)
            if metrics[valid_metric] > best_score:
                best_score, best_epoch, stale = metrics[valid_metric], epoch, 0
                best_state = copy.deepcopy(model.state_dict())
            else:
                stale += 1
                if stale >= settings["patience"]:
                    break
    if bar is not None:
        bar.close()
    seconds = time.perf_counter() - started
    if best_state is not None:
        model.load_state_dict(best_state)
    test = evaluate(model, data, "test")
    return {
        "model": name,
        "best_epoch": best_epoch,
        "epochs_run": epoch,
        "seconds": seconds,
        "test": test,
        "history": history,
        "settings": settings,
    }


def compare(
    data: Interactions | None = None,
    *,
    models: Sequence[str] = ("lightgcn", "simgcl", "weightedgcl"),
    preset: str = "quick",
    seed: int = 2023,
    progress: bool = True,
    path: str | None = None,
    device: str | None = None,
    **overrides: Any,
) -> list[dict[str, Any]]:
    """Train each model on the same split and seed; one result dict per model (see :func:`train_model`).

    ``data`` defaults to :func:`~excite.graphs.data.load_interactions` (``path`` or RecBole's bundled
    MovieLens-100K).
    """
    if data is None:
        data = load_interactions(path, seed=seed)
    return [
        train_model(name, data, preset=preset, seed=seed, progress=progress, device=device, **overrides)
        for name in models
    ]


def format_table(results: Sequence[dict[str, Any]], ks: Sequence[int] = (20,)) -> str:
    """A Markdown table of test Recall@K and NDCG@K per model, with the relative change against the
    first row (the LightGCN baseline by default)."""
    header = ["model"] + [f"{m}@{k}" for k in ks for m in ("Recall", "NDCG")] + ["best epoch", "seconds"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    base = results[0]["test"] if results else {}
    for row in results:
        cells = [row["model"]]
        for k in ks:
            for metric in ("recall", "ndcg"):
                value = row["test"][f"{metric}@{k}"]
                change = "" if row is results[0] else f" ({100 * (value / base[f'{metric}@{k}'] - 1):+.1f}%)"
                cells.append(f"{value:.4f}{change}")
        cells += [str(row["best_epoch"]), f"{row['seconds']:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
