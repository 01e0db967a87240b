"""Triton kernels of the attention gate: one pass forward (both 1x1 projections, relu, psi, sigmoid and the gating
multiply fused; x and g read once) and one pass backward (recomputes the projections, writes dx, dg and the weight
gradients). The backward is persistent: a fixed number of programs (about twice the SM count) each loop over many
pixel tiles, keep their weight-gradient sums in registers and write them once as a per-program partial row; one torch
sum over the rows finishes the reduction (deterministic, no atomics)."""
from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl

from .._nd import next_pow2
from .._triton import TL_DTYPE as _TL

__all__ = ["gate_fwd_triton", "gate_bwd_triton", "wgrad_sizes"]


@triton.jit
def _project(acc, src_ptr, w_ptr, b, offs_n, mask_n, C, s_b, s_c, s_n, offs_f, mask_f,
             BK: tl.constexpr, DT: tl.constexpr):
    """acc[F, BN] += W[F, C] @ src[b, C, offs_n]."""
    for c0 in range(0, C, BK):
        offs_c = c0 + tl.arange(0, BK)
        mask_c = offs_c < C
        t = tl.load(src_ptr + b * s_b + offs_c[:, None] * s_c + offs_n[None, :] * s_n,
                    mask=mask_c[:, None] & mask_n[None, :], other=0.0)
        w = tl.load(w_ptr + offs_f[:, None] * C + offs_c[None, :], mask=mask_f[:, None] & mask_c[None, :], other=0.0)
        acc += tl.dot(w.to(DT), t.to(DT))
    return acc


@triton.jit
def _gate_alpha(x_ptr, g_ptr, wx_ptr, wg_ptr, bx_ptr, bg_ptr, wpsi_ptr, bpsi_ptr, b, offs_n, mask_n, offs_f, mask_f,
                F, CX, CG, sxb, sxc, sxn, sgb, sgc, sgn, HAS_BX: tl.constexpr, HAS_BG: tl.constexpr,
                HAS_BPSI: tl.constexpr, BF: tl.constexpr, BN: tl.constexpr, BKX: tl.constexpr, BKG: tl.constexpr,
                DT: tl.constexpr):
    """The pixel tile (batch b, offs_n)'s pre-activation h [F, BN], s = relu(h), wpsi [F] and alpha [BN]."""
    h = tl.zeros([BF, BN], dtype=tl.float32)
    h = _project(h, x_ptr, wx_ptr, b, offs_n, mask_n, CX, sxb, sxc, sxn, offs_f, mask_f, BKX, DT)
    h = _project(h, g_ptr, wg_ptr, b, offs_n, mask_n, CG, sgb, sgc, sgn, offs_f, mask_f, BKG, DT)
    if HAS_BX:
        h += tl.load(bx_ptr + offs_f, mask=mask_f, other=0.0).to(tl.float32)[:, None]
    if HAS_BG:
        h += tl.load(bg_ptr + offs_f, mask=mask_f, other=0.0).to(tl.float32)[:, None]
    s = tl.maximum(h, 0.0)
    wpsi = tl.load(wpsi_ptr + offs_f, mask=mask_f, other=0.0).to(tl.float32)
    logit = tl.sum(s * wpsi[:, None], axis=0)
    if HAS_BPSI:
        logit += tl.load(bpsi_ptr).to(tl.float32)
    alpha = tl.sigmoid(logit)
    return h, s, wpsi, alpha


@triton.jit
def _gate_fwd_kernel(x_ptr, g_ptr, wx_ptr, wg_ptr, bx_ptr, bg_ptr, wpsi_ptr, bpsi_ptr, out_ptr, alpha_ptr,
                     N, CX, CG, F,
                     sxb, sxc, sxn, sgb, sgc, sgn, sob, soc, son, sab, san,
                     HAS_BX: tl.constexpr, HAS_BG: tl.constexpr, HAS_BPSI: tl.constexpr,
                     BN: tl.constexpr, BF: tl.constexpr, BKX: tl.constexpr, BKG: tl.constexpr, DT: tl.constexpr):
    b = tl.program_id(1).to(tl.int64)
    offs_n = tl.program_id(0) * BN + tl.arange(0, BN)
    mask_n = offs_n < N
    offs_f = tl.arange(0, BF)
    mask_f = offs_f < F
    h, s, wpsi, alpha = _gate_alpha(
        x_ptr, g_ptr, wx_ptr, wg_ptr, bx_ptr, bg_ptr, wpsi_ptr, bpsi_ptr, b, offs_n, mask_n, offs_f, mask_f,
        F, CX, CG, sxb, sxc, sxn, sgb, sgc, sgn, HAS_BX, HAS_BG, HAS_BPSI, BF, BN, BKX, BKG, DT)
    tl.store(alpha_ptr + b * sab + offs_n * san, alpha.to(alpha_ptr.dtype.element_ty), mask=mask_n)
    for c0 in range(0, CX, BKX):
        offs_c = c0 + tl.arange(0, BKX)
        m = (offs_c < CX)[:, None] & mask_n[None, :]
        t = tl.load(x_ptr + b * sxb + offs_c[:, None] * sxc + offs_n[None, :] * sxn, mask=m, other=0.0)
        y = t.to(tl.float32) * alpha[None, :]
        tl.store(out_ptr + b * sob + offs_c[:, None] * soc + offs_n[None, :] * son, y.to(out_ptr.dtype.element_ty),
                 mask=m)


