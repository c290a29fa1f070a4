"""``excite.attach`` on torchvision, timm, MONAI and excite networks.

References: the published/computed parameter integers of modules.md §9 (SE-ResNet-50, FcaNet-50,
SPSE/RGSE-ResNet-50, CA-MobileNetV2, ECA-MobileNetV2), hand transcriptions of the placement rules (a
block's forward written out with the attention where the paper puts it), the unmodified networks'
outputs (identity init) and the excite builders' own placement.
"""

from __future__ import annotations

import copy
import io
import re

import pytest
import torch
from torch import nn

import excite
from excite.surgery import ResidualScale

torchvision = pytest.importorskip("torchvision")


def count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def on_meta(build):
    """Build a network on the meta device: shapes only, so counting parameters of a ResNet-50 is instant."""
    with torch.device("meta"):
        return build()


# ---------------------------------------------------------------------------------------------------------
# Published parameter counts (modules.md §1, §4, §5, §7, §9)


@pytest.mark.parametrize(
    "attention, expected",
    [
        ("se", 28_088_024),  # SE-ResNet-50 with FC biases (timm seresnet50)
        ("eca", 25_557_118),  # ECA-ResNet-50 with the adaptive k = 5, 5, 5, 7
        ("spse", 28_480_728),  # SPSE-ResNet-50
        ("rgse", 28_212_440),  # RGSE-ResNet-50 (fusion kernels 8, 4, 2 from the 224 dry run)
        ("simam", 25_557_032),  # SimAM-ResNet-50: no parameters
    ],
)
def test_resnet50_parameter_counts(attention, expected):
    model = on_meta(torchvision.models.resnet50)
    report = excite.attach(model, attention)
    assert count(model) == expected
    assert len(report) == 16
    assert report.parameter_count == expected - 25_557_032


def test_fcanet50_count_and_the_official_dct_grid_per_stage():
    model = on_meta(torchvision.models.resnet50)
    report = excite.attach(model, "fca")
    assert count(model) == 28_071_976  # FcaNet-50
    sizes = sorted({p.spatial_size for p in report}, reverse=True)
    assert sizes == [(56, 56), (28, 28), (14, 14), (7, 7)]  # FcaNet's c2wh at 224
    for point in report:
        assert model.get_submodule(point.path).dct_size == point.spatial_size


def test_se_resnet18_matches_legacy_count():
    model = on_meta(torchvision.models.resnet18)
    excite.attach(model, "se")
    assert count(model) == 11_778_592  # SE-ResNet-18 with bias, C // 16 (timm legacy_seresnet18)


def test_coordinate_attention_mobilenet_v2_count_and_sites():
    model = on_meta(torchvision.models.mobilenet_v2)
    report = excite.attach(model, "coord")
    assert count(model) == 3_950_648  # the official mbv2_ca (README 3.95M)
    assert len(report) == 16 and report.skipped[0][0] == "features.1"  # the t=1 block gets none
    assert all(re.fullmatch(r"features\.\d+\.conv\.1\.attention", p.path) for p in report)


def test_eca_mobilenet_v2_official_kernels_with_where_predicates():
    """ECA-MobileNetV2 (k = 1 below 96 output channels, else 3) after every pw-linear BN: 3,504,903."""
    model = on_meta(torchvision.models.mobilenet_v2)

    def pw_linear_bn(name, module, small):
        is_last_bn = isinstance(module, nn.BatchNorm2d) and re.fullmatch(r"features\.\d+\.conv\.\d+", name)
        return bool(is_last_bn) and (module.num_features < 96) == small

    first = excite.attach(model, "eca", where=lambda n, m: pw_linear_bn(n, m, True), kernel_size=1)
    second = excite.attach(model, "eca", where=lambda n, m: pw_linear_bn(n, m, False), kernel_size=3)
    assert len(first) + len(second) == 17
    assert count(model) == 3_504_903


