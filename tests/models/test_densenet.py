"""DenseNet-BC: torchvision's densenet121 layout and count, attention on each dense layer's k new
channels before concatenation (DenisNet-SE, applications.md §3), widening, every registered module."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from excite_test_helpers import randomize_

import excite
import excite.models as models
from excite.models import count_parameters


def test_densenet121_count_and_torchvision_layout_with_equal_outputs():
    tv = pytest.importorskip("torchvision.models")
    reference = randomize_(tv.densenet121(weights=None)).eval()
    net = models.densenet()
    assert count_parameters(net) == count_parameters(reference) == 7_978_856
    excite.load_official(net, reference.state_dict(), "torchvision")
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(net.eval()(x), reference(x), rtol=1e-4, atol=1e-5)


def test_attention_recalibrates_only_the_new_features():
    net = randomize_(
        models.densenet(
            attention="se", attention_options={"reduction": 4}, growth_rate=12, block_config=(3, 3),
            num_init_features=16, stem="small", num_classes=10,
        )
    ).eval()  # fmt: skip
    assert [m.channels for m in net.attention_modules()] == [12] * 6
    block = net.blocks[0]
    x = torch.randn(2, 16, 10, 10)
    with torch.no_grad():
        # The block written out: each layer sees the concatenation so far, its k new maps are
        # recalibrated by its own module, and only those are appended.
        features = [x]
        for layer in block:
            inner = layer.conv1(F.relu(layer.norm1(torch.cat(features, 1))))
            new = layer.conv2(F.relu(layer.norm2(inner)))
            features.append(layer.attention(new))
        expected = torch.cat(features, 1)
        features = [x]
        for layer in block:
            features.append(layer(features))
        torch.testing.assert_close(torch.cat(features, 1), expected)
        # The input features pass through unchanged (no attention on reused features).
        torch.testing.assert_close(torch.cat(features, 1)[:, :16], x)


def test_channel_changing_attention_widens_the_concatenation():
    options = dict(growth_rate=8, block_config=(2, 2), num_init_features=16, stem="small", num_classes=3)
    plain = models.densenet(**options)
    wide = models.densenet(attention="scse", attention_options={"aggregation": "concat"}, **options)
    # Each layer adds 2k instead of k: block 1 ends at 16 + 2·16 = 48 channels, halved to 24.
    assert plain.transitions[0].conv.in_channels == 32 and wide.transitions[0].conv.in_channels == 48
    assert wide.blocks[1][1].norm1.num_features == 24 + 16
    assert wide.eval()(torch.randn(1, 3, 16, 16)).shape == (1, 3)


@pytest.mark.parametrize("name", excite.available())
def test_every_module_trains_in_a_densenet(name):
    reduced = {"reduction": 4} if name in ("se", "fca", "spse", "rgse", "cbam") else None
    net = models.densenet(
        attention=name, attention_options=reduced, growth_rate=16, block_config=(2, 2, 2),
        num_init_features=16, stem="small", num_classes=10,
    )  # fmt: skip
    loss = F.cross_entropy(net(torch.randn(2, 3, 28, 28)), torch.tensor([0, 1]))
    loss.backward()
    assert torch.isfinite(loss)
    for module in net.attention_modules():
        for pname, parameter in module.named_parameters():
            assert parameter.grad is not None, f"{name}.{pname} is not in the backward graph"


def test_errors():
    with pytest.raises(ValueError, match="stem must be one of"):
        models.densenet(stem="cifar")
    with pytest.raises(ValueError, match="0-wide bottleneck"):
        models.densenet(attention="se", growth_rate=12)  # 12 // 16 = 0: pass a smaller reduction
    with pytest.raises(ValueError, match="placement must be one of"):
        models.densenet(attention="se", placement="residual")
