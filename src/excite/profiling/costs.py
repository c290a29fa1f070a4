r"""The work FLOP counters do not see: an analytic model of each attention module's elementwise FLOPs
and memory traffic.

``torch.utils.flop_counter`` counts matrix products and convolutions only. An SE-family module does
little of either; its cost is elementwise: pooling the whole map, multiplying the whole map by a gate,
and in SimAM about eight full-map operations. Those are memory-bound, so bytes moved, not FLOPs,
predict their latency.

The model
---------
For a module whose input is ``N x C x P`` (``P`` spatial positions) in a dtype of ``b`` bytes, a *pass*
is one full read or write of that map, ``N·C·P·b`` bytes. Each module's forward makes ``fwd`` passes and
its backward ``bwd`` more, counted kernel by kernel: every kernel reads each operand once and writes its
result once, and nothing stays in cache between kernels. Per-channel vectors (``N x C``) are negligible
and left out. Some modules also stream a ``C x P`` filter bank, the same for every sample (``bank``
passes, ``C·P·b`` bytes), or a boolean mask of the map (``mask`` passes, ``N·C·P`` bytes). So

.. math::

    \text{bytes}_{fwd} = b\,(N C P \cdot fwd + C P \cdot fwd_{bank})

    \text{bytes}_{fwd+bwd} = \text{bytes}_{fwd} + b\,(N C P \cdot bwd + C P \cdot bwd_{bank})
        + N C P \cdot bwd_{mask}

excite modules run one of two paths (:mod:`excite.fused`), and the model follows the one that runs:

**Fused** (the default in eager mode on CPU and CUDA): one kernel reads ``x`` for the gate's statistics,
one reads ``x`` and writes ``y``; backward reads ``(grad, x)`` for the gate's gradient and again to write
``∂x``. Filter banks (FcaNet's DCT, SPSE's pyramid, RGSE's window) are folded per call (FcaNet's is cached).

=========================  ====  ====  ========  ========  ================================================
module                     fwd   bwd   fwd bank  bwd bank  kernels: forward | backward (passes each)
=========================  ====  ====  ========  ========  ================================================
SE, cSE, ECA               3     5     0         0         stats 1, apply 2 | grad stats 2, grad 3
FcaNet (fixed DCT)         3     5     1         1         as SE, reading the cached bank
SPSE (levels 1, 2, 4)      3     6     2+21/W    3+21/W    as SE + filter grad 1; bank folded per call
RGSE with fusion conv      3     6     6+2/k     7+2/k     as SPSE; window bank built by repeat and pad
RGSE without (last stage)  3     5     6+2/k     1         as SE; window bank (k = pooling window,
                                                           W = map width)
sSE, scSE                  3     6     0         0         position stats 1, apply 2 | 2, 3, weight grad 1
CBAM                       4     7     0         0         channel stats, position stats, apply | 2, 2, 3
SimAM                      3     5     0         0         moments 1, apply 2 | 2, 3
Coordinate Attention       3     4     0         0         axis sums 1, apply 2 | 2, grad 2 (no x)
(2-D, 3-D)
=========================  ====  ====  ========  ========  ================================================

**Reference** (unfused: under :func:`excite.use_reference`, ``torch.compile`` tracing, export, and for
peer modules and modules without a fused path), one pass per PyTorch op:

=======================  =====  ======  ==========  ==========  =====  =====================================
module (default config)  fwd    bwd     fwd bank    bwd bank    mask   forward passes, in order
=======================  =====  ======  ==========  ==========  =====  =====================================
SE, cSE, ECA (and timm   3      10      0           0           0      mean reads x; ``x·s`` reads x,
SEModule/SqueezeExcite/                                                writes y
EcaModule, torchvision
SqueezeExcitation)
sSE                      3      11      0           0           0      1x1 conv reads x; ``x·q``
scSE (max)               9      46      0           0           8      cSE 3 + sSE 3 + max (2 reads, 1 write)
FcaNet (dct = map size)  5      10      1           1           0      ``x·bank`` (x, bank, write), sum
                                                                       reads, ``x·s``; the bank is used as
                                                                       is (pooling to its own size is the
                                                                       identity, so nothing is folded)
SPSE (levels 1,2,4; 2-D) 5      13*     14          7           0      as FcaNet, bank of three levels
RGSE (sizes divisible)   3      10+2d   0           0           0      window mean, ``x·s``
SimAM                    15     40      0           0           0      mean, sub, pow, sum, div, add,
                                                                       sigmoid, mul (each read/write)
CBAM                     8      30      0           0           6      mean, amax, ``x·Mc``; channel max,
                                                                       channel mean, ``·Ms``
Coordinate Attention     3d     10d     0           0           0      d strip means; d gate products
ResidualScale wrapper    +3     +14     0           0           0      ``lerp(x, f(x), α)``
=======================  =====  ======  ==========  ==========  =====  =====================================

(``d`` = spatial dims; ``*`` 11 at batch size 1, where the filter gradient's sum over the batch is a
no-op.) Backward counts follow autograd's formulas: e.g. SE's ``y = x·s`` gives
``∂x = g·s`` (2 passes) and ``∂s = Σ g·x`` (3 + 1), the mean gives a full ``∂x`` (1 write) and the two
``∂x`` are added (3): 10, where the fused kernels need 5. Every entry of both tables is cross-checked
against :class:`~excite.profiling.traffic.TrafficCounter`, which counts the bytes of every PyTorch op and
every fused-kernel call that actually runs (``tests/profiling``). Anything not in the tables (other
aggregations or levels, 1-D Coordinate Attention, learnable DCT, new or user modules) is measured with
that counter on the module alone instead, and reported as ``"measured"``.

Elementwise FLOPs (forward, per map element; the arithmetic of the formula, whichever path runs: 1 per
pointwise operation including each sigmoid/exp, 1 per element reduced): SE/cSE/ECA 2, sSE 1, scSE 4,
FcaNet 3, SPSE 3 (+4 per bank element: folding the pyramid), RGSE 2, SimAM 8, CBAM 6, Coordinate
Attention 2d, ResidualScale +3. Left out, like the bytes: per-channel and per-position vectors (CBAM's
spatial branch: about 40 passes over ``N x P``, i.e. 40/C of a map pass), CA's strips (``N·C·(H+W)``),
the pooling matrices. Matrix products and
convolutions inside the modules are not included here: the flop counter has them.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .traffic import TrafficCounter


@dataclass(frozen=True)
class PassModel:
    """Passes over the map (``fwd``, ``bwd``), over a ``C x P`` bank and over a boolean mask, and
    elementwise FLOPs per map (and bank) element; see the module docstring."""

    fwd: float
    bwd: float
    elementwise: float
    fwd_bank: float = 0.0
    bwd_bank: float = 0.0
    bwd_mask: float = 0.0
    elementwise_bank: float = 0.0


@dataclass
class ModuleCost:
    """What one attention module costs at one input shape.

    Attributes:
        path: the module's name in the model.
        kind: its class name.
        shape: its input shape.
        elementwise_flops: forward elementwise FLOPs.
        bytes_fwd, bytes_fwdbwd: memory traffic of the forward, and of forward + backward.
        source: ``"fused"`` or ``"reference"`` (the table of the path that runs) or ``"measured"``
            (:class:`TrafficCounter` on the module alone, for modules the tables do not cover).
    """

    path: str
    kind: str
    shape: tuple[int, ...]
    elementwise_flops: int
    bytes_fwd: int
    bytes_fwdbwd: int
    source: str


_SE_LIKE = PassModel(fwd=3, bwd=10, elementwise=2)

# Peer classes that compute exactly SE's or ECA's sequence (pool, small layers, one product).
_PEER_SE_LIKE: Sequence[tuple[str, str]] = (
    ("timm.layers.squeeze_excite", "SEModule"),
    ("timm.models._efficientnet_blocks", "SqueezeExcite"),
    ("torchvision.ops.misc", "SqueezeExcitation"),
    ("timm.layers.eca", "EcaModule"),
    ("timm.layers.eca", "CecaModule"),
)


def pass_model(module: nn.Module, shape: Sequence[int], fused: bool = False) -> PassModel | None:
    """The table entry for ``module`` at input ``shape`` on the fused or the reference path, or None when
    the tables do not cover it."""
    if fused and has_fused_path(module):
        return _fused_pass_model(module, shape)
    return _reference_pass_model(module, shape)


def has_fused_path(module: nn.Module) -> bool:
    return callable(getattr(type(module), "_forward_fused", None))


def runs_fused(module: nn.Module, dtype: torch.dtype, device: torch.device) -> bool:
    """Whether ``module`` takes its fused path for an input of this dtype and device right now."""
    if not has_fused_path(module):
        return False
    from ..fused import fused_enabled

    return bool(fused_enabled(torch.zeros(1, dtype=dtype, device=device)))


def _fused_pass_model(module: nn.Module, shape: Sequence[int]) -> PassModel | None:
    dim = len(shape) - 2
    name = getattr(type(module), "registry_name", None)
    if name in ("se", "cse", "eca"):
        return PassModel(fwd=3, bwd=5, elementwise=2)
    if name == "fca":
        return (
            None
            if isinstance(module.dct_filter, nn.Parameter)
            else PassModel(3, 5, 3, fwd_bank=1, bwd_bank=1)
        )
    if name == "spse":
        if tuple(module.levels) != (1, 2, 4) or dim != 2:
            return None
        # The pyramid is folded by one contraction that writes the bank once; its intermediate holds
        # C x S x (1 + 2 + 4) values, written and read three times (forward and backward).
        intermediate = 3 * sum(module.levels) / shape[-1]
        # The bank is cached for evaluation (excite.fused._cached_bank): the forward only reads it; a
        # training step builds it in the graph, so the building moves to the training total.
        return PassModel(
            fwd=3,
            bwd=6,
            elementwise=3,
            fwd_bank=1,
            bwd_bank=4 + 2 * intermediate,
            elementwise_bank=4,
        )
    if name == "rgse":
        # Cached for evaluation as SPSE's: the forward reads the bank. A training step with a fusion
        # convolution also builds it (one write: each cell's weight widened by one copy), reads it again
        # for the input gradient, writes its gradient (filter_grad) and sums that back per cell. Without
        # one the bank is fixed and cached, and backward only reads it.
        if module.fusion_kernel is not None:
            return PassModel(fwd=3, bwd=6, elementwise=2, fwd_bank=1, bwd_bank=4)
        return PassModel(fwd=3, bwd=5, elementwise=2, fwd_bank=1, bwd_bank=1)
    if name == "sse":
        return PassModel(fwd=3, bwd=6, elementwise=1)
    if name == "scse":
        return PassModel(fwd=3, bwd=6, elementwise=4) if module.aggregation != "concat" else None
    if name == "cbam":
        return PassModel(fwd=4, bwd=7, elementwise=6) if module.use_spatial else None
    if name == "simam":
        return PassModel(fwd=3, bwd=5, elementwise=8)
    if name == "coord":
        if dim < 2:
            return None
        # The kernels make exactly 3 + 4 passes; the gate graph (module's own layers) then runs on the
        # (N, C, Σ L_axis) strips: about 12 strip-sized reads and writes forward and 18 backward (sums to
        # means, cat, the bottleneck's bmm/BN/activation, two gates), a share Σ L / Π L of a pass each.
        lengths = [int(s) for s in shape[2:]]
        positions = 1
        for length in lengths:
            positions *= length
        strips = sum(lengths) / positions
        return PassModel(fwd=3 + 12 * strips, bwd=4 + 18 * strips, elementwise=2 * dim)
    return None


def _reference_pass_model(module: nn.Module, shape: Sequence[int]) -> PassModel | None:
    dim = len(shape) - 2
    spatial = tuple(int(s) for s in shape[2:])
    name = getattr(type(module), "registry_name", None)
    if name in ("se", "cse", "eca"):
        return _SE_LIKE
    if name == "sse":
        return PassModel(fwd=3, bwd=11, elementwise=1)
    if name == "scse":
        return PassModel(fwd=9, bwd=46, elementwise=4, bwd_mask=8) if module.aggregation == "max" else None
    if name == "fca":
        if isinstance(module.dct_filter, nn.Parameter) or tuple(module.dct_size) != spatial:
            return None
        return PassModel(fwd=5, bwd=10, elementwise=3, fwd_bank=1, bwd_bank=1)
    if name == "spse":
        if tuple(module.levels) != (1, 2, 4) or dim != 2:
            return None
        # At N = 1 the filter gradient's sum over the batch is a no-op (map and bank coincide): 2 fewer.
        return PassModel(
            fwd=5, bwd=13 if shape[0] > 1 else 11, elementwise=3, fwd_bank=14, bwd_bank=7, elementwise_bank=4
        )
    if name == "rgse":
        if any(s % module.pool_size for s in spatial):
            return None
        return PassModel(fwd=3, bwd=10 + 2 * dim, elementwise=2)
    if name == "simam":
        return PassModel(fwd=15, bwd=40, elementwise=8)
    if name == "cbam":
        return PassModel(fwd=8, bwd=30, elementwise=6, bwd_mask=6) if module.use_spatial else None
    if name == "coord":
        return PassModel(fwd=3 * dim, bwd=10 * dim, elementwise=2 * dim) if dim >= 2 else None
    if name is None and isinstance(module, _peer_types()):
        if getattr(module, "add_maxpool", False) or not isinstance(
            getattr(module, "bn", nn.Identity()), nn.Identity
        ):
            return None
        return _SE_LIKE
    return None


RESIDUAL_SCALE = PassModel(fwd=3, bwd=14, elementwise=3)


def _peer_types() -> tuple[type, ...]:
    from ..surgery.replace import _peer_classes_from

    return _peer_classes_from(_PEER_SE_LIKE)


def analytic_cost(model: PassModel, shape: Sequence[int], itemsize: int) -> tuple[int, int, int]:
    """``(elementwise FLOPs, forward bytes, forward+backward bytes)`` of one table entry."""
    n, c = int(shape[0]), int(shape[1])
    positions = 1
    for s in shape[2:]:
        positions *= int(s)
    per_map = n * c * positions
    per_bank = c * positions
    elementwise = round(model.elementwise * per_map + model.elementwise_bank * per_bank)
    fwd = round(itemsize * (model.fwd * per_map + model.fwd_bank * per_bank))
    bwd = round(itemsize * (model.bwd * per_map + model.bwd_bank * per_bank) + model.bwd_mask * per_map)
    return elementwise, fwd, fwd + bwd


def measured_cost(
    module: nn.Module, shape: Sequence[int], dtype: torch.dtype, device: torch.device
) -> tuple[int, int, int]:
    """``(elementwise FLOPs, forward bytes, forward+backward bytes)`` counted by :class:`TrafficCounter`
    on a copy of ``module`` alone: traffic on the path that runs (forward in eval mode, forward+backward
    in train mode), elementwise FLOPs on the reference path, whose PyTorch ops spell out the arithmetic
    that fused kernels hide."""
    from ..fused import use_reference

    probe = copy.deepcopy(module).to(device)
    x = torch.randn(tuple(shape), dtype=dtype, device=device)
    probe.eval()
    with torch.no_grad(), use_reference(True), TrafficCounter() as arithmetic:
        probe(x)
    with torch.no_grad(), TrafficCounter() as forward:
        probe(x)
    probe.train()
    x.requires_grad_(True)
    with TrafficCounter() as train_forward:
        y = probe(x)
    grad = torch.ones_like(y)
    with TrafficCounter() as backward:
        y.backward(grad)
    return arithmetic.elementwise, forward.total, train_forward.total + backward.total


def module_cost(
    path: str, module: nn.Module, shape: Sequence[int], dtype: torch.dtype, device: torch.device
) -> ModuleCost:
    """The cost of one attention module (a :class:`~excite.surgery.ResidualScale` adds its own row's
    worth to the wrapped module's)."""
    from ..surgery.identity import ResidualScale

    itemsize = torch.empty((), dtype=dtype).element_size()
    extra = (0, 0, 0)
    inner = module
    if isinstance(module, ResidualScale):
        extra = analytic_cost(RESIDUAL_SCALE, shape, itemsize)
        inner = module.module
    fused = runs_fused(inner, dtype, device)
    entry = pass_model(inner, shape, fused)
    if entry is not None:
        counted, source = analytic_cost(entry, shape, itemsize), "fused" if fused else "reference"
    else:
        counted, source = measured_cost(inner, shape, dtype, device), "measured"
    total = tuple(a + b for a, b in zip(counted, extra))
    return ModuleCost(
        path, type(module).__name__, tuple(int(s) for s in shape), total[0], total[1], total[2], source
    )


def is_attention(module: nn.Module) -> bool:
    """An excite module (registered class), a ResidualScale wrapper, or a peer SE-family module."""
    from .._registry import _REGISTRY
    from ..surgery.identity import ResidualScale
    from ..surgery.replace import all_peer_classes

    name = getattr(type(module), "registry_name", None)
    if name is not None and _REGISTRY.get(name) is type(module):
        return True
    return isinstance(module, (ResidualScale,) + all_peer_classes())


def attention_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The outermost attention modules in ``model``, in module order."""
    found: list[tuple[str, nn.Module]] = []

    def visit(path: str, module: nn.Module) -> None:
        if path and is_attention(module):
            found.append((path, module))
            return
        for name, child in module.named_children():
            visit(f"{path}.{name}" if path else name, child)

    visit("", model)
    return found


def attention_costs(
    model: nn.Module, input_size: Sequence[int], dtype: torch.dtype = torch.float32
) -> list[ModuleCost]:
    """The cost of every attention module in ``model`` for an input of ``input_size``, its input shapes
    taken from a shape-only forward (no arithmetic)."""
    modules = attention_modules(model)
    if not modules:
        return []
    shapes: dict[str, tuple[int, ...]] = {}
    handles = []
    for path, module in modules:

        def record(mod: nn.Module, args: Any, path: str = path) -> None:
            if args and isinstance(args[0], torch.Tensor):
                shapes.setdefault(path, tuple(args[0].shape))

        handles.append(module.register_forward_pre_hook(record))
    from ..surgery._install import first_tensor, shape_only_forward

    reference = first_tensor(model)
    device = reference.device if reference is not None else torch.device("cpu")
    flags = {m: m.training for m in model.modules()}
    try:
        model.eval()
        shape_only_forward(model, tuple(input_size), device, dtype)
    finally:
        for handle in handles:
            handle.remove()
        for m, flag in flags.items():
            m.training = flag
    costs = []
    for path, module in modules:
        if path in shapes:
            costs.append(module_cost(path, module, shapes[path], dtype, device))
    return costs
