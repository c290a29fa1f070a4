"""The search's evidence for the study: searched networks against fixed choices, on Fashion-MNIST.

Two comparisons, each over several seeds, every arm trained with the same budget on the same data:

* **Attention search.** The per-layer search (:func:`excite.search.attention`) with a cost budget equal
  to the measured cost of one uniform arm (``budget_arm``, Coordinate Attention by default), against
  every uniform choice (the same candidate at every slot), the ECA+CA hybrid among them.
* **Frequency search.** FCA layers with the searched top-16 frequencies per layer
  (:func:`excite.search.frequencies`) against FcaNet's fixed ``top16``, ``low16`` and ``bot16`` tables on
  the same DCT grids.

Data (Fashion-MNIST, :func:`excite.datasets.fashion_mnist.load_fashion_mnist`): a stratified subset of
the training split trains the weights, a stratified subset of the fixed validation split trains the
architecture parameters (the search's held-out data), and a stratified subset of the official test
split scores every arm. Each run's record is kept in ``runs/`` so that an interrupted study resumes.

The study calls :func:`study_section` and appends its markdown to ``report.md`` and its data to
``results.json`` (key ``"search"``).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .mixed import uniform_factory
from .report import format_cost, markdown_table, mean_and_half_width, plot_arms
from .training import Accuracy, cross_entropy, evaluate, train_weights

PARTS = ("attention", "frequency", "segmentation")
DEFAULT_PARTS = ("attention", "frequency")


@dataclass(frozen=True)
class Settings:
    """One preset of the comparison (the defaults are the ``standard`` preset)."""

    width: int = 16
    train_per_class: int = 500
    val_per_class: int = 200
    test_per_class: int = 500
    batch_size: int = 128
    epochs: float = 3.0
    search_epochs: float = 2.0
    seeds: tuple[int, ...] = (0, 1)
    candidates: tuple[str, ...] = ("none", "se", "eca", "coord", "simam", "scse", "eca_coord")
    candidate_options: tuple[tuple[str, tuple[tuple[str, Any], ...]], ...] = (("se", (("reduction", 4),)),)
    cost: str = "params"
    cost_weight: float = 0.1
    budget_arm: str = "coord"
    frequency_k: int = 16
    frequency_reduction: int = 4
    frequency_methods: tuple[str, ...] = ("top16", "low16", "bot16")
    relaxation: str = "softmax"
    weight_lr: float = 2e-3
    arch_lr: float = 3e-2
    seg_downsample: int = 2
    # (train, val, test, gap) slices per slab cycle: the study's quick U-Net split, five cycles over the
    # brain at 2 mm. With 12/4/4/2 (under three cycles) held-out slabs lie far from every training slab
    # and the arms reached only 0.39-0.48 mean Dice (3 seeds).
    seg_slabs: tuple[int, int, int, int] = (6, 2, 3, 1)
    seg_features: tuple[int, ...] = (8, 16, 32, 64)
    seg_batch_size: int = 4
    # 80 epochs at 1e-2, as the study's quick U-Net: at 40 epochs and 3e-3 the arms ranged from 0.05 to
    # 0.32 mean Dice on one seed (unconverged); at 80 and 1e-2, from 0.32 to 0.48.
    seg_lr: float = 1e-2
    seg_epochs: float = 80.0
    seg_search_epochs: float = 30.0
    seg_candidates: tuple[str, ...] = ("none", "cse", "sse", "scse", "coord", "simam", "eca_coord")
    seg_budget_arm: str = "scse"

    def options(self) -> dict[str, dict[str, Any]]:
        return {name: dict(pairs) for name, pairs in self.candidate_options}


PRESETS: dict[str, Settings] = {
    # The study's quick classification budget (3,000 images, batch 64, 2 epochs: 92 steps) with three seeds,
    # so that every comparison has an interval: about 3 minutes per seed for both parts on 2 cores. (With
    # 1,500 images at batch 128, 24 steps, the arms ranged from 25% to 70% test accuracy: noise.)
    "quick": Settings(
        train_per_class=300,
        val_per_class=60,
        test_per_class=300,
        batch_size=64,
        epochs=2.0,
        search_epochs=1.0,
        seeds=(0, 1, 2),
    ),
    # The CPU comparison reported in the issue: about 35 minutes per seed on one core.
    "standard": Settings(),
    "full": Settings(
        width=32,
        train_per_class=5500,
        val_per_class=500,
        test_per_class=1000,
        epochs=15.0,
        search_epochs=10.0,
        seeds=(0, 1, 2),
        cost="latency",
    ),
}


@dataclass
class StudySection:
    """What the study appends: markdown (figure links relative to the study folder), the figures,
    and the JSON-able data (also written to ``search_results.json``)."""

    markdown: str
    figures: list[Path] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)


def fashion_loaders(settings: Settings, seed: int, path: Path | None = None):
    """Train / architecture-validation / test loaders of normalised ``(N, 1, 28, 28)`` images."""
    from torch.utils.data import DataLoader, TensorDataset

    from ..datasets.fashion_mnist import load_fashion_mnist

    data = load_fashion_mnist(path)

    def tensors(split, per_class: int):
        subset = split.stratified_subset(per_class, seed=0)
        images = (subset.images.float() / 255.0 - data.mean) / data.std
        return TensorDataset(images.unsqueeze(1), subset.labels)

    generator = torch.Generator().manual_seed(seed)
    train = DataLoader(
        tensors(data.train, settings.train_per_class),
        batch_size=settings.batch_size,
        shuffle=True,
        generator=generator,
    )
    val_generator = torch.Generator().manual_seed(seed + 1000)
    val = DataLoader(
        tensors(data.val, settings.val_per_class),
        batch_size=settings.batch_size,
        shuffle=True,
        generator=val_generator,
    )
    test = DataLoader(tensors(data.test, settings.test_per_class), batch_size=512)
    return train, val, test


def small_resnet(width: int) -> Callable[..., nn.Module]:
    """The study's classifier: ResNet-18, 3x3 stride-1 stem without max-pool, base width ``width``."""
    from .. import models

    def model_fn(attention: Any = None, attention_options: dict | None = None) -> nn.Module:
        return models.resnet18(
            attention=attention,
            attention_options=attention_options,
            stem="small",
            width=width,
            in_channels=1,
            num_classes=10,
        )

    return model_fn


