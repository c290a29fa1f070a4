r"""SE-family attention over token sequences ``(N, L, C)``: squeeze over tokens, excite channels.

A token sequence is the channels-last view of a 1-D feature map: ``x.transpose(1, 2)`` is ``(N, C, L)``.
Every module here therefore wraps the channels-first module of its family (built with ``dim=1``, or with
the token grid's rank for FcaNet) and calls that module's own ``excitation`` (and, for FcaNet, its own
``squeeze``), so the weights, defaults and arithmetic are shared with :func:`excite.create`'s modules:
with no prefix tokens, ``TokenChannelAttention(x)`` equals ``SE(dim=1)(x.transpose(1, 2)).transpose(1, 2)``
on SE's reference path to the last bit (token modules always take that plain-autograd path; the fused
channels-first kernels do not see the token layout).

What each family means over tokens (our decisions; no paper defines them):

* ``se``, ``cse``: :math:`z = \frac{1}{L'}\sum_t x_t` over the ``L'`` non-prefix tokens,
  :math:`s = \sigma(W_2\,\delta(W_1 z))`, :math:`y_t = x_t \odot s` for every token. This is the SQET
  proposal in the project spec (applications.md section 1).
* ``eca``: the same token mean, then ECA's k-tap convolution across channels. Channel order in a
  transformer is arbitrary, as it is in a CNN, so ECA's "local cross-channel interaction" is exactly as
  (un)motivated as in the original.
* ``fca``: FcaNet's descriptor is a sum of the map against 2-D DCT bases, which needs a spatial grid. Over
  tokens it is defined only when the caller says how the non-prefix tokens tile a grid: ``grid=(H, W)``
  for ViT patches in raster order, ``(D, H, W)`` for volume patches, ``(L,)`` for a genuine 1-D sequence.
  The tokens are viewed as ``(N, C, *grid)`` and FCA with ``dim=len(grid)`` and ``dct_size=grid`` (by
  default) pools them, so FCA's DC frequency is ``sqrt(L')`` times the token mean, as in FcaNet.
* ``simam``: SimAM's energy is per neuron against the other positions of its channel; over tokens the
  positions are the non-prefix tokens: :math:`\mu, \sigma^2` over tokens per (sample, channel), each
  token-channel element weighted by :math:`\sigma(E^{-1})`. It is an element-wise weight, not a channel
  gate. Prefix tokens are left unchanged (they are not members of the population whose energy is
  measured).

Prefix tokens (a class token, register or distillation tokens): ``num_prefix_tokens=p`` (or
``exclude_cls=True`` for ``p=1``) leaves the first ``p`` tokens out of the squeeze. The channel gate
then scales every token, prefix included, because the class token lives in the same channel space and
is what the classifier reads; ``scale_prefix=False`` leaves it unscaled instead.

Families refused over tokens, with the reason: ``sse``/``scse``/``cbam``/``coord`` build spatial gates
with convolutions or strip pooling over an image grid, and ``spse``/``rgse`` pool pyramids over it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .._nd import spatial_mean
from .._registry import create

TOKEN_FAMILIES = ("cse", "eca", "fca", "se", "simam")

REFUSED_FAMILIES: dict[str, str] = {
    "sse": "its gate is a 1x1 conv per position; on tokens use a channel family",
    "scse": "its spatial half is a per-position conv gate over an image grid",
    "cbam": "its spatial gate is a 7x7 conv over an image grid",
    "coord": "it pools strips along H and W of an image grid",
    "spse": "it pools a spatial pyramid of an image grid",
    "rgse": "it pools a spatial pyramid of an image grid",
}


def resolve_prefix(num_prefix_tokens: int | None, exclude_cls: bool | None, owner: str) -> int:
    """The number of leading tokens left out of the squeeze, from either spelling of the option."""
    if exclude_cls is not None and num_prefix_tokens is not None:
        if bool(exclude_cls) != (num_prefix_tokens >= 1):
            raise ValueError(
                f"{owner}: exclude_cls={exclude_cls} contradicts num_prefix_tokens={num_prefix_tokens}; "
                f"pass only one of them"
            )
    if num_prefix_tokens is None:
        num_prefix_tokens = 1 if exclude_cls else 0
    if num_prefix_tokens < 0:
        raise ValueError(f"{owner}: num_prefix_tokens must be >= 0, got {num_prefix_tokens}")
    return int(num_prefix_tokens)


def check_tokens(x: Tensor, channels: int | None, num_prefix_tokens: int, owner: str) -> None:
    """Raise a ValueError unless ``x`` is ``(N, L, C)`` with ``C == channels`` and ``L > prefix``."""
    if x.dim() != 3:
        raise ValueError(f"{owner}: expected tokens (N, L, C), got shape {list(x.shape)}")
    if channels is not None and x.shape[2] != channels:
        raise ValueError(
            f"{owner}: built for C={channels} channels (last axis), got shape {list(x.shape)}; "
            f"token modules take channels-last (N, L, C) input"
        )
    if x.shape[1] <= num_prefix_tokens:
        raise ValueError(
            f"{owner}: needs more than num_prefix_tokens={num_prefix_tokens} tokens, got L={x.shape[1]}"
        )


class TokenChannelAttention(nn.Module):
    r"""A channel gate over tokens: ``se``, ``cse``, ``eca`` or ``fca`` applied to ``(N, L, C)``.

    .. math::

        z = \mathrm{squeeze}(x_{p:}),\qquad s = \mathrm{excitation}(z) \in (0, 1)^{N\times C},\qquad
        y_t = x_t \odot s

    ``squeeze`` is the token mean (SE, cSE, ECA) or FcaNet's DCT-weighted sum over the token grid;
    ``excitation`` is the wrapped channels-first module's own. See the module docstring for the
    meaning of each family over tokens.

    Args:
        attention: the channels-first module (``dim=1``, or ``len(grid)`` for FCA).
        channels: C.
        num_prefix_tokens: leading tokens (class token, ...) left out of the squeeze.
        scale_prefix: whether the gate also scales the prefix tokens (default True).
        grid: how the non-prefix tokens tile a grid (required by FCA, checked at call time).

    Raises:
        ValueError: at call time, a shape that is not ``(N, L, C)``, a wrong C, or (with a grid) a
            token count that does not match the grid.
    """

    def __init__(
        self,
        attention: nn.Module,
        channels: int,
        *,
        num_prefix_tokens: int = 0,
        scale_prefix: bool = True,
        grid: tuple[int, ...] | None = None,
    ) -> None:
        super().__init__()
        self.attention = attention
        self.channels = channels
        self.num_prefix_tokens = num_prefix_tokens
        self.scale_prefix = scale_prefix
        self.grid = grid
        self._name = f"token {getattr(type(attention), 'registry_name', type(attention).__name__)}"

    def squeeze(self, x: Tensor) -> Tensor:
        """The ``(N, C)`` descriptor of the non-prefix tokens."""
        tokens = x[:, self.num_prefix_tokens :].transpose(1, 2)
        if self.grid is None:
            return spatial_mean(tokens)
        count = 1
        for size in self.grid:
            count *= size
        if tokens.shape[2] != count:
            raise ValueError(
                f"{self._name}: grid {tuple(self.grid)} holds {count} tokens, got {tokens.shape[2]} "
                f"non-prefix tokens (shape {list(x.shape)}, num_prefix_tokens={self.num_prefix_tokens})"
            )
        feature_map = tokens.reshape(tokens.shape[0], tokens.shape[1], *self.grid)
        squeeze = getattr(self.attention, "squeeze", None)
        if squeeze is None:
            return spatial_mean(feature_map)
        return squeeze(feature_map).to(x.dtype)

    def excitation(self, z: Tensor) -> Tensor:
        """The channel gate ``(N, C)``."""
        return self.attention.excitation(z)

    def forward(self, x: Tensor) -> Tensor:
        check_tokens(x, self.channels, self.num_prefix_tokens, self._name)
        gate = self.excitation(self.squeeze(x)).to(x.dtype).unsqueeze(1)
        if self.scale_prefix or self.num_prefix_tokens == 0:
            return x * gate
        prefix = x[:, : self.num_prefix_tokens]
        return torch.cat([prefix, x[:, self.num_prefix_tokens :] * gate], dim=1)


class TokenSimAM(nn.Module):
    r"""SimAM over tokens: each token-channel element weighted by its inverse energy among the tokens.

    .. math::

        \mu_c = \mathrm{mean}_t\, x_{t,c},\quad d_{t,c} = (x_{t,c} - \mu_c)^2,\quad
        v_c = \tfrac{1}{L'-1}\textstyle\sum_t d_{t,c},\quad
        y_{t,c} = x_{t,c}\,\sigma\!\Big(\frac{d_{t,c}}{4(v_c+\lambda)} + \tfrac12\Big)

    over the ``L'`` non-prefix tokens; the prefix tokens pass through unchanged. Computed by the
    channels-first :class:`~excite.layers.SimAM` with ``dim=1`` on the ``(N, C, L')`` view, so the fp32
    statistics and the ``λ=1e-4`` default are SimAM's.

    Raises:
        ValueError: at call time, a wrong shape or C, or a single non-prefix token (``n = 0``).
    """

    def __init__(self, attention: nn.Module, channels: int | None, *, num_prefix_tokens: int = 0) -> None:
        super().__init__()
        self.attention = attention
        self.channels = channels
        self.num_prefix_tokens = num_prefix_tokens

    def forward(self, x: Tensor) -> Tensor:
        check_tokens(x, self.channels, self.num_prefix_tokens, "token simam")
        tokens = x[:, self.num_prefix_tokens :]
        weighted = self.attention(tokens.transpose(1, 2)).transpose(1, 2)
        if self.num_prefix_tokens == 0:
            return weighted
        return torch.cat([x[:, : self.num_prefix_tokens], weighted], dim=1)


def create_token_attention(
    name: str,
    channels: int | None = None,
    *,
    num_prefix_tokens: int | None = None,
    exclude_cls: bool | None = None,
    scale_prefix: bool = True,
    grid: Sequence[int] | None = None,
    **options,
) -> nn.Module:
    """Build a token-sequence version of the attention ``name`` for ``(N, L, C)`` input.

    This is what ``excite.create(name, C, layout="tokens", ...)`` calls.

    Args:
        name: ``"se"``, ``"cse"``, ``"eca"``, ``"fca"`` or ``"simam"``.
        channels: C, the last axis of the input.
        num_prefix_tokens: leading tokens (class, register, distillation) left out of the squeeze
            (default 0).
        exclude_cls: shorthand for ``num_prefix_tokens=1``.
        scale_prefix: whether a channel gate also scales the prefix tokens (default True; SimAM
            never changes them).
        grid: how the non-prefix tokens tile a grid, e.g. ``(7, 7)``; required for ``"fca"``, which also
            takes its ``dct_size`` from it unless given.
        **options: the family's own options (``reduction``, ``kernel_size``, ``lambda_``, ...).

    Raises:
        ValueError: a family that has no meaning over tokens (the message lists those that do), an
            unknown name, ``"fca"`` without a grid, contradictory prefix options, or invalid options.
    """
    if name in REFUSED_FAMILIES:
        raise ValueError(
            f"create(layout='tokens'): {name!r} has no token version ({REFUSED_FAMILIES[name]}); "
            f"token families: {', '.join(TOKEN_FAMILIES)}"
        )
    if name not in TOKEN_FAMILIES:
        raise ValueError(
            f"create(layout='tokens'): unknown attention {name!r}; "
            f"token families: {', '.join(TOKEN_FAMILIES)}"
        )
    prefix = resolve_prefix(num_prefix_tokens, exclude_cls, f"token {name}")
    if name == "simam":
        if grid is not None:
            raise ValueError(
                "token simam: grid has no effect (SimAM's statistics ignore token order); drop it"
            )
        return TokenSimAM(create("simam", channels, dim=1, **options), channels, num_prefix_tokens=prefix)
    if channels is None:
        raise ValueError(f"token {name}: channels is required (the module has weights sized by C)")
    if name == "fca":
        if grid is None:
            raise ValueError(
                "token fca: pass grid=(H, W) (or (L,) for a 1-D sequence, (D, H, W) for volume patches): "
                "FcaNet's DCT frequencies live on a spatial grid, and a flattened token order is not one"
            )
        grid = tuple(int(g) for g in grid)
        if not 1 <= len(grid) <= 3 or min(grid) < 1:
            raise ValueError(f"token fca: grid must have 1 to 3 positive sizes, got {grid}")
        options.setdefault("dct_size", grid)
        module = create("fca", channels, dim=len(grid), **options)
        return TokenChannelAttention(
            module, channels, num_prefix_tokens=prefix, scale_prefix=scale_prefix, grid=grid
        )
    module = create(name, channels, dim=1, **options)
    grid_tuple = None if grid is None else tuple(int(g) for g in grid)
    return TokenChannelAttention(
        module, channels, num_prefix_tokens=prefix, scale_prefix=scale_prefix, grid=grid_tuple
    )
