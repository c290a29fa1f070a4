"""Key layouts of single modules in the official repositories and peer libraries.

Each entry names the file the layout comes from. 1x1-convolution kernels ``(out, in, 1, 1)`` load into
our ``nn.Linear``/``Conv1d`` weights by reshaping (``load_official`` does that for any shape that
differs only by singleton dimensions).
"""

from __future__ import annotations

from ..layers import CBAM, ECA, FCA, RGSE, SCSE, SE, SPSE, ChannelSE, CoordAttention, SimAM, SpatialSE
from . import KeyMap, register_converter

_FC12 = [("fc1.", "fc1."), ("fc2.", "fc2.")]

# timm layers/squeeze_excite.py SEModule (fc1/fc2 1x1 convs, `bn` Identity); torchvision
# ops/misc.py SqueezeExcitation (fc1/fc2 1x1 convs).
register_converter(SE, "timm")(KeyMap(_FC12))
register_converter(SE, "torchvision")(KeyMap(_FC12))
# MONAI blocks/squeeze_and_excitation.py ChannelSELayer: fc = Sequential(Linear, act, Linear, act).
register_converter(SE, "monai")(KeyMap([("fc.0.", "fc1."), ("fc.2.", "fc2.")]))
# ai-med squeeze_and_excitation.py ChannelSELayer: fc1/fc2 Linear with bias.
register_converter(ChannelSE, "official")(KeyMap(_FC12))

# ai-med SpatialSELayer: conv = Conv2d(C, 1, 1).
register_converter(SpatialSE, "official")(KeyMap([("conv.", "conv.")]))
# ai-med ChannelSpatialSELayer: cSE (ChannelSELayer) and sSE (SpatialSELayer).
register_converter(SCSE, "official")(
    KeyMap([("cSE.fc1.", "cse.fc1."), ("cSE.fc2.", "cse.fc2."), ("sSE.conv.", "sse.conv.")])
)
# smp base/modules.py SCSEModule: cSE = Sequential(pool, conv, relu, conv, sigmoid), sSE = (conv, sigmoid).
register_converter(SCSE, "smp")(
    KeyMap([("cSE.1.", "cse.fc1."), ("cSE.3.", "cse.fc2."), ("sSE.0.", "sse.conv.")])
)

# ECANet models/eca_module.py eca_layer and timm layers/eca.py EcaModule/CecaModule: conv = Conv1d(1, 1, k).
register_converter(ECA, "official")(KeyMap([("conv.", "conv.")]))
register_converter(ECA, "timm")(KeyMap([("conv.", "conv.")]))

# FcaNet model/layer.py MultiSpectralAttentionLayer: dct_layer.weight is the fixed filter bank (a
# buffer, checked against ours), fc = Sequential(Linear, ReLU, Linear, Sigmoid) without bias.
register_converter(FCA, "official")(
    KeyMap([("fc.0.", "fc1."), ("fc.2.", "fc2.")], checked_buffers={"dct_layer.weight": "dct_filter"})
)

# CoordAttention coordatt.py CoordAtt (conv1, bn1, conv_h, conv_w) and mbv2_ca.py CoordAtt, which names
# the per-axis convs conv2 (h) and conv3 (w).
register_converter(CoordAttention, "official")(
    KeyMap(
        [
            ("conv1.", "conv1."),
            ("bn1.", "norm."),
            ("conv_h.", "convs.0."),
            ("conv_w.", "convs.1."),
            ("conv2.", "convs.0."),
            ("conv3.", "convs.1."),
        ]
    )
)

# SimAM networks/attentions/simam_module.py has no parameters: its state dict is empty.
register_converter(SimAM, "official")(KeyMap([]))

# RG-SENet_SP-SENet spse_resnet.py Bottleneck: the attention keys of one block.
register_converter(SPSE, "official")(
    KeyMap(
        [
            ("fc_spatial1.", "fusion.0."),
            ("fc_spatial2.", "fusion.1."),
            ("fc_spatial4.", "fusion.2."),
            ("fc_bn.", "norm."),
            ("fc_reduction.", "fc1."),
            ("fc_extention.", "fc2."),
        ]
    )
)
# rgse_resnet.py Bottleneck: fc_spatial = Sequential(fc_spatial conv, bn_spatial) in stages 1-3.
register_converter(RGSE, "official")(
    KeyMap(
        [
            ("fc_spatial.fc_spatial.", "fusion."),
            ("fc_spatial.bn_spatial.", "norm."),
            ("fc_reduction.", "fc1."),
            ("fc_extention.", "fc2."),
        ]
    )
)

# attention-module MODELS/cbam.py: ChannelGate.mlp = Sequential(Flatten, Linear, ReLU, Linear);
# SpatialGate.spatial = BasicConv(conv, bn).
register_converter(CBAM, "official")(
    KeyMap(
        [
            ("ChannelGate.mlp.1.", "fc1."),
            ("ChannelGate.mlp.3.", "fc2."),
            ("SpatialGate.spatial.conv.", "spatial_conv."),
            ("SpatialGate.spatial.bn.", "spatial_norm."),
        ]
    )
)
# timm layers/cbam.py CbamModule: channel.fc1/fc2 (1x1 convs), spatial.conv = ConvNormAct(conv, bn).
register_converter(CBAM, "timm")(
    KeyMap(
        [
            ("channel.fc1.", "fc1."),
            ("channel.fc2.", "fc2."),
            ("spatial.conv.conv.", "spatial_conv."),
            ("spatial.conv.bn.", "spatial_norm."),
        ]
    )
)
