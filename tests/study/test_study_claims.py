"""The claims section on constructed results: the verdict follows the numbers, not the survey."""

from __future__ import annotations

import pytest

from excite.study.claims import NOT_TESTED, evaluate_claims
from excite.study.config import Margins
from excite.study.stats import INCONCLUSIVE, NOT_SUPPORTED, SUPPORTED


def _arm(values, metric, params=None, flops=None, elementwise=0, fwd=None, fwdbwd=None):
    entry = {"runs": [{"seed": s, metric: v} for s, v in enumerate(values)]}
    if params is not None:
        entry["profile"] = {
            "params": params,
            "flops": flops,
            "elementwise_flops": elementwise,
            "latency_fwd_ms": fwd,
            "latency_fwdbwd_ms": fwdbwd,
        }
        if fwd is not None:
            # Five profiling rounds with a little round-to-round jitter.
            jitter = [1.0, 1.01, 0.99, 1.02, 0.98]
            entry["profile"]["latency_fwd_ms_rounds"] = [fwd * j for j in jitter]
            entry["profile"]["latency_fwdbwd_ms_rounds"] = [fwdbwd * j for j in jitter]
    return entry


def _results(cls: dict, seg: dict, analysis=None) -> dict:
    tasks = {}
    if cls:
        tasks["classification"] = {"arms": cls, "analysis": analysis or {}}
    if seg:
        tasks["segmentation"] = {"arms": seg}
    return {"tasks": tasks}


def _by_id(claims):
    return {c["id"]: c for c in claims}


def test_clear_numbers_give_supported():
    cls = {
        "none": _arm([0.850, 0.852, 0.849], "accuracy", 1000, 1e8, 0, 1.0, 3.0),
        "se": _arm([0.870, 0.873, 0.869], "accuracy", 1100, 1e8, 5e4, 1.2, 3.6),
        "eca": _arm([0.880, 0.882, 0.878], "accuracy", 1000 + 1, 1e8, 4e4, 1.05, 3.1),
        "fca": _arm([0.890, 0.893, 0.888], "accuracy", 1100, 1e8, 5e4, 1.3, 3.7),
        "simam": _arm([0.871, 0.872, 0.870], "accuracy", 1000, 1e8, 9e4, 1.1, 3.4),
    }
    seg = {
        "none": _arm([0.60, 0.61, 0.59], "mean_dice", 10000, 1e9, 0),
        "cse": _arm([0.62, 0.63, 0.61], "mean_dice", 10100, 1e9, 1e5),
        "sse": _arm([0.66, 0.67, 0.65], "mean_dice", 10020, 1e9, 2e5),
        "scse": _arm([0.70, 0.71, 0.69], "mean_dice", 10150, 1e9, 3e5),
    }
    analysis = {
        "se": {
            "per_seed": {
                "0": [0.01, 0.02, 0.2, 0.3],
                "1": [0.02, 0.01, 0.25, 0.35],
                "2": [0.0, 0.03, 0.3, 0.3],
            }
        }
    }
    claims = _by_id(evaluate_claims(_results(cls, seg, analysis), Margins()))
    for key in (
        "eca-se-baseline",
        "fca-se",
        "simam-se",
        "sse-cse",
        "scse-best",
        "eca-params",
        "simam-params",
        "flops-overhead",
        "scse-params",
        "eca-faster",
        "excitation-depth",
    ):
        assert claims[key]["verdict"] == SUPPORTED, (key, claims[key])
    assert "ECA − SE = +0.93 ± 0.14 pts (paired, 3 seeds)" in claims["eca-se-baseline"]["evidence"]
    assert claims["reduction-16"]["verdict"] == NOT_TESTED


