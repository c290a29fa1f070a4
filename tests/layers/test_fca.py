"""FcaNet's multi-spectral attention against a transcription of cfzd/FcaNet ``model/layer.py``: the
frequency tables, index scaling by ``dct // 7``, the DCT filter built the official way, the sum (not
mean), the adaptive-pooling branch, the contiguous channel split; then the N-D extension against its
definition, and the parameter counts."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from excite_test_helpers import assert_fp32_close, randomize_
from torch import nn

import excite
from excite.layers.fca import named_frequencies

# Every test runs on the default (fused) path and on the reference path.
pytestmark = pytest.mark.usefixtures("forward_path")

# ---------------------------------------------------------------------------------------------------
# Transcription of cfzd/FcaNet model/layer.py
# ---------------------------------------------------------------------------------------------------


# The official 32-entry tables (x = row/height index, y = column/width index).
ALL_TOP_X = [0, 0, 6, 0, 0, 1, 1, 4, 5, 1, 3, 0, 0, 0, 3, 2, 4, 6, 3, 5, 5, 2, 6, 5, 5, 3, 3, 4, 2, 2, 6, 1]
ALL_TOP_Y = [0, 1, 0, 5, 2, 0, 2, 0, 0, 6, 0, 4, 6, 3, 5, 2, 6, 3, 3, 3, 5, 1, 1, 2, 4, 2, 1, 1, 3, 0, 5, 3]
ALL_LOW_X = [0, 0, 1, 1, 0, 2, 2, 1, 2, 0, 3, 4, 0, 1, 3, 0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 5, 6, 1, 2, 3, 4]
ALL_LOW_Y = [0, 1, 0, 1, 2, 0, 1, 2, 2, 3, 0, 0, 4, 3, 1, 5, 4, 3, 2, 1, 0, 6, 5, 4, 3, 2, 1, 0, 6, 5, 4, 3]
ALL_BOT_X = [6, 1, 3, 3, 2, 4, 1, 2, 4, 4, 5, 1, 4, 6, 2, 5, 6, 1, 6, 2, 2, 4, 3, 3, 5, 5, 6, 2, 5, 5, 3, 6]
ALL_BOT_Y = [6, 4, 4, 6, 6, 3, 1, 4, 4, 5, 6, 5, 2, 2, 5, 1, 4, 3, 5, 0, 3, 1, 1, 2, 4, 2, 1, 1, 5, 3, 3, 3]


def get_freq_indices(method):
    assert method in [f"{kind}{n}" for kind in ("top", "bot", "low") for n in (1, 2, 4, 8, 16, 32)]
    num_freq = int(method[3:])
    if "top" in method:
        mapper_x, mapper_y = ALL_TOP_X[:num_freq], ALL_TOP_Y[:num_freq]
    elif "low" in method:
        mapper_x, mapper_y = ALL_LOW_X[:num_freq], ALL_LOW_Y[:num_freq]
    else:
        mapper_x, mapper_y = ALL_BOT_X[:num_freq], ALL_BOT_Y[:num_freq]
    return mapper_x, mapper_y


class MultiSpectralDCTLayer(nn.Module):
    def __init__(self, height, width, mapper_x, mapper_y, channel, learnable=False):
        super().__init__()
        assert len(mapper_x) == len(mapper_y)
        assert channel % len(mapper_x) == 0
        self.num_freq = len(mapper_x)
        dct_filter = self.get_dct_filter(height, width, mapper_x, mapper_y, channel)
        if learnable:  # the commented-out "learnable DCT init" alternative of the official file
            self.register_parameter("weight", nn.Parameter(dct_filter))
        else:
            self.register_buffer("weight", dct_filter)

    def forward(self, x):
        assert len(x.shape) == 4
        x = x * self.weight
        return torch.sum(x, dim=[2, 3])

    def build_filter(self, pos, freq, POS):
        result = math.cos(math.pi * freq * (pos + 0.5) / POS) / math.sqrt(POS)
        if freq == 0:
            return result
        return result * math.sqrt(2)

    def get_dct_filter(self, tile_size_x, tile_size_y, mapper_x, mapper_y, channel):
        dct_filter = torch.zeros(channel, tile_size_x, tile_size_y)
        c_part = channel // len(mapper_x)
        for i, (u_x, v_y) in enumerate(zip(mapper_x, mapper_y)):
            for t_x in range(tile_size_x):
                for t_y in range(tile_size_y):
                    dct_filter[i * c_part : (i + 1) * c_part, t_x, t_y] = self.build_filter(
                        t_x, u_x, tile_size_x
                    ) * self.build_filter(t_y, v_y, tile_size_y)
        return dct_filter


class MultiSpectralAttentionLayer(nn.Module):
    def __init__(self, channel, dct_h, dct_w, reduction=16, freq_sel_method="top16", learnable=False):
        super().__init__()
        self.reduction = reduction
        self.dct_h = dct_h
        self.dct_w = dct_w
        mapper_x, mapper_y = get_freq_indices(freq_sel_method)
        self.num_split = len(mapper_x)
        mapper_x = [temp_x * (dct_h // 7) for temp_x in mapper_x]
        mapper_y = [temp_y * (dct_w // 7) for temp_y in mapper_y]
        self.dct_layer = MultiSpectralDCTLayer(dct_h, dct_w, mapper_x, mapper_y, channel, learnable)
        self.fc = nn.Sequential(
            nn.Linear(channel, channel // reduction, bias=False),
            nn.ReLU(inplace=True),
            nn.Linear(channel // reduction, channel, bias=False),
            nn.Sigmoid(),
        )

    def forward(self, x):
        n, c, h, w = x.shape
        x_pooled = x
        if h != self.dct_h or w != self.dct_w:
            x_pooled = F.adaptive_avg_pool2d(x, (self.dct_h, self.dct_w))
        y = self.dct_layer(x_pooled)
        y = self.fc(y).view(n, c, 1, 1)
        return x * y.expand_as(x)


def make_pair(channels, dct, method="top16", reduction=16, learnable=False):
    official = MultiSpectralAttentionLayer(channels, dct[0], dct[1], reduction, method, learnable)
    randomize_(official.fc)
    if learnable:  # a trained filter bank is no longer the DCT
        with torch.no_grad():
            official.dct_layer.weight.add_(0.1 * torch.randn_like(official.dct_layer.weight))
    official.eval()
    ours = excite.create(
        "fca", channels, dct_size=dct, frequencies=method, reduction=reduction, learnable=learnable
    )
    excite.load_official(ours, official.state_dict(), "official")
    return official, ours


# ---------------------------------------------------------------------------------------------------
# Against the official code
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "channels, dct, size",
    [
        (32, (7, 7), (7, 7)),  # dct-sized: no pooling (the ImageNet case)
        (32, (7, 7), (9, 11)),  # adaptive pooling with overlapping windows
        (32, (7, 7), (5, 4)),  # smaller than the grid: cells repeat
        (64, (14, 14), (14, 14)),  # indices scaled by 14 // 7 = 2
        (64, (14, 14), (20, 17)),
        (32, (14, 7), (28, 9)),  # non-square grid, different scale per axis
        (32, (10, 10), (10, 10)),  # 10 // 7 = 1: the scale truncates
    ],
)
def test_fca_matches_official(channels, dct, size):
    official, ours = make_pair(channels, dct)
    x = torch.randn(2, channels, *size)
    assert_fp32_close(ours(x), official(x))


@pytest.mark.parametrize("method", ["top1", "top2", "top4", "top32", "low4", "low16", "bot8", "bot32"])
def test_fca_frequency_tables_match_official(method):
    official, ours = make_pair(64, (7, 7), method=method)
    x = torch.randn(2, 64, 7, 7)
    assert_fp32_close(ours(x), official(x))
    assert_fp32_close(ours.dct_filter, official.dct_layer.weight)


def test_fca_learnable_filter_loads_from_official():
    official, ours = make_pair(32, (7, 7), learnable=True)
    assert isinstance(ours.dct_filter, nn.Parameter)
    assert_fp32_close(ours.dct_filter, official.dct_layer.weight)
    for size in ((7, 7), (8, 6)):
        x = torch.randn(2, 32, *size)
        assert_fp32_close(ours(x), official(x))


def test_fca_rejects_an_official_filter_of_other_frequencies():
    official = MultiSpectralAttentionLayer(32, 7, 7, 16, "low16")
    ours = excite.create("fca", 32, frequencies="top16")
    before = {k: v.clone() for k, v in ours.state_dict().items()}
    with pytest.raises(ValueError, match="dct_layer.weight"):
        excite.load_official(ours, official.state_dict(), "official")
    for key, value in ours.state_dict().items():
        assert torch.equal(value, before[key])


def test_named_frequencies_are_the_official_top16_pairs():
    spec_top16 = [(0, 0), (0, 1), (6, 0), (0, 5), (0, 2), (1, 0), (1, 2), (4, 0)]
    spec_top16 += [(5, 0), (1, 6), (3, 0), (0, 4), (0, 6), (0, 3), (3, 5), (2, 2)]
    assert named_frequencies("top16") == spec_top16


def test_dc_frequency_is_sqrt_hw_times_gap():
    """The official descriptor is a sum: the (0, 0) frequency gives √(HW)·GAP(x), not GAP(x)."""
    fca = excite.create("fca", 16, dct_size=(7, 7), frequencies="top1", reduction=4)
    x = torch.randn(2, 16, 7, 7)
    assert_fp32_close(fca.squeeze(x), 7.0 * x.mean(dim=(2, 3)), atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------------------------------------------
# The 1-D and 3-D extension against its documented definition
# ---------------------------------------------------------------------------------------------------


def dct_vector(freq, length):
    vector = torch.tensor(
        [math.cos(math.pi * freq * (p + 0.5) / length) / math.sqrt(length) for p in range(length)]
    )
    return vector * math.sqrt(2) if freq else vector


@pytest.mark.parametrize(
    "dim, dct, size",
    [(1, (7,), (7,)), (1, (14,), (19,)), (3, (7, 7, 7), (7, 7, 7)), (3, (2, 7, 14), (3, 9, 14))],
)
def test_fca_nd_matches_definition(dim, dct, size):
    """1-D uses the row index of each official pair; 3-D prepends a DC depth index: (0, u, v)."""
    channels = 16
    ours = randomize_(excite.create("fca", channels, dim=dim, dct_size=dct, frequencies="top8", reduction=4))
    top_u, top_v = get_freq_indices("top8")
    scale = [s // 7 for s in dct]
    pooled_fn = {1: F.adaptive_avg_pool1d, 3: F.adaptive_avg_pool3d}[dim]
    x = torch.randn(2, channels, *size)
    pooled = pooled_fn(x, dct)
    descriptor = torch.zeros(2, channels)
    part = channels // 8
    for k, (u, v) in enumerate(zip(top_u, top_v)):
        if dim == 1:
            basis = dct_vector(u * scale[0], dct[0])
            value = torch.einsum("ncl,l->nc", pooled, basis)
        else:
            depth, rows, cols = (
                dct_vector(0, dct[0]),
                dct_vector(u * scale[1], dct[1]),
                dct_vector(v * scale[2], dct[2]),
            )
            value = torch.einsum("ncdhw,d,h,w->nc", pooled, depth, rows, cols)
        descriptor[:, k * part : (k + 1) * part] = value[:, k * part : (k + 1) * part]
    gate = torch.sigmoid(F.relu(descriptor @ ours.fc1.weight.t()) @ ours.fc2.weight.t())
    assert_fp32_close(ours(x), x * gate.reshape(2, channels, *([1] * dim)), atol=1e-5, rtol=1e-5)


def test_fca_explicit_frequencies_are_absolute_indices():
    fca = excite.create("fca", 8, dct_size=(4, 4), frequencies=[(0, 0), (1, 3)], reduction=2)
    expected_second = dct_vector(1, 4)[:, None] * dct_vector(3, 4)[None, :]
    assert_fp32_close(fca.dct_filter[4:], expected_second.expand(4, 4, 4).float())
    assert_fp32_close(fca.dct_filter[:4], torch.full((4, 4, 4), 0.25))


# ---------------------------------------------------------------------------------------------------
# Parameter counts
# ---------------------------------------------------------------------------------------------------


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("dim", [1, 2, 3])
@pytest.mark.parametrize("channels", [16, 32, 64, 256])
def test_fca_parameter_count(dim, channels):
    hidden = channels // 16
    assert count(excite.create("fca", channels, dim=dim)) == 2 * channels * hidden
    learnable = excite.create("fca", channels, dim=dim, learnable=True)
    assert count(learnable) == 2 * channels * hidden + channels * 7**dim


def test_fcanet50_overhead_matches_published_count():
    """FcaNet-50 28,071,976 minus ResNet-50 25,557,032, with the official dct sizes per stage."""
    stages = [(256, 56, 3), (512, 28, 4), (1024, 14, 6), (2048, 7, 3)]
    total = sum(n * count(excite.create("fca", c, dct_size=(d, d))) for c, d, n in stages)
    assert total == 28_071_976 - 25_557_032
