"""MobileNetV2 and MobileNeXt: the published parameter counts, torchvision and the official releases'
key layouts with equal outputs (transcribed from ECANet ``eca_mobilenetv2.py``, houqb ``mbv2_ca.py``,
ZjjConan ``networks/imagenet/mobilenetv2.py`` and yitu-opensource ``mnext.py``; modules.md §3, §5, §6 and
applications.md §4), placements, init and every registered module."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from excite_test_helpers import randomize_
from torch import nn

import excite
import excite.models as models
from excite.models import count_parameters

SETTING = [
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
]


def test_published_parameter_counts():
    assert count_parameters(models.mobilenet_v2()) == 3_504_872
    assert count_parameters(models.ca_mobilenet_v2()) == 3_950_648
    assert count_parameters(models.eca_mobilenet_v2()) == 3_504_903
    assert count_parameters(models.eca_mobilenet_v2(original_rule=True)) == 3_504_897
    # CA's reduction ablation (modules.md §5): r = 8, 16, 64.
    for reduction, expected in ((8, 5_213_456), (16, 4_366_850), (64, 3_755_696)):
        net = models.mobilenet_v2(attention="coord", attention_options={"reduction": reduction})
        assert count_parameters(net) == expected


# ----------------------------------------------------------------------------------------------------------
# Transcriptions of the releases


def conv_bn_relu(inp, oup, kernel=3, stride=1, groups=1, middle=None):
    """ECANet/torchvision ConvBNReLU; SimAM's puts its module between the conv and the BN."""
    layers = [nn.Conv2d(inp, oup, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False)]
    if middle is not None:
        layers.append(middle)
    return nn.Sequential(*layers, nn.BatchNorm2d(oup), nn.ReLU6(inplace=True))


