"""The continuous relaxation of "which attention goes here": one :class:`MixedAttention` per slot."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
from torch import Tensor, nn

from .._registry import create

NONE = "none"
DEFAULT_CANDIDATES: tuple[str, ...] = ("none", "se", "eca", "coord", "simam", "scse", "eca_coord")


def build_candidate(name: str, channels: int, dim: int, options: Mapping | None = None) -> nn.Module:
    """One candidate module: ``"none"`` is the identity, any other name goes through ``excite.create``."""
    if name == NONE:
        return nn.Identity()
    return create(name, channels, dim=dim, **dict(options or {}))


class MixedAttention(nn.Module):
    r"""Every candidate at once, weighted by architecture parameters (DARTS, Liu et al., ICLR 2019).

    .. math:: y = \sum_i \mathrm{softmax}(\alpha)_i\ \mathrm{op}_i(x)

    One instance of each candidate (``"none"`` is the identity) and one logit vector α per slot,
    initialised to zero (uniform weights), as Att-DARTS does for its attention edges. α is the
    parameter ``arch_logits``; :func:`architecture_parameters` and :func:`weight_parameters` split a
    network's parameters so that the two are trained on different data.

    ``slot_index`` is the order in which the network builder created this slot; the derived network is
    built by calling the same builder, which creates the slots in the same order.

    Raises:
        ValueError: no candidates, a repeated candidate, a candidate that cannot be built at this
            channel count (the message names it), or, at call time, a candidate whose output shape
            differs from its input (scSE with ``aggregation="concat"``).
    """

    def __init__(
        self,
        channels: int,
        *,
        dim: int = 2,
        candidates: Sequence[str] = DEFAULT_CANDIDATES,
        candidate_options: Mapping[str, Mapping] | None = None,
        slot_index: int = 0,
    ) -> None:
        super().__init__()
        candidates = list(candidates)
        if not candidates:
            raise ValueError("MixedAttention: candidates must name at least one module")
        if len(set(candidates)) != len(candidates):
            raise ValueError(f"MixedAttention: candidates must be distinct, got {candidates}")
        options = dict(candidate_options or {})
        unknown = sorted(set(options) - set(candidates))
        if unknown:
            raise ValueError(
                f"MixedAttention: candidate_options for {unknown}, which are not candidates {candidates}"
            )
        ops = []
        for name in candidates:
            try:
                ops.append(build_candidate(name, channels, dim, options.get(name)))
            except ValueError as error:
                raise ValueError(
                    f"MixedAttention: candidate {name!r} cannot be built with channels={channels}, dim={dim} "
                    f"(slot {slot_index}); pass candidate_options={{{name!r}: {{...}}}} or drop it. {error}"
                ) from error
        self.channels = channels
        self.dim = dim
        self.candidates = candidates
        self.slot_index = slot_index
        self.ops = nn.ModuleList(ops)
        self.arch_logits = nn.Parameter(torch.zeros(len(candidates)))

    def probabilities(self) -> Tensor:
        return torch.softmax(self.arch_logits, dim=0)

    def forward(self, x: Tensor) -> Tensor:
        weights = self.probabilities().to(x.dtype)
        out = None
        for i, op in enumerate(self.ops):
            y = op(x)
            if y.shape != x.shape:
                raise ValueError(
                    f"MixedAttention: candidate {self.candidates[i]!r} changed the shape {list(x.shape)} "
                    f"to {list(y.shape)}; a mixture needs shape-preserving candidates"
                )
            out = weights[i] * y if out is None else out + weights[i] * y
        return out

    def extra_repr(self) -> str:
        return f"channels={self.channels}, dim={self.dim}, candidates={self.candidates}"


def mixture_factory(
    candidates: Sequence[str], candidate_options: Mapping[str, Mapping] | None = None
) -> Callable[..., MixedAttention]:
    """The ``attention`` callable for a network builder: each call makes the next slot's mixture.

    Builders call ``attention(channels, dim=dim, **attention_options)``; options other than ``dim`` are
    ignored here (they configure a single module, not a mixture; use ``candidate_options``).
    """
    counter = [0]

    def make(channels: int, dim: int = 2, **_ignored) -> MixedAttention:
        mixture = MixedAttention(
            channels,
            dim=dim,
            candidates=candidates,
            candidate_options=candidate_options,
            slot_index=counter[0],
        )
        counter[0] += 1
        return mixture

    return make


def find_slots(model: nn.Module, kind: type = MixedAttention) -> list[tuple[str, nn.Module]]:
    """``(name, module)`` for every slot module in ``model``, ordered by creation (``slot_index``)."""
    found = [(name, module) for name, module in model.named_modules() if isinstance(module, kind)]
    return sorted(found, key=lambda item: item[1].slot_index)


def architecture_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The architecture logits of every slot (the parameters named ``arch_logits``)."""
    return [p for name, p in model.named_parameters() if name.split(".")[-1] == "arch_logits"]


def weight_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Every parameter that is not an architecture logit."""
    return [p for name, p in model.named_parameters() if name.split(".")[-1] != "arch_logits"]


def choice_factory(
    choices: Sequence[str],
    channels: Sequence[int],
    candidate_options: Mapping[str, Mapping] | None = None,
) -> Callable[..., nn.Module]:
    """The ``attention`` callable that builds a derived network: the k-th call gets ``choices[k]``.

    Raises:
        ValueError: the builder creates more slots than were searched, or a slot with another channel
            count than during the search (the builder is not deterministic).
    """
    options: dict[str, Mapping] = dict(candidate_options or {})
    counter = [0]

    def make(slot_channels: int, dim: int = 2, **_ignored) -> nn.Module:
        k = counter[0]
        if k >= len(choices):
            raise ValueError(
                f"derived network: the builder asked for slot {k}, but the search had {len(choices)} slots"
            )
        if slot_channels != channels[k]:
            raise ValueError(
                f"derived network: slot {k} has {slot_channels} channels, the searched one had "
                f"{channels[k]}; "
                f"the network builder must create the slots in the same order every time"
            )
        counter[0] += 1
        return build_candidate(choices[k], slot_channels, dim, options.get(choices[k]))

    return make


def uniform_factory(
    name: str, candidate_options: Mapping[str, Mapping] | None = None
) -> Callable[..., nn.Module]:
    """The ``attention`` callable that puts the same candidate at every slot (``"none"``: the identity),
    built exactly as the search builds it, so uniform and searched networks share their placement."""
    options = dict(candidate_options or {})

    def make(channels: int, dim: int = 2, **_ignored) -> nn.Module:
        return build_candidate(name, channels, dim, options.get(name))

    return make
