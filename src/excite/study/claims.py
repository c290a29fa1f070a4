"""The survey's claims, each evaluated from the measured numbers by a stated rule.

Claims (survey §2-8 and §12; peers.md §2J "does it even help?"):

1. ECA ≥ SE > baseline (classification accuracy).
2. FcaNet > SE (classification accuracy).
3. SimAM ≈ SE at 0 parameters (accuracy within the margin, and no parameter added).
4. sSE > cSE for segmentation (mean Dice).
5. scSE is the best for segmentation: scSE > every non-scSE arm (one claim per scSE aggregation run).
6. Overheads, on the study's networks (the survey's figures are for ResNet-50/ImageNet):
   ECA's parameters are negligible (≤ 0.1% of the network); SimAM adds 0 parameters; every variant adds
   < 1% FLOPs (convolution/matmul FLOPs plus the elementwise work the profiler counts separately); scSE
   adds ~1.5% parameters (within a factor 2: 0.75-3%); ECA is faster than SE (the per-round speed-up
   ``1 - latency_ECA / latency_SE`` of the profiler's round-robin rounds, by the A > B rule with the
   latency margin, for forward and for forward+backward).
7. SE excitations are class-agnostic early and class-specific late (mean η² of the second half of the
   layers > first half, paired over seeds; see :mod:`excite.analysis`).
8. r = 16 is a good accuracy/complexity trade-off (reduction sweep only): SE with r = 16 is not worse
   than the best ratio of the sweep (non-inferiority within the margin).

Claims on the survey's extensions (§7, §11), each only when its arms or section ran:

9. The ECA + Coordinate Attention hybrid beats both parents (``eca_coord`` > ``eca`` and > ``coord``, per
   task), and adds fewer parameters than CA (exact counts; the point of dropping CA's reduction).
10. SE helps a vision transformer: ViT + SE > ViT (accuracy), one claim per SE placement run.
11. scSE improves the 3-D U-Net (``segmentation3d``: scSE > none, mean Dice).
12. WeightedGCL > SimGCL, and graph contrastive learning (SimGCL, WeightedGCL) > LightGCN, on Recall@20
    and NDCG@20 (paired over training seeds; margin ``Margins.ranking``).
13. Searched per-layer attention is not worse than the uniform choice whose cost it was given, and searched
    FcaNet frequencies are not worse than the fixed ``top16`` table (A ≥ B on the search section's
    per-seed numbers).

Accuracy and Dice comparisons use the paired t-intervals and rules of :mod:`excite.study.stats`; the
parameter and FLOP counts are exact, so their rules are plain thresholds. A claim whose arms were not run
at this preset says so instead of a verdict.
"""

from __future__ import annotations

import math
from typing import Any

from . import stats
from .config import Margins

NOT_TESTED = "not tested"


def _runs(results: dict[str, Any], task: str, arm: str) -> list[dict] | None:
    arms = results.get("tasks", {}).get(task, {}).get("arms", {})
    if arm not in arms or not arms[arm]["runs"]:
        return None
    return arms[arm]["runs"]


def _profile(results: dict[str, Any], task: str, arm: str) -> dict | None:
    arms = results.get("tasks", {}).get(task, {}).get("arms", {})
    if arm not in arms:
        return None
    return arms[arm].get("profile")


def _diff(results: dict[str, Any], task: str, metric: str, a: str, b: str) -> stats.Interval | None:
    runs_a, runs_b = _runs(results, task, a), _runs(results, task, b)
    if runs_a is None or runs_b is None:
        return None
    return stats.paired_difference(stats.by_seed(runs_a, metric), stats.by_seed(runs_b, metric))


def _fmt_diff(diff: stats.Interval, a: str, b: str, scale: float, unit: str) -> str:
    if diff.n < 2:
        seeds = "1 paired seed" if diff.n == 1 else f"{diff.n} paired seeds"
        return f"{a} − {b} = {diff.mean * scale:+.2f}{unit} ({seeds}: no interval)"
    return (
        f"{a} − {b} = {diff.mean * scale:+.2f} ± {diff.half_width * scale:.2f}{unit} (paired, {diff.n} seeds)"
    )


def _claim(
    identifier: str, text: str, source: str, evidence: list[str], verdict: str, rule: str
) -> dict[str, Any]:
    return {
        "id": identifier,
        "claim": text,
        "source": source,
        "evidence": "; ".join(evidence),
        "verdict": verdict,
        "rule": rule,
    }


