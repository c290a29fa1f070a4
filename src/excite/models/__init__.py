"""Reference networks with SE-family attention at the papers' placements, and the official presets.

Every builder takes ``attention=None | name | callable``, ``attention_options``, ``in_channels`` and
``num_classes`` (``out_channels`` for the U-Net)::

    >>> import excite.models as models
    >>> net = models.resnet18(attention="eca", stem="small", width=16, in_channels=1, num_classes=10)
    >>> seg = models.unet(dim=3, features=(16, 32, 64), attention="scse")
    >>> se50 = models.se_resnet50()                 # 28,088,024 parameters, as released
    >>> models.available()[:3]
    ['ca_mobilenet_v2', 'densenet', 'eca_mobilenet_v2']

A name goes through :func:`excite.create`; the network adds what only it knows (FcaNet's DCT grid per
stage, RGSE's pooling per stage, from ``input_size``). A callable is called as
``attention(C, dim=dim, **attention_options)`` and must return an ``nn.Module``. The placement follows
each paper and can be overridden with ``placement=``; see each class.

Official release key layouts load with :func:`excite.load_official` (converters in
:mod:`excite.official.networks`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from ._common import count_parameters
from .densenet import DenseLayer, DenseNet, Transition, densenet
from .inception import Inception, InceptionModule, inception
from .mobilenet import (
    InvertedResidual,
    MobileNetV2,
    MobileNeXt,
    SandglassBlock,
    ca_mobilenet_v2,
    eca_mobilenet_v2,
    mobilenet_v2,
    mobilenext,
)
from .resnet import (
    BasicBlock,
    Bottleneck,
    ResNet,
    eca_resnet50,
    fca_resnet50,
    resnet18,
    resnet34,
    resnet50,
    resnet101,
    resnet152,
    resnext50_32x4d,
    rgse_resnet50,
    se_resnet50,
    se_resnet101,
    se_resnet152,
    simam_resnet50,
    spse_resnet50,
)
from .unet import UNet, unet

_BUILDERS: dict[str, Callable[..., nn.Module]] = {
    builder.__name__: builder
    for builder in (
        resnet18,
        resnet34,
        resnet50,
        resnet101,
        resnet152,
        resnext50_32x4d,
        se_resnet50,
        se_resnet101,
        se_resnet152,
        eca_resnet50,
        fca_resnet50,
        simam_resnet50,
        spse_resnet50,
        rgse_resnet50,
        mobilenet_v2,
        ca_mobilenet_v2,
        eca_mobilenet_v2,
        mobilenext,
        unet,
        densenet,
        inception,
    )
}


def available() -> list[str]:
    """The network names :func:`create` accepts, sorted."""
    return sorted(_BUILDERS)


def create(name: str, **options: Any) -> nn.Module:
    """Build the network ``name`` (one of :func:`available`) with the builder's keyword options.

    Raises:
        ValueError: an unknown name (the message lists the known ones) or a bad option.
    """
    if name not in _BUILDERS:
        raise ValueError(
            f"excite.models.create: unknown network {name!r}; available: {', '.join(available())}"
        )
    return _BUILDERS[name](**options)


from ..official import networks as _networks  # noqa: E402,F401  (registers the network converters)

__all__ = [
    "BasicBlock",
    "Bottleneck",
    "DenseLayer",
    "DenseNet",
    "Inception",
    "InceptionModule",
    "InvertedResidual",
    "MobileNeXt",
    "MobileNetV2",
    "ResNet",
    "SandglassBlock",
    "Transition",
    "UNet",
    "available",
    "ca_mobilenet_v2",
    "count_parameters",
    "create",
    "densenet",
    "eca_mobilenet_v2",
    "eca_resnet50",
    "fca_resnet50",
    "inception",
    "mobilenet_v2",
    "mobilenext",
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet152",
    "resnext50_32x4d",
    "rgse_resnet50",
    "se_resnet50",
    "se_resnet101",
    "se_resnet152",
    "simam_resnet50",
    "spse_resnet50",
    "unet",
]
