"""DenseNet-BC with attention on each dense layer's new feature maps.

Huang, Liu, van der Maaten, Weinberger. "Densely Connected Convolutional Networks", CVPR 2017
(torchvision's ``densenet121`` is the default configuration and key layout). Placement after DenisNet-SE
("Aggregated squeeze-and-excitation transformations for densely connected convolutional networks",
The Visual Computer 2021; code voriarty/DenisNet ``model/dcra.py``): the module recalibrates the ``k``
new channels of every dense layer before they are concatenated, so reused features are not rescaled
again in every later layer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ._common import (
    AttentionBuilder,
    AttentionSpec,
    SizeSpec,
    as_size,
    attention_name,
    avg_pool,
    batch_norm,
    check_input_rank,
    check_network_dim,
    conv,
    conv_output_size,
    default_input_size,
    max_pool,
    output_channels,
    resolve_placement,
    spatial_mean,
)

STEMS = ("imagenet", "small")


class DenseLayer(nn.Module):
    """BN → ReLU → 1x1 conv (``bn_size·k``) → BN → ReLU → 3x3 conv (``k``) → attention, on the
    concatenation of all earlier feature maps of the block (torchvision names plus ``attention``)."""

    def __init__(
        self, in_channels: int, growth_rate: int, bn_size: int, *, dim: int, attention: nn.Module | None
    ):
        super().__init__()
        Conv, Norm = conv(dim), batch_norm(dim)
        self.norm1 = Norm(in_channels)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = Conv(in_channels, bn_size * growth_rate, 1, 1, 0, bias=False)
        self.norm2 = Norm(bn_size * growth_rate)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = Conv(bn_size * growth_rate, growth_rate, 3, 1, 1, bias=False)
        self.attention = attention if attention is not None else nn.Identity()

    def forward(self, features: list[Tensor]) -> Tensor:
        x = torch.cat(features, dim=1)
        x = self.conv1(self.relu1(self.norm1(x)))
        return self.attention(self.conv2(self.relu2(self.norm2(x))))


class Transition(nn.Sequential):
    """BN → ReLU → 1x1 conv (compression) → 2x average pooling."""

    def __init__(self, in_channels: int, out_channels: int, *, dim: int) -> None:
        super().__init__()
        self.add_module("norm", batch_norm(dim)(in_channels))
        self.add_module("relu", nn.ReLU(inplace=True))
        self.add_module("conv", conv(dim)(in_channels, out_channels, 1, 1, 0, bias=False))
        self.add_module("pool", avg_pool(dim)(kernel_size=2, stride=2))


class DenseNet(nn.Module):
    r"""DenseNet-BC for 1-D, 2-D or 3-D input with attention on every dense layer's new features.

    Defaults are DenseNet-121 (growth rate 32, blocks 6, 12, 24, 16, 64 stem channels, bottleneck 4k,
    compression 0.5: 7,978,856 parameters at 1000 classes, torchvision's count).

    Attention that changes the channel count (scSE ``"concat"``) widens the concatenation accordingly.
    With ``growth_rate < 16`` pass a smaller ``reduction`` (DenisNet uses r = 6 with k = 12).

    Args:
        attention, attention_options: as :class:`~excite.models.ResNet`.
        stage_options: one dict per dense block, merged over ``attention_options``.
        placement: only ``"layer"`` (the default).
        in_channels, num_classes: input channels and classifier outputs (0: no classifier).
        growth_rate: k, new channels per layer.
        block_config: layers per dense block.
        num_init_features: stem channels.
        bn_size: bottleneck width factor (``bn_size·k`` before the 3x3 conv).
        compression: channel factor of each transition.
        stem: ``"imagenet"`` (7x7 stride 2 + BN + ReLU + 3x3 max-pool) or ``"small"`` (3x3 stride 1 + BN +
            ReLU, no pool; for 28x28/32x32 input).
        dim: spatial dimensions.
        input_size: as :class:`~excite.models.ResNet` (None: 224, or 28 for the small stem;
            none in 3-D).

    Init as torchvision: convolutions ``kaiming_normal_`` (fan_in), BN 1/0, classifier bias 0; attention
    modules keep their own.
    """

    def __init__(
        self,
        *,
        attention: AttentionSpec = None,
        attention_options: Mapping[str, Any] | None = None,
        stage_options: Sequence[Mapping[str, Any]] | None = None,
        placement: str | None = None,
        in_channels: int = 3,
        num_classes: int = 1000,
        growth_rate: int = 32,
        block_config: Sequence[int] = (6, 12, 24, 16),
        num_init_features: int = 64,
        bn_size: int = 4,
        compression: float = 0.5,
        stem: str = "imagenet",
        dim: int = 2,
        input_size: SizeSpec = None,
    ) -> None:
        super().__init__()
        owner = "DenseNet"
        check_network_dim(dim, owner)
        if stem not in STEMS:
            raise ValueError(f"{owner}: stem must be one of {STEMS}, got {stem!r}")
        if growth_rate < 1 or not block_config or min(block_config) < 1 or not 0 < compression <= 1:
            raise ValueError(
                f"{owner}: growth_rate and block sizes must be >= 1 and 0 < compression <= 1; got "
                f"{growth_rate}, {tuple(block_config)}, {compression}"
            )
        self.placement = resolve_placement(
            placement, attention_name(attention), {}, "layer", ("layer",), owner
        )
        builder = AttentionBuilder(
            attention,
            attention_options,
            dim=dim,
            owner=owner,
            stage_options=stage_options,
            stages=len(block_config),
        )
        self.dim = dim
        size = as_size(default_input_size(input_size, dim, stem == "small"), dim, owner)
        self.input_size = size
        Conv, Norm = conv(dim), batch_norm(dim)
        if stem == "imagenet":
            self.stem = nn.Sequential()
            self.stem.add_module("conv", Conv(in_channels, num_init_features, 7, 2, 3, bias=False))
            self.stem.add_module("norm", Norm(num_init_features))
            self.stem.add_module("relu", nn.ReLU(inplace=True))
            self.stem.add_module("pool", max_pool(dim)(kernel_size=3, stride=2, padding=1))
            size = conv_output_size(conv_output_size(size, 7, 2, 3), 3, 2, 1)
        else:
            self.stem = nn.Sequential()
            self.stem.add_module("conv", Conv(in_channels, num_init_features, 3, 1, 1, bias=False))
            self.stem.add_module("norm", Norm(num_init_features))
            self.stem.add_module("relu", nn.ReLU(inplace=True))
        channels = num_init_features
        self.blocks = nn.ModuleList()
        self.transitions = nn.ModuleList()
        for stage, layers in enumerate(block_config):
            block = nn.ModuleList()
            for _ in range(layers):
                site = builder.build(growth_rate, spatial_size=size, stage=stage) if builder.enabled else None
                block.append(DenseLayer(channels, growth_rate, bn_size, dim=dim, attention=site))
                channels += output_channels(site, growth_rate) if site is not None else growth_rate
            self.blocks.append(block)
            if stage != len(block_config) - 1:
                reduced = int(channels * compression)
                self.transitions.append(Transition(channels, reduced, dim=dim))
                channels = reduced
                size = conv_output_size(size, 2, 2, 0)
        self.final_norm = Norm(channels)
        self.num_features = channels
        self.classifier = nn.Linear(channels, num_classes) if num_classes > 0 else nn.Identity()
        skipped = {id(m) for a in self.attention_modules() for m in a.modules()}
        for m in self.modules():
            if id(m) in skipped:
                continue
            if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
                nn.init.kaiming_normal_(m.weight)
            elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def attention_modules(self) -> list:
        return [
            layer.attention
            for block in self.blocks
            for layer in block
            if not isinstance(layer.attention, nn.Identity)
        ]

    def forward_features(self, x: Tensor) -> Tensor:
        check_input_rank(x, self.dim, "DenseNet")
        x = self.stem(x)
        for index, block in enumerate(self.blocks):
            features = [x]
            for layer in block:
                features.append(layer(features))
            x = torch.cat(features, dim=1)
            if index < len(self.transitions):
                x = self.transitions[index](x)
        return torch.relu(self.final_norm(x))

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(spatial_mean(self.forward_features(x)))


def densenet(**kwargs: Any) -> DenseNet:
    """A :class:`DenseNet`; DenseNet-121 by default (``block_config``, ``growth_rate``… for others)."""
    return DenseNet(**kwargs)


__all__ = ["DenseLayer", "DenseNet", "Transition", "densenet"]