def _missing(identifier: str, text: str, source: str, arms: list[str]) -> dict[str, Any]:
    return _claim(
        identifier, text, source, [f"needs arm(s) {', '.join(arms)}, not run at this preset"], NOT_TESTED, ""
    )


def evaluate_claims(results: dict[str, Any], margins: Margins | None = None) -> list[dict[str, Any]]:
    """Every claim with its evidence and verdict, computed from ``results`` (the study's results.json)."""
    margins = margins or Margins()
    claims: list[dict[str, Any]] = []
    acc, dice = margins.accuracy, margins.dice
    acc_unit, dice_unit = " pts", " Dice"
    greater = (
        "A > B: supported if the 95% CI of A − B is above 0, not supported if below +δ, else inconclusive"
    )

    # 1. ECA ≥ SE > baseline.
    text = "ECA ≥ SE > baseline (classification accuracy)"
    eca_se = _diff(results, "classification", "accuracy", "eca", "se")
    se_none = _diff(results, "classification", "accuracy", "se", "none")
    if eca_se is None or se_none is None:
        claims.append(_missing("eca-se-baseline", text, "survey §2, §8, §12", ["none", "se", "eca"]))
    else:
        parts = [stats.verdict_not_worse(eca_se, acc), stats.verdict_greater(se_none, acc)]
        claims.append(
            _claim(
                "eca-se-baseline",
                text,
                "survey §2, §8, §12",
                [
                    _fmt_diff(eca_se, "ECA", "SE", 100, acc_unit) + f" → ECA ≥ SE {parts[0]}",
                    _fmt_diff(se_none, "SE", "none", 100, acc_unit) + f" → SE > none {parts[1]}",
                ],
                stats.combine(parts),
                f"A ≥ B: CI lower end > −δ; A > B: CI lower end > 0 (δ = {acc * 100:.1f} pts); "
                "both parts must hold",
            )
        )

    # 2. FcaNet > SE.
    text = "FcaNet > SE (classification accuracy)"
    fca_se = _diff(results, "classification", "accuracy", "fca", "se")
    if fca_se is None:
        claims.append(_missing("fca-se", text, "survey §3, §12", ["se", "fca"]))
    else:
        claims.append(
            _claim(
                "fca-se",
                text,
                "survey §3, §12",
                [_fmt_diff(fca_se, "FcaNet", "SE", 100, acc_unit)],
                stats.verdict_greater(fca_se, acc),
                greater + f" (δ = {acc * 100:.1f} pts)",
            )
        )

    # 3. SimAM ≈ SE at 0 parameters.
    text = "SimAM ≈ SE at 0 added parameters (classification accuracy)"
    simam_se = _diff(results, "classification", "accuracy", "simam", "se")
    if simam_se is None:
        claims.append(_missing("simam-se", text, "survey §5, §8", ["se", "simam"]))
    else:
        equivalent = stats.verdict_equivalent(simam_se, acc)
        evidence = [_fmt_diff(simam_se, "SimAM", "SE", 100, acc_unit) + f" → ≈ {equivalent}"]
        parts = [equivalent]
        simam_profile, none_profile = (
            _profile(results, "classification", "simam"),
            _profile(results, "classification", "none"),
        )
        if simam_profile and none_profile:
            added = simam_profile["params"] - none_profile["params"]
            parts.append(stats.SUPPORTED if added == 0 else stats.NOT_SUPPORTED)
            evidence.append(f"SimAM adds {added} parameters")
        claims.append(
            _claim(
                "simam-se",
                text,
                "survey §5, §8",
                evidence,
                stats.combine(parts),
                f"≈: the 95% CI of SimAM − SE inside ±δ (δ = {acc * 100:.1f} pts); 0 parameters: exact count",
            )
        )

    # 4. sSE > cSE.
    text = "sSE > cSE for segmentation (mean Dice)"
    sse_cse = _diff(results, "segmentation", "mean_dice", "sse", "cse")
    if sse_cse is None:
        claims.append(_missing("sse-cse", text, "survey §1, §8", ["cse", "sse"]))
    else:
        claims.append(
            _claim(
                "sse-cse",
                text,
                "survey §1, §8",
                [_fmt_diff(sse_cse, "sSE", "cSE", 1, dice_unit)],
                stats.verdict_greater(sse_cse, dice),
                greater + f" (δ = {dice} Dice)",
            )
        )

    # 5. scSE best, per aggregation.
    seg_arms = list(results.get("tasks", {}).get("segmentation", {}).get("arms", {}))
    scse_arms = [a for a in seg_arms if a.startswith("scse")]
    others = [a for a in seg_arms if not a.startswith("scse")]
    if not scse_arms or not others:
        claims.append(
            _missing(
                "scse-best",
                "scSE is the best for segmentation (mean Dice)",
                "survey §1, §8, §12",
                ["scse", "others"],
            )
        )
    for arm in scse_arms:
        aggregation = arm.split("-", 1)[1] if "-" in arm else "max"
        parts, evidence = [], []
        for other in others:
            diff = _diff(results, "segmentation", "mean_dice", arm, other)
            if diff is None:
                continue
            verdict = stats.verdict_greater(diff, dice)
            parts.append(verdict)
            evidence.append(_fmt_diff(diff, arm, other, 1, dice_unit) + f" → {verdict}")
        claims.append(
            _claim(
                f"{arm}-best",
                f"scSE (aggregation={aggregation}) is the best for segmentation (mean Dice)",
                "survey §1, §8, §12",
                evidence,
                stats.combine(parts),
                f"scSE > X for every non-scSE arm X, each by the A > B rule (δ = {dice} Dice)",
            )
        )

    claims.extend(_overhead_claims(results, margins))
    claims.extend(_excitation_claims(results, margins))
    claims.extend(_sweep_claims(results, margins))
    claims.extend(_hybrid_claims(results, margins))
    claims.extend(_transformer_claims(results, margins))
    claims.extend(_volume_claims(results, margins))
    claims.extend(_graph_claims(results, margins))
    claims.extend(_search_claims(results, margins))
    return claims