def test_reversed_numbers_give_not_supported():
    cls = {
        "none": _arm([0.880, 0.882, 0.879], "accuracy", 1000, 1e8, 0, 1.0, 3.0),
        "se": _arm([0.860, 0.861, 0.858], "accuracy", 1100, 1e8, 5e6, 1.0, 3.0),
        "eca": _arm([0.840, 0.842, 0.839], "accuracy", 1200, 1e8, 0, 1.3, 3.9),
        "fca": _arm([0.850, 0.851, 0.849], "accuracy", 1100, 1e8, 0, 1.0, 3.0),
        "simam": _arm([0.800, 0.801, 0.799], "accuracy", 1001, 1e8, 0, 1.0, 3.0),
    }
    seg = {
        "none": _arm([0.70, 0.71, 0.69], "mean_dice", 10000, 1e9),
        "cse": _arm([0.66, 0.67, 0.65], "mean_dice", 10100, 1e9),
        "sse": _arm([0.60, 0.61, 0.59], "mean_dice", 10020, 1e9),
        "scse": _arm([0.62, 0.63, 0.61], "mean_dice", 12000, 1e9),
    }
    claims = _by_id(evaluate_claims(_results(cls, seg), Margins()))
    for key in (
        "eca-se-baseline",
        "fca-se",
        "simam-se",
        "sse-cse",
        "scse-best",
        "eca-params",
        "simam-params",
        "flops-overhead",
        "scse-params",
        "eca-faster",
    ):
        assert claims[key]["verdict"] == NOT_SUPPORTED, (key, claims[key])
    assert "classification/se +5.00%" in claims["flops-overhead"]["evidence"]


def test_noisy_numbers_are_inconclusive_and_missing_arms_not_tested():
    cls = {
        "none": _arm([0.85, 0.88, 0.82], "accuracy"),
        "se": _arm([0.87, 0.84, 0.86], "accuracy"),
        "fca": _arm([0.86, 0.89, 0.83], "accuracy"),
    }
    claims = _by_id(evaluate_claims(_results(cls, {}), Margins()))
    assert claims["fca-se"]["verdict"] == INCONCLUSIVE
    assert claims["eca-se-baseline"]["verdict"] == NOT_TESTED
    assert claims["sse-cse"]["verdict"] == NOT_TESTED
    assert claims["scse-best"]["verdict"] == NOT_TESTED


def test_one_claim_per_scse_aggregation_and_sweep():
    seg = {
        "none": _arm([0.60, 0.61, 0.59], "mean_dice"),
        "scse": _arm([0.70, 0.71, 0.69], "mean_dice"),
        "scse-add": _arm([0.55, 0.56, 0.54], "mean_dice"),
    }
    cls = {
        f"se-r{r}": _arm([0.80 + d, 0.81 + d, 0.79 + d], "accuracy")
        for r, d in ((2, 0.0), (4, 0.01), (8, 0.02), (16, 0.019), (32, 0.0))
    }
    claims = _by_id(evaluate_claims(_results(cls, seg), Margins()))
    assert claims["scse-best"]["verdict"] == SUPPORTED
    assert claims["scse-add-best"]["verdict"] == NOT_SUPPORTED
    assert "aggregation=add" in claims["scse-add-best"]["claim"]
    assert claims["reduction-16"]["verdict"] == SUPPORTED
    assert "r16 − r8" in claims["reduction-16"]["evidence"]


@pytest.mark.parametrize("late_gain,expected", [(0.3, SUPPORTED), (0.0, NOT_SUPPORTED)])
def test_excitation_depth_rule(late_gain, expected):
    per_seed = {
        str(s): [0.1 + 0.001 * s, 0.1, 0.1 + late_gain, 0.1 + late_gain + 0.002 * s] for s in range(3)
    }
    claims = _by_id(
        evaluate_claims(_results({"se": _arm([0.8], "accuracy")}, {}, {"se": {"per_seed": per_seed}}))
    )
    assert claims["excitation-depth"]["verdict"] == expected


def _graph_model(recall, ndcg):
    return {"runs": [{"seed": s, "recall@20": r, "ndcg@20": n} for s, (r, n) in enumerate(zip(recall, ndcg))]}


def _search_arm(values):
    return {"mean": sum(values) / len(values), "values": values, "seeds": list(range(len(values)))}