def _train_and_test(
    model: nn.Module,
    loaders,
    settings: Settings,
    seed: int,
    show_progress: bool,
    description: str,
    *,
    epochs: float | None = None,
    lr: float | None = None,
    metric: Any = None,
    loss_fn: Callable[[Any, Any], Any] = cross_entropy,
) -> dict[str, Any]:
    """Train on the first loader, score on the third; the record's key is ``test_<metric name>``."""
    train, _, test = loaders
    metric = metric if metric is not None else Accuracy()
    started = time.perf_counter()
    losses = train_weights(
        model,
        train,
        epochs=settings.epochs if epochs is None else epochs,
        lr=settings.weight_lr if lr is None else lr,
        weight_decay=5e-4,
        loss_fn=loss_fn,
        device=torch.device("cpu"),
        show_progress=show_progress,
        description=description,
    )
    return {
        "seed": seed,
        f"test_{metric.name}": evaluate(model, test, metric, torch.device("cpu")),
        "params": int(sum(p.numel() for p in model.parameters())),
        "final_loss": losses[-1],
        "train_seconds": time.perf_counter() - started,
    }


def _cached(
    folder: Path, name: str, settings: Settings, compute: Callable[[], dict[str, Any]]
) -> dict[str, Any]:
    """``compute()``'s record, stored as ``folder/<name>.json`` with the key of ``settings``.

    A stored record is reused only when its key matches (an interrupted comparison resumes); one made
    under other settings, or before records had keys, is computed again and replaced, so a folder
    never mixes presets.
    """
    path = folder / f"{name}.json"
    key = hashlib.sha256(
        json.dumps({"settings": asdict(settings), "name": name}, sort_keys=True, default=str).encode()
    ).hexdigest()[:16]
    if path.exists():
        stored = json.loads(path.read_text())
        if stored.get("key") == key and "record" in stored:
            return stored["record"]
    record = compute()
    folder.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps({"key": key, "record": record}, indent=1, default=str))
    temporary.replace(path)
    return record


