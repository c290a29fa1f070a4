"""An SQET-style transformer for brain-age regression from 3-D (or 2-D) scans.

SQET: "Squeeze and Excitation Transformer for High-accuracy Brain Age Estimation", IEEE BIBM 2022
(OpenReview ``w76M31qV38s``). Only the abstract is public: a CNN extracts local features, a transformer
with an SE module "fused into conventional self-attention" relates distant brain regions; 6,318 healthy
T1 MRIs aged 6-88 from 9 public data sets; MAE 2.55 years, Pearson r 0.983.

**Unknown** (no full text and no code could be found): the authors, where exactly SE enters the
attention, 2-D slices or 3-D patches, depth/width/heads/patch size, the 9 data sets and the split, the
loss and the schedule. Everything below is **our design** (the project spec's proposal), not SQET's:

* a small CNN stem (3x3x3 conv, BatchNorm, ReLU; ``stem_channels=0`` drops it) for local features;
* non-overlapping ``patch_size`` sub-volumes embedded by a strided convolution into D-wide tokens; the
  input is zero-padded at the far end of each axis up to a multiple of the patch size, so no voxel is
  dropped (MNI 91x109x91 with patch 16 gives a 6x7x6 grid, 252 tokens);
* learned positional embeddings, pre-norm blocks with SE at ``se_position`` (``"post_attn"`` default,
  ``"pre_qkv"``, ``"value"``, ``"head"``; see :mod:`excite.tokens.vit`), optionally also after the MLP;
* mean pooling over tokens, LayerNorm, and a linear age head; train with L1 (MAE) loss, report MAE,
  Pearson r and the age-bias slope (:func:`age_metrics`).

The closest documented relatives are PSET (same group, Neurocomputing 2025: 3-D Inception blocks plus
SE-fused self-attention, MAE 2.342 on 15,437 scans) and the Global-Local Transformer (He et al., TMI 2021).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._nd import conv_nd
from .vit import ViTBlock


def _triple(value: Union[int, Sequence[int]], dims: int, name: str) -> tuple[int, ...]:
    if isinstance(value, int):
        return (value,) * dims
    out = tuple(int(v) for v in value)
    if len(out) != dims or min(out) < 1:
        raise ValueError(f"SQET: {name} needs {dims} positive sizes for spatial_dims={dims}, got {value}")
    return out


class SQET(nn.Module):
    """Patch-embedding transformer with SE recalibration and an age-regression head (our SQET design).

    Input ``(N, C, D, H, W)`` (or ``(N, C, H, W)`` with ``spatial_dims=2``) of exactly ``image_size``;
    output ``(N,)`` predicted ages.

    Args:
        in_channels: image channels (1 for T1).
        image_size: the input's spatial size; default 91x109x91, the MNI152 2 mm grid of FSL pipelines.
        patch_size: sub-volume edge (int or per axis).
        spatial_dims: 3 (volumes) or 2 (slices).
        width, depth, heads, mlp_ratio: D, blocks, H and MLP ratio.
        se_position: where SE enters each attention (``"post_attn"``, ``"pre_qkv"``, ``"value"``,
            ``"head"``) or None for the plain-transformer baseline.
        mlp_se: also recalibrate each MLP output.
        attention, attention_options, reduction: token family and its options (SE, r=4 for D<=256).
        stem_channels: width of the 3x3x3 conv stem; 0 embeds raw patches.
        age_offset: added to the head's output (set it to the training mean age so the untrained
            network starts at the mean).
        dropout: attention and MLP dropout.

    Raises:
        ValueError: invalid sizes or options; at call time an input whose size is not ``image_size``.
    """

    def __init__(
        self,
        *,
        in_channels: int = 1,
        image_size: Union[int, Sequence[int]] = (91, 109, 91),
        patch_size: Union[int, Sequence[int]] = 16,
        spatial_dims: int = 3,
        width: int = 128,
        depth: int = 6,
        heads: int = 8,
        mlp_ratio: float = 2.0,
        se_position: str | None = "post_attn",
        mlp_se: bool = False,
        attention: str = "se",
        attention_options: dict[str, Any] | None = None,
        reduction: int | None = None,
        stem_channels: int = 8,
        age_offset: float = 0.0,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"SQET: spatial_dims must be 2 or 3, got {spatial_dims}")
        self.spatial_dims = spatial_dims
        self.image_size = _triple(image_size, spatial_dims, "image_size")
        self.patch_size = _triple(patch_size, spatial_dims, "patch_size")
        self.grid = tuple(math.ceil(s / p) for s, p in zip(self.image_size, self.patch_size))
        conv = conv_nd(spatial_dims)
        norm = nn.BatchNorm3d if spatial_dims == 3 else nn.BatchNorm2d
        if stem_channels > 0:
            self.stem: nn.Module = nn.Sequential(
                conv(in_channels, stem_channels, kernel_size=3, padding=1, bias=False),
                norm(stem_channels),
                nn.ReLU(inplace=True),
            )
            embed_in = stem_channels
        else:
            self.stem = nn.Identity()
            embed_in = in_channels
        self.patch_embed = conv(embed_in, width, kernel_size=self.patch_size, stride=self.patch_size)
        tokens = 1
        for g in self.grid:
            tokens *= g
        self.pos_embed = nn.Parameter(torch.zeros(1, tokens, width))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        options = dict(attention_options or {})
        if attention == "fca":
            options.setdefault("grid", self.grid)
        self.blocks = nn.ModuleList(
            ViTBlock(
                width,
                heads,
                mlp_ratio=mlp_ratio,
                attention_se=se_position,
                mlp_se=mlp_se,
                attention=attention,
                attention_options=options,
                reduction=reduction,
                dropout=dropout,
            )
            for _ in range(depth)
        )
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, 1)
        nn.init.trunc_normal_(self.head.weight, std=0.02)
        nn.init.constant_(self.head.bias, float(age_offset))

    def tokens(self, volume: Tensor) -> Tensor:
        """Patch tokens with positions, ``(N, L, D)``."""
        if volume.dim() != self.spatial_dims + 2 or tuple(volume.shape[2:]) != self.image_size:
            raise ValueError(
                f"SQET: expected input (N, C, {', '.join(map(str, self.image_size))}), got shape "
                f"{list(volume.shape)} (positional embeddings are tied to image_size)"
            )
        x = self.stem(volume)
        padding = []
        for size, patch in reversed(list(zip(self.image_size, self.patch_size))):
            padding.extend([0, (-size) % patch])
        x = self.patch_embed(F.pad(x, padding))
        return x.flatten(2).transpose(1, 2) + self.pos_embed

    def forward(self, volume: Tensor) -> Tensor:
        x = self.tokens(volume)
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x.mean(dim=1))).squeeze(-1)


def sqet(**options: Any) -> SQET:
    """Build :class:`SQET` (our SQET-style design; see the module docstring for what is unknown)."""
    return SQET(**options)


def age_metrics(predicted: Tensor, age: Tensor) -> dict[str, float]:
    r"""Brain-age metrics: MAE, Pearson r, and the age-bias slope.

    .. math::

        \mathrm{MAE} = \tfrac1n\sum|\hat a - a|,\qquad
        r = \frac{\sum(\hat a-\bar{\hat a})(a-\bar a)}
        {\sqrt{\sum(\hat a-\bar{\hat a})^2\sum(a-\bar a)^2}},\qquad
        \text{slope} = \frac{\sum(\hat a - a - \overline{\hat a - a})(a-\bar a)}{\sum(a-\bar a)^2}

    The slope of the brain-age gap against true age (PSET's "age bias"): 0 is unbiased; regression to the
    mean makes it negative. Computed in float64.

    Raises:
        ValueError: shapes that differ, fewer than 2 samples, or constant ages.
    """
    predicted = predicted.detach().reshape(-1).double()
    age = age.detach().reshape(-1).double()
    if predicted.shape != age.shape or predicted.numel() < 2:
        raise ValueError(
            f"age_metrics: need two 1-D tensors of equal length >= 2, "
            f"got {list(predicted.shape)} and {list(age.shape)}"
        )
    age_centred = age - age.mean()
    spread = (age_centred**2).sum()
    if spread == 0:
        raise ValueError("age_metrics: all ages are equal, so r and the bias slope are undefined")
    pred_centred = predicted - predicted.mean()
    gap = predicted - age
    return {
        "mae": float(gap.abs().mean()),
        "pearson_r": float((pred_centred * age_centred).sum() / torch.sqrt((pred_centred**2).sum() * spread)),
        "bias_slope": float(((gap - gap.mean()) * age_centred).sum() / spread),
    }
