"""Which SE-family module to use: a ranked table with reasons, and where each reason comes from.

    >>> from excite.recommend import recommend
    >>> table = recommend("classification", model="resnet50", budget_params=1_000_000, budget_latency_ms=5)
    >>> print(table)            # or rich.print(table); table.to_json("rec.json")

Three sources, always named in the table:

* **measured here**: the parameters and forward latency each module adds to *your* model at *your* input
  size, measured side by side by :func:`excite.profile` on this machine (``measure=False`` skips it);
* **study**: the metric each module reached in an ``excite study`` run (``study=DIR`` reads its
  ``results.json``);
* **survey advice**: the survey's practical recommendations, kept as data in ``advice.json`` (not in
  this code).

Ranking rule: modules within every given budget come first. Among them, modules with study evidence that
beat the study's baseline ("none") are ordered by the study metric; then modules with survey advice only,
in the survey's order (a ``context``'s preferred modules first, its avoided ones last); then modules the
study found no better than the baseline; then modules without any evidence. Over-budget modules follow
in the same order, flagged.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Union

TASKS = ("classification", "segmentation", "detection")
DEFAULT_MODELS = {"classification": "resnet50", "segmentation": "unet", "detection": "resnet50"}
MEASURED = "measured here"
STUDY = "study"
SURVEY = "survey advice"


def load_advice() -> dict[str, Any]:
    """The survey's advice (``advice.json``, shipped with the package)."""
    text = resources.files(__package__).joinpath("advice.json").read_text(encoding="utf-8")
    return json.loads(text)


@dataclass
class Recommendation:
    """One row: a module, its rank, the evidence and the reasons (each prefixed by its source)."""

    rank: int
    module: str
    basis: str
    within_budget: bool | None
    params_added: int | None = None
    latency_fwd_ms: float | None = None
    latency_added_ms: float | None = None
    latency_added_pct: float | None = None
    study_metric: str | None = None
    study_mean: float | None = None
    study_ci95: float | None = None
    study_n: int | None = None
    survey_rank: int | None = None
    reasons: list[str] = field(default_factory=list)


@dataclass
class RecommendationTable:
    """The ranked recommendations for one task and model, printable as text, rich or markdown."""

    task: str
    model: str
    input_size: list[int] | None
    budget_params: float | None
    budget_latency_ms: float | None
    rows: list[Recommendation]
    sources: list[str]
    notes: list[str] = field(default_factory=list)
    tips: list[str] = field(default_factory=list)

    @property
    def best(self) -> Recommendation | None:
        return self.rows[0] if self.rows else None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self, path: Union[str, Path]) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=1))
        return path

    def _cells(self, row: Recommendation) -> list[str]:
        params = "" if row.params_added is None else f"+{row.params_added:,}"
        if row.latency_added_ms is None:
            latency = ""
        else:
            latency = f"{row.latency_added_ms:+.2f} ms ({row.latency_added_pct:+.1f}%)"
        budget = {True: "yes", False: "OVER", None: "-"}[row.within_budget]
        return [str(row.rank), row.module, row.basis, params, latency, budget]

    HEADER = ("#", "module", "basis", "params added", "fwd latency added", "in budget")

    def title(self) -> str:
        size = "" if self.input_size is None else f" at {self.input_size}"
        budgets = []
        if self.budget_params is not None:
            budgets.append(f"params <= {self.budget_params:,.0f}")
        if self.budget_latency_ms is not None:
            budgets.append(f"added latency <= {self.budget_latency_ms:g} ms")
        budget = f"; budget: {', '.join(budgets)}" if budgets else ""
        return f"Recommended attention for {self.task} on {self.model}{size}{budget}"

    def __str__(self) -> str:
        lines = [self.title(), ""]
        table = [list(self.HEADER)] + [self._cells(r) for r in self.rows]
        widths = [max(len(row[i]) for row in table) for i in range(len(self.HEADER))]
        for k, cells in enumerate(table):
            lines.append("  ".join(cell.ljust(width) for cell, width in zip(cells, widths)).rstrip())
            if k == 0:
                lines.append("  ".join("-" * width for width in widths))
        lines.append("")
        for row in self.rows:
            lines.append(f"{row.rank}. {row.module}:")
            lines.extend(f"   - {reason}" for reason in row.reasons)
        lines += [f"Note: {note}" for note in self.notes]
        lines.append(f"Sources: {'; '.join(self.sources)}")
        return "\n".join(lines)

    def __rich__(self):
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        table = Table(title=self.title())
        for name in self.HEADER:
            table.add_column(
                name, no_wrap=name in ("#", "module"), justify="right" if name == "#" else "left"
            )
        for row in self.rows:
            table.add_row(*self._cells(row), style=None if row.within_budget is not False else "dim")
        parts: list[Any] = [table]
        for row in self.rows:
            parts.append(Text(f"{row.rank}. {row.module}", style="bold"))
            parts += [Text(f"   - {reason}") for reason in row.reasons]
        parts += [Text(f"Note: {note}", style="italic") for note in self.notes]
        parts.append(Text(f"Sources: {'; '.join(self.sources)}", style="dim"))
        return Group(*parts)

    def to_markdown(self) -> str:
        lines = [f"**{self.title()}**", "", "| " + " | ".join(self.HEADER + ("reasons",)) + " |"]
        lines.append("|" + " --- |" * (len(self.HEADER) + 1))
        for row in self.rows:
            lines.append("| " + " | ".join(self._cells(row) + ["<br>".join(row.reasons)]) + " |")
        lines += ["", *[f"Note: {note}" for note in self.notes], f"Sources: {'; '.join(self.sources)}"]
        return "\n".join(lines) + "\n"