def _compare_search(
    part: str,
    model_fn: Callable[..., nn.Module],
    loaders_for: Callable[[int], Any],
    candidates: Sequence[str],
    budget_arm: str,
    settings: Settings,
    out: Path,
    show_progress: bool,
    *,
    task: str,
    epochs: float,
    search_epochs: float,
    lr: float,
    loss_fn: Callable[[Any, Any], Any] = cross_entropy,
) -> dict[str, Any]:
    """The searched network (budget = the measured cost of uniform ``budget_arm``), retrained, against
    every uniform choice, for every seed; records cached under ``out/runs``. ``loss_fn`` trains the
    weights in the search and in every retraining."""
    from . import attention as search_attention
    from .training import default_metric

    options = {name: value for name, value in settings.options().items() if name in candidates}
    runs = Path(out) / "runs"
    records: dict[str, list[dict[str, Any]]] = {}
    searches: list[dict[str, Any]] = []
    for seed in settings.seeds:
        loaders = loaders_for(seed)

        def search(seed: int = seed, loaders=loaders) -> dict[str, Any]:
            train, val, _ = loaders
            result = search_attention(
                model_fn,
                train,
                val,
                candidates,
                budget_arm,
                cost=settings.cost,
                cost_weight=settings.cost_weight,
                candidate_options=options,
                task=task,
                epochs=search_epochs,
                weight_lr=lr,
                arch_lr=settings.arch_lr,
                loss_fn=loss_fn,
                progress=show_progress,
                seed=seed,
            )
            torch.manual_seed(seed)
            derived = result.build(model_fn)
            record = _train_and_test(
                derived,
                loaders,
                settings,
                seed,
                show_progress,
                f"{part}: searched, seed {seed}",
                epochs=epochs,
                lr=lr,
                metric=default_metric(task),
                loss_fn=loss_fn,
            )
            record.update(cost=result.derived_cost, search=result.to_dict())
            record["search"].pop("losses", None)
            return record

        record = _cached(runs, f"{part}_searched_seed{seed}", settings, search)
        records.setdefault("searched", []).append(record)
        searches.append(record["search"])
        uniform_costs = record["search"]["uniform_costs"]
        for name in candidates:

            def uniform(name: str = name, seed: int = seed, loaders=loaders) -> dict[str, Any]:
                # Through the same callable path as the search, so every arm has the same placement
                # (for the ResNet the residual branch before the sum: SimAM too, unlike its paper).
                torch.manual_seed(seed)
                model = model_fn(attention=uniform_factory(name, options))
                return _train_and_test(
                    model,
                    loaders,
                    settings,
                    seed,
                    show_progress,
                    f"{part}: {name}, seed {seed}",
                    epochs=epochs,
                    lr=lr,
                    metric=default_metric(task),
                    loss_fn=loss_fn,
                )

            arm = _cached(runs, f"{part}_{name}_seed{seed}", settings, uniform)
            arm["cost"] = uniform_costs[name]
            records.setdefault(name, []).append(arm)
    return {"records": records, "searches": searches}


def compare_attention(
    settings: Settings, out: Path, data: Path | None = None, show_progress: bool = True
) -> dict[str, Any]:
    """Fashion-MNIST: the searched ResNet against every uniform choice, per seed."""
    return _compare_search(
        "attention",
        small_resnet(settings.width),
        lambda seed: fashion_loaders(settings, seed, data),
        settings.candidates,
        settings.budget_arm,
        settings,
        out,
        show_progress,
        task="classification",
        epochs=settings.epochs,
        search_epochs=settings.search_epochs,
        lr=settings.weight_lr,
    )


