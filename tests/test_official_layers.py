"""``excite.load_official`` for single modules: the sources each module accepts, and the all-or-nothing
errors (wrong source, a source without the module, missing, unexpected and mismatched keys)."""

from __future__ import annotations

import pytest
import torch
from excite_test_helpers import randomize_
from torch import nn

import excite
from excite.official import SOURCES, supported_sources

EXPECTED_SOURCES = {
    "se": {"timm", "torchvision", "monai"},
    "cse": {"official", "timm", "torchvision", "monai"},
    "sse": {"official"},
    "scse": {"official", "smp"},
    "eca": {"official", "timm"},
    "fca": {"official"},
    "coord": {"official"},
    "simam": {"official"},
    "spse": {"official"},
    "rgse": {"official"},
    "cbam": {"official", "timm"},
}


@pytest.mark.parametrize("name", sorted(EXPECTED_SOURCES))
def test_supported_sources(name):
    assert set(supported_sources(excite.create(name, 32))) == EXPECTED_SOURCES[name]


def snapshot(module: nn.Module) -> dict:
    return {key: value.clone() for key, value in module.state_dict().items()}


def assert_unchanged(module: nn.Module, before: dict) -> None:
    after = module.state_dict()
    assert after.keys() == before.keys()
    for key, value in after.items():
        assert torch.equal(value, before[key]), key


def official_se_state(channels: int = 32, hidden: int = 16) -> dict:
    """The keys of ai-med's ChannelSELayer."""
    return {
        "fc1.weight": torch.randn(hidden, channels),
        "fc1.bias": torch.randn(hidden),
        "fc2.weight": torch.randn(channels, hidden),
        "fc2.bias": torch.randn(channels),
    }


def test_successful_load_returns_the_target_and_copies_values():
    target = excite.create("cse", 32)
    state = official_se_state()
    assert excite.load_official(target, state, "official") is target
    for key, value in state.items():
        assert torch.equal(target.state_dict()[key], value)


def test_a_module_can_be_passed_instead_of_its_state_dict():
    timm_layers = pytest.importorskip("timm.layers")
    peer = randomize_(timm_layers.SEModule(32, rd_channels=4))
    target = excite.create("se", 32, hidden_channels=4)
    excite.load_official(target, peer, "timm")
    assert torch.equal(target.fc1.weight, peer.fc1.weight.reshape(4, 32))


def test_unknown_source_is_rejected():
    target = excite.create("cse", 32)
    before = snapshot(target)
    with pytest.raises(ValueError, match=r"source must be one of .*'official'.*got 'caffe'"):
        excite.load_official(target, official_se_state(), "caffe")
    assert_unchanged(target, before)
    assert "caffe" not in SOURCES


@pytest.mark.parametrize(
    "name, source, supported",
    [
        ("simam", "timm", "official"),
        ("se", "official", "timm"),
        ("coord", "smp", "official"),
        ("fca", "timm", "official"),
    ],
)
def test_source_without_the_module_is_rejected(name, source, supported):
    target = excite.create(name, 32)
    with pytest.raises(
        ValueError, match=rf"no '{source}' layout is known for {type(target).__name__}.*{supported}"
    ):
        excite.load_official(target, {}, source)


def test_missing_keys_are_listed_and_nothing_is_loaded():
    target = excite.create("cse", 32)
    before = snapshot(target)
    state = official_se_state()
    del state["fc2.bias"], state["fc1.weight"]
    with pytest.raises(ValueError, match="nothing was loaded") as info:
        excite.load_official(target, state, "official")
    message = str(info.value)
    assert "missing keys (2): fc1.weight, fc2.bias" in message
    assert "ChannelSE" in message and "'official'" in message
    assert_unchanged(target, before)


def test_unexpected_keys_are_listed_and_nothing_is_loaded():
    target = excite.create("cse", 32)
    before = snapshot(target)
    state = official_se_state()
    state["fc3.weight"] = torch.randn(3)
    state["sigmoid.scale"] = torch.randn(1)
    with pytest.raises(ValueError, match=r"unexpected keys \(2\): fc3.weight, sigmoid.scale"):
        excite.load_official(target, state, "official")
    assert_unchanged(target, before)


def test_shape_mismatches_are_listed_and_nothing_is_loaded():
    target = excite.create("cse", 32)  # hidden 16
    before = snapshot(target)
    with pytest.raises(
        ValueError, match=r"shape mismatches \(3\): fc1.weight: source \(8, 32\) vs ours \(16, 32\)"
    ):
        excite.load_official(target, official_se_state(hidden=8), "official")
    assert_unchanged(target, before)


def test_a_single_bad_key_blocks_the_whole_load():
    """All or nothing: three good keys and one bad one load nothing."""
    target = excite.create("cse", 32)
    before = snapshot(target)
    state = official_se_state()
    state["fc2.bias"] = torch.randn(31)
    with pytest.raises(ValueError, match="fc2.bias: source \\(31,\\) vs ours \\(32,\\)"):
        excite.load_official(target, state, "official")
    assert_unchanged(target, before)


def test_missing_batchnorm_counter_is_filled_in():
    """Old checkpoints (PyTorch < 0.4.1) have no num_batches_tracked; that alone must not fail."""
    official = {
        "conv1.weight": torch.randn(8, 16, 1, 1),
        "conv1.bias": torch.randn(8),
        "bn1.weight": torch.rand(8),
        "bn1.bias": torch.randn(8),
        "bn1.running_mean": torch.randn(8),
        "bn1.running_var": torch.rand(8) + 0.5,
        "conv_h.weight": torch.randn(16, 8, 1, 1),
        "conv_h.bias": torch.randn(16),
        "conv_w.weight": torch.randn(16, 8, 1, 1),
        "conv_w.bias": torch.randn(16),
    }
    target = excite.create("coord", 16)
    excite.load_official(target, official, "official")
    assert torch.equal(target.norm.running_var, official["bn1.running_var"])


def test_one_by_one_kernels_load_into_linear_weights_and_other_shapes_do_not():
    target = excite.create("se", 32, hidden_channels=4)
    state = {
        "fc1.weight": torch.randn(4, 32, 1, 1),
        "fc1.bias": torch.randn(4),
        "fc2.weight": torch.randn(32, 4, 1, 1),
        "fc2.bias": torch.randn(32),
    }
    excite.load_official(target, state, "torchvision")
    assert torch.equal(target.fc2.weight, state["fc2.weight"].reshape(32, 4))
    before = snapshot(target)
    state["fc1.weight"] = torch.randn(4, 32, 3, 3)
    with pytest.raises(ValueError, match=r"fc1.weight: source \(4, 32, 3, 3\) vs ours \(4, 32\)"):
        excite.load_official(target, state, "torchvision")
    assert_unchanged(target, before)
