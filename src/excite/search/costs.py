"""The cost of each candidate at each slot, measured at the slot's actual input shape."""

from __future__ import annotations

import copy
import statistics
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from .mixed import NONE

COSTS = ("latency", "params", "flops")
UNITS = {"latency": "ms", "params": "parameters", "flops": "FLOPs"}


def check_cost(cost: str) -> None:
    if cost not in COSTS:
        raise ValueError(f"search: cost must be one of {COSTS}, got {cost!r}")


@torch.no_grad()
def slot_input_shapes(
    model: nn.Module, slots: Sequence[tuple[str, nn.Module]], example: Tensor
) -> list[list[int]]:
    """The input shape of every slot in one eval-mode forward pass of ``example``.

    Raises:
        ValueError: a slot that the forward pass never reached (a builder that creates modules it
            does not use).
    """
    shapes: dict[int, list[int]] = {}
    handles = []
    for index, (_, module) in enumerate(slots):

        def hook(_module, inputs, index=index):
            shapes.setdefault(index, list(inputs[0].shape))

        handles.append(module.register_forward_pre_hook(hook))
    was_training = model.training
    model.eval()
    try:
        model(example)
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    unused = [slots[i][0] for i in range(len(slots)) if i not in shapes]
    if unused:
        raise ValueError(f"search: the forward pass never reached the slot(s) {unused}")
    return [shapes[i] for i in range(len(slots))]


def module_cost(module: nn.Module, shape: Sequence[int], cost: str, *, device: str = "cpu") -> float:
    """One candidate's static cost: its parameters (counted), or its forward FLOPs, the products
    counted by ``torch.utils.flop_counter`` plus the elementwise work that counter misses (pooling,
    gating, SimAM's energy), both from :mod:`excite.profiling`. Latency is measured per slot, all
    candidates interleaved, by :func:`candidate_costs`."""
    check_cost(cost)
    if cost == "params":
        return float(sum(p.numel() for p in module.parameters()))
    if cost == "latency":
        raise ValueError(
            "module_cost: latency is measured for all candidates of a slot at once (candidate_costs)"
        )
    from ..profiling.costs import is_attention
    from ..profiling.costs import module_cost as profiled_cost
    from ..profiling.measure import count_flops

    probe = copy.deepcopy(module).to(device)
    example = torch.randn(tuple(shape), device=device)
    flops = count_flops(probe, example)
    elementwise = 0
    if is_attention(probe):
        elementwise = profiled_cost(
            "slot", probe, tuple(shape), example.dtype, example.device
        ).elementwise_flops
    return float(flops + elementwise)


def latency_costs(
    candidates: Sequence[str], ops: Sequence[nn.Module], shape: Sequence[int], *, device: str, repeats: int
) -> dict[str, float]:
    """Median forward latency (ms, eval mode, no grad) of every candidate at one input shape, timed with
    the profiler's :func:`~excite.profiling.measure.time_forward`, round-robin in alternating order
    after two warm-up calls each, so drift from other processes falls on every candidate alike."""
    from ..profiling.measure import time_forward

    probes = {name: copy.deepcopy(op).to(device) for name, op in zip(candidates, ops) if name != NONE}
    example = torch.randn(tuple(shape), device=device)
    for probe in probes.values():
        for _ in range(2):
            time_forward(probe, example)
    samples: dict[str, list[float]] = {name: [] for name in probes}
    names = list(probes)
    for round_index in range(repeats):
        for name in names if round_index % 2 == 0 else reversed(names):
            samples[name].append(time_forward(probes[name], example))
    return {name: float(statistics.median(values)) for name, values in samples.items()}


def candidate_costs(
    candidates: Sequence[str],
    ops: Sequence[nn.Module],
    shape: Sequence[int],
    cost: str,
    *,
    device: str = "cpu",
    repeats: int = 10,
) -> dict[str, float]:
    """``{candidate: cost}`` at one slot; ``"none"`` (the identity) costs exactly 0."""
    check_cost(cost)
    if cost == "latency":
        measured = latency_costs(candidates, ops, shape, device=device, repeats=repeats)
        return {name: 0.0 if name == NONE else measured[name] for name in candidates}
    return {
        name: 0.0 if name == NONE else module_cost(op, shape, cost, device=device)
        for name, op in zip(candidates, ops)
    }


def uniform_costs(slot_costs: Sequence[Mapping[str, float]], candidates: Sequence[str]) -> dict[str, float]:
    """The total cost of putting the same candidate in every slot."""
    return {name: float(sum(costs[name] for costs in slot_costs)) for name in candidates}