@triton.jit
def _input_grad(acc, dsrc_ptr, src_ptr, w_ptr, dh, b, offs_n, mask_n, offs_c, mask_c, C, s_b, s_c, s_n,
                d_b, d_c, d_n, offs_f, mask_f, dout_ptr, sdb, sdc, sdn, alpha, HAS_DIRECT: tl.constexpr,
                DT: tl.constexpr):
    """dsrc[b, offs_c, offs_n] = W[F, offs_c]^T @ dh (+ dout * alpha for x, whose direct path is the gating
    multiply); returns acc + dh @ src[b, offs_c, offs_n]^T (this tile's share of dW[F, offs_c])."""
    m = mask_c[:, None] & mask_n[None, :]
    wt = tl.load(w_ptr + offs_f[None, :] * C + offs_c[:, None], mask=mask_f[None, :] & mask_c[:, None], other=0.0)
    d = tl.dot(wt.to(DT), dh)
    if HAS_DIRECT:
        do = tl.load(dout_ptr + b * sdb + offs_c[:, None] * sdc + offs_n[None, :] * sdn, mask=m, other=0.0)
        d += do.to(tl.float32) * alpha[None, :]
    tl.store(dsrc_ptr + b * d_b + offs_c[:, None] * d_c + offs_n[None, :] * d_n, d.to(dsrc_ptr.dtype.element_ty),
             mask=m)
    t = tl.load(src_ptr + b * s_b + offs_c[:, None] * s_c + offs_n[None, :] * s_n, mask=m, other=0.0)
    return tl.dot(dh, tl.trans(t.to(DT)), acc)


