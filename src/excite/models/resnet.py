"""ResNet and ResNeXt with SE-family attention, 1-D/2-D/3-D, and the official attention-ResNet presets.

He, Zhang, Ren, Sun. "Deep Residual Learning for Image Recognition", CVPR 2016; Xie et al.
"Aggregated Residual Transformations for Deep Neural Networks" (ResNeXt), CVPR 2017; He et al. "Bag of
Tricks for Image Classification with CNNs" (the deep stem and average-pool shortcut of timm's ``-d``/``-t``
models), CVPR 2019.

The module names follow torchvision (``conv1``, ``bn1``, ``layer1``..``layer4``, ``downsample``, ``fc``)
and timm for the deep stem (``conv1 = Sequential(conv, bn, relu, conv, bn, relu, conv)``) and the
average-pool shortcut (``downsample = Sequential(pool, conv, bn)``), so those state dicts load by name.
The attention module of a block is ``attention``; with SimAM's placement it sits inside
``conv2 = Sequential(conv, attention)`` as in the SimAM release.
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
    kaiming_conv_init,
    max_pool,
    require_same_channels,
    resolve_placement,
    spatial_mean,
)

PLACEMENTS = ("residual", "conv", "hidden")
DEFAULT_PLACEMENT = {"simam": "conv"}
STEMS = ("imagenet", "small", "deep", "deep_tiered")
STEM_POOLS = ("torchvision", "caffe")


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with an identity or projection shortcut (ResNet-18/34)."""

    expansion = 1

    def __init__(
        self,
        in_channels: int,
        planes: int,
        *,
        dim: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        attention: nn.Module | None = None,
        placement: str = "residual",
        groups: int = 1,
        width_per_group: int = 64,
        stride_in_1x1: bool = False,
        owner: str = "BasicBlock",
    ) -> None:
        super().__init__()
        if groups != 1 or width_per_group != 64:
            raise ValueError(f"{owner}: BasicBlock supports groups=1 and width_per_group=64 only")
        Conv, Norm = conv(dim), batch_norm(dim)
        self.placement = placement
        self.conv1 = Conv(in_channels, planes, 3, stride, 1, bias=False)
        self.bn1 = Norm(planes)
        second = Conv(planes, planes, 3, 1, 1, bias=False)
        if attention is not None:
            require_same_channels(attention, planes, owner, f"the {placement!r} site of a BasicBlock")
        if attention is not None and placement == "conv":
            self.conv2 = nn.Sequential(second, attention)
            self.attention = nn.Identity()
        else:
            self.conv2 = second
            self.attention = attention if attention is not None else nn.Identity()
        self.bn2 = Norm(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        if self.placement == "hidden":
            out = self.attention(out)
        out = self.bn2(self.conv2(out))
        if self.placement == "residual":
            out = self.attention(out)
        return self.relu(out + shortcut)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (grouped for ResNeXt), 1x1 expand x4, with a shortcut (ResNet-50/101/152).

    ``stride_in_1x1=False`` is ResNet v1.5 (stride in the 3x3, torchvision/timm); True is the original
    v1 (stride in the first 1x1, as in the Caffe SE-ResNets).
    """

    expansion = 4

    def __init__(
        self,
        in_channels: int,
        planes: int,
        *,
        dim: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        attention: nn.Module | None = None,
        placement: str = "residual",
        groups: int = 1,
        width_per_group: int = 64,
        stride_in_1x1: bool = False,
        owner: str = "Bottleneck",
    ) -> None:
        super().__init__()
        Conv, Norm = conv(dim), batch_norm(dim)
        width = int(planes * (width_per_group / 64.0)) * groups
        out_channels = planes * self.expansion
        self.placement = placement
        stride_1x1, stride_3x3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1 = Conv(in_channels, width, 1, stride_1x1, 0, bias=False)
        self.bn1 = Norm(width)
        spatial = Conv(width, width, 3, stride_3x3, 1, groups=groups, bias=False)
        if attention is not None:
            site_channels = out_channels if placement == "residual" else width
            require_same_channels(attention, site_channels, owner, f"the {placement!r} site of a Bottleneck")
        if attention is not None and placement == "conv":
            self.conv2 = nn.Sequential(spatial, attention)
            self.attention = nn.Identity()
        else:
            self.conv2 = spatial
            self.attention = attention if attention is not None else nn.Identity()
        self.bn2 = Norm(width)
        self.conv3 = Conv(width, out_channels, 1, 1, 0, bias=False)
        self.bn3 = Norm(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        if self.placement == "hidden":
            out = self.attention(out)
        out = self.bn3(self.conv3(out))
        if self.placement == "residual":
            out = self.attention(out)
        return self.relu(out + shortcut)


_BLOCKS = {"basic": BasicBlock, "bottleneck": Bottleneck}


class ResNet(nn.Module):
    r"""A ResNet/ResNeXt for 1-D, 2-D or 3-D input with an attention module in every block.

    Args:
        block: ``"basic"`` (ResNet-18/34) or ``"bottleneck"`` (50 and deeper, ResNeXt).
        layers: blocks per stage, e.g. ``(3, 4, 6, 3)``.
        attention: None, a name from :func:`excite.available`, or a callable
            ``(C, dim=..., **attention_options) -> nn.Module``.
        attention_options: options for every attention module (e.g. ``{"reduction": 8}``).
        stage_options: four dicts merged over ``attention_options`` per stage (e.g. ECA's per-stage
            ``kernel_size``).
        placement: where the module goes in a block (see below); None picks the paper's.
        in_channels: input channels (3 for RGB, 1 for Fashion-MNIST or MRI).
        num_classes: classifier outputs; 0 leaves out the classifier (the output is the pooled feature).
        stride_in_1x1: ResNet v1 (True: stride in the first 1x1) or v1.5 (False, default).
        stem: ``"imagenet"`` (7x7 stride 2 + 3x3 max-pool), ``"small"`` (3x3 stride 1, no pool; for
            28x28/32x32 inputs), ``"deep"`` (three 3x3 convs, ``width/2, width/2, width``, + max-pool; timm
            ``-d``) or ``"deep_tiered"`` (``3/8 width, width/2, width``; timm ``-t``).
        stem_pool: ``"torchvision"`` (max-pool k3 s2 p1) or ``"caffe"`` (k3 s2 without padding, ceil mode:
            the Caffe SE-ResNets and their Cadene/timm ``legacy_`` ports).
        width: base width (64); stage widths are ``width·(1, 2, 4, 8)``, e.g. 16 for a small ResNet.
        groups, width_per_group: ResNeXt cardinality and group width (``32, 4`` for 32x4d).
        avg_down: the shortcut of a strided block average-pools (k2, ceil mode) before a stride-1 1x1
            conv (timm ``avg_down``, the "D" trick).
        dim: spatial dimensions, 1, 2 or 3. Every layer switches to its ``Conv{dim}d`` etc.
        input_size: the input size the network is built for (int or one per axis). It sets FcaNet's
            DCT grid and RGSE's pooling per stage; None means 224 for the ImageNet/deep stems and 28
            (Fashion-MNIST, giving stage maps 28, 14, 7, 4) for the small stem, in 1-D and 2-D; in 3-D
            pass it (without it FcaNet keeps its 7-grid and RGSE is refused). Other sizes still run,
            except with RGSE, whose window is tied to the size.
        zero_init_residual: zero the last BN of every block (torchvision option; off in every release).

    Initialisation follows torchvision (FcaNet, SimAM and ECA releases use it too): every convolution of
    the backbone ``kaiming_normal_(mode="fan_out", nonlinearity="relu")``, BN weight 1 and bias 0, the
    classifier PyTorch's default; attention modules keep their own (PyTorch default) initialisation,
    because none of those init loops reaches an attention parameter (ECA's is a Conv1d, FcaNet's are
    Linear).

    Placement (``placement=None`` picks the paper's for the attention name):

    * ``"residual"`` (SE, ECA, FcaNet, SPSE, RGSE, CBAM, cSE/sSE/scSE, Coordinate Attention, any callable):
      after the last BN of the residual branch, before the sum with the shortcut;
    * ``"conv"`` (SimAM): right after the 3x3 convolution, before its BN (``conv2 = Sequential(conv,
      attention)``; in a BasicBlock the second 3x3);
    * ``"hidden"``: after the 3x3 convolution's BN and ReLU, on the bottleneck width (BasicBlock: after
      bn1 and ReLU).

    Raises:
        ValueError: a bad option (the message names it), an attention that changes the channel count
            (a residual sum follows), RGSE on feature maps it cannot pool, or an input of the wrong rank.
    """

    def __init__(
        self,
        block: str,
        layers: Sequence[int],
        *,
        attention: AttentionSpec = None,
        attention_options: Mapping[str, Any] | None = None,
        stage_options: Sequence[Mapping[str, Any]] | None = None,
        placement: str | None = None,
        in_channels: int = 3,
        num_classes: int = 1000,
        stride_in_1x1: bool = False,
        stem: str = "imagenet",
        stem_pool: str = "torchvision",
        width: int = 64,
        groups: int = 1,
        width_per_group: int = 64,
        avg_down: bool = False,
        dim: int = 2,
        input_size: SizeSpec = None,
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        owner = "ResNet"
        check_network_dim(dim, owner)
        if block not in _BLOCKS:
            raise ValueError(f"{owner}: block must be 'basic' or 'bottleneck', got {block!r}")
        if len(layers) != 4 or min(layers) < 1:
            raise ValueError(f"{owner}: layers needs 4 positive block counts, got {tuple(layers)}")
        if stem not in STEMS:
            raise ValueError(f"{owner}: stem must be one of {STEMS}, got {stem!r}")
        if stem_pool not in STEM_POOLS:
            raise ValueError(f"{owner}: stem_pool must be one of {STEM_POOLS}, got {stem_pool!r}")
        if width < 2 or width % 2:
            raise ValueError(f"{owner}: width must be an even number >= 2, got {width}")
        if in_channels < 1 or num_classes < 0:
            raise ValueError(
                f"{owner}: in_channels must be >= 1 and num_classes >= 0, got {in_channels}, {num_classes}"
            )
        block_type = _BLOCKS[block]
        builder = AttentionBuilder(
            attention, attention_options, dim=dim, owner=owner, stage_options=stage_options, stages=4
        )
        self.placement = resolve_placement(
            placement, attention_name(attention), DEFAULT_PLACEMENT, "residual", PLACEMENTS, owner
        )
        self.dim = dim
        self.stem = stem
        self.num_classes = num_classes
        size = as_size(default_input_size(input_size, dim, stem == "small"), dim, owner)
        self.input_size = size

        Conv, Norm = conv(dim), batch_norm(dim)
        stem_channels = width
        if stem == "imagenet":
            self.conv1 = Conv(in_channels, stem_channels, 7, 2, 3, bias=False)
            size = conv_output_size(size, 7, 2, 3)
        elif stem == "small":
            self.conv1 = Conv(in_channels, stem_channels, 3, 1, 1, bias=False)
        else:
            half = width // 2
            first = 3 * (half // 4) if stem == "deep_tiered" else half
            self.conv1 = nn.Sequential(
                Conv(in_channels, first, 3, 2, 1, bias=False),
                Norm(first),
                nn.ReLU(inplace=True),
                Conv(first, half, 3, 1, 1, bias=False),
                Norm(half),
                nn.ReLU(inplace=True),
                Conv(half, stem_channels, 3, 1, 1, bias=False),
            )
            size = conv_output_size(size, 3, 2, 1)
        self.bn1 = Norm(stem_channels)
        self.relu = nn.ReLU(inplace=True)
        if stem == "small":
            self.maxpool = nn.Identity()
        elif stem_pool == "caffe":
            self.maxpool = max_pool(dim)(kernel_size=3, stride=2, padding=0, ceil_mode=True)
            size = conv_output_size(size, 3, 2, 0, ceil_mode=True)
        else:
            self.maxpool = max_pool(dim)(kernel_size=3, stride=2, padding=1)
            size = conv_output_size(size, 3, 2, 1)

        channels = stem_channels
        self.stage_sizes = []
        for stage, blocks in enumerate(layers):
            planes = width * 2**stage
            stride = 1 if stage == 0 else 2
            stage_blocks = []
            for index in range(blocks):
                block_stride = stride if index == 0 else 1
                out_channels = planes * block_type.expansion
                downsample = None
                if block_stride != 1 or channels != out_channels:
                    downsample = self._shortcut(channels, out_channels, block_stride, avg_down, dim)
                size = conv_output_size(size, 3, block_stride, 1)
                site = None
                if builder.enabled:
                    if self.placement == "residual":
                        site_channels = out_channels
                    elif block_type is Bottleneck:
                        site_channels = int(planes * (width_per_group / 64.0)) * groups
                    else:
                        site_channels = planes
                    site = builder.build(site_channels, spatial_size=size, stage=stage)
                stage_blocks.append(
                    block_type(
                        channels,
                        planes,
                        dim=dim,
                        stride=block_stride,
                        downsample=downsample,
                        attention=site,
                        placement=self.placement,
                        groups=groups,
                        width_per_group=width_per_group,
                        stride_in_1x1=stride_in_1x1,
                        owner=owner,
                    )
                )
                channels = out_channels
            self.add_module(f"layer{stage + 1}", nn.Sequential(*stage_blocks))
            self.stage_sizes.append(size)
        self.num_features = channels
        self.fc = nn.Linear(channels, num_classes) if num_classes > 0 else nn.Identity()

        kaiming_conv_init(self, skip=self.attention_modules())
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, Bottleneck):
                    nn.init.zeros_(m.bn3.weight)
                elif isinstance(m, BasicBlock):
                    nn.init.zeros_(m.bn2.weight)

    @staticmethod
    def _shortcut(
        in_channels: int, out_channels: int, stride: int, avg_down: bool, dim: int
    ) -> nn.Sequential:
        Conv, Norm = conv(dim), batch_norm(dim)
        if not avg_down:
            return nn.Sequential(
                Conv(in_channels, out_channels, 1, stride, 0, bias=False), Norm(out_channels)
            )
        pool: nn.Module = nn.Identity()
        if stride != 1:
            pool = avg_pool(dim)(kernel_size=2, stride=stride, ceil_mode=True, count_include_pad=False)
        return nn.Sequential(pool, Conv(in_channels, out_channels, 1, 1, 0, bias=False), Norm(out_channels))

    def attention_modules(self) -> list:
        """The attention module of every block, in forward order."""
        found = []
        for m in self.modules():
            if isinstance(m, (BasicBlock, Bottleneck)):
                if isinstance(m.conv2, nn.Sequential):
                    found.append(m.conv2[1])
                elif not isinstance(m.attention, nn.Identity):
                    found.append(m.attention)
        return found

    def forward_features(self, x: Tensor) -> Tensor:
        """The last stage's feature map ``(N, C, *spatial)``."""
        check_input_rank(x, self.dim, "ResNet")
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        return self.layer4(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(spatial_mean(self.forward_features(x)))


def _resnet(block: str, layers: tuple[int, ...], kwargs: dict) -> ResNet:
    return ResNet(block, layers, **kwargs)


def resnet18(**kwargs: Any) -> ResNet:
    """ResNet-18 (11,689,512 parameters at 1000 classes). Options: :class:`ResNet`."""
    return _resnet("basic", (2, 2, 2, 2), kwargs)


def resnet34(**kwargs: Any) -> ResNet:
    """ResNet-34 (21,797,672 parameters). Options: :class:`ResNet`."""
    return _resnet("basic", (3, 4, 6, 3), kwargs)


def resnet50(**kwargs: Any) -> ResNet:
    """ResNet-50 (25,557,032 parameters). Options: :class:`ResNet`."""
    return _resnet("bottleneck", (3, 4, 6, 3), kwargs)


def resnet101(**kwargs: Any) -> ResNet:
    """ResNet-101 (44,549,160 parameters). Options: :class:`ResNet`."""
    return _resnet("bottleneck", (3, 4, 23, 3), kwargs)


def resnet152(**kwargs: Any) -> ResNet:
    """ResNet-152 (60,192,808 parameters). Options: :class:`ResNet`."""
    return _resnet("bottleneck", (3, 8, 36, 3), kwargs)


def resnext50_32x4d(**kwargs: Any) -> ResNet:
    """ResNeXt-50 32x4d (25,028,904 parameters, as torchvision's). Options: :class:`ResNet`."""
    kwargs.setdefault("groups", 32)
    kwargs.setdefault("width_per_group", 4)
    return _resnet("bottleneck", (3, 4, 6, 3), kwargs)


# ----------------------------------------------------------------------------------------------------------
# Official presets: each reproduces its release's architecture, and its parameter count equals the
# published integer (modules.md §9).


def _preset(kwargs: dict, fixed: dict) -> dict:
    clash = sorted(set(kwargs) & set(fixed))
    if clash:
        raise ValueError(
            f"this preset fixes {clash} to the official release; use the generic builder to change them"
        )
    return {**fixed, **kwargs}


def se_resnet50(**kwargs: Any) -> ResNet:
    """SE-ResNet-50 as released (Hu et al., Caffe hujie-frank/SENet; Cadene's and timm's ``legacy_seresnet50``
    ports): ResNet **v1** (stride in the first 1x1, and in the projection shortcut), Caffe's ceil-mode
    stem max-pool, SE with r=16 and FC biases after bn3. 28,088,024 parameters; v1.5
    (``resnet50(attention="se")``, = timm ``seresnet50``) has the same count but 4.09 instead of 3.86 GMACs.
    """
    return resnet50(**_preset(kwargs, {"attention": "se", "stride_in_1x1": True, "stem_pool": "caffe"}))


def se_resnet101(**kwargs: Any) -> ResNet:
    """SE-ResNet-101 as released (v1, Caffe pooling, r=16 with bias): 49,326,872 parameters."""
    return resnet101(**_preset(kwargs, {"attention": "se", "stride_in_1x1": True, "stem_pool": "caffe"}))


def se_resnet152(**kwargs: Any) -> ResNet:
    """SE-ResNet-152 as released (v1, Caffe pooling, r=16 with bias): 66,821,848 parameters."""
    return resnet152(**_preset(kwargs, {"attention": "se", "stride_in_1x1": True, "stem_pool": "caffe"}))


ECA_RESNET50_KERNELS = (3, 5, 5, 7)


def eca_resnet50(**kwargs: Any) -> ResNet:
    """ECA-ResNet-50 as released (BangguWu/ECANet ``eca_resnet50``, checkpoint ``k3557``): v1.5, ECA after
    bn3 with the hand-set per-stage kernels 3, 5, 5, 7 (not ψ(C), which gives 5, 5, 5, 7): 80 attention
    parameters, 25,557,112 in all. ECA's Conv1d keeps PyTorch's default init, as in the release."""
    stages = [{"kernel_size": k} for k in ECA_RESNET50_KERNELS]
    return resnet50(**_preset(kwargs, {"attention": "eca", "stage_options": stages}))


def fca_resnet50(**kwargs: Any) -> ResNet:
    """FcaNet-50 as released (cfzd/FcaNet ``fcanet50``: torchvision ResNet-50 v1.5 + multi-spectral
    attention after bn3): ``top16`` frequencies, r=16 without FC bias, DCT grids 56, 28, 14, 7 (the
    stage sizes at 224 input; ``input_size`` moves them). 28,071,976 parameters."""
    return resnet50(**_preset(kwargs, {"attention": "fca"}))


def simam_resnet50(**kwargs: Any) -> ResNet:
    """SimAM-ResNet-50 as released (ZjjConan/SimAM): v1.5 with SimAM after the 3x3 conv, before bn2
    (``conv2 = Sequential(conv, simam)``). Parameter-free: 25,557,032 parameters like ResNet-50.

    λ defaults to 0.1, the value of the release's ImageNet training commands (the module's own default
    is 1e-4); pass ``attention_options={"lambda_": 1e-4}`` for the paper's ablation optimum."""
    options = dict(kwargs.pop("attention_options", None) or {})
    options.setdefault("lambda_", 0.1)
    return resnet50(**_preset(kwargs, {"attention": "simam", "attention_options": options}))


def spse_resnet50(**kwargs: Any) -> ResNet:
    """SPSE-ResNet-50 as released (megvii-research/RG-SENet_SP-SENet ``resnet50_spse``): v1.5, SPSE after
    bn3 (pyramid 1, 2, 4; r=16 with bias; BN on the fused descriptor). 28,480,728 parameters.

    Init as released: backbone convs kaiming fan_out, every BN weight 1, and **every bias 0** (the
    fusion convs', the attention FCs' and the classifier's); the other attention weights keep PyTorch's
    default."""
    model = resnet50(**_preset(kwargs, {"attention": "spse"}))
    _megvii_init(model)
    return model


def rgse_resnet50(**kwargs: Any) -> ResNet:
    """RGSE-ResNet-50 as released (``resnet50_rgse``): v1.5, RGSE after bn3 with a fixed 7x7 average pool
    and strided depthwise fusion 8, 4, 2 (none in stage 4) at 224 input. 28,212,440 parameters. Init as
    :func:`spse_resnet50`."""
    model = resnet50(**_preset(kwargs, {"attention": "rgse"}))
    _megvii_init(model)
    return model


def _megvii_init(model: ResNet) -> None:
    # The release walks its state dict: "conv" weights kaiming fan_out and "bn" weights 1 (both already
    # so here), and every key ending in "bias" becomes 0, attention and classifier included.
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("bias"):
                parameter.zero_()


__all__ = [
    "BasicBlock",
    "Bottleneck",
    "ResNet",
    "eca_resnet50",
    "fca_resnet50",
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
]