def _baseline_of(results: dict[str, Any], task: str, arm: str) -> str:
    """The arm ``arm`` is compared against: ``none`` unless the run recorded another (the ViT arms)."""
    return results.get("tasks", {}).get(task, {}).get("arms", {}).get(arm, {}).get("baseline") or "none"


def _added_fraction(results: dict[str, Any], task: str, arm: str, key: str) -> float | None:
    profile, baseline = _profile(results, task, arm), _profile(results, task, "none")
    if not profile or not baseline or profile.get(key) is None or not baseline.get(key):
        return None
    return profile[key] / baseline[key] - 1.0


def _total_flops(profile: dict) -> float | None:
    if profile.get("flops") is None:
        return None
    return float(profile["flops"]) + float(profile.get("elementwise_flops") or 0.0)


def _overhead_claims(results: dict[str, Any], margins: Margins) -> list[dict[str, Any]]:
    claims: list[dict[str, Any]] = []
    tasks = results.get("tasks", {})

    eca = _added_fraction(results, "classification", "eca", "params")
    if eca is None:
        claims.append(
            _missing(
                "eca-params", "ECA adds a negligible number of parameters", "survey §2, §8", ["none", "eca"]
            )
        )
    else:
        added = (
            _profile(results, "classification", "eca")["params"]
            - _profile(results, "classification", "none")["params"]
        )
        claims.append(
            _claim(
                "eca-params",
                "ECA adds a negligible number of parameters (80 on ResNet-50)",
                "survey §2, §8",
                [f"ECA adds {added} parameters = {eca * 100:.4f}% of the ResNet"],
                stats.SUPPORTED if eca <= 0.001 else stats.NOT_SUPPORTED,
                "negligible: ≤ 0.1% of the network's parameters",
            )
        )

    zero_parameter_arms = []
    for task in tasks:
        if _profile(results, task, "simam") and _profile(results, task, "none"):
            added = _profile(results, task, "simam")["params"] - _profile(results, task, "none")["params"]
            zero_parameter_arms.append((task, added))
    if not zero_parameter_arms:
        claims.append(_missing("simam-params", "SimAM adds 0 parameters", "survey §5, §8", ["none", "simam"]))
    else:
        claims.append(
            _claim(
                "simam-params",
                "SimAM adds 0 parameters",
                "survey §5, §8",
                [f"{task}: SimAM adds {added} parameters" for task, added in zero_parameter_arms],
                stats.SUPPORTED if all(a == 0 for _, a in zero_parameter_arms) else stats.NOT_SUPPORTED,
                "exact parameter count",
            )
        )

    evidence, over = [], []
    for task, entry in tasks.items():
        for arm in entry.get("arms", {}):
            base_name = _baseline_of(results, task, arm)
            baseline = _profile(results, task, base_name)
            profile = _profile(results, task, arm)
            if arm == base_name or not profile or _total_flops(profile) is None:
                continue
            if not baseline or not _total_flops(baseline):
                continue
            fraction = _total_flops(profile) / _total_flops(baseline) - 1.0
            evidence.append(f"{task}/{arm} {fraction * 100:+.2f}%")
            if fraction >= 0.01:
                over.append(arm)
    if not evidence:
        claims.append(
            _missing("flops-overhead", "Every variant adds < 1% FLOPs", "survey §8", ["none", "any"])
        )
    else:
        claims.append(
            _claim(
                "flops-overhead",
                "Every variant adds < 1% FLOPs",
                "survey §8",
                evidence,
                stats.NOT_SUPPORTED if over else stats.SUPPORTED,
                "FLOPs = matmul/conv FLOPs + elementwise FLOPs (profiler); every arm must add < 1% "
                "over its baseline (the network without attention: `none`, or `vit` for the ViT arms)",
            )
        )

    scse = _added_fraction(results, "segmentation", "scse", "params")
    if scse is None:
        claims.append(_missing("scse-params", "scSE adds ~1.5% parameters", "survey §1", ["none", "scse"]))
    else:
        claims.append(
            _claim(
                "scse-params",
                "scSE adds ~1.5% parameters",
                "survey §1",
                [f"scSE adds {scse * 100:.2f}% to the U-Net's parameters"],
                stats.SUPPORTED if 0.0075 <= scse <= 0.03 else stats.NOT_SUPPORTED,
                "~x: within a factor 2 of the stated figure (0.75% to 3%)",
            )
        )

    eca_profile, se_profile = (
        _profile(results, "classification", "eca"),
        _profile(results, "classification", "se"),
    )
    if (
        not eca_profile
        or not se_profile
        or not eca_profile.get("latency_fwdbwd_ms")
        or not se_profile.get("latency_fwdbwd_ms")
    ):
        claims.append(
            _missing("eca-faster", "ECA trains and infers faster than SE", "survey §2", ["se", "eca"])
        )
    else:
        parts, evidence = [], []
        for key, label in (("latency_fwd_ms", "forward"), ("latency_fwdbwd_ms", "forward+backward")):
            eca_rounds = eca_profile.get(f"{key}_rounds") or [eca_profile[key]]
            se_rounds = se_profile.get(f"{key}_rounds") or [se_profile[key]]
            # Speed-up 1 - ECA/SE per round (the arms of one round are measured back to back).
            speedup = stats.mean_ci([1 - e / s for e, s in zip(eca_rounds, se_rounds)])
            verdict = stats.verdict_greater(speedup, margins.latency)
            parts.append(verdict)
            evidence.append(
                f"{label}: ECA/SE = {1 - speedup.mean:.3f} "
                f"({eca_profile[key]:.2f} vs {se_profile[key]:.2f} ms; "
                f"speed-up {speedup.format(100, 1)}% over {speedup.n} rounds) → {verdict}"
            )
        claims.append(
            _claim(
                "eca-faster",
                "ECA trains and infers faster than SE",
                "survey §2",
                evidence,
                stats.combine(parts),
                "speed-up 1 − ECA/SE per profiling round (arms measured back to back, round-robin), by the "
                f"A > B rule on its t-interval over rounds (δ = {margins.latency * 100:.0f}%)",
            )
        )
    return claims


