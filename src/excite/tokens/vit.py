"""Transformer blocks with SE recalibration, and a small ViT classifier for 28x28 images.

The attention block follows the SQET-style proposal of the project spec (applications.md section 1):
SQET (BIBM 2022) says only that SE is "fused into conventional self-attention", so where it goes is an
option, ``se_position``:

* ``"post_attn"``: recalibrate the attention output (after the output projection) before it is added
  to the residual stream, the SE-ResNet placement (our default);
* ``"pre_qkv"``: recalibrate the normalised tokens before the Q/K/V projections;
* ``"value"``: recalibrate only V (all heads together, over the model width);
* ``"head"``: squeeze each head's output to one number (mean over tokens and head width) and gate the
  heads with an SE MLP over the H head descriptors (hidden width ``max(1, H // 2)``: H is 4-16, so SE's
  r=16 would leave no bottleneck).

The ViT block adds SE after the attention branch, the MLP branch, or both (``"attn"``, ``"mlp"``,
``"both"``), always on the branch output before the residual sum. SE's reduction defaults to the
proposal's rule: r = 4 for widths up to 256, r = 16 above.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .attention import TOKEN_FAMILIES, create_token_attention

ATTENTION_POSITIONS = ("post_attn", "pre_qkv", "value", "head")
BLOCK_POSITIONS = ("attn", "mlp", "both")


def default_reduction(width: int) -> int:
    """The SQET-style proposal's SE reduction: 4 for widths up to 256, 16 above."""
    return 4 if width <= 256 else 16


def _token_attention(
    attention: str, width: int, reduction: int | None, prefix: int, options: dict[str, Any] | None
) -> nn.Module:
    options = dict(options or {})
    if attention in ("se", "cse", "fca") and "reduction" not in options and "hidden_channels" not in options:
        options["reduction"] = default_reduction(width) if reduction is None else reduction
    return create_token_attention(attention, width, num_prefix_tokens=prefix, **options)


def _init_linear(layer: nn.Linear) -> None:
    nn.init.trunc_normal_(layer.weight, std=0.02)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)


