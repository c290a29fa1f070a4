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
    return claims


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
        baseline = _profile(results, task, "none")
        if not baseline or _total_flops(baseline) is None:
            continue
        for arm in entry.get("arms", {}):
            profile = _profile(results, task, arm)
            if arm == "none" or not profile or _total_flops(profile) is None:
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
                "over the baseline",
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
