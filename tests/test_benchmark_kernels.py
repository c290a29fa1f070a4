"""The kernel benchmark's accounting (not its timings): the FLOP count per element against the SE
formula, the profiler's kernel share, and the summary's columns and target checks."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest
import torch

import excite

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "kernels.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("excite_bench_kernels", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gate_flops_per_element_is_the_two_fully_connected_layers(bench):
    n, c, h, w, reduction = 2, 64, 5, 7, 16
    module = excite.create("se", c, reduction=reduction)
    x = torch.randn(n, c, h, w)
    mid = c // reduction
    # Two matrix products per sample, C -> mid and mid -> C, 2 FLOPs per multiply-add.
    expected = n * (2 * c * mid + 2 * mid * c) / x.numel()
    assert bench.gate_flops_per_element(module, x) == pytest.approx(expected)


def test_gate_flops_of_simam_are_zero(bench):
    module = excite.create("simam", 8)
    assert bench.gate_flops_per_element(module, torch.randn(2, 8, 6, 6)) == 0


def test_kernel_share_is_a_fraction_and_sees_the_fused_kernels(bench):
    module = excite.create("simam", 16).train()
    x = torch.randn(2, 16, 64, 64, requires_grad=True)
    share, seconds = bench.kernel_share(module, x, torch.randn_like(x), torch.device("cpu"))
    assert 0.0 <= share <= 1.0 and seconds > 0
    if excite.fused.backend_name(x) == "cpp":
        # SimAM has no gate layers: its forward and backward are the fused kernels and little else.
        assert share > 0.2


def _row(method, forward, training, **extra):
    row = {
        "module": "coord",
        "shape": "8x256x56x56",
        "method": method,
        "forward_LB": forward,
        "training_LB": training,
        "saved_x": 0.1,
        "training_speedup": 12.0 / training,
        "LB_GBps": 30.0,
        "training_GBps": 8 * 30.0 / 3 / training,
        "kernel_share": math.nan,
        "kernels_GBps": math.nan,
        "gate_flops_per_element": math.nan,
    }
    row.update(extra)
    return row


def test_summary_splits_the_fused_time_and_checks_the_targets(bench):
    rows = [
        _row("reference", 2.5, 12.0),
        _row("fused", 1.2, 4.0, kernel_share=0.75, kernels_GBps=80 / 3, gate_flops_per_element=3.25),
    ]
    (line,) = bench.summary_rows(rows)
    assert line["f+b kernels / rest"] == "3.00 / 1.00"
    assert line["gate FLOP/elem fwd"] == "3.2"
    assert line["speed-up"] == "3.0x"
    assert line["targets missed"] == "none"
    # 8 passes in 4 LB where LB (3 passes) runs at 30 GB/s: 20 GB/s over the step; 26.7 GB/s over the
    # kernels' own time, which is 107 % of a 25 GB/s peak and 27 % of a 100 GB/s one.
    (line,) = bench.summary_rows(rows, peak_gbps=25.0)
    assert line["GB/s LB / f+b / kernels"] == "30 / 20 / 27 (107% of 25)"
    assert line["targets missed"] == "none"
    (line,) = bench.summary_rows(rows, peak_gbps=100.0)
    assert line["targets missed"] == "80% HBM"


def test_summary_names_each_missed_target(bench):
    rows = [_row("reference", 2.5, 12.0), _row("fused", 1.4, 4.5, saved_x=1.5)]
    (line,) = bench.summary_rows(rows)
    assert line["targets missed"] == "fwd, f+b, mem, 3x"
    assert line["f+b kernels / rest"] == "-"


def test_measure_reports_the_breakdown_for_the_fused_path_only(bench):
    timer = bench.Timer("wall")
    rows = bench.measure("simam", (2, 16, 24, 24), ["reference", "fused"], rounds=1, timer=timer)
    by_method = {row["method"]: row for row in rows}
    fused, reference = by_method["fused"], by_method["reference"]
    assert 0.0 < fused["kernel_share"] <= 1.0 and fused["kernels_GBps"] > 0
    assert fused["gate_flops_per_element"] == 0  # SimAM has no gate layers
    assert math.isnan(reference["kernel_share"]) and math.isnan(reference["kernels_GBps"])
    # The bandwidth columns are the minimal passes over the measured times (3 forward, 8 in training).
    nbytes = 2 * 16 * 24 * 24 * 4
    assert fused["training_GBps"] == pytest.approx(8 * nbytes / (fused["training_ms"] / 1e3) / 1e9)
    assert fused["LB_GBps"] == pytest.approx(3 * nbytes / (fused["LB_ms"] / 1e3) / 1e9)
