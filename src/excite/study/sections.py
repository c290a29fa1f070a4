"""The study's sections that the training engine does not run: the graph table and the search.

* :func:`run_graphs`: LightGCN, SimGCL and WeightedGCL (:mod:`excite.graphs`) on real user-item
  interactions (by default MovieLens-100K as bundled in the RecBole wheel), every model on the same split
  and with the same budget (:class:`~excite.study.config.GraphSetup`), once per training seed. Each
  (model, seed) result is stored in ``runs/graphs/<model>/seed<k>/result.json`` with the key of its
  configuration, so a rerun skips finished models, as the engine does for its runs.
* :func:`run_search`: :func:`excite.search.study_section` (per-layer attention search vs uniform choices
  at equal cost, FcaNet frequency search vs the fixed tables), which resumes from its own ``search/runs``.

Both run on rank 0 only under torchrun; they are sequential by nature (the graph models train on the
whole interaction graph; the search alternates weights and architecture).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from . import stats
from .config import GraphSetup, StudyConfig
from .engine import config_key

# Which data set the graph section ran on, in words, by the file's stem (the loader's ``name``).
KNOWN_INTERACTIONS = {
    "ml-100k": (
        "MovieLens-100K (GroupLens): 100,000 ratings (1-5 stars) of 1,682 movies by 943 users, 1997-98; "
        "every rating is taken as an implicit interaction, as RecBole and the LightGCN line of work do"
    ),
}


def locate_graph_data(path: os.PathLike | None = None) -> Path | None:
    """The interaction file or folder the graph section would use, or None when there is none.

    Raises:
        FileNotFoundError: an explicit ``path`` that does not exist.
    """
    from ..graphs import locate_interactions

    if path is not None:
        return locate_interactions(path)
    try:
        return locate_interactions(path)
    except FileNotFoundError:
        return None


def limit_users(data, user_limit: int):
    """The interactions of the first ``user_limit`` users only, with contiguous user and item ids."""
    from ..graphs import Interactions

    parts = [data.train, data.valid, data.test]
    kept = [p[p[:, 0] < user_limit] for p in parts]
    items = torch.unique(torch.cat([p[:, 1] for p in kept]))
    remap = torch.full((data.n_items,), -1, dtype=torch.long)
    remap[items] = torch.arange(items.numel())
    kept = [torch.stack([p[:, 0], remap[p[:, 1]]], dim=1) for p in kept]
    n_users = min(user_limit, data.n_users)
    return Interactions(
        name=data.name,
        n_users=n_users,
        n_items=int(items.numel()),
        train=kept[0],
        valid=kept[1],
        test=kept[2],
        users=data.users[:n_users],
        items=[data.items[i] for i in items.tolist()],
    )


def run_graphs(
    setup: GraphSetup,
    out: Path,
    *,
    path: os.PathLike | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train every model of ``setup`` with every seed (skipping finished ones) and return the section's data.

    The split is drawn once (``setup.split_seed``, the WeightedGCL configuration's 2023); the training
    seed varies the initialisation, the negatives and the noise.

    Raises:
        FileNotFoundError: no interaction data (the message says how to get it).
    """
    from ..graphs import load_interactions

    source = Path(path) if path is not None else None
    started = time.perf_counter()
    data = load_interactions(source, seed=setup.split_seed)
    full_summary = data.summary()
    if setup.user_limit is not None:
        data = limit_users(data, setup.user_limit)
    summary = data.summary()
    from ..graphs import locate_interactions

    located = locate_interactions(source)
    description = {
        "name": data.name,
        "file": located.name,
        "description": KNOWN_INTERACTIONS.get(data.name, f"interactions from {located.name}"),
        "summary": summary,
        "full_summary": full_summary,
        "user_limit": setup.user_limit,
        "split": "per user, random 8/1/1 (train/valid/test)",
        "split_seed": setup.split_seed,
    }
    identity = {k: summary[k] for k in ("users", "items", "train", "valid", "test")}
    budget = {k: v for k, v in dataclasses.asdict(setup).items() if k not in ("models", "seeds", "threads")}
    models: dict[str, Any] = {}
    previous_threads = torch.get_num_threads()
    if setup.threads is not None:
        torch.set_num_threads(setup.threads)
    try:
        models = _train_graph_models(setup, data, out, budget, identity, progress, log)
    finally:
        torch.set_num_threads(previous_threads)
    return {
        "data": description,
        "setup": dataclasses.asdict(setup),
        "settings": next((r["settings"] for m in models.values() for r in m["runs"]), {}),
        "models": models,
        "seconds": time.perf_counter() - started,
    }


