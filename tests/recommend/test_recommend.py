"""The recommender: survey advice as data, study results ranking, budgets from measured costs, the CLI."""

from __future__ import annotations

import json

import pytest

import excite
from excite.cli import main
from excite.recommend import load_advice, read_study, recommend


def test_advice_is_data_about_registered_modules() -> None:
    advice = load_advice()
    registered = set(excite.available())
    assert set(advice["tasks"]) == {"classification", "segmentation", "detection"}
    for task, entries in advice["tasks"].items():
        assert entries, task
        for entry in entries:
            assert entry["module"] in registered
            assert entry["why"] and entry["where"].startswith("survey §")
    for context in advice["contexts"].values():
        assert set(context["prefer"]) | set(context["avoid"]) <= registered
    # The survey's §12 picks, as the survey states them.
    firsts = {task: [e["module"] for e in entries[:2]] for task, entries in advice["tasks"].items()}
    assert firsts == {
        "classification": ["eca", "fca"],
        "segmentation": ["scse", "coord"],
        "detection": ["eca", "coord"],
    }


def test_without_measurement_or_study_the_order_is_the_survey_order() -> None:
    table = recommend("segmentation", measure=False)
    assert [row.module for row in table.rows] == [e["module"] for e in load_advice()["tasks"]["segmentation"]]
    assert all(row.basis == "survey advice" for row in table.rows)
    assert all(row.reasons[0].startswith("survey advice #") for row in table.rows)
    assert "scse" in str(table) and "survey advice" in table.to_markdown()


def test_mobile_context_moves_preferred_modules_up_and_avoided_down() -> None:
    table = recommend("classification", measure=False, contexts=["mobile"])
    order = [row.module for row in table.rows]
    # Both preferred for mobile, in the task's survey order (simam #3, coord #5); SE is avoided.
    assert order[:2] == ["simam", "coord"]
    assert order[-1] == "se"
    with pytest.raises(ValueError, match="unknown context"):
        recommend("classification", measure=False, contexts=["edge"])


def study_results(tmp_path, values: dict, metric: str = "accuracy", task: str = "classification"):
    arms = {}
    for name, mean in values.items():
        arms[name] = {
            "arm": {"name": name, "attention": None if name == "none" else name.split("-")[0], "options": {}},
            "runs": [{"seed": 0, metric: mean - 0.001}, {"seed": 1, metric: mean + 0.001}],
            "summary": {metric: {"mean": mean, "ci95": 0.0127, "n": 2}},
        }
    (tmp_path / "results.json").write_text(json.dumps({"tasks": {task: {"metric": metric, "arms": arms}}}))
    return tmp_path


def test_study_results_rank_the_modules_and_flag_those_below_the_baseline(tmp_path) -> None:
    study = study_results(tmp_path, {"none": 0.90, "se": 0.91, "eca": 0.905, "simam": 0.89, "coord": 0.93})
    table = recommend("classification", measure=False, study=study)
    order = [row.module for row in table.rows]
    # Beat the baseline, by accuracy; then survey-only modules in survey order; then below the baseline.
    assert order == ["coord", "se", "eca", "fca", "eca_coord", "simam"]
    simam = table.rows[-1]
    assert simam.basis == "study" and simam.study_mean == pytest.approx(0.89)
    assert any("not better than the baseline" in reason for reason in simam.reasons)
    assert table.rows[3].basis == "survey advice"
    assert any(source.startswith("study:") for source in table.sources)


def test_study_reader_is_tolerant(tmp_path) -> None:
    # Segmentation arms named by aggregation, summary missing: the runs' mean is used, the best arm kept.
    arms = {
        "scse-max": {"arm": {"attention": "scse"}, "runs": [{"mean_dice": 0.70}, {"mean_dice": 0.72}]},
        "scse-add": {"arm": {"attention": "scse"}, "runs": [{"mean_dice": 0.74}]},
        "none": {"arm": {"attention": None}, "summary": {"mean_dice": {"mean": 0.69, "ci95": 0.01, "n": 3}}},
        "broken": "not a dict",
        "sse": {"runs": [{"mean_dice": float("nan")}]},
    }
    (tmp_path / "results.json").write_text(
        json.dumps({"tasks": {"segmentation": {"metric": "mean_dice", "arms": arms}}})
    )
    best, notes = read_study(tmp_path, "segmentation")
    assert best["scse"]["arm"] == "scse-add" and best["scse"]["mean"] == pytest.approx(0.74)
    assert best["none"]["mean"] == pytest.approx(0.69) and "sse" not in best
    best, notes = read_study(tmp_path / "results.json", "classification")
    assert best == {} and "no classification task" in notes[0]
    with pytest.raises(FileNotFoundError, match="no study results"):
        read_study(tmp_path / "missing", "classification")


def test_budgets_use_the_costs_measured_on_the_model() -> None:
    pytest.importorskip("excite.models")
    profiling = pytest.importorskip("excite.profiling")
    if not hasattr(profiling, "profile"):
        pytest.skip("excite.profile is not available")
    table = recommend(
        "classification",
        model="resnet18",
        budget_params=10_000,
        input_size=(1, 3, 64, 64),
        candidates=["se", "eca", "simam"],
        repeats=1,
        progress=False,
    )
    rows = {row.module: row for row in table.rows}
    # SE (r=16, bias) on ResNet-18's BasicBlocks: 2·(Σ over C = 64, 128, 256, 512 of 2·C·C/16 + C/16 + C).
    expected_se = 2 * sum(2 * c * (c // 16) + c // 16 + c for c in (64, 128, 256, 512))
    assert rows["se"].params_added == expected_se == 89_080
    # ECA's k = ψ(C) = 3, 5, 5, 5 for C = 64, 128, 256, 512, two blocks per stage.
    assert rows["eca"].params_added == 2 * (3 + 5 + 5 + 5)
    assert rows["simam"].params_added == 0
    assert rows["se"].within_budget is False and rows["eca"].within_budget is True
    # Within budget first, in survey order (eca #1, simam #3); SE (#4) is over budget, so last.
    assert [row.module for row in table.rows] == ["eca", "simam", "se"]
    assert all(r.latency_fwd_ms is not None and r.latency_fwd_ms > 0 for r in table.rows)
    assert any(reason.startswith("measured here:") for reason in rows["eca"].reasons)


def test_cli_prints_the_table_and_writes_json(tmp_path, capsys) -> None:
    out = tmp_path / "rec.json"
    code = main(["recommend", "--task", "segmentation", "--no-measure", "--json", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "scse" in printed and "survey advice" in printed
    record = json.loads(out.read_text())
    assert record["task"] == "segmentation" and record["rows"][0]["module"] == "scse"
    assert main(["recommend", "--task", "classification", "--no-measure", "--candidates", "nope"]) == 2
    assert "unknown module" in capsys.readouterr().err
