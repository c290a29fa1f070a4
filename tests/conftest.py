"""Shared helpers for the module tests: small configurations of every registered module, seeded random
weights (BatchNorm running statistics included) and inputs.

Test modules import these helpers as ``from excite_test_helpers import ...``: this conftest registers
itself under that unique name, because ``import conftest`` resolves to whichever ``conftest.py`` pytest
loaded last once other test directories have their own.

The configurations are deliberately small (16 channels, a few positions per axis) so that TorchScript,
``torch.compile`` and ONNX export stay within the CI budget. The generic tests (deployment, gradients,
properties, bad input) run over the names in ``MODULE_OPTIONS``; a module registered later joins them by
adding its entry there.
"""

from __future__ import annotations

import math
import os
import sys

import pytest
import torch
from torch import Tensor, nn

import excite

sys.modules.setdefault("excite_test_helpers", sys.modules[__name__])

# Two xdist workers on two cores: one intra-op thread each avoids oversubscription.
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)

CHANNELS = 16
DIMS = (1, 2, 3)

# Options that make each module non-trivial at CHANNELS=16 (bottlenecks wider than one unit). RGSE is
# tied to its input resolution: pool 2, then a stride-2 fusion conv, collapses 4 or 5 positions per axis
# to one value.
MODULE_OPTIONS: dict[str, dict] = {
    "se": {"reduction": 4},
    "cse": {},
    "sse": {},
    "scse": {},
    "eca": {},
    "fca": {"reduction": 4},
    "coord": {"reduction": 4},
    "simam": {},
    "spse": {"reduction": 4},
    "rgse": {"reduction": 4, "pool_size": 2, "fusion_kernel": 2},
    "cbam": {"reduction": 4},
    "eca_coord": {},
}

# Spatial sizes: a main one and a different one for "works at another size" checks. Non-square and
# not multiples of 7, so FcaNet takes its adaptive-pooling branch and strip pooling sees H != W.
SPATIAL: dict[int, tuple[int, ...]] = {1: (10,), 2: (6, 5), 3: (4, 5, 3)}
OTHER_SPATIAL: dict[int, tuple[int, ...]] = {1: (13,), 2: (9, 7), 3: (5, 3, 6)}
FIXED_SIZES: dict[str, tuple[int, int]] = {"rgse": (4, 5)}

# The eleven modules of the foundation issue; later issues register more (``excite.available()`` grows).
FOUNDATION_NAMES = ("cbam", "coord", "cse", "eca", "fca", "rgse", "scse", "se", "simam", "spse", "sse")
TESTED_NAMES = tuple(sorted(MODULE_OPTIONS))


def module_options(name: str, **overrides) -> dict:
    options = dict(MODULE_OPTIONS[name])
    options.update(overrides)
    return options


def spatial_size(name: str, dim: int, other: bool = False) -> tuple[int, ...]:
    if name in FIXED_SIZES:
        return (FIXED_SIZES[name][1 if other else 0],) * dim
    return (OTHER_SPATIAL if other else SPATIAL)[dim]


def randomize_(module: nn.Module, seed: int = 0) -> nn.Module:
    """Draw every parameter and BatchNorm running statistic at random, in place; returns ``module``.

    Weights get ``N(0, 1/fan_in)`` so that gates stay away from saturation, vectors ``N(0, 0.5²)``,
    BatchNorm scales ``U(0.5, 1.5)``, running means ``N(0, 0.3²)`` and running variances ``U(0.5, 2)``,
    so that eval-mode BatchNorm is not the identity.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            if parameter.dim() > 1:
                fan_in = max(1, parameter[0].numel())
                std = 1.0 / math.sqrt(fan_in)
            else:
                std = 0.5
            parameter.copy_(torch.randn(parameter.shape, generator=generator, dtype=torch.float64) * std)
        for sub in module.modules():
            if isinstance(sub, nn.modules.batchnorm._NormBase):
                if sub.weight is not None:
                    sub.weight.copy_(
                        0.5 + torch.rand(sub.weight.shape, generator=generator, dtype=torch.float64)
                    )
                if sub.running_mean is not None:
                    sub.running_mean.copy_(0.3 * torch.randn(sub.running_mean.shape, generator=generator))
                    sub.running_var.copy_(0.5 + 1.5 * torch.rand(sub.running_var.shape, generator=generator))
    return module


def build(name: str, dim: int, channels: int | None = CHANNELS, seed: int = 0, **overrides) -> nn.Module:
    """``excite.create`` with the small test options, random weights, in eval mode."""
    module = excite.create(name, channels, dim=dim, **module_options(name, **overrides))
    return randomize_(module, seed).eval()


def sample(
    name: str,
    dim: int,
    batch: int = 2,
    channels: int = CHANNELS,
    other: bool = False,
    seed: int = 1,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    generator = torch.Generator().manual_seed(seed)
    shape = (batch, channels, *spatial_size(name, dim, other))
    return torch.randn(shape, generator=generator, dtype=torch.float64).to(dtype)


def assert_fp32_close(actual: Tensor, expected: Tensor, atol: float = 1e-6, rtol: float = 1e-5) -> None:
    """Equal up to fp32 rounding: different but equivalent kernels (``mean`` vs ``AdaptiveAvgPool``,
    a 1x1 convolution vs ``Linear``) may differ in the last bits."""
    torch.testing.assert_close(actual, expected, atol=atol, rtol=rtol)


@pytest.fixture(autouse=True)
def _seed_and_reference_switch():
    """Every test starts from the same seed and with the default (non-reference) path."""
    torch.manual_seed(0)
    excite.use_reference(False)
    yield
    excite.use_reference(False)


@pytest.fixture(params=["default", "reference"])
def forward_path(request):
    """Run a test on the default path (the fused kernels where a module has them) and again on the
    plain-autograd reference path; the family test files apply it to every test."""
    with excite.use_reference(request.param == "reference"):
        yield request.param
