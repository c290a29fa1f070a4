"""SPSE and RGSE against the attention part of megvii-research/RG-SENet_SP-SENet's ``Bottleneck``
(``spse_resnet.py``, ``rgse_resnet.py``), in eval and training mode, at the stage resolutions of the
released ResNets and at others; batch size 1; the N-D extension; parameter counts."""

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
# Transcription of the attention branch of both Bottlenecks, with the official attribute names (so
# the state dict keys are a real block's, minus the "layerX.layerX_block_Y." prefix). In the official
# code ``res`` is the bn3 output and the result is ``res * se_out`` before the shortcut is added.
# The layers are picked by ``dim``: 2-D is the official code, 1-D and 3-D the same structure.
# ---------------------------------------------------------------------------------------------------

_CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
_BN = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}
_ADAPTIVE = {1: nn.AdaptiveAvgPool1d, 2: nn.AdaptiveAvgPool2d, 3: nn.AdaptiveAvgPool3d}
_AVG = {1: nn.AvgPool1d, 2: nn.AvgPool2d, 3: nn.AvgPool3d}


class SpseAttention(nn.Module):
    def __init__(self, conv3_out, dim=2):
        super().__init__()
        self.pool1 = _ADAPTIVE[dim](1)
        self.pool2 = _ADAPTIVE[dim](2)
        self.pool4 = _ADAPTIVE[dim](4)
        self.fc_spatial1 = _CONV[dim](conv3_out, conv3_out, kernel_size=1, groups=conv3_out)
        self.fc_spatial2 = _CONV[dim](conv3_out, conv3_out, kernel_size=2, groups=conv3_out)
        self.fc_spatial4 = _CONV[dim](conv3_out, conv3_out, kernel_size=4, groups=conv3_out)
        self.fc_bn = _BN[dim](conv3_out)
        self.fc_reduction = nn.Linear(in_features=conv3_out, out_features=conv3_out // 16)
        self.fc_extention = nn.Linear(in_features=conv3_out // 16, out_features=conv3_out)
        self.sigmoid = nn.Sigmoid()

    def forward(self, res):
        se_out1 = self.fc_spatial1(self.pool1(res))
        se_out2 = self.fc_spatial2(self.pool2(res))
        se_out4 = self.fc_spatial4(self.pool4(res))
        se_out = se_out1 + se_out2 + se_out4
        se_out = F.relu(self.fc_bn(se_out), inplace=True)
        se_out = se_out.view(se_out.size(0), -1)
        se_out = F.relu(self.fc_reduction(se_out), inplace=True)
        se_out = self.fc_extention(se_out)
        se_out = self.sigmoid(se_out)
        se_out = se_out.view(se_out.size(0), se_out.size(1), *([1] * (res.dim() - 2)))
        return res * se_out


class RgseAttention(nn.Module):
    """``fusion_kernel`` 8, 4, 2 for planes 64, 128, 256 (stages 1-3); None for stage 4."""

    def __init__(self, conv3_out, fusion_kernel, dim=2):
        super().__init__()
        self.Pool = _AVG[dim](7, 7)
        self.fc_spatial = nn.Sequential()
        if fusion_kernel is not None:
            k = fusion_kernel
            self.fc_spatial.add_module(
                "fc_spatial",
                _CONV[dim](conv3_out, conv3_out, kernel_size=k, stride=k, groups=conv3_out, bias=False),
            )
            self.fc_spatial.add_module("bn_spatial", _BN[dim](conv3_out))
        self.fc_reduction = nn.Linear(in_features=conv3_out, out_features=conv3_out // 16)
        self.fc_extention = nn.Linear(in_features=conv3_out // 16, out_features=conv3_out)
        self.sigmoid = nn.Sigmoid()

    def forward(self, res):
        se_out = self.Pool(res)
        se_out = self.fc_spatial(se_out)
        se_out = F.relu(se_out, inplace=True)
        se_out = se_out.view(se_out.size(0), -1)
        se_out = self.fc_reduction(se_out)
        se_out = F.relu(se_out, inplace=True)
        se_out = self.fc_extention(se_out)
        se_out = self.sigmoid(se_out)
        se_out = se_out.view(se_out.size(0), se_out.size(1), *([1] * (res.dim() - 2)))
        return se_out * res


def spse_pair(channels, dim=2):
    official = randomize_(SpseAttention(channels, dim))
    ours = excite.create("spse", channels, dim=dim)
    excite.load_official(ours, official.state_dict(), "official")
    return official, ours


def rgse_pair(channels, fusion_kernel, dim=2):
    official = randomize_(RgseAttention(channels, fusion_kernel, dim))
    ours = excite.create("rgse", channels, dim=dim, fusion_kernel=fusion_kernel)
    excite.load_official(ours, official.state_dict(), "official")
    return official, ours


def assert_same_running_stats(ours_norm, official_norm):
    assert_fp32_close(ours_norm.running_mean, official_norm.running_mean)
    assert_fp32_close(ours_norm.running_var, official_norm.running_var)
    assert int(ours_norm.num_batches_tracked) == int(official_norm.num_batches_tracked)


# ---------------------------------------------------------------------------------------------------
# SPSE
# ---------------------------------------------------------------------------------------------------

# 56/28/14/7 are the released stage sizes; 9x7 pools with overlapping windows; 3x3 is smaller than the
# 4x4 level, so adaptive pooling repeats cells.
SPSE_SIZES = [(56, 56), (14, 14), (7, 7), (9, 7), (3, 3)]


@pytest.mark.parametrize("size", SPSE_SIZES)
def test_spse_matches_official_eval(size):
    official, ours = spse_pair(32)
    official.eval(), ours.eval()
    x = torch.randn(2, 32, *size)
    assert_fp32_close(ours(x), official(x), atol=2e-6, rtol=2e-5)


@pytest.mark.parametrize("size", [(14, 14), (9, 7)])
def test_spse_matches_official_training(size):
    official, ours = spse_pair(32)
    official.train(), ours.train()
    x = torch.randn(4, 32, *size)
    for _ in range(2):
        assert_fp32_close(ours(x), official(x), atol=2e-6, rtol=2e-5)
    assert_same_running_stats(ours.norm, official.fc_bn)


@pytest.mark.parametrize("dim, size", [(1, (11,)), (1, (3,)), (3, (4, 5, 6)), (3, (8, 8, 8))])
def test_spse_matches_nd_structure(dim, size):
    official, ours = spse_pair(16, dim)
    official.eval(), ours.eval()
    x = torch.randn(2, 16, *size)
    assert_fp32_close(ours(x), official(x), atol=2e-6, rtol=2e-5)


def test_spse_batch_of_one_in_training_uses_running_statistics():
    """nn.BatchNorm refuses one value per channel in training; ours normalises with the running
    statistics and leaves them unchanged, so the output equals the official block in eval mode."""
    official, ours = spse_pair(32)
    official.eval(), ours.train()
    x = torch.randn(1, 32, 8, 8, requires_grad=True)
    before = (
        ours.norm.running_mean.clone(),
        ours.norm.running_var.clone(),
        int(ours.norm.num_batches_tracked),
    )
    out = ours(x)
    assert_fp32_close(out, official(x))
    out.sum().backward()
    assert torch.isfinite(x.grad).all()
    assert torch.equal(ours.norm.running_mean, before[0]) and torch.equal(ours.norm.running_var, before[1])
    assert int(ours.norm.num_batches_tracked) == before[2]
    with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
        official.train()(x)


# ---------------------------------------------------------------------------------------------------
# RGSE
# ---------------------------------------------------------------------------------------------------

# (fusion kernel, input size): the four stages of RGSE-ResNet at 224, then sizes that are not
# multiples of 7, where AvgPool2d(7, 7) drops the remainder.
RGSE_CASES = [(8, 56), (4, 28), (2, 14), (None, 7), (2, 15), (None, 12), (4, 30)]


@pytest.mark.parametrize("fusion_kernel, size", RGSE_CASES)
def test_rgse_matches_official_eval(fusion_kernel, size):
    official, ours = rgse_pair(32, fusion_kernel)
    official.eval(), ours.eval()
    x = torch.randn(2, 32, size, size)
    assert_fp32_close(ours(x), official(x), atol=2e-6, rtol=2e-5)


@pytest.mark.parametrize("fusion_kernel, size", [(4, 28), (2, 14), (None, 7)])
def test_rgse_matches_official_training(fusion_kernel, size):
    official, ours = rgse_pair(32, fusion_kernel)
    official.train(), ours.train()
    x = torch.randn(4, 32, size, size)
    for _ in range(2):
        assert_fp32_close(ours(x), official(x), atol=2e-6, rtol=2e-5)
    if fusion_kernel is not None:
        assert_same_running_stats(ours.norm, official.fc_spatial.bn_spatial)


@pytest.mark.parametrize("dim, fusion_kernel, size", [(1, 2, (14,)), (1, None, (9,)), (3, 2, (14, 15, 14))])
def test_rgse_matches_nd_structure(dim, fusion_kernel, size):
    official, ours = rgse_pair(16, fusion_kernel, dim)
    official.eval(), ours.eval()
    x = torch.randn(2, 16, *size)
    assert_fp32_close(ours(x), official(x), atol=2e-6, rtol=2e-5)


def test_rgse_batch_of_one_in_training():
    official, ours = rgse_pair(32, 2)
    official.eval(), ours.train()
    x = torch.randn(1, 32, 14, 14, requires_grad=True)
    out = ours(x)
    assert_fp32_close(out, official(x))
    out.sum().backward()
    assert torch.isfinite(x.grad).all()


def test_rgse_refuses_a_resolution_that_does_not_collapse_to_one_value():
    ours = excite.create("rgse", 32, fusion_kernel=2)
    with pytest.raises(ValueError, match=r"RGSE.*\[2, 2\] values per channel.*\[28, 28\]"):
        ours(torch.randn(2, 32, 28, 28))
    with pytest.raises(ValueError, match=r"RGSE.*\[5, 5\].*smaller than the 7-wide pooling window"):
        ours(torch.randn(2, 32, 5, 5))


# ---------------------------------------------------------------------------------------------------
# Parameter counts
# ---------------------------------------------------------------------------------------------------


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def se_count(channels, reduction=16):
    hidden = channels // reduction
    return 2 * channels * hidden + hidden + channels


@pytest.mark.parametrize("channels", [16, 64, 256, 2048])
@pytest.mark.parametrize("dim", [1, 2, 3])
def test_spse_parameter_count(channels, dim):
    # Depthwise k^dim weights and a bias per level (1, 2, 4), and BatchNorm: 26·C in 2-D.
    fusion = sum(k**dim + 1 for k in (1, 2, 4)) * channels + 2 * channels
    assert count(excite.create("spse", channels, dim=dim)) == se_count(channels) + fusion
    if dim == 2:
        assert fusion == 26 * channels


@pytest.mark.parametrize("channels", [16, 64, 256])
@pytest.mark.parametrize("fusion_kernel", [None, 2, 4, 8])
@pytest.mark.parametrize("dim", [1, 2, 3])
def test_rgse_parameter_count(channels, fusion_kernel, dim):
    extra = 0 if fusion_kernel is None else (fusion_kernel**dim + 2) * channels
    module = excite.create("rgse", channels, dim=dim, fusion_kernel=fusion_kernel)
    assert count(module) == se_count(channels) + extra


def test_resnet50_overheads_match_published_counts():
    """SPSE-ResNet-50 28,480,728 and RGSE-ResNet-50 28,212,440 vs SE-ResNet-50 28,088,024."""
    stages = [(256, 3, 8), (512, 4, 4), (1024, 6, 2), (2048, 3, None)]
    se_total = sum(n * se_count(c) for c, n, _ in stages)
    spse_total = sum(n * count(excite.create("spse", c)) for c, n, _ in stages)
    rgse_total = sum(n * count(excite.create("rgse", c, fusion_kernel=k)) for c, n, k in stages)
    assert spse_total - se_total == 28_480_728 - 28_088_024
    assert rgse_total - se_total == 28_212_440 - 28_088_024