def test_extension_claims_follow_the_numbers():
    vit_se = _arm([0.760, 0.771, 0.752], "accuracy", 1148, 1.02e6, 0)
    vit_se_mlp = _arm([0.730, 0.741, 0.722], "accuracy", 1148, 1.0e6, 0)
    for entry in (vit_se, vit_se_mlp):
        entry["baseline"] = "vit"
    cls = {
        "none": _arm([0.850, 0.852, 0.849], "accuracy", 100000, 1e8, 0),
        "eca": _arm([0.855, 0.858, 0.853], "accuracy", 100028, 1e8, 0),
        "coord": _arm([0.852, 0.851, 0.850], "accuracy", 112672, 1e8, 0),
        "eca_coord": _arm([0.865, 0.869, 0.862], "accuracy", 100056, 1e8, 0),
        "vit": _arm([0.750, 0.760, 0.741], "accuracy", 1000, 1e6, 0),
        "vit_se": vit_se,
        "vit_se_mlp": vit_se_mlp,
    }
    results = _results(cls, {})
    results["tasks"]["segmentation3d"] = {
        "arms": {"none": _arm([0.50, 0.55, 0.45], "mean_dice"), "scse": _arm([0.60, 0.66, 0.54], "mean_dice")}
    }
    results["graphs"] = {
        "models": {
            "lightgcn": _graph_model([0.25, 0.26, 0.24], [0.22, 0.23, 0.21]),
            "simgcl": _graph_model([0.15, 0.16, 0.14], [0.10, 0.11, 0.09]),
            "weightedgcl": _graph_model([0.17, 0.181, 0.159], [0.12, 0.131, 0.109]),
        }
    }
    results["search"] = {
        "data": {
            "settings": {"budget_arm": "coord", "seg_budget_arm": "scse"},
            "attention": {
                "summary": {
                    "searched": _search_arm([0.851, 0.850, 0.852]),
                    "coord": _search_arm([0.850, 0.851, 0.850]),
                    "none": _search_arm([0.84, 0.84, 0.84]),
                }
            },
            "frequency": {
                "summary": {
                    "searched": _search_arm([0.80, 0.81, 0.79]),
                    "top16": _search_arm([0.85, 0.86, 0.84]),
                }
            },
        }
    }
    claims = _by_id(evaluate_claims(results, Margins()))
    # eca_coord − eca = +1.0 ± ~0.3 pts and − coord = +1.43 ± ~0.4 pts: both above 0.
    assert claims["hybrid-classification"]["verdict"] == SUPPORTED
    assert claims["hybrid-segmentation"]["verdict"] == NOT_TESTED
    assert claims["hybrid-params"]["verdict"] == SUPPORTED  # +56 < +12,672
    assert claims["vit-se"]["verdict"] == SUPPORTED  # +1.07 ± 0.2 pts
    assert claims["vit-se-mlp"]["verdict"] == NOT_SUPPORTED  # −1.93 pts, below +δ
    assert "after the MLP" in claims["vit-se-mlp"]["claim"]
    # FLOPs of the ViT arms are measured against the ViT: +2% over vit (against the ResNet it would be −99%).
    assert "classification/vit_se +2.00%" in claims["flops-overhead"]["evidence"]
    assert claims["flops-overhead"]["verdict"] == NOT_SUPPORTED
    assert claims["scse-3d"]["verdict"] == SUPPORTED  # +0.10 Dice on every seed
    assert claims["weightedgcl-simgcl"]["verdict"] == SUPPORTED  # +2.0 ± 0.1 pts Recall, NDCG alike
    assert claims["contrastive-lightgcn"]["verdict"] == NOT_SUPPORTED  # 10 points below LightGCN
    assert claims["search-attention"]["verdict"] == SUPPORTED  # +0.07 ± 0.3 pts: above −0.5
    assert claims["search-segmentation"]["verdict"] == NOT_TESTED
    assert claims["search-frequency"]["verdict"] == NOT_SUPPORTED  # 5 points worse on every seed


def test_extension_claims_not_tested_without_their_parts():
    claims = _by_id(evaluate_claims(_results({"none": _arm([0.8, 0.81], "accuracy")}, {}), Margins()))
    for key in ("hybrid-classification", "hybrid-params", "vit-se", "scse-3d", "weightedgcl-simgcl"):
        assert claims[key]["verdict"] == NOT_TESTED, key
    assert claims["search-frequency"]["verdict"] == NOT_TESTED
    assert "search-segmentation" not in claims  # only listed when the search section ran
