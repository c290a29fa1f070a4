"""Triton kernels of the fused path, for CUDA tensors (and for CPU tensors under ``TRITON_INTERPRET=1``).

Every public function has the contract of the function of the same name in :mod:`._torch_ops` and of
the C++ kernel in ``csrc/fused_cpu.cpp``: full-size tensors are ``(N, C, S)`` views with any strides
(Triton specialises the unit stride, so either memory layout gives coalesced loads), small tensors are
contiguous in the accumulation dtype, outputs are written into ``out``.

Each kernel works on 2-D tiles of ``BC`` channels x ``BS`` positions, shaped after the layout: long
along positions for contiguous tensors, long along channels for channels_last ones. Reductions over
positions split S across programs (``split``) and reductions over channels split C, writing partial
results that a tiny torch reduction combines, so that a batch of a few large maps still fills the GPU.
Coordinate Attention's strip sums add the per-line totals with atomics.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

try:  # Triton is optional: without it (or without CUDA) the other kernels are used.
    import triton
    import triton.language as tl
except Exception:  # pragma: no cover - exercised where triton is missing
    triton = None
    tl = None

ROW, POS, ROWPOS, MAX, ADD, MUL = 0, 1, 2, 3, 4, 5


def load():
    """This module if Triton imports, else None."""
    import sys

    return sys.modules[__name__] if triton is not None else None


if triton is not None:

    @triton.jit
    def _round(v, like):
        """``v`` after a round trip, rounding to nearest even, through the element type of pointer
        ``like`` (the reference rounds every product to the input dtype). bf16 is rounded by hand:
        Triton's interpreter truncates fp32 -> bf16 conversions."""
        if like.dtype.element_ty == tl.bfloat16:
            bits = v.to(tl.float32).to(tl.uint32, bitcast=True)
            bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
            out = bits.to(tl.float32, bitcast=True).to(v.dtype)
        else:
            out = v.to(like.dtype.element_ty).to(v.dtype)
        return out

    @triton.jit
    def _gated(v, r, p, x, MODE: tl.constexpr):
        if MODE == 0:
            out = v * r
        elif MODE == 1:
            out = v * p
        elif MODE == 2:
            out = _round(v * r, x) * p
        elif MODE == 3:
            out = tl.maximum(_round(v * r, x), _round(v * p, x))
        elif MODE == 4:
            out = _round(v * r, x) + _round(v * p, x)
        else:
            out = _round(v * r, x) * _round(v * p, x)
        return out

    @triton.jit
    def _channel_stats_kernel(
        x, f, o_sum, o_max, o_ties, N, C, S, sN, sC, sS, fC, fS, chunk,
        FILTER: tl.constexpr, MAX: tl.constexpr, ACC: tl.constexpr, BC: tl.constexpr, BS: tl.constexpr,
    ):  # fmt: skip
        n = tl.program_id(0)
        cs = tl.program_id(1) * BC + tl.arange(0, BC)
        split = tl.program_id(2)
        cmask = cs < C
        lo = split * chunk
        hi = tl.minimum(S, lo + chunk)
        total = tl.zeros([BC], ACC)
        best = tl.full([BC], float("-inf"), ACC)
        ties = tl.zeros([BC], ACC)
        for s0 in range(lo, hi, BS):
            ss = s0 + tl.arange(0, BS)
            mask = cmask[:, None] & (ss < hi)[None, :]
            v = tl.load(x + n * sN + cs[:, None] * sC + ss[None, :] * sS, mask=mask, other=0.0).to(ACC)
            if FILTER:
                w = tl.load(f + cs[:, None] * fC + ss[None, :] * fS, mask=mask, other=0.0).to(ACC)
                total += tl.sum(v * w, axis=1)
            else:
                total += tl.sum(v, axis=1)
            if MAX:
                vm = tl.where(mask, v, float("-inf"))
                block_best = tl.max(vm, axis=1)
                block_ties = tl.sum(tl.where(vm == block_best[:, None], 1.0, 0.0).to(ACC), axis=1)
                merged = tl.maximum(best, block_best)
                ties = tl.where(best == merged, ties, 0.0) + tl.where(block_best == merged, block_ties, 0.0)
                best = merged
        out = (split * N + n) * C + cs
        tl.store(o_sum + out, total, mask=cmask)
        if MAX:
            tl.store(o_max + out, best, mask=cmask)
            tl.store(o_ties + out, ties, mask=cmask)

    @triton.jit
    def _moments_kernel(
        x, o_1, o_2, N, C, S, sN, sC, sS, chunk, ACC: tl.constexpr, BC: tl.constexpr, BS: tl.constexpr,
    ):  # fmt: skip
        n = tl.program_id(0)
        cs = tl.program_id(1) * BC + tl.arange(0, BC)
        split = tl.program_id(2)
        cmask = cs < C
        shift = tl.load(x + n * sN + cs * sC, mask=cmask, other=0.0).to(ACC)
        lo = split * chunk
        hi = tl.minimum(S, lo + chunk)
        s1 = tl.zeros([BC], ACC)
        s2 = tl.zeros([BC], ACC)
        for s0 in range(lo, hi, BS):
            ss = s0 + tl.arange(0, BS)
            mask = cmask[:, None] & (ss < hi)[None, :]
            v = tl.load(x + n * sN + cs[:, None] * sC + ss[None, :] * sS, mask=mask, other=0.0).to(ACC)
            d = tl.where(mask, v - shift[:, None], 0.0)
            s1 += tl.sum(d, axis=1)
            s2 += tl.sum(d * d, axis=1)
        out = (split * N + n) * C + cs
        tl.store(o_1 + out, s1, mask=cmask)
        tl.store(o_2 + out, s2, mask=cmask)

    @triton.jit
    def _gate_apply_kernel(
        x, y, row, pos, C, S, sN, sC, sS, yN, yC, yS,
        MODE: tl.constexpr, ACC: tl.constexpr, BC: tl.constexpr, BS: tl.constexpr,
    ):  # fmt: skip
        n = tl.program_id(0)
        cs = tl.program_id(1) * BC + tl.arange(0, BC)
        ss = tl.program_id(2) * BS + tl.arange(0, BS)
        mask = (cs < C)[:, None] & (ss < S)[None, :]
        v = tl.load(x + n * sN + cs[:, None] * sC + ss[None, :] * sS, mask=mask, other=0.0).to(ACC)
        r = tl.zeros([BC], ACC)
        p = tl.zeros([BS], ACC)
        if MODE != 1:
            r = tl.load(row + n * C + cs, mask=cs < C, other=0.0)
        if MODE != 0:
            p = tl.load(pos + n * S + ss, mask=ss < S, other=0.0)
        out = _gated(v, r[:, None], p[None, :], x, MODE)
        tl.store(y + n * yN + cs[:, None] * yC + ss[None, :] * yS, _round(out, y), mask=mask)

    @triton.jit
    def _grad_terms(g, v, r, p, x, MODE: tl.constexpr):
        if MODE == 2:
            to_row = g * 0.0
            to_pos = g * _round(v * r, x)
        elif MODE == 3:
            a = _round(v * r, x)
            b = _round(v * p, x)
            share = tl.where(a > b, 1.0, 0.0) + tl.where(a == b, 0.5, 0.0)
            q = g * v
            to_row = q * share
            to_pos = q - to_row
        elif MODE == 5:
            to_row = g * _round(v * p, x) * v
            to_pos = g * _round(v * r, x) * v
        else:
            to_row = g * v
            to_pos = g * v
        return to_row, to_pos

    @triton.jit
    def _gate_grad_stats_kernel(
        g, x, row, pos, o_row, o_pos, N, C, S, sN, sC, sS, gN, gC, gS, chunk,
        MODE: tl.constexpr, ACC: tl.constexpr, BC: tl.constexpr, BS: tl.constexpr,
    ):  # fmt: skip
        """Program (n, block of positions, block of channels of size ``chunk``): row partials go to
        ``o_row[n, position block, c]``, position partials to ``o_pos[channel split, n, s]``."""
        n = tl.program_id(0)
        sb = tl.program_id(1)
        split = tl.program_id(2)
        ss = sb * BS + tl.arange(0, BS)
        smask = ss < S
        p = tl.zeros([BS], ACC)
        if MODE >= 2:
            p = tl.load(pos + n * S + ss, mask=smask, other=0.0)
        pos_acc = tl.zeros([BS], ACC)
        lo = split * chunk
        hi = tl.minimum(C, lo + chunk)
        for c0 in range(lo, hi, BC):
            cs = c0 + tl.arange(0, BC)
            cmask = cs < hi
            mask = cmask[:, None] & smask[None, :]
            v = tl.load(x + n * sN + cs[:, None] * sC + ss[None, :] * sS, mask=mask, other=0.0).to(ACC)
            gv = tl.load(g + n * gN + cs[:, None] * gC + ss[None, :] * gS, mask=mask, other=0.0).to(ACC)
            r = tl.zeros([BC], ACC)
            if MODE >= 2:
                r = tl.load(row + n * C + cs, mask=cmask, other=0.0)
            to_row, to_pos = _grad_terms(gv, v, r[:, None], p[None, :], x, MODE)
            tl.store(o_row + (n * tl.num_programs(1) + sb) * C + cs, tl.sum(to_row, axis=1), mask=cmask)
            pos_acc += tl.sum(to_pos, axis=0)
        tl.store(o_pos + (split * N + n) * S + ss, pos_acc, mask=smask)

    @triton.jit
    def _gate_grad_kernel(
        g, x, y, row, pos, krow, f, kmax, xmax, kpos, w, C, S, sN, sC, sS, gN, gC, gS, yN, yC, yS, fC, fS,
        MODE: tl.constexpr, KROW: tl.constexpr, FILTER: tl.constexpr, KMAX: tl.constexpr, KPOS: tl.constexpr,
        ACC: tl.constexpr, BC: tl.constexpr, BS: tl.constexpr,
    ):  # fmt: skip
        n = tl.program_id(0)
        cs = tl.program_id(1) * BC + tl.arange(0, BC)
        ss = tl.program_id(2) * BS + tl.arange(0, BS)
        cmask = cs < C
        smask = ss < S
        mask = cmask[:, None] & smask[None, :]
        gv = tl.load(g + n * gN + cs[:, None] * gC + ss[None, :] * gS, mask=mask, other=0.0).to(ACC)
        v = tl.load(x + n * sN + cs[:, None] * sC + ss[None, :] * sS, mask=mask, other=0.0).to(ACC)
        r = tl.zeros([BC], ACC)
        p = tl.zeros([BS], ACC)
        if MODE != 1:
            r = tl.load(row + n * C + cs, mask=cmask, other=0.0)
        if MODE != 0:
            p = tl.load(pos + n * S + ss, mask=smask, other=0.0)
        r2 = r[:, None]
        p2 = p[None, :]
        if MODE == 0:
            direct = r2 + p2 * 0.0
        elif MODE == 1:
            direct = p2 + r2 * 0.0
        elif MODE == 3:
            a = _round(v * r2, x)
            b = _round(v * p2, x)
            share = tl.where(a > b, 1.0, 0.0) + tl.where(a == b, 0.5, 0.0)
            direct = share * r2 + (1.0 - share) * p2
        elif MODE == 4:
            direct = r2 + p2
        else:
            direct = _round(v * p2, x) * r2 + _round(v * r2, x) * p2
        d = gv * direct
        if KROW:
            k = tl.load(krow + n * C + cs, mask=cmask, other=0.0)
            if FILTER:
                filt = tl.load(f + cs[:, None] * fC + ss[None, :] * fS, mask=mask, other=0.0)
                d += k[:, None] * filt
            else:
                d += k[:, None]
        if KMAX:
            km = tl.load(kmax + n * C + cs, mask=cmask, other=0.0)
            xm = tl.load(xmax + n * C + cs, mask=cmask, other=0.0)
            d += tl.where(v == xm[:, None], km[:, None], 0.0)
        if KPOS:
            kp = tl.load(kpos + n * S + ss, mask=smask, other=0.0)
            wc = tl.load(w + cs, mask=cmask, other=0.0)
            d += kp[None, :] * wc[:, None]
        tl.store(y + n * yN + cs[:, None] * yC + ss[None, :] * yS, _round(d, y), mask=mask)

    @triton.jit
    def _filter_grad_kernel(
        x, krow, out, N, C, S, sN, sC, sS, oC, oS, ACC: tl.constexpr, BC: tl.constexpr, BS: tl.constexpr,
    ):  # fmt: skip
        cs = tl.program_id(0) * BC + tl.arange(0, BC)
        ss = tl.program_id(1) * BS + tl.arange(0, BS)
        cmask = cs < C
        mask = cmask[:, None] & (ss < S)[None, :]
        acc = tl.zeros([BC, BS], ACC)
        for n in range(0, N):
            v = tl.load(x + n * sN + cs[:, None] * sC + ss[None, :] * sS, mask=mask, other=0.0).to(ACC)
            k = tl.load(krow + n * C + cs, mask=cmask, other=0.0)
            acc += k[:, None] * v
        tl.store(out + cs[:, None] * oC + ss[None, :] * oS, acc, mask=mask)

    @triton.jit
    def _weight_grad_kernel(
        x, kpos, o_row, N, C, S, sN, sC, sS, ACC: tl.constexpr, BC: tl.constexpr, BS: tl.constexpr,
    ):  # fmt: skip
        """Row partials ``o_row[n, position block, c] = sum_s kpos[n, s] x[n, c, s]``."""
        n = tl.program_id(0)
        sb = tl.program_id(1)
        ss = sb * BS + tl.arange(0, BS)
        smask = ss < S
        k = tl.load(kpos + n * S + ss, mask=smask, other=0.0)
        for c0 in range(0, C, BC):
            cs = c0 + tl.arange(0, BC)
            cmask = cs < C
            mask = cmask[:, None] & smask[None, :]
            v = tl.load(x + n * sN + cs[:, None] * sC + ss[None, :] * sS, mask=mask, other=0.0).to(ACC)
            tl.store(
                o_row + (n * tl.num_programs(1) + sb) * C + cs, tl.sum(v * k[None, :], axis=1), mask=cmask
            )

    @triton.jit
    def _position_stats_kernel(
        x, w, rs, o_w, o_row, o_max, o_ties, o_sum, N, C, S, sN, sC, sS,
        W: tl.constexpr, ROWSUM: tl.constexpr, MAXMEAN: tl.constexpr,
        ACC: tl.constexpr, BC: tl.constexpr, BS: tl.constexpr,
    ):  # fmt: skip
        n = tl.program_id(0)
        sb = tl.program_id(1)
        ss = sb * BS + tl.arange(0, BS)
        smask = ss < S
        wacc = tl.zeros([BS], ACC)
        qsum = tl.zeros([BS], ACC)
        best = tl.full([BS], float("-inf"), ACC)
        ties = tl.zeros([BS], ACC)
        for c0 in range(0, C, BC):
            cs = c0 + tl.arange(0, BC)
            cmask = cs < C
            mask = cmask[:, None] & smask[None, :]
            v = tl.load(x + n * sN + cs[:, None] * sC + ss[None, :] * sS, mask=mask, other=0.0).to(ACC)
            if W:
                wc = tl.load(w + cs, mask=cmask, other=0.0)
                wacc += tl.sum(wc[:, None] * v, axis=0)
            if ROWSUM:
                tl.store(o_row + (n * tl.num_programs(1) + sb) * C + cs, tl.sum(v, axis=1), mask=cmask)
            if MAXMEAN:
                r = tl.load(rs + n * C + cs, mask=cmask, other=0.0)
                q = _round(v * r[:, None], x)
                qsum += tl.sum(q, axis=0)
                qm = tl.where(mask, q, float("-inf"))
                block_best = tl.max(qm, axis=0)
                block_ties = tl.sum(tl.where(qm == block_best[None, :], 1.0, 0.0).to(ACC), axis=0)
                merged = tl.maximum(best, block_best)
                ties = tl.where(best == merged, ties, 0.0) + tl.where(block_best == merged, block_ties, 0.0)
                best = merged
        if W:
            tl.store(o_w + n * S + ss, wacc, mask=smask)
        if MAXMEAN:
            tl.store(o_max + n * S + ss, best, mask=smask)
            tl.store(o_ties + n * S + ss, ties, mask=smask)
            tl.store(o_sum + n * S + ss, qsum, mask=smask)

    @triton.jit
    def _simam_kernel(
        x, g, y, mean, a, k1, k2, o_a, o_b, N, C, S, sN, sC, sS, gN, gC, gS, yN, yC, yS, chunk,
        PHASE: tl.constexpr, ACC: tl.constexpr, BC: tl.constexpr, BS: tl.constexpr,
    ):  # fmt: skip
        """PHASE 0: y = x sig; 1: row partials of h t and h t^2; 2: dx (see functions.SimAMFunction)."""
        n = tl.program_id(0)
        cs = tl.program_id(1) * BC + tl.arange(0, BC)
        cmask = cs < C
        mu = tl.load(mean + n * C + cs, mask=cmask, other=0.0)[:, None]
        aa = tl.load(a + n * C + cs, mask=cmask, other=0.0)[:, None]
        if PHASE == 1:
            split = tl.program_id(2)
            lo = split * chunk
            hi = tl.minimum(S, lo + chunk)
            sa = tl.zeros([BC], ACC)
            sb = tl.zeros([BC], ACC)
            for s0 in range(lo, hi, BS):
                ss = s0 + tl.arange(0, BS)
                mask = cmask[:, None] & (ss < hi)[None, :]
                v = tl.load(x + n * sN + cs[:, None] * sC + ss[None, :] * sS, mask=mask, other=0.0).to(ACC)
                gv = tl.load(g + n * gN + cs[:, None] * gC + ss[None, :] * gS, mask=mask, other=0.0).to(ACC)
                t = v - mu
                sig = 1.0 / (1.0 + tl.exp(-(aa * t * t + 0.5)))
                ht = gv * v * sig * (1.0 - sig) * t
                sa += tl.sum(ht, axis=1)
                sb += tl.sum(ht * t, axis=1)
            out = (split * N + n) * C + cs
            tl.store(o_a + out, sa, mask=cmask)
            tl.store(o_b + out, sb, mask=cmask)
        else:
            ss = tl.program_id(2) * BS + tl.arange(0, BS)
            mask = cmask[:, None] & (ss < S)[None, :]
            v = tl.load(x + n * sN + cs[:, None] * sC + ss[None, :] * sS, mask=mask, other=0.0).to(ACC)
            t = v - mu
            sig = 1.0 / (1.0 + tl.exp(-(aa * t * t + 0.5)))
            if PHASE == 0:
                out = v * sig
            else:
                gv = tl.load(g + n * gN + cs[:, None] * gC + ss[None, :] * gS, mask=mask, other=0.0).to(ACC)
                c1 = tl.load(k1 + n * C + cs, mask=cmask, other=0.0)[:, None]
                c2 = tl.load(k2 + n * C + cs, mask=cmask, other=0.0)[:, None]
                h = gv * v * sig * (1.0 - sig)
                out = gv * sig + 2.0 * aa * h * t + c1 + c2 * t
            tl.store(y + n * yN + cs[:, None] * yC + ss[None, :] * yS, _round(out, y), mask=mask)

    @triton.jit
    def _strip(n, c, i, C, L, STRIP_CL: tl.constexpr):
        """Offset of strip element [n, c, i] of an [N, C, L] strip: contiguous, or [N, L, C] in memory."""
        if STRIP_CL:
            off = n * C * L + i * C + c
        else:
            off = (n * C + c) * L + i
        return off

    @triton.jit
    def _axis_reduce_kernel(
        x, g, gd, gh, gw, od, oh, ow, C, D, H, W, sN, sC, sS, gN, gC, gS,
        HAS_D: tl.constexpr, GRAD: tl.constexpr, STRIP_CL: tl.constexpr,
        ACC: tl.constexpr, BC: tl.constexpr, BW: tl.constexpr,
    ):  # fmt: skip
        """Strip sums (GRAD=0) or strip gradients (GRAD=1) for a block of channels x a block of w, over
        every (d, h); the per-line totals for the h and d strips are added atomically."""
        n = tl.program_id(0)
        cs = tl.program_id(1) * BC + tl.arange(0, BC)
        ws = tl.program_id(2) * BW + tl.arange(0, BW)
        cmask = cs < C
        wmask = ws < W
        mask = cmask[:, None] & wmask[None, :]
        wgate = tl.zeros([BC, BW], ACC)
        if GRAD:
            wgate = tl.load(gw + _strip(n, cs[:, None], ws[None, :], C, W, STRIP_CL), mask=mask, other=0.0)
        acc_w = tl.zeros([BC, BW], ACC)
        for d in range(0, D):
            dgate = tl.full([BC], 1.0, ACC)
            if GRAD and HAS_D:
                dgate = tl.load(gd + _strip(n, cs, d, C, D, STRIP_CL), mask=cmask, other=0.0)
            dsum = tl.zeros([BC], ACC)
            for h in range(0, H):
                s = (d * H + h) * W + ws
                v = tl.load(x + n * sN + cs[:, None] * sC + s[None, :] * sS, mask=mask, other=0.0).to(ACC)
                if GRAD:
                    hgate = tl.load(gh + _strip(n, cs, h, C, H, STRIP_CL), mask=cmask, other=0.0)
                    gv = tl.load(g + n * gN + cs[:, None] * gC + s[None, :] * gS, mask=mask, other=0.0).to(
                        ACC
                    )
                    q = gv * v
                    acc_w += q * (hgate * dgate)[:, None]
                    line = tl.sum(q * wgate, axis=1)
                    tl.atomic_add(oh + _strip(n, cs, h, C, H, STRIP_CL), line * dgate, mask=cmask)
                    dsum += line * hgate
                else:
                    acc_w += v
                    line = tl.sum(v, axis=1)
                    tl.atomic_add(oh + _strip(n, cs, h, C, H, STRIP_CL), line, mask=cmask)
                    dsum += line
            if HAS_D:
                tl.atomic_add(od + _strip(n, cs, d, C, D, STRIP_CL), dsum, mask=cmask)
        tl.store(ow + _strip(n, cs[:, None], ws[None, :], C, W, STRIP_CL), acc_w, mask=mask)

    @triton.jit
    def _axis_elementwise_kernel(
        x, y, gd, gh, gw, kd, kh, kw, C, S, D, H, W, sN, sC, sS, yN, yC, yS,
        HAS_D: tl.constexpr, GRAD: tl.constexpr, STRIP_CL: tl.constexpr,
        ACC: tl.constexpr, BC: tl.constexpr, BS: tl.constexpr,
    ):  # fmt: skip
        """GRAD=0: y = round(round(x gw) gh) gd; GRAD=1 (x is the gradient): dx = g gw gh gd + k's."""
        n = tl.program_id(0)
        cs = tl.program_id(1) * BC + tl.arange(0, BC)
        ss = tl.program_id(2) * BS + tl.arange(0, BS)
        cmask = cs < C
        smask = ss < S
        mask = cmask[:, None] & smask[None, :]
        wi = ss % W
        hi = (ss // W) % H
        di = ss // (W * H)
        v = tl.load(x + n * sN + cs[:, None] * sC + ss[None, :] * sS, mask=mask, other=0.0).to(ACC)
        c2 = cs[:, None]
        gwv = tl.load(gw + _strip(n, c2, wi[None, :], C, W, STRIP_CL), mask=mask, other=0.0)
        ghv = tl.load(gh + _strip(n, c2, hi[None, :], C, H, STRIP_CL), mask=mask, other=0.0)
        gdv = tl.full([BC, BS], 1.0, ACC)
        if HAS_D:
            gdv = tl.load(gd + _strip(n, c2, di[None, :], C, D, STRIP_CL), mask=mask, other=0.0)
        if GRAD:
            out = v * gwv * ghv * gdv
            out += tl.load(kw + _strip(n, c2, wi[None, :], C, W, STRIP_CL), mask=mask, other=0.0)
            out += tl.load(kh + _strip(n, c2, hi[None, :], C, H, STRIP_CL), mask=mask, other=0.0)
            if HAS_D:
                out += tl.load(kd + _strip(n, c2, di[None, :], C, D, STRIP_CL), mask=mask, other=0.0)
        else:
            out = _round(_round(v * gwv, x) * ghv, x) * gdv
        tl.store(y + n * yN + cs[:, None] * yC + ss[None, :] * yS, _round(out, y), mask=mask)

    @triton.jit
    def _cbam_kernel(
        g, x, y, r, m, kmean, kmaxc, pmax, krow, kcmaxc, cmax, o_row, N, C, S,
        sN, sC, sS, gN, gC, gS, yN, yC, yS,
        chunk, STATS: tl.constexpr, ACC: tl.constexpr, BC: tl.constexpr, BS: tl.constexpr,
    ):  # fmt: skip
        n = tl.program_id(0)
        cs = tl.program_id(1) * BC + tl.arange(0, BC)
        cmask = cs < C
        rr = tl.load(r + n * C + cs, mask=cmask, other=0.0)[:, None]
        if STATS:
            split = tl.program_id(2)
            lo = split * chunk
            hi = tl.minimum(S, lo + chunk)
            acc = tl.zeros([BC], ACC)
            for s0 in range(lo, hi, BS):
                ss = s0 + tl.arange(0, BS)
                smask = ss < hi
                mask = cmask[:, None] & smask[None, :]
                v = tl.load(x + n * sN + cs[:, None] * sC + ss[None, :] * sS, mask=mask, other=0.0).to(ACC)
                gv = tl.load(g + n * gN + cs[:, None] * gC + ss[None, :] * gS, mask=mask, other=0.0).to(ACC)
                mm = tl.load(m + n * S + ss, mask=smask, other=0.0)[None, :]
                ke = tl.load(kmean + n * S + ss, mask=smask, other=0.0)[None, :]
                kx = tl.load(kmaxc + n * S + ss, mask=smask, other=0.0)[None, :]
                pm = tl.load(pmax + n * S + ss, mask=smask, other=0.0)[None, :]
                dxp = gv * mm + ke + tl.where(_round(v * rr, x) == pm, kx, 0.0)
                acc += tl.sum(tl.where(mask, dxp * v, 0.0), axis=1)
            tl.store(o_row + (split * N + n) * C + cs, acc, mask=cmask)
        else:
            ss = tl.program_id(2) * BS + tl.arange(0, BS)
            smask = ss < S
            mask = cmask[:, None] & smask[None, :]
            v = tl.load(x + n * sN + cs[:, None] * sC + ss[None, :] * sS, mask=mask, other=0.0).to(ACC)
            gv = tl.load(g + n * gN + cs[:, None] * gC + ss[None, :] * gS, mask=mask, other=0.0).to(ACC)
            mm = tl.load(m + n * S + ss, mask=smask, other=0.0)[None, :]
            ke = tl.load(kmean + n * S + ss, mask=smask, other=0.0)[None, :]
            kx = tl.load(kmaxc + n * S + ss, mask=smask, other=0.0)[None, :]
            pm = tl.load(pmax + n * S + ss, mask=smask, other=0.0)[None, :]
            dxp = gv * mm + ke + tl.where(_round(v * rr, x) == pm, kx, 0.0)
            kr = tl.load(krow + n * C + cs, mask=cmask, other=0.0)[:, None]
            kc = tl.load(kcmaxc + n * C + cs, mask=cmask, other=0.0)[:, None]
            cm = tl.load(cmax + n * C + cs, mask=cmask, other=0.0)[:, None]
            out = dxp * rr + kr + tl.where(v == cm, kc, 0.0)
            tl.store(y + n * yN + cs[:, None] * yC + ss[None, :] * yS, _round(out, y), mask=mask)


# ---------------------------------------------------------------------------------------------------
# Launch helpers


def _acc(x: Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _tl_acc(x: Tensor):
    return tl.float64 if x.dtype == torch.float64 else tl.float32


def _blocks(channels_last: bool) -> tuple[int, int]:
    """``(BC, BS)``: tiles long along the unit-stride axis."""
    return (64, 32) if channels_last else (16, 128)


def _programs_wanted(x: Tensor) -> int:
    if x.is_cuda:
        return 4 * torch.cuda.get_device_properties(x.device).multi_processor_count
    return 4


def _split(x: Tensor, parallel: int, length: int, block: int) -> tuple[int, int]:
    """``(splits, chunk)``: split a reduction over ``length`` into ``splits`` programs of ``chunk``
    (a multiple of ``block``) so that ``parallel * splits`` programs keep the device busy."""
    splits = max(1, min(math.ceil(_programs_wanted(x) / max(parallel, 1)), math.ceil(length / block)))
    chunk = math.ceil(math.ceil(length / splits) / block) * block
    return math.ceil(length / chunk), chunk


def _strides(t: Tensor | None) -> tuple[int, int, int]:
    return (t.stride(0), t.stride(1), t.stride(2)) if t is not None else (0, 0, 0)


def _empty(x: Tensor) -> Tensor:
    return torch.empty(0, dtype=_acc(x), device=x.device)


def _combine_max(best: Tensor, ties: Tensor) -> tuple[Tensor, Tensor]:
    top = best.amax(0)
    return top, torch.where(best == top.unsqueeze(0), ties, torch.zeros_like(ties)).sum(0)


# ---------------------------------------------------------------------------------------------------
# The kernel functions (contract: see _torch_ops)


def channel_stats(x: Tensor, channels_last: bool, filter: Tensor | None, with_max: bool) -> list[Tensor]:
    N, C, S = x.shape
    BC, BS = _blocks(channels_last)
    splits, chunk = _split(x, N * triton.cdiv(C, BC), S, BS)
    acc = _acc(x)
    sums = torch.empty(splits, N, C, dtype=acc, device=x.device)
    best = torch.empty_like(sums) if with_max else sums
    ties = torch.empty_like(sums) if with_max else sums
    f = filter if filter is not None else sums
    fC, fS = (filter.stride(0), filter.stride(1)) if filter is not None else (0, 0)
    _channel_stats_kernel[(N, triton.cdiv(C, BC), splits)](
        x, f, sums, best, ties, N, C, S, *_strides(x), fC, fS, chunk,
        FILTER=filter is not None, MAX=with_max, ACC=_tl_acc(x), BC=BC, BS=BS,
    )  # fmt: skip
    if not with_max:
        return [sums.sum(0), _empty(x), _empty(x)]
    top, count = _combine_max(best, ties)
    return [sums.sum(0), top, count]


def channel_moments(x: Tensor, channels_last: bool) -> list[Tensor]:
    N, C, S = x.shape
    BC, BS = _blocks(channels_last)
    splits, chunk = _split(x, N * triton.cdiv(C, BC), S, BS)
    s1 = torch.empty(splits, N, C, dtype=_acc(x), device=x.device)
    s2 = torch.empty_like(s1)
    _moments_kernel[(N, triton.cdiv(C, BC), splits)](
        x, s1, s2, N, C, S, *_strides(x), chunk, ACC=_tl_acc(x), BC=BC, BS=BS
    )
    shift = x[:, :, 0].to(_acc(x))
    a, b = s1.sum(0), s2.sum(0)
    return [shift + a / S, (b - a * a / S).clamp_min(0)]


def gate_apply(
    x: Tensor, channels_last: bool, row: Tensor | None, pos: Tensor | None, mode: int, out: Tensor
):
    N, C, S = x.shape
    BC, BS = _blocks(channels_last)
    dummy = row if row is not None else pos
    _gate_apply_kernel[(N, triton.cdiv(C, BC), triton.cdiv(S, BS))](
        x, out, row if row is not None else dummy, pos if pos is not None else dummy, C, S, *_strides(x),
        *_strides(out), MODE=mode, ACC=_tl_acc(x), BC=BC, BS=BS,
    )  # fmt: skip


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
    N, C, S = x.shape
    BC, BS = _blocks(channels_last)
    blocks = triton.cdiv(S, BS)
    splits, chunk = _split(x, N * blocks, C, BC)
    acc = _acc(x)
    row_part = torch.empty(N, blocks, C, dtype=acc, device=x.device)
    pos_part = torch.empty(splits, N, S, dtype=acc, device=x.device)
    small = row if row is not None else (pos if pos is not None else row_part)
    _gate_grad_stats_kernel[(N, blocks, splits)](
        grad, x, row if row is not None else small, pos if pos is not None else small, row_part, pos_part,
        N, C, S, *_strides(x), *_strides(grad), chunk, MODE=mode, ACC=_tl_acc(x), BC=BC, BS=BS,
    )  # fmt: skip
    return [row_part.sum(1) if want_row else _empty(x), pos_part.sum(0) if want_pos else _empty(x)]


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
    N, C, S = x.shape
    BC, BS = _blocks(channels_last)
    dummy = next(t for t in (row, pos, krow, kpos) if t is not None)

    def given(t: Tensor | None) -> Tensor:
        return t if t is not None else dummy

    fC, fS = (filter.stride(0), filter.stride(1)) if filter is not None else (0, 0)
    _gate_grad_kernel[(N, triton.cdiv(C, BC), triton.cdiv(S, BS))](
        grad, x, out, given(row), given(pos), given(krow), given(filter), given(kmax), given(xmax),
        given(kpos),
        given(weight), C, S, *_strides(x), *_strides(grad), *_strides(out), fC, fS,
        MODE=mode, KROW=krow is not None, FILTER=filter is not None, KMAX=kmax is not None,
        KPOS=kpos is not None, ACC=_tl_acc(x), BC=BC, BS=BS,
    )  # fmt: skip


def filter_grad(x: Tensor, channels_last: bool, krow: Tensor) -> Tensor:
    N, C, S = x.shape
    BC, BS = _blocks(channels_last)
    out = torch.empty(S, C, dtype=_acc(x), device=x.device).t() if channels_last else None
    if out is None:
        out = torch.empty(C, S, dtype=_acc(x), device=x.device)
    _filter_grad_kernel[(triton.cdiv(C, BC), triton.cdiv(S, BS))](
        x, krow, out, N, C, S, *_strides(x), out.stride(0), out.stride(1), ACC=_tl_acc(x), BC=BC, BS=BS
    )
    return out


def weight_grad(x: Tensor, channels_last: bool, kpos: Tensor) -> Tensor:
    N, C, S = x.shape
    BC, BS = _blocks(channels_last)
    blocks = triton.cdiv(S, BS)
    part = torch.empty(N, blocks, C, dtype=_acc(x), device=x.device)
    _weight_grad_kernel[(N, blocks)](x, kpos, part, N, C, S, *_strides(x), ACC=_tl_acc(x), BC=BC, BS=BS)
    return part.sum((0, 1))


def position_stats(
    x: Tensor, channels_last: bool, weight: Tensor | None, rowscale: Tensor | None, want_rowsum: bool
) -> list[Tensor]:
    N, C, S = x.shape
    BC, BS = _blocks(channels_last)
    blocks = triton.cdiv(S, BS)
    acc = _acc(x)
    wsum = torch.empty(N, S, dtype=acc, device=x.device) if weight is not None else _empty(x)
    row_part = torch.empty(N, blocks, C, dtype=acc, device=x.device) if want_rowsum else _empty(x)
    maxmean = rowscale is not None
    best = torch.empty(N, S, dtype=acc, device=x.device) if maxmean else _empty(x)
    ties = torch.empty_like(best)
    qsum = torch.empty_like(best)
    dummy = weight if weight is not None else rowscale
    _position_stats_kernel[(N, blocks)](
        x, weight if weight is not None else dummy, rowscale if maxmean else dummy,
        wsum, row_part, best, ties,
        qsum, N, C, S, *_strides(x), W=weight is not None, ROWSUM=want_rowsum, MAXMEAN=maxmean,
        ACC=_tl_acc(x), BC=BC, BS=BS,
    )  # fmt: skip
    return [wsum, row_part.sum(1) if want_rowsum else row_part, best, ties, qsum]


def _simam(phase: int, x, grad, out, mean, a, k1, k2, channels_last):
    N, C, S = x.shape
    BC, BS = _blocks(channels_last)
    if phase == 1:
        splits, chunk = _split(x, N * triton.cdiv(C, BC), S, BS)
        part_a = torch.empty(splits, N, C, dtype=_acc(x), device=x.device)
        part_b = torch.empty_like(part_a)
        grid = (N, triton.cdiv(C, BC), splits)
    else:
        chunk, part_a, part_b = 0, mean, mean
        grid = (N, triton.cdiv(C, BC), triton.cdiv(S, BS))
    _simam_kernel[grid](
        x, grad if grad is not None else x, out if out is not None else x, mean, a,
        k1 if k1 is not None else mean, k2 if k2 is not None else mean, part_a, part_b, N, C, S,
        *_strides(x), *_strides(grad if grad is not None else x),
        *_strides(out if out is not None else x), chunk,
        PHASE=phase, ACC=_tl_acc(x), BC=BC, BS=BS,
    )  # fmt: skip
    if phase == 1:
        return [part_a.sum(0), part_b.sum(0)]
    return None


def simam_forward(x: Tensor, channels_last: bool, mean: Tensor, a: Tensor, out: Tensor):
    _simam(0, x, None, out, mean, a, None, None, channels_last)


def simam_grad_stats(grad: Tensor, x: Tensor, channels_last: bool, mean: Tensor, a: Tensor) -> list[Tensor]:
    return _simam(1, x, grad, None, mean, a, None, None, channels_last)


def simam_grad(
    grad: Tensor, x: Tensor, channels_last: bool, mean: Tensor, a: Tensor, k1: Tensor, k2: Tensor, out: Tensor
):
    _simam(2, x, grad, out, mean, a, k1, k2, channels_last)


def _new_strip(x: Tensor, length: int, channels_last: bool) -> Tensor:
    N, C = x.shape[0], x.shape[1]
    if channels_last:
        return torch.zeros(N, length, C, dtype=_acc(x), device=x.device).transpose(1, 2)
    return torch.zeros(N, C, length, dtype=_acc(x), device=x.device)


def _axis_reduce(x, grad, D, H, W, gd, gh, gw, with_d, channels_last):
    N, C, _ = x.shape
    BC = 64 if channels_last else 16
    BW = min(triton.next_power_of_2(W), 128)
    od = _new_strip(x, D, channels_last) if with_d else _new_strip(x, 1, channels_last)
    oh = _new_strip(x, H, channels_last)
    ow = _new_strip(x, W, channels_last)
    g = grad if grad is not None else x
    _axis_reduce_kernel[(N, triton.cdiv(C, BC), triton.cdiv(W, BW))](
        x, g, gd if gd is not None else oh, gh if gh is not None else oh, gw if gw is not None else oh,
        od, oh, ow, C, D, H, W, *_strides(x), *_strides(g),
        HAS_D=with_d, GRAD=grad is not None, STRIP_CL=channels_last, ACC=_tl_acc(x), BC=BC, BW=BW,
    )  # fmt: skip
    return [od if with_d else _empty(x), oh, ow]


def axis_sums(x: Tensor, channels_last: bool, D: int, H: int, W: int, with_d: bool) -> list[Tensor]:
    return _axis_reduce(x, None, D, H, W, None, None, None, with_d, channels_last)


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
    return _axis_reduce(x, grad, D, H, W, gd, gh, gw, gd is not None, channels_last)


def _axis_elementwise(x, out, D, H, W, gd, gh, gw, kd, kh, kw, grad_mode, channels_last):
    N, C, S = x.shape
    BC, BS = _blocks(channels_last)
    _axis_elementwise_kernel[(N, triton.cdiv(C, BC), triton.cdiv(S, BS))](
        x, out, gd if gd is not None else gh, gh, gw, kd if kd is not None else gh,
        kh if kh is not None else gh,
        kw if kw is not None else gh, C, S, D, H, W, *_strides(x), *_strides(out),
        HAS_D=gd is not None, GRAD=grad_mode, STRIP_CL=channels_last, ACC=_tl_acc(x), BC=BC, BS=BS,
    )  # fmt: skip


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
    _axis_elementwise(x, out, D, H, W, gd, gh, gw, None, None, None, False, channels_last)


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
    _axis_elementwise(grad, out, D, H, W, gd, gh, gw, kd, kh, kw, True, channels_last)


def _cbam(stats: bool, grad, x, r, m, kmean, kmaxc, pmax, krow, kcmaxc, cmax, out, channels_last):
    N, C, S = x.shape
    BC, BS = _blocks(channels_last)
    if stats:
        splits, chunk = _split(x, N * triton.cdiv(C, BC), S, BS)
        part = torch.empty(splits, N, C, dtype=_acc(x), device=x.device)
        grid = (N, triton.cdiv(C, BC), splits)
    else:
        chunk, part = 0, r
        grid = (N, triton.cdiv(C, BC), triton.cdiv(S, BS))
    _cbam_kernel[grid](
        grad, x, out if out is not None else x, r, m, kmean, kmaxc, pmax,
        krow if krow is not None else r, kcmaxc if kcmaxc is not None else r, cmax if cmax is not None else r,
        part, N, C, S, *_strides(x), *_strides(grad), *_strides(out if out is not None else x), chunk,
        STATS=stats, ACC=_tl_acc(x), BC=BC, BS=BS,
    )  # fmt: skip
    return part.sum(0) if stats else None


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
    return _cbam(True, grad, x, r, m, kmean, kmaxc, pmax, None, None, None, None, channels_last)


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
    _cbam(False, grad, x, r, m, kmean, kmaxc, pmax, krow, kcmaxc, cmax, out, channels_last)


# CBAM's spatial convolution runs on cuDNN, which handles these small maps well: the torch-op versions.
from ._torch_ops import small_conv, small_conv_input_grad, small_conv_weight_grad  # noqa: E402, F401