class EcaLayer(nn.Module):
    def __init__(self, k_size):
        super().__init__()
        self.conv = nn.Conv1d(1, 1, k_size, padding=(k_size - 1) // 2, bias=False)

    def forward(self, x):
        y = x.mean(dim=(2, 3), keepdim=True)
        y = self.conv(y.squeeze(-1).transpose(-1, -2)).transpose(-1, -2).unsqueeze(-1)
        return x * torch.sigmoid(y)


class SimAMModule(nn.Module):
    def __init__(self, e_lambda):
        super().__init__()
        self.e_lambda = e_lambda

    def forward(self, x):
        n = x.shape[2] * x.shape[3] - 1
        d = (x - x.mean(dim=[2, 3], keepdim=True)).pow(2)
        return x * torch.sigmoid(d / (4 * (d.sum(dim=[2, 3], keepdim=True) / n + self.e_lambda)) + 0.5)


class TorchvisionStyleBlock(nn.Module):
    """ECANet (``eca`` appended) and SimAM (``simam`` in the depthwise unit) inverted residuals."""

    def __init__(self, inp, oup, stride, t, eca_k=None, simam=None):
        super().__init__()
        hidden = int(round(inp * t))
        self.use_res_connect = stride == 1 and inp == oup
        layers = [conv_bn_relu(inp, hidden, 1)] if t != 1 else []
        layers += [
            conv_bn_relu(hidden, hidden, stride=stride, groups=hidden, middle=simam),
            nn.Conv2d(hidden, oup, 1, 1, 0, bias=False),
            nn.BatchNorm2d(oup),
        ]
        if eca_k is not None:
            layers.append(EcaLayer(eca_k))
        self.conv = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class TorchvisionStyleMobileNetV2(nn.Module):
    def __init__(self, eca_rule=None, simam_lambda=None, dropout=True):
        super().__init__()
        features = [conv_bn_relu(3, 32, stride=2)]
        inp = 32
        for t, c, n, s in SETTING:
            for i in range(n):
                eca_k = None if eca_rule is None else (1 if eca_rule(c) else 3)
                simam = None if simam_lambda is None else SimAMModule(simam_lambda)
                features.append(TorchvisionStyleBlock(inp, c, s if i == 0 else 1, t, eca_k, simam))
                inp = c
        features.append(conv_bn_relu(inp, 1280, 1))
        self.features = nn.Sequential(*features)
        head = [nn.Dropout(0.25), nn.Linear(1280, 1000)] if dropout else [nn.Linear(1280, 1000)]
        self.classifier = nn.Sequential(*head)

    def forward(self, x):
        return self.classifier(self.features(x).mean(-1).mean(-1))


class CoordAtt(nn.Module):
    """mbv2_ca.py CoordAtt(inp, oup, groups=32): conv1/bn1 shared, conv2 (h) and conv3 (w)."""

    def __init__(self, inp, oup, groups=32):
        super().__init__()
        mip = max(8, inp // groups)
        self.conv1 = nn.Conv2d(inp, mip, 1)
        self.bn1 = nn.BatchNorm2d(mip)
        self.conv2 = nn.Conv2d(mip, oup, 1)
        self.conv3 = nn.Conv2d(mip, oup, 1)

    def forward(self, x):
        n, c, h, w = x.size()
        x_h = F.adaptive_avg_pool2d(x, (None, 1))
        x_w = F.adaptive_avg_pool2d(x, (1, None)).permute(0, 1, 3, 2)
        y = self.bn1(self.conv1(torch.cat([x_h, x_w], dim=2)))
        y = y * F.relu6(y + 3) / 6
        x_h, x_w = torch.split(y, [h, w], dim=2)
        a_h = self.conv2(x_h).sigmoid().expand(-1, -1, h, w)
        a_w = self.conv3(x_w.permute(0, 1, 3, 2)).sigmoid().expand(-1, -1, h, w)
        return x * a_w * a_h


class CAInvertedResidual(nn.Module):
    def __init__(self, inp, oup, stride, t):
        super().__init__()
        hidden = round(inp * t)
        self.identity = stride == 1 and inp == oup
        dw = [
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU6(),
        ]
        tail = [nn.Conv2d(hidden, oup, 1, 1, 0, bias=False), nn.BatchNorm2d(oup)]
        if t == 1:
            self.conv = nn.Sequential(*dw, *tail)
        else:
            pw = [nn.Conv2d(inp, hidden, 1, 1, 0, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6()]
            self.conv = nn.Sequential(*pw, *dw, CoordAtt(hidden, hidden), *tail)

    def forward(self, x):
        return x + self.conv(x) if self.identity else self.conv(x)


class MBV2CA(nn.Module):
    def __init__(self):
        super().__init__()
        layers = [nn.Sequential(nn.Conv2d(3, 32, 3, 2, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU6())]
        inp = 32
        for t, c, n, s in SETTING:
            for i in range(n):
                layers.append(CAInvertedResidual(inp, c, s if i == 0 else 1, t))
                inp = c
        self.features = nn.Sequential(*layers)
        self.conv = nn.Sequential(nn.Conv2d(inp, 1280, 1, 1, 0, bias=False), nn.BatchNorm2d(1280), nn.ReLU6())
        self.classifier = nn.Sequential(nn.Dropout(0.1), nn.Linear(1280, 1000))

    def forward(self, x):
        x = F.adaptive_avg_pool2d(self.conv(self.features(x)), 1).flatten(1)
        return self.classifier(x)


def _compare(ours, reference, source, size=64):
    reference.eval()
    excite.load_official(ours, reference.state_dict(), source)
    ours.eval()
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        expected, actual = reference(x), ours(x)
    scale = expected.abs().max().item()
    assert scale > 1e-2
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-5 * scale)


def test_torchvision_mobilenet_v2_loads_with_equal_outputs():
    tv = pytest.importorskip("torchvision.models")
    _compare(models.mobilenet_v2(), randomize_(tv.mobilenet_v2(weights=None)), "torchvision")


@pytest.mark.parametrize("original_rule", [False, True])
def test_official_eca_mobilenet_v2_loads_with_equal_outputs(original_rule):
    rule = (lambda c: c <= 96) if original_rule else (lambda c: c < 96)
    reference = randomize_(TorchvisionStyleMobileNetV2(eca_rule=rule))
    assert reference.state_dict()["features.1.conv.3.conv.weight"].shape == (1, 1, 1)
    _compare(models.eca_mobilenet_v2(original_rule=original_rule), reference, "official")


def test_official_ca_mobilenet_v2_loads_with_equal_outputs():
    reference = randomize_(MBV2CA())
    assert count_parameters(reference) == 3_950_648
    assert (
        "features.2.conv.6.conv2.weight" in reference.state_dict()
        and "conv.0.weight" in reference.state_dict()
    )
    _compare(models.ca_mobilenet_v2(), reference, "official")


def test_official_simam_mobilenet_v2_loads_with_equal_outputs():
    reference = randomize_(TorchvisionStyleMobileNetV2(simam_lambda=0.1, dropout=False))
    assert "features.1.conv.0.2.weight" in reference.state_dict()  # dw unit: conv, simam, bn, relu6
    net = models.mobilenet_v2(attention="simam", attention_options={"lambda_": 0.1})
    _compare(net, reference, "official")


# MobileNeXt, transcribed from mnext.py (SGBlock with its three reduced variants, identity_div = 1).


def _make_divisible(v, divisor, min_value=None):
    min_value = min_value or divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


class SGBlock(nn.Module):
    def __init__(self, inp, oup, stride, t, keep_3x3=False):
        super().__init__()
        hidden = inp // t
        if hidden < oup / 6.0:
            hidden = _make_divisible(math.ceil(oup / 6.0), 16)
        self.identity = False

        def dw(c, s, act):
            return [nn.Conv2d(c, c, 3, s, 1, groups=c, bias=False), nn.BatchNorm2d(c)] + (
                [nn.ReLU6()] if act else []
            )

        pw = [
            nn.Conv2d(inp, hidden, 1, 1, 0, bias=False),
            nn.BatchNorm2d(hidden),
            nn.Conv2d(hidden, oup, 1, 1, 0, bias=False),
            nn.BatchNorm2d(oup),
            nn.ReLU6(),
        ]
        if t == 2:
            layers = dw(inp, 1, True) + pw + dw(oup, stride, False)
        elif inp != oup and stride == 1 and not keep_3x3:
            layers = pw
        elif inp != oup and stride == 2 and not keep_3x3:
            layers = pw + dw(oup, stride, False)
        else:
            self.identity = not keep_3x3
            layers = dw(inp, 1, True) + pw + dw(oup, 1, False)
        self.conv = nn.Sequential(*layers)

    def forward(self, x):
        out = self.conv(x)
        return out + x if self.identity else out


class MXNet(nn.Module):
    CFGS = [
        (2, 96, 1, 2), (6, 144, 1, 1), (6, 192, 3, 2), (6, 288, 3, 2),
        (6, 384, 4, 1), (6, 576, 4, 2), (6, 960, 3, 1), (6, 1280, 1, 1),
    ]  # fmt: skip

    def __init__(self):
        super().__init__()
        layers = [nn.Sequential(nn.Conv2d(3, 32, 3, 2, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU6())]
        inp = 32
        for t, c, n, s in self.CFGS:
            layers.append(SGBlock(inp, c, s, t, n == 1 and s == 1))
            inp = c
            for _ in range(n - 1):
                layers.append(SGBlock(inp, c, 1, t))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, 1000))

    def forward(self, x):
        return self.classifier(F.adaptive_avg_pool2d(self.features(x), 1).flatten(1))


def test_official_mobilenext_loads_with_equal_outputs():
    reference = randomize_(MXNet())
    net = models.mobilenext()
    assert count_parameters(net) == count_parameters(reference) == 3_535_416
    assert [b.kind for b in net.blocks][:4] == ["full", "full", "strided", "full"]
    _compare(net, reference, "official")


# ----------------------------------------------------------------------------------------------------------
# Placement


def _expected_inverted_residual(block, x, placement):
    out = block.expand(x)
    unit = block.depthwise
    attention = unit.attention if hasattr(unit, "attention") else block.attention
    out = unit.conv(out)
    if placement == "conv":
        out = attention(out)
    out = unit.act(unit.norm(out))
    if placement == "hidden":
        out = attention(out)
    out = block.project.norm(block.project.conv(out))
    if placement == "residual":
        out = attention(out)
    return x + out if block.use_residual else out


@pytest.mark.parametrize(
    "name, placement, sites, channels",
    [
        ("coord", "hidden", 16, 96),  # after the dw conv on the expanded width, t != 1 blocks only
        ("eca", "residual", 17, 16),  # after the projection BN, every block
        ("simam", "conv", 17, None),  # between the dw conv and its BN, every block
        ("se", "hidden", 16, 96),  # where MobileNetV3/EfficientNet put SE; attach agrees
    ],
)
def test_mobilenet_v2_paper_placements(name, placement, sites, channels):
    net = randomize_(models.mobilenet_v2(attention=name, num_classes=10)).eval()
    assert net.placement == placement
    assert len(net.attention_modules()) == sites
    first = net.attention_modules()[0]
    if channels is not None:
        assert first.channels == channels
    block = net.blocks[4]  # 32 → 32, stride 1: has a residual
    assert block.use_residual
    x = torch.randn(2, 32, 14, 14)
    with torch.no_grad():
        torch.testing.assert_close(block(x), _expected_inverted_residual(block, x, placement))
        assert not torch.allclose(block(x), _expected_inverted_residual(block, x, "none"))


def test_mobilenext_places_attention_after_the_first_depthwise():
    net = randomize_(models.mobilenext(attention="coord", num_classes=10)).eval()
    assert net.placement == "hidden" and len(net.attention_modules()) == 20
    block = net.blocks[3]  # 192 → 192, full sandglass with residual
    assert block.kind == "full" and block.use_residual and block.attention.channels == 192
    x = torch.randn(1, 192, 14, 14)
    with torch.no_grad():
        out = block.attention(block.depthwise1(x))
        out = block.depthwise2(block.expand(block.reduce(out)))
        torch.testing.assert_close(block(x), x + out)
    # Blocks without a first depthwise conv take it on the wide tensor after the expanding 1x1.
    strided = net.blocks[2]
    assert strided.kind == "strided" and strided.attention.channels == 192
    simam = models.mobilenext(attention="simam")
    assert (
        simam.placement == "conv" and len(simam.attention_modules()) == 18
    )  # two pointwise blocks have no 3x3


# ----------------------------------------------------------------------------------------------------------
# Init and every module


def test_release_init():
    torch.manual_seed(0)
    net = models.ca_mobilenet_v2()
    ca = net.blocks[5].attention
    for conv in (ca.conv1, *ca.convs):
        assert torch.all(conv.bias == 0)
    # N(0, 2/fan_out) with fan_out = out channels for 1x1 kernels (mbv2_ca: sqrt(2/(k·k·out))).
    assert ca.convs[0].weight.std().item() == pytest.approx(
        math.sqrt(2.0 / ca.convs[0].out_channels), rel=0.1
    )
    assert net.classifier.weight.std().item() == pytest.approx(0.01, rel=0.05)
    assert torch.all(net.classifier.bias == 0)
    eca = models.eca_mobilenet_v2().blocks[16].attention.conv.weight  # k = 3, PyTorch default kept
    assert eca.abs().max().item() <= 1 / math.sqrt(3)


@pytest.mark.parametrize("name", excite.available())
@pytest.mark.parametrize("builder", ["mobilenet_v2", "mobilenext"])
def test_every_module_trains_in_mobile_networks(name, builder):
    net = models.create(builder, attention=name, num_classes=10, input_size=64)
    calls = []
    for module in net.attention_modules():
        module.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[1] == o.shape[1]))
    loss = F.cross_entropy(net(torch.randn(2, 3, 64, 64)), torch.tensor([1, 2]))
    loss.backward()
    assert torch.isfinite(loss)
    # Each module is called once per forward on its site's width, and is in the backward graph.
    assert len(calls) == len(net.attention_modules()) > 0 and all(calls)
    for module in net.attention_modules():
        for pname, parameter in module.named_parameters():
            assert parameter.grad is not None, f"{name}.{pname} is not in the backward graph"


def test_fca_in_mobilenet_uses_fewer_frequencies_where_16_does_not_divide():
    net = models.mobilenet_v2(attention="fca", attention_options={"reduction": 4}, placement="residual")
    by_channels = {m.channels: len(m.frequencies) for m in net.attention_modules()}
    assert by_channels[24] == 8 and by_channels[16] == 16 and by_channels[320] == 16