# ---------------------------------------------------------------------------------------------------------
# Placement, against hand-written forwards


def _randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    generator = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.randn(m.num_features, generator=generator) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=generator) + 0.5)
    return model.eval()


def test_bottleneck_se_sits_after_bn3_before_the_sum():
    block = torchvision.models.resnet.Bottleneck(64, 16)
    _randomize_bn(block)
    report = excite.attach(block, "se", reduction=4)
    se = block.get_submodule(report[0].path)
    assert report[0].path == "bn3.attention" and report[0].mechanism == "hook"
    x = torch.randn(2, 64, 9, 9)
    out = block.relu(block.bn1(block.conv1(x)))
    out = block.relu(block.bn2(block.conv2(out)))
    # Module.forward called directly: the hook that applies the attention must not run twice.
    bn3 = nn.BatchNorm2d.forward(block.bn3, block.conv3(out))
    expected = torch.relu(se(bn3) + x)
    torch.testing.assert_close(block(x), expected)


def test_basic_block_simam_sits_after_conv2_before_bn2():
    block = _randomize_bn(torchvision.models.resnet.BasicBlock(8, 8))
    excite.attach(block, "simam")
    simam = excite.SimAM(lambda_=1e-4)
    x = torch.randn(2, 8, 6, 6)
    out = block.relu(block.bn1(block.conv1(x)))
    conv2 = nn.Conv2d.forward(block.conv2, out)  # without the hook that applies SimAM
    expected = torch.relu(block.bn2(simam(conv2)) + x)
    torch.testing.assert_close(block(x), expected)


def test_inverted_residual_ca_after_depthwise_and_eca_after_pw_linear():
    block = _randomize_bn(torchvision.models.mobilenetv2.InvertedResidual(16, 16, 1, 6))
    ca_report = excite.attach(block, "coord")
    eca_report = excite.attach(block, "eca", kernel_size=3)
    ca = block.get_submodule(ca_report[0].path)
    eca = block.get_submodule(eca_report[0].path)
    pw, dw, project, bn = block.conv[0], block.conv[1], block.conv[2], block.conv[3]
    x = torch.randn(2, 16, 7, 7)
    hidden = ca(dw[2](dw[1](dw[0](pw(x)))))  # dw conv, BN, ReLU6, then CA on the 96-wide hidden map
    expected = x + eca(bn(project(hidden)))
    torch.testing.assert_close(block(x), expected)


def test_mbconv_simam_hooks_the_depthwise_conv():
    model = _randomize_bn(torchvision.models.efficientnet_b0())
    block = model.features[2][0]
    report = excite.attach(block, "simam")
    assert report[0].path == "block.1.0.attention"
    expand, depthwise, se, project = block.block
    x = torch.randn(1, 16, 8, 8)
    conv = nn.Conv2d.forward(depthwise[0], expand(x))  # without the hook that applies SimAM
    hidden = depthwise[2](depthwise[1](excite.SimAM()(conv)))
    torch.testing.assert_close(block(x), project(se(hidden)))


# ---------------------------------------------------------------------------------------------------------
# init="identity": the network computes what it computed before, for every family


def _convnext_small():
    from torchvision.models.convnext import CNBlockConfig, ConvNeXt

    return ConvNeXt([CNBlockConfig(16, 32, 1), CNBlockConfig(32, None, 1)], num_classes=10)


TV_MODELS = {
    "tv_resnet18": (lambda: torchvision.models.resnet18(num_classes=10), (1, 3, 64, 64)),
    "tv_mobilenet_v2": (
        lambda: torchvision.models.mobilenet_v2(width_mult=0.5, num_classes=10),
        (1, 3, 64, 64),
    ),
    "tv_efficientnet_b0": (lambda: torchvision.models.efficientnet_b0(num_classes=10), (1, 3, 64, 64)),
    "tv_convnext": (_convnext_small, (1, 3, 64, 64)),
}