def _excitation_claims(results: dict[str, Any], margins: Margins) -> list[dict[str, Any]]:
    text = "SE excitations are class-agnostic in early layers and class-specific in later ones"
    analysis = results.get("tasks", {}).get("classification", {}).get("analysis", {})
    se = analysis.get("se")
    if not se or not se.get("per_seed"):
        return [_missing("excitation-depth", text, "survey §8 (SE paper §6.4)", ["se"])]
    early, late, rhos = {}, {}, []
    for seed, scores in se["per_seed"].items():
        half = len(scores) // 2
        early[int(seed)] = sum(scores[:half]) / half
        late[int(seed)] = sum(scores[half:]) / (len(scores) - half)
        rhos.append(stats.spearman(list(range(len(scores))), scores))
    diff = stats.paired_difference(late, early)
    mean_rho = sum(r for r in rhos if math.isfinite(r)) / max(1, sum(1 for r in rhos if math.isfinite(r)))
    evidence = [
        f"mean η² first half {sum(early.values()) / len(early):.3f}, second half "
        f"{sum(late.values()) / len(late):.3f}",
        _fmt_diff(diff, "late", "early", 1, " η²"),
        f"Spearman ρ(depth, η²) averaged over seeds = {mean_rho:.2f}",
    ]
    return [
        _claim(
            "excitation-depth",
            text,
            "survey §8 (SE paper §6.4)",
            evidence,
            stats.verdict_greater(diff, margins.specificity),
            f"late > early by the A > B rule on the mean class-specificity η² of the second vs first half of "
            f"the SE layers (δ = {margins.specificity})",
        )
    ]


