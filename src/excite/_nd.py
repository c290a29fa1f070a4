"""Dimension-generic helpers shared by every module: the one place that knows about 1-D/2-D/3-D.

Everything here works under eager, ``torch.jit.script``, ``torch.compile(dynamic=True)`` and ONNX
export with dynamic spatial axes. In particular no helper uses ``AdaptiveAvgPool`` with an output size
other than 1, because its ONNX lowering freezes the pooling window at the traced size (the silent
Coordinate Attention bug in peer code); adaptive pooling is written as a matrix computed from the
runtime size instead (:func:`adaptive_pool_matrix`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def spatial_names(dim: int) -> str:
    if dim == 1:
        return "L"
    if dim == 2:
        return "H, W"
    return "D, H, W"


def spatial_axes(dim: int) -> list[int]:
    """The spatial axes of an ``(N, C, *spatial)`` tensor with ``dim`` spatial dimensions."""
    return list(range(2, dim + 2))


def check_dim(dim: int, name: str) -> None:
    if dim not in (1, 2, 3):
        raise ValueError(f"{name}: dim must be 1, 2 or 3, got {dim}")


def check_channels(channels: int | None, name: str) -> int:
    if channels is None:
        raise ValueError(f"{name}: channels is required (the module has weights sized by C)")
    if channels < 1:
        raise ValueError(f"{name}: channels must be positive, got {channels}")
    return channels


def reduced_width(channels: int, reduction: int, name: str) -> int:
    """``C // reduction``, refusing the 0-wide bottleneck that peer code builds silently for C < r."""
    if reduction < 1:
        raise ValueError(f"{name}: reduction must be >= 1, got {reduction}")
    width = channels // reduction
    if width < 1:
        raise ValueError(
            f"{name}: channels={channels} < reduction={reduction} gives a 0-wide bottleneck; "
            f"use reduction <= {channels} or pass hidden_channels explicitly"
        )
    return width


def check_input(x: Tensor, dim: int, channels: int | None, name: str) -> None:
    """Raise a ValueError naming the module, what it expected and what it got."""
    if x.dim() != dim + 2:
        raise ValueError(
            f"{name}: expected a {dim + 2}-D input (N, C, {spatial_names(dim)}) for dim={dim}, "
            f"got shape {list(x.shape)}"
        )
    if channels is not None:
        if x.shape[1] != channels:
            raise ValueError(
                f"{name}: built for {channels} channels, got an input with {x.shape[1]} channels "
                f"(shape {list(x.shape)})"
            )


def accumulation_dtype(x: Tensor) -> torch.dtype:
    """fp32 for half-precision inputs, the input's own dtype otherwise (float64 stays float64, so
    ``gradcheck`` and double-precision references are not rounded to fp32)."""
    return torch.promote_types(x.dtype, torch.float32)


def spatial_mean(x: Tensor) -> Tensor:
    """Mean over all spatial axes, accumulated in at least fp32, returned as ``(N, C)`` in ``x.dtype``.

    ``x.mean(dtype=float32)`` reads a half-precision tensor once and accumulates in fp32 without
    materialising an fp32 copy, so fp16 sums of large maps cannot overflow.
    """
    axes = spatial_axes(x.dim() - 2)
    return x.mean(dim=axes, dtype=accumulation_dtype(x)).to(x.dtype)


def spatial_amax(x: Tensor) -> Tensor:
    """Max over all spatial axes, ``(N, C)``."""
    axes = spatial_axes(x.dim() - 2)
    return x.amax(dim=axes)


def broadcast_channels(s: Tensor, x: Tensor) -> Tensor:
    """View an ``(N, C)`` gate as ``(N, C, 1, ..., 1)`` so that it broadcasts against ``x``."""
    shape = [s.shape[0], s.shape[1]] + [1] * (x.dim() - 2)
    return s.reshape(shape)


def scale_channels(x: Tensor, s: Tensor) -> Tensor:
    """``x * s`` with an ``(N, C)`` gate; keeps the input's memory format (channels_last included)."""
    return x * broadcast_channels(s, x).to(x.dtype)


