"""The string registry: ``excite.create("eca", 64, dim=3)`` and ``excite.available()``."""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable

from torch import nn

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register(name: str) -> Callable[[type], type]:
    """Class decorator that makes a module constructible by ``create(name, ...)``."""

    def add(cls: type) -> type:
        if name in _REGISTRY:
            raise ValueError(f"attention name {name!r} is already registered")
        _REGISTRY[name] = cls
        cls.registry_name = name
        return cls

    return add


def available() -> list[str]:
    """The names ``create`` accepts, sorted."""
    return sorted(_REGISTRY)


def lookup(name: str) -> Callable[..., nn.Module]:
    """The class behind a registered name; unknown names raise a ValueError that lists the known ones."""
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"create: unknown attention {name!r}.{hint} Available: {', '.join(available())}")
    return _REGISTRY[name]


def create(name: str, channels: int | None = None, *, dim: int = 2, **options) -> nn.Module:
    """Build the attention module registered under ``name``.

    Args:
        name: one of :func:`available`, e.g. ``"se"``, ``"eca"``, ``"scse"``.
        channels: the channel count C of the input. Parameter-free modules (``simam``) and ECA with an
            explicit ``kernel_size`` accept ``None``.
        dim: number of spatial dimensions, 1 ``(N, C, L)``, 2 ``(N, C, H, W)`` or 3 ``(N, C, D, H, W)``.
        **options: the module's own options (see each class), e.g. ``reduction=8``.
        layout: ``"channels_first"`` (default) or ``"tokens"`` for ``(N, L, C)`` token sequences, where
            the family supports it (see :mod:`excite.tokens`).

    Raises:
        ValueError: unknown name (the message lists the available names), or invalid options.
    """
    layout = options.pop("layout", "channels_first")
    if layout == "tokens":
        from .tokens import create_token_attention

        if dim != 2:
            raise ValueError(
                f"create: layout='tokens' works on (N, L, C) sequences and takes no dim (got dim={dim})"
            )
        return create_token_attention(name, channels, **options)
    if layout != "channels_first":
        raise ValueError(f"create: layout must be 'channels_first' or 'tokens', got {layout!r}")
    cls = lookup(name)
    accepted = inspect.signature(cls).parameters
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        valid = [p for p in accepted if p not in ("channels", "dim")]
        raise ValueError(f"create: {name!r} has no option(s) {unknown}; its options are {valid}")
    return cls(channels, dim=dim, **options)
