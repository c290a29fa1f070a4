"""The string registry: ``excite.available``, ``excite.create`` and the classes exported by name."""

from __future__ import annotations

import pytest
from excite_test_helpers import FOUNDATION_NAMES, MODULE_OPTIONS

import excite
from excite import _registry

CLASSES = {
    "se": "SE",
    "cse": "ChannelSE",
    "sse": "SpatialSE",
    "scse": "SCSE",
    "eca": "ECA",
    "fca": "FCA",
    "coord": "CoordAttention",
    "simam": "SimAM",
    "spse": "SPSE",
    "rgse": "RGSE",
    "cbam": "CBAM",
}


def test_available_lists_the_eleven_foundation_modules():
    names = excite.available()
    assert set(FOUNDATION_NAMES) <= set(names)
    assert len(FOUNDATION_NAMES) == 11
    assert names == sorted(names)


def test_every_foundation_module_has_a_test_configuration():
    assert set(FOUNDATION_NAMES) <= set(MODULE_OPTIONS)


@pytest.mark.parametrize("name", FOUNDATION_NAMES)
def test_classes_are_exported_by_name(name):
    cls = getattr(excite, CLASSES[name])
    assert CLASSES[name] in excite.__all__
    assert _registry.lookup(name) is cls
    assert cls.registry_name == name
    module = excite.create(name, 32, dim=2)
    assert type(module) is cls


@pytest.mark.parametrize("dim", [1, 2, 3])
def test_create_passes_dim_and_options(dim):
    se = excite.create("se", 64, dim=dim, reduction=8, bias=False, gate="hardsigmoid")
    assert (se.dim, se.hidden_channels, se.fc1.bias) == (dim, 8, None)
    assert type(se.gate).__name__ == "Hardsigmoid"
    eca = excite.create("eca", None, dim=dim, kernel_size=7, padding="circular")
    assert (eca.dim, eca.kernel_size, eca.padding) == (dim, 7, "circular")
    scse = excite.create("scse", 32, dim=dim, reduction=4, aggregation="concat")
    assert (scse.aggregation, scse.cse.hidden_channels) == ("concat", 8)
    fca = excite.create("fca", 32, dim=dim, frequencies="low4", reduction=8, dct_size=14)
    assert fca.dct_size == (14,) * dim and len(fca.frequencies) == 4
    coord = excite.create("coord", 256, dim=dim, reduction=16)
    assert coord.mid_channels == 16 and len(coord.convs) == dim
    assert excite.create("simam", dim=dim, lambda_=0.1).lambda_ == 0.1
    assert excite.create("cbam", 32, dim=dim, spatial_kernel=3).spatial_conv.kernel_size == (3,) * dim
    assert excite.create("rgse", 32, dim=dim, fusion_kernel=4).fusion.kernel_size == (4,) * dim
    assert excite.create("spse", 32, dim=dim, reduction=4).fc1.out_features == 8


def test_unknown_name_lists_the_available_names():
    with pytest.raises(ValueError, match="create: unknown attention 'squeeze'") as info:
        excite.create("squeeze", 32)
    for name in FOUNDATION_NAMES:
        assert name in str(info.value)


def test_unknown_name_suggests_the_closest():
    with pytest.raises(ValueError, match="Did you mean 'simam'"):
        excite.create("simam_", 32)


def test_unknown_option_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"create: 'se' has no option\(s\) \['ratio'\]") as info:
        excite.create("se", 32, ratio=4)
    assert "reduction" in str(info.value) and "hidden_channels" in str(info.value)


def test_bad_dim_and_layout_are_rejected():
    with pytest.raises(ValueError, match="SE: dim must be 1, 2 or 3, got 4"):
        excite.create("se", 32, dim=4)
    with pytest.raises(ValueError, match="layout must be 'channels_first' or 'tokens', got 'nhwc'"):
        excite.create("se", 32, layout="nhwc")


@pytest.mark.parametrize("name", ["se", "cse", "scse", "fca", "spse", "rgse", "cbam", "coord", "sse"])
def test_modules_with_weights_require_channels(name):
    with pytest.raises(ValueError, match="channels is required"):
        excite.create(name)


def test_registering_a_taken_name_is_rejected():
    with pytest.raises(ValueError, match="'se' is already registered"):
        _registry.register("se")(type("Other", (), {}))