def _sweep_claims(results: dict[str, Any], margins: Margins) -> list[dict[str, Any]]:
    text = "r = 16 gives a good accuracy/complexity trade-off (SE reduction ratio)"
    arms = results.get("tasks", {}).get("classification", {}).get("arms", {})
    sweep = {name: entry for name, entry in arms.items() if name.startswith("se-r")}
    if "se-r16" not in sweep:
        return [_missing("reduction-16", text, "survey §8", ["--sweep-reduction"])]
    means = {
        name: stats.mean_ci(stats.by_seed(e["runs"], "accuracy").values()).mean for name, e in sweep.items()
    }
    best = max(means, key=lambda name: means[name])
    evidence = [
        ", ".join(f"{name[3:]}: {means[name] * 100:.2f}%" for name in sorted(sweep, key=lambda n: int(n[4:])))
    ]
    if best == "se-r16":
        verdict = stats.SUPPORTED if sum(1 for _ in sweep["se-r16"]["runs"]) >= 2 else stats.INCONCLUSIVE
        evidence.append("r = 16 has the best mean accuracy")
    else:
        diff = _diff(results, "classification", "accuracy", "se-r16", best)
        verdict = stats.verdict_not_worse(diff, margins.accuracy)
        evidence.append(_fmt_diff(diff, "r16", best[3:], 100, " pts"))
    return [
        _claim(
            "reduction-16",
            text,
            "survey §8",
            evidence,
            verdict,
            f"r = 16 not worse than the best ratio by the A ≥ B rule (δ = {margins.accuracy * 100:.1f} pts)",
        )
    ]


def _pairs_evidence(
    results: dict[str, Any],
    task: str,
    metric: str,
    a: str,
    others: list[str],
    margin: float,
    scale: float,
    unit: str,
) -> tuple[list[str], list[str]]:
    parts, evidence = [], []
    for other in others:
        diff = _diff(results, task, metric, a, other)
        if diff is None:
            continue
        verdict = stats.verdict_greater(diff, margin)
        parts.append(verdict)
        evidence.append(_fmt_diff(diff, a, other, scale, unit) + f" → {verdict}")
    return parts, evidence


def _hybrid_claims(results: dict[str, Any], margins: Margins) -> list[dict[str, Any]]:
    source = "survey §11 (hybrids); closest published design: ELA 2024"
    tasks = results.get("tasks", {})
    claims: list[dict[str, Any]] = []
    specs = (
        (
            "classification",
            "accuracy",
            margins.accuracy,
            100,
            " pts",
            f"δ = {margins.accuracy * 100:.1f} pts",
        ),
        ("segmentation", "mean_dice", margins.dice, 1, " Dice", f"δ = {margins.dice} Dice"),
    )
    for task, metric, margin, scale, unit, delta in specs:
        text = f"The ECA + CA hybrid beats both parents ({task}, {metric.replace('_', ' ')})"
        identifier = f"hybrid-{task}"
        arms = tasks.get(task, {}).get("arms", {})
        parents = [p for p in ("eca", "coord") if p in arms]
        if "eca_coord" not in arms or not parents:
            claims.append(_missing(identifier, text, source, ["eca_coord", "eca and/or coord"]))
            continue
        parts, evidence = _pairs_evidence(results, task, metric, "eca_coord", parents, margin, scale, unit)
        missing = [p for p in ("eca", "coord") if p not in arms]
        if missing:
            evidence.append(f"parent {', '.join(missing)} not run in this task: claim only partly tested")
            parts.append(stats.INCONCLUSIVE)
        claims.append(
            _claim(
                identifier,
                text,
                source,
                evidence,
                stats.combine(parts),
                f"eca_coord > each parent by the A > B rule ({delta}); both parts must hold",
            )
        )
    counts = []
    for task in tasks:
        hybrid, coord = _profile(results, task, "eca_coord"), _profile(results, task, "coord")
        base = _profile(results, task, "none")
        if hybrid and coord and base:
            counts.append((task, hybrid["params"] - base["params"], coord["params"] - base["params"]))
    text = "The ECA + CA hybrid adds fewer parameters than Coordinate Attention"
    if not counts:
        claims.append(_missing("hybrid-params", text, source, ["none", "coord", "eca_coord"]))
    else:
        claims.append(
            _claim(
                "hybrid-params",
                text,
                source,
                [f"{task}: eca_coord adds {h:,}, coord adds {c:,} parameters" for task, h, c in counts],
                stats.SUPPORTED if all(h < c for _, h, c in counts) else stats.NOT_SUPPORTED,
                "exact parameter counts, in every task that ran both",
            )
        )
    return claims