def _train_graph_models(
    setup: GraphSetup,
    data,
    out: Path,
    budget: dict[str, Any],
    identity: dict[str, Any],
    progress: bool,
    log: Callable[[str], None],
) -> dict[str, Any]:
    from ..graphs import train_model

    summary = data.summary()
    models: dict[str, Any] = {}
    log(
        f"== graphs: {len(setup.models)} models x {len(setup.seeds)} seed(s) on {data.name} "
        f"({summary['users']} users, {summary['items']} items, {summary['train']} training pairs)"
    )
    for name in setup.models:
        runs = []
        for seed in setup.seeds:
            run_dir = out / "runs" / "graphs" / name / f"seed{seed}"
            key = config_key({"model": name, "seed": seed, "budget": budget, "data": identity})
            stored = run_dir / "result.json"
            if stored.exists():
                record = json.loads(stored.read_text())
                if record.get("key") == key:
                    runs.append(record["run"])
                    continue
            result = train_model(
                name,
                data,
                preset=setup.preset,
                seed=seed,
                progress=progress,
                valid_metric=f"ndcg@{min(setup.ks)}",
                **setup.overrides(),
            )
            run = {
                "seed": seed,
                **{k: float(v) for k, v in result["test"].items() if "@" in k},
                "best_epoch": result["best_epoch"],
                "epochs_run": result["epochs_run"],
                "seconds": result["seconds"],
                "history": result["history"],
                "settings": result["settings"],
            }
            run_dir.mkdir(parents=True, exist_ok=True)
            stored.write_text(json.dumps({"key": key, "run": run}, indent=1, default=str))
            runs.append(run)
            log(
                f"  graphs/{name}/seed {seed}: Recall@20 {run.get('recall@20', float('nan')):.4f} "
                f"NDCG@20 {run.get('ndcg@20', float('nan')):.4f} ({run['seconds']:.0f} s)"
            )
        metrics = [f"{m}@{k}" for k in setup.ks for m in ("recall", "ndcg")] + ["seconds"]
        models[name] = {
            "runs": runs,
            "summary": {m: stats.mean_ci(stats.by_seed(runs, m).values()).to_dict() for m in metrics},
        }
    return models


def run_search(
    config: StudyConfig,
    out: Path,
    *,
    data: Sequence[os.PathLike] = (),
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """:func:`excite.search.study_section` with the study's search preset, parts and data folders.

    Returns ``{"preset", "parts", "markdown", "data", "seconds"}``; the markdown's figure links are
    relative to ``out``.
    """
    from ..datasets import BRAIN_MRI, FASHION_MNIST
    from ..search import study_section
    from ..search.study import PRESETS

    started = time.perf_counter()
    fashion = next((FASHION_MNIST.find(p) for p in data if FASHION_MNIST.find(p) is not None), None)
    brain = next((BRAIN_MRI.find(p) for p in data if BRAIN_MRI.find(p) is not None), None)
    if config.search not in PRESETS:
        raise ValueError(f"study: search preset must be one of {sorted(PRESETS)}, got {config.search!r}")
    settings = dataclasses.replace(PRESETS[config.search], **config.search_overrides)
    log(f"== search: {config.search} preset, parts {', '.join(config.search_parts)}")
    section = study_section(
        out,
        preset=config.search,
        data=fashion,
        brain_data=brain,
        parts=config.search_parts,
        progress=progress,
        settings=settings,
    )
    return {
        "preset": config.search,
        "parts": list(config.search_parts),
        "markdown": section.markdown,
        "data": section.data,
        "seconds": time.perf_counter() - started,
    }
