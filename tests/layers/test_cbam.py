"""CBAM against Jongchan/attention-module ``MODELS/cbam.py`` (eval and training mode, with and without
the spatial gate), against timm's ``CbamModule``, the N-D extension, and parameter counts."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from excite_test_helpers import assert_fp32_close, randomize_
from torch import nn

import excite

# Every test runs on the default (fused) path and on the reference path.
pytestmark = pytest.mark.usefixtures("forward_path")

# ---------------------------------------------------------------------------------------------------
# Transcription of MODELS/cbam.py (pool_types ['avg', 'max']). The layers are picked by ``dim``; 2-D is
# the official code, where the global pools are avg_pool2d / max_pool2d with the whole map as kernel.
# ---------------------------------------------------------------------------------------------------

_CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
_BN = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}
_AVG = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}
_MAX = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}


class BasicConv(nn.Module):
    def __init__(self, in_planes, out_planes, kernel_size, padding=0, relu=True, bn=True, bias=False, dim=2):
        super().__init__()
        self.out_channels = out_planes
        self.conv = _CONV[dim](in_planes, out_planes, kernel_size=kernel_size, padding=padding, bias=bias)
        self.bn = _BN[dim](out_planes, eps=1e-5, momentum=0.01, affine=True) if bn else None
        self.relu = nn.ReLU() if relu else None

    def forward(self, x):
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        if self.relu is not None:
            x = self.relu(x)
        return x


class Flatten(nn.Module):
    def forward(self, x):
        return x.view(x.size(0), -1)


class ChannelGate(nn.Module):
    def __init__(self, gate_channels, reduction_ratio=16, dim=2):
        super().__init__()
        self.dim = dim
        self.mlp = nn.Sequential(
            Flatten(),
            nn.Linear(gate_channels, gate_channels // reduction_ratio),
            nn.ReLU(),
            nn.Linear(gate_channels // reduction_ratio, gate_channels),
        )

    def forward(self, x):
        window = tuple(x.shape[2:])
        channel_att_sum = self.mlp(_AVG[self.dim](x, window, stride=window))
        channel_att_sum = channel_att_sum + self.mlp(_MAX[self.dim](x, window, stride=window))
        scale = torch.sigmoid(channel_att_sum).reshape(*x.shape[:2], *([1] * self.dim)).expand_as(x)
        return x * scale


class ChannelPool(nn.Module):
    def forward(self, x):
        return torch.cat((torch.max(x, 1)[0].unsqueeze(1), torch.mean(x, 1).unsqueeze(1)), dim=1)


class SpatialGate(nn.Module):
    def __init__(self, dim=2, kernel_size=7):
        super().__init__()
        self.compress = ChannelPool()
        self.spatial = BasicConv(2, 1, kernel_size, padding=(kernel_size - 1) // 2, relu=False, dim=dim)

    def forward(self, x):
        return x * torch.sigmoid(self.spatial(self.compress(x)))


class CBAM(nn.Module):
    def __init__(self, gate_channels, reduction_ratio=16, no_spatial=False, dim=2, kernel_size=7):
        super().__init__()
        self.ChannelGate = ChannelGate(gate_channels, reduction_ratio, dim)
        self.no_spatial = no_spatial
        if not no_spatial:
            self.SpatialGate = SpatialGate(dim, kernel_size)

    def forward(self, x):
        x_out = self.ChannelGate(x)
        if not self.no_spatial:
            x_out = self.SpatialGate(x_out)
        return x_out


def cbam_pair(channels, reduction=16, no_spatial=False, dim=2, kernel_size=7):
    official = randomize_(CBAM(channels, reduction, no_spatial, dim, kernel_size))
    ours = excite.create(
        "cbam", channels, dim=dim, reduction=reduction, spatial=not no_spatial, spatial_kernel=kernel_size
    )
    excite.load_official(ours, official.state_dict(), "official")
    return official, ours


@pytest.mark.parametrize("channels, reduction, size", [(32, 16, (7, 7)), (48, 4, (9, 5)), (64, 16, (3, 12))])
@pytest.mark.parametrize("no_spatial", [False, True])
def test_cbam_matches_official_eval(channels, reduction, size, no_spatial):
    official, ours = cbam_pair(channels, reduction, no_spatial)
    official.eval(), ours.eval()
    x = torch.randn(2, channels, *size)
    assert_fp32_close(ours(x), official(x))


def test_cbam_matches_official_training():
    """BatchNorm(1, momentum=0.01) after the spatial conv: outputs and running stats agree."""
    official, ours = cbam_pair(32)
    official.train(), ours.train()
    x = torch.randn(3, 32, 8, 6)
    for _ in range(3):
        assert_fp32_close(ours(x), official(x))
    assert_fp32_close(ours.spatial_norm.running_mean, official.SpatialGate.spatial.bn.running_mean)
    assert_fp32_close(ours.spatial_norm.running_var, official.SpatialGate.spatial.bn.running_var)


@pytest.mark.parametrize("dim, size", [(1, (13,)), (3, (4, 5, 6))])
@pytest.mark.parametrize("kernel_size", [3, 7])
def test_cbam_matches_nd_structure(dim, size, kernel_size):
    official, ours = cbam_pair(16, 4, dim=dim, kernel_size=kernel_size)
    official.eval(), ours.eval()
    x = torch.randn(2, 16, *size)
    assert_fp32_close(ours(x), official(x))


@pytest.mark.parametrize("channels", [32, 40, 64])
@pytest.mark.parametrize("train", [False, True])
def test_cbam_matches_timm_cbam_module(channels, train):
    """timm: no MLP biases, [mean, max] order, hidden width rounded to nearest (C=40 gives 3, not 2)."""
    cbam = pytest.importorskip("timm.layers.cbam")
    peer = randomize_(cbam.CbamModule(channels)).train(train)
    hidden = peer.channel.fc1.out_channels
    assert hidden == max(1, int(channels / 16 + 0.5))
    ours = excite.create(
        "cbam", channels, hidden_channels=hidden, mlp_bias=False, spatial_pool_order=("mean", "max")
    )
    excite.load_official(ours, peer.state_dict(), "timm").train(train)
    x = torch.randn(2, channels, 6, 7)
    assert_fp32_close(ours(x), peer(x))


def test_cbam_pool_order_matters():
    """The official [max, mean] order is the default; swapping the conv's input channels compensates."""
    x = torch.randn(2, 16, 6, 6)
    official_order = randomize_(excite.create("cbam", 16, reduction=4)).eval()
    swapped = excite.create("cbam", 16, reduction=4, spatial_pool_order=("mean", "max")).eval()
    swapped.load_state_dict(official_order.state_dict())
    assert not torch.allclose(swapped(x), official_order(x))
    with torch.no_grad():
        swapped.spatial_conv.weight.copy_(official_order.spatial_conv.weight.flip(1))
    assert_fp32_close(swapped(x), official_order(x))


def test_cbam_rejects_bad_options():
    with pytest.raises(ValueError, match="CBAM: spatial_kernel.*odd.*6"):
        excite.create("cbam", 32, spatial_kernel=6)
    with pytest.raises(ValueError, match="CBAM: spatial_pool_order"):
        excite.create("cbam", 32, spatial_pool_order=("max", "max"))


# ---------------------------------------------------------------------------------------------------
# Parameter counts
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("channels, reduction", [(16, 16), (64, 16), (96, 8), (256, 16)])
@pytest.mark.parametrize("kernel_size", [3, 7])
@pytest.mark.parametrize("dim", [1, 2, 3])
def test_cbam_parameter_count(channels, reduction, kernel_size, dim):
    hidden = channels // reduction
    module = excite.create("cbam", channels, dim=dim, reduction=reduction, spatial_kernel=kernel_size)
    expected = 2 * channels * hidden + hidden + channels + 2 * kernel_size**dim + 2
    assert sum(p.numel() for p in module.parameters()) == expected
