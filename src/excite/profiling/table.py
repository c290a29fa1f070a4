"""The result of :func:`excite.profile`: rows, CSV/JSON export, a rich table and a PNG plot."""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Sequence
from typing import Any

# Columns in CSV/JSON order. ``*_added*`` compare each arm with the model without attention.
COLUMNS = (
    "model",
    "attention",
    "params",
    "params_added",
    "flops",
    "macs",
    "flops_added_pct",
    "elementwise_flops",
    "attention_bytes",
    "attention_bytes_fwdbwd",
    "latency_fwd_ms",
    "latency_fwd_added_pct",
    "latency_fwdbwd_ms",
    "latency_fwdbwd_added_pct",
    "peak_train_bytes",
    "peak_train_added_pct",
    "attention_modules",
    "traffic_source",
    "input_size",
    "device",
    "repeats",
    "note",
)

BASELINE = "none"


def add_overheads(rows: list[dict[str, Any]]) -> None:
    """Fill the ``*_added*`` columns of every row from the baseline row (``attention == "none"``)."""
    base = next((r for r in rows if r["attention"] == BASELINE), None)
    for row in rows:
        if base is None:
            for key in (
                "params_added",
                "flops_added_pct",
                "latency_fwd_added_pct",
                "latency_fwdbwd_added_pct",
                "peak_train_added_pct",
            ):
                row.setdefault(key, None)
            continue
        row["params_added"] = row["params"] - base["params"]
        row["flops_added_pct"] = _pct(row["flops"], base["flops"])
        row["latency_fwd_added_pct"] = _pct(row["latency_fwd_ms"], base["latency_fwd_ms"])
        row["latency_fwdbwd_added_pct"] = _pct(row["latency_fwdbwd_ms"], base["latency_fwdbwd_ms"])
        row["peak_train_added_pct"] = _pct(row["peak_train_bytes"], base["peak_train_bytes"])


def _pct(value: float | None, base: float | None) -> float | None:
    if value is None or base is None or not base or _nan(value) or _nan(base):
        return None
    return 100.0 * (value - base) / base


def _nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


