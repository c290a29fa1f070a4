"""ResNet/ResNeXt family: published parameter counts, peer and official key layouts with equal outputs,
placement of every attention module, the small stem for Fashion-MNIST, and 1-D/3-D networks.

The official networks are transcribed here from the papers' releases as described in
shared/spec/modules.md (§3 ECANet ``eca_resnet.py``, §4 FcaNet ``fcanet.py``/``layer.py``, §6 SimAM
``networks/imagenet/resnet.py``, §7 megvii ``spse_resnet.py``/``rgse_resnet.py``); timm and torchvision are
the installed peer packages.
"""

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

# ----------------------------------------------------------------------------------------------------------
# Published integers (modules.md §1, §9)

COUNTS = [
    ("resnet18", {}, 11_689_512),
    ("resnet34", {}, 21_797_672),
    ("resnet50", {}, 25_557_032),
    ("resnet101", {}, 44_549_160),
    ("resnet152", {}, 60_192_808),
    ("resnext50_32x4d", {}, 25_028_904),
    ("se_resnet50", {}, 28_088_024),
    ("se_resnet101", {}, 49_326_872),
    ("se_resnet152", {}, 66_821_848),
    ("eca_resnet50", {}, 25_557_112),
    ("fca_resnet50", {}, 28_071_976),
    ("simam_resnet50", {}, 25_557_032),
    ("spse_resnet50", {}, 28_480_728),
    ("rgse_resnet50", {}, 28_212_440),
    # SE-ResNet-50 with bias-free FCs, as the ECA and FcaNet papers count it.
    ("resnet50", {"attention": "se", "attention_options": {"bias": False}}, 28_071_976),
    # ECA with ψ(C) instead of the release's hand-set kernels.
    ("resnet50", {"attention": "eca"}, 25_557_118),
    # SE-ResNet-18/34 with C//16 (timm legacy_seresnet18/34).
    ("resnet18", {"attention": "se"}, 11_778_592),
    ("resnet34", {"attention": "se"}, 21_958_868),
    # timm resnet50d / ecaresnet50d / ecaresnet50t.
    ("resnet50", {"stem": "deep", "avg_down": True}, 25_576_264),
    ("resnet50", {"stem": "deep", "avg_down": True, "attention": "eca"}, 25_576_350),
    ("resnet50", {"stem": "deep_tiered", "avg_down": True, "attention": "eca"}, 25_573_814),
    ("resnet101", {"stem": "deep", "avg_down": True, "attention": "eca"}, 44_568_563),
]


@pytest.mark.parametrize(
    "name, options, expected", COUNTS, ids=[f"{n}-{i}" for i, (n, _, _) in enumerate(COUNTS)]
)
def test_parameter_count_equals_published_integer(name, options, expected):
    assert count_parameters(models.create(name, **options)) == expected


def test_se_r_ablation_counts():
    # modules.md §1: SE-ResNet-50 with bias at r = 2, 4, 8, 32.
    for reduction, expected in ((2, 45_699_240), (4, 35_635_688), (8, 30_603_912), (32, 26_830_080)):
        net = models.resnet50(attention="se", attention_options={"reduction": reduction})
        assert count_parameters(net) == expected


def test_ecaresnet26t_count():
    net = models.ResNet("bottleneck", (2, 2, 2, 2), stem="deep_tiered", avg_down=True, attention="eca")
    assert count_parameters(net) == 16_011_916


# ----------------------------------------------------------------------------------------------------------
# Peer layouts: torchvision and timm, outputs equal after load_official


def _compare(
    ours: nn.Module, reference: nn.Module, source: str, size: int, state=None, batch: int = 2
) -> None:
    reference.eval()
    excite.load_official(ours, state if state is not None else reference.state_dict(), source)
    ours.eval()
    x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected, actual = reference(x), ours(x)
    scale = expected.abs().max().item()
    assert scale > 1e-2, "degenerate reference output"
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-5 * scale)


def test_torchvision_resnet50_and_resnext_load_with_equal_outputs():
    tv = pytest.importorskip("torchvision.models")
    _compare(models.resnet50(), randomize_(tv.resnet50(weights=None)), "torchvision", 32)
    _compare(models.resnext50_32x4d(), randomize_(tv.resnext50_32x4d(weights=None)), "torchvision", 32)
    _compare(models.resnet18(), randomize_(tv.resnet18(weights=None)), "torchvision", 32)


