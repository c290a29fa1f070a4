"""excite.models.create/available: every network builds by name, and the shared builder contract."""

from __future__ import annotations

import pytest
import torch

import excite.models as models


def test_every_name_builds_and_rejects_unknown_names():
    assert {"resnet50", "se_resnet50", "mobilenet_v2", "unet", "densenet", "inception"} <= set(
        models.available()
    )
    assert isinstance(models.create("resnet18", num_classes=3), models.ResNet)
    with pytest.raises(ValueError, match="unknown network 'resnet51'"):
        models.create("resnet51")


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2", "mobilenext", "densenet", "inception"])
def test_classifiers_share_the_builder_contract(name):
    # in_channels, num_classes (0: pooled features), a callable attention with options, a wrong rank.
    seen = []

    def attention(channels, dim, **options):
        seen.append(options)
        return torch.nn.Identity()

    net = models.create(name, in_channels=1, num_classes=0, attention=attention, attention_options={"k": 1})
    assert seen and all(o == {"k": 1} for o in seen)
    features = net.eval()(torch.randn(1, 1, 64, 64))
    assert features.shape == (1, net.num_features)
    with pytest.raises(ValueError, match="expected a 4-D input"):
        net(torch.randn(1, 1, 64))
