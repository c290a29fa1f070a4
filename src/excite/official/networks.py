"""Key layouts of whole networks: the papers' releases, timm and torchvision, into :mod:`excite.models`.

Each converter renames the backbone keys and hands every block's attention keys to the module
converter of :mod:`excite.official.layers`, so a network loads exactly what its modules load.
``load_official`` then checks that every key found a place and every shape fits (1x1-conv kernels
load into our Linear/Conv1d weights by reshaping).

Layouts, by source:

* ``"torchvision"``: ``resnet18``…``resnet152``, ``resnext50_32x4d`` (names as ours), ``mobilenet_v2``
  (``features.i.conv.k``), ``densenet121``-style DenseNets and ``googlenet`` (without auxiliary heads).
* ``"timm"``: ``resnet*``/``resnet*d``/``resnet*t``, ``seresnet*`` (``se.fc1``/``se.fc2``), ``ecaresnet*``
  (``se.conv``), and the Cadene-style ``legacy_seresnet*`` (``layer0.conv1``, ``se_module``, ``last_linear``).
* ``"official"``:
  * SE-ResNet: Cadene's ``pretrainedmodels`` ``se_resnet50`` (the layout of ``legacy_seresnet*`` above);
  * ECA-ResNet (BangguWu/ECANet ``eca_resnet.py``: torchvision names + ``eca.conv``);
  * FcaNet (cfzd/FcaNet: torchvision ResNet + ``att.fc.0/2``, ``att.dct_layer.weight`` compared with our
    DCT filter, not loaded);
  * SimAM-ResNet (ZjjConan/SimAM: ``conv2.0.weight``; other attention there is ``bn3 = Sequential(bn3,
    att)``, i.e. ``bn3.0``/``bn3.1``);
  * SPSE/RGSE-ResNet (megvii-research/RG-SENet_SP-SENet: ``layer1.layer1_block_0.conv_conv1``,
    ``bn_bn1``, ``shortcut.shortcut_conv``, ``fc_spatial*``, ``fc_bn``, ``fc_reduction``, ``fc_extention``);
  * ECA-MobileNetV2 (torchvision layout + ``conv.k.conv`` appended), SimAM-MobileNetV2 (the depthwise unit
    is ``conv, simam, bn, relu6``; classifier without dropout), CA-MobileNetV2 (houqb ``mbv2_ca.py``:
    flat ``conv.k`` indices, CA at ``conv.6``, the last 1x1 conv as top-level ``conv``);
  * MobileNeXt (yitu-opensource ``mnext.py``: flat ``conv.k`` per sandglass kind).
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from torch import Tensor, nn

from ..models.densenet import DenseNet
from ..models.inception import Inception
from ..models.mobilenet import MobileNetV2, MobileNeXt
from ..models.resnet import BasicBlock, Bottleneck, ResNet
from . import Converted, _find_converter, register_converter

# Where a module converter of the same source is missing, the attention keys of these layouts are the
# timm/torchvision module layouts (Cadene's SE is timm's ``fc1``/``fc2``).
_MODULE_SOURCE_FALLBACKS = ("timm", "torchvision", "official")


def _convert_attention(module: nn.Module, state: Mapping[str, Tensor], source: str, prefix: str) -> Converted:
    """Run ``module``'s own converter on its keys and put ``prefix`` in front of the results."""
    if isinstance(module, nn.Identity):
        return {}, [f"{prefix}{key} (this network has no attention module there)" for key in state]
    for candidate in (source, *_MODULE_SOURCE_FALLBACKS):
        converter = _find_converter(module, candidate)
        if converter is not None:
            converted, unplaced = converter(module, state)
            return {prefix + key: value for key, value in converted.items()}, [prefix + k for k in unplaced]
    return {}, [f"{prefix}{key} (no converter for {type(module).__name__})" for key in state]


def _rename(key: str, rules: Sequence[tuple[str, Any]]) -> str:
    for pattern, replacement in rules:
        key = re.sub(pattern, replacement, key)
    return key


def _split_attention(
    state: Mapping[str, Tensor], rules: Sequence[tuple[str, str]], marker: str = ".attention."
) -> tuple[dict[str, Tensor], dict[str, dict[str, Tensor]]]:
    """Rename every key; keys with ``marker`` are grouped by the path before it (one group per block)."""
    backbone: dict[str, Tensor] = OrderedDict()
    groups: dict[str, dict[str, Tensor]] = OrderedDict()
    for key, value in state.items():
        renamed = _rename(key, rules)
        if marker in renamed:
            owner, rest = renamed.split(marker, 1)
            groups.setdefault(owner, OrderedDict())[rest] = value
        else:
            backbone[renamed] = value
    return backbone, groups


# ----------------------------------------------------------------------------------------------------------
# ResNet

