"""R(2+1)D-18 with SE-family attention in its residual blocks (our placement; torchvision's has none).

Tran et al., "A Closer Look at Spatiotemporal Convolutions for Action Recognition", CVPR 2018; the
network is torchvision's ``r2plus1d_18`` (31,505,325 parameters with 400 classes).

Placement **[proposal]**, the SE-ResNet rule carried over: in each ``BasicBlock`` the attention follows
the second (2+1)-D convolution's BN, before the shortcut sum, squeezing over (T, H, W). It is appended
to ``block.conv2`` (``conv2 = Sequential(conv, BN, attention)``), so torchvision's state-dict keys
``conv2.0.*``/``conv2.1.*`` are unchanged and a Kinetics checkpoint loads with only the attention keys
missing. ``attention_every=2`` keeps X3D's every-other-block rule instead (counting blocks across the
whole network, as each stage has two).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from .x3d import AttentionSpec, make_attention


def r2plus1d_18(
    *,
    attention: AttentionSpec = None,
    attention_options: dict[str, Any] | None = None,
    num_classes: int = 400,
    attention_every: int = 1,
) -> nn.Module:
    """torchvision's R(2+1)D-18 (randomly initialised) with attention after each block's second BN.

    Needs torchvision (imported here). Default SE options are excite's (``reduction=16``, biases).

    Raises:
        ValueError: ``attention_every`` below 1, or an invalid attention.
        ImportError: torchvision is not installed.
    """
    if attention_every < 1:
        raise ValueError(f"r2plus1d_18: attention_every must be >= 1, got {attention_every}")
    from torchvision.models.video import r2plus1d_18 as torchvision_r2plus1d_18

    model = torchvision_r2plus1d_18(weights=None, num_classes=num_classes)
    index = 0
    for stage in (model.layer1, model.layer2, model.layer3, model.layer4):
        for block in stage:
            if attention is not None and index % attention_every == 0:
                channels = block.conv2[1].num_features
                block.conv2.append(make_attention(attention, channels, attention_options))
            index += 1
    return model