def read_study(path: Union[str, Path], task: str) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Per module, the best arm of ``task`` in a study's ``results.json``, and notes.

    The schema read (tolerant: anything missing is skipped, never fatal)::

        {"tasks": {"<task>": {"metric": "accuracy" | "mean_dice", "setup": {...},
                              "arms": {"<arm>": {"arm": {"attention": "<module>" | null},
                                                  "summary": {"<metric>": {"mean", "ci95", "n"}},
                                                  "runs": [{"<metric>": value, ...}, ...]}}}}}

    The module of an arm is ``arm.attention`` (None means the baseline ``"none"``), else the arm name.
    When ``summary`` lacks the metric, the mean of the runs' values is used. Several arms of one module
    (e.g. scSE's aggregations) keep the best.

    Raises:
        FileNotFoundError: no ``results.json`` at ``path`` (a folder or the file itself).
        ValueError: a file that is not JSON.
    """
    path = Path(path)
    file = path / "results.json" if path.is_dir() else path
    if not file.exists():
        raise FileNotFoundError(f"recommend: no study results at {file} (run `excite study --out DIR` first)")
    try:
        results = json.loads(file.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"recommend: {file} is not JSON ({error})") from error
    notes: list[str] = []
    entry = results.get("tasks", {}).get(task) if isinstance(results, dict) else None
    if not isinstance(entry, dict):
        notes.append(f"the study at {file} has no {task} task; survey advice is used instead")
        return {}, notes
    metric = entry.get("metric") or ("accuracy" if task == "classification" else "mean_dice")
    best: dict[str, dict[str, Any]] = {}
    for arm_name, arm in (entry.get("arms") or {}).items():
        if not isinstance(arm, dict):
            continue
        spec = arm.get("arm") if isinstance(arm.get("arm"), dict) else {}
        module = spec.get("attention", arm_name) if "attention" in spec else arm_name
        module = "none" if module in (None, "", "none", "baseline") else str(module)
        summary = (arm.get("summary") or {}).get(metric)
        mean = ci95 = n = None
        if isinstance(summary, dict) and summary.get("mean") is not None:
            mean, ci95, n = summary.get("mean"), summary.get("ci95"), summary.get("n")
        else:
            values = [r.get(metric) for r in arm.get("runs") or [] if isinstance(r, dict)]
            values = [float(v) for v in values if isinstance(v, (int, float)) and not math.isnan(v)]
            if values:
                mean, n = sum(values) / len(values), len(values)
        if mean is None:
            continue
        if module not in best or mean > best[module]["mean"]:
            best[module] = {"arm": arm_name, "mean": float(mean), "ci95": ci95, "n": n, "metric": metric}
    setup = entry.get("setup") or {}
    described = setup.get("model") or setup.get("network") or "the study's network"
    notes.append(f"study evidence: {task} with {described}, from {file}; it may differ from your model")
    return best, notes


def _builder_size(model: str, task: str, input_size: Sequence[int] | None) -> list[int]:
    if input_size is not None:
        return [int(s) for s in input_size]
    if model.startswith("unet"):
        return [1, 1, 128, 128]
    return [1, 3, 224, 224]


def measure_modules(
    model: str,
    modules: Sequence[str],
    input_size: Sequence[int],
    *,
    device: str = "cpu",
    repeats: int = 3,
    attention_options: Mapping[str, Mapping[str, Any]] | None = None,
    progress: bool = True,
) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Params and latency each module adds to ``model``, from :func:`excite.profile` (interleaved
    timing, official presets where they share the backbone). Returns per module the profiler's row with
    ``latency_added_ms``, and notes on modules that could not be built."""
    from ..profiling import profile

    table = profile(
        model,
        list(input_size),
        attentions=list(modules),
        device=device,
        repeats=repeats,
        attention_options=attention_options,
        progress=progress,
    )
    base = table.row("none")
    rows: dict[str, dict[str, Any]] = {}
    for row in table.rows:
        if row["attention"] == "none":
            continue
        measured = dict(row)
        measured["latency_added_ms"] = row["latency_fwd_ms"] - base["latency_fwd_ms"]
        rows[row["attention"]] = measured
    notes = [f"{name} was not measured: {reason}" for name, reason in table.skipped]
    return rows, notes


def recommend(
    task: str,
    model: str | None = None,
    budget_params: float | None = None,
    budget_latency_ms: float | None = None,
    study: Union[str, Path, None] = None,
    *,
    input_size: Sequence[int] | None = None,
    candidates: Union[str, Sequence[str], None] = None,
    contexts: Sequence[str] = (),
    measure: bool = True,
    device: str = "cpu",
    repeats: int = 3,
    attention_options: Mapping[str, Mapping[str, Any]] | None = None,
    progress: bool = True,
) -> RecommendationTable:
    """Rank SE-family modules for a task under parameter and latency budgets.

    Args:
        task: ``"classification"``, ``"segmentation"`` or ``"detection"``.
        model: an :mod:`excite.models` builder name (``"resnet50"``, ``"mobilenet_v2"``, ``"unet"``),
            or ``"torchvision:NAME"`` / ``"timm:NAME"`` (a peer model with :func:`excite.attach`).
            Default: ``resnet50`` (classification, detection backbone) or ``unet`` (segmentation).
        budget_params: the most parameters the module may add to the whole model.
        budget_latency_ms: the most forward latency (ms, median, this machine) it may add.
        study: a study output folder (or its ``results.json``) whose results rank the modules.
        input_size: ``(N, C, *spatial)`` for the measurement; default ``(1, 3, 224, 224)``, or
            ``(1, 1, 128, 128)`` for a U-Net.
        candidates: module names, ``"all"`` (every registered module), or None: the survey's modules for
            the task plus those the study measured.
        contexts: ``"mobile"`` and/or ``"medical"``: the survey's extra advice for them.
        measure: measure params and latency on the model (needs the model to build); False uses the
            survey and the study alone.
        device, repeats: the profiler's device and timed rounds.
        attention_options: per-module options passed to the builder, e.g. ``{"se": {"reduction": 8}}``.

    Raises:
        ValueError: unknown task, context or module name, a negative budget.
        FileNotFoundError: ``study`` without ``results.json``.
    """
    from .._registry import available

    if task not in TASKS:
        raise ValueError(f"recommend: task must be one of {TASKS}, got {task!r}")
    for name, budget in (("budget_params", budget_params), ("budget_latency_ms", budget_latency_ms)):
        if budget is not None and budget < 0:
            raise ValueError(f"recommend: {name} must be >= 0, got {budget}")
    advice = load_advice()
    unknown = sorted(set(contexts) - set(advice["contexts"]))
    if unknown:
        raise ValueError(f"recommend: unknown context(s) {unknown}; known: {sorted(advice['contexts'])}")
    model = model or DEFAULT_MODELS[task]
    advised = {entry["module"]: (rank, entry) for rank, entry in enumerate(advice["tasks"][task], start=1)}
    notes: list[str] = []
    sources = [f"{SURVEY}: {advice['source']}"]

    study_rows: dict[str, dict[str, Any]] = {}
    if study is not None:
        study_rows, study_notes = read_study(study, task)
        notes += study_notes
        if study_rows:
            sources.append(f"{STUDY}: {Path(study)}")

    registered = set(available())
    if candidates == "all":
        names = sorted(registered)
    elif candidates is None:
        names = list(advised) + [m for m in study_rows if m not in advised and m in registered]
        for context in contexts:
            names += [m for m in advice["contexts"][context]["prefer"] if m not in names]
    else:
        names = [candidates] if isinstance(candidates, str) else list(candidates)
    missing = sorted(set(names) - registered)
    if missing:
        raise ValueError(
            f"recommend: unknown module(s) {missing}; available: {', '.join(sorted(registered))}"
        )

    size = _builder_size(model, task, input_size)
    measured: dict[str, dict[str, Any]] = {}
    if measure:
        measured, measure_notes = measure_modules(
            model,
            names,
            size,
            device=device,
            repeats=repeats,
            attention_options=attention_options,
            progress=progress,
        )
        notes += measure_notes
        sources.insert(
            0, f"{MEASURED}: excite.profile on {model} at {size}, {repeats} interleaved rounds, {device}"
        )
        if task == "detection":
            notes.append(
                f"detection: measured on the {model} backbone; no detection study exists, so the "
                "ranking is the survey's"
            )
    elif budget_params is not None or budget_latency_ms is not None:
        notes.append("budgets cannot be checked without measuring (measure=False)")

    baseline = study_rows.get("none")
    preferred: set = set()
    avoided: set = set()
    rows: list[Recommendation] = []
    for name in names:
        row = Recommendation(rank=0, module=name, basis=SURVEY, within_budget=None)
        reasons: list[str] = []
        if name in advised:
            rank, entry = advised[name]
            row.survey_rank = rank
            tag = " (experimental)" if entry.get("experimental") else ""
            reasons.append(f"{SURVEY} #{rank}{tag}: {entry['why']} [{entry['where']}]")
        for context in contexts:
            spec = advice["contexts"][context]
            if name in spec["prefer"]:
                preferred.add(name)
                reasons.append(f"{SURVEY} ({context}): preferred. {spec['why']} [{spec['where']}]")
            if name in spec["avoid"]:
                avoided.add(name)
                reasons.append(f"{SURVEY} ({context}): avoid. {spec['why']} [{spec['where']}]")
        if name in study_rows:
            found = study_rows[name]
            row.basis = STUDY
            row.study_metric, row.study_mean = found["metric"], found["mean"]
            row.study_ci95, row.study_n = found["ci95"], found["n"]
            interval = "" if found["ci95"] is None else f" ± {found['ci95']:.4f}"
            versus = ""
            if baseline is not None and name != "none":
                versus = f"; baseline (none) {baseline['mean']:.4f}"
            reasons.append(
                f"{STUDY}: {found['metric']} {found['mean']:.4f}{interval} (arm {found['arm']}, "
                f"n={found['n']}){versus}"
            )
        elif name not in advised and name not in preferred | avoided:
            row.basis = MEASURED if name in measured else "no evidence"
            reasons.append("no survey advice for this task and no study result")
        if name in measured:
            found = measured[name]
            row.params_added = int(found["params_added"])
            row.latency_fwd_ms = float(found["latency_fwd_ms"])
            row.latency_added_ms = float(found["latency_added_ms"])
            row.latency_added_pct = float(found.get("latency_fwd_added_pct") or 0.0)
            checks = []
            if budget_params is not None:
                checks.append(row.params_added <= budget_params)
            if budget_latency_ms is not None:
                checks.append(row.latency_added_ms <= budget_latency_ms)
            row.within_budget = all(checks) if checks else None
            reasons.append(
                f"{MEASURED}: +{row.params_added:,} params, forward {row.latency_fwd_ms:.2f} ms "
                f"({row.latency_added_ms:+.2f} ms, {row.latency_added_pct:+.1f}%)"
                + (
                    ""
                    if row.within_budget is None
                    else ("; within budget" if row.within_budget else "; OVER budget")
                )
            )
        elif measure:
            row.within_budget = (
                False if (budget_params is not None or budget_latency_ms is not None) else None
            )
            reasons.append(f"{MEASURED}: could not be built on {model} at {size}")
        row.reasons = reasons
        rows.append(row)

    def tier(row: Recommendation) -> tuple[int, float]:
        if row.study_mean is not None and row.module != "none":
            beats = baseline is None or row.study_mean > baseline["mean"]
            return (0, -row.study_mean) if beats else (2, -row.study_mean)
        if row.module in avoided:
            return (1, 2000.0 + (row.survey_rank or 100))
        if row.module in preferred:
            return (1, -1000.0 + (row.survey_rank or 100))
        if row.survey_rank is not None:
            return (1, float(row.survey_rank))
        return (3, 0.0)

    rows.sort(key=lambda r: (r.within_budget is False, *tier(r), r.params_added or 0))
    for rank, row in enumerate(rows, start=1):
        row.rank = rank
        if (
            row.study_mean is not None
            and baseline is not None
            and row.module != "none"
            and row.study_mean <= baseline["mean"]
        ):
            row.reasons.append(
                f"{STUDY}: not better than the baseline (none) in the study, ranked after the others"
            )
    return RecommendationTable(
        task=task,
        model=model,
        input_size=size if measure else None,
        budget_params=budget_params,
        budget_latency_ms=budget_latency_ms,
        rows=rows,
        sources=sources,
        notes=notes,
        tips=list(advice.get("tips", [])),
    )


__all__ = [
    "Recommendation",
    "RecommendationTable",
    "load_advice",
    "measure_modules",
    "read_study",
    "recommend",
]
