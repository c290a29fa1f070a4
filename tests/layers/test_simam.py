"""SimAM against ZjjConan/SimAM ``simam_module`` (bit for bit in fp32) and the paper's energy formula,
in 1-D, 2-D and 3-D; the H·W = 1 case the official code turns into NaN."""

from __future__ import annotations

import pytest
import torch
from excite_test_helpers import assert_fp32_close
from torch import nn

import excite

# Every test runs on the default (fused) path and on the reference path.
pytestmark = pytest.mark.usefixtures("forward_path")

# ---------------------------------------------------------------------------------------------------
# Transcription of networks/attentions/simam_module.py
# ---------------------------------------------------------------------------------------------------


class simam_module(nn.Module):  # noqa: N801  (the official name)
    def __init__(self, channels=None, e_lambda=1e-4):
        super().__init__()
        self.activaton = nn.Sigmoid()
        self.e_lambda = e_lambda

    def forward(self, x):
        b, c, h, w = x.size()
        n = w * h - 1
        x_minus_mu_square = (x - x.mean(dim=[2, 3], keepdim=True)).pow(2)
        y = (
            x_minus_mu_square / (4 * (x_minus_mu_square.sum(dim=[2, 3], keepdim=True) / n + self.e_lambda))
            + 0.5
        )
        return x * self.activaton(y)


@pytest.mark.parametrize("lambda_", [1e-4, 0.1])
@pytest.mark.parametrize("size", [(7, 7), (5, 9), (1, 2), (14, 3)])
def test_simam_matches_official(lambda_, size):
    """The reference path evaluates the official expression in the official order: equal bit for bit.
    The default (fused) path reorders the reductions: equal at fp32 rounding."""
    official = simam_module(e_lambda=lambda_)
    ours = excite.create("simam", dim=2, lambda_=lambda_)
    assert excite.load_official(ours, official.state_dict(), "official") is ours
    x = 3 * torch.randn(2, 8, *size) + 1
    expected = official(x)
    with excite.use_reference():
        assert torch.equal(ours(x), expected)
    assert_fp32_close(ours(x), expected)


def energy_formula(x, lambda_):
    """The paper: ``y = x · σ(1/e*)``, ``e* = 4(σ² + λ) / ((t − μ)² + 2σ² + 2λ)`` with the code's
    ``σ² = Σ(t − μ)² / n``, ``n`` = positions − 1, statistics per sample and channel, in float64."""
    x64 = x.double()
    axes = list(range(2, x.dim()))
    positions = x[0, 0].numel()
    mu = x64.mean(dim=axes, keepdim=True)
    variance = ((x64 - mu) ** 2).sum(dim=axes, keepdim=True) / (positions - 1)
    energy = 4 * (variance + lambda_) / ((x64 - mu) ** 2 + 2 * variance + 2 * lambda_)
    return (x64 * torch.sigmoid(1 / energy)).float()


@pytest.mark.parametrize("dim, size", [(1, (13,)), (2, (6, 5)), (3, (3, 4, 5)), (3, (1, 1, 2))])
@pytest.mark.parametrize("lambda_", [1e-4, 0.1, 0.0])
def test_simam_matches_energy_formula(dim, size, lambda_):
    ours = excite.create("simam", dim=dim, lambda_=lambda_)
    x = torch.randn(2, 5, *size)
    assert_fp32_close(ours(x), energy_formula(x, lambda_), atol=1e-5, rtol=1e-5)


def test_official_code_returns_nan_for_a_single_position_and_ours_refuses():
    x = torch.randn(2, 4, 1, 1)
    assert torch.isnan(simam_module()(x)).all()
    with pytest.raises(ValueError, match=r"SimAM.*n = positions - 1 = 0.*\[2, 4, 1, 1\]"):
        excite.create("simam")(x)


def test_simam_has_no_parameters_and_accepts_any_channel_count_without_channels():
    simam = excite.create("simam", dim=2)
    assert sum(p.numel() for p in simam.parameters()) == 0
    for channels in (1, 7, 64):
        x = torch.randn(1, channels, 3, 3)
        assert simam(x).shape == x.shape


def test_negative_lambda_is_rejected():
    with pytest.raises(ValueError, match="SimAM: lambda_.*-1"):
        excite.create("simam", lambda_=-1)
