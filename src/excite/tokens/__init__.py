"""SE beyond CNN feature maps, part 1: token sequences and transformers.

* :func:`create_token_attention` (what ``excite.create(name, C, layout="tokens")`` calls): SE, cSE, ECA,
  FcaNet (on a token grid) and SimAM over ``(N, L, C)`` tokens, optionally leaving a class token out of
  the squeeze.
* :class:`SEMultiheadSelfAttention`, :class:`ViTBlock`, :class:`VisionTransformer` and
  :func:`vit_tiny`: a small ViT with SE after the attention and/or MLP branches.
* :class:`SQET` / :func:`sqet`: an SQET-style brain-age transformer (our design; SQET's details are not
  public) and :func:`age_metrics`.
"""

from .attention import (
    REFUSED_FAMILIES,
    TOKEN_FAMILIES,
    TokenChannelAttention,
    TokenSimAM,
    create_token_attention,
)
from .sqet import SQET, age_metrics, sqet
from .vit import (
    ATTENTION_POSITIONS,
    BLOCK_POSITIONS,
    SEMultiheadSelfAttention,
    VisionTransformer,
    ViTBlock,
    default_reduction,
    vit_tiny,
)

__all__ = [
    "ATTENTION_POSITIONS",
    "BLOCK_POSITIONS",
    "REFUSED_FAMILIES",
    "SQET",
    "TOKEN_FAMILIES",
    "SEMultiheadSelfAttention",
    "TokenChannelAttention",
    "TokenSimAM",
    "ViTBlock",
    "VisionTransformer",
    "age_metrics",
    "create_token_attention",
    "default_reduction",
    "sqet",
    "vit_tiny",
]