def _transformer_claims(results: dict[str, Any], margins: Margins) -> list[dict[str, Any]]:
    source = "survey §7 (SQET), §11"
    arms = results.get("tasks", {}).get("classification", {}).get("arms", {})
    placements = [a for a in arms if a.startswith("vit_se")]
    if "vit" not in arms or not placements:
        return [
            _missing("vit-se", "SE helps a vision transformer (ViT + SE > ViT)", source, ["vit", "vit_se"])
        ]
    claims = []
    for arm in placements:
        where = {"vit_se": "attention", "vit_se_mlp": "MLP", "vit_se_both": "attention and MLP"}.get(arm, arm)
        diff = _diff(results, "classification", "accuracy", arm, "vit")
        verdict = stats.verdict_greater(diff, margins.accuracy)
        evidence = [_fmt_diff(diff, arm, "vit", 100, " pts")]
        profile, base = _profile(results, "classification", arm), _profile(results, "classification", "vit")
        if profile and base:
            evidence.append(
                f"SE adds {profile['params'] - base['params']:,} parameters to {base['params']:,}"
            )
        claims.append(
            _claim(
                arm.replace("_", "-"),
                f"SE helps a vision transformer (ViT + SE after the {where} > ViT, accuracy)",
                source,
                evidence,
                verdict,
                f"A > B on test accuracy, paired by seed (δ = {margins.accuracy * 100:.1f} pts)",
            )
        )
    return claims


def _volume_claims(results: dict[str, Any], margins: Margins) -> list[dict[str, Any]]:
    text = "scSE improves a 3-D U-Net (scSE > none, mean Dice)"
    source = "survey §1, §11 (3-D extensions)"
    diff = _diff(results, "segmentation3d", "mean_dice", "scse", "none")
    if diff is None:
        return [_missing("scse-3d", text, source, ["segmentation3d: none, scse (--with-3d)"])]
    return [
        _claim(
            "scse-3d",
            text,
            source,
            [_fmt_diff(diff, "scSE", "none", 1, " Dice")],
            stats.verdict_greater(diff, margins.dice),
            f"A > B on the 3-D task's mean Dice, paired by seed (δ = {margins.dice} Dice)",
        )
    ]


def _graph_runs(results: dict[str, Any], model: str) -> list[dict] | None:
    entry = (results.get("graphs") or {}).get("models", {}).get(model)
    return entry["runs"] if entry and entry.get("runs") else None


