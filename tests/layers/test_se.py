"""SE and cSE against the official arithmetic, the peer libraries and the closed-form parameter counts.

The official SE model is a Caffe prototxt (hujie-frank/SENet: global average pooling, 1x1 conv "down"
with bias, ReLU, 1x1 conv "up" with bias, sigmoid, scale); it has no PyTorch state dict, so SE is
compared with the formula transcribed below and with the peers that reproduce it (timm ``SEModule``,
torchvision ``SqueezeExcitation``, MONAI ``ChannelSELayer``). cSE is compared with a transcription of
ai-med/squeeze_and_excitation ``ChannelSELayer`` (2-D) and ``ChannelSELayer3D``.
"""

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
# Transcription of ai-med/squeeze_and_excitation (squeeze_and_excitation.py, squeeze_and_excitation_3D.py)
# ---------------------------------------------------------------------------------------------------


class AiMedChannelSELayer(nn.Module):
    """ai-med ``ChannelSELayer``: the squeeze is ``view(N, C, -1).mean(2)``, FCs are Linear with bias."""

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


class AiMedChannelSELayer3D(nn.Module):
    """ai-med ``ChannelSELayer3D``: the squeeze is ``AdaptiveAvgPool3d(1)``."""

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


def se_formula(x, w1, b1, w2, b2, activation=F.relu, gate=torch.sigmoid):
    """The paper's eq.: ``x * σ(W2 δ(W1 GAP(x) + b1) + b2)``, written out with plain tensor algebra."""
    z = x.flatten(2).sum(-1) / x[0, 0].numel()
    hidden = z @ w1.t()
    if b1 is not None:
        hidden = hidden + b1
    s = activation(hidden) @ w2.t()
    if b2 is not None:
        s = s + b2
    return x * gate(s).reshape(*s.shape, *([1] * (x.dim() - 2)))


# ---------------------------------------------------------------------------------------------------
# cSE vs the official ai-med code
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("channels, reduction, size", [(16, 2, (6, 5)), (24, 2, (7, 7)), (32, 4, (3, 9))])
def test_cse_matches_official_2d(channels, reduction, size):
    official = randomize_(AiMedChannelSELayer(channels, reduction)).eval()
    ours = excite.create("cse", channels, dim=2, reduction=reduction)
    excite.load_official(ours, official.state_dict(), "official")
    x = torch.randn(3, channels, *size)
    assert_fp32_close(ours(x), official(x))


@pytest.mark.parametrize("channels, reduction, size", [(16, 2, (4, 5, 3)), (24, 3, (2, 6, 6))])
def test_cse_matches_official_3d(channels, reduction, size):
    official = randomize_(AiMedChannelSELayer3D(channels, reduction)).eval()
    ours = excite.create("cse", channels, dim=3, reduction=reduction)
    excite.load_official(ours, official.state_dict(), "official")
    x = torch.randn(2, channels, *size)
    assert_fp32_close(ours(x), official(x))


def test_cse_defaults_are_ai_med():
    cse = excite.create("cse", 32)
    assert cse.hidden_channels == 16
    assert cse.fc1.bias is not None and cse.fc2.bias is not None


# ---------------------------------------------------------------------------------------------------
# SE vs the formula, for every dim and variant
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dim, size", [(1, (11,)), (2, (6, 5)), (3, (3, 4, 5))])
@pytest.mark.parametrize(
    "options, activation, gate",
    [
        ({}, F.relu, torch.sigmoid),
        ({"bias": False}, F.relu, torch.sigmoid),
        ({"hidden_channels": 5}, F.relu, torch.sigmoid),
        ({"gate": "hardsigmoid", "activation": "hardswish"}, F.hardswish, F.hardsigmoid),
        ({"activation": "silu"}, F.silu, torch.sigmoid),
    ],
)
def test_se_matches_paper_formula(dim, size, options, activation, gate):
    channels = 32
    ours = randomize_(excite.create("se", channels, dim=dim, reduction=8, **options))
    x = torch.randn(2, channels, *size)
    expected = se_formula(
        x, ours.fc1.weight, ours.fc1.bias, ours.fc2.weight, ours.fc2.bias, activation=activation, gate=gate
    )
    assert_fp32_close(ours(x), expected)