def brain_loaders(settings: Settings, seed: int, path: Path | None = None):
    """Axial 2-D slices of the Colin27 T1 with the AAL lobes (9 classes), at ``seg_downsample`` mm:
    the training slabs train the weights, the validation slabs the architecture parameters, the test
    slabs score (the study's disjoint slabs with gaps,
    :meth:`excite.datasets.brain_mri.BrainMRI.split_slabs`)."""
    from torch.utils.data import DataLoader, TensorDataset

    from ..datasets.brain_mri import load_brain_mri

    volume = load_brain_mri(path, labels="lobes", downsample=settings.seg_downsample)
    train, val, test, gap = settings.seg_slabs
    slabs = volume.split_slabs(train=train, val=val, test=test, gap=gap)
    train = TensorDataset(*volume.slices(slabs["train"]))
    val = TensorDataset(*volume.slices(slabs["val"]))
    test = TensorDataset(*volume.slices(slabs["test"]))
    batch = settings.seg_batch_size
    return (
        DataLoader(train, batch_size=batch, shuffle=True, generator=torch.Generator().manual_seed(seed)),
        DataLoader(val, batch_size=batch, shuffle=True, generator=torch.Generator().manual_seed(seed + 1000)),
        DataLoader(test, batch_size=batch),
    )


def small_unet(features: Sequence[int]) -> Callable[..., nn.Module]:
    """The study's segmenter: a 2-D U-Net with attention after every encoder and decoder block."""
    from .. import models

    def model_fn(attention: Any = None) -> nn.Module:
        return models.unet(
            dim=2, in_channels=1, out_channels=9, features=tuple(features), attention=attention
        )

    return model_fn


def compare_segmentation(
    settings: Settings, out: Path, data: Path | None = None, show_progress: bool = True
) -> dict[str, Any]:
    """Brain MRI: the searched U-Net against every uniform choice, per seed (mean foreground Dice),
    trained with the study's segmentation loss (cross-entropy + soft Dice)."""
    from ..study.tasks import cross_entropy_soft_dice

    loaded: dict[int, Any] = {}

    def loaders_for(seed: int):
        if seed not in loaded:
            loaded[seed] = brain_loaders(settings, seed, data)
        return loaded[seed]

    return _compare_search(
        "segmentation",
        small_unet(settings.seg_features),
        loaders_for,
        settings.seg_candidates,
        settings.seg_budget_arm,
        settings,
        out,
        show_progress,
        task="segmentation",
        epochs=settings.seg_epochs,
        search_epochs=settings.seg_search_epochs,
        lr=settings.seg_lr,
        loss_fn=cross_entropy_soft_dice,
    )


def compare_frequencies(
    settings: Settings, out: Path, data: Path | None = None, show_progress: bool = True
) -> dict[str, Any]:
    """Searched top-k frequencies per layer against FcaNet's tables on the same grids, per seed."""
    from . import frequencies as search_frequencies
    from .frequency import FrequencyLayer, FrequencySearchResult

    model_fn = small_resnet(settings.width)
    runs = Path(out) / "runs"
    records: dict[str, list[dict[str, Any]]] = {}
    searches: list[dict[str, Any]] = []
    for seed in settings.seeds:
        loaders = fashion_loaders(settings, seed, data)

        def search(seed: int = seed, loaders=loaders) -> dict[str, Any]:
            train, val, _ = loaders
            result = search_frequencies(
                model_fn,
                train,
                val,
                k=settings.frequency_k,
                reduction=settings.frequency_reduction,
                relaxation=settings.relaxation,
                epochs=settings.search_epochs,
                weight_lr=settings.weight_lr,
                arch_lr=settings.arch_lr,
                progress=show_progress,
                seed=seed,
            )
            torch.manual_seed(seed)
            derived = result.build(model_fn)
            record = _train_and_test(
                derived, loaders, settings, seed, show_progress, f"searched frequencies seed {seed}"
            )
            record["search"] = result.to_dict()
            record["search"].pop("losses", None)
            return record

        record = _cached(runs, f"frequency_searched_seed{seed}", settings, search)
        records.setdefault("searched", []).append(record)
        searches.append(record["search"])
        spec = dict(record["search"])
        layers = [FrequencyLayer(**layer) for layer in spec.pop("layers")]
        rebuilt = FrequencySearchResult(
            layers=layers, losses=[], **{k: v for k, v in spec.items() if k in _RESULT_FIELDS}
        )
        for method in settings.frequency_methods:

            def named(
                method: str = method, seed: int = seed, loaders=loaders, rebuilt=rebuilt
            ) -> dict[str, Any]:
                torch.manual_seed(seed)
                model = model_fn(attention=rebuilt.named_factory(method))
                return _train_and_test(
                    model, loaders, settings, seed, show_progress, f"fca {method} seed {seed}"
                )

            record = _cached(runs, f"frequency_{method}_seed{seed}", settings, named)
            records.setdefault(method, []).append(record)
    return {"records": records, "searches": searches}