def _graph_claims(results: dict[str, Any], margins: Margins) -> list[dict[str, Any]]:
    source = "survey §7 (WeightedGCL, SIGIR 2025)"
    delta = margins.ranking
    metrics = ("recall@20", "ndcg@20")
    specs = (
        ("weightedgcl-simgcl", "WeightedGCL > SimGCL (Recall@20 and NDCG@20)", "weightedgcl", ["simgcl"]),
        (
            "contrastive-lightgcn",
            "Graph contrastive learning beats LightGCN (SimGCL and WeightedGCL > LightGCN, Recall@20 and "
            "NDCG@20)",
            None,
            ["lightgcn"],
        ),
    )
    claims = []
    for identifier, text, model, others in specs:
        challengers = [model] if model else ["simgcl", "weightedgcl"]
        if any(_graph_runs(results, m) is None for m in challengers + others):
            claims.append(_missing(identifier, text, source, challengers + others + ["(--graphs)"]))
            continue
        parts, evidence = [], []
        for a in challengers:
            for b in others:
                for metric in metrics:
                    runs_a, runs_b = _graph_runs(results, a), _graph_runs(results, b)
                    diff = stats.paired_difference(
                        stats.by_seed(runs_a, metric), stats.by_seed(runs_b, metric)
                    )
                    verdict = stats.verdict_greater(diff, delta)
                    parts.append(verdict)
                    base = stats.mean_ci(stats.by_seed(runs_b, metric).values()).mean
                    relative = f", {diff.mean / base * 100:+.1f}%" if base else ""
                    evidence.append(
                        _fmt_diff(diff, f"{a} {metric}", b, 100, " pts").replace(")", f"{relative})", 1)
                        + f" → {verdict}"
                    )
        claims.append(
            _claim(
                identifier,
                text,
                source,
                evidence,
                stats.combine(parts),
                f"A > B on each metric, paired by training seed (δ = {delta * 100:.1f} pts); every part must "
                "hold",
            )
        )
    return claims


def _search_pairs(summary: dict[str, Any], a: str, b: str) -> stats.Interval | None:
    if a not in summary or b not in summary:
        return None
    values = {name: dict(zip(summary[name]["seeds"], summary[name]["values"])) for name in (a, b)}
    return stats.paired_difference(values[a], values[b])


def _search_claims(results: dict[str, Any], margins: Margins) -> list[dict[str, Any]]:
    source_nas = "survey §11 (adaptive selection, NAS)"
    source_fca = "survey §3 (FcaNet-NAS, never released)"
    search = (results.get("search") or {}).get("data") or {}
    settings = search.get("settings", {})
    claims = []
    specs = (
        (
            "search-attention",
            "attention",
            "budget_arm",
            margins.accuracy,
            100,
            " pts",
            "Fashion-MNIST accuracy",
        ),
        (
            "search-segmentation",
            "segmentation",
            "seg_budget_arm",
            margins.dice,
            1,
            " Dice",
            "brain MRI mean Dice",
        ),
    )
    for identifier, part, budget_key, margin, scale, unit, what in specs:
        text = f"A per-layer attention search is not worse than the uniform choice of equal cost ({what})"
        summary = (search.get(part) or {}).get("summary")
        budget_arm = settings.get(budget_key)
        diff = _search_pairs(summary, "searched", budget_arm) if summary and budget_arm else None
        if diff is None:
            if part == "attention" or search:
                claims.append(_missing(identifier, text, source_nas, [f"search part {part!r} (--search)"]))
            continue
        verdict = stats.verdict_not_worse(diff, margin)
        evidence = [_fmt_diff(diff, "searched", f"uniform {budget_arm}", scale, unit)]
        uniform = {a: v["mean"] for a, v in summary.items() if a != "searched"}
        best = max(uniform, key=lambda a: uniform[a])
        evidence.append(f"best uniform arm: {best} ({uniform[best] * scale:.2f}{unit})")
        claims.append(
            _claim(
                identifier,
                text,
                source_nas,
                evidence,
                verdict,
                f"searched ≥ the uniform arm whose cost was the search's budget, by the A ≥ B rule (δ = "
                f"{margin * scale:g}{unit})",
            )
        )
    text = "Searched FcaNet frequencies are not worse than FcaNet's top16 table (Fashion-MNIST accuracy)"
    summary = (search.get("frequency") or {}).get("summary")
    diff = _search_pairs(summary, "searched", "top16") if summary else None
    if diff is None:
        claims.append(_missing("search-frequency", text, source_fca, ["search part 'frequency' (--search)"]))
    else:
        evidence = [_fmt_diff(diff, "searched", "top16", 100, " pts")]
        for table in ("low16", "bot16"):
            other = _search_pairs(summary, "searched", table)
            if other is not None:
                evidence.append(_fmt_diff(other, "searched", table, 100, " pts"))
        claims.append(
            _claim(
                "search-frequency",
                text,
                source_fca,
                evidence,
                stats.verdict_not_worse(diff, margins.accuracy),
                f"searched ≥ top16 by the A ≥ B rule (δ = {margins.accuracy * 100:.1f} pts)",
            )
        )
    return claims