_RESNET_RULES: list[tuple[str, str]] = [
    # Cadene / timm legacy SENet.
    (r"^layer0\.conv1\.", "conv1."),
    (r"^layer0\.bn1\.", "bn1."),
    (r"^last_linear\.", "fc."),
    # megvii SPSE/RGSE: layerX.layerX_block_i.*, conv_convK, bn_bnK, shortcut.*, flat attention keys.
    (r"^(layer\d+)\.layer\d+_block_(\d+)\.", r"\1.\2."),
    (r"^(layer\d+\.\d+)\.conv_conv(\d)\.", r"\1.conv\2."),
    (r"^(layer\d+\.\d+)\.bn_bn(\d)\.", r"\1.bn\2."),
    (r"^(layer\d+\.\d+)\.shortcut\.shortcut_conv\.", r"\1.downsample.0."),
    (r"^(layer\d+\.\d+)\.shortcut\.shortcut_bn\.", r"\1.downsample.1."),
    (r"^(layer\d+\.\d+)\.(fc_spatial|fc_bn\.|fc_reduction\.|fc_extention\.)", r"\1.attention.\2"),
    # timm ``se``, Cadene ``se_module``, ECANet ``eca``, FcaNet ``att``.
    (r"^(layer\d+\.\d+)\.(se|se_module|eca|att)\.", r"\1.attention."),
    # SimAM repo: attention other than SimAM is ``bnK = Sequential(bnK, attention)``.
    (r"^(layer\d+\.\d+)\.(bn[23])\.0\.", r"\1.\2."),
    (r"^(layer\d+\.\d+)\.bn[23]\.1\.", r"\1.attention."),
]


def _resnet_converter(source: str) -> Callable[[nn.Module, Mapping[str, Tensor]], Converted]:
    def convert(target: nn.Module, state: Mapping[str, Tensor]) -> Converted:
        backbone, groups = _split_attention(state, _RESNET_RULES)
        converted: dict[str, Tensor] = dict(backbone)
        unplaced: list[str] = []
        for block_path, sub_state in groups.items():
            try:
                block = target.get_submodule(block_path)
            except AttributeError:
                unplaced.extend(f"{block_path}.attention.{k}" for k in sub_state)
                continue
            if not isinstance(block, (BasicBlock, Bottleneck)):
                unplaced.extend(f"{block_path}.attention.{k}" for k in sub_state)
                continue
            if isinstance(block.conv2, nn.Sequential):
                module, prefix = block.conv2[1], f"{block_path}.conv2.1."
            else:
                module, prefix = block.attention, f"{block_path}.attention."
            part, missing = _convert_attention(module, sub_state, source, prefix)
            converted.update(part)
            unplaced.extend(missing)
        return converted, unplaced

    return convert


for _source in ("official", "timm", "torchvision"):
    register_converter(ResNet, _source)(_resnet_converter(_source))


# ----------------------------------------------------------------------------------------------------------
# MobileNetV2


def _unit(layer: str, sub: str) -> str:
    # A ConvBNReLU group: index 0 is the conv, the BN is 1 (torchvision) or 2 (SimAM: conv, simam, bn).
    return f"{layer}.conv." if sub == "0" else f"{layer}.norm."


def _mobilenet_v2_converter(source: str) -> Callable[[nn.Module, Mapping[str, Tensor]], Converted]:
    def convert(target: nn.Module, state: Mapping[str, Tensor]) -> Converted:
        blocks = list(target.blocks)
        flat_layout = "conv.0.weight" in state  # mbv2_ca: blocks are flat, the last 1x1 is top-level ``conv``
        converted: dict[str, Tensor] = OrderedDict()
        attention: dict[int, dict[str, Tensor]] = OrderedDict()
        unplaced: list[str] = []
        head_index = len(blocks) + 1
        for key, value in state.items():
            match = re.match(r"^features\.(\d+)\.(.*)$", key)
            if key.startswith(("classifier.0.", "classifier.1.")):
                converted["classifier." + key.split(".", 2)[2]] = value
            elif flat_layout and key.startswith("conv."):
                index, rest = key[len("conv.") :].split(".", 1)
                converted[("head.conv." if index == "0" else "head.norm.") + rest] = value
            elif match is None:
                unplaced.append(key)
            elif match.group(1) in ("0", str(head_index)):
                index, rest = match.group(2).split(".", 1)
                layer = "stem" if match.group(1) == "0" else "head"
                converted[_unit(layer, index) + rest] = value
            else:
                number = int(match.group(1)) - 1
                if number >= len(blocks) or not match.group(2).startswith("conv."):
                    unplaced.append(key)
                    continue
                block = blocks[number]
                path = f"blocks.{number}"
                rest = match.group(2)[len("conv.") :]
                expands = not isinstance(block.expand, nn.Identity)
                if flat_layout:
                    if expands:
                        units: list[str | None] = [
                            "expand.conv", "expand.norm", None, "depthwise.conv", "depthwise.norm", None,
                            "attention", "project.conv", "project.norm",
                        ]  # fmt: skip
                    else:
                        units = ["depthwise.conv", "depthwise.norm", None, "project.conv", "project.norm"]
                    index, tail = rest.split(".", 1)
                    name = units[int(index)] if int(index) < len(units) else None
                    if name == "attention":
                        attention.setdefault(number, OrderedDict())[tail] = value
                    elif name is None:
                        unplaced.append(key)
                    else:
                        converted[f"{path}.{name}.{tail}"] = value
                    continue
                groups = (["expand"] if expands else []) + [
                    "depthwise",
                    "project.conv",
                    "project.norm",
                    "attention",
                ]
                index, tail = rest.split(".", 1)
                if int(index) >= len(groups):
                    unplaced.append(key)
                    continue
                name = groups[int(index)]
                if name in ("expand", "depthwise"):
                    sub, tail = tail.split(".", 1)
                    converted[_unit(f"{path}.{name}", sub) + tail] = value
                elif name == "attention":
                    attention.setdefault(number, OrderedDict())[tail] = value
                else:
                    converted[f"{path}.{name}.{tail}"] = value
        for number, sub_state in attention.items():
            block = blocks[number]
            part, missing = _convert_attention(
                block.attention, sub_state, source, f"blocks.{number}.attention."
            )
            converted.update(part)
            unplaced.extend(missing)
        return converted, unplaced

    return convert