# ---------------------------------------------------------------------------------------------------
# SE vs the installed peers
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("channels", [24, 64, 256])
@pytest.mark.parametrize("bias", [True, False])
def test_se_matches_timm_semodule(channels, bias):
    timm_layers = pytest.importorskip("timm.layers")
    peer = randomize_(timm_layers.SEModule(channels, bias=bias)).eval()
    # timm rounds the hidden width with make_divisible(C/16, 8): C=64 gives 8, not 4.
    hidden = peer.fc1.out_channels
    assert hidden == {24: 8, 64: 8, 256: 16}[channels]
    ours = excite.create("se", channels, hidden_channels=hidden, bias=bias)
    excite.load_official(ours, peer.state_dict(), "timm")
    x = torch.randn(2, channels, 5, 6)
    assert_fp32_close(ours(x), peer(x))


def test_se_matches_torchvision_squeeze_excitation():
    ops = pytest.importorskip("torchvision.ops")
    peer = randomize_(ops.SqueezeExcitation(48, 12)).eval()
    ours = excite.create("se", 48, hidden_channels=12)
    excite.load_official(ours, peer.state_dict(), "torchvision")
    x = torch.randn(2, 48, 7, 5)
    assert_fp32_close(ours(x), peer(x))


def test_se_matches_torchvision_mobilenetv3_configuration():
    """MobileNetV3: squeeze width ``_make_divisible(C // 4, 8)`` and a hard-sigmoid gate."""
    ops = pytest.importorskip("torchvision.ops")
    mobilenetv3 = pytest.importorskip("torchvision.models.mobilenetv3")
    channels = 72
    squeeze = mobilenetv3._make_divisible(channels // 4, 8)
    peer = randomize_(ops.SqueezeExcitation(channels, squeeze, scale_activation=nn.Hardsigmoid)).eval()
    ours = excite.create("se", channels, hidden_channels=squeeze, gate="hardsigmoid")
    excite.load_official(ours, peer.state_dict(), "torchvision")
    x = torch.randn(2, channels, 4, 4)
    assert_fp32_close(ours(x), peer(x))


@pytest.mark.parametrize("dim, size", [(1, (9,)), (2, (5, 6)), (3, (3, 4, 2))])
@pytest.mark.parametrize("name, r", [("cse", 2), ("se", 4)])
def test_se_matches_monai_channel_se_layer(dim, size, name, r):
    blocks = pytest.importorskip("monai.networks.blocks")
    channels = 16
    peer = randomize_(blocks.ChannelSELayer(dim, channels, r=r)).eval()
    ours = excite.create(name, channels, dim=dim, reduction=r)
    excite.load_official(ours, peer.state_dict(), "monai")
    x = torch.randn(2, channels, *size)
    assert_fp32_close(ours(x), peer(x))


# ---------------------------------------------------------------------------------------------------
# Parameter counts: the spec's closed forms
# ---------------------------------------------------------------------------------------------------


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("dim", [1, 2, 3])
@pytest.mark.parametrize("channels", [16, 24, 64, 100, 256])
@pytest.mark.parametrize("reduction", [4, 16])
def test_se_parameter_count(dim, channels, reduction):
    hidden = channels // reduction
    with_bias = excite.create("se", channels, dim=dim, reduction=reduction)
    without_bias = excite.create("se", channels, dim=dim, reduction=reduction, bias=False)
    assert count(with_bias) == 2 * channels * hidden + hidden + channels
    assert count(without_bias) == 2 * channels * hidden


@pytest.mark.parametrize("channels", [16, 24, 64, 100])
def test_cse_parameter_count(channels):
    hidden = channels // 2
    assert count(excite.create("cse", channels)) == 2 * channels * hidden + hidden + channels


RESNET50_BLOCK_CHANNELS = [256] * 3 + [512] * 4 + [1024] * 6 + [2048] * 3


def test_se_resnet50_overhead_matches_published_counts():
    """SE-ResNet-50 (timm/legacy, bias) 28,088,024 minus ResNet-50 25,557,032; no bias: 28,071,976."""
    with_bias = sum(count(excite.create("se", c)) for c in RESNET50_BLOCK_CHANNELS)
    without_bias = sum(count(excite.create("se", c, bias=False)) for c in RESNET50_BLOCK_CHANNELS)
    assert with_bias == 28_088_024 - 25_557_032
    assert without_bias == 28_071_976 - 25_557_032
