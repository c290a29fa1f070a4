"""The fused kernels written with torch ops: the fallback where the C++ or Triton kernels are missing.

Each function has the contract of the C++ kernel of the same name in ``csrc/fused_cpu.cpp`` (and of
:mod:`excite.fused._triton`): full-size tensors are ``(N, C, S)`` views, ``channels_last`` says which
axis has unit stride (ignored here), small tensors are in the accumulation dtype (float32, float64 for
float64 inputs), and outputs are written into ``out``. The arithmetic is the same, including the
rounding of intermediate products to the input dtype that the reference path performs; only the
number of passes differs (these functions materialise temporaries).
"""

from __future__ import annotations

import torch
from torch import Tensor

ROW, POS, ROWPOS, MAX, ADD, MUL = 0, 1, 2, 3, 4, 5


def _acc(x: Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _empty(x: Tensor) -> Tensor:
    return torch.empty(0, dtype=_acc(x), device=x.device)


def _round(t: Tensor, dtype: torch.dtype) -> Tensor:
    """What ``t`` becomes after a round trip through ``dtype`` (the reference rounds every product)."""
    if dtype in (torch.float32, torch.float64):
        return t
    return t.to(dtype).to(t.dtype)


def channel_stats(x: Tensor, channels_last: bool, filter: Tensor | None, with_max: bool) -> list[Tensor]:
    acc = _acc(x)
    if filter is None:
        total = x.sum(2, dtype=acc)
    else:
        total = (x.to(acc) * filter).sum(2)
    if not with_max:
        return [total, _empty(x), _empty(x)]
    top = x.amax(2)
    count = (x == top.unsqueeze(2)).sum(2).to(acc)
    return [total, top.to(acc), count]


def channel_moments(x: Tensor, channels_last: bool) -> list[Tensor]:
    xf = x.to(_acc(x))
    mean = xf.mean(2)
    return [mean, (xf - mean.unsqueeze(2)).square().sum(2)]


def _gated(x: Tensor, row: Tensor | None, pos: Tensor | None, mode: int) -> Tensor:
    xf = x.to(_acc(x))
    if mode == ROW:
        return xf * row.unsqueeze(2)
    if mode == POS:
        return xf * pos.unsqueeze(1)
    a = _round(xf * row.unsqueeze(2), x.dtype)
    if mode == ROWPOS:
        return a * pos.unsqueeze(1)
    b = _round(xf * pos.unsqueeze(1), x.dtype)
    if mode == MAX:
        return torch.maximum(a, b)
    if mode == ADD:
        return a + b
    return a * b


def gate_apply(
    x: Tensor, channels_last: bool, row: Tensor | None, pos: Tensor | None, mode: int, out: Tensor
):
    if mode == ROW and x.dtype != torch.float64:
        # The reference's own op: x times the gate already rounded to x.dtype.
        torch.mul(x, row.to(x.dtype).unsqueeze(2), out=out)
        return
    out.copy_(_gated(x, row, pos, mode))


def _max_share(x: Tensor, row: Tensor, pos: Tensor) -> Tensor:
    """Which branch of the max-out wins: 1, 0, or 0.5 on ties (torch.maximum splits those evenly)."""
    xf = x.to(_acc(x))
    a = _round(xf * row.unsqueeze(2), x.dtype)
    b = _round(xf * pos.unsqueeze(1), x.dtype)
    return (a > b).to(xf.dtype) + 0.5 * (a == b).to(xf.dtype)


def gate_grad_stats(
    grad: Tensor,
    x: Tensor,
    channels_last: bool,
    row: Tensor | None,
    pos: Tensor | None,
    mode: int,
    want_row: bool,
    want_pos: bool,
) -> list[Tensor]:
    acc = _acc(x)
    gf, xf = grad.to(acc), x.to(acc)
    if mode in (ROW, POS, ADD):
        to_row = to_pos = gf * xf
    elif mode == ROWPOS:
        to_row = gf * _round(xf * pos.unsqueeze(1), x.dtype)
        to_pos = gf * _round(xf * row.unsqueeze(2), x.dtype)
    elif mode == MAX:
        q = gf * xf
        to_row = q * _max_share(x, row, pos)
        to_pos = q - to_row
    else:
        to_row = gf * _round(xf * pos.unsqueeze(1), x.dtype) * xf
        to_pos = gf * _round(xf * row.unsqueeze(2), x.dtype) * xf
    return [to_row.sum(2) if want_row else _empty(x), to_pos.sum(1) if want_pos else _empty(x)]


def gate_grad(
    grad: Tensor,
    x: Tensor,
    channels_last: bool,
    row: Tensor | None,
    pos: Tensor | None,
    mode: int,
    krow: Tensor | None,
    filter: Tensor | None,
    kmax: Tensor | None,
    xmax: Tensor | None,
    kpos: Tensor | None,
    weight: Tensor | None,
    out: Tensor,
):
    acc = _acc(x)
    gf = grad.to(acc)
    if mode == ROW:
        direct = row.unsqueeze(2)
    elif mode == POS:
        direct = pos.unsqueeze(1)
    elif mode == MAX:
        share = _max_share(x, row, pos)
        direct = share * row.unsqueeze(2) + (1 - share) * pos.unsqueeze(1)
    elif mode == ADD:
        direct = row.unsqueeze(2) + pos.unsqueeze(1)
    elif mode == MUL:
        xf = x.to(acc)
        direct = _round(xf * pos.unsqueeze(1), x.dtype) * row.unsqueeze(2) + _round(
            xf * row.unsqueeze(2), x.dtype
        ) * pos.unsqueeze(1)
    else:
        raise ValueError(f"gate_grad: unsupported mode {mode}")
    dx = gf * direct
    if krow is not None:
        dx = dx + (krow.unsqueeze(2) * filter.unsqueeze(0) if filter is not None else krow.unsqueeze(2))
    if kmax is not None:
        dx = dx + (x.to(acc) == xmax.unsqueeze(2)).to(acc) * kmax.unsqueeze(2)
    if kpos is not None:
        dx = dx + kpos.unsqueeze(1) * weight.view(1, -1, 1)
    out.copy_(dx)


def filter_grad(x: Tensor, channels_last: bool, krow: Tensor) -> Tensor:
    return (x.to(krow.dtype) * krow.unsqueeze(2)).sum(0)


def weight_grad(x: Tensor, channels_last: bool, kpos: Tensor) -> Tensor:
    return (x.to(kpos.dtype) * kpos.unsqueeze(1)).sum((0, 2))


def position_stats(
    x: Tensor, channels_last: bool, weight: Tensor | None, rowscale: Tensor | None, want_rowsum: bool
) -> list[Tensor]:
    acc = _acc(x)
    xf = x.to(acc)
    wsum = (xf * weight.view(1, -1, 1)).sum(1) if weight is not None else _empty(x)
    rowsum = xf.sum(2) if want_rowsum else _empty(x)
    if rowscale is None:
        return [wsum, rowsum, _empty(x), _empty(x), _empty(x)]
    q = _round(xf * rowscale.unsqueeze(2), x.dtype)
    top = q.amax(1)
    count = (q == top.unsqueeze(1)).sum(1).to(acc)
    return [wsum, rowsum, top, count, q.sum(1)]


def _simam_parts(x: Tensor, mean: Tensor, a: Tensor):
    xf = x.to(_acc(x))
    t = xf - mean.unsqueeze(2)
    sig = torch.sigmoid(a.unsqueeze(2) * t * t + 0.5)
    return xf, t, sig


def simam_forward(x: Tensor, channels_last: bool, mean: Tensor, a: Tensor, out: Tensor):
    xf, _, sig = _simam_parts(x, mean, a)
    out.copy_(xf * sig)


def simam_grad_stats(grad: Tensor, x: Tensor, channels_last: bool, mean: Tensor, a: Tensor) -> list[Tensor]:
    xf, t, sig = _simam_parts(x, mean, a)
    h = grad.to(xf.dtype) * xf * sig * (1 - sig)
    return [(h * t).sum(2), (h * t * t).sum(2)]


def simam_grad(
    grad: Tensor, x: Tensor, channels_last: bool, mean: Tensor, a: Tensor, k1: Tensor, k2: Tensor, out: Tensor
):
    xf, t, sig = _simam_parts(x, mean, a)
    gf = grad.to(xf.dtype)
    h = gf * xf * sig * (1 - sig)
    out.copy_(gf * sig + 2 * a.unsqueeze(2) * h * t + k1.unsqueeze(2) + k2.unsqueeze(2) * t)


def _volume(t: Tensor, D: int, H: int, W: int) -> Tensor:
    return t.reshape(t.shape[0], t.shape[1], D, H, W)


def axis_sums(x: Tensor, channels_last: bool, D: int, H: int, W: int, with_d: bool) -> list[Tensor]:
    v = _volume(x, D, H, W).to(_acc(x))
    sd = v.sum((3, 4)) if with_d else _empty(x)
    return [sd, v.sum((2, 4)), v.sum((2, 3))]


def _axis_gates(gd: Tensor | None, gh: Tensor, gw: Tensor):
    d = gd.unsqueeze(3).unsqueeze(4) if gd is not None else None
    return d, gh.unsqueeze(2).unsqueeze(4), gw.unsqueeze(2).unsqueeze(3)


def axis_apply(
    x: Tensor,
    channels_last: bool,
    D: int,
    H: int,
    W: int,
    gd: Tensor | None,
    gh: Tensor,
    gw: Tensor,
    out: Tensor,
):
    v = _volume(x, D, H, W).to(_acc(x))
    d, h, w = _axis_gates(gd, gh, gw)
    y = _round(_round(v * w, x.dtype) * h, x.dtype)
    if d is not None:
        y = y * d
    out.copy_(y.reshape(out.shape))


def axis_grad_stats(
    grad: Tensor,
    x: Tensor,
    channels_last: bool,
    D: int,
    H: int,
    W: int,
    gd: Tensor | None,
    gh: Tensor,
    gw: Tensor,
) -> list[Tensor]:
    acc = _acc(x)
    q = _volume(grad, D, H, W).to(acc) * _volume(x, D, H, W).to(acc)
    d, h, w = _axis_gates(gd, gh, gw)
    dgate = d if d is not None else 1.0
    out_d = (q * h * w).sum((3, 4)) if gd is not None else _empty(x)
    return [out_d, (q * w * dgate).sum((2, 4)), (q * h * dgate).sum((2, 3))]


def axis_grad(
    grad: Tensor,
    channels_last: bool,
    D: int,
    H: int,
    W: int,
    gd: Tensor | None,
    gh: Tensor,
    gw: Tensor,
    kd: Tensor | None,
    kh: Tensor,
    kw: Tensor,
    out: Tensor,
):
    gv = _volume(grad, D, H, W).to(_acc(grad))
    d, h, w = _axis_gates(gd, gh, gw)
    kd5, kh5, kw5 = _axis_gates(kd, kh, kw)
    dx = gv * w * h + kh5 + kw5
    if d is not None:
        dx = gv * w * h * d + kd5 + kh5 + kw5
    out.copy_(dx.reshape(out.shape))


def _cbam_dxp(grad, x, r, m, kmean, kmaxc, pmax):
    acc = _acc(x)
    xf = x.to(acc)
    xq = _round(xf * r.unsqueeze(2), x.dtype)
    hit = (xq == pmax.unsqueeze(1)).to(acc)
    return xf, grad.to(acc) * m.unsqueeze(1) + kmean.unsqueeze(1) + hit * kmaxc.unsqueeze(1)


def cbam_grad_stats(
    grad: Tensor,
    x: Tensor,
    channels_last: bool,
    r: Tensor,
    m: Tensor,
    kmean: Tensor,
    kmaxc: Tensor,
    pmax: Tensor,
) -> Tensor:
    xf, dxp = _cbam_dxp(grad, x, r, m, kmean, kmaxc, pmax)
    return (dxp * xf).sum(2)


def cbam_grad(
    grad: Tensor,
    x: Tensor,
    channels_last: bool,
    r: Tensor,
    m: Tensor,
    kmean: Tensor,
    kmaxc: Tensor,
    pmax: Tensor,
    krow: Tensor,
    kcmaxc: Tensor,
    cmax: Tensor,
    out: Tensor,
):
    xf, dxp = _cbam_dxp(grad, x, r, m, kmean, kmaxc, pmax)
    hit = (xf == cmax.unsqueeze(2)).to(xf.dtype)
    out.copy_(dxp * r.unsqueeze(2) + krow.unsqueeze(2) + hit * kcmaxc.unsqueeze(2))


# CBAM's spatial convolution (C_in -> 1 channel, odd kernel, stride 1, "same" zero padding, no bias).
# ``weight`` is in the accumulation dtype, already rounded to the input's dtype.
_CONVS = {1: torch.nn.functional.conv1d, 2: torch.nn.functional.conv2d, 3: torch.nn.functional.conv3d}


def _same_padding(weight: Tensor) -> list[int]:
    return [k // 2 for k in weight.shape[2:]]


def small_conv(inp: Tensor, weight: Tensor, out: Tensor) -> None:
    conv = _CONVS[inp.dim() - 2]
    out.copy_(conv(inp, weight.to(inp.dtype), padding=_same_padding(weight)))


def small_conv_input_grad(grad: Tensor, weight: Tensor, out: Tensor) -> None:
    """``conv(grad, flip(w)ᵀ)``: the transposed convolution as a forward one."""
    conv = _CONVS[out.dim() - 2]
    flipped = weight.to(out.dtype).flip(tuple(range(2, weight.dim()))).transpose(0, 1)
    out.copy_(conv(grad, flipped, padding=_same_padding(weight)))


def small_conv_weight_grad(grad: Tensor, inp: Tensor, weight: Tensor) -> Tensor:
    """``conv(inputᵀ, gradᵀ)ᵀ``: batch and channel axes swapped, the gradient map as the kernel."""
    conv = _CONVS[inp.dim() - 2]
    swapped = conv(inp.transpose(0, 1), grad.transpose(0, 1), padding=_same_padding(weight))
    return swapped.transpose(0, 1).to(weight.dtype)