for _source in ("official", "torchvision"):
    register_converter(MobileNetV2, _source)(_mobilenet_v2_converter(_source))


# ----------------------------------------------------------------------------------------------------------
# MobileNeXt (mnext.py: flat ``conv`` indices per block kind, ReLU6 positions hold no keys)

_SANDGLASS_UNITS = {
    "full": [
        "depthwise1.conv",
        "depthwise1.norm",
        None,
        "reduce.conv",
        "reduce.norm",
        "expand.conv",
        "expand.norm",
        None,
        "depthwise2.conv",
        "depthwise2.norm",
    ],
    "pointwise": ["reduce.conv", "reduce.norm", "expand.conv", "expand.norm"],
    "strided": [
        "reduce.conv",
        "reduce.norm",
        "expand.conv",
        "expand.norm",
        None,
        "depthwise2.conv",
        "depthwise2.norm",
    ],
}


@register_converter(MobileNeXt, "official")
def _mobilenext_official(target: nn.Module, state: Mapping[str, Tensor]) -> Converted:
    blocks = list(target.blocks)
    converted: dict[str, Tensor] = OrderedDict()
    unplaced: list[str] = []
    for key, value in state.items():
        match = re.match(r"^features\.(\d+)\.(.*)$", key)
        if key.startswith(("classifier.0.", "classifier.1.")):
            converted["classifier." + key.split(".", 2)[2]] = value
        elif match is None:
            unplaced.append(key)
        elif match.group(1) == "0":
            index, rest = match.group(2).split(".", 1)
            converted[_unit("stem", index) + rest] = value
        else:
            number = int(match.group(1)) - 1
            if number >= len(blocks) or not match.group(2).startswith("conv."):
                unplaced.append(key)
                continue
            index, rest = match.group(2)[len("conv.") :].split(".", 1)
            units = _SANDGLASS_UNITS[blocks[number].kind]
            name = units[int(index)] if int(index) < len(units) else None
            if name is None:
                unplaced.append(key)
            else:
                converted[f"blocks.{number}.{name}.{rest}"] = value
    return converted, unplaced


# ----------------------------------------------------------------------------------------------------------
# DenseNet and Inception (torchvision names)

_DENSENET_RULES: list[tuple[str, Any]] = [
    (r"^features\.conv0\.", "stem.conv."),
    (r"^features\.norm0\.", "stem.norm."),
    (
        r"^features\.denseblock(\d+)\.denselayer(\d+)\.",
        lambda m: f"blocks.{int(m.group(1)) - 1}.{int(m.group(2)) - 1}.",
    ),
    (r"^features\.transition(\d+)\.", lambda m: f"transitions.{int(m.group(1)) - 1}."),
    (r"^features\.norm5\.", "final_norm."),
]


@register_converter(DenseNet, "torchvision")
def _densenet_torchvision(target: nn.Module, state: Mapping[str, Tensor]) -> Converted:
    converted: dict[str, Tensor] = OrderedDict()
    for key, value in state.items():
        converted[_rename(key, _DENSENET_RULES)] = value
    return converted, []


@register_converter(Inception, "torchvision")
def _inception_torchvision(target: nn.Module, state: Mapping[str, Tensor]) -> Converted:
    converted: dict[str, Tensor] = OrderedDict()
    unplaced: list[str] = []
    for key, value in state.items():
        if key.startswith(("aux1.", "aux2.")):
            unplaced.append(
                f"{key} (auxiliary classifiers are training-only; build torchvision's googlenet with "
                f"aux_logits=False)"
            )
        else:
            converted[key] = value
    return converted, unplaced


def convert_state_dict(target: nn.Module, state: Mapping[str, Tensor], source: str) -> Converted | None:
    """The converted state dict without loading it (for inspection); None if no converter applies."""
    converter = _find_converter(target, source)
    return None if converter is None else converter(target, state)


__all__ = ["convert_state_dict"]
