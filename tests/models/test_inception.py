"""Inception (GoogLeNet-BN): torchvision's googlenet layout and count, attention on each whole Inception
module output (the SE paper's SE-Inception), widening, and every registered module."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from excite_test_helpers import randomize_

import excite
import excite.models as models
from excite.models import count_parameters


def test_googlenet_count_and_torchvision_layout_with_equal_outputs():
    tv = pytest.importorskip("torchvision.models")
    reference = randomize_(tv.googlenet(weights=None, aux_logits=False, init_weights=True)).eval()
    net = models.inception()
    assert count_parameters(net) == count_parameters(reference) == 6_624_904
    excite.load_official(net, reference.state_dict(), "torchvision")
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(net.eval()(x), reference(x), rtol=1e-4, atol=1e-5)
    with_aux = tv.googlenet(weights=None, aux_logits=True, init_weights=True)
    with pytest.raises(ValueError, match="auxiliary classifiers"):
        excite.load_official(models.inception(), with_aux.state_dict(), "torchvision")


def test_attention_on_the_whole_module_output():
    net = randomize_(models.inception(attention="se", stem="small", num_classes=10)).eval()
    widths = [m.out_channels for m in net.inception_modules()]
    assert widths == [256, 480, 512, 512, 512, 528, 832, 832, 1024]
    assert [m.channels for m in net.attention_modules()] == widths
    # SE-Inception's attention parameters: 2·C·C/16 + C/16 + C per module.
    assert count_parameters(net) - count_parameters(models.inception(stem="small", num_classes=10)) == sum(
        2 * c * (c // 16) + c // 16 + c for c in widths
    )
    module = net.inception4c
    x = torch.randn(2, 512, 7, 7)
    with torch.no_grad():
        branches = torch.cat([module.branch1(x), module.branch2(x), module.branch3(x), module.branch4(x)], 1)
        torch.testing.assert_close(module(x), module.attention(branches))
        assert not torch.allclose(module(x), branches)


def test_channel_changing_attention_widens_the_next_module():
    net = models.inception(
        attention="scse", attention_options={"aggregation": "concat"}, stem="small", num_classes=5
    )
    assert net.inception3b.branch1.conv.in_channels == 512
    assert net.fc.in_features == 2048
    assert net.eval()(torch.randn(1, 3, 28, 28)).shape == (1, 5)


@pytest.mark.parametrize("name", excite.available())
def test_every_module_trains_in_inception(name):
    net = models.inception(attention=name, stem="small", num_classes=10, in_channels=1)
    loss = F.cross_entropy(net(torch.randn(2, 1, 28, 28)), torch.tensor([3, 4]))
    loss.backward()
    assert torch.isfinite(loss)
    for module in net.attention_modules():
        for pname, parameter in module.named_parameters():
            assert parameter.grad is not None, f"{name}.{pname} is not in the backward graph"
