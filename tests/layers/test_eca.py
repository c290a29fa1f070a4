"""ECA and CECA against the official ``eca_layer``, timm's ``EcaModule``/``CecaModule``, the per-channel
formula, the adaptive kernel-size table and the published parameter counts."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from excite_test_helpers import assert_fp32_close, randomize_
from torch import nn

import excite
from excite.layers import adaptive_kernel_size

# Every test runs on the default (fused) path and on the reference path.
pytestmark = pytest.mark.usefixtures("forward_path")

# ---------------------------------------------------------------------------------------------------
# Transcription of BangguWu/ECANet models/eca_module.py ``eca_layer``. The official module is 2-D; the
# pooling layer is picked by ``dim`` so that the same transpose / Conv1d / transpose sequence also runs
# on (N, C, L) and (N, C, D, H, W).
# ---------------------------------------------------------------------------------------------------

_ADAPTIVE_POOL = {1: nn.AdaptiveAvgPool1d, 2: nn.AdaptiveAvgPool2d, 3: nn.AdaptiveAvgPool3d}


class EcaLayer(nn.Module):
    def __init__(self, channel: int, k_size: int = 3, dim: int = 2) -> None:
        super().__init__()
        self.avg_pool = _ADAPTIVE_POOL[dim](1)
        self.conv = nn.Conv1d(1, 1, kernel_size=k_size, padding=(k_size - 1) // 2, bias=False)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x):
        y = self.avg_pool(x)  # (N, C, 1, ..., 1)
        y = y.reshape(x.shape[0], x.shape[1], 1)  # the official squeeze(-1) for 2-D
        y = self.conv(y.transpose(-1, -2)).transpose(-1, -2)
        y = self.sigmoid(y).reshape(*x.shape[:2], *([1] * (x.dim() - 2)))
        return x * y.expand_as(x)


@pytest.mark.parametrize("dim, size", [(1, (12,)), (2, (7, 5)), (3, (3, 4, 5))])
@pytest.mark.parametrize("kernel_size", [1, 3, 5, 7])
def test_eca_matches_official(dim, size, kernel_size):
    channels = 24
    official = randomize_(EcaLayer(channels, kernel_size, dim=dim)).eval()
    ours = excite.create("eca", channels, dim=dim, kernel_size=kernel_size)
    excite.load_official(ours, official.state_dict(), "official")
    x = torch.randn(2, channels, *size)
    assert_fp32_close(ours(x), official(x))


def test_eca_official_layer_without_channels():
    """The official ``eca_layer`` ignores ``channel``; ECA built from ``kernel_size`` alone takes any C."""
    official = randomize_(EcaLayer(0, 5)).eval()
    ours = excite.create("eca", None, kernel_size=5)
    excite.load_official(ours, official.state_dict(), "official")
    for channels in (3, 40):
        x = torch.randn(2, channels, 4, 6)
        assert_fp32_close(ours(x), official(x))


# ---------------------------------------------------------------------------------------------------
# The per-channel formula, zero and circular padding
# ---------------------------------------------------------------------------------------------------


def eca_formula(x, weight, circular):
    """``a_c = Σ_j w_j z_{c+j-h}`` with z = GAP(x), out-of-range z = 0 (or wrapped round)."""
    z = x.flatten(2).mean(-1)
    channels = z.shape[1]
    half = (weight.numel() - 1) // 2
    a = torch.zeros_like(z)
    for c in range(channels):
        for j, w in enumerate(weight.tolist()):
            source = c + j - half
            if circular:
                a[:, c] += w * z[:, source % channels]
            elif 0 <= source < channels:
                a[:, c] += w * z[:, source]
    return x * torch.sigmoid(a).reshape(*z.shape, *([1] * (x.dim() - 2)))


@pytest.mark.parametrize("padding", ["zeros", "circular"])
@pytest.mark.parametrize("dim, size", [(1, (9,)), (2, (4, 5)), (3, (2, 3, 4))])
def test_eca_matches_formula(padding, dim, size):
    ours = randomize_(excite.create("eca", 10, dim=dim, kernel_size=5, padding=padding))
    x = torch.randn(3, 10, *size)
    expected = eca_formula(x, ours.conv.weight.reshape(-1), circular=padding == "circular")
    assert_fp32_close(ours(x), expected)


# ---------------------------------------------------------------------------------------------------
# timm peers
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("channels", [4, 16, 256, 2048])
def test_eca_matches_timm_eca_module(channels):
    """timm computes k with the same rule but clamps it to >= 3 (C=4 gives 1 here, 3 in timm)."""
    eca = pytest.importorskip("timm.layers.eca")
    peer = randomize_(eca.EcaModule(channels)).eval()
    timm_k = peer.conv.kernel_size[0]
    assert timm_k == max(adaptive_kernel_size(channels), 3)
    ours = excite.create("eca", channels, kernel_size=timm_k)
    excite.load_official(ours, peer.state_dict(), "timm")
    x = torch.randn(2, channels, 3, 4)
    assert_fp32_close(ours(x), peer(x))


@pytest.mark.parametrize("channels", [8, 64, 512])
def test_circular_eca_matches_timm_ceca_module(channels):
    eca = pytest.importorskip("timm.layers.eca")
    peer = randomize_(eca.CecaModule(channels)).eval()
    ours = excite.create("eca", channels, kernel_size=peer.conv.kernel_size[0], padding="circular")
    excite.load_official(ours, peer.state_dict(), "timm")
    x = torch.randn(2, channels, 5, 3)
    assert_fp32_close(ours(x), peer(x))


def test_circular_padding_differs_from_zero_padding_at_the_ends_only():
    x = torch.randn(2, 12, 4, 4)
    zeros = randomize_(excite.create("eca", 12, kernel_size=3))
    circular = excite.create("eca", 12, kernel_size=3, padding="circular")
    circular.load_state_dict(zeros.state_dict())
    gate_zeros = zeros(x) / x
    gate_circular = circular(x) / x
    assert_fp32_close(gate_zeros[:, 1:-1], gate_circular[:, 1:-1])
    assert not torch.allclose(gate_zeros[:, 0], gate_circular[:, 0])
    assert not torch.allclose(gate_zeros[:, -1], gate_circular[:, -1])


# ---------------------------------------------------------------------------------------------------
# Adaptive k and parameter counts
# ---------------------------------------------------------------------------------------------------

# The spec's table: t = int(|(log2 C + b)/γ|), k = t if odd else t + 1, with γ = 2, b = 1.
ADAPTIVE_K = {64: 3, 128: 5, 256: 5, 512: 5, 1024: 5, 2048: 7, 96: 3, 160: 5, 320: 5, 16: 3}


@pytest.mark.parametrize("channels, k", sorted(ADAPTIVE_K.items()))
def test_adaptive_kernel_size_table(channels, k):
    assert adaptive_kernel_size(channels) == k
    module = excite.create("eca", channels)
    assert module.kernel_size == k
    assert sum(p.numel() for p in module.parameters()) == k


def test_adaptive_kernel_size_options():
    # gamma=1, b=0: t = int(log2 C) = 6 for C=64, bumped to 7.
    assert excite.create("eca", 64, gamma=1, b=0).kernel_size == 7
    assert excite.create("eca", 64, kernel_size=9).kernel_size == 9


@pytest.mark.parametrize("dim", [1, 2, 3])
@pytest.mark.parametrize("k", [1, 3, 5, 9])
def test_eca_parameter_count_is_k(dim, k):
    assert sum(p.numel() for p in excite.create("eca", 32, dim=dim, kernel_size=k).parameters()) == k


def test_eca_resnet50_parameter_counts():
    """ECA-ResNet-50 k3557: the paper's 80 parameters; the adaptive rule per stage gives 5, 5, 5, 7: 86."""
    blocks = {256: 3, 512: 4, 1024: 6, 2048: 3}
    released = dict(zip(blocks, (3, 5, 5, 7)))

    def total(make):
        return sum(n * sum(p.numel() for p in make(c).parameters()) for c, n in blocks.items())

    assert total(lambda c: excite.create("eca", c, kernel_size=released[c])) == 80
    assert total(lambda c: excite.create("eca", c)) == 86


def test_even_kernel_size_is_rejected():
    with pytest.raises(ValueError, match="ECA.*odd.*4"):
        excite.create("eca", 16, kernel_size=4)


def test_zero_padding_is_the_official_default():
    eca = randomize_(excite.create("eca", 6, kernel_size=3))
    z = torch.randn(2, 6)
    weight = eca.conv.weight.reshape(1, 1, 3)
    expected = torch.sigmoid(F.conv1d(z.unsqueeze(1), weight, padding=1).squeeze(1))
    assert_fp32_close(eca.excitation(z), expected)
