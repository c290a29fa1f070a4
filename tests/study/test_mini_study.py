"""A miniature study end to end on tiny subsets of the real data (both tasks), with an interruption."""

from __future__ import annotations

import argparse
import dataclasses
import json

import pytest

import excite.study as study_module
from excite.study import Interrupted, TrainSettings, preset, run_study
from excite.study.tasks import ClassificationSetup, SegmentationSetup

pytest.importorskip("matplotlib")
pytest.importorskip("torchmetrics")


def _tiny_config():
    config = preset("quick")
    config.seeds = (0, 1)
    config.arms = {"classification": ("none", "se", "simam"), "segmentation": ("none", "sse", "scse")}
    config.classification = ClassificationSetup(width=16, train_per_class=3, val_per_class=2, test_limit=40)
    config.segmentation = SegmentationSetup(dim=2, downsample=2, features=(4, 8), slab_train=12, examples=2)
    config.training = {
        "classification": TrainSettings(epochs=1, batch_size=10, checkpoint_every=1),
        "segmentation": TrainSettings(epochs=1, batch_size=12, checkpoint_every=1),
    }
    config.analysis_examples = 40
    config.profile_batch = {"classification": 2, "segmentation": 1}
    config.profile_repeats = 1
    config.profile_rounds = 2
    return config


def test_miniature_study_with_interruption_and_resume(fashion, brain, tmp_path, monkeypatch):
    config = _tiny_config()
    out = tmp_path / "study"
    original = study_module.train_run

    def interrupt_scse(task, arm, seed, *args, **kwargs):
        if task.name == "segmentation" and arm.name == "scse" and seed == 1:
            kwargs["stop_after"] = 1
        return original(task, arm, seed, *args, **kwargs)

    monkeypatch.setattr(study_module, "train_run", interrupt_scse)
    with pytest.raises(Interrupted):
        run_study(config, out, progress=False, log=lambda m: None)
    checkpoint = out / "runs" / "segmentation" / "scse" / "seed1" / "checkpoint.pt"
    assert checkpoint.exists()
    finished = out / "runs" / "classification" / "se" / "seed0" / "result.json"
    stamp = finished.stat().st_mtime_ns

    monkeypatch.setattr(study_module, "train_run", original)
    messages = []
    results = run_study(config, out, progress=False, log=messages.append)
    assert any("resuming segmentation/scse/seed 1 at step 1/" in m for m in messages)
    assert finished.stat().st_mtime_ns == stamp, "finished runs are skipped on a rerun"
    assert not checkpoint.exists()

    report = (out / "report.md").read_text()
    for heading in (
        "## Classification: Fashion-MNIST",
        "### Excitation analysis",
        "## Segmentation",
        "## Claims",
    ):
        assert heading in report
    assert "| se |" in report and "| scse |" in report
    assert "share one grid" in report
    for name in (
        "accuracy_vs_params.png",
        "training_curves_classification.png",
        "training_curves_segmentation.png",
        "dice_per_arm.png",
        "segmentation_examples.png",
        "excitations_se.png",
        "specificity_vs_depth.png",
    ):
        assert (out / name).read_bytes()[:4] == b"\x89PNG", name
    stored = json.loads((out / "results.json").read_text())
    seg = stored["tasks"]["segmentation"]
    assert [r["seed"] for r in seg["arms"]["scse"]["runs"]] == [0, 1]
    assert (
        seg["arms"]["sse"]["profile"]["params"] - seg["arms"]["none"]["profile"]["params"]
        == 4 + 1 + 8 + 1 + 4 + 1
    )
    assert all(0.0 <= r["mean_dice"] <= 1.0 for r in seg["arms"]["none"]["runs"])
    assert "hd95_mm" in seg["arms"]["none"]["runs"][0]
    cls = stored["tasks"]["classification"]
    assert cls["arms"]["simam"]["profile"]["params"] == cls["arms"]["none"]["profile"]["params"]
    assert len(cls["analysis"]["se"]["per_seed"]["0"]) == 8
    verdicts = {c["id"]: c["verdict"] for c in stored["claims"]}
    assert verdicts["simam-params"] == "supported"
    assert verdicts["eca-se-baseline"] == "not tested"
    assert verdicts["scse-best"] in ("supported", "not supported", "inconclusive")
    # The table's numbers are the runs' numbers.
    accuracy = [r["accuracy"] for r in cls["arms"]["se"]["runs"]]
    assert cls["arms"]["se"]["summary"]["accuracy"]["mean"] == pytest.approx(sum(accuracy) / 2)
    assert results["tasks"]["classification"]["arms"]["se"]["runs"][0]["accuracy"] == accuracy[0]


def _parse(argv):
    from excite.cli.study import add_parser

    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    return parser.parse_args(argv)


def test_cli_missing_data_prints_how_to_get_it(tmp_path, monkeypatch, capsys):
    import excite.datasets as datasets
    from excite.cli.study import run

    monkeypatch.setattr(
        datasets, "FASHION_MNIST", dataclasses.replace(datasets.FASHION_MNIST, default_dir=str(tmp_path))
    )
    monkeypatch.delenv("EXCITE_FASHION_MNIST", raising=False)
    args = _parse(
        ["study", "--tasks", "classification", "--out", str(tmp_path / "o"), "--data", str(tmp_path)]
    )
    assert run(args) == 1
    assert "apt-get install dataset-fashion-mnist" in capsys.readouterr().err


def test_cli_rejects_unknown_arm(capsys):
    from excite.cli.study import run

    assert run(_parse(["study", "--arms", "none,bogus"])) == 2
    assert "unknown arm(s) ['bogus']" in capsys.readouterr().err