_RESULT_FIELDS = (
    "k",
    "grid",
    "relaxation",
    "reduction",
    "steps",
    "weight_history",
    "supernet_metric",
    "metric_name",
    "seconds",
)


def _summary(
    records: dict[str, list[dict[str, Any]]], key: str = "test_accuracy"
) -> dict[str, dict[str, Any]]:
    summary = {}
    for arm, runs in records.items():
        values = [r[key] for r in runs]
        mean, half = mean_and_half_width(values)
        summary[arm] = {
            "metric": key,
            "mean": mean,
            "ci95": half,
            "values": values,
            "seeds": [r["seed"] for r in runs],
            "params": runs[0]["params"],
            "cost_mean": sum(r.get("cost", 0.0) for r in runs) / len(runs),
            "train_seconds_mean": sum(r["train_seconds"] for r in runs) / len(runs),
        }
    return summary


def _paired(
    records: dict[str, list[dict[str, Any]]], a: str, b: str, key: str = "test_accuracy"
) -> tuple[float, float, int]:
    """Mean and 95% half-width of the per-seed difference a − b (seeds present in both)."""
    by_seed_b = {r["seed"]: r[key] for r in records[b]}
    differences = [r[key] - by_seed_b[r["seed"]] for r in records[a] if r["seed"] in by_seed_b]
    mean, half = mean_and_half_width(differences)
    return mean, half, len(differences)


def verdict(mean: float, half: float, count: int, margin: float) -> str:
    """The study's verdict rules (:mod:`excite.study.stats`) on the paired difference searched − arm,
    with its practical margin δ (0.5 accuracy points, 0.01 Dice):

    * ``"better"``: "searched > arm" is supported (the 95% interval lies above 0);
    * ``"worse"``: the interval lies below 0 ("searched ≥ arm" not supported);
    * ``"not worse (δ)"``: non-inferiority within δ is supported (the interval's low end is above −δ);
    * ``"inconclusive"`` otherwise, and always with a single seed.
    """
    from ..study.stats import NOT_SUPPORTED, SUPPORTED, Interval, verdict_greater, verdict_not_worse

    difference = Interval(mean, half if count >= 2 else math.nan, count)
    if verdict_greater(difference, margin) == SUPPORTED:
        return "better"
    not_worse = verdict_not_worse(difference, margin)
    if not_worse == NOT_SUPPORTED:
        return "worse"
    if not_worse == SUPPORTED:
        return f"not worse (δ={margin:g})"
    return "inconclusive" if count >= 2 else "inconclusive (one seed)"


def _margin(key: str) -> float:
    from ..study.config import Margins

    return Margins().dice if key == "test_mean_dice" else Margins().accuracy