@pytest.mark.parametrize(
    "timm_name, build",
    [
        ("seresnet50", lambda: models.resnet50(attention="se")),
        ("legacy_seresnet50", lambda: models.se_resnet50()),
        ("ecaresnet50d", lambda: models.resnet50(attention="eca", stem="deep", avg_down=True)),
        ("ecaresnet50t", lambda: models.resnet50(attention="eca", stem="deep_tiered", avg_down=True)),
        (
            "ecaresnet26t",
            lambda: models.ResNet(
                "bottleneck", (2, 2, 2, 2), attention="eca", stem="deep_tiered", avg_down=True
            ),
        ),
    ],
)
def test_timm_layouts_load_with_equal_outputs(timm_name, build):
    timm = pytest.importorskip("timm")
    reference = randomize_(timm.create_model(timm_name, pretrained=False))
    _compare(build(), reference, "timm", 32)


def test_cadene_se_resnet50_is_the_official_se_layout():
    # Cadene's pretrainedmodels se_resnet50 (the released Caffe weights, converted) has exactly the
    # layout of timm's legacy_seresnet50 (layer0, se_module, last_linear).
    timm = pytest.importorskip("timm")
    reference = randomize_(timm.create_model("legacy_seresnet50", pretrained=False))
    assert "layer0.conv1.weight" in reference.state_dict() and "last_linear.weight" in reference.state_dict()
    _compare(models.se_resnet50(), reference, "official", 32)


def test_timm_seresnet18_needs_timm_rounding_and_says_so():
    timm = pytest.importorskip("timm")
    reference = timm.create_model("seresnet18", pretrained=False)
    with pytest.raises(ValueError, match="shape mismatches"):
        excite.load_official(models.resnet18(attention="se"), reference.state_dict(), "timm")
    # timm rounds C/16 up to 8 for C = 64; per-stage options reproduce it.
    net = models.resnet18(attention="se", stage_options=[{"hidden_channels": 8}, {}, {}, {}])
    _compare(net, randomize_(reference), "timm", 32)


# ----------------------------------------------------------------------------------------------------------
# Official releases, transcribed from modules.md


