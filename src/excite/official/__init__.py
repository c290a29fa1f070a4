"""``load_official``: load state dicts saved from the papers' code or from peer libraries.

A *converter* turns a foreign state dict into ours for one target class and one source. Converters
for single modules live in :mod:`excite.official.layers`; whole networks add theirs with
:func:`register_converter`. Loading is all or nothing: any missing key, unexpected key or shape that
cannot be matched raises a ValueError that lists them, and nothing is loaded.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from torch import Tensor, nn

SOURCES = ("official", "timm", "smp", "monai", "torchvision")

# A converter returns (our state dict, source keys it could not place, notes on what it checked).
Converted = tuple[dict[str, Tensor], list[str]]
Converter = Callable[[nn.Module, Mapping[str, Tensor]], Converted]

_CONVERTERS: dict[tuple[type, str], Converter] = {}


def register_converter(target_type: type, source: str) -> Callable[[Converter], Converter]:
    """Decorator: ``converter(target, state_dict) -> (converted, unplaced_keys)`` for a class and source."""
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}; sources are {SOURCES}")

    def add(fn: Converter) -> Converter:
        _CONVERTERS[(target_type, source)] = fn
        return fn

    return add


def supported_sources(target: nn.Module) -> list[str]:
    """The sources ``load_official`` accepts for this module or network."""
    found = []
    for klass in type(target).__mro__:
        for (registered, source), _ in _CONVERTERS.items():
            if registered is klass and source not in found:
                found.append(source)
    return found


def _find_converter(target: nn.Module, source: str) -> Converter | None:
    for klass in type(target).__mro__:
        fn = _CONVERTERS.get((klass, source))
        if fn is not None:
            return fn
    return None


class KeyMap:
    """A converter made of prefix renames: ``[("fc.0.", "fc1."), ...]``, first match wins.

    ``checked_buffers`` maps source keys that hold values we compute ourselves (FcaNet's DCT filter)
    to our attribute; they are compared, not loaded, and a mismatch is reported. Where the target holds
    that attribute as a parameter (``FCA(learnable=True)``) the value is a trained weight and is loaded.
    """

    def __init__(
        self, rules: Sequence[tuple[str, str]], checked_buffers: Mapping[str, str] | None = None
    ) -> None:
        self.rules = list(rules)
        self.checked_buffers = dict(checked_buffers or {})

    def __call__(self, target: nn.Module, state_dict: Mapping[str, Tensor]) -> Converted:
        converted: dict[str, Tensor] = {}
        unplaced: list[str] = []
        parameters = dict(target.named_parameters())
        for key, value in state_dict.items():
            if key in self.checked_buffers and self.checked_buffers[key] in parameters:
                # Built learnable (FcaNet's "learnable DCT"), the filter is a trained weight: load it.
                converted[self.checked_buffers[key]] = value
                continue
            if key in self.checked_buffers:
                ours = target.get_buffer(self.checked_buffers[key]) if self.checked_buffers[key] else None
                if ours is not None and (
                    ours.numel() != value.numel()
                    or not torch.allclose(ours.reshape(-1).float(), value.reshape(-1).float(), atol=1e-5)
                ):
                    unplaced.append(f"{key} (holds a different fixed filter than this module was built with)")
                continue
            for source_prefix, our_prefix in self.rules:
                if key.startswith(source_prefix):
                    converted[our_prefix + key[len(source_prefix) :]] = value
                    break
            else:
                unplaced.append(key)
        return converted, unplaced


def load_official(target: nn.Module, state_dict: Mapping[str, Tensor], source: str) -> nn.Module:
    """Load a foreign state dict into ``target`` (built with matching options) and return ``target``.

    Args:
        target: an excite module (``excite.create(...)``) or network (``excite.models...``).
        state_dict: the state dict saved from the other implementation (``module.state_dict()`` there).
        source: ``"official"`` (the paper's repository), ``"timm"``, ``"smp"``, ``"monai"`` or
            ``"torchvision"``, wherever that source has the module.

    Raises:
        ValueError: an unknown source, a source that lacks this module, or any missing, unexpected or
            incompatible key. The message lists them; nothing is loaded in that case.
    """
    if source not in SOURCES:
        raise ValueError(f"load_official: source must be one of {SOURCES}, got {source!r}")
    converter = _find_converter(target, source)
    if converter is None:
        have = supported_sources(target) or ["none"]
        raise ValueError(
            f"load_official: no {source!r} layout is known for {type(target).__name__}; "
            f"supported sources: {', '.join(have)}"
        )
    if hasattr(state_dict, "state_dict") and callable(state_dict.state_dict):
        state_dict = state_dict.state_dict()
    converted, unexpected = converter(target, state_dict)
    own = target.state_dict()
    missing = []
    for key in own:
        if key not in converted:
            if key.endswith("num_batches_tracked"):
                converted[key] = torch.zeros_like(own[key])
            else:
                missing.append(key)
    unexpected = list(unexpected) + [key for key in converted if key not in own]
    mismatched = []
    for key, value in list(converted.items()):
        if key not in own:
            continue
        if value.shape != own[key].shape:
            if value.numel() == own[key].numel() and _squeeze_shape(value.shape) == _squeeze_shape(
                own[key].shape
            ):
                converted[key] = value.reshape(own[key].shape)
            else:
                mismatched.append(f"{key}: source {tuple(value.shape)} vs ours {tuple(own[key].shape)}")
    if missing or unexpected or mismatched:
        lines = [
            f"load_official: the {source!r} state dict does not fit {type(target).__name__}; "
            "nothing was loaded."
        ]
        if missing:
            lines.append(f"  missing keys ({len(missing)}): {', '.join(missing)}")
        if unexpected:
            lines.append(f"  unexpected keys ({len(unexpected)}): {', '.join(unexpected)}")
        if mismatched:
            lines.append(f"  shape mismatches ({len(mismatched)}): {'; '.join(mismatched)}")
        lines.append(
            "  Build the target with the options the source used (reduction, kernel_size, bias, ...)."
        )
        raise ValueError("\n".join(lines))
    target.load_state_dict({k: v for k, v in converted.items() if k in own}, strict=True)
    return target


def _squeeze_shape(shape: torch.Size) -> tuple[int, ...]:
    return tuple(s for s in shape if s != 1)


from . import layers as _layers  # noqa: E402,F401  (registers the module converters)