def _search_markdown(
    result: dict[str, Any],
    settings: Settings,
    figure: str | None,
    *,
    title: str,
    setup: str,
    candidates: Sequence[str],
    budget_arm: str,
    key: str,
    label: str,
    scale: float,
    search_epochs: float,
) -> str:
    records = result["records"]
    summary = _summary(records, key)
    unit = {"latency": "ms", "params": "parameters", "flops": "FLOPs"}[settings.cost]
    budget = summary[budget_arm]["cost_mean"]
    digits = 2 if scale == 100 else 4
    rows = []
    for arm in ["searched", *candidates]:
        s = summary[arm]
        comparison = ""
        if arm != "searched":
            mean, half, count = _paired(records, "searched", arm, key)
            judged = verdict(mean, half, count, _margin(key))
            comparison = f"{scale * mean:+.{digits}f} ± {scale * half:.{digits}f} ({judged})"
        rows.append(
            [
                "**searched**" if arm == "searched" else arm,
                f"{scale * s['mean']:.{digits}f} ± {scale * s['ci95']:.{digits}f}",
                format_cost(s["cost_mean"], unit),
                f"{s['params']:,}",
                comparison,
            ]
        )
    choices = []
    for record in records["searched"]:
        picked = [
            f"{slot['name'].replace('.attention', '')}={slot['choice']}" for slot in record["search"]["slots"]
        ]
        choices.append(f"seed {record['seed']}: " + ", ".join(picked))
    costly = [
        a for a in candidates if a != "none" and summary[a]["cost_mean"] >= summary["searched"]["cost_mean"]
    ]
    lines = [
        f"### {title}",
        "",
        f"{setup} Seeds {', '.join(str(s) for s in settings.seeds)}. The search ({search_epochs:g} epochs, "
        f"first-order DARTS, cost = {settings.cost}, λ = {settings.cost_weight:g}) was given the budget of "
        f"uniform `{budget_arm}` ({format_cost(budget, unit)} added); its derived network was retrained "
        f"from scratch like every other arm. {label[:1].upper() + label[1:]} on the test split (mean ± 95% "
        "t-interval over seeds); "
        "the last column is the paired per-seed difference searched − arm with the study's verdict rules: "
        f"better (interval above 0), worse (below 0), not worse (above −δ, δ = {_margin(key):g}), else "
        "inconclusive. Every arm puts its module at the same place (the search's slots).",
        "",
        markdown_table(["arm", label, f"added {settings.cost}", "params", "searched − arm"], rows),
        "",
        "Choices per slot:",
        "",
        *[f"- {c}" for c in choices],
        "",
        f"Uniform arms costing at least as much as the searched network: {', '.join(costly) or 'none'}.",
    ]
    if figure:
        lines += ["", f"![{label} against cost]({figure})"]
    return "\n".join(lines) + "\n"


def _attention_markdown(result: dict[str, Any], settings: Settings, figure: str | None) -> str:
    setup = (
        f"ResNet-18 (small stem, width {settings.width}) on Fashion-MNIST: {settings.train_per_class * 10} "
        f"training images, {settings.val_per_class * 10} held-out images for the architecture parameters, "
        f"{settings.test_per_class * 10} test images; every arm trained {settings.epochs:g} epochs "
        "(AdamW, cosine)."
    )
    return _search_markdown(
        result,
        settings,
        figure,
        title="Per-layer attention search: Fashion-MNIST",
        setup=setup,
        candidates=settings.candidates,
        budget_arm=settings.budget_arm,
        key="test_accuracy",
        label="test accuracy %",
        scale=100,
        search_epochs=settings.search_epochs,
    )


def _segmentation_markdown(result: dict[str, Any], settings: Settings, figure: str | None) -> str:
    setup = (
        f"2-D U-Net (features {list(settings.seg_features)}) segmenting the 8 AAL lobes on axial slices of "
        f"the Colin27 T1 at {settings.seg_downsample} mm: training slabs train the weights, validation slabs "
        f"the architecture parameters, test slabs (disjoint, with gaps) score (slabs of "
        f"{'/'.join(map(str, settings.seg_slabs[:3]))} slices, gaps of {settings.seg_slabs[3]}); every arm "
        "trained "
        f"{settings.seg_epochs:g} epochs (AdamW, lr {settings.seg_lr:g}) on cross-entropy + soft Dice, the "
        "study's segmentation loss."
    )
    return _search_markdown(
        result,
        settings,
        figure,
        title="Per-layer attention search: brain MRI segmentation",
        setup=setup,
        candidates=settings.seg_candidates,
        budget_arm=settings.seg_budget_arm,
        key="test_mean_dice",
        label="mean Dice",
        scale=1,
        search_epochs=settings.seg_search_epochs,
    )


