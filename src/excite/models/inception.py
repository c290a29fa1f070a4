"""An Inception network (GoogLeNet with BatchNorm) with attention on each whole Inception module output.

Szegedy et al. "Going Deeper with Convolutions", CVPR 2015, in torchvision's BatchNorm version
(``googlenet``, whose names and default configuration are kept, so its state dict loads). The SE paper's
SE-Inception puts the block "on the entire Inception module output" (Hu et al., CVPR 2018, Fig. 2): the
module recalibrates the concatenation of the four branches, before the next pooling or module.

Quirk kept from torchvision: the "5x5" branch uses a 3x3 convolution (its released weights were trained
that way). ``branch3_kernel=5`` gives the paper's 5x5.
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

# name: (1x1, 3x3 reduce, 3x3, 5x5 reduce, 5x5, pool projection), torchvision/GoogLeNet Table 1.
GOOGLENET_MODULES: tuple[tuple[str, tuple[int, ...]], ...] = (
    ("inception3a", (64, 96, 128, 16, 32, 32)),
    ("inception3b", (128, 128, 192, 32, 96, 64)),
    ("inception4a", (192, 96, 208, 16, 48, 64)),
    ("inception4b", (160, 112, 224, 24, 64, 64)),
    ("inception4c", (128, 128, 256, 24, 64, 64)),
    ("inception4d", (112, 144, 288, 32, 64, 64)),
    ("inception4e", (256, 160, 320, 32, 128, 128)),
    ("inception5a", (256, 160, 320, 32, 128, 128)),
    ("inception5b", (384, 192, 384, 48, 128, 128)),
)


class BasicConv(nn.Module):
    """conv (no bias) → BN (eps 0.001, as torchvision) → ReLU; children ``conv`` and ``bn``."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, *, dim: int, stride: int = 1
    ) -> None:
        super().__init__()
        self.conv = conv(dim)(
            in_channels, out_channels, kernel_size, stride, (kernel_size - 1) // 2, bias=False
        )
        self.bn = batch_norm(dim)(out_channels, eps=0.001)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.bn(self.conv(x)))


class InceptionModule(nn.Module):
    """Four parallel branches (1x1; 1x1→3x3; 1x1→"5x5"; 3x3 max-pool→1x1) concatenated, then attention."""

    def __init__(
        self,
        in_channels: int,
        widths: Sequence[int],
        *,
        dim: int,
        attention: nn.Module | None = None,
        branch3_kernel: int = 3,
    ) -> None:
        super().__init__()
        ch1, ch3_reduce, ch3, ch5_reduce, ch5, pool_proj = widths
        self.branch1 = BasicConv(in_channels, ch1, 1, dim=dim)
        self.branch2 = nn.Sequential(
            BasicConv(in_channels, ch3_reduce, 1, dim=dim), BasicConv(ch3_reduce, ch3, 3, dim=dim)
        )
        self.branch3 = nn.Sequential(
            BasicConv(in_channels, ch5_reduce, 1, dim=dim),
            BasicConv(ch5_reduce, ch5, branch3_kernel, dim=dim),
        )
        self.branch4 = nn.Sequential(
            max_pool(dim)(kernel_size=3, stride=1, padding=1, ceil_mode=True),
            BasicConv(in_channels, pool_proj, 1, dim=dim),
        )
        self.out_channels = ch1 + ch3 + ch5 + pool_proj
        self.attention = attention if attention is not None else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        branches = [self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)]
        return self.attention(torch.cat(branches, dim=1))


