"""The study's output: ``report.md``, its PNG plots (matplotlib, Agg backend) and ``results.json``.

Tables give the mean ± the 95% t-interval half-width over seeds (:func:`excite.study.stats.mean_ci`),
the paired difference to the baseline, and the profiler's cost numbers. The claims section lists each
claim with its evidence, verdict and rule, exactly as :func:`excite.study.claims.evaluate_claims` computed
them; nothing in it is written in advance.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from . import stats


def _mpl():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _seed_values(runs: list[dict], key: str) -> dict[int, float]:
    return stats.by_seed(runs, key)


def _interval(runs: list[dict], key: str) -> stats.Interval:
    return stats.mean_ci(_seed_values(runs, key).values())


def _fmt_int(value: float | None) -> str:
    return "n/a" if value is None else f"{int(value):,}"


def _fmt_ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _fmt_mflops(profile: dict | None) -> str:
    """FLOPs per sample (the profiler counts one batch; FLOPs are linear in the batch size)."""
    if not profile or profile.get("flops") is None:
        return "n/a"
    total = float(profile["flops"]) + float(profile.get("elementwise_flops") or 0)
    batch = int((profile.get("input_size") or [1])[0])
    return f"{total / batch / 1e6:,.2f}"


# ------------------------------------------------------------------------------------------------- plots


def plot_metric_vs_params(
    entry: dict[str, Any], metric: str, label: str, scale: float, path: Path
) -> Path | None:
    """The metric against the parameters each arm adds to the baseline (symlog axis: 0, tens, thousands)."""
    plt = _mpl()
    baseline = (entry["arms"].get("none") or {}).get("profile")
    if not baseline:
        return None
    figure, axis = plt.subplots(figsize=(7.0, 4.4))
    colours = plt.get_cmap("tab10")
    for index, (arm, data) in enumerate(entry["arms"].items()):
        profile = data.get("profile")
        if not profile:
            continue
        added = profile["params"] - baseline["params"]
        interval = _interval(data["runs"], metric)
        error = 0.0 if math.isnan(interval.half_width) else interval.half_width * scale
        colour = colours(index % 10)
        axis.errorbar(added, interval.mean * scale, yerr=error, fmt="o", capsize=3, color=colour, label=arm)
        # Arms with (almost) the same count share an x position: stagger their labels vertically.
        axis.annotate(
            arm,
            (added, interval.mean * scale),
            textcoords="offset points",
            xytext=(6, 10 - 9 * (index % 3)),
            fontsize=8,
            color=colour,
        )
    axis.set_xscale("symlog", linthresh=10)
    axis.set_xlabel(f"parameters added to the baseline ({baseline['params']:,}), symlog scale")
    axis.set_ylabel(label)
    axis.set_title(f"{label} vs added parameters (mean ± 95% CI over seeds)", fontsize=10)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8, loc="best")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def plot_training_curves(entry: dict[str, Any], metric: str, label: str, path: Path) -> Path:
    plt = _mpl()
    figure, (loss_axis, metric_axis) = plt.subplots(1, 2, figsize=(11, 4))
    for arm, data in entry["arms"].items():
        histories = [run["history"] for run in data["runs"] if run.get("history")]
        curves = [run["loss_curve"] for run in data["runs"] if run.get("loss_curve")]
        if curves:
            points = min(len(c) for c in curves)
            steps = [curves[0][i][0] for i in range(points)]
            loss = [sum(c[i][1] for c in curves) / len(curves) for i in range(points)]
            loss_axis.plot(steps, loss, lw=1.2, label=arm)
        if not histories:
            continue
        epochs = min(len(h) for h in histories)
        values = [
            sum(h[e]["val"].get(metric, float("nan")) for h in histories) / len(histories)
            for e in range(epochs)
        ]
        metric_axis.plot(range(1, epochs + 1), values, marker="o", label=arm)
    loss_axis.set_xlabel("optimizer step")
    loss_axis.set_ylabel("training loss (binned mean)")
    loss_axis.set_yscale("log")
    metric_axis.set_xlabel("epoch")
    metric_axis.set_ylabel(f"validation {label}")
    for axis in (loss_axis, metric_axis):
        axis.grid(alpha=0.3)
    metric_axis.legend(fontsize=8)
    figure.suptitle("Training curves (mean over seeds)", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def plot_dice_per_arm(entry: dict[str, Any], path: Path) -> Path:
    plt = _mpl()
    arms = list(entry["arms"])
    regions = list(entry["label_names"][1:])
    figure, (mean_axis, region_axis) = plt.subplots(
        1, 2, figsize=(13, 4.4), gridspec_kw={"width_ratios": [1, 2.6 if len(regions) <= 12 else 1.6]}
    )
    means, errors = [], []
    for arm in arms:
        interval = _interval(entry["arms"][arm]["runs"], "mean_dice")
        means.append(interval.mean)
        errors.append(0.0 if math.isnan(interval.half_width) else interval.half_width)
    mean_axis.bar(arms, means, yerr=errors, capsize=3, color="tab:blue")
    mean_axis.set_ylabel("mean Dice (test)")
    mean_axis.set_title("mean Dice ± 95% CI", fontsize=10)
    low = (
        min(m - e for m, e in zip(means, errors) if math.isfinite(m)) if any(map(math.isfinite, means)) else 0
    )
    mean_axis.set_ylim(max(0.0, low - 0.05), 1.0)
    mean_axis.tick_params(axis="x", rotation=30)

    per_arm_region: dict[str, list[float]] = {}
    for arm in arms:
        runs = entry["arms"][arm]["runs"]
        values = []
        for region in regions:
            seeds = [run["dice"][region] for run in runs if run.get("dice", {}).get(region) is not None]
            values.append(sum(seeds) / len(seeds) if seeds else float("nan"))
        per_arm_region[arm] = values
    if len(regions) <= 12:
        width = 0.8 / max(1, len(arms))
        for i, arm in enumerate(arms):
            positions = [r + (i - (len(arms) - 1) / 2) * width for r in range(len(regions))]
            region_axis.bar(positions, per_arm_region[arm], width=width, label=arm)
        region_axis.set_xticks(range(len(regions)))
        region_axis.set_xticklabels(regions, rotation=30, fontsize=8)
        region_axis.legend(fontsize=8, ncol=min(len(arms), 5))
        region_axis.set_title("Dice per region (mean over seeds)", fontsize=10)
    else:
        data = [[v for v in per_arm_region[arm] if math.isfinite(v)] for arm in arms]
        region_axis.boxplot(data, tick_labels=arms)
        region_axis.set_title(f"Dice over the {len(regions)} regions (mean over seeds)", fontsize=10)
        region_axis.tick_params(axis="x", rotation=30)
    region_axis.set_ylabel("Dice")
    region_axis.set_ylim(0, 1)
    for axis in (mean_axis, region_axis):
        axis.grid(alpha=0.3, axis="y")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def plot_examples(entry: dict[str, Any], out: Path, path: Path, rows: int = 3) -> Path | None:
    import torch

    plt = _mpl()
    from matplotlib.colors import ListedColormap

    examples = {
        arm: torch.load(out / rel, weights_only=False)["examples"]
        for arm, rel in entry.get("examples", {}).items()
    }
    if not examples:
        return None
    arms = list(examples)
    count = min(rows, min(len(v) for v in examples.values()))
    classes = len(entry["label_names"])
    base = plt.get_cmap("tab20" if classes > 10 else "tab10")
    colours = [(0, 0, 0, 1)] + [base(i % base.N) for i in range(classes - 1)]
    cmap = ListedColormap(colours)
    columns = 2 + len(arms)
    figure, axes = plt.subplots(count, columns, figsize=(2.3 * columns, 2.6 * count), squeeze=False)
    for row in range(count):
        first = examples[arms[0]][row]
        panels = [("T1", first["image"], "gray", None), ("atlas", first["labels"], cmap, classes - 1)]
        panels += [(arm, examples[arm][row]["prediction"], cmap, classes - 1) for arm in arms]
        for axis, (title, image, colour_map, vmax) in zip(axes[row], panels):
            shown = torch.as_tensor(image).float().rot90(1).numpy()
            if vmax is None:
                axis.imshow(shown, cmap=colour_map)
            else:
                axis.imshow(shown, cmap=colour_map, vmin=0, vmax=vmax, interpolation="nearest")
            axis.set_xticks([])
            axis.set_yticks([])
            if row == 0:
                axis.set_title(title, fontsize=9)
    figure.suptitle("Test-slab middle slices: T1, atlas and each arm's prediction (first seed)", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def plot_specificity(analysis: dict[str, Any], path: Path) -> Path | None:
    arms = [arm for arm, value in analysis.items() if isinstance(value, dict) and "summary" in value]
    if not arms:
        return None
    plt = _mpl()
    figure, axis = plt.subplots(figsize=(6.4, 4.2))
    for arm in arms:
        summary = analysis[arm]["summary"]
        x = list(range(1, len(summary) + 1))
        means = [s["mean"] for s in summary]
        errors = [0.0 if (s["ci95"] is None or math.isnan(s["ci95"])) else s["ci95"] for s in summary]
        axis.errorbar(x, means, yerr=errors, marker="o", capsize=3, label=arm)
    axis.set_ylim(-0.05, 1.05)
    axis.set_xlabel("attention layer (depth order)")
    axis.set_ylabel("class specificity η² (mean over channels)")
    axis.set_title("Class specificity of the channel gates by depth (mean ± 95% CI over seeds)", fontsize=9)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def plot_sweep(entry: dict[str, Any], path: Path) -> Path | None:
    sweep = sorted((int(a[4:]), d) for a, d in entry["arms"].items() if a.startswith("se-r"))
    if not sweep:
        return None
    plt = _mpl()
    figure, axis = plt.subplots(figsize=(6.4, 4.2))
    ratios = [r for r, _ in sweep]
    intervals = [_interval(d["runs"], "accuracy") for _, d in sweep]
    axis.errorbar(
        ratios,
        [i.mean * 100 for i in intervals],
        yerr=[0 if math.isnan(i.half_width) else i.half_width * 100 for i in intervals],
        marker="o",
        capsize=3,
    )
    axis.set_xscale("log", base=2)
    axis.set_xticks(ratios)
    axis.set_xticklabels([str(r) for r in ratios])
    axis.set_xlabel("SE reduction ratio r")
    axis.set_ylabel("test accuracy (%)")
    params = [d.get("profile", {}).get("params") for _, d in sweep]
    if all(p is not None for p in params):
        twin = axis.twinx()
        twin.plot(ratios, params, color="tab:gray", ls="--", marker="x")
        twin.set_ylabel("parameters", color="tab:gray")
    axis.set_title("SE reduction-ratio sweep (mean ± 95% CI)", fontsize=10)
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


# ------------------------------------------------------------------------------------------------ tables


def _task_table(
    entry: dict[str, Any],
    metric: str,
    scale: float,
    unit: str,
    extra: str | None = None,
    digits: int = 2,
    baseline_name: str = "none",
) -> list[str]:
    arms = entry["arms"]
    baseline = arms.get(baseline_name)
    base_profile = baseline.get("profile") if baseline else None
    header = f"| arm | test {unit} | Δ vs {baseline_name} (paired) |"
    rule = "|---|---|---|"
    if extra:
        header += " HD95 (mm) |"
        rule += "---|"
    batch = next((d["profile"]["input_size"][0] for d in arms.values() if d.get("profile")), None)
    per_batch = f", batch {batch}" if batch else ""
    header += (
        f" params | + params | MFLOPs / sample | fwd (ms{per_batch}) | fwd+bwd (ms{per_batch}) |"
        " train time (s) |"
    )
    rule += "---|---|---|---|---|---|"
    lines = [header, rule]
    for arm, data in arms.items():
        runs = data["runs"]
        interval = _interval(runs, metric)
        if baseline is not None and arm != baseline_name:
            diff = stats.paired_difference(_seed_values(runs, metric), _seed_values(baseline["runs"], metric))
            delta = diff.format(scale, digits) if diff.n else "n/a"
            if diff.n and not delta.startswith("-"):
                delta = "+" + delta
        else:
            delta = "—"
        row = f"| {arm} | {interval.format(scale, digits)} | {delta} |"
        if extra:
            row += f" {_interval(runs, extra).format(1.0, 1)} |"
        profile = data.get("profile")
        added = "—"
        if profile and base_profile and arm != baseline_name:
            added = f"{profile['params'] - base_profile['params']:+,}"
        row += (
            f" {_fmt_int(profile['params']) if profile else 'n/a'} | {added} | {_fmt_mflops(profile)} |"
            f" {_fmt_ms(profile.get('latency_fwd_ms') if profile else None)} |"
            f" {_fmt_ms(profile.get('latency_fwdbwd_ms') if profile else None)} |"
            f" {_interval(runs, 'train_seconds').format(1.0, 0)} |"
        )
        lines.append(row)
    return lines


def _region_table(entry: dict[str, Any], limit: int = 12) -> list[str]:
    regions = list(entry["label_names"][1:])
    if len(regions) > limit:
        return [f"(Per-region Dice of the {len(regions)} regions: see `results.json`.)"]
    arms = list(entry["arms"])
    lines = ["| region | " + " | ".join(arms) + " |", "|---|" + "---|" * len(arms)]
    for region in regions:
        cells = []
        for arm in arms:
            values = [
                run["dice"][region]
                for run in entry["arms"][arm]["runs"]
                if run.get("dice", {}).get(region) is not None
            ]
            cells.append(stats.mean_ci(values).format(1.0, 3) if values else "n/a")
        lines.append(f"| {region} | " + " | ".join(cells) + " |")
    return lines


def _analysis_table(analysis: dict[str, Any]) -> list[str]:
    arms = [arm for arm, value in analysis.items() if isinstance(value, dict) and "summary" in value]
    if not arms:
        return []
    reference = analysis[arms[0]]
    depth = max(len(analysis[arm]["summary"]) for arm in arms)
    header = " | ".join(f"η² {arm} | spread {arm}" for arm in arms)
    lines = [f"| depth | layer | {header} |", "|---|---|" + "---|---|" * len(arms)]
    for i in range(depth):
        name = reference["layers"][i] if i < len(reference["layers"]) else ""
        cells = []
        for arm in arms:
            for key in ("summary", "spread_summary"):
                summary = analysis[arm].get(key, [])
                if i < len(summary):
                    cells.append(
                        stats.Interval(summary[i]["mean"], summary[i]["ci95"], summary[i]["n"]).format(1.0, 3)
                    )
                else:
                    cells.append("")
        lines.append(f"| {i + 1} | `{name}` | " + " | ".join(cells) + " |")
    return lines


def _describe_classification(entry: dict[str, Any]) -> str:
    setup, sizes, training = entry["setup"]["setup"], entry["setup"]["sizes"], entry["training"]
    steps = sizes["train"] // training["batch_size"] * training["epochs"]
    return (
        f"ResNet-{setup['depth']} layout, small stem (3x3 stride 1, no max-pool), base width "
        f"{setup['width']}, "
        "attention in every block at the paper's placement. Data: Fashion-MNIST, "
        f"{sizes['train']:,} training "
        f"images, {sizes['val']:,} validation (fixed stratified split of the official training set), "
        f"{sizes['test']:,} test. Budget per run: {training['epochs']} epochs, batch "
        f"{training['batch_size']}, "
        f"{steps} AdamW steps (lr {training['lr']}, weight decay {training['weight_decay']}, "
        "warm-up then cosine), "
        f"random horizontal flips. The final model is tested."
    )


def _describe_segmentation(entry: dict[str, Any]) -> str:
    setup, training = entry["setup"]["setup"], entry["training"]
    slabs = entry["setup"]["slabs"]
    counts = {split: sum(b - a for a, b in ranges) for split, ranges in slabs.items()}
    model = (
        f"{setup['dim']}-D U-Net, features {tuple(setup['features'])}, "
        "attention after every encoder and decoder block"
    )
    unit = "axial slices" if setup["dim"] == 2 else "slices in 3-D slabs"
    if setup["dim"] == 3:
        model += (
            f", trained on random {'x'.join(map(str, setup['patch']))} patches of the training slabs "
            f"({setup['patches_per_epoch']} per epoch), every validation and test slab segmented whole"
        )
    return (
        f"{model}. Data: Colin27 T1 (`{setup['image']}`), labels `{setup['labels']}` "
        f"({len(entry['label_names']) - 1} regions + background), voxel {entry['spacing_mm'][0]:g} "
        "mm. Splits: "
        f"slabs of axial slices cycling train {setup['slab_train']} / gap {setup['slab_gap']} / "
        f"val {setup['slab_val']} "
        f"/ gap / test {setup['slab_test']} / gap: {counts['train']} train, {counts['val']} val, "
        f"{counts['test']} "
        f"test {unit}; no test slice lies within {setup['slab_gap']} slices of a training slice. "
        "Budget per run: "
        f"{training['epochs']} epochs, batch {training['batch_size']}, AdamW lr {training['lr']}; loss "
        "cross-entropy + soft Dice. Dice is global over the split per region; HD95 is computed in "
        "3-D per test "
        f"slab and region and averaged."
    )


def _is_vit(data: dict[str, Any]) -> bool:
    return (data.get("arm") or {}).get("network") == "vit" or data.get("baseline") == "vit"


def _describe_vit(entry: dict[str, Any]) -> str:
    setup, sizes = entry["setup"]["setup"], entry["setup"]["sizes"]
    training = entry.get("training_by_network", {}).get("vit", entry["training"])
    same = training == entry["training"]
    patch = setup.get("vit_patch", 4)
    tokens = (28 // patch) ** 2
    steps = sizes["train"] // training["batch_size"] * training["epochs"]
    budget = (
        "the same budget as the ResNet arms"
        if same
        else "its own budget, the same for every ViT arm (a transformer needs more steps than the ResNet)"
    )
    return (
        f"A small vision transformer (`excite.tokens.vit_tiny`: {patch}x{patch} patches, {tokens} tokens + a "
        f"class token, width {setup['vit_width']}, depth {setup['vit_depth']}, {setup['vit_heads']} heads, "
        f"MLP ratio 2), trained on the same {sizes['train']:,} images and seeds as the ResNet arms with "
        f"{budget}: {training['epochs']} epochs, batch {training['batch_size']}, {steps} AdamW steps (lr "
        f"{training['lr']}, warm-up then cosine). It is "
        "compared with the ViT without SE (`vit`), not with the ResNet. SE (reduction 4) acts on the token "
        "channels, squeezing over the patch tokens, after the attention branch (`vit_se`, the SQET-style "
        "placement), after the MLP (`vit_se_mlp`) or both (`vit_se_both`). A transformer this small on "
        "this little data and so few steps is far from its best; the comparison is at this budget."
    )


def _hybrid_lines(results: dict[str, Any]) -> list[str]:
    """The eca_coord discussion: its numbers against its parents, per task, with the paired verdicts."""
    tasks = results["tasks"]
    specs = (
        ("classification", "accuracy", 100, "accuracy (%)", 2, " pts"),
        ("segmentation", "mean_dice", 1.0, "mean Dice", 3, " Dice"),
        ("segmentation3d", "mean_dice", 1.0, "mean Dice", 3, " Dice"),
    )
    claims = {c["id"]: c for c in results.get("claims", [])}
    body: list[str] = []
    for task, metric, scale, label, digits, unit in specs:
        arms = tasks.get(task, {}).get("arms", {})
        if "eca_coord" not in arms:
            continue
        shown = [a for a in ("none", "eca", "coord", "eca_coord") if a in arms]
        base_profile = (arms.get("none") or {}).get("profile")
        body += [
            f"**{task}**",
            "",
            f"| arm | test {label} | params added | fwd+bwd (ms) |",
            "|---|---|---|---|",
        ]
        for arm in shown:
            data = arms[arm]
            profile = data.get("profile")
            added = (
                f"{profile['params'] - base_profile['params']:+,}"
                if profile and base_profile and arm != "none"
                else "—"
            )
            body.append(
                f"| {arm} | {_interval(data['runs'], metric).format(scale, digits)} | {added} | "
                f"{_fmt_ms(profile.get('latency_fwdbwd_ms') if profile else None)} |"
            )
        body.append("")
        sentences = []
        for parent in ("eca", "coord"):
            if parent not in arms:
                sentences.append(f"`{parent}` was not run in this task.")
                continue
            diff = stats.paired_difference(
                _seed_values(arms["eca_coord"]["runs"], metric), _seed_values(arms[parent]["runs"], metric)
            )
            sentences.append(
                f"eca_coord − {parent} = {diff.format(scale, digits)}{unit} (paired, {diff.n} seeds)."
            )
        claim = claims.get(f"hybrid-{task}")
        if claim:
            sentences.append(f'Claim "eca_coord > both parents": **{claim["verdict"]}**.')
        body += [" ".join(sentences), ""]
    if not body:
        return []
    params = claims.get("hybrid-params")
    lines = [
        "## The ECA + Coordinate Attention hybrid (`eca_coord`)",
        "",
        "`eca_coord` (`excite.layers.eca_coord`) is our composition of ECA's reduction-free channel "
        "interaction (a 1-D convolution across channels with ECA's adaptive kernel) with CA's "
        "direction-aware strip pooling; the closest published design is ELA (2024). Below: the hybrid "
        "against its parents in the same network, seeds and budget (mean ± 95% CI; differences paired "
        "by seed).",
        "",
        *body,
    ]
    if params and params["verdict"] != "not tested":
        lines += [f"Parameters: {params['evidence']} (fewer than CA: **{params['verdict']}**).", ""]
    return lines


def _graph_lines(graphs: dict[str, Any], margins: dict[str, Any]) -> list[str]:
    data, setup, settings = graphs["data"], graphs["setup"], graphs.get("settings", {})
    summary = data["summary"]
    models = graphs["models"]
    ks = setup["ks"]
    seeds = setup["seeds"]
    limited = (
        f" Only the first {data['user_limit']} users of the file are kept (a test-sized subset)."
        if data.get("user_limit")
        else ""
    )
    lines = [
        "## Graph recommenders: LightGCN, SimGCL, WeightedGCL",
        "",
        f"**Data.** {data['description']} (file `{data['file']}`; {summary['users']:,} users, "
        f"{summary['items']:,} items, {summary['interactions']:,} interactions, density "
        f"{summary['density'] * 100:.2f}%).{limited} Split {data['split']} with seed {data['split_seed']}: "
        f"{summary['train']:,} / {summary['valid']:,} / {summary['test']:,}. This is not one of the "
        "WeightedGCL paper's data sets (Amazon, Pinterest, Alibaba cannot be had offline here): the table "
        "says nothing about the paper's numbers on its own data.",
        "",
        "**Protocol** (`excite.graphs`, following WeightedGCL's configuration): embeddings 64, Adam, "
        f"batch {settings.get('batch_size', 'n/a')}, one sampled negative per pair, lr "
        f"{settings.get('lr', 'n/a')}, at most {settings.get('epochs', 'n/a')} epochs with validation "
        f"every {settings.get('eval_every', 'n/a')} epoch(s); the epoch with the best validation "
        f"NDCG@{min(ks)} is tested, full ranking with training "
        f"and validation items masked. Same split and budget for every model; training seed(s) "
        f"{', '.join(map(str, seeds))}. Mean ± 95% CI over seeds where there are several; Δ is relative "
        "to LightGCN's mean.",
        "",
    ]
    header = ["model"] + [f"{m}@{k}" for k in ks for m in ("Recall", "NDCG")] + ["best epoch", "seconds"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    base = models.get("lightgcn")
    for name, entry in models.items():
        cells = [name]
        for k in ks:
            for metric in ("recall", "ndcg"):
                key = f"{metric}@{k}"
                interval = stats.mean_ci(stats.by_seed(entry["runs"], key).values())
                cell = interval.format(1.0, 4)
                if base is not None and name != "lightgcn":
                    reference = stats.mean_ci(stats.by_seed(base["runs"], key).values()).mean
                    if reference:
                        cell += f" ({(interval.mean / reference - 1) * 100:+.1f}%)"
                cells.append(cell)
        cells.append(", ".join(str(r["best_epoch"]) for r in entry["runs"]))
        cells.append(stats.mean_ci([r["seconds"] for r in entry["runs"]]).format(1.0, 0))
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "Verdicts (WeightedGCL > SimGCL; contrastive > LightGCN) are in the claims section, paired over "
        f"training seeds with margin {margins.get('ranking', 0.005) * 100:.1f} points; with one seed "
        "there is no interval and they are inconclusive.",
        "",
    ]
    return lines


def _part_times(results: dict[str, Any]) -> str:
    parts = [(name, entry.get("seconds")) for name, entry in results["tasks"].items()]
    parts += [(name, (results.get(name) or {}).get("seconds")) for name in ("graphs", "search")]
    shown = [f"{name} {seconds / 60:.1f}" for name, seconds in parts if seconds is not None]
    return f" ({', '.join(shown)} min)" if shown else ""


PART_NAMES = {
    "segmentation3d": "3-D U-Net segmentation task (none vs scSE on 3-D patches)",
    "graphs": "graph recommender table (LightGCN / SimGCL / WeightedGCL)",
    "search": "search section (per-layer attention search, FcaNet frequency search)",
}


def write_report(results: dict[str, Any], out: Path) -> Path:
    """Write ``results.json``, the plots and ``report.md`` into ``out``; returns the report's path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1, default=str))
    env = results["environment"]
    config = results["config"]
    lines = [
        f"# excite study: {results['preset']} preset",
        "",
        f"Generated {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')} by `excite study` "
        f"on {env['device']}"
        f" ({env['device_name']}, {env['cpu_threads']} CPU threads, {env['world_size']} process(es), AMP "
        f"{'on' if env['amp'] else 'off'}), torch {env['torch']}. Seeds: "
        f"{', '.join(map(str, config['seeds']))}. "
        f"Wall time {results['wall_seconds'] / 60:.1f} min{_part_times(results)}. "
        "Every number is the mean ± 95% CI over seeds "
        "(t-distribution); Δ columns are paired by seed. Latencies are medians on this machine, "
        "one training "
        f"batch per call, measured round-robin across arms; on a shared machine they are noisy. "
        "MFLOPs / sample count convolutions and matrix products (`torch.utils.flop_counter`) plus the "
        "elementwise work of the attention modules (`excite.profiling`).",
        "",
    ]
    not_run = [(part, flag) for part, flag in results.get("not_run", [])]
    skipped = results.get("skipped", {})
    if not_run or skipped:
        for part, flag in not_run:
            lines.append(f"- {PART_NAMES.get(part, part)}: not run in this preset: use `{flag}`.")
        for part, reason in skipped.items():
            lines.append(f"- {PART_NAMES.get(part, part)}: skipped: {reason}")
        lines.append("")
    tasks = results["tasks"]
    if "classification" in tasks:
        entry = tasks["classification"]
        resnet_arms = {a: d for a, d in entry["arms"].items() if not a.startswith("se-r") and not _is_vit(d)}
        vit_arms = {a: d for a, d in entry["arms"].items() if _is_vit(d)}
        lines += ["## Classification: Fashion-MNIST", "", _describe_classification(entry), ""]
        if resnet_arms:
            lines += _task_table({"arms": resnet_arms}, "accuracy", 100, "accuracy (%)")
            lines.append("")
            figure = out / "accuracy_vs_params.png"
            if plot_metric_vs_params({"arms": resnet_arms}, "accuracy", "test accuracy (%)", 100, figure):
                lines += ["![accuracy vs parameters](accuracy_vs_params.png)", ""]
        plot_training_curves(entry, "accuracy", "accuracy", out / "training_curves_classification.png")
        lines += ["![training curves](training_curves_classification.png)", ""]
        if vit_arms:
            lines += ["### A small ViT with and without SE", "", _describe_vit(entry), ""]
            if "vit" in vit_arms:
                lines += _task_table({"arms": vit_arms}, "accuracy", 100, "accuracy (%)", baseline_name="vit")
            else:
                lines.append("(The ViT without SE was not run: no paired comparison.)")
            lines.append("")
        analysis = entry.get("analysis", {})
        table = _analysis_table(analysis)
        if table:
            examples = next(
                v["examples"] for v in analysis.values() if isinstance(v, dict) and "examples" in v
            )
            lines += [
                "### Excitation analysis",
                "",
                f"Mean channel-gate excitation per class on {examples:,} test images, per attention layer "
                "(`excite.analysis.excitations`). Class specificity η² = between-class variance / "
                "total variance "
                "of each channel's gate, averaged over channels: 0 = class-agnostic, 1 = "
                "determined by the class. "
                "Spread = between-class standard deviation of the gate in gate units (how far "
                "apart the class "
                "curves of the figure lie), averaged over channels.",
                "",
            ]
            lines += table + [""]
            if plot_specificity(analysis, out / "specificity_vs_depth.png"):
                lines += ["![class specificity vs depth](specificity_vs_depth.png)", ""]
            for arm, figure in analysis.get("figures", {}).items():
                lines += [f"![excitations of {arm}]({figure})", ""]
        if plot_sweep(entry, out / "reduction_sweep.png"):
            lines += ["### SE reduction-ratio sweep", ""]
            lines += _task_table(
                {"arms": {a: d for a, d in entry["arms"].items() if a.startswith("se-r") or a == "none"}},
                "accuracy",
                100,
                "accuracy (%)",
            )
            lines += ["", "![reduction sweep](reduction_sweep.png)", ""]
    for task_name, title, suffix in (
        ("segmentation", "## Segmentation: brain MRI (Colin27, atlas regions)", ""),
        ("segmentation3d", "## Segmentation in 3-D: brain MRI patches (Colin27, atlas regions)", "_3d"),
    ):
        if task_name not in tasks:
            continue
        entry = tasks[task_name]
        lines += [title, "", _describe_segmentation(entry), ""]
        for note in entry.get("notes", []):
            lines.append(f"- Data: {note}")
        lines.append("")
        has_hd = any(run.get("hd95_mm") is not None for d in entry["arms"].values() for run in d["runs"])
        lines += _task_table(
            entry, "mean_dice", 1.0, "mean Dice", extra="hd95_mm" if has_hd else None, digits=3
        )
        lines += ["", "Dice per region (test):", ""]
        lines += _region_table(entry)
        lines.append("")
        plot_dice_per_arm(entry, out / f"dice_per_arm{suffix}.png")
        lines += [f"![Dice per arm](dice_per_arm{suffix}.png)", ""]
        curves = f"training_curves_{task_name}.png"
        plot_training_curves(entry, "mean_dice", "mean Dice", out / curves)
        lines += [f"![training curves]({curves})", ""]
        if plot_examples(entry, out, out / f"segmentation_examples{suffix}.png"):
            lines += [f"![example segmentations](segmentation_examples{suffix}.png)", ""]
    lines += _hybrid_lines(results)
    if results.get("graphs"):
        lines += _graph_lines(results["graphs"], config["margins"])
    if results.get("search"):
        lines += [results["search"]["markdown"].rstrip(), ""]
    lines += ["## Claims", "", "| claim | evidence | verdict |", "|---|---|---|"]
    for claim in results.get("claims", []):
        lines.append(
            f"| {claim['claim']} ({claim['source']}) | {claim['evidence']} | **{claim['verdict']}** |"
        )
    margins = config["margins"]
    lines += [
        "",
        "Rules (from the numbers above; see `excite.study.stats`): comparisons use the 95% t-interval of the "
        "paired per-seed difference A − B. *A > B*: supported if the interval is above 0; not "
        "supported if it "
        "lies below +δ; otherwise inconclusive at this budget. *A ≥ B*: supported if above −δ; "
        "not supported "
        f"if below 0. *A ≈ B*: supported if inside ±δ; not supported if entirely outside. Margins δ: "
        f"{margins['accuracy'] * 100:.1f} accuracy points, {margins['dice']} Dice, "
        f"{margins['specificity']} η², "
        f"{margins['latency'] * 100:.0f}% latency, {margins.get('ranking', 0.005) * 100:.1f} points of "
        "Recall/NDCG. Parameter and FLOP claims are exact counts "
        "against the stated "
        "thresholds. With one seed there is no interval: such comparisons are inconclusive. A verdict "
        "holds for this preset's networks, data and budget only.",
        "",
    ]
    for claim in results.get("claims", []):
        if claim.get("rule"):
            lines.append(f"- *{claim['claim']}*: {claim['rule']}.")
    lines += [
        "",
        "## Reproduce",
        "",
        f"`{reproduce_command(results)}` "
        "(finished runs in the output folder are reused; interrupted ones resume).",
        "",
    ]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path


def reproduce_command(results: dict[str, Any]) -> str:
    """The ``excite study`` command line that runs this configuration's parts."""
    config = results["config"]
    tasks = config["tasks"]
    engine = [t for t in tasks if t in ("classification", "segmentation")]
    parts = [
        f"excite study --preset {results['preset']}",
        f"--seeds {','.join(map(str, config['seeds']))}",
        f"--tasks {','.join(engine)}" if engine else "",
        "--with-3d" if "segmentation3d" in tasks else "--no-3d",
        "--graphs" if "graphs" in tasks else "--no-graphs",
        f"--search {config['search']}" if "search" in tasks else "--search none",
        "--sweep-reduction" if config.get("sweep_reduction") else "",
    ]
    return " ".join(p for p in parts if p)