class SEMultiheadSelfAttention(nn.Module):
    """Multi-head self-attention with an optional SE recalibration at ``se_position``.

    Args:
        width: model width D (divisible by ``heads``).
        heads: number of heads H.
        se_position: None, ``"post_attn"``, ``"pre_qkv"``, ``"value"`` or ``"head"`` (module docstring).
        attention: the token family used at ``post_attn``/``pre_qkv``/``value`` (``"se"`` default,
            ``"eca"``, ``"cse"``, ``"simam"``, or ``"fca"`` with ``attention_options={"grid": ...}``).
            The ``head`` position always uses an SE MLP over the heads.
        attention_options: options for that family.
        reduction: SE reduction; None applies :func:`default_reduction` to D.
        num_prefix_tokens: leading tokens (class token) left out of every squeeze.
        qkv_bias: bias on the Q/K/V projection.
        dropout: attention-probability and output dropout.

    Raises:
        ValueError: D not divisible by H, an unknown ``se_position`` or family.
    """

    def __init__(
        self,
        width: int,
        heads: int,
        *,
        se_position: str | None = None,
        attention: str = "se",
        attention_options: dict[str, Any] | None = None,
        reduction: int | None = None,
        num_prefix_tokens: int = 0,
        qkv_bias: bool = True,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if width % heads != 0:
            raise ValueError(f"SEMultiheadSelfAttention: width {width} must be divisible by heads {heads}")
        if se_position is not None and se_position not in ATTENTION_POSITIONS:
            raise ValueError(
                f"SEMultiheadSelfAttention: se_position must be None or one of {ATTENTION_POSITIONS}, "
                f"got {se_position!r}"
            )
        self.width = width
        self.heads = heads
        self.head_width = width // heads
        self.se_position = se_position
        self.num_prefix_tokens = num_prefix_tokens
        self.dropout = dropout
        self.qkv = nn.Linear(width, 3 * width, bias=qkv_bias)
        self.proj = nn.Linear(width, width)
        self.proj_drop = nn.Dropout(dropout)
        _init_linear(self.qkv)
        _init_linear(self.proj)
        self.se: nn.Module | None = None
        if se_position == "head":
            from ..layers import SE

            # The heads play the channels of a 2-D map (tokens x head width), so SE's own squeeze
            # (mean over both) and excitation apply unchanged.
            self.se = SE(heads, dim=2, hidden_channels=max(1, heads // 2))
        elif se_position is not None:
            self.se = _token_attention(attention, width, reduction, num_prefix_tokens, attention_options)

    def forward(self, x: Tensor) -> Tensor:
        batch, length, width = x.shape
        if self.se_position == "pre_qkv":
            x = self.se(x)
        q, k, v = self.qkv(x).split(width, dim=2)
        if self.se_position == "value":
            v = self.se(v)
        q, k, v = (t.reshape(batch, length, self.heads, self.head_width).transpose(1, 2) for t in (q, k, v))
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        if self.se_position == "head":
            descriptor = out[:, :, self.num_prefix_tokens :].mean(dim=(2, 3))
            out = out * self.se.excitation(descriptor).to(out.dtype)[:, :, None, None]
        out = self.proj_drop(self.proj(out.transpose(1, 2).reshape(batch, length, width)))
        if self.se_position == "post_attn":
            out = self.se(out)
        return out


class ViTBlock(nn.Module):
    """A pre-norm transformer block, ``x + A(LN(x))`` then ``x + M(LN(x))``, with optional SE.

    Args:
        width, heads: D and H.
        mlp_ratio: hidden width of the MLP as a multiple of D (GELU between two linears).
        attention_se: where SE enters the attention (``ATTENTION_POSITIONS``), or None.
        mlp_se: recalibrate the MLP output before its residual sum.
        attention, attention_options, reduction, num_prefix_tokens, dropout: as
            :class:`SEMultiheadSelfAttention`.
    """

    def __init__(
        self,
        width: int,
        heads: int,
        *,
        mlp_ratio: float = 4.0,
        attention_se: str | None = None,
        mlp_se: bool = False,
        attention: str = "se",
        attention_options: dict[str, Any] | None = None,
        reduction: int | None = None,
        num_prefix_tokens: int = 0,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(width)
        self.attn = SEMultiheadSelfAttention(
            width,
            heads,
            se_position=attention_se,
            attention=attention,
            attention_options=attention_options,
            reduction=reduction,
            num_prefix_tokens=num_prefix_tokens,
            dropout=dropout,
        )
        self.norm2 = nn.LayerNorm(width)
        hidden = int(width * mlp_ratio)
        self.mlp = nn.Sequential(
            nn.Linear(width, hidden),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, width),
            nn.Dropout(dropout),
        )
        _init_linear(self.mlp[0])
        _init_linear(self.mlp[3])
        self.mlp_se = (
            _token_attention(attention, width, reduction, num_prefix_tokens, attention_options)
            if mlp_se
            else None
        )

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        branch = self.mlp(self.norm2(x))
        if self.mlp_se is not None:
            branch = self.mlp_se(branch)
        return x + branch


class VisionTransformer(nn.Module):
    """A ViT for small images: conv patch embedding, class token, learned positions, pre-norm blocks.

    Args:
        in_channels, num_classes, image_size, patch_size: the input and the patch grid
            (``image_size`` divisible by ``patch_size``).
        width, depth, heads, mlp_ratio: D, number of blocks, H and the MLP ratio.
        se_position: None, ``"attn"``, ``"mlp"`` or ``"both"``: which branch outputs get SE.
        attention, attention_options, reduction: the token family and its options.
        pool: ``"cls"`` (read the class token) or ``"mean"`` (average the patch tokens; no class token).
        dropout: dropout in attention and MLP.

    Raises:
        ValueError: an image size not divisible by the patch size, an unknown ``se_position`` or pool.
    """

    def __init__(
        self,
        *,
        in_channels: int = 1,
        num_classes: int = 10,
        image_size: int = 28,
        patch_size: int = 4,
        width: int = 64,
        depth: int = 6,
        heads: int = 4,
        mlp_ratio: float = 2.0,
        se_position: str | None = None,
        attention: str = "se",
        attention_options: dict[str, Any] | None = None,
        reduction: int | None = None,
        pool: str = "cls",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if image_size % patch_size != 0:
            raise ValueError(
                f"VisionTransformer: image_size {image_size} is not divisible by patch_size {patch_size}"
            )
        if se_position is not None and se_position not in BLOCK_POSITIONS:
            raise ValueError(
                f"VisionTransformer: se_position must be None or one of {BLOCK_POSITIONS}, "
                f"got {se_position!r}"
            )
        if pool not in ("cls", "mean"):
            raise ValueError(f"VisionTransformer: pool must be 'cls' or 'mean', got {pool!r}")
        if attention not in TOKEN_FAMILIES:
            raise ValueError(
                f"VisionTransformer: attention must be one of {TOKEN_FAMILIES}, got {attention!r}"
            )
        side = image_size // patch_size
        self.grid = (side, side)
        self.pool = pool
        self.se_position = se_position
        prefix = 1 if pool == "cls" else 0
        options = dict(attention_options or {})
        if attention == "fca":
            options.setdefault("grid", self.grid)
        self.patch_embed = nn.Conv2d(in_channels, width, kernel_size=patch_size, stride=patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, width)) if prefix else None
        self.pos_embed = nn.Parameter(torch.zeros(1, side * side + prefix, width))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        attention_se = "post_attn" if se_position in ("attn", "both") else None
        self.blocks = nn.ModuleList(
            ViTBlock(
                width,
                heads,
                mlp_ratio=mlp_ratio,
                attention_se=attention_se,
                mlp_se=se_position in ("mlp", "both"),
                attention=attention,
                attention_options=options,
                reduction=reduction,
                num_prefix_tokens=prefix,
                dropout=dropout,
            )
            for _ in range(depth)
        )
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, num_classes)
        _init_linear(self.head)

    def tokens(self, images: Tensor) -> Tensor:
        """Patch tokens with positions (and the class token first), ``(N, L, D)``."""
        x = self.patch_embed(images)
        if tuple(x.shape[2:]) != self.grid:
            raise ValueError(
                f"VisionTransformer: built for a {self.grid} patch grid, got {tuple(x.shape[2:])} "
                f"from input shape {list(images.shape)}"
            )
        x = x.flatten(2).transpose(1, 2)
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        return x + self.pos_embed

    def forward(self, images: Tensor) -> Tensor:
        x = self.tokens(images)
        for block in self.blocks:
            x = block(x)
        x = self.norm(x)
        return self.head(x[:, 0] if self.pool == "cls" else x.mean(dim=1))


def vit_tiny(
    *,
    in_channels: int = 1,
    num_classes: int = 10,
    image_size: int = 28,
    patch_size: int = 4,
    dim: int = 64,
    depth: int = 6,
    heads: int = 4,
    mlp_ratio: float = 2.0,
    se_position: str | None = None,
    reduction: int | None = None,
    attention: str = "se",
    attention_options: dict[str, Any] | None = None,
    pool: str = "cls",
    dropout: float = 0.0,
) -> VisionTransformer:
    """A small ViT for 28x28 Fashion-MNIST, with SE after the attention and/or MLP branches.

    Defaults: patch 4 (a 7x7 grid of 49 tokens plus a class token), width 64, depth 6, 4 heads, MLP
    ratio 2, SE reduction 4 (hidden width 16); 205,962 parameters without SE, and each SE adds
    ``2·D·D/r + D/r + D`` = 2,128 per branch at these defaults.

    Args: see :class:`VisionTransformer` (``dim`` is its ``width``).
    """
    return VisionTransformer(
        in_channels=in_channels,
        num_classes=num_classes,
        image_size=image_size,
        patch_size=patch_size,
        width=dim,
        depth=depth,
        heads=heads,
        mlp_ratio=mlp_ratio,
        se_position=se_position,
        attention=attention,
        attention_options=attention_options,
        reduction=reduction,
        pool=pool,
        dropout=dropout,
    )
