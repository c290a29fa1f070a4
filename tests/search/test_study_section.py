"""The study's search section end to end on a tiny slice of the real Fashion-MNIST, and its resume."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from excite.datasets import FASHION_MNIST
from excite.search.study import Settings, study_section, verdict

TINY = Settings(
    train_per_class=4,
    val_per_class=2,
    test_per_class=3,
    batch_size=20,
    epochs=0.5,
    search_epochs=1.0,
    seeds=(0,),
    candidates=("none", "eca", "se"),
    budget_arm="se",
    frequency_methods=("top16",),
)


def test_verdict_follows_the_study_rules() -> None:
    assert verdict(0.02, 0.01, 3, 0.005) == "better"  # interval [0.01, 0.03] above 0
    assert verdict(-0.02, 0.01, 3, 0.005) == "worse"  # [-0.03, -0.01] below 0
    assert verdict(0.001, 0.004, 3, 0.005) == "not worse (δ=0.005)"  # [-0.003, 0.005], above -δ
    assert verdict(0.0, 0.02, 3, 0.005) == "inconclusive"  # [-0.02, 0.02]
    assert verdict(0.05, 0.0, 1, 0.005) == "inconclusive (one seed)"


def test_section_runs_on_real_data_and_resumes(tmp_path) -> None:
    pytest.importorskip("excite.models")
    if FASHION_MNIST.find() is None:
        pytest.skip("Fashion-MNIST is not installed")
    section = study_section(tmp_path, settings=TINY, progress=False)
    assert "### Per-layer attention search" in section.markdown
    assert "### FcaNet frequency search" in section.markdown
    data = json.loads((tmp_path / "search" / "search_results.json").read_text())
    summary = data["attention"]["summary"]
    assert set(summary) == {"searched", "none", "eca", "se"}
    # The searched network respects its budget: no more parameters added than uniform SE.
    assert summary["searched"]["cost_mean"] <= summary["se"]["cost_mean"]
    assert summary["se"]["params"] - summary["none"]["params"] == summary["se"]["cost_mean"]
    assert set(data["frequency"]["summary"]) == {"searched", "top16"}
    for figure in section.figures:
        assert figure.exists() and f"search/{figure.name}" in section.markdown
    runs = sorted((tmp_path / "search" / "runs").glob("*.json"))
    assert len(runs) == 4 + 2  # attention: searched + 3 uniform; frequency: searched + top16
    stamps = {path: path.stat().st_mtime_ns for path in runs}
    again = study_section(tmp_path, settings=TINY, progress=False)
    assert {path: path.stat().st_mtime_ns for path in runs} == stamps  # nothing was trained again
    assert again.data["attention"]["summary"] == data["attention"]["summary"]
    # Other settings in the same folder retrain what they change instead of reusing the stored records.
    frequency_runs = [path for path in runs if path.name.startswith("frequency_")]
    keys = {path: json.loads(path.read_text())["key"] for path in frequency_runs}
    changed = study_section(
        tmp_path, settings=replace(TINY, epochs=1.0), parts=("frequency",), progress=False
    )
    assert all(path.stat().st_mtime_ns != stamps[path] for path in frequency_runs)
    assert all(json.loads(path.read_text())["key"] != keys[path] for path in frequency_runs)
    assert all(path.stat().st_mtime_ns == stamps[path] for path in runs if path not in frequency_runs)
    assert "frequency" in changed.data
