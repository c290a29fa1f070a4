"""``excite.profiling.measure``, ``excite.profile`` and ``excite profile``: counted numbers against closed
forms and the survey's published overheads (no timed assertions: latencies are only checked to exist)."""

from __future__ import annotations

import argparse
import csv
import json

import pytest
import torch
from torch import nn

import excite
from excite.profiling import MEASURE_KEYS, backbone_signature, count_flops, measure, peak_train_bytes
from excite.profiling.costs import attention_costs

models = pytest.importorskip("excite.models")


def small_resnet18(attention=None, **options):
    return models.resnet18(
        attention=attention, attention_options=options, stem="small", width=16, num_classes=10, input_size=32
    )


def resnet18_closed_form(size: int, se_reduction: int = 0):
    """(parameters, MACs per sample) of the small-stem width-16 ResNet-18, written out layer by layer."""
    widths = [16, 32, 64, 128]
    params = 16 * 3 * 9 + 2 * 16
    macs = 16 * 3 * 9 * size * size
    channels, side = 16, size
    for stage, width in enumerate(widths):
        for block in range(2):
            stride = 2 if stage > 0 and block == 0 else 1
            side_out = side // stride
            positions = side_out * side_out
            params += width * channels * 9 + width * width * 9 + 4 * width
            macs += (width * channels * 9 + width * width * 9) * positions
            if stride != 1 or channels != width:
                params += width * channels + 2 * width
                macs += width * channels * positions
            if se_reduction:
                hidden = width // se_reduction
                params += 2 * width * hidden + hidden + width
                macs += 2 * width * hidden
            channels, side = width, side_out
    params += channels * 10 + 10
    macs += channels * 10
    return params, macs


def test_measure_returns_exactly_the_contract_keys_and_closed_forms():
    model = small_resnet18("se", reduction=4)
    result = measure(model, (2, 3, 32, 32), warmup=0, repeats=1)
    assert tuple(result) == MEASURE_KEYS
    params, macs = resnet18_closed_form(32, se_reduction=4)
    assert result["params"] == params
    assert result["macs"] == 2 * macs and result["flops"] == 4 * macs  # batch 2, 2 FLOPs per MAC
    maps = 2 * 2 * (16 * 32 * 32 + 32 * 16 * 16 + 64 * 8 * 8 + 128 * 4 * 4)  # N · Σ_blocks C·P
    assert result["elementwise_flops"] == 2 * maps  # pooling + gating, 1 each per element
    assert result["attention_bytes"] in (3 * 4 * maps,)  # 3 passes of fp32 on either path
    assert result["latency_fwd_ms"] > 0 and result["latency_fwdbwd_ms"] > 0
    assert result["peak_train_bytes"] > 2 * 4 * params


def test_measure_without_attention_reports_none_of_it():
    plain = small_resnet18()
    result = measure(plain, (1, 3, 32, 32), warmup=0, repeats=1)
    assert result["params"] == resnet18_closed_form(32)[0]
    assert result["macs"] == resnet18_closed_form(32)[1]
    assert result["elementwise_flops"] == 0 and result["attention_bytes"] == 0


def test_measure_leaves_the_model_as_it_was():
    model = small_resnet18("eca").eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    measure(model, (2, 3, 32, 32), warmup=1, repeats=1)
    assert not model.training
    assert all(p.grad is None for p in model.parameters())
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, before[key], rtol=0, atol=0)


def test_peak_train_bytes_on_cpu_is_params_grads_and_saved_tensors():
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU())
    x = torch.randn(4, 8)
    parameters = (8 * 16 + 16) * 4
    saved = 4 * 8 * 4 + 4 * 16 * 4  # the Linear saves its input, the ReLU its output (weights excluded)
    assert peak_train_bytes(model, x) == 2 * parameters + saved