class ProfileTable:
    """Rows of :func:`excite.profile`, one per arm (the model without attention first).

    Attributes:
        rows: list of dicts with the keys in :data:`COLUMNS`.
        skipped: ``(attention, reason)`` for arms that could not be built at this input size.
    """

    def __init__(
        self, rows: Sequence[dict[str, Any]], skipped: Sequence[tuple[str, str]] = (), title: str = ""
    ) -> None:
        self.rows: list[dict[str, Any]] = [{key: row.get(key) for key in COLUMNS} for row in rows]
        self.skipped: list[tuple[str, str]] = list(skipped)
        self.title = title

    def __len__(self) -> int:
        return len(self.rows)

    def row(self, attention: str) -> dict[str, Any]:
        """The row of one arm (``"none"`` for the model without attention)."""
        for row in self.rows:
            if row["attention"] == attention:
                return row
        raise ValueError(
            f"ProfileTable: no row for attention {attention!r}; rows: {[r['attention'] for r in self.rows]}"
        )

    def to_csv(self, path: str) -> str:
        _make_parent(path)
        with open(path, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(COLUMNS))
            writer.writeheader()
            for row in self.rows:
                writer.writerow({k: _csv_value(v) for k, v in row.items()})
        return path

    def to_json(self, path: str) -> str:
        _make_parent(path)
        payload = {"title": self.title, "rows": self.rows, "skipped": [list(s) for s in self.skipped]}
        with open(path, "w") as handle:
            json.dump(payload, handle, indent=2, default=_json_default)
        return path

    # ---------------------------------------------------------------------------------------------------
    # Display

    # (title, cell builder, alignment): a value with its change over the plain model in one cell keeps
    # the table narrow enough for a terminal.
    DISPLAY = (
        ("attention", lambda r: str(r["attention"]), "l"),
        (
            "params (added)",
            lambda r: _with_delta(_format("params", r["params"]), _format("params_added", r["params_added"])),
            "r",
        ),
        (
            "FLOPs (added)",
            lambda r: _with_delta(
                _format("flops", r["flops"]), _format("flops_added_pct", r["flops_added_pct"])
            ),
            "r",
        ),
        ("elementwise", lambda r: _format("elementwise_flops", r["elementwise_flops"]), "r"),
        (
            "traffic fwd / +bwd",
            lambda r: (
                f"{_format('attention_bytes', r['attention_bytes'])} / "
                f"{_format('attention_bytes_fwdbwd', r['attention_bytes_fwdbwd'])}"
            ),
            "r",
        ),
        (
            "fwd ms (added)",
            lambda r: _with_delta(
                _format("latency_fwd_ms", r["latency_fwd_ms"]),
                _format("latency_fwd_added_pct", r["latency_fwd_added_pct"]),
            ),
            "r",
        ),
        (
            "fwd+bwd ms (added)",
            lambda r: _with_delta(
                _format("latency_fwdbwd_ms", r["latency_fwdbwd_ms"]),
                _format("latency_fwdbwd_added_pct", r["latency_fwdbwd_added_pct"]),
            ),
            "r",
        ),
        (
            "peak train (added)",
            lambda r: _with_delta(
                _format("peak_train_bytes", r["peak_train_bytes"]),
                _format("peak_train_added_pct", r["peak_train_added_pct"]),
            ),
            "r",
        ),
    )

    def formatted(self) -> list[list[str]]:
        return [[cell(row) for _, cell, _ in self.DISPLAY] for row in self.rows]

    def caption(self) -> str:
        parts = []
        if self.rows:
            first = self.rows[0]
            parts.append(
                f"input {first['input_size']} on {first['device']}, "
                f"median of {first['repeats']} interleaved runs; "
                f"FLOPs counted by torch.utils.flop_counter (matrix products and convolutions); "
                f"elementwise and traffic: the attention modules' analytic model (excite.profiling.costs)"
            )
        for name, reason in self.skipped:
            parts.append(f"skipped {name}: {reason}")
        return "\n".join(parts)

    def __str__(self) -> str:
        header = [title for title, _, _ in self.DISPLAY]
        body = self.formatted()
        widths = [max(len(line[i]) for line in [header] + body) for i in range(len(header))]
        align = [a for _, _, a in self.DISPLAY]

        def render(cells: list[str]) -> str:
            return "  ".join(c.ljust(w) if a == "l" else c.rjust(w) for c, w, a in zip(cells, widths, align))

        lines = [self.title] if self.title else []
        lines.append(render(header))
        lines.append("  ".join("-" * w for w in widths))
        lines.extend(render(line) for line in body)
        caption = self.caption()
        if caption:
            lines.append(caption)
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"ProfileTable({len(self.rows)} rows: {[r['attention'] for r in self.rows]})"

    def __rich__(self) -> Any:
        from rich.table import Table

        table = Table(title=self.title or None, caption=self.caption() or None, caption_justify="left")
        for title, _, align in self.DISPLAY:
            table.add_column(title, justify="left" if align == "l" else "right", no_wrap=True)
        for line in self.formatted():
            table.add_row(*line)
        return table

    # ---------------------------------------------------------------------------------------------------
    # Plot

    def plot(self, path: str) -> str:
        """A PNG with three panels per attention: parameters added (symlog), FLOPs added vs. latency
        added in % (what the FLOP count hides), and the attention's memory traffic (log)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        arms = [r for r in self.rows if r["attention"] != BASELINE]
        if not arms:
            raise ValueError("ProfileTable.plot: no attention rows to plot")
        names = [r["attention"] for r in arms]
        positions = list(range(len(arms)))
        figure, axes = plt.subplots(1, 3, figsize=(max(12.0, 1.35 * len(arms)), 4.5))

        params = [r["params_added"] or 0 for r in arms]
        axes[0].bar(positions, params, color="#4c72b0")
        axes[0].set_yscale("symlog", linthresh=10)
        axes[0].set_title("parameters added")
        for x, value in zip(positions, params):
            axes[0].annotate(_si(value), (x, value), ha="center", va="bottom", fontsize=7)

        width = 0.27
        series = [
            ("flops_added_pct", "FLOPs (counted)", "#8c8c8c"),
            ("latency_fwd_added_pct", "latency fwd", "#dd8452"),
            ("latency_fwdbwd_added_pct", "latency fwd+bwd", "#c44e52"),
        ]
        for offset, (key, title, colour) in zip((-width, 0.0, width), series):
            values = [r[key] if r[key] is not None else 0.0 for r in arms]
            axes[1].bar([p + offset for p in positions], values, width, label=title, color=colour)
        axes[1].axhline(0, color="black", linewidth=0.6)
        # symlog: FLOP overheads of a few hundredths of a percent stay visible next to latency in tens.
        axes[1].set_yscale("symlog", linthresh=0.1)
        # Headroom above the tallest bar for the legend, which would otherwise cover it.
        tallest = max([abs(r[key] or 0.0) for r in arms for key, _, _ in series] + [1.0])
        axes[1].set_ylim(top=tallest * 8)
        axes[1].set_title("added over the plain model (%, symlog)")
        axes[1].legend(fontsize=7, loc="upper left", ncols=3)

        fwd = [max(r["attention_bytes"] or 0, 1) / 2**20 for r in arms]
        train = [max(r["attention_bytes_fwdbwd"] or 0, 1) / 2**20 for r in arms]
        axes[2].bar([p - 0.2 for p in positions], fwd, 0.4, label="forward", color="#55a868")
        axes[2].bar([p + 0.2 for p in positions], train, 0.4, label="forward+backward", color="#2f6f3e")
        axes[2].set_yscale("log")
        axes[2].set_title("attention memory traffic (MiB)")
        axes[2].legend(fontsize=7)

        for axis in axes:
            axis.set_xticks(positions)
            axis.set_xticklabels(names, rotation=45, ha="right", fontsize=8)
        figure.suptitle(self.title or "attention cost profile", fontsize=10)
        figure.tight_layout()
        _make_parent(path)
        figure.savefig(path, dpi=120)
        plt.close(figure)
        return path


def _make_parent(path: str) -> None:
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)


def _csv_value(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return "x".join(str(v) for v in value)
    return value


def _json_default(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    return str(value)


def _si(value: float) -> str:
    magnitude = abs(value)
    for factor, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if magnitude >= factor:
            return f"{value / factor:.3g}{suffix}"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _bytes(value: float) -> str:
    magnitude = abs(value)
    for factor, suffix in ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if magnitude >= factor:
            return f"{value / factor:.3g} {suffix}"
    return f"{int(value)} B"


def _with_delta(value: str, delta: str) -> str:
    return value if delta in ("-", "+0", "+0.00%") else f"{value} ({delta})"


def _format(key: str, value: Any) -> str:
    if value is None or _nan(value):
        return "-"
    if key.endswith("_pct"):
        if value and abs(value) < 0.01:
            return f"{value:+.2g}%"
        digits = 0 if abs(value) >= 100 else 1 if abs(value) >= 10 else 2
        return f"{value:+.{digits}f}%"
    if key == "params_added":
        return f"{value:+,d}"
    if key == "params":
        return f"{value:,d}"
    if key in ("flops", "elementwise_flops"):
        return _si(value)
    if key.endswith("_bytes") or key.startswith("attention_bytes"):
        return _bytes(value)
    if key.endswith("_ms"):
        return f"{value:.1f}" if value >= 10 else f"{value:.2f}"
    return str(value)