class Inception(nn.Module):
    r"""GoogLeNet (BatchNorm, torchvision layout) for 1-D, 2-D or 3-D input, attention after each module.

    Nine Inception modules (3a-3b, 4a-4e, 5a-5b) in three stages separated by max-pooling, global
    pooling, dropout 0.2 and the classifier; no auxiliary heads. 6,624,904 parameters at 1000 classes
    (torchvision's ``googlenet(aux_logits=False)``).

    Attention that changes the channel count widens the next module's input.

    Args:
        attention, attention_options: as :class:`~excite.models.ResNet`.
        stage_options: three dicts (stages 3, 4, 5) merged over ``attention_options``.
        placement: only ``"module"`` (the default).
        in_channels, num_classes: input channels and classifier outputs (0: no classifier).
        stem: ``"imagenet"`` (7x7/2 conv, pool, 1x1, 3x3, pool: 4x fewer positions per axis… then 8x,
            16x, 32x) or ``"small"`` (3x3 stride 1 convs, no stem pooling; 28x28 gives modules at 28, 14, 7).
        branch3_kernel: 3 (torchvision) or 5 (the paper).
        dropout: before the classifier.
        dim: spatial dimensions.
        input_size: as :class:`~excite.models.ResNet` (None: 224, or 28 for the small stem;
            none in 3-D).

    Init as torchvision: convolutions and the classifier ``trunc_normal_(std=0.01, a=-2, b=2)``, BN 1/0;
    attention modules keep their own.
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
        stem: str = "imagenet",
        branch3_kernel: int = 3,
        dropout: float = 0.2,
        dim: int = 2,
        input_size: SizeSpec = None,
    ) -> None:
        super().__init__()
        owner = "Inception"
        check_network_dim(dim, owner)
        if stem not in STEMS:
            raise ValueError(f"{owner}: stem must be one of {STEMS}, got {stem!r}")
        if branch3_kernel not in (3, 5):
            raise ValueError(f"{owner}: branch3_kernel must be 3 or 5, got {branch3_kernel}")
        self.placement = resolve_placement(
            placement, attention_name(attention), {}, "module", ("module",), owner
        )
        builder = AttentionBuilder(
            attention, attention_options, dim=dim, owner=owner, stage_options=stage_options, stages=3
        )
        self.dim = dim
        size = as_size(default_input_size(input_size, dim, stem == "small"), dim, owner)
        self.input_size = size
        Pool = max_pool(dim)
        if stem == "imagenet":
            self.conv1 = BasicConv(in_channels, 64, 7, dim=dim, stride=2)
            self.maxpool1: nn.Module = Pool(3, stride=2, ceil_mode=True)
            size = conv_output_size(conv_output_size(size, 7, 2, 3), 3, 2, 0, ceil_mode=True)
        else:
            self.conv1 = BasicConv(in_channels, 64, 3, dim=dim)
            self.maxpool1 = nn.Identity()
        self.conv2 = BasicConv(64, 64, 1, dim=dim)
        self.conv3 = BasicConv(64, 192, 3, dim=dim)
        if stem == "imagenet":
            self.maxpool2: nn.Module = Pool(3, stride=2, ceil_mode=True)
            size = conv_output_size(size, 3, 2, 0, ceil_mode=True)
        else:
            self.maxpool2 = nn.Identity()
        channels = 192
        pools = {
            "inception4a": Pool(3, stride=2, ceil_mode=True),
            "inception5a": Pool(2, stride=2, ceil_mode=True),
        }
        self.stage_sizes: list[tuple[int, ...] | None] = []
        for name, widths in GOOGLENET_MODULES:
            stage = int(name[len("inception")]) - 3
            if name == "inception4a":
                self.maxpool3 = pools[name]
                size = conv_output_size(size, 3, 2, 0, ceil_mode=True)
            elif name == "inception5a":
                self.maxpool4 = pools[name]
                size = conv_output_size(size, 2, 2, 0, ceil_mode=True)
            width = sum(widths[i] for i in (0, 2, 4, 5))
            site = builder.build(width, spatial_size=size, stage=stage) if builder.enabled else None
            module = InceptionModule(channels, widths, dim=dim, attention=site, branch3_kernel=branch3_kernel)
            self.add_module(name, module)
            channels = output_channels(site, width) if site is not None else width
        self.num_features = channels
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(channels, num_classes) if num_classes > 0 else nn.Identity()
        skipped = {id(m) for a in self.attention_modules() for m in a.modules()}
        for m in self.modules():
            if id(m) in skipped:
                continue
            if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)):
                nn.init.trunc_normal_(m.weight, mean=0.0, std=0.01, a=-2, b=2)
            elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def inception_modules(self) -> list[InceptionModule]:
        return [getattr(self, name) for name, _ in GOOGLENET_MODULES]

    def attention_modules(self) -> list:
        return [m.attention for m in self.inception_modules() if not isinstance(m.attention, nn.Identity)]

    def forward_features(self, x: Tensor) -> Tensor:
        check_input_rank(x, self.dim, "Inception")
        x = self.maxpool1(self.conv1(x))
        x = self.maxpool2(self.conv3(self.conv2(x)))
        x = self.inception3b(self.inception3a(x))
        x = self.maxpool3(x)
        for name in ("inception4a", "inception4b", "inception4c", "inception4d", "inception4e"):
            x = getattr(self, name)(x)
        x = self.maxpool4(x)
        return self.inception5b(self.inception5a(x))

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.dropout(spatial_mean(self.forward_features(x))))


def inception(**kwargs: Any) -> Inception:
    """An :class:`Inception` (GoogLeNet-BN). ``inception(attention="se")`` is SE-Inception's placement."""
    return Inception(**kwargs)


__all__ = ["BasicConv", "Inception", "InceptionModule", "inception"]