def test_measure_of_a_parameter_free_module_backpropagates_to_the_input():
    # SimAM alone has no parameters; its training step is the backward to its input. The input gradient
    # is the one tensor besides the saved input that a training step must hold.
    result = measure(nn.Sequential(excite.create("simam", 8)), (2, 8, 6, 5), warmup=0, repeats=1)
    assert result["params"] == 0
    assert result["latency_fwdbwd_ms"] > 0
    assert result["peak_train_bytes"] >= 2 * 8 * 6 * 5 * 4


def test_measure_rejects_a_spatial_only_input_size():
    with pytest.raises(ValueError, match=r"\(N, C, \*spatial\)"):
        measure(small_resnet18(), (3, 32), repeats=1)


# ---------------------------------------------------------------------------------------------------------
# The survey's efficiency claims on ResNet-50 and MobileNetV2 (survey.md §8), counted on the meta device


def on_meta(build):
    with torch.device("meta"):
        return build()


def counted(model: nn.Module, size=(1, 3, 224, 224)):
    example = torch.zeros(size, device="meta")
    params = sum(p.numel() for p in model.parameters())
    return params, count_flops(model, example, shapes_only=True)


@pytest.mark.parametrize("network", ["resnet50", "mobilenet_v2"])
def test_survey_claims(network):
    build = getattr(models, network)
    base_params, base_flops = counted(on_meta(build))
    se_params, se_flops = counted(on_meta(lambda: build(attention="se")))
    eca_params, eca_flops = counted(on_meta(getattr(models, f"eca_{network}")))
    simam_params, simam_flops = counted(on_meta(lambda: build(attention="simam")))
    if network == "resnet50":
        assert base_flops == 2 * 4_089_184_256  # ResNet-50 v1.5 MACs (modules.md §8)
        assert se_params - base_params == 2_530_992  # "SE adds ~2.5M" (2,514,944 + 16,048 biases)
        assert se_flops - base_flops == 2 * 2_514_944  # SE's FC MACs (modules.md §8)
        assert eca_params - base_params == 80  # "ECA adds 80" (k = 3, 5, 5, 7)
        assert eca_flops - base_flops == 2 * 86_272  # ECA's conv1d MACs (modules.md §8)
    else:
        assert eca_params - base_params == 31  # ECA-MobileNetV2: 3,504,903 (k = 1 below 96 channels, else 3)
    assert simam_params == base_params and simam_flops == base_flops  # "SimAM adds 0"
    for flops in (se_flops, eca_flops, simam_flops):
        assert (flops - base_flops) / base_flops < 0.01  # "FLOPs overhead < 1%"


def test_the_flop_counter_misses_what_the_elementwise_column_counts():
    model = on_meta(lambda: models.resnet50(attention="simam"))
    costs = attention_costs(model, (1, 3, 224, 224))
    # SimAM: 8 elementwise operations per element of each bottleneck's 3x3 output (width·P per block).
    maps = 3 * 64 * 56 * 56 + (128 * 28 * 28 + 3 * 128 * 28 * 28) + (256 * 14 * 14 + 5 * 256 * 14 * 14)
    maps += 512 * 7 * 7 + 2 * 512 * 7 * 7
    assert sum(c.elementwise_flops for c in costs) == 8 * maps


def test_presets_are_used_only_with_the_same_backbone():
    plain = backbone_signature(on_meta(models.resnet50))
    assert backbone_signature(on_meta(models.eca_resnet50)) == plain
    assert backbone_signature(on_meta(models.se_resnet50)) != plain  # v1: stride in the first 1x1, Caffe pool


# ---------------------------------------------------------------------------------------------------------
# excite.profile and its outputs


@pytest.fixture(scope="module")
def table():
    return excite.profile(
        "resnet18", (1, 3, 64, 64), attentions=["se", "eca", "simam"], warmup=0, repeats=1, progress=False
    )


