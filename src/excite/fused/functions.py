r"""Fused autograd Functions for the SE family, with closed-form backwards.

Every module computes ``y = x ⊙ G(x)`` with a gate ``G`` that depends on ``x`` only through small
statistics: per-(n, c) pools (SE, cSE, ECA, FcaNet, SPSE, RGSE, CBAM's channel gate), per-(n, position)
channel pools (sSE, CBAM's spatial gate), per-(n, c, coordinate) strips (Coordinate Attention) or the
per-(n, c) mean and variance (SimAM). The Functions here split each module into

1. **statistics** of ``x``, one read (a kernel);
2. the **gate graph** on those statistics: the module's own small layers (FCs, convolutions, BatchNorm)
   run under ``torch.enable_grad()`` on leaf tensors holding the statistics, so that autograd later gives
   the gradients of the statistics and of the parameters (which are passed to the Function as inputs);
3. the **product** ``y``, one read and one write (a kernel).

The backward pass reads ``(grad, x)`` once to reduce the gradient of the gate (``Σ grad·x`` over the
gate's broadcast axes), back-propagates that through the small graph, and then writes ``grad_x`` in one
more pass: the direct term ``grad·G`` plus the gradient of the statistics, broadcast back
(``∂ pool / ∂x``). Only ``x`` and statistics-sized tensors are saved for backward; the full-size
intermediates that autograd keeps on the reference path (``x·s``, the gate map, ``(x-μ)²``, ...) are
never stored. Double backward is not supported (``once_differentiable``).

Gradients derived by hand (``g`` = dL/dy, sums over positions s unless noted):

* channel gate ``y = x·s[n,c]``, ``z = Σ_s F[c,s]·x`` (``F = 1`` for a sum, the folded filter bank for
  FcaNet/SPSE/RGSE): ``ds = Σ_s g·x``; ``dx = g·s + dz·F``; ``dF[c,s] = Σ_n dz·x``. A max pool adds
  ``dmax·[x = max]/ties`` (``amax`` splits its gradient evenly among ties).
* position gate ``y = x·q[n,s]``, ``l = Σ_c w_c·x``: ``dq = Σ_c g·x``; ``dx = g·q + dl·w``;
  ``dw = Σ_{n,s} dl·x``. scSE's max-out routes ``g·x`` to the winning branch (half each on ties, as
  ``torch.maximum`` does).
* SimAM, with ``t = x-μ``, ``a = 1/(4(v+λ))``, ``v = Σ t²/n``, ``σ = sigmoid(a t² + ½)``, ``m`` positions,
  ``n = m-1``, ``h = g·x·σ(1-σ)``, ``A = Σ h t``, ``B = Σ h t²``:
  ``dx = g σ + 2a h t − (2a/m) A − (8a²/n) B t``.
* Coordinate Attention ``y = x·g_w[w]·g_h[h]·g_d[d]``: ``dg_h[h] = Σ_{d,w} g·x·g_w·g_d`` (likewise per
  axis); ``dx = g·Πgates + Σ_axes dstrip_a[coordinate]``.
* CBAM ``x' = x·M_c``, ``y = x'·M_s``: ``dM_s = Σ_c g·x'``;
  ``dx' = g·M_s + dmean_c + dmax_c·[x' = max]/ties``; ``dM_c = Σ_s dx'·x``;
  ``dx = dx'·M_c + (channel-pool terms)``.

The arithmetic matches the reference path, including its rounding of intermediate products to the
input dtype in bf16/fp16 (the comparisons of scSE's max-out and CBAM's max pools see the same values);
reductions accumulate in fp32 (fp64 for fp64 inputs).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from .._nd import adaptive_pool_matrix, fold_adaptive_pool
from ._backend import kernels
from ._layout import accumulation_dtype, as_rows, filter_for, rows_like, strips_for

ROW, POS, ROWPOS, MAX, ADD, MUL = 0, 1, 2, 3, 4, 5
AGGREGATION_MODES = {"max": MAX, "add": ADD, "mul": MUL}

GateFn = Callable[..., Tensor]


# ---------------------------------------------------------------------------------------------------
# Plumbing


def _positions(x: Tensor) -> int:
    count = 1
    for size in x.shape[2:]:
        count *= size
    return count


def _tracking(x: Tensor, *others: Tensor | None, params: Sequence[Tensor] = ()) -> bool:
    """Whether a graph is needed: grad mode on and something involved requires grad."""
    if not torch.is_grad_enabled():
        return False
    if x.requires_grad or any(p.requires_grad for p in params):
        return True
    return any(t is not None and t.requires_grad for t in others)


def _as_leaf(t: Tensor, track: bool) -> Tensor:
    return t.requires_grad_(True) if track else t


def _fed(t: Tensor | None) -> Tensor | None:
    """What the gate's layers receive instead of a statistic leaf: a view of it. Module hooks that track
    backward (``torch.utils.module_tracker``, used by ``FlopCounterMode`` and memory trackers) register
    grad hooks on module inputs, and a hook on a leaf fails inside the nested ``autograd.grad`` the
    backward runs on the gate graph; a view is a graph node, not a leaf."""
    return t.view_as(t) if t is not None and t.requires_grad else t


def _rounded(gate: Tensor, x: Tensor) -> Tensor:
    """The gate as the kernels take it: rounded to ``x.dtype`` (the reference multiplies by
    ``gate.to(x.dtype)``), then widened to the accumulation dtype, contiguous."""
    return gate.detach().to(x.dtype).to(accumulation_dtype(x)).contiguous()


def _graph_grads(
    outputs: Sequence[Tensor],
    grad_outputs: Sequence[Tensor],
    leaves: Sequence[Tensor],
    params: Sequence[Tensor],
) -> tuple[list[Tensor], list[Tensor | None]]:
    """Back-propagate through the small gate graph: gradients of the statistic leaves (zeros where the
    gate does not use one) and of the parameters (None where frozen or unused).

    The small graph is always retained: the outer backward may run again (``retain_graph=True``,
    gradcheck), and it is freed with the Function's node anyway.
    """
    pairs = [(o, g) for o, g in zip(outputs, grad_outputs) if o.requires_grad]
    trainable = [i for i, p in enumerate(params) if p.requires_grad]
    inputs = list(leaves) + [params[i] for i in trainable]
    if pairs and inputs:
        results = torch.autograd.grad(
            [o for o, _ in pairs],
            inputs,
            [g.to(o.dtype) for o, g in pairs],
            allow_unused=True,
            retain_graph=True,
        )
    else:
        results = [None] * len(inputs)
    leaf_grads = [torch.zeros_like(leaf) if r is None else r for leaf, r in zip(leaves, results)]
    param_grads: list[Tensor | None] = [None] * len(params)
    for slot, i in enumerate(trainable):
        param_grads[i] = results[len(leaves) + slot]
    return leaf_grads, param_grads


def _sum_grads(a: list[Tensor | None], b: list[Tensor | None]) -> list[Tensor | None]:
    return [x if y is None else (y if x is None else x + y) for x, y in zip(a, b)]


def _output_like(x: Tensor, view: Tensor) -> tuple[Tensor, Tensor]:
    out = torch.empty_like(x)
    return out, out.view(view.shape)


# ---------------------------------------------------------------------------------------------------
# Channel gates: SE, cSE, ECA, FcaNet, SPSE, RGSE, CBAM without its spatial gate


class ChannelGateFunction(torch.autograd.Function):
    """``y = x ⊙ s``, ``s = gate(Σ_s F·x [, max_s x])`` with ``s`` of shape ``(N, C)``.

    Inputs: ``x``; ``filter`` (``(C, S)`` pooling weights, or None for a plain sum); ``gate`` (a
    callable taking the fp32 sum ``(N, C)`` and the max or None, returning ``s``); ``with_max``;
    ``track`` (build the gate graph); then every parameter the gate uses, so that their gradients are
    returned. Saved for backward: ``x``, the filter, and per-(n, c) statistics.
    """

    @staticmethod
    def forward(ctx, x, filter, gate, with_max, track, *params):
        ops = kernels(x)
        x, view, channels_last = as_rows(x)
        acc = accumulation_dtype(x)
        filter_k = filter_for(filter.detach().to(acc), channels_last) if filter is not None else None
        total, top, ties = ops.channel_stats(view, channels_last, filter_k, with_max)
        with torch.enable_grad() if track else torch.no_grad():
            total = _as_leaf(total, track)
            top = _as_leaf(top, track) if with_max else None
            s = gate(_fed(total), _fed(top))
        row = _rounded(s, x)
        out, out_view = _output_like(x, view)
        ops.gate_apply(view, channels_last, row, None, ROW, out_view)
        if track:
            ctx.save_for_backward(x, filter_k, top.detach() if with_max else None, ties if with_max else None)
            ctx.graph = (s, total, top)
            ctx.row, ctx.channels_last, ctx.with_max, ctx.params = row, channels_last, with_max, params
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        x, filter_k, top, ties = ctx.saved_tensors
        s, total_leaf, top_leaf = ctx.graph
        ops = kernels(x)
        cl = ctx.channels_last
        view = x.view(x.shape[0], x.shape[1], -1)
        grad_view = rows_like(grad, x, cl)
        gate_grad = ops.gate_grad_stats(grad_view, view, cl, ctx.row, None, ROW, True, False)[0]
        leaves = [total_leaf] + ([top_leaf] if ctx.with_max else [])
        leaf_grads, param_grads = _graph_grads([s], [gate_grad], leaves, ctx.params)
        d_total = leaf_grads[0].contiguous()
        grad_x = None
        if ctx.needs_input_grad[0]:
            kmax = (leaf_grads[1] / ties).contiguous() if ctx.with_max else None
            grad_x, grad_x_view = _output_like(x, view)
            ops.gate_grad(
                grad_view, view, cl, ctx.row, None, ROW, d_total, filter_k, kmax, top, None, None, grad_x_view
            )
        grad_filter = None
        if filter_k is not None and ctx.needs_input_grad[1]:
            grad_filter = ops.filter_grad(view, cl, d_total)
        return (grad_x, grad_filter, None, None, None, *param_grads)


def channel_gate(
    module: nn.Module, x: Tensor, gate: GateFn, filter: Tensor | None = None, with_max: bool = False
) -> Tensor:
    """Run :class:`ChannelGateFunction` for ``module`` (whose parameters the gate uses)."""
    params = tuple(module.parameters())
    track = _tracking(x, filter, params=params)
    if filter is not None and filter.requires_grad and not track:
        filter = filter.detach()
    return ChannelGateFunction.apply(x, filter, gate, with_max, track, *params)


def se(module: nn.Module, x: Tensor) -> Tensor:
    """SE / cSE: ``s = excitation(GAP(x))``."""
    count = _positions(x)
    return channel_gate(module, x, lambda total, _: module.excitation((total / count).to(x.dtype)))


def _channel_windows_conv(z: Tensor, weight: Tensor, padding: str) -> Tensor:
    """ECA's k-tap convolution across channels, ``a[n, c] = Σ_j w_j z[n, c + j - (k-1)/2]``, as one
    matrix-vector product over the ``(N, C, k)`` windows of the padded descriptor.

    Same arithmetic as the module's ``Conv1d(1, 1, k)``, but oneDNN's set-up for a 1-channel 1-D
    convolution costs about 0.12 ms forward and 0.45 ms backward per call on ``(8, 1, 256)`` (2 CPU
    threads), a sixth of an LB at ``[8, 256, 56, 56]`` and over one LB at ``[8, 2048, 7, 7]``; the
    windowed product costs 0.05 / 0.2 ms.
    """
    k = weight.shape[-1]
    half = (k - 1) // 2
    mode = "circular" if padding == "circular" else "constant"
    padded = F.pad(z.unsqueeze(1), [half, half], mode=mode).squeeze(1)
    return torch.matmul(padded.unfold(1, k, 1), weight.reshape(k))


def eca(module: nn.Module, x: Tensor) -> Tensor:
    """ECA: ``s = σ(conv1d_k(GAP(x)))`` with the module's padding and weight (see
    :func:`_channel_windows_conv`)."""
    count = _positions(x)

    def gate(total: Tensor, _: Tensor | None) -> Tensor:
        z = (total / count).to(x.dtype)
        return module.tap(_channel_windows_conv(z, module.conv.weight, module.padding).sigmoid())

    return channel_gate(module, x, gate)


# Folded FcaNet banks per module, kept outside the module so that it stays scriptable and picklable
# as it was (a dict attribute with tuple keys would stop torch.jit.script).
_FCA_CACHE: weakref.WeakKeyDictionary[nn.Module, tuple] = weakref.WeakKeyDictionary()


def _fca_filter(module: nn.Module, spatial: list[int]) -> Tensor:
    """FcaNet's DCT bank folded to the input size (adaptive pooling included). A fixed bank is cached
    per module, size and buffer version; a learnable one is rebuilt in the graph on every call."""
    bank = module.dct_filter
    if bank.requires_grad:
        return fold_adaptive_pool(bank, spatial)
    key = (
        tuple(spatial),
        bank.device,
        bank.dtype,
        bank.data_ptr(),
        bank._version,
        torch.is_inference_mode_enabled(),
    )
    cached = _FCA_CACHE.get(module)
    if cached is not None and cached[0] == key:
        return cached[1]
    with torch.no_grad():
        folded = fold_adaptive_pool(bank, spatial)
    _FCA_CACHE[module] = (key, folded)
    return folded


def fca(module: nn.Module, x: Tensor) -> Tensor:
    """FcaNet: ``z = Σ_s DCT[c, s]·x`` (a sum, as in the official code), ``s = excitation(z)``."""
    bank = _fca_filter(module, list(x.shape[2:]))
    return channel_gate(module, x, lambda total, _: module.excitation(total.to(x.dtype)), bank.flatten(1))


_FOLD_EQUATIONS = {1: "ci,li->cl", 2: "cij,hi,wj->chw", 3: "cijk,di,hj,wk->cdhw"}


def _pyramid_filter(weights: list[Tensor], size: list[int]) -> Tensor:
    """``Σ_k fold_adaptive_pool(w_k, size)`` as one contraction: the levels' pooling matrices stacked
    per axis and their weights placed block-diagonally, so the ``(C, *size)`` bank is written once."""
    dim = len(size)
    widths = [w.shape[1] for w in weights]
    total = sum(widths)
    channels = weights[0].shape[0]
    stacked = weights[0].new_zeros([channels] + [total] * dim)
    offset = 0
    for w, width in zip(weights, widths):
        index = (slice(None),) + (slice(offset, offset + width),) * dim
        stacked[index] = w
        offset += width
    pools = [
        torch.cat(
            [adaptive_pool_matrix(length, width, stacked.dtype, stacked.device) for width in widths], dim=1
        )
        for length in size
    ]
    return torch.einsum(_FOLD_EQUATIONS[dim], stacked, *pools)


# SPSE's and RGSE's folded banks, per module (outside it, as for FcaNet).
_BANK_CACHE: weakref.WeakKeyDictionary[nn.Module, tuple] = weakref.WeakKeyDictionary()


def _cached_bank(
    module: nn.Module,
    x: Tensor,
    weights: Sequence[Tensor],
    build: Callable[[list[Tensor]], Tensor],
    config: tuple = (),
) -> Tensor:
    """``build(weights)``, a ``(C, *spatial)`` bank, cached per module for the input's size, dtype and
    device and the weights' storage and version (an optimizer step bumps the version).

    When the bank must be differentiated (grad mode on and a weight requires grad) it is built in the
    graph on every call, as before, and the cache refreshed with its value: during training the weights
    change every step anyway, and a cached bank would need its backward re-run. Evaluation, inference and
    frozen weights use the cached bank and skip the fold (about ``6/N`` passes over the feature map for
    a batch of ``N``).
    """
    key = (
        tuple(x.shape[1:]),
        config,
        x.dtype,
        x.device,
        tuple((w.data_ptr(), w._version, w.dtype) for w in weights),
        torch.is_inference_mode_enabled(),
    )
    if torch.is_grad_enabled() and any(w.requires_grad for w in weights):
        bank = build(list(weights))
        _BANK_CACHE[module] = (key, bank.detach())
        return bank
    cached = _BANK_CACHE.get(module)
    if cached is not None and cached[0] == key:
        return cached[1]
    with torch.no_grad():
        bank = build([w.detach() for w in weights])
    _BANK_CACHE[module] = (key, bank)
    return bank


def spse(module: nn.Module, x: Tensor) -> Tensor:
    """SPSE: the pyramid's pooling and depthwise fusion folded into one ``(C, S)`` filter plus biases."""
    size = list(x.shape[2:])
    acc = accumulation_dtype(x)

    def build(weights: list[Tensor]) -> Tensor:
        return _pyramid_filter([w.to(acc).squeeze(1) for w in weights], size)

    bank = _cached_bank(module, x, [conv.weight for conv in module.fusion], build, tuple(module.levels))
    bias = None
    for conv in module.fusion:
        if conv.bias is not None:
            bias = conv.bias.to(acc) if bias is None else bias + conv.bias.to(acc)

    def gate(total: Tensor, _: Tensor | None) -> Tensor:
        z = total + bias.to(total.dtype) if bias is not None else total
        return module.excitation(module.norm(z.to(x.dtype)))

    return channel_gate(module, x, gate, bank.flatten(1))