def _timm_models():
    timm = pytest.importorskip("timm")
    return {
        "timm_resnet18": (lambda: timm.create_model("resnet18", num_classes=10), (1, 3, 64, 64)),
        "timm_mobilenetv2": (lambda: timm.create_model("mobilenetv2_050", num_classes=10), (1, 3, 64, 64)),
        "timm_efficientnet_b0": (
            lambda: timm.create_model("efficientnet_b0", num_classes=10),
            (1, 3, 64, 64),
        ),
    }


def _monai_models():
    nets = pytest.importorskip("monai.networks.nets")
    return {
        "monai_resnet10": (
            lambda: nets.resnet10(spatial_dims=3, n_input_channels=1, num_classes=2),
            (1, 1, 32, 32, 32),
        ),
        "monai_unet": (
            lambda: nets.UNet(
                spatial_dims=3,
                in_channels=1,
                out_channels=2,
                channels=(8, 16, 32),
                strides=(2, 2),
                num_res_units=1,
            ),
            (1, 1, 16, 16, 16),
        ),
    }


# Small options so every module fits narrow test networks (8-16 channels).
SMALL = {
    "se": {"reduction": 4},
    "fca": {"reduction": 4},
    "cbam": {"reduction": 4},
    "coord": {"reduction": 4},
    "spse": {"reduction": 4},
    "rgse": {"reduction": 4},
    "scse": {"reduction": 2},
}

CASES = [("tv_resnet18", name) for name in excite.available()]
# Every family on one network; the three placement kinds (SE-like, ECA, SimAM) on every other one.
CASES += [
    (m, n) for m in ("tv_mobilenet_v2", "tv_efficientnet_b0", "tv_convnext") for n in ("se", "eca", "simam")
]
CASES += [
    (m, n)
    for m in ("timm_resnet18", "timm_mobilenetv2", "timm_efficientnet_b0")
    for n in ("se", "eca", "simam")
]
CASES += [("tv_mobilenet_v2", "coord"), ("timm_mobilenetv2", "scse")]
CASES += [("monai_resnet10", name) for name in ("se", "eca", "simam")]
CASES += [("monai_unet", name) for name in ("cse", "simam", "sse")]

_BUILT: dict = {}


def _reference(model_name: str):
    """The network, an input and its output before surgery, built once per network."""
    if model_name not in _BUILT:
        table = dict(TV_MODELS)
        if model_name.startswith("timm"):
            table.update(_timm_models())
        if model_name.startswith("monai"):
            table.update(_monai_models())
        build, size = table[model_name]
        torch.manual_seed(0)
        model = _randomize_bn(build())
        x = torch.randn(size)
        with torch.no_grad():
            _BUILT[model_name] = (model, x, model(x))
    return _BUILT[model_name]


@pytest.mark.parametrize("model_name, attention", CASES)
def test_identity_init_keeps_the_output(model_name, attention):
    base, x, expected = _reference(model_name)
    model = copy.deepcopy(base)
    report = excite.attach(
        model, attention, init="identity", input_size=(1,) + tuple(x.shape[1:]), **SMALL.get(attention, {})
    )
    assert len(report) > 0
    assert {p.identity for p in report} <= {"residual-scale", "gate-sum"}
    with torch.no_grad():
        torch.testing.assert_close(model(x), expected, rtol=0, atol=0)


@pytest.mark.parametrize("attention", ["se", "simam"])
def test_default_init_changes_the_output(attention):
    """The identity test above can fail: without identity init the same surgery changes the output."""
    base, x, expected = _reference("tv_resnet18")
    model = copy.deepcopy(base)
    excite.attach(model, attention, **SMALL.get(attention, {}))
    with torch.no_grad():
        assert not torch.allclose(model(x), expected, atol=1e-4)