def _frequency_markdown(result: dict[str, Any], settings: Settings, figure: str | None) -> str:
    records = result["records"]
    summary = _summary(records)
    margin = _margin("test_accuracy")
    rows = []
    for arm in ["searched", *settings.frequency_methods]:
        s = summary[arm]
        comparison = ""
        if arm != "searched":
            mean, half, count = _paired(records, "searched", arm)
            comparison = f"{100 * mean:+.2f} ± {100 * half:.2f} ({verdict(mean, half, count, margin)})"
        rows.append(
            [
                "**searched**" if arm == "searched" else arm,
                f"{100 * s['mean']:.2f} ± {100 * s['ci95']:.2f}",
                comparison,
            ]
        )
    overlap = []
    from ..layers.fca import named_frequencies

    tables = {m: set(named_frequencies(m)) for m in settings.frequency_methods}
    for search in result["searches"]:
        for layer in search["layers"]:
            chosen = {tuple(r) for r in layer["reference"]}
            overlap.append({m: len(chosen & t) for m, t in tables.items()})
    mean_overlap = {m: sum(o[m] for o in overlap) / max(1, len(overlap)) for m in settings.frequency_methods}
    lines = [
        "### FcaNet frequency search",
        "",
        f"The same network and data with FCA at every block (reduction {settings.frequency_reduction}, DCT "
        "grid = the feature-map size, 7x7 for the 4x4 stage), every arm trained "
        f"{settings.epochs:g} epochs; seeds {', '.join(str(s) for s in settings.seeds)}. Searched: "
        f"{settings.relaxation} weights over all 49 reference frequencies per layer, trained "
        f"{settings.search_epochs:g} epochs on the held-out split, top {settings.frequency_k} kept per "
        "layer, retrained with fixed bases. Fixed: FcaNet's tables, the same in every layer. Last column: "
        f"paired difference searched − table and the study's verdict (δ = {margin:g}).",
        "",
        markdown_table(["frequencies", "test accuracy %", "searched − arm (pp)"], rows),
        "",
        "Mean overlap of the searched sets with each table (frequencies in common, of 16): "
        + ", ".join(f"{m} {v:.1f}" for m, v in mean_overlap.items())
        + ".",
    ]
    if figure:
        lines += ["", f"![learnt frequency weights, first seed]({figure})"]
    return "\n".join(lines) + "\n"