def adaptive_pool_matrix(length: int, out: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """The ``(length, out)`` matrix ``P`` with ``pooled = x @ P`` along one axis.

    It reproduces ``adaptive_avg_pool`` exactly: output cell ``i`` averages input positions
    ``[floor(i*L/out), ceil((i+1)*L/out))``, so windows overlap when ``out`` does not divide ``L``
    and cells repeat when ``L < out``. It is built from the runtime length, so an exported graph stays
    correct at every input size.
    """
    i = torch.arange(out, device=device)
    start = torch.div(i * length, out, rounding_mode="floor")
    end = torch.div((i + 1) * length + out - 1, out, rounding_mode="floor")
    pos = torch.arange(length, device=device).unsqueeze(1)
    inside = (pos >= start.unsqueeze(0)) & (pos < end.unsqueeze(0))
    return inside.to(dtype) / (end - start).to(dtype).unsqueeze(0)


def fold_adaptive_pool(weight: Tensor, spatial_size: list[int]) -> Tensor:
    """Fold adaptive average pooling into a per-channel filter bank.

    ``weight`` is ``(C, *grid)``, a filter applied to ``adaptive_avg_pool(x, grid)`` and summed. The
    result is ``(C, *spatial_size)`` such that ``(x * result).sum(spatial)`` equals that, so the pooled
    map is never materialised and the input is read once.
    """
    dim = len(spatial_size)
    # Pooling a map to its own size is the identity: the official FcaNet ResNets size each stage's DCT
    # grid to its feature map, and the fold would otherwise cost two C·S³ matrix products per call.
    if list(weight.shape[1:]) == spatial_size:
        return weight
    pools: list[Tensor] = []
    for axis in range(dim):
        pools.append(
            adaptive_pool_matrix(spatial_size[axis], weight.shape[axis + 1], weight.dtype, weight.device)
        )
    if dim == 1:
        return torch.einsum("ci,li->cl", weight, pools[0])
    if dim == 2:
        return torch.einsum("cij,hi,wj->chw", weight, pools[0], pools[1])
    return torch.einsum("cijk,di,hj,wk->cdhw", weight, pools[0], pools[1], pools[2])


def window_mean(x: Tensor, window: int) -> Tensor:
    """Average pooling with a ``window``-wide kernel and stride on every spatial axis (the remainder
    is dropped, like ``AvgPool``), accumulated in at least fp32."""
    dim = x.dim() - 2
    shape = [x.shape[0], x.shape[1]]
    for axis in range(2, dim + 2):
        cells = x.shape[axis] // window
        x = x.narrow(axis, 0, cells * window)
        shape.extend([cells, window])
    axes: list[int] = []
    for i in range(dim):
        axes.append(3 + 2 * i)
    return x.reshape(shape).mean(dim=axes, dtype=accumulation_dtype(x)).to(x.dtype)


def weighted_spatial_sum(x: Tensor, weight: Tensor) -> Tensor:
    """``sum_spatial(x * weight)`` for a ``(C, *spatial)`` filter bank, ``(N, C)``, accumulated and
    returned in :func:`accumulation_dtype` (at least fp32)."""
    return (x * weight.unsqueeze(0)).sum(dim=spatial_axes(x.dim() - 2), dtype=accumulation_dtype(x))


def conv_nd(dim: int) -> type:
    return {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[dim]


class PooledBatchNorm(nn.BatchNorm1d):
    """BatchNorm over a pooled descriptor of any rank ``(N, C, ...)``, safe at batch size 1.

    Where BatchNorm follows global pooling (SPSE, RGSE) a training batch of one sample has a single
    value per channel, which ``nn.BatchNorm`` rejects. Here such a batch is normalised with the
    running statistics, which are then left unchanged; every other batch behaves exactly like
    ``nn.BatchNorm{1,2,3}d``. The parameter and buffer names are BatchNorm's, so official state dicts
    load unchanged.
    """

    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"PooledBatchNorm: expected (N, C, ...) input, got shape {list(input.shape)}")

    def forward(self, input: Tensor) -> Tensor:
        self._check_input_dim(input)
        use_batch_stats = self.training and input.numel() // input.shape[1] > 1
        momentum = 0.0
        if use_batch_stats:
            momentum = 0.1 if self.momentum is None else self.momentum
            if self.num_batches_tracked is not None:
                self.num_batches_tracked.add_(1)
                if self.momentum is None:
                    momentum = 1.0 / float(self.num_batches_tracked)
        return F.batch_norm(
            input,
            self.running_mean,
            self.running_var,
            self.weight,
            self.bias,
            use_batch_stats,
            momentum,
            self.eps,
        )


_ACTIVATIONS = {
    "relu": nn.ReLU,
    "relu6": nn.ReLU6,
    "silu": nn.SiLU,
    "swish": nn.SiLU,
    "gelu": nn.GELU,
    "hardswish": nn.Hardswish,
    "h_swish": nn.Hardswish,
    "leaky_relu": nn.LeakyReLU,
    "tanh": nn.Tanh,
    "identity": nn.Identity,
    "sigmoid": nn.Sigmoid,
    "hardsigmoid": nn.Hardsigmoid,
}


def make_activation(name: str, owner: str) -> nn.Module:
    """An activation module by name (``"relu"``, ``"silu"``, ``"hardswish"``, ...)."""
    key = name.lower()
    if key not in _ACTIVATIONS:
        raise ValueError(f"{owner}: unknown activation {name!r}; choose from {sorted(_ACTIVATIONS)}")
    return _ACTIVATIONS[key]()


def make_gate(name: str, owner: str) -> nn.Module:
    """The excitation gate: ``"sigmoid"`` (every paper) or ``"hardsigmoid"`` (MobileNetV3)."""
    if name not in ("sigmoid", "hardsigmoid"):
        raise ValueError(f"{owner}: gate must be 'sigmoid' or 'hardsigmoid', got {name!r}")
    return nn.Sigmoid() if name == "sigmoid" else nn.Hardsigmoid()


class GateTap(nn.Identity):
    """A no-op that every module passes its channel gate ``(N, C)`` through.

    It holds no state. Forward hooks on it let :mod:`excite.analysis` record excitations without the
    modules knowing about analysis.
    """
