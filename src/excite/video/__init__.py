"""SE beyond CNN feature maps, part 3: video and volumes.

* :func:`x3d` (XS/S/M/L presets) and :func:`x3d_tiny`: X3D with SE after the depthwise 3x3x3 BN of every
  other bottleneck, or any excite attention via ``attention=``.
* :func:`r2plus1d_18`: torchvision's R(2+1)D-18 with attention after each block's second BN.
"""

from .r2plus1d import r2plus1d_18
from .x3d import (
    PRESETS,
    X3D,
    X3DBlock,
    X3DBottleneck,
    make_attention,
    round_repeats,
    round_width,
    x3d,
    x3d_tiny,
)

__all__ = [
    "PRESETS",
    "X3D",
    "X3DBlock",
    "X3DBottleneck",
    "make_attention",
    "r2plus1d_18",
    "round_repeats",
    "round_width",
    "x3d",
    "x3d_tiny",
]