def test_identity_strategies_per_module():
    model = copy.deepcopy(_reference("tv_resnet18")[0])
    add = excite.attach(model, "scse", init="identity", aggregation="add", reduction=2)
    assert {p.identity for p in add} == {"gate-sum"} and {p.module_type for p in add} == {"SCSE"}
    model = copy.deepcopy(_reference("tv_resnet18")[0])
    se = excite.attach(model, "se", init="identity", reduction=4)
    assert {p.identity for p in se} == {"residual-scale"} and {p.module_type for p in se} == {
        "ResidualScale(SE)"
    }


def test_residual_scale_trains_from_identity():
    base, x, _ = _reference("tv_resnet18")
    model = copy.deepcopy(base).train()
    report = excite.attach(model, "se", init="identity", reduction=4)
    model(x).square().mean().backward()
    alphas = [model.get_submodule(p.path).alpha for p in report]
    assert all(isinstance(model.get_submodule(p.path), ResidualScale) for p in report)
    assert all(a.grad is not None and a.grad.abs() > 0 for a in alphas)


# ---------------------------------------------------------------------------------------------------------
# Keys, the lenient loader, serialisation


def test_new_keys_are_exactly_the_missing_ones():
    base, x, expected = _reference("tv_resnet18")
    pretrained = copy.deepcopy(base.state_dict())
    model = torchvision.models.resnet18(num_classes=10).eval()
    report = excite.attach(model, "cbam", init="identity", reduction=4)
    result = model.load_state_dict(pretrained, strict=False)
    # BatchNorm fills a missing num_batches_tracked itself, so PyTorch does not report those keys.
    new_keys = sorted(k for k in report.new_keys if not k.endswith("num_batches_tracked"))
    assert sorted(result.missing_keys) == new_keys and not result.unexpected_keys
    assert set(report.new_parameters) <= set(report.new_keys)
    assert any(
        k.endswith("running_mean") for k in report.new_keys
    )  # CBAM's spatial BN buffers are new keys too
    model = torchvision.models.resnet18(num_classes=10).eval()
    report = excite.attach(model, "cbam", init="identity", reduction=4)
    report.load_pretrained(pretrained)
    with torch.no_grad():
        torch.testing.assert_close(model(x), expected, rtol=0, atol=0)


def test_load_pretrained_refuses_other_missing_keys():
    base = _reference("tv_resnet18")[0]
    model = torchvision.models.resnet18(num_classes=10)
    report = excite.attach(model, "eca")
    broken = dict(base.state_dict())
    del broken["layer1.0.conv1.weight"]
    with pytest.raises(ValueError, match="layer1.0.conv1.weight"):
        report.load_pretrained(broken)


def test_hooked_model_survives_deepcopy_and_torch_save():
    base, x, _ = _reference("tv_resnet18")
    model = copy.deepcopy(base)
    excite.attach(model, "se", reduction=4)
    with torch.no_grad():
        expected = model(x)
        torch.testing.assert_close(copy.deepcopy(model)(x), expected)
        buffer = io.BytesIO()
        torch.save(model, buffer)
        buffer.seek(0)
        torch.testing.assert_close(torch.load(buffer, weights_only=False)(x), expected)


def test_report_prints_every_point():
    model = on_meta(lambda: torchvision.models.resnet18(num_classes=10))
    report = excite.attach(model, "eca")
    text = str(report)
    assert "inserted 8 module(s)" in text and "layer4.1.bn2.attention" in text
    rich = pytest.importorskip("rich.console")
    console = rich.Console(record=True, width=160)
    console.print(report)
    assert "layer1.0.bn2.attention" in console.export_text()


# ---------------------------------------------------------------------------------------------------------
# where=, errors