def test_profile_rows(table):
    assert [r["attention"] for r in table.rows] == ["none", "se", "eca", "simam"]
    assert table.row("se")["params_added"] == 11_778_592 - 11_689_512  # SE-ResNet-18, C // 16 with bias
    assert table.row("eca")["params_added"] == 2 * (3 + 5 + 5 + 5)  # ψ(C) = 3, 5, 5, 5
    assert table.row("simam")["params_added"] == 0 and table.row("simam")["flops_added_pct"] == 0
    assert 0 < table.row("se")["flops_added_pct"] < 1
    assert table.row("none")["elementwise_flops"] == 0 and table.row("simam")["elementwise_flops"] > 0
    for row in table.rows:
        assert row["latency_fwd_ms"] > 0 and row["latency_fwdbwd_ms"] > 0 and row["peak_train_bytes"] > 0


def test_profile_exports(table, tmp_path):
    table.to_csv(tmp_path / "p.csv")
    table.to_json(tmp_path / "p.json")
    pytest.importorskip("matplotlib")
    table.plot(tmp_path / "p.png")
    with open(tmp_path / "p.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["attention"] for r in rows] == ["none", "se", "eca", "simam"]
    assert int(rows[1]["params"]) == table.rows[1]["params"]
    payload = json.loads((tmp_path / "p.json").read_text())
    assert payload["rows"][3]["attention"] == "simam"
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"
    assert "se" in str(table) and "params (added)" in str(table)


def test_profile_of_a_module_uses_attach():
    table = excite.profile(
        small_resnet18(), (1, 3, 32, 32), attentions=["eca"], warmup=0, repeats=1, progress=False
    )
    assert table.row("eca")["note"].startswith("attach") and table.row("eca")["params_added"] > 0


def test_profile_skips_arms_that_do_not_fit_and_says_why():
    table = excite.profile(
        small_resnet18(), (2, 3, 8, 8), attentions=["simam"], warmup=0, repeats=1, progress=False
    )
    assert [r["attention"] for r in table.rows] == ["none"]
    assert table.skipped[0][0] == "simam" and "SimAM" in table.skipped[0][1]


def test_profile_rejects_unknown_names():
    with pytest.raises(ValueError, match="no excite model"):
        excite.profile("resnet5", (1, 3, 32, 32), attentions=["se"])
    with pytest.raises(ValueError, match="unknown attention"):
        excite.profile("resnet18", (1, 3, 32, 32), attentions=["squeeze"])


def test_cli_prints_and_writes(tmp_path, capsys):
    from excite.cli import profile as verb

    parser = argparse.ArgumentParser()
    verb.add_parser(parser.add_subparsers())
    args = parser.parse_args(
        [
            "profile",
            "resnet18",
            "--attention",
            "se,eca",
            "--input-size",
            "32",
            "--batch",
            "2",
            "--repeats",
            "1",
            "--warmup",
            "0",
            "--out",
            str(tmp_path),
        ]
    )
    assert verb.run(args) == 0
    out = capsys.readouterr().out
    assert "eca" in out and "+89,080" in out and "params (added)" in out
    assert {p.name for p in tmp_path.iterdir()} >= {"profile.csv", "profile.json"}


def test_a_model_that_cannot_train_on_the_input_gets_a_clear_error(capsys, monkeypatch):
    """Batch 1 reaching a 1x1 map: BatchNorm cannot train on one value per channel; the profiler says
    so and what to change, and the CLI prints it without a traceback (exit 2)."""
    from excite.cli import main

    with pytest.raises(ValueError, match="use a batch of at least 2 or a larger input"):
        excite.profile(small_resnet18(), (1, 3, 8, 8), attentions=["se"], warmup=0, repeats=1, progress=False)
    monkeypatch.delenv("EXCITE_DEBUG", raising=False)
    assert main(["profile", "resnet18", "--attention", "se", "--input-size", "32", "--batch", "1"]) == 2
    assert "batch of at least 2" in capsys.readouterr().err


def test_cli_input_size_parsing():
    from excite.cli.profile import parse_input_size

    assert parse_input_size("224", 8, 3, 2) == (8, 3, 224, 224)
    assert parse_input_size("32,64,64", 1, 1, 2) == (1, 1, 32, 64, 64)
    with pytest.raises(ValueError, match="--input-size"):
        parse_input_size("a", 1, 3, 2)