@triton.jit
def _gate_bwd_kernel(x_ptr, g_ptr, wx_ptr, wg_ptr, bx_ptr, bg_ptr, wpsi_ptr, bpsi_ptr, dout_ptr, dalpha_ptr,
                     dx_ptr, dg_ptr, part_ptr,
                     N, CX, CG, F, TILES_N, NUM_TILES, NPROG, NBLK, ROW,
                     sxb, sxc, sxn, sgb, sgc, sgn, sdb, sdc, sdn, sab, san,
                     sdxb, sdxc, sdxn, sdgb, sdgc, sdgn,
                     HAS_DALPHA: tl.constexpr, HAS_BX: tl.constexpr, HAS_BG: tl.constexpr, HAS_BPSI: tl.constexpr,
                     BN: tl.constexpr, BF: tl.constexpr, BKX: tl.constexpr, BKG: tl.constexpr,
                     BWX: tl.constexpr, BWG: tl.constexpr, DT: tl.constexpr):
    """Program (p, k) takes pixel tiles p, p + NPROG, ... (tile = batch-major over (B, cdiv(N, BN))) and channel
    block k < NBLK of Cx and Cg: it writes dx, dg there and row p of the partials [dWx | dWg | dbx | dbg | dwpsi |
    dbpsi] (block k of the weights; the vectors from k = 0 only). k varies fastest, so the programs sharing a tile run
    side by side and re-read it from L2."""
    pid = tl.program_id(0) // NBLK
    k = tl.program_id(0) % NBLK
    offs_f = tl.arange(0, BF)
    mask_f = offs_f < F
    offs_cx = k * BWX + tl.arange(0, BWX)
    mask_cx = offs_cx < CX
    offs_cg = k * BWG + tl.arange(0, BWG)
    mask_cg = offs_cg < CG
    acc_wx = tl.zeros([BF, BWX], dtype=tl.float32)
    acc_wg = tl.zeros([BF, BWG], dtype=tl.float32)
    acc_b = tl.zeros([BF], dtype=tl.float32)
    acc_psi = tl.zeros([BF], dtype=tl.float32)
    acc_dp = tl.zeros([BN], dtype=tl.float32)
    for tile in range(pid, NUM_TILES, NPROG):
        b = (tile // TILES_N).to(tl.int64)
        offs_n = (tile % TILES_N) * BN + tl.arange(0, BN)
        mask_n = offs_n < N
        h, s, wpsi, alpha = _gate_alpha(
            x_ptr, g_ptr, wx_ptr, wg_ptr, bx_ptr, bg_ptr, wpsi_ptr, bpsi_ptr, b, offs_n, mask_n, offs_f, mask_f,
            F, CX, CG, sxb, sxc, sxn, sgb, sgc, sgn, HAS_BX, HAS_BG, HAS_BPSI, BF, BN, BKX, BKG, DT)
        # d alpha = sum_c dout * x (+ the gradient reaching the alpha output)
        da = tl.zeros([BN], dtype=tl.float32)
        for c0 in range(0, CX, BKX):
            offs_c = c0 + tl.arange(0, BKX)
            m = (offs_c < CX)[:, None] & mask_n[None, :]
            t = tl.load(x_ptr + b * sxb + offs_c[:, None] * sxc + offs_n[None, :] * sxn, mask=m, other=0.0)
            do = tl.load(dout_ptr + b * sdb + offs_c[:, None] * sdc + offs_n[None, :] * sdn, mask=m, other=0.0)
            da += tl.sum(t.to(tl.float32) * do.to(tl.float32), axis=0)
        if HAS_DALPHA:
            da += tl.load(dalpha_ptr + b * sab + offs_n * san, mask=mask_n, other=0.0).to(tl.float32)
        dp = tl.where(mask_n, da * alpha * (1.0 - alpha), 0.0)
        dh = tl.where(h > 0, wpsi[:, None] * dp[None, :], 0.0)
        acc_dp += dp
        acc_psi += tl.sum(s * dp[None, :], axis=1)
        acc_b += tl.sum(dh, axis=1)
        dh_lo = dh.to(DT)
        acc_wx = _input_grad(acc_wx, dx_ptr, x_ptr, wx_ptr, dh_lo, b, offs_n, mask_n, offs_cx, mask_cx, CX,
                             sxb, sxc, sxn, sdxb, sdxc, sdxn, offs_f, mask_f, dout_ptr, sdb, sdc, sdn, alpha, True, DT)
        acc_wg = _input_grad(acc_wg, dg_ptr, g_ptr, wg_ptr, dh_lo, b, offs_n, mask_n, offs_cg, mask_cg, CG,
                             sgb, sgc, sgn, sdgb, sdgc, sdgn, offs_f, mask_f, dout_ptr, sdb, sdc, sdn, alpha, False, DT)
    row = part_ptr + pid.to(tl.int64) * ROW
    tl.store(row + offs_f[:, None] * CX + offs_cx[None, :], acc_wx, mask=mask_f[:, None] & mask_cx[None, :])
    tl.store(row + F * CX + offs_f[:, None] * CG + offs_cg[None, :], acc_wg, mask=mask_f[:, None] & mask_cg[None, :])
    vec = row + F * (CX + CG)
    if k == 0:
        tl.store(vec + offs_f, acc_b, mask=mask_f)
        tl.store(vec + F + offs_f, acc_b, mask=mask_f)
        tl.store(vec + 2 * F + offs_f, acc_psi, mask=mask_f)
        tl.store(vec + 3 * F, tl.sum(acc_dp, axis=0))


# Tile sizes (tuned on an H100; any powers of two >= 16 are valid): pixels per tile for F <= 32 / F > 32, channel
# chunk of the projections, warps; backward: fp32 elements of one [F, channel block] weight-gradient accumulator held
# in registers (wider Cx or Cg is split into blocks, each its own program that recomputes the tile's projections),
# and programs per SM (the interpreter, without SMs, gets `interp_programs`).
CFG = {"bn_small_f": 128, "bn_large_f": 64, "bk": 64, "warps": 4, "bwd_warps": 4, "acc_elems": 4096,
       "programs_per_sm": 2, "interp_programs": 3}


def _blocks(n: int, cx: int, cg: int, f: int) -> tuple[int, int, int, int]:
    bf = max(16, next_pow2(f))
    bkx = min(CFG["bk"], max(16, next_pow2(cx)))
    bkg = min(CFG["bk"], max(16, next_pow2(cg)))
    bn = CFG["bn_small_f"] if bf <= 32 else CFG["bn_large_f"]
    return min(bn, max(16, next_pow2(n))), bf, bkx, bkg


def _grad_block(c: int, bf: int) -> int:
    """Channel block of one weight-gradient accumulator: all of c when [bf, c] fits the register budget."""
    return max(16, min(next_pow2(c), next_pow2(CFG["acc_elems"] // bf + 1) // 2))


@functools.lru_cache(maxsize=None)
def _sm_count(device: torch.device) -> int:
    return torch.cuda.get_device_properties(device).multi_processor_count


def _target_programs(device: torch.device) -> int:
    if device.type == "cuda":
        return CFG["programs_per_sm"] * _sm_count(device)
    return CFG["interp_programs"]


def _flat(t: torch.Tensor) -> torch.Tensor:
    return t.flatten(2)


def _bias_args(bx: torch.Tensor | None, bg: torch.Tensor | None, bpsi: torch.Tensor | None, dummy: torch.Tensor
               ) -> tuple[list[torch.Tensor], dict[str, bool]]:
    """Bias pointers (an absent bias is passed as `dummy` and never read) and the HAS_* flags."""
    return ([dummy if b is None else b for b in (bx, bg, bpsi)],
            {"HAS_BX": bx is not None, "HAS_BG": bg is not None, "HAS_BPSI": bpsi is not None})


def gate_fwd_triton(x: torch.Tensor, g: torch.Tensor, wx: torch.Tensor, wg: torch.Tensor, bx: torch.Tensor | None,
                    bg: torch.Tensor | None, wpsi: torch.Tensor, bpsi: torch.Tensor | None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Fused forward. x [B, Cx, *s], g [B, Cg, *s] (any strides); contiguous weights wx [F, Cx, 1...], wg [F, Cg, 1...],
    wpsi [1, F, 1...]; biases bx, bg [F], bpsi [1] or None; any float dtypes."""
    out = torch.empty_like(x)
    alpha = torch.empty_like(x[:, :1])
    B, CX, CG, F = x.shape[0], x.shape[1], g.shape[1], wx.shape[0]
    xf, gf, of, af = _flat(x), _flat(g), _flat(out), _flat(alpha)
    N = xf.shape[2]
    bn, bf, bkx, bkg = _blocks(N, CX, CG, F)
    (bx, bg, bpsi), flags = _bias_args(bx, bg, bpsi, wpsi)
    grid = (triton.cdiv(N, bn), B)
    _gate_fwd_kernel[grid](xf, gf, wx, wg, bx, bg, wpsi, bpsi, of, af, N, CX, CG, F,
                           *xf.stride(), *gf.stride(), *of.stride(), af.stride(0), af.stride(2), **flags,
                           BN=bn, BF=bf, BKX=bkx, BKG=bkg, DT=_TL[x.dtype], num_warps=CFG["warps"])
    return out, alpha


def gate_bwd_triton(x: torch.Tensor, g: torch.Tensor, wx: torch.Tensor, wg: torch.Tensor, bx: torch.Tensor | None,
                    bg: torch.Tensor | None, wpsi: torch.Tensor, bpsi: torch.Tensor | None, dout: torch.Tensor,
                    dalpha: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Fused backward (arguments as `gate_fwd_triton`'s plus the output gradients, any strides).
    Returns dx, dg and the fp32 weight gradients in one flat buffer, split by `wgrad_sizes`."""
    B, CX, CG, F = x.shape[0], x.shape[1], g.shape[1], wx.shape[0]
    dx, dg = torch.empty_like(x), torch.empty_like(g)
    xf, gf, dof, dxf, dgf = _flat(x), _flat(g), _flat(dout), _flat(dx), _flat(dg)
    N = xf.shape[2]
    daf = _flat(dalpha) if dalpha is not None else dof
    bn, bf, bkx, bkg = _blocks(N, CX, CG, F)
    bwx, bwg = _grad_block(CX, bf), _grad_block(CG, bf)
    blocks = max(triton.cdiv(CX, bwx), triton.cdiv(CG, bwg))
    tiles_n = triton.cdiv(N, bn)
    nprog = max(1, min(B * tiles_n, _target_programs(x.device) // blocks))
    row = F * (CX + CG + 3) + 1
    part = torch.empty(nprog, row, device=x.device, dtype=torch.float32)
    (bx, bg, bpsi), flags = _bias_args(bx, bg, bpsi, wpsi)
    _gate_bwd_kernel[(nprog * blocks,)](
        xf, gf, wx, wg, bx, bg, wpsi, bpsi, dof, daf, dxf, dgf, part, N, CX, CG, F, tiles_n, B * tiles_n, nprog, blocks,
        row,
        *xf.stride(), *gf.stride(), *dof.stride(), daf.stride(0), daf.stride(2), *dxf.stride(), *dgf.stride(),
        HAS_DALPHA=dalpha is not None, **flags, BN=bn, BF=bf, BKX=bkx, BKG=bkg, BWX=bwx, BWG=bwg, DT=_TL[x.dtype],
        num_warps=CFG["bwd_warps"])
    return dx, dg, part.sum(0)


def wgrad_sizes(f: int, cx: int, cg: int) -> tuple[int, ...]:
    """Lengths of dWx, dWg, dbx, dbg, dwpsi and dbpsi, in this order, in `gate_bwd_triton`'s flat weight gradients."""
    return f * cx, f * cg, f, f, f, 1
