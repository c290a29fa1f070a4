"""Coordinate Attention against houqb/CoordAttention ``coordatt.py`` and the ``mbv2_ca.py`` naming, in
eval and training mode; the 1-D and 3-D extension against its definition; parameter counts."""

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
# Transcription of coordatt.py (CoordAtt with conv_h/conv_w) and mbv2_ca.py (conv2/conv3, expand)
# ---------------------------------------------------------------------------------------------------


class h_sigmoid(nn.Module):  # noqa: N801  (the official names)
    def __init__(self, inplace=True):
        super().__init__()
        self.relu = nn.ReLU6(inplace=inplace)

    def forward(self, x):
        return self.relu(x + 3) / 6


class h_swish(nn.Module):  # noqa: N801
    def __init__(self, inplace=True):
        super().__init__()
        self.sigmoid = h_sigmoid(inplace=inplace)

    def forward(self, x):
        return x * self.sigmoid(x)


class CoordAtt(nn.Module):
    def __init__(self, inp, oup, reduction=32):
        super().__init__()
        self.pool_h = nn.AdaptiveAvgPool2d((None, 1))
        self.pool_w = nn.AdaptiveAvgPool2d((1, None))
        mip = max(8, inp // reduction)
        self.conv1 = nn.Conv2d(inp, mip, kernel_size=1, stride=1, padding=0)
        self.bn1 = nn.BatchNorm2d(mip)
        self.act = h_swish()
        self.conv_h = nn.Conv2d(mip, oup, kernel_size=1, stride=1, padding=0)
        self.conv_w = nn.Conv2d(mip, oup, kernel_size=1, stride=1, padding=0)

    def forward(self, x):
        identity = x
        n, c, h, w = x.size()
        x_h = self.pool_h(x)
        x_w = self.pool_w(x).permute(0, 1, 3, 2)
        y = torch.cat([x_h, x_w], dim=2)
        y = self.conv1(y)
        y = self.bn1(y)
        y = self.act(y)
        x_h, x_w = torch.split(y, [h, w], dim=2)
        x_w = x_w.permute(0, 1, 3, 2)
        a_h = self.conv_h(x_h).sigmoid()
        a_w = self.conv_w(x_w).sigmoid()
        return identity * a_w * a_h


class CoordAttMbv2(nn.Module):
    """mbv2_ca.py: the same math, ``groups`` for reduction, conv2 (h) / conv3 (w), explicit expand."""

    def __init__(self, inp, oup, groups=32):
        super().__init__()
        self.pool_h = nn.AdaptiveAvgPool2d((None, 1))
        self.pool_w = nn.AdaptiveAvgPool2d((1, None))
        mip = max(8, inp // groups)
        self.conv1 = nn.Conv2d(inp, mip, kernel_size=1, stride=1, padding=0)
        self.bn1 = nn.BatchNorm2d(mip)
        self.conv2 = nn.Conv2d(mip, oup, kernel_size=1, stride=1, padding=0)
        self.conv3 = nn.Conv2d(mip, oup, kernel_size=1, stride=1, padding=0)
        self.relu = h_swish()

    def forward(self, x):
        identity = x
        n, c, h, w = x.size()
        x_h = self.pool_h(x)
        x_w = self.pool_w(x).permute(0, 1, 3, 2)
        y = torch.cat([x_h, x_w], dim=2)
        y = self.conv1(y)
        y = self.bn1(y)
        y = self.relu(y)
        x_h, x_w = torch.split(y, [h, w], dim=2)
        x_w = x_w.permute(0, 1, 3, 2)
        x_h = self.conv2(x_h).sigmoid()
        x_w = self.conv3(x_w).sigmoid()
        x_h = x_h.expand(-1, -1, h, w)
        x_w = x_w.expand(-1, -1, h, w)
        return identity * x_w * x_h


# ---------------------------------------------------------------------------------------------------
# Against the official code
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("official_class", [CoordAtt, CoordAttMbv2], ids=["coordatt", "mbv2_ca"])
@pytest.mark.parametrize(
    "channels, reduction, size",
    [(32, 32, (6, 5)), (64, 4, (7, 7)), (24, 32, (1, 9)), (96, 8, (10, 3))],
)
def test_coord_matches_official_eval(official_class, channels, reduction, size):
    official = randomize_(official_class(channels, channels, reduction)).eval()
    ours = excite.create("coord", channels, reduction=reduction)
    assert ours.mid_channels == max(8, channels // reduction)
    excite.load_official(ours, official.state_dict(), "official").eval()
    x = torch.randn(3, channels, *size)
    assert_fp32_close(ours(x), official(x))


@pytest.mark.parametrize("official_class", [CoordAtt, CoordAttMbv2], ids=["coordatt", "mbv2_ca"])
def test_coord_matches_official_training(official_class):
    """Training mode: BatchNorm statistics span N x (H + W); outputs, gradients and running stats agree."""
    channels, size = 32, (6, 9)
    official = randomize_(official_class(channels, channels, 4)).train()
    ours = excite.create("coord", channels, reduction=4)
    excite.load_official(ours, official.state_dict(), "official")
    ours.train()
    x = torch.randn(4, channels, *size)
    x_official = x.clone().requires_grad_()
    x_ours = x.clone().requires_grad_()
    for _ in range(2):
        y_official, y_ours = official(x_official), ours(x_ours)
        assert_fp32_close(y_ours, y_official)
    (y_official**2).sum().backward()
    (y_ours**2).sum().backward()
    assert_fp32_close(x_ours.grad, x_official.grad, atol=1e-5, rtol=1e-4)
    assert_fp32_close(
        ours.conv1.weight.grad,
        official.conv1.weight.grad.reshape(ours.conv1.weight.shape),
        atol=1e-5,
        rtol=1e-4,
    )
    assert_fp32_close(ours.norm.running_mean, official.bn1.running_mean)
    assert_fp32_close(ours.norm.running_var, official.bn1.running_var)


# ---------------------------------------------------------------------------------------------------
# The N-D extension: each axis gets the mean over the other axes; gates multiplied W, then H, then D
# ---------------------------------------------------------------------------------------------------


def coord_formula(x, ours):
    """Independent N-D transcription with plain tensor algebra, eval-mode BatchNorm."""
    dim = x.dim() - 2
    axes = list(range(2, dim + 2))
    strips = []
    for axis in axes:
        others = [a for a in axes if a != axis]
        strips.append(x.mean(dim=others) if others else x)
    y = torch.cat(strips, dim=2)
    y = torch.einsum("mc,ncl->nml", ours.conv1.weight[..., 0], y) + ours.conv1.bias[:, None]
    bn = ours.norm
    y = (y - bn.running_mean[:, None]) / torch.sqrt(bn.running_var[:, None] + bn.eps) * bn.weight[:, None]
    y = y + bn.bias[:, None]
    y = y * F.relu6(y + 3) / 6
    parts = torch.split(y, [x.shape[a] for a in axes], dim=2)
    out = x
    for axis in reversed(range(dim)):
        conv = ours.convs[axis]
        gate = torch.sigmoid(
            torch.einsum("cm,nml->ncl", conv.weight[..., 0], parts[axis]) + conv.bias[:, None]
        )
        shape = [x.shape[0], x.shape[1]] + [x.shape[a] if i == axis else 1 for i, a in enumerate(axes)]
        out = out * gate.reshape(shape)
    return out


@pytest.mark.parametrize("dim, size", [(1, (11,)), (2, (5, 7)), (3, (3, 4, 5))])
def test_coord_matches_nd_definition(dim, size):
    ours = randomize_(excite.create("coord", 16, dim=dim, reduction=2)).eval()
    x = torch.randn(2, 16, *size)
    assert_fp32_close(ours(x), coord_formula(x, ours))


def test_coord_norm_options():
    """``norm="none"`` drops the BatchNorm; ``norm="layer"`` normalises each sample over (mid, H + W)."""
    x = torch.randn(3, 16, 5, 6)
    plain = randomize_(excite.create("coord", 16, reduction=2, norm="none"))
    reference = excite.create("coord", 16, reduction=2)
    reference.load_state_dict(plain.state_dict(), strict=False)
    with torch.no_grad():
        reference.norm.running_mean.zero_()
        reference.norm.running_var.fill_(1.0 - reference.norm.eps)
        reference.norm.weight.fill_(1.0)
        reference.norm.bias.zero_()
    reference.eval()
    assert_fp32_close(plain(x), reference(x))

    layer = randomize_(excite.create("coord", 16, reduction=2, norm="layer"))
    batch_of_one = torch.cat([layer(x[i : i + 1]) for i in range(3)])
    assert_fp32_close(layer(x), batch_of_one)  # batch-independent
    with pytest.raises(ValueError, match="CoordAttention: norm"):
        excite.create("coord", 16, norm="instance")


# ---------------------------------------------------------------------------------------------------
# Parameter counts
# ---------------------------------------------------------------------------------------------------


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("channels, reduction", [(16, 32), (64, 32), (96, 4), (320, 32), (1024, 32)])
@pytest.mark.parametrize("dim", [1, 2, 3])
def test_coord_parameter_count(channels, reduction, dim):
    mip = max(8, channels // reduction)
    module = excite.create("coord", channels, dim=dim, reduction=reduction)
    # Shared conv C·m + m, BN 2m, one conv m·C + C per spatial axis.
    assert count(module) == channels * mip + mip + 2 * mip + dim * (mip * channels + channels)
    if dim == 2:
        assert count(module) == 3 * channels * mip + 3 * mip + 2 * channels


def test_mobilenetv2_ca_overhead_matches_published_count():
    """MobileNetV2 + CA 3,950,648 (README 3.95M) minus MobileNetV2 3,504,872: CA on every expanded
    hidden width (expand ratio 6 blocks) of mbv2_ca.py."""
    settings = [(6, 24, 2), (6, 32, 3), (6, 64, 4), (6, 96, 3), (6, 160, 3), (6, 320, 1)]
    hidden_widths, in_channels = [], 16
    for t, c, n in settings:
        for _ in range(n):
            hidden_widths.append(in_channels * t)
            in_channels = c
    total = sum(count(excite.create("coord", h)) for h in hidden_widths)
    assert total == 3_950_648 - 3_504_872
