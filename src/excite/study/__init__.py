"""``excite study``: train and compare the SE-family modules on real data, and judge the survey's claims.

    >>> from excite.study import preset, run_study
    >>> results = run_study(preset("quick"), "excite-study")   # doctest: +SKIP

What it does, for each task (Fashion-MNIST classification, brain-MRI segmentation in 2-D and 3-D):

1. loads the real data (:mod:`excite.datasets`; missing data raises FileNotFoundError with instructions);
2. trains every arm with every seed under the same budget (:mod:`excite.study.engine`: deterministic
   order, checkpoints, resume, DistributedDataParallel under torchrun), skipping finished runs;
3. profiles every arm once with :func:`excite.profiling.measure` (params, FLOPs, latency, memory), the
   arms measured round-robin so that machine load drifts affect all of them alike;
4. for classification, records the excitations of every channel-gate arm (:mod:`excite.analysis`);
5. runs the sections outside the engine when the configuration lists them (:mod:`excite.study.sections`):
   the graph-recommender table (LightGCN / SimGCL / WeightedGCL) and the attention / frequency search;
6. aggregates (mean ± 95% t-interval over seeds), evaluates the claims (:mod:`excite.study.claims`) and
   writes ``report.md``, the plots and ``results.json`` (:mod:`excite.study.report`). Parts a preset
   leaves out are named in the report with the option that runs them.

Output folder layout: ``report.md``, ``results.json``, ``*.png``, and ``runs/<task>/<arm>/seed<k>/``
holding each run's ``result.json``, ``model.pt``, ``checkpoint.pt`` while it runs, and per arm
``profile.json``; ``runs/graphs/<model>/seed<k>/result.json`` for the graph table and ``search/`` for
the search section.
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from . import stats
from .claims import evaluate_claims
from .config import ARMS, SWEEP_RATIOS, Margins, StudyConfig, customise, preset, sweep_arm
from .engine import (
    Arm,
    Interrupted,
    RunResult,
    TrainSettings,
    barrier,
    distributed,
    init_distributed,
    resolve_device,
    train_run,
)
from .tasks import ClassificationSetup, ClassificationTask, SegmentationSetup, SegmentationTask


def build_task(
    name: str, config: StudyConfig, data: Sequence[os.PathLike] = (), log: Callable[[str], None] = print
):
    """Load the data of task ``name`` and wrap it in its task object.

    ``data`` lists folders to try (``--data``); each data set takes the first that holds its files.

    Raises:
        FileNotFoundError: the data is missing (the message says how to get it).
    """
    from ..datasets import BRAIN_MRI, FASHION_MNIST, load_brain_mri, load_fashion_mnist

    if name == "classification":
        path = next((p for p in data if FASHION_MNIST.find(p) is not None), None)
        return ClassificationTask(load_fashion_mnist(path), config.classification)
    if name in ("segmentation", "segmentation3d"):
        setup = config.segmentation if name == "segmentation" else config.segmentation3d
        path = next((p for p in data if BRAIN_MRI.find(p) is not None), None)
        levels = len(setup.features) - 1
        volume = load_brain_mri(
            path,
            image=setup.image,
            labels=setup.labels,
            downsample=setup.downsample,
            pad_multiple=2**levels,
            log=log,
        )
        return SegmentationTask(volume, setup, name=name)
    raise ValueError(f"study: unknown task {name!r}")


def run_dir_for(out: Path, task: str, arm: Arm, seed: int) -> Path:
    return out / "runs" / task / arm.name / f"seed{seed}"


def profile_arms(
    task, arms: list[Arm], config: StudyConfig, out: Path, device: torch.device, log: Callable[[str], None]
) -> dict[str, dict]:
    """Cost numbers per arm from :func:`excite.profiling.measure`, cached in ``profile.json`` per arm.

    Each arm is measured in ``profile_rounds`` round-robin passes over all arms; the latencies of every
    round are kept (``latency_*_rounds``) and their median reported, so a change of machine load during
    profiling hits every arm alike and the claims can pair the arms round by round. The input is one
    training batch (``profile_batch`` examples); FLOPs and parameters do not depend on the round.
    """
    from ..profiling import measure

    batch = config.profile_batch[task.name]
    input_size = (batch, *task.input_size[1:])
    cached: dict[str, dict] = {}
    todo = []
    for arm in arms:
        path = out / "runs" / task.name / arm.name / "profile.json"
        key = {
            "input_size": list(input_size),
            "task": task.config(),
            "arm": arm.to_dict(),
            "device": str(device),
        }
        if path.exists():
            stored = json.loads(path.read_text())
            if stored.get("key") == json.loads(json.dumps(key, default=str)):
                cached[arm.name] = stored["profile"]
                continue
        todo.append((arm, path, key))
    if todo:
        log(f"profiling {len(todo)} {task.name} arm(s) at input {list(input_size)} on {device}")
        models = {arm.name: task.build_model(arm) for arm, _, _ in todo}
        samples: dict[str, list[dict]] = {arm.name: [] for arm, _, _ in todo}
        for _ in range(config.profile_rounds):
            for arm, _, _ in todo:
                samples[arm.name].append(
                    measure(
                        models[arm.name],
                        input_size,
                        device=str(device),
                        warmup=1,
                        repeats=config.profile_repeats,
                    )
                )
        for arm, path, key in todo:
            merged = dict(samples[arm.name][0])
            for field in ("latency_fwd_ms", "latency_fwdbwd_ms"):
                values = [s[field] for s in samples[arm.name]]
                merged[f"{field}_rounds"] = values
                merged[field] = sorted(values)[len(values) // 2]
            merged["input_size"] = list(input_size)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"key": key, "profile": merged}, indent=1, default=str))
            cached[arm.name] = merged
    return cached


def excitation_analysis(
    task, arms: list[Arm], config: StudyConfig, out: Path, device: torch.device, log: Callable[[str], None]
) -> dict[str, Any]:
    """η² per layer and seed for every channel-gate arm; the SE paper's figure for each arm's first seed."""
    from ..analysis import excitations, gate_taps
    from .engine import load_model

    limit = config.analysis_examples
    images, labels = task.splits["test"]
    images, labels = images[:limit], labels[:limit]
    analysis: dict[str, Any] = {}
    for arm in arms:
        seeds = [
            s
            for s in config.seeds_for(task.name, arm)
            if (run_dir_for(out, task.name, arm, s) / "model.pt").exists()
        ]
        if not seeds or arm.attention is None:
            continue
        probe = task.build_model(arm)
        if not gate_taps(probe):
            continue
        per_seed: dict[str, list[float]] = {}
        spread: dict[str, list[float]] = {}
        layers: list[str] = []
        for seed in seeds:
            model = load_model(task, arm, run_dir_for(out, task.name, arm, seed), device)
            loader = ((images[i : i + 500], labels[i : i + 500]) for i in range(0, images.shape[0], 500))
            report = excitations(model, loader, classes=task.classes, device=device)
            per_seed[str(seed)] = [layer.specificity for layer in report.layers]
            spread[str(seed)] = [layer.spread for layer in report.layers]
            layers = [layer.name for layer in report.layers]
            if seed == seeds[0]:
                network = "ViT" if arm.network == "vit" else "ResNet"
                figure = out / f"excitations_{arm.name}.png"
                report.plot(
                    figure,
                    title=f"Mean excitation per class, {arm.name} {network}, seed {seed} (Fashion-MNIST)",
                )
                analysis.setdefault("figures", {})[arm.name] = figure.name
        summary = [
            stats.mean_ci([scores[i] for scores in per_seed.values()]).to_dict() for i in range(len(layers))
        ]
        spread_summary = [
            stats.mean_ci([v[i] for v in spread.values()]).to_dict() for i in range(len(layers))
        ]
        analysis[arm.name] = {
            "layers": layers,
            "per_seed": per_seed,
            "summary": summary,
            "spread_per_seed": spread,
            "spread_summary": spread_summary,
            "examples": int(labels.numel()),
        }
        log(f"excitations of {arm.name}: η² per layer " + ", ".join(f"{s['mean']:.3f}" for s in summary))
    return analysis


def _summarise(runs: list[dict], keys: Sequence[str]) -> dict[str, dict]:
    return {key: stats.mean_ci(stats.by_seed(runs, key).values()).to_dict() for key in keys}


def loss_curve(step_losses: Sequence[float], points: int = 100) -> list[list[float]]:
    """The per-step training loss in at most ``points`` bins: ``[[mean step, mean loss], ...]``."""
    if not step_losses:
        return []
    width = max(1, -(-len(step_losses) // points))
    curve = []
    for start in range(0, len(step_losses), width):
        chunk = step_losses[start : start + width]
        curve.append([start + (len(chunk) + 1) / 2, sum(chunk) / len(chunk)])
    return curve


def _run_record(result: RunResult, task_name: str) -> dict[str, Any]:
    record: dict[str, Any] = {
        "seed": result.seed,
        "train_seconds": result.train_seconds,
        "steps": result.steps,
    }
    record.update({k: v for k, v in result.test.items() if not isinstance(v, (dict, list))})
    for k in ("dice", "hd95_per_region_mm", "per_class_accuracy"):
        if k in result.test:
            record[k] = result.test[k]
    record["history"] = result.history
    record["loss_curve"] = loss_curve(result.step_losses)
    return record


def run_study(
    config: StudyConfig,
    out: os.PathLike = "excite-study",
    *,
    data: Sequence[os.PathLike] = (),
    resume: bool = True,
    device: str | None = "auto",
    amp: bool = True,
    progress: bool = True,
    interactions: os.PathLike | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the whole study and write its report. Returns the results (also in ``results.json``).

    Under torchrun every process trains its share of each step; rank 0 alone profiles, analyses, runs
    the graph and search sections and writes the report. See the module docstring for the steps and the
    output layout. ``interactions`` is the graph section's data (a RecBole ``.inter`` file or a
    LightGCN-style folder; default ``$EXCITE_INTERACTIONS``, then the MovieLens-100K copy in the RecBole
    wheel). When the graph section is on but no interaction data is found, the section is skipped with
    a warning and the report says why (the other parts need minutes to hours; a missing optional data
    set should not stop them).

    Raises:
        FileNotFoundError: a data set is missing (the message says how to get it).
        ValueError: an inconsistent configuration, or an output folder holding runs of another
            configuration while ``resume`` is on.
    """
    out = Path(out)
    started = time.perf_counter()
    device_ = resolve_device(device)
    init_distributed(device_)
    rank, world_size = distributed()
    say = log if rank == 0 else (lambda message: None)
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "preset": config.preset,
        "config": config.to_dict(),
        "environment": {
            "torch": torch.__version__,
            "python": platform.python_version(),
            "device": str(device_),
            "device_name": torch.cuda.get_device_name(device_)
            if device_.type == "cuda"
            else platform.processor() or platform.machine(),
            "cpu_threads": torch.get_num_threads(),
            "world_size": world_size,
            "amp": bool(amp and device_.type == "cuda"),
        },
        "tasks": {},
        "not_run": [list(pair) for pair in config.not_run()],
        "skipped": {},
    }
    if "graphs" in config.tasks and rank == 0:
        from .sections import locate_graph_data

        if locate_graph_data(interactions) is None:
            from ..graphs.data import HOW_TO_GET

            results["skipped"]["graphs"] = f"no user-item interaction data found. {HOW_TO_GET}"
            say(f"WARNING: the graph section will be skipped: {results['skipped']['graphs']}")
    for task_name in config.engine_tasks():
        say(f"== {task_name}: loading data")
        task_started = time.perf_counter()
        task = build_task(task_name, config, data, log=say)
        arms = config.arm_list(task_name)
        settings = config.training[task_name]
        entry: dict[str, Any] = {
            "metric": task.metric,
            "setup": task.config(),
            "training": settings.to_dict(),
            "training_by_network": {
                network: config.settings_for(task_name, Arm("", None, network=network)).to_dict()
                for network in sorted({a.network for a in arms if a.network is not None})
            },
            "notes": list(getattr(getattr(task, "volume", None), "notes", [])),
            "arms": {},
        }
        if task_name == "classification":
            entry["classes"] = task.classes
        else:
            entry["label_names"] = task.label_names
            entry["spacing_mm"] = list(task.volume.spacing_mm)
        total = sum(len(config.seeds_for(task_name, arm)) for arm in arms)
        say(
            f"== {task_name}: {len(arms)} arms, {total} runs, {settings.epochs} epochs of "
            f"{task.num_train()} examples each"
        )
        for arm in arms:
            runs = []
            for seed in config.seeds_for(task_name, arm):
                result = train_run(
                    task,
                    arm,
                    seed,
                    config.settings_for(task_name, arm),
                    run_dir_for(out, task_name, arm, seed),
                    device=device_,
                    amp=amp,
                    resume=resume,
                    progress=progress,
                    log=say,
                )
                runs.append(_run_record(result, task_name))
                value = result.test.get(task.metric)
                say(
                    f"  {task_name}/{arm.name}/seed {seed}: {task.metric} {value:.4f} "
                    f"({result.train_seconds:.0f} s)"
                )
            keys = [task.metric, "train_seconds"] + (["hd95_mm"] if task_name != "classification" else [])
            entry["arms"][arm.name] = {
                "arm": arm.to_dict(),
                "baseline": arm.baseline,
                "runs": runs,
                "summary": _summarise(runs, keys),
            }
        if rank == 0:
            for arm_name, profile in profile_arms(task, arms, config, out, device_, say).items():
                entry["arms"][arm_name]["profile"] = profile
            if task_name == "classification":
                entry["analysis"] = excitation_analysis(task, arms, config, out, device_, say)
            if task_name != "classification":
                entry["examples"] = _example_paths(out, task_name, arms, config)
        entry["seconds"] = time.perf_counter() - task_started
        results["tasks"][task_name] = entry
        barrier()
    if rank == 0 and "graphs" in config.tasks and "graphs" not in results["skipped"]:
        from .sections import run_graphs

        results["graphs"] = run_graphs(config.graphs, out, path=interactions, progress=progress, log=say)
    if rank == 0 and "search" in config.tasks:
        from .sections import run_search

        results["search"] = run_search(config, out, data=data, progress=progress, log=say)
    results["wall_seconds"] = time.perf_counter() - started
    if rank == 0:
        from .report import write_report

        results["claims"] = evaluate_claims(results, config.margins)
        write_report(results, out)
        say(f"report: {out / 'report.md'}  ({results['wall_seconds'] / 60:.1f} min)")
    if not set(config.tasks) & {"graphs", "search"}:
        # The other ranks do not wait for rank 0's sections: those can outlast the process group's
        # timeout (30 min for gloo), and nothing remains to be shared.
        barrier()
    return results


def _example_paths(out: Path, task_name: str, arms: list[Arm], config: StudyConfig) -> dict[str, str]:
    paths = {}
    for arm in arms:
        seed = config.seeds_for(task_name, arm)[0]
        artifacts = run_dir_for(out, task_name, arm, seed) / "artifacts.pt"
        if artifacts.exists():
            paths[arm.name] = str(artifacts.relative_to(out))
    return paths


__all__ = [
    "ARMS",
    "SWEEP_RATIOS",
    "Arm",
    "ClassificationSetup",
    "ClassificationTask",
    "Interrupted",
    "Margins",
    "SegmentationSetup",
    "SegmentationTask",
    "StudyConfig",
    "TrainSettings",
    "customise",
    "evaluate_claims",
    "loss_curve",
    "preset",
    "run_study",
    "sweep_arm",
    "train_run",
]
