"""sSE and scSE against the official ai-med code (2-D and 3-D), every aggregation against its formula,
smp's ``SCSEModule``, and the closed-form parameter counts."""

from __future__ import annotations

import pytest
import torch
from excite_test_helpers import assert_fp32_close, randomize_
from torch import nn

import excite

# Every test runs on the default (fused) path and on the reference path.
pytestmark = pytest.mark.usefixtures("forward_path")

# ---------------------------------------------------------------------------------------------------
# Transcription of ai-med/squeeze_and_excitation: squeeze_and_excitation.py and ..._3D.py. The 2-D
# channel layer squeezes with view(...).mean(2), the 3-D one with AdaptiveAvgPool3d(1); scSE is the
# element-wise torch.max of the two recalibrated tensors in both files.
# ---------------------------------------------------------------------------------------------------


class ChannelSELayer(nn.Module):
    def __init__(self, num_channels: int, reduction_ratio: int = 2) -> None:
        super().__init__()
        num_channels_reduced = num_channels // reduction_ratio
        self.reduction_ratio = reduction_ratio
        self.fc1 = nn.Linear(num_channels, num_channels_reduced, bias=True)
        self.fc2 = nn.Linear(num_channels_reduced, num_channels, bias=True)
        self.relu = nn.ReLU()
        self.sigmoid = nn.Sigmoid()

    def forward(self, input_tensor):
        batch_size, num_channels, H, W = input_tensor.size()
        squeeze_tensor = input_tensor.view(batch_size, num_channels, -1).mean(dim=2)
        fc_out_1 = self.relu(self.fc1(squeeze_tensor))
        fc_out_2 = self.sigmoid(self.fc2(fc_out_1))
        a, b = squeeze_tensor.size()
        return torch.mul(input_tensor, fc_out_2.view(a, b, 1, 1))