def rgse(module: nn.Module, x: Tensor) -> Tensor:
    """RGSE: fixed-window mean pooling and the strided depthwise fusion folded into one filter."""
    spatial = list(x.shape[2:])
    pool = module.pool_size
    if min(spatial) < pool:
        raise ValueError(f"RGSE: spatial size {spatial} is smaller than the {pool}-wide pooling window")
    cells = [size // pool for size in spatial]
    kernel = module.fusion_kernel
    descriptor = (
        cells if kernel is None else [(c - kernel) // kernel + 1 if c >= kernel else 0 for c in cells]
    )
    if any(d != 1 for d in descriptor):
        raise ValueError(
            f"RGSE: the pooled descriptor has {descriptor} values per channel, not 1; "
            f"with pool_size={pool} and fusion_kernel={kernel} the input must be "
            f"pool_size x fusion_kernel per axis (got {spatial})"
        )
    dim = len(spatial)
    acc = accumulation_dtype(x)

    def build(weights: list[Tensor]) -> Tensor:
        # Each cell's weight over its pool^dim positions: scaled on the small (C, *cells) tensor and
        # widened by one expand-and-copy, so the (C, *spatial) bank is written once (and its gradient
        # is one reduction) instead of once per axis, scaling and padding.
        if kernel is None:
            window = torch.ones([module.channels] + [1] * dim, dtype=acc, device=x.device)
        else:
            window = weights[0].to(acc).squeeze(1)
        window = window / float(pool**dim)
        cell_counts = list(window.shape[1:])
        apart = [module.channels] + [n for count in cell_counts for n in (count, 1)]
        widened = [module.channels] + [n for count in cell_counts for n in (count, pool)]
        window = (
            window.reshape(apart).expand(widened).reshape([module.channels] + [c * pool for c in cell_counts])
        )
        padding: list[int] = []
        for axis in range(dim, 0, -1):
            padding += [0, spatial[axis - 1] - window.shape[axis]]
        # With one cell per axis the widening reshape is a view with zero strides: materialise it once
        # here, not in every kernel call.
        return F.pad(window, padding) if any(padding) else window.contiguous()

    weights = [module.fusion.weight] if kernel is not None else []
    bank = _cached_bank(module, x, weights, build, (pool, kernel))

    def gate(total: Tensor, _: Tensor | None) -> Tensor:
        return module.excitation(module.norm(total.to(x.dtype)))

    return channel_gate(module, x, gate, bank.flatten(1))


class SmallConvFunction(torch.autograd.Function):
    """CBAM's spatial convolution (C_in -> 1 channel, odd kernel, stride 1, "same" zero padding, no
    bias) through the backend's ``small_conv`` kernels.

    The map is small (``[8, 2, 56, 56]`` at ResNet-50's first stage) and oneDNN's set-up outweighs the
    arithmetic there: forward, input gradient and weight gradient cost 0.35, 0.24 and 0.61 ms on 2 CPU
    threads, half an LB at that stage (its own backward for 2 -> 1 channels was 5.7 ms on 1 thread,
    which is why the gradients are never left to it). On CPU the C++ kernels sum shifted rows; the
    torch-op and Triton backends run ``dinput = conv(dout, flip(w)ᵀ)`` and ``dw = conv(inputᵀ, doutᵀ)ᵀ``
    (batch and channel axes swapped, the map itself as the kernel). The weight is rounded to the input's
    dtype first, as the reference convolution under autocast does.
    """

    @staticmethod
    def forward(ctx, inp, weight):
        ops = kernels(inp)
        inp = inp.contiguous()
        taps = _rounded(weight, inp)
        out = inp.new_empty((inp.shape[0], 1, *inp.shape[2:]))
        ops.small_conv(inp, taps, out)
        ctx.save_for_backward(inp, taps)
        ctx.weight_dtype = weight.dtype
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        inp, taps = ctx.saved_tensors
        ops = kernels(inp)
        grad = grad.to(inp.dtype).contiguous()
        grad_input = grad_weight = None
        if ctx.needs_input_grad[0]:
            grad_input = torch.empty_like(inp)
            ops.small_conv_input_grad(grad, taps, grad_input)
        if ctx.needs_input_grad[1]:
            grad_weight = ops.small_conv_weight_grad(grad, inp, taps).to(ctx.weight_dtype)
        return grad_input, grad_weight


def _spatial_conv(conv: nn.Module, pooled: Tensor) -> Tensor:
    """CBAM's spatial convolution, through :class:`SmallConvFunction` when it is the plain one CBAM
    builds (one output channel, odd kernel, 'same' zero padding, no bias, stride 1)."""
    plain = (
        isinstance(conv, (nn.Conv1d, nn.Conv2d, nn.Conv3d))
        and conv.out_channels == 1
        and conv.bias is None
        and conv.groups == 1
        and conv.padding_mode == "zeros"
        and all(s == 1 for s in conv.stride)
        and all(d == 1 for d in conv.dilation)
        and all(isinstance(p, int) and 2 * p + 1 == k for p, k in zip(conv.padding, conv.kernel_size))
    )
    if not plain:
        return conv(pooled)
    return SmallConvFunction.apply(pooled, conv.weight)


def _cbam_channel_gate(module: nn.Module, x: Tensor, total: Tensor, top: Tensor) -> Tensor:
    """``σ(mlp(mean) + mlp(max))`` with the shared MLP run once on both pools stacked (half the small
    layer calls forward and backward; the rows are independent, so the numbers are the same)."""
    mean = (total / _positions(x)).to(x.dtype)
    both = module.mlp(torch.cat([mean, top.to(x.dtype)]))
    return module.tap(torch.sigmoid(both[: mean.shape[0]] + both[mean.shape[0] :]))


def cbam(module: nn.Module, x: Tensor) -> Tensor:
    """CBAM: the channel gate from mean and max pools, then (by default) the spatial gate."""
    if not module.use_spatial:
        return channel_gate(
            module, x, lambda total, top: _cbam_channel_gate(module, x, total, top), with_max=True
        )
    params = tuple(module.parameters())
    return CBAMFunction.apply(x, module, _tracking(x, params=params), *params)


# ---------------------------------------------------------------------------------------------------
# Position gates: sSE, scSE (max / add / mul)


class PositionGateFunction(torch.autograd.Function):
    """sSE ``y = x ⊙ q[n, s]`` and scSE ``y = agg(x ⊙ s[n, c], x ⊙ q[n, s])``.

    ``weight`` is sSE's 1x1 convolution as a ``(C,)`` vector (its gradient ``Σ dl·x`` is returned);
    ``gate(rowsum, wsum)`` returns ``(s or None, q)`` from the fp32 channel sums ``(N, C)`` (None for
    sSE) and the fp32 logits without bias ``(N, S)``.
    """

    @staticmethod
    def forward(ctx, x, weight, gate, mode, track, *params):
        ops = kernels(x)
        x, view, cl = as_rows(x)
        acc = accumulation_dtype(x)
        weight_k = weight.detach().to(acc).contiguous()
        wants_row = mode != POS
        wsum, rowsum = ops.position_stats(view, cl, weight_k, None, wants_row)[:2]
        with torch.enable_grad() if track else torch.no_grad():
            wsum = _as_leaf(wsum, track)
            rowsum = _as_leaf(rowsum, track) if wants_row else None
            s, q = gate(_fed(rowsum), _fed(wsum))
        row = _rounded(s, x) if wants_row else None
        pos = _rounded(q, x)
        out, out_view = _output_like(x, view)
        ops.gate_apply(view, cl, row, pos, mode, out_view)
        if track:
            ctx.save_for_backward(x, weight_k)
            ctx.graph = (s, q, rowsum, wsum)
            ctx.row, ctx.pos, ctx.cl, ctx.mode, ctx.params = row, pos, cl, mode, params
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        x, weight_k = ctx.saved_tensors
        s, q, rowsum_leaf, wsum_leaf = ctx.graph
        ops = kernels(x)
        cl, mode = ctx.cl, ctx.mode
        view = x.view(x.shape[0], x.shape[1], -1)
        grad_view = rows_like(grad, x, cl)
        wants_row = mode != POS
        d_row, d_pos = ops.gate_grad_stats(grad_view, view, cl, ctx.row, ctx.pos, mode, wants_row, True)
        outputs = [q] + ([s] if wants_row else [])
        grads = [d_pos] + ([d_row] if wants_row else [])
        leaves = [wsum_leaf] + ([rowsum_leaf] if wants_row else [])
        leaf_grads, param_grads = _graph_grads(outputs, grads, leaves, ctx.params)
        d_wsum = leaf_grads[0].contiguous()
        d_rowsum = leaf_grads[1].contiguous() if wants_row else None
        grad_x = None
        if ctx.needs_input_grad[0]:
            grad_x, grad_x_view = _output_like(x, view)
            ops.gate_grad(
                grad_view,
                view,
                cl,
                ctx.row,
                ctx.pos,
                mode,
                d_rowsum,
                None,
                None,
                None,
                d_wsum,
                weight_k,
                grad_x_view,
            )
        grad_weight = ops.weight_grad(view, cl, d_wsum) if ctx.needs_input_grad[1] else None
        return (grad_x, grad_weight, None, None, None, *param_grads)


def _spatial_logits(conv: nn.Module, wsum: Tensor, x: Tensor) -> Tensor:
    """sSE's gate from the bias-free logits: ``σ(Σ_c w_c x + b)`` as ``(N, S)``.

    Under autocast the reference's 1x1 convolution returns the autocast dtype, and so do these logits:
    scSE's max-out compares the two branches, and both paths must see the same rounding.
    """
    logits = wsum + conv.bias.to(wsum.dtype) if conv.bias is not None else wsum
    dtype = x.dtype
    if torch.is_autocast_enabled(x.device.type):
        dtype = torch.get_autocast_dtype(x.device.type)
    return torch.sigmoid(logits.to(dtype))


def sse(module: nn.Module, x: Tensor) -> Tensor:
    """Spatial SE: ``y = x ⊙ σ(w·x + b)``."""
    params = tuple(module.parameters())
    weight = module.conv.weight.reshape(-1)
    track = _tracking(x, weight, params=params)
    return PositionGateFunction.apply(
        x, weight, lambda _, wsum: (None, _spatial_logits(module.conv, wsum, x)), POS, track, *params
    )


def scse(module: nn.Module, x: Tensor) -> Tensor:
    """scSE with max-out (official), add or mul aggregation; ``concat`` stacks the two fused branches."""
    if module.aggregation == "concat":
        return torch.cat([se(module.cse, x), sse(module.sse, x)], dim=1)
    params = tuple(module.parameters())
    weight = module.sse.conv.weight.reshape(-1)
    count = _positions(x)

    def gate(rowsum: Tensor, wsum: Tensor) -> tuple[Tensor, Tensor]:
        s = module.cse.excitation((rowsum / count).to(x.dtype))
        return s, _spatial_logits(module.sse.conv, wsum, x)

    track = _tracking(x, weight, params=params)
    return PositionGateFunction.apply(x, weight, gate, AGGREGATION_MODES[module.aggregation], track, *params)


# ---------------------------------------------------------------------------------------------------
# CBAM with both gates


class CBAMFunction(torch.autograd.Function):
    """CBAM: ``x' = x ⊙ M_c[n, c]``, ``y = x' ⊙ M_s[n, s]``; four passes forward, three backward."""

    @staticmethod
    def forward(ctx, x, module, track, *params):
        ops = kernels(x)
        x, view, cl = as_rows(x)
        total, top, channel_ties = ops.channel_stats(view, cl, None, True)
        with torch.enable_grad() if track else torch.no_grad():
            total = _as_leaf(total, track)
            top = _as_leaf(top, track)
            channel = _cbam_channel_gate(module, x, _fed(total), _fed(top))
        r = _rounded(channel, x)
        _, _, pmax, pos_ties, psum = ops.position_stats(view, cl, None, r, False)
        batch, channels = x.shape[0], x.shape[1]
        with torch.enable_grad() if track else torch.no_grad():
            pmax = _as_leaf(pmax, track)
            psum = _as_leaf(psum, track)
            channel_max = _fed(pmax).to(x.dtype)
            channel_mean = (_fed(psum) / channels).to(x.dtype)
            pools = [channel_max, channel_mean] if module.max_first else [channel_mean, channel_max]
            pooled = torch.stack(pools, dim=1).reshape(batch, 2, *x.shape[2:])
            conv = _spatial_conv(module.spatial_conv, pooled)
            spatial = torch.sigmoid(module.spatial_norm(conv)).reshape(batch, -1)
        m = _rounded(spatial, x)
        out, out_view = _output_like(x, view)
        ops.gate_apply(view, cl, r, m, ROWPOS, out_view)
        if track:
            ctx.save_for_backward(x, top.detach(), channel_ties, pmax.detach(), pos_ties)
            ctx.graph = (channel, total, top, spatial, pmax, psum)
            ctx.r, ctx.m, ctx.cl, ctx.params = r, m, cl, params
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        x, top, channel_ties, pmax, pos_ties = ctx.saved_tensors
        channel, total_leaf, top_leaf, spatial, pmax_leaf, psum_leaf = ctx.graph
        ops = kernels(x)
        cl, r, m = ctx.cl, ctx.r, ctx.m
        view = x.view(x.shape[0], x.shape[1], -1)
        grad_view = rows_like(grad, x, cl)
        d_spatial = ops.gate_grad_stats(grad_view, view, cl, r, m, ROWPOS, False, True)[1]
        (d_pmax, d_psum), spatial_param_grads = _graph_grads(
            [spatial], [d_spatial], [pmax_leaf, psum_leaf], ctx.params
        )
        kmean = d_psum.contiguous()
        kmaxc = (d_pmax / pos_ties).contiguous()
        d_channel = ops.cbam_grad_stats(grad_view, view, cl, r, m, kmean, kmaxc, pmax)
        (d_total, d_top), channel_param_grads = _graph_grads(
            [channel], [d_channel], [total_leaf, top_leaf], ctx.params
        )
        grad_x = None
        if ctx.needs_input_grad[0]:
            grad_x, grad_x_view = _output_like(x, view)
            ops.cbam_grad(
                grad_view,
                view,
                cl,
                r,
                m,
                kmean,
                kmaxc,
                pmax,
                d_total.contiguous(),
                (d_top / channel_ties).contiguous(),
                top,
                grad_x_view,
            )
        return (grad_x, None, None, *_sum_grads(spatial_param_grads, channel_param_grads))


# ---------------------------------------------------------------------------------------------------
# SimAM


class SimAMFunction(torch.autograd.Function):
    """SimAM ``y = x·σ(a (x-μ)² + ½)``, ``a = 1/(4(v+λ))``; saves ``x`` and per-(n, c) μ and a."""

    @staticmethod
    def forward(ctx, x, lambda_, track):
        ops = kernels(x)
        x, view, cl = as_rows(x)
        positions = view.shape[2]
        mean, m2 = ops.channel_moments(view, cl)
        inverse = 1.0 / (4.0 * (m2 / (positions - 1) + lambda_))
        out, out_view = _output_like(x, view)
        ops.simam_forward(view, cl, mean, inverse, out_view)
        if track:
            ctx.save_for_backward(x, mean, inverse)
            ctx.cl = cl
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        x, mean, inverse = ctx.saved_tensors
        ops = kernels(x)
        cl = ctx.cl
        view = x.view(x.shape[0], x.shape[1], -1)
        grad_view = rows_like(grad, x, cl)
        positions = view.shape[2]
        sum_ht, sum_htt = ops.simam_grad_stats(grad_view, view, cl, mean, inverse)
        k1 = (-2.0 / positions) * inverse * sum_ht
        k2 = (-8.0 / (positions - 1)) * inverse * inverse * sum_htt
        grad_x, grad_x_view = _output_like(x, view)
        ops.simam_grad(grad_view, view, cl, mean, inverse, k1.contiguous(), k2.contiguous(), grad_x_view)
        return grad_x, None, None


def simam(module: nn.Module, x: Tensor) -> Tensor:
    """SimAM (no parameters)."""
    if _positions(x) == 1:
        raise ValueError(
            f"SimAM: needs more than one spatial position per channel (n = positions - 1 = 0 "
            f"divides by zero); got shape {list(x.shape)}"
        )
    return SimAMFunction.apply(x, module.lambda_, _tracking(x))


# ---------------------------------------------------------------------------------------------------
# Coordinate Attention


def _pointwise(conv: nn.Module, t: Tensor) -> Tensor:
    """A 1x1 ``Conv1d`` on ``(N, C, L)`` strips as one batched matrix product, bias included.

    oneDNN's convolution backward costs milliseconds on these strips (37.8 ms vs 0.6 ms for
    2048 -> 64 channels at 14, 2 threads, on a loaded machine), more than the passes over the feature
    map. ``baddbmm`` with the weight and bias broadcast over the batch copies nothing (``matmul`` of a
    2-D weight with 3-D strips would transpose and copy the strips) and its backward is two more
    ``bmm`` calls. Other convolutions are called as they are.
    """
    plain = (
        isinstance(conv, nn.Conv1d)
        and conv.kernel_size == (1,)
        and conv.stride == (1,)
        and conv.padding == (0,)
        and conv.dilation == (1,)
        and conv.groups == 1
    )
    if not plain:
        return conv(t)
    batch, length = t.shape[0], t.shape[2]
    weight = conv.weight.squeeze(-1)
    weight = weight.unsqueeze(0).expand(batch, *weight.shape)
    if conv.bias is None:
        return torch.bmm(weight, t)
    bias = conv.bias.unsqueeze(-1).unsqueeze(0).expand(batch, conv.bias.shape[0], length)
    return torch.baddbmm(bias, weight, t)


def _coord_gates(module: nn.Module, x: Tensor, strips: list[Tensor]) -> list[Tensor]:
    """The module's shared bottleneck and per-axis gates on the strip means, each ``(N, C, L_axis)``."""
    sizes = [s.shape[2] for s in strips]
    shared = module.act(module.norm(_pointwise(module.conv1, torch.cat(strips, dim=2))))
    parts = torch.split(shared, sizes, dim=2)
    return [torch.sigmoid(_pointwise(conv, part)) for conv, part in zip(module.convs, parts)]


class CoordFunction(torch.autograd.Function):
    """Coordinate Attention in 2-D and 3-D: ``y = x ⊙ g_w[w] ⊙ g_h[h] (⊙ g_d[d])``."""

    @staticmethod
    def forward(ctx, x, module, track, *params):
        ops = kernels(x)
        x, view, cl = as_rows(x)
        sizes = list(x.shape[2:])
        volume = [1] * (3 - len(sizes)) + sizes
        with_d = len(sizes) == 3
        sd, sh, sw = ops.axis_sums(view, cl, volume[0], volume[1], volume[2], with_d)
        sums = ([sd] if with_d else []) + [sh, sw]
        total = view.shape[2]
        with torch.enable_grad() if track else torch.no_grad():
            sums = [_as_leaf(s, track) for s in sums]
            strips = [(_fed(s) / (total // s.shape[2])).to(x.dtype) for s in sums]
            gates = _coord_gates(module, x, strips)
        kernel_gates = [strips_for(_rounded(g, x), cl) for g in gates]
        gd = kernel_gates[0] if with_d else None
        out, out_view = _output_like(x, view)
        ops.axis_apply(
            view, cl, volume[0], volume[1], volume[2], gd, kernel_gates[-2], kernel_gates[-1], out_view
        )
        if track:
            ctx.save_for_backward(x, *kernel_gates)
            ctx.graph = (gates, sums)
            ctx.cl, ctx.volume, ctx.with_d, ctx.params = cl, volume, with_d, params
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        x, *kernel_gates = ctx.saved_tensors
        gates, sums = ctx.graph
        ops = kernels(x)
        cl, (D, H, W), with_d = ctx.cl, ctx.volume, ctx.with_d
        view = x.view(x.shape[0], x.shape[1], -1)
        grad_view = rows_like(grad, x, cl)
        gd = kernel_gates[0] if with_d else None
        gh, gw = kernel_gates[-2], kernel_gates[-1]
        dd, dh, dw = ops.axis_grad_stats(grad_view, view, cl, D, H, W, gd, gh, gw)
        gate_grads = ([dd] if with_d else []) + [dh, dw]
        leaf_grads, param_grads = _graph_grads(gates, gate_grads, sums, ctx.params)
        grad_x = None
        if ctx.needs_input_grad[0]:
            ks = [strips_for(k, cl) for k in leaf_grads]
            kd = ks[0] if with_d else None
            grad_x, grad_x_view = _output_like(x, view)
            ops.axis_grad(grad_view, cl, D, H, W, gd, gh, gw, kd, ks[-2], ks[-1], grad_x_view)
        return (grad_x, None, None, *param_grads)


class CoordLineFunction(torch.autograd.Function):
    """Coordinate Attention in 1-D, where the strip is ``x`` itself and the gate is per element.

    The gate ``a = σ(W f + b)``, ``f = δ(BN(W_1 x + b_1))``, is full-size, so it is not kept: only ``x``
    and the ``(N, mid, L)`` bottleneck ``f`` (with its small graph) are saved, and ``a`` is recomputed in
    backward. ``da = g·x``, ``dl = da·a(1-a)``, ``dW = Σ dl fᵀ``, ``db = Σ dl``, ``df = Wᵀ dl``, and
    ``dx = g·a + (∂f/∂x)ᵀ df`` through the small graph.
    """

    @staticmethod
    def forward(ctx, x, module, track, *params):
        conv = module.convs[0]
        with torch.enable_grad() if track else torch.no_grad():
            leaf = _as_leaf(x.detach(), track)
            shared = module.act(module.norm(module.conv1(_fed(leaf))))
        with torch.no_grad():
            out = x * torch.sigmoid(conv(shared.detach()))
        if track:
            ctx.save_for_backward(x)
            ctx.graph = (leaf, shared)
            # The tensors themselves: after torch.func.functional_call returns, the module holds others.
            ctx.conv_weight, ctx.conv_bias, ctx.params = conv.weight, conv.bias, params
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        leaf, shared = ctx.graph
        weight, bias = ctx.conv_weight, ctx.conv_bias
        bottleneck = shared.detach()
        gate = torch.sigmoid(F.conv1d(bottleneck, weight, bias))
        grad_x = grad * gate
        d_logits = grad * x * gate * (1 - gate)
        d_conv_weight = torch.einsum("ncl,nml->cm", d_logits, bottleneck).unsqueeze(-1)
        d_conv_bias = d_logits.sum((0, 2))
        d_shared = F.conv1d(d_logits, weight.transpose(0, 1))
        del gate
        others = [p for p in ctx.params if p is not weight and p is not bias]
        (d_leaf,), other_grads = _graph_grads([shared], [d_shared], [leaf], others)
        grad_x = grad_x + d_leaf
        by_identity = {id(p): g for p, g in zip(others, other_grads)}
        by_identity[id(weight)] = d_conv_weight if weight.requires_grad else None
        if bias is not None:
            by_identity[id(bias)] = d_conv_bias if bias.requires_grad else None
        return (
            grad_x if ctx.needs_input_grad[0] else None,
            None,
            None,
            *[by_identity[id(p)] for p in ctx.params],
        )


def coord(module: nn.Module, x: Tensor) -> Tensor:
    """Coordinate Attention (2-D, 3-D: strips and per-axis gates; 1-D: per-element gate, recomputed)."""
    params = tuple(module.parameters())
    track = _tracking(x, params=params)
    if module.dim == 1:
        return CoordLineFunction.apply(x, module, track, *params)
    return CoordFunction.apply(x, module, track, *params)
