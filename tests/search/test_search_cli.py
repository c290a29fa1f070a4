"""``excite search`` end to end on a tiny slice of the real Fashion-MNIST."""

from __future__ import annotations

import json

import pytest

from excite.cli import main
from excite.cli.search import parse_parts
from excite.datasets import FASHION_MNIST
from excite.search import study as search_study

# One seed, three candidates, a few images: the smallest run that still trains and compares.
TINY = search_study.Settings(
    train_per_class=4,
    val_per_class=2,
    test_per_class=3,
    batch_size=20,
    epochs=0.5,
    search_epochs=1.0,
    seeds=(0,),
    candidates=("none", "eca", "se"),
    budget_arm="se",
)


def test_parts_are_checked() -> None:
    assert parse_parts("attention, frequency") == ["attention", "frequency"]
    with pytest.raises(ValueError, match="--parts"):
        parse_parts("attention,nas")
    with pytest.raises(ValueError, match="--parts"):
        parse_parts(",")


def test_cli_reports_a_bad_option_without_a_traceback(capsys, monkeypatch) -> None:
    monkeypatch.delenv("EXCITE_DEBUG", raising=False)
    assert main(["search", "--parts", "nas"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("excite search: --parts must be a comma list") and "Traceback" not in err
    monkeypatch.setenv("EXCITE_DEBUG", "1")
    with pytest.raises(ValueError, match="--parts"):
        main(["search", "--parts", "nas"])


def test_search_verb_writes_the_attention_comparison(tmp_path, monkeypatch, capsys) -> None:
    if FASHION_MNIST.find() is None:
        pytest.skip("Fashion-MNIST is not installed")
    monkeypatch.setitem(search_study.PRESETS, "quick", TINY)
    assert main(["search", "--out", str(tmp_path), "--parts", "attention", "--no-progress"]) == 0
    report = (tmp_path / "search.md").read_text()
    assert "### Per-layer attention search" in report
    assert "### FcaNet frequency search" not in report  # only the part asked for ran
    data = json.loads((tmp_path / "search" / "search_results.json").read_text())
    assert set(data["attention"]["summary"]) == {"searched", "none", "eca", "se"}
    assert "written:" in capsys.readouterr().out
