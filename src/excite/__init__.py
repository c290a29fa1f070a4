"""excite: the Squeeze-and-Excitation family of attention modules for PyTorch.

    >>> import excite
    >>> excite.available()
    ['cbam', 'coord', 'cse', 'eca', 'eca_coord', 'fca', 'rgse', 'scse', 'se', 'simam', 'spse', 'sse']
    >>> se = excite.create("se", 64, dim=3, reduction=8)

The public surface is ``create``, ``available``, ``load_official``, ``attach``, ``replace``,
``profile``, ``use_reference``, the module classes, and the subpackages ``models``, ``analysis``,
``search``, ``recommend``, ``tokens``, ``graphs`` and ``video``. Everything else is internal.
"""

from __future__ import annotations

import importlib
from typing import Any

from ._registry import available, create
from .fused import use_reference
from .layers import (
    CBAM,
    ECA,
    FCA,
    RGSE,
    SCSE,
    SE,
    SPSE,
    ChannelSE,
    CoordAttention,
    ECACoord,
    SimAM,
    SpatialSE,
)
from .official import load_official

__version__ = "0.1.0"

# Parts that pull in more than the core are imported on first use.
_LAZY_ATTRIBUTES = {
    "attach": ("excite.surgery", "attach"),
    "replace": ("excite.surgery", "replace"),
    "profile": ("excite.profiling", "profile"),
}
_LAZY_MODULES = (
    "models",
    "analysis",
    "search",
    "recommend",
    "surgery",
    "profiling",
    "study",
    "datasets",
    "tokens",
    "graphs",
    "video",
)


def __getattr__(name: str) -> Any:
    if name in _LAZY_ATTRIBUTES:
        module_name, attribute = _LAZY_ATTRIBUTES[name]
        return getattr(importlib.import_module(module_name), attribute)
    if name in _LAZY_MODULES:
        return importlib.import_module(f"excite.{name}")
    raise AttributeError(f"module 'excite' has no attribute {name!r}")


__all__ = [
    "CBAM",
    "ECA",
    "FCA",
    "RGSE",
    "SCSE",
    "SE",
    "SPSE",
    "ChannelSE",
    "CoordAttention",
    "ECACoord",
    "SimAM",
    "SpatialSE",
    "available",
    "create",
    "load_official",
    "use_reference",
]