def test_where_list_inserts_after_the_named_modules():
    base, x, _ = _reference("tv_resnet18")
    model = copy.deepcopy(base)
    report = excite.attach(model, "se", where=["layer2.1.bn2", "layer4.0.conv1"], reduction=4)
    assert [p.path for p in report] == ["layer2.1.bn2.attention", "layer4.0.conv1.attention"]
    assert [p.channels for p in report] == [128, 512]  # measured by the dry run
    assert [p.spatial_size for p in report] == [(28, 28), (7, 7)]


def test_where_rejects_unknown_names():
    model = on_meta(lambda: torchvision.models.resnet18(num_classes=10))
    with pytest.raises(ValueError, match="layer2.1.bn9"):
        excite.attach(model, "se", where=["layer2.1.bn9"])


class _Unknown(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3))
        self.head = nn.Linear(8, 2)

    def forward(self, x):
        return self.head(self.body(x).mean((2, 3)))


def test_unrecognised_architecture_names_its_block_types():
    with pytest.raises(ValueError, match=r"_Unknown x1, Sequential x1"):
        excite.attach(_Unknown(), "se")


def test_unrecognised_architecture_works_with_a_predicate():
    model = _Unknown().eval()
    report = excite.attach(
        model, "eca", where=lambda name, m: isinstance(m, nn.Conv2d), input_size=(1, 3, 16, 16)
    )
    assert [p.path for p in report] == ["body.0.attention", "body.2.attention"]
    assert model(torch.randn(1, 3, 16, 16)).shape == (1, 2)


def test_module_instances_and_concat_are_refused():
    model = on_meta(lambda: torchvision.models.resnet18(num_classes=10))
    with pytest.raises(ValueError, match="factory"):
        excite.attach(model, excite.SE(64))
    with pytest.raises(ValueError, match="concat"):
        excite.attach(model, "scse", aggregation="concat")


# ---------------------------------------------------------------------------------------------------------
# excite's own networks: attach fills the empty slots where the builder would put the module


EXCITE_NETWORKS = {
    "resnet18": dict(num_classes=10, stem="small", width=16, input_size=32),
    "mobilenet_v2": dict(num_classes=10, width_mult=0.35, input_size=64),
    "mobilenext": dict(num_classes=10, input_size=64),
    "unet": dict(dim=2, features=(8, 16, 32), input_size=32),
    "densenet": dict(num_classes=10, stem="small", input_size=28),
    "inception": dict(num_classes=10, stem="small", input_size=28),
}
# Every network once, every placement kind in the multi-site ones (residual, hidden, conv).
EXCITE_CASES = [
    ("resnet18", "se"),
    ("resnet18", "simam"),
    ("resnet18", "fca"),
    ("mobilenet_v2", "eca"),
    ("mobilenet_v2", "simam"),
    ("mobilenet_v2", "coord"),
    ("mobilenext", "simam"),
    ("unet", "se"),
    ("densenet", "eca"),
    ("inception", "fca"),
]


@pytest.mark.parametrize("network, attention", EXCITE_CASES)
def test_attach_on_excite_networks_equals_the_builder(network, attention):
    models = pytest.importorskip("excite.models")
    build = getattr(models, network)
    config = EXCITE_NETWORKS[network]
    options = {"reduction": 4} if attention in ("se", "coord", "fca") else {}
    torch.manual_seed(0)
    built = _randomize_bn(build(attention=attention, attention_options=options, **config))
    attached = build(**config).eval()
    report = excite.attach(attached, attention, **options)
    assert len(report) == len([m for m in built.attention_modules()])
    state = built.state_dict()
    if network == "resnet18" and attention == "simam":
        # The builder wraps conv2 as Sequential(conv, SimAM); attach hooks conv2 and keeps its key.
        state = {k.replace("conv2.0.", "conv2."): v for k, v in state.items()}
        assert {p.mechanism for p in report} == {"hook"}
    attached.load_state_dict(state)
    x = torch.randn(2, 1 if network == "unet" else 3, config["input_size"], config["input_size"])
    with torch.no_grad():
        torch.testing.assert_close(attached(x), built(x))
