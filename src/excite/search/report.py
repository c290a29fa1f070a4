"""Markdown tables and figures of the searches (matplotlib with the Agg backend, imported lazily)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(str(h) for h in header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(str(cell) for cell in row) + " |")
    return "\n".join(lines)


def format_cost(value: float, unit: str) -> str:
    if unit == "ms":
        return f"{value:.3f} ms"
    if abs(value) >= 1e6:
        return f"{value / 1e6:.2f}M"
    if abs(value) >= 1e3:
        return f"{value / 1e3:.1f}k"
    return f"{value:.0f}"


def pyplot():
    """matplotlib's pyplot on the Agg backend, or None when matplotlib is not installed."""
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_probability_evolution(
    steps: Sequence[int],
    probabilities: Sequence[Sequence[Sequence[float]]],
    slot_names: Sequence[str],
    candidates: Sequence[str],
    path: Path,
    title: str,
) -> Path | None:
    """One panel per slot: softmax(α) of every candidate against the search step.

    ``probabilities[t][s][i]`` is candidate ``i`` at slot ``s`` after step ``steps[t]``.
    """
    plt = pyplot()
    if plt is None:
        return None
    count = len(slot_names)
    columns = min(4, count)
    rows = math.ceil(count / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 2.4 * rows + 0.6), squeeze=False)
    colours = plt.get_cmap("tab10")
    for s, name in enumerate(slot_names):
        axis = axes[s // columns][s % columns]
        for i, candidate in enumerate(candidates):
            axis.plot(steps, [p[s][i] for p in probabilities], label=candidate, color=colours(i % 10), lw=1.4)
        axis.set_title(name, fontsize=8)
        axis.set_ylim(0, 1)
        axis.tick_params(labelsize=7)
        axis.grid(alpha=0.3)
    for s in range(count, rows * columns):
        axes[s // columns][s % columns].axis("off")
    handles, labels = axes[0][0].get_legend_handles_labels()
    figure.suptitle(title, fontsize=10, y=0.995)
    figure.legend(
        handles,
        labels,
        loc="upper center",
        bbox_to_anchor=(0.5, 1.0 - 0.22 / (2.4 * rows + 0.6)),
        ncol=min(len(candidates), 8),
        fontsize=8,
        frameon=False,
    )
    figure.supxlabel("search step", fontsize=8)
    figure.supylabel("softmax(α)", fontsize=8)
    # Keep about 0.6 inch at the top for the title and the legend, whatever the number of rows.
    figure.tight_layout(rect=(0, 0, 1, 1.0 - 0.6 / (2.4 * rows + 0.6)))
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def plot_frequency_maps(
    maps: Sequence[Sequence[Sequence[float]]],
    selected: Sequence[Sequence[Sequence[int]]],
    layer_names: Sequence[str],
    path: Path,
    title: str,
) -> Path | None:
    """One heat map per layer of the learnt weight of every (u, v) frequency on the reference grid,
    the selected ones outlined (the analogue of FcaNet's per-frequency accuracy figure)."""
    plt = pyplot()
    if plt is None:
        return None
    count = len(layer_names)
    columns = min(4, count)
    rows = math.ceil(count / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(2.9 * columns, 2.8 * rows + 0.4), squeeze=False)
    for layer, name in enumerate(layer_names):
        axis = axes[layer // columns][layer % columns]
        image = axis.imshow(maps[layer], cmap="viridis", origin="upper")
        for u, v in selected[layer]:
            axis.add_patch(plt.Rectangle((v - 0.5, u - 0.5), 1, 1, fill=False, edgecolor="red", lw=1.2))
        axis.set_title(name, fontsize=8)
        axis.set_xlabel("v (width)", fontsize=7)
        axis.set_ylabel("u (height)", fontsize=7)
        axis.tick_params(labelsize=6)
        figure.colorbar(image, ax=axis, fraction=0.046, pad=0.04).ax.tick_params(labelsize=6)
    for layer in range(count, rows * columns):
        axes[layer // columns][layer % columns].axis("off")
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def plot_arms(
    names: Sequence[str],
    means: Sequence[float],
    half_widths: Sequence[float],
    costs: Sequence[float],
    cost_label: str,
    metric_label: str,
    path: Path,
    title: str,
    highlight: Sequence[str] = (),
) -> Path | None:
    """Metric (mean ± 95% CI) against cost, one point per arm; searched arms in red."""
    plt = pyplot()
    if plt is None:
        return None
    figure, axis = plt.subplots(figsize=(6.4, 4.2))
    for k, (name, mean, half, cost) in enumerate(zip(names, means, half_widths, costs)):
        searched = name in highlight
        axis.errorbar(
            [cost],
            [mean],
            yerr=[[half], [half]],
            fmt="*" if searched else "o",
            markersize=11 if searched else 6,
            color="tab:red" if searched else "tab:blue",
            capsize=3,
            zorder=3 if searched else 2,
        )
        # Alternate label offsets: arms of equal cost (the free ones) would print on top of each other.
        axis.annotate(
            name, (cost, mean), textcoords="offset points", xytext=(5, 8 - 10 * (k % 3)), fontsize=7
        )
    positive = [c for c in costs if c > 0]
    if positive and max(positive) / min(positive) > 100:
        # Costs span orders of magnitude (0 for parameter-free modules, thousands for SE): symlog keeps both.
        axis.set_xscale("symlog", linthresh=min(positive))
    axis.set_xlabel(cost_label)
    axis.set_ylabel(metric_label)
    axis.set_title(title, fontsize=10)
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def mean_and_half_width(values: Sequence[float]) -> list[float]:
    """Mean and the half-width of the 95% t-interval (0 for a single value)."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return [mean, 0.0]
    variance = sum((v - mean) ** 2 for v in values) / (n - 1)
    return [mean, t_quantile_975(n - 1) * math.sqrt(variance / n)]


def t_quantile_975(degrees: int) -> float:
    """The 0.975 quantile of Student's t (two-sided 95%), tabulated for small samples."""
    table = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228]
    table += [2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086]
    if degrees <= len(table):
        return table[degrees - 1]
    return 2.042 if degrees <= 30 else 1.96