def study_section(
    out: Path,
    *,
    preset: str = "quick",
    data: Path | None = None,
    brain_data: Path | None = None,
    parts: Sequence[str] = DEFAULT_PARTS,
    seeds: Sequence[int] | None = None,
    subdir: str = "search",
    progress: bool = True,
    settings: Settings | None = None,
) -> StudySection:
    """Run (or resume) the search comparisons and return the study's section.

    Args:
        out: the study's output folder; everything goes to ``out/subdir`` and figure links in the
            markdown are relative to ``out``.
        preset: ``"quick"`` (1,500 training images, 2 epochs, seed 0: a smoke-sized but real run),
            ``"standard"`` (width 16, 5,000 training images, 3 epochs, seeds 0 and 1; CPU) or ``"full"``
            (width 32, the whole training split, 15 epochs, 3 seeds, latency cost; GPU).
        data: the Fashion-MNIST folder (default: ``$EXCITE_FASHION_MNIST`` or the Debian location).
        brain_data: the MRIcron templates folder for ``"segmentation"`` (default: ``$EXCITE_BRAIN_MRI``
            or the Debian location).
        parts: any of ``"attention"`` (Fashion-MNIST), ``"frequency"`` (Fashion-MNIST) and
            ``"segmentation"`` (brain MRI); the first two by default.
        seeds: overrides the preset's seeds.
        settings: overrides the preset entirely.

    Raises:
        ValueError: unknown preset or part. FileNotFoundError: a data set is missing (with instructions).
    """
    if settings is None:
        if preset not in PRESETS:
            raise ValueError(f"study_section: preset must be one of {sorted(PRESETS)}, got {preset!r}")
        settings = PRESETS[preset]
    if seeds is not None:
        settings = replace(settings, seeds=tuple(seeds))
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        raise ValueError(f"study_section: parts must be among {PARTS}, got {unknown}")
    folder = Path(out) / subdir
    folder.mkdir(parents=True, exist_ok=True)
    markdown = ["## Beyond the survey: searched attention and frequencies\n"]
    figures: list[Path] = []
    data_out: dict[str, Any] = {"settings": asdict(settings)}
    searches = [
        (
            "attention",
            compare_attention,
            data,
            _attention_markdown,
            "test_accuracy",
            100.0,
            "test accuracy %",
        ),
        (
            "segmentation",
            compare_segmentation,
            brain_data,
            _segmentation_markdown,
            "test_mean_dice",
            1.0,
            "mean Dice",
        ),
    ]
    for part, compare, source, describe, key, scale, label in searches:
        if part not in parts:
            continue
        result = compare(settings, folder, source, progress)
        summary = _summary(result["records"], key)
        figure = plot_arms(
            list(summary),
            [s["mean"] * scale for s in summary.values()],
            [s["ci95"] * scale for s in summary.values()],
            [s["cost_mean"] for s in summary.values()],
            f"added {settings.cost}",
            label,
            folder / f"{part}_search_vs_uniform.png",
            f"{part}: searched per-layer attention vs uniform choices",
            highlight=("searched",),
        )
        alpha = _alpha_figure(result["searches"][0], folder / f"{part}_search_alpha.png")
        markdown.append(describe(result, settings, f"{subdir}/{figure.name}" if figure else None))
        if alpha is not None:
            markdown.append(
                f"![softmax(α) during the search, seed {settings.seeds[0]}]({subdir}/{alpha.name})\n"
            )
        figures += [f for f in (figure, alpha) if f is not None]
        data_out[part] = {"summary": summary, "searches": result["searches"]}
    if "frequency" in parts:
        result = compare_frequencies(settings, folder, data, progress)
        figure = _frequency_figure(result["searches"][0], folder / "frequency_weights.png")
        if figure is not None:
            figures.append(figure)
        markdown.append(_frequency_markdown(result, settings, f"{subdir}/{figure.name}" if figure else None))
        data_out["frequency"] = {"summary": _summary(result["records"]), "searches": result["searches"]}
    (folder / "search_results.json").write_text(json.dumps(data_out, indent=1, default=str))
    text = "\n".join(markdown)
    (folder / "section.md").write_text(text)
    return StudySection(markdown=text, figures=figures, data=data_out)


def _alpha_figure(search: dict[str, Any], path: Path) -> Path | None:
    from .report import plot_probability_evolution

    return plot_probability_evolution(
        search["steps"],
        search["probability_history"],
        [f"{s['name']} ({s['channels']}ch)" for s in search["slots"]],
        search["candidates"],
        path,
        f"softmax(α) per slot during the search (cost={search['cost']})",
    )


def _frequency_figure(search: dict[str, Any], path: Path) -> Path | None:
    from .report import plot_frequency_maps

    grid = search["grid"]
    maps = [torch.tensor(layer["weights"]).reshape(grid, grid).tolist() for layer in search["layers"]]
    return plot_frequency_maps(
        maps,
        [layer["reference"] for layer in search["layers"]],
        [f"{layer['name']} ({layer['channels']}ch)" for layer in search["layers"]],
        path,
        f"Learnt frequency weights per layer; red: the top {search['k']} kept",
    )
