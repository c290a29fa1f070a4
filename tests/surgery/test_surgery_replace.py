"""``excite.replace`` on timm's SE/ECA ResNets and torchvision's MobileNetV3, EfficientNet and RegNet.

References: the published parameter integers (modules.md §3, §4, §9), the networks' own outputs before
the swap (a new module loaded with the old one's weights must reproduce them exactly), and the network
with its SE modules removed by hand (identity init).
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import excite

timm = pytest.importorskip("timm")
torchvision = pytest.importorskip("torchvision")


def count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def on_meta(build):
    with torch.device("meta"):
        return build()


def test_seresnet50_to_fcanet50_in_one_call():
    model = on_meta(lambda: timm.create_model("seresnet50"))
    report = excite.replace(model, "se", "fca", input_size=(1, 3, 224, 224))
    assert count(model) == 28_071_976  # FcaNet-50 (modules.md §4)
    assert len(report) == 16 and {p.replaced_type for p in report} == {"SEModule"}
    assert sorted({p.spatial_size for p in report}, reverse=True) == [(56, 56), (28, 28), (14, 14), (7, 7)]
    # timm's 1x1-conv FC and FcaNet's Linear share the name but not the shape.
    assert (
        report.removed_keys[0] == "layer1.0.se.fc1.weight"
        and "layer1.0.se.fc1.bias" not in model.state_dict()
    )
    assert model.state_dict()["layer1.0.se.fc1.weight"].shape == (16, 256)


def test_seresnet50_to_eca_then_back_to_se():
    model = on_meta(lambda: timm.create_model("seresnet50"))
    excite.replace(model, "se", "eca")
    assert count(model) == 25_557_118  # ResNet-50 + ECA with k = 5, 5, 5, 7 (timm's ecaresnet rule)
    report = excite.replace(model, "eca", "se")
    assert count(model) == 28_088_024  # back to SE-ResNet-50 with FC biases
    assert {p.replaced_type for p in report} == {"ECA"}


def _timm_se_as_excite(old: nn.Module):
    """An excite SE with the width of a timm ``SEModule`` and its weights."""
    channels, hidden = old.fc1.in_channels, old.fc1.out_channels
    new = excite.SE(channels, hidden_channels=hidden)
    excite.load_official(new, old.state_dict(), "timm")
    return new


def test_swapped_module_with_the_same_weights_gives_the_same_network():
    torch.manual_seed(0)
    model = timm.create_model("seresnet18", num_classes=10).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = model(x)
    olds = {name: m for name, m in model.named_modules() if type(m).__name__ == "SEModule"}
    queue = [olds[name] for name in sorted(olds, key=list(olds).index)]

    def factory(channels, dim=2):
        old = queue.pop(0)
        assert old.fc1.in_channels == channels
        return _timm_se_as_excite(old)

    report = excite.replace(model, "se", factory)
    assert len(report) == 8 and not queue
    with torch.no_grad():
        torch.testing.assert_close(model(x), expected)


@pytest.mark.parametrize("name", ["mobilenet_v3_small", "efficientnet_b0", "regnet_y_400mf"])
def test_torchvision_squeeze_excitation_is_replaced(name):
    model = getattr(torchvision.models, name)(num_classes=10).eval()
    x = torch.randn(1, 3, 64, 64)
    olds = [m for m in model.modules() if isinstance(m, torchvision.ops.SqueezeExcitation)]
    without = copy.deepcopy(model)
    for parent in without.modules():
        for child_name, child in parent.named_children():
            if isinstance(child, torchvision.ops.SqueezeExcitation):
                setattr(parent, child_name, nn.Identity())
    with torch.no_grad():
        expected = without(x)
    report = excite.replace(model, "se", "eca", init="identity")
    assert len(report) == len(olds) > 0
    assert [p.channels for p in report] == [m.fc1.in_channels for m in olds]
    with torch.no_grad():
        torch.testing.assert_close(model(x), expected, rtol=0, atol=0)


def test_load_pretrained_after_replace():
    torch.manual_seed(0)
    source = timm.create_model("seresnet18", num_classes=10).eval()
    model = timm.create_model("seresnet18", num_classes=10).eval()
    report = excite.replace(model, "se", "eca")
    report.load_pretrained(source.state_dict())
    torch.testing.assert_close(model.conv1.weight, source.conv1.weight)
    with pytest.raises(ValueError, match="unexpected"):
        report.load_pretrained({**source.state_dict(), "extra.weight": torch.zeros(1)})


def test_replace_excite_modules_by_class_and_predicate():
    models = pytest.importorskip("excite.models")
    model = on_meta(lambda: models.resnet18(num_classes=10, attention="se"))
    report = excite.replace(model, excite.SE, "simam")
    assert len(report) == 8 and count(model) == 11_689_512 - 513_000 + 5_130  # ResNet-18, 10-way classifier
    report = excite.replace(model, lambda name, m: name == "layer1.0.attention", "eca", kernel_size=3)
    assert [p.path for p in report] == ["layer1.0.attention"] and report.parameter_count == 3


def test_replace_reports_what_it_saw_when_nothing_matches():
    model = on_meta(lambda: torchvision.models.resnet18())
    with pytest.raises(ValueError, match="BasicBlock"):
        excite.replace(model, "se", "eca")
    with pytest.raises(ValueError, match="unknown module family"):
        excite.replace(model, "squeeze", "eca")
