"""The SE-family modules, one file per family, each dimension-generic (1-D, 2-D, 3-D)."""

from .cbam import CBAM
from .coord import CoordAttention
from .eca import ECA, adaptive_kernel_size
from .eca_coord import ECACoord
from .fca import FCA
from .scse import SCSE, SpatialSE
from .se import SE, ChannelSE
from .simam import SimAM
from .spse import RGSE, SPSE

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
    "adaptive_kernel_size",
]