class OfficialECALayer(nn.Module):
    """ECANet eca_layer(channel, k_size): GAP, Conv1d over channels (no bias), sigmoid; ignores channel."""

    def __init__(self, k_size: int) -> None:
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.conv = nn.Conv1d(1, 1, kernel_size=k_size, padding=(k_size - 1) // 2, bias=False)

    def forward(self, x):
        y = self.avg_pool(x)
        y = self.conv(y.squeeze(-1).transpose(-1, -2)).transpose(-1, -2).unsqueeze(-1)
        return x * torch.sigmoid(y).expand_as(x)


TOP16_X = [0, 0, 6, 0, 0, 1, 1, 4, 5, 1, 3, 0, 0, 0, 3, 2]
TOP16_Y = [0, 1, 0, 5, 2, 0, 2, 0, 0, 6, 0, 4, 6, 3, 5, 2]


def _dct_tap(pos: int, freq: int, length: int) -> float:
    value = math.cos(math.pi * freq * (pos + 0.5) / length) / math.sqrt(length)
    return value if freq == 0 else value * math.sqrt(2)


class OfficialDCTLayer(nn.Module):
    def __init__(self, height: int, width: int, mapper_x, mapper_y, channel: int) -> None:
        super().__init__()
        bank = torch.zeros(channel, height, width)
        part = channel // len(mapper_x)
        for i, (u, v) in enumerate(zip(mapper_x, mapper_y)):
            for tx in range(height):
                for ty in range(width):
                    bank[i * part : (i + 1) * part, tx, ty] = _dct_tap(tx, u, height) * _dct_tap(ty, v, width)
        self.register_buffer("weight", bank)

    def forward(self, x):
        return torch.sum(x * self.weight, dim=[2, 3])


class OfficialFCALayer(nn.Module):
    """FcaNet MultiSpectralAttentionLayer(channel, dct_h, dct_w, reduction=16, 'top16')."""

    def __init__(self, channel: int, dct_size: int, reduction: int = 16) -> None:
        super().__init__()
        self.dct_size = dct_size
        scale = dct_size // 7
        self.dct_layer = OfficialDCTLayer(
            dct_size, dct_size, [u * scale for u in TOP16_X], [v * scale for v in TOP16_Y], channel
        )
        self.fc = nn.Sequential(
            nn.Linear(channel, channel // reduction, bias=False),
            nn.ReLU(inplace=True),
            nn.Linear(channel // reduction, channel, bias=False),
            nn.Sigmoid(),
        )

    def forward(self, x):
        n, c, h, w = x.shape
        pooled = x
        if h != self.dct_size or w != self.dct_size:
            pooled = F.adaptive_avg_pool2d(x, (self.dct_size, self.dct_size))
        y = self.fc(self.dct_layer(pooled)).view(n, c, 1, 1)
        return x * y.expand_as(x)


class OfficialSimAM(nn.Module):
    def __init__(self, e_lambda: float) -> None:
        super().__init__()
        self.e_lambda = e_lambda

    def forward(self, x):
        b, c, h, w = x.size()
        n = w * h - 1
        d = (x - x.mean(dim=[2, 3], keepdim=True)).pow(2)
        y = d / (4 * (d.sum(dim=[2, 3], keepdim=True) / n + self.e_lambda)) + 0.5
        return x * torch.sigmoid(y)


C2WH = {64: 56, 128: 28, 256: 14, 512: 7}


class OfficialBottleneck(nn.Module):
    """torchvision-named v1.5 bottleneck with the attention of one release: ``eca`` (ECANet, after
    bn3), ``att`` (FcaNet, after bn3) or SimAM in ``conv2 = Sequential(conv, simam)``."""

    expansion = 4

    def __init__(self, inplanes, planes, stride, downsample, kind, option):
        super().__init__()
        self.kind = kind
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        spatial = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.conv2 = nn.Sequential(spatial, OfficialSimAM(option)) if kind == "simam" else spatial
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        if kind == "eca":
            self.eca = OfficialECALayer(option)
        if kind == "fca":
            self.att = OfficialFCALayer(planes * 4, C2WH[planes])
        self.downsample = downsample

    def forward(self, x):
        residual = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.kind == "eca":
            out = self.eca(out)
        if self.kind == "fca":
            out = self.att(out)
        if self.downsample is not None:
            residual = self.downsample(x)
        return self.relu(out + residual)


class OfficialResNet50(nn.Module):
    """The torchvision-style ResNet-50 shell that ECANet, FcaNet and SimAM release (``fc`` head)."""

    def __init__(self, kind: str, options=(None, None, None, None)):
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        for stage, (planes, blocks) in enumerate(zip((64, 128, 256, 512), (3, 4, 6, 3))):
            stride = 1 if stage == 0 else 2
            layers = []
            for index in range(blocks):
                downsample = None
                if index == 0 and (stride != 1 or self.inplanes != planes * 4):
                    downsample = nn.Sequential(
                        nn.Conv2d(self.inplanes, planes * 4, 1, stride, bias=False),
                        nn.BatchNorm2d(planes * 4),
                    )
                layers.append(
                    OfficialBottleneck(
                        self.inplanes, planes, stride if index == 0 else 1, downsample, kind, options[stage]
                    )
                )
                self.inplanes = planes * 4
            self.add_module(f"layer{stage + 1}", nn.Sequential(*layers))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2048, 1000)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class MegviiBottleneck(nn.Module):
    """spse_resnet.py / rgse_resnet.py Bottleneck (names conv_convK, bn_bnK, fc_*, shortcut.*)."""

    expansion = 4

    def __init__(self, in_channels, out_channels, stride, kind):
        super().__init__()
        self.kind = kind
        c = out_channels * 4
        self.conv_conv1 = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.bn_bn1 = nn.BatchNorm2d(out_channels)
        self.conv_conv2 = nn.Conv2d(out_channels, out_channels, 3, stride, 1, bias=False)
        self.bn_bn2 = nn.BatchNorm2d(out_channels)
        self.conv_conv3 = nn.Conv2d(out_channels, c, 1, bias=False)
        self.bn_bn3 = nn.BatchNorm2d(c)
        if kind == "spse":
            self.fc_spatial1 = nn.Conv2d(c, c, 1, groups=c)
            self.fc_spatial2 = nn.Conv2d(c, c, 2, groups=c)
            self.fc_spatial4 = nn.Conv2d(c, c, 4, groups=c)
            self.fc_bn = nn.BatchNorm2d(c)
        else:
            self.Pool = nn.AvgPool2d(7, 7)
            self.fc_spatial = nn.Sequential()
            kernel = {64: 8, 128: 4, 256: 2}.get(out_channels)
            if kernel is not None:
                self.fc_spatial.add_module(
                    "fc_spatial", nn.Conv2d(c, c, kernel, kernel, groups=c, bias=False)
                )
                self.fc_spatial.add_module("bn_spatial", nn.BatchNorm2d(c))
        self.fc_reduction = nn.Linear(c, c // 16)
        self.fc_extention = nn.Linear(c // 16, c)
        self.shortcut = nn.Sequential()
        if in_channels != c or stride != 1:
            self.shortcut.add_module("shortcut_conv", nn.Conv2d(in_channels, c, 1, stride, bias=False))
            self.shortcut.add_module("shortcut_bn", nn.BatchNorm2d(c))

    def forward(self, x):
        res = F.relu(self.bn_bn1(self.conv_conv1(x)))
        res = F.relu(self.bn_bn2(self.conv_conv2(res)))
        res = self.bn_bn3(self.conv_conv3(res))
        if self.kind == "spse":
            pooled = (
                self.fc_spatial1(F.adaptive_avg_pool2d(res, 1))
                + self.fc_spatial2(F.adaptive_avg_pool2d(res, 2))
                + self.fc_spatial4(F.adaptive_avg_pool2d(res, 4))
            )
            se = F.relu(self.fc_bn(pooled))
        else:
            se = F.relu(self.fc_spatial(self.Pool(res)))
        se = se.view(se.size(0), -1)
        se = torch.sigmoid(self.fc_extention(F.relu(self.fc_reduction(se))))
        res = res * se.view(se.size(0), se.size(1), 1, 1)
        return F.relu(res + self.shortcut(x))


class MegviiResNet50(nn.Module):
    def __init__(self, kind: str):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        inplanes = 64
        for stage, (planes, blocks) in enumerate(zip((64, 128, 256, 512), (3, 4, 6, 3))):
            layer = nn.Sequential()
            for index in range(blocks):
                stride = (1 if stage == 0 else 2) if index == 0 else 1
                layer.add_module(
                    f"layer{stage + 1}_block_{index}", MegviiBottleneck(inplanes, planes, stride, kind)
                )
                inplanes = planes * 4
            self.add_module(f"layer{stage + 1}", layer)
        # The release's AvgPool2d(7, stride=1) is global pooling at 224; adaptive so that SPSE runs at 96.
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2048, 1000)

    def forward(self, x):
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.avgpool(x).flatten(1))


def test_official_eca_resnet50_k3557_loads_with_equal_outputs():
    reference = randomize_(OfficialResNet50("eca", options=(3, 5, 5, 7)))
    assert "layer1.0.eca.conv.weight" in reference.state_dict()
    _compare(models.eca_resnet50(), reference, "official", 32)


def test_official_fcanet50_loads_with_equal_outputs():
    # At 96x96 the stage maps (24, 12, 6, 3) differ from the DCT grids (56, 28, 14, 7), so the official
    # adaptive pooling (here upsampling by repetition) is taken; ours folds it into the filter bank.
    reference = randomize_(OfficialResNet50("fca"))
    state = reference.state_dict()
    assert state["layer1.0.att.dct_layer.weight"].shape == (256, 56, 56)
    _compare(models.fca_resnet50(), reference, "official", 96, state=state, batch=1)


def test_official_fcanet_dct_filter_is_checked_not_loaded():
    reference = OfficialResNet50("fca")
    state = dict(reference.state_dict())
    state["layer2.0.att.dct_layer.weight"] = torch.rand_like(state["layer2.0.att.dct_layer.weight"])
    with pytest.raises(ValueError, match="different fixed filter"):
        excite.load_official(models.fca_resnet50(), state, "official")
    # A network built for another input size has other DCT grids: refused, not silently loaded.
    with pytest.raises(ValueError, match="different fixed filter"):
        excite.load_official(models.fca_resnet50(input_size=112), reference.state_dict(), "official")


def test_official_simam_resnet50_loads_with_equal_outputs():
    reference = randomize_(OfficialResNet50("simam", options=(0.1,) * 4))
    assert "layer1.0.conv2.0.weight" in reference.state_dict()
    net = models.simam_resnet50()
    assert "layer1.0.conv2.0.weight" in net.state_dict()  # SimAM's key layout is ours verbatim
    _compare(net, reference, "official", 64)  # SimAM needs more than one position in stage 4


def test_official_spse_resnet50_loads_with_equal_outputs():
    reference = randomize_(MegviiResNet50("spse"))
    assert "layer1.layer1_block_0.fc_spatial4.weight" in reference.state_dict()
    # 96x96: stage maps 24, 12, 6, 3, so the 4x4 pyramid level pools with overlapping windows and, in
    # the last stage, by repetition.
    _compare(models.spse_resnet50(), reference, "official", 96, batch=1)


def test_official_rgse_resnet50_loads_with_equal_outputs():
    reference = randomize_(MegviiResNet50("rgse"))
    assert "layer1.layer1_block_0.fc_spatial.fc_spatial.weight" in reference.state_dict()
    assert "layer4.layer4_block_0.fc_spatial.fc_spatial.weight" not in reference.state_dict()
    _compare(models.rgse_resnet50(), reference, "official", 224, batch=1)


def test_wrong_layout_is_refused_with_the_keys_named():
    tv = pytest.importorskip("torchvision.models")
    with pytest.raises(ValueError, match=r"missing keys .*attention\.fc1\.weight"):
        excite.load_official(
            models.resnet50(attention="se"), tv.resnet50(weights=None).state_dict(), "torchvision"
        )
    timm = pytest.importorskip("timm")
    with pytest.raises(ValueError, match=r"no attention module there"):
        excite.load_official(models.resnet50(), timm.create_model("seresnet50").state_dict(), "timm")


# ----------------------------------------------------------------------------------------------------------
# Placement: every registered module, in both block types, by a hand-written block forward


def _expected_block(block, x, placement):
    """The documented block arithmetic, written out: where the attention sits decides the result."""
    shortcut = x if block.downsample is None else block.downsample(x)
    out = torch.relu(block.bn1(block.conv1(x)))
    attention = block.conv2[1] if isinstance(block.conv2, nn.Sequential) else block.attention
    spatial_conv = block.conv2[0] if isinstance(block.conv2, nn.Sequential) else block.conv2
    if isinstance(block, models.Bottleneck):
        out = spatial_conv(out)
        if placement == "conv":
            out = attention(out)
        out = torch.relu(block.bn2(out))
        if placement == "hidden":
            out = attention(out)
        out = block.bn3(block.conv3(out))
    else:
        if placement == "hidden":
            out = attention(out)
        out = spatial_conv(out)
        if placement == "conv":
            out = attention(out)
        out = block.bn2(out)
    if placement == "residual":
        out = attention(out)
    return torch.relu(out + shortcut)


@pytest.mark.parametrize("name", excite.available())
@pytest.mark.parametrize("builder", ["resnet18", "resnet50"])
def test_every_module_sits_at_its_paper_placement(name, builder):
    net = models.create(builder, attention=name, stem="small", width=16, in_channels=1, num_classes=10)
    randomize_(net).eval()
    expected_placement = "conv" if name == "simam" else "residual"
    assert net.placement == expected_placement
    block = net.layer2[0]
    x = torch.randn(2, block.conv1.in_channels, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(block(x), _expected_block(block, x, expected_placement))
        # The attention changes the result: it is really in the forward path.
        plain = _expected_block(block, x, "none")
        assert not torch.allclose(block(x), plain)


@pytest.mark.parametrize("placement", ["residual", "hidden", "conv"])
def test_placement_override(placement):
    net = randomize_(models.resnet50(attention="se", placement=placement, stem="small", width=16)).eval()
    block = net.layer3[1]
    assert len(net.attention_modules()) == 16
    width = (
        block.conv2[0].out_channels if isinstance(block.conv2, nn.Sequential) else block.conv2.out_channels
    )
    channels = block.bn3.num_features if placement == "residual" else width
    assert net.attention_modules()[8].channels == channels
    x = torch.randn(2, block.conv1.in_channels, 7, 7)
    with torch.no_grad():
        torch.testing.assert_close(block(x), _expected_block(block, x, placement))


def test_v1_puts_the_stride_in_the_first_1x1():
    v1, v15 = models.resnet50(stride_in_1x1=True), models.resnet50()
    assert v1.layer2[0].conv1.stride == (2, 2) and v1.layer2[0].conv2.stride == (1, 1)
    assert v15.layer2[0].conv1.stride == (1, 1) and v15.layer2[0].conv2.stride == (2, 2)


# ----------------------------------------------------------------------------------------------------------
# The Fashion-MNIST configuration: small stem, narrow width, 1 input channel, every module


def test_small_stem_stage_settings_follow_the_feature_size():
    net = models.resnet18(attention="fca", stem="small", width=16, in_channels=1, num_classes=10)
    assert net.stage_sizes == [(28, 28), (14, 14), (7, 7), (4, 4)]
    grids = sorted({m.dct_size for m in net.attention_modules()}, reverse=True)
    assert grids == [(28, 28), (14, 14), (7, 7), (4, 4)]
    net = models.resnet18(attention="rgse", stem="small", width=16, in_channels=1, num_classes=10)
    settings = [(m.pool_size, m.fusion_kernel) for m in net.attention_modules()[::2]]
    # 28 = 7·4, 14 = 7·2, 7 = one window, 4 < 7 pooled whole.
    assert settings == [(7, 4), (7, 2), (7, None), (4, None)]
    # ImageNet stem at 224: FcaNet's c2wh (56, 28, 14, 7) and RGSE's official 8, 4, 2, none.
    net = models.resnet50(attention="rgse")
    assert [net.layer1[0].attention.fusion_kernel, net.layer2[0].attention.fusion_kernel] == [8, 4]
    assert [net.layer3[0].attention.fusion_kernel, net.layer4[0].attention.fusion_kernel] == [2, None]


@pytest.mark.parametrize("name", excite.available())
def test_fashion_mnist_network_trains_with_every_module(name):
    torch.manual_seed(0)
    net = models.resnet18(attention=name, stem="small", width=16, in_channels=1, num_classes=10)
    x, y = torch.randn(4, 1, 28, 28), torch.randint(0, 10, (4,))
    loss = F.cross_entropy(net(x), y)
    loss.backward()
    assert torch.isfinite(loss)
    # Every attention parameter is in the backward graph (a gradient tensor exists), and the modules
    # together receive a non-zero gradient. (Per module a zero is possible: at width 16 an r=16
    # bottleneck has one hidden unit, which a ReLU can switch off for the whole batch.)
    total = torch.zeros(())
    for module in net.attention_modules():
        for pname, parameter in module.named_parameters():
            assert parameter.grad is not None, f"{name}.{pname} is not in the backward graph"
            total = total + parameter.grad.abs().sum()
    has_parameters = any(True for m in net.attention_modules() for _ in m.parameters())
    assert total > 0 or not has_parameters


def test_rgse_refuses_a_size_it_was_not_built_for():
    net = models.resnet18(attention="rgse", stem="small", width=16, in_channels=1, num_classes=10).eval()
    # Built for 28 (stage 1: 7-wide window, 4x4 fusion), a 56 input leaves 2x2 descriptors.
    with pytest.raises(ValueError, match="RGSE"):
        net(torch.randn(1, 1, 56, 56))
    net = models.resnet18(
        attention="rgse", stem="small", width=16, in_channels=1, num_classes=10, input_size=56
    )
    assert net.layer1[0].attention.fusion_kernel == 8
    assert net.eval()(torch.randn(1, 1, 56, 56)).shape == (1, 10)


def test_channel_changing_attention_is_refused_in_a_residual_network():
    with pytest.raises(ValueError, match="turns 64 channels into 128"):
        models.resnet18(attention="scse", attention_options={"aggregation": "concat"}, stem="small", width=64)


def test_callable_attention_and_bad_arguments():
    calls = []

    def gate(channels, dim, **options):
        calls.append((channels, dim, options))
        return excite.SE(channels, dim=dim, reduction=4)

    net = models.resnet18(attention=gate, attention_options={"tag": 1}, stem="small", width=16)
    assert calls[0] == (16, 2, {"tag": 1}) and len(calls) == 8
    assert count_parameters(net) > count_parameters(models.resnet18(stem="small", width=16))
    with pytest.raises(ValueError, match="unknown attention 'see'"):
        models.resnet18(attention="see")
    with pytest.raises(ValueError, match="must return an nn.Module"):
        models.resnet18(attention=lambda c, dim: 3)
    with pytest.raises(ValueError, match="stem must be one of"):
        models.resnet18(stem="tiny")
    with pytest.raises(ValueError, match="placement must be one of"):
        models.resnet18(attention="se", placement="after")
    with pytest.raises(ValueError, match="stage_options needs one dict per stage"):
        models.resnet18(attention="eca", stage_options=[{}])
    with pytest.raises(ValueError, match="fixes \\['attention'\\]"):
        models.se_resnet50(attention="eca")
    with pytest.raises(ValueError, match="expected a 4-D input"):
        models.resnet18()(torch.randn(1, 3, 8, 8, 8))


# ----------------------------------------------------------------------------------------------------------
# 1-D and 3-D networks: equal to the 2-D network on inputs with a singleton axis


def _embed_kernels(target: nn.Module, source: nn.Module) -> None:
    """Copy 2-D weights into a 1-D (centre row) or 3-D (kernel in the centre depth slice) network."""
    own = target.state_dict()
    copied = {}
    for key, value in source.state_dict().items():
        goal = own[key]
        if value.dim() == 4 and goal.dim() == 3:
            value = value[:, :, value.shape[2] // 2, :]
        elif value.dim() == 4 and goal.dim() == 5:
            embedded = torch.zeros_like(goal)
            embedded[:, :, goal.shape[2] // 2] = value
            value = embedded
        copied[key] = value.reshape(goal.shape)
    target.load_state_dict(copied)


@pytest.mark.parametrize("dim", [1, 3])
def test_other_dims_match_the_2d_network_on_a_singleton_axis(dim):
    options = dict(attention="se", attention_options={"reduction": 4}, stem="small", width=16, num_classes=5)
    flat = randomize_(models.resnet18(dim=2, **options)).eval()
    other = models.resnet18(dim=dim, input_size=(8,) * dim, **options).eval()
    _embed_kernels(other, flat)
    x = torch.randn(2, 3, 1, 8) if dim == 1 else torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        expected = flat(x)
        actual = other(x[:, :, 0]) if dim == 1 else other(x.unsqueeze(2))
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-5)


# ----------------------------------------------------------------------------------------------------------
# Initialisation


def test_torchvision_style_init():
    torch.manual_seed(0)
    net = models.resnet50(attention="eca")
    conv = net.layer3[0].conv2
    fan_out = conv.out_channels * conv.kernel_size[0] * conv.kernel_size[1]
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2.0 / fan_out), rel=0.05)
    assert torch.all(net.layer3[0].bn2.weight == 1) and torch.all(net.layer3[0].bn2.bias == 0)
    # ECA keeps PyTorch's Conv1d default, U(-1/sqrt(k), 1/sqrt(k)), as in the release.
    eca = net.layer1[0].attention.conv.weight
    assert eca.abs().max().item() <= 1 / math.sqrt(eca.numel())
    # The megvii presets zero every bias, attention and classifier included.
    spse = models.spse_resnet50()
    biases = [
        p for n, p in spse.named_parameters() if n.endswith("bias") and "norm" not in n and "bn" not in n
    ]
    assert biases and all(torch.all(b == 0) for b in biases)


def test_3d_networks_have_no_default_input_size():
    # A 224³ DCT bank would take gigabytes: in 3-D the size must be given for per-stage settings.
    net = models.resnet18(dim=3, attention="fca", stem="small", width=16, num_classes=2)
    assert net.input_size is None and net.layer1[0].attention.dct_size == (7, 7, 7)
    with pytest.raises(ValueError, match="pass input_size"):
        models.resnet18(dim=3, attention="rgse", stem="small", width=16)
    net = models.resnet18(dim=3, attention="rgse", stem="small", width=16, num_classes=2, input_size=14)
    assert [net.layer1[0].attention.fusion_kernel, net.layer2[0].attention.fusion_kernel] == [2, None]
    assert net.eval()(torch.randn(1, 3, 14, 14, 14)).shape == (1, 2)