class SpatialSELayer(nn.Module):
    def __init__(self, num_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(num_channels, 1, 1)
        self.sigmoid = nn.Sigmoid()

    def forward(self, input_tensor):
        batch_size, channel, a, b = input_tensor.size()
        out = self.conv(input_tensor)
        squeeze_tensor = self.sigmoid(out)
        return torch.mul(input_tensor, squeeze_tensor.view(batch_size, 1, a, b))


class ChannelSpatialSELayer(nn.Module):
    def __init__(self, num_channels: int, reduction_ratio: int = 2) -> None:
        super().__init__()
        self.cSE = ChannelSELayer(num_channels, reduction_ratio)
        self.sSE = SpatialSELayer(num_channels)

    def forward(self, input_tensor):
        return torch.max(self.cSE(input_tensor), self.sSE(input_tensor))


class ChannelSELayer3D(nn.Module):
    def __init__(self, num_channels: int, reduction_ratio: int = 2) -> None:
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool3d(1)
        num_channels_reduced = num_channels // reduction_ratio
        self.reduction_ratio = reduction_ratio
        self.fc1 = nn.Linear(num_channels, num_channels_reduced, bias=True)
        self.fc2 = nn.Linear(num_channels_reduced, num_channels, bias=True)
        self.relu = nn.ReLU()
        self.sigmoid = nn.Sigmoid()

    def forward(self, input_tensor):
        batch_size, num_channels, D, H, W = input_tensor.size()
        squeeze_tensor = self.avg_pool(input_tensor)
        fc_out_1 = self.relu(self.fc1(squeeze_tensor.view(batch_size, num_channels)))
        fc_out_2 = self.sigmoid(self.fc2(fc_out_1))
        return torch.mul(input_tensor, fc_out_2.view(batch_size, num_channels, 1, 1, 1))


class SpatialSELayer3D(nn.Module):
    def __init__(self, num_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv3d(num_channels, 1, 1)
        self.sigmoid = nn.Sigmoid()

    def forward(self, input_tensor):
        batch_size, channel, D, H, W = input_tensor.size()
        out = self.conv(input_tensor)
        squeeze_tensor = self.sigmoid(out)
        return torch.mul(input_tensor, squeeze_tensor.view(batch_size, 1, D, H, W))


class ChannelSpatialSELayer3D(nn.Module):
    def __init__(self, num_channels: int, reduction_ratio: int = 2) -> None:
        super().__init__()
        self.cSE = ChannelSELayer3D(num_channels, reduction_ratio)
        self.sSE = SpatialSELayer3D(num_channels)

    def forward(self, input_tensor):
        return torch.max(self.cSE(input_tensor), self.sSE(input_tensor))


OFFICIAL = {
    2: (SpatialSELayer, ChannelSpatialSELayer, (6, 5)),
    3: (SpatialSELayer3D, ChannelSpatialSELayer3D, (3, 5, 4)),
}


# ---------------------------------------------------------------------------------------------------
# Against the official code
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dim", [2, 3])
@pytest.mark.parametrize("channels", [8, 24])
def test_sse_matches_official(dim, channels):
    official_class, _, size = OFFICIAL[dim]
    official = randomize_(official_class(channels)).eval()
    ours = excite.create("sse", channels, dim=dim)
    excite.load_official(ours, official.state_dict(), "official")
    x = torch.randn(2, channels, *size)
    assert_fp32_close(ours(x), official(x))


@pytest.mark.parametrize("dim", [2, 3])
@pytest.mark.parametrize("channels, reduction", [(16, 2), (24, 4)])
def test_scse_max_matches_official(dim, channels, reduction):
    _, official_class, size = OFFICIAL[dim]
    official = randomize_(official_class(channels, reduction)).eval()
    ours = excite.create("scse", channels, dim=dim, reduction=reduction)
    assert ours.aggregation == "max"
    excite.load_official(ours, official.state_dict(), "official")
    x = torch.randn(2, channels, *size)
    assert_fp32_close(ours(x), official(x))


# The TMI 2019 aggregations, each written on the official branch outputs.
AGGREGATION_FORMULAS = {
    "add": lambda channel_out, spatial_out: channel_out + spatial_out,
    "mul": lambda channel_out, spatial_out: channel_out * spatial_out,
    "concat": lambda channel_out, spatial_out: torch.cat([channel_out, spatial_out], dim=1),
    "max": lambda channel_out, spatial_out: torch.max(channel_out, spatial_out),
}


@pytest.mark.parametrize("dim", [2, 3])
@pytest.mark.parametrize("aggregation", ["add", "mul", "concat", "max"])
def test_scse_aggregation_matches_its_formula(dim, aggregation):
    _, official_class, size = OFFICIAL[dim]
    channels = 16
    official = randomize_(official_class(channels)).eval()
    ours = excite.create("scse", channels, dim=dim, aggregation=aggregation)
    excite.load_official(ours, official.state_dict(), "official")
    x = torch.randn(2, channels, *size)
    expected = AGGREGATION_FORMULAS[aggregation](official.cSE(x), official.sSE(x))
    out = ours(x)
    assert out.shape == expected.shape
    assert_fp32_close(out, expected)
    if aggregation == "concat":
        assert out.shape[1] == 2 * channels


@pytest.mark.parametrize("channels", [16, 48])
def test_scse_add_matches_smp(channels):
    modules = pytest.importorskip("segmentation_models_pytorch.base.modules")
    peer = randomize_(modules.SCSEModule(channels, reduction=16)).eval()
    ours = excite.create("scse", channels, reduction=16, aggregation="add")
    excite.load_official(ours, peer.state_dict(), "smp")
    x = torch.randn(2, channels, 7, 6)
    assert_fp32_close(ours(x), peer(x))


def test_sse_gate_is_pointwise_formula_in_1d():
    """No official 1-D code: the gate is ``σ(w·x[:, :, l] + b)`` at every position."""
    sse = randomize_(excite.create("sse", 8, dim=1))
    x = torch.randn(3, 8, 11)
    gate = torch.sigmoid(torch.einsum("c,ncl->nl", sse.conv.weight.reshape(8), x) + sse.conv.bias)
    assert_fp32_close(sse(x), x * gate.unsqueeze(1))


def test_unknown_aggregation_is_rejected():
    with pytest.raises(ValueError, match="aggregation.*'sum'"):
        excite.create("scse", 16, aggregation="sum")


# ---------------------------------------------------------------------------------------------------
# Parameter counts
# ---------------------------------------------------------------------------------------------------


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("dim", [1, 2, 3])
@pytest.mark.parametrize("channels", [4, 16, 33, 64])
def test_sse_parameter_count(dim, channels):
    assert count(excite.create("sse", channels, dim=dim)) == channels + 1


@pytest.mark.parametrize("dim", [1, 2, 3])
@pytest.mark.parametrize("channels", [16, 24, 64, 128])
def test_scse_official_parameter_count(dim, channels):
    """Official r=2, even C: ``C² + 2.5·C + 1``."""
    assert count(excite.create("scse", channels, dim=dim)) == channels**2 + 5 * channels // 2 + 1


@pytest.mark.parametrize("channels", [16, 64, 256])
def test_scse_smp_parameter_count(channels):
    """smp r=16, C divisible by 16: ``C²/8 + C/16 + 2·C + 1``."""
    expected = channels**2 // 8 + channels // 16 + 2 * channels + 1
    assert count(excite.create("scse", channels, reduction=16, aggregation="add")) == expected
