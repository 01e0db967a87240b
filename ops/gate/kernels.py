"""Triton kernels of the attention gate: one pass forward (both 1x1 projections, relu, psi, sigmoid and the gating
multiply fused; x and g read once) and one pass backward (recomputes the projections, writes dx, dg and accumulates
the weight gradients with fp32 atomics)."""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .._nd import next_pow2
from .._triton import TL_DTYPE as _TL

__all__ = ["gate_fwd_triton", "gate_bwd_triton"]


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
def _gate_alpha(x_ptr, g_ptr, wx_ptr, wg_ptr, bx_ptr, bg_ptr, wpsi_ptr, bpsi_ptr, N, F, CX, CG,
                sxb, sxc, sxn, sgb, sgc, sgn, BF: tl.constexpr, BN: tl.constexpr, BKX: tl.constexpr,
                BKG: tl.constexpr, DT: tl.constexpr):
    """This program's pixel tile (batch b, offs_n, offs_f and masks), its pre-activation h [F, BN], s = relu(h),
    wpsi [F] and alpha [BN]."""
    b = tl.program_id(1).to(tl.int64)
    offs_n = tl.program_id(0) * BN + tl.arange(0, BN)
    mask_n = offs_n < N
    offs_f = tl.arange(0, BF)
    mask_f = offs_f < F
    h = tl.zeros([BF, BN], dtype=tl.float32)
    h = _project(h, x_ptr, wx_ptr, b, offs_n, mask_n, CX, sxb, sxc, sxn, offs_f, mask_f, BKX, DT)
    h = _project(h, g_ptr, wg_ptr, b, offs_n, mask_n, CG, sgb, sgc, sgn, offs_f, mask_f, BKG, DT)
    bias = tl.load(bx_ptr + offs_f, mask=mask_f, other=0.0).to(tl.float32) \
        + tl.load(bg_ptr + offs_f, mask=mask_f, other=0.0).to(tl.float32)
    h += bias[:, None]
    s = tl.maximum(h, 0.0)
    wpsi = tl.load(wpsi_ptr + offs_f, mask=mask_f, other=0.0).to(tl.float32)
    alpha = tl.sigmoid(tl.sum(s * wpsi[:, None], axis=0) + tl.load(bpsi_ptr).to(tl.float32))
    return b, offs_n, mask_n, offs_f, mask_f, h, s, wpsi, alpha


@triton.jit
def _gate_fwd_kernel(x_ptr, g_ptr, wx_ptr, wg_ptr, bx_ptr, bg_ptr, wpsi_ptr, bpsi_ptr, out_ptr, alpha_ptr,
                     N, CX, CG, F,
                     sxb, sxc, sxn, sgb, sgc, sgn, sob, soc, son, sab, san,
                     BN: tl.constexpr, BF: tl.constexpr, BKX: tl.constexpr, BKG: tl.constexpr, DT: tl.constexpr):
    b, offs_n, mask_n, offs_f, mask_f, h, s, wpsi, alpha = _gate_alpha(
        x_ptr, g_ptr, wx_ptr, wg_ptr, bx_ptr, bg_ptr, wpsi_ptr, bpsi_ptr, N, F, CX, CG, sxb, sxc, sxn, sgb, sgc, sgn,
        BF, BN, BKX, BKG, DT)
    tl.store(alpha_ptr + b * sab + offs_n * san, alpha.to(alpha_ptr.dtype.element_ty), mask=mask_n)
    for c0 in range(0, CX, BKX):
        offs_c = c0 + tl.arange(0, BKX)
        m = (offs_c < CX)[:, None] & mask_n[None, :]
        t = tl.load(x_ptr + b * sxb + offs_c[:, None] * sxc + offs_n[None, :] * sxn, mask=m, other=0.0)
        y = t.to(tl.float32) * alpha[None, :]
        tl.store(out_ptr + b * sob + offs_c[:, None] * soc + offs_n[None, :] * son, y.to(out_ptr.dtype.element_ty),
                 mask=m)


@triton.jit
def _input_grad(dsrc_ptr, src_ptr, w_ptr, dw_ptr, dh, b, offs_n, mask_n, C, s_b, s_c, s_n, d_b, d_c, d_n,
                offs_f, mask_f, dout_ptr, sdb, sdc, sdn, alpha, HAS_DIRECT: tl.constexpr, BK: tl.constexpr,
                DT: tl.constexpr):
    """dsrc[b, C, offs_n] = W[F, C]^T @ dh (+ dout * alpha for x, whose direct path is the gating multiply);
    dW[F, C] += dh @ src^T over this tile (fp32 atomics)."""
    for c0 in range(0, C, BK):
        offs_c = c0 + tl.arange(0, BK)
        mask_c = offs_c < C
        m = mask_c[:, None] & mask_n[None, :]
        wt = tl.load(w_ptr + offs_f[None, :] * C + offs_c[:, None], mask=mask_f[None, :] & mask_c[:, None], other=0.0)
        d = tl.dot(wt.to(DT), dh)
        if HAS_DIRECT:
            do = tl.load(dout_ptr + b * sdb + offs_c[:, None] * sdc + offs_n[None, :] * sdn, mask=m, other=0.0)
            d += do.to(tl.float32) * alpha[None, :]
        tl.store(dsrc_ptr + b * d_b + offs_c[:, None] * d_c + offs_n[None, :] * d_n, d.to(dsrc_ptr.dtype.element_ty),
                 mask=m)
        t = tl.load(src_ptr + b * s_b + offs_c[:, None] * s_c + offs_n[None, :] * s_n, mask=m, other=0.0)
        dw = tl.dot(dh, tl.trans(t.to(DT)))
        tl.atomic_add(dw_ptr + offs_f[:, None] * C + offs_c[None, :], dw, mask=mask_f[:, None] & mask_c[None, :],
                      sem="relaxed")


@triton.jit
def _gate_bwd_kernel(x_ptr, g_ptr, wx_ptr, wg_ptr, bx_ptr, bg_ptr, wpsi_ptr, bpsi_ptr, dout_ptr, dalpha_ptr,
                     dx_ptr, dg_ptr, dwx_ptr, dwg_ptr, dbias_ptr, dwpsi_ptr, dbpsi_ptr,
                     N, CX, CG, F,
                     sxb, sxc, sxn, sgb, sgc, sgn, sdb, sdc, sdn, sab, san,
                     sdxb, sdxc, sdxn, sdgb, sdgc, sdgn,
                     HAS_DALPHA: tl.constexpr, BN: tl.constexpr, BF: tl.constexpr, BKX: tl.constexpr,
                     BKG: tl.constexpr, DT: tl.constexpr):
    b, offs_n, mask_n, offs_f, mask_f, h, s, wpsi, alpha = _gate_alpha(
        x_ptr, g_ptr, wx_ptr, wg_ptr, bx_ptr, bg_ptr, wpsi_ptr, bpsi_ptr, N, F, CX, CG, sxb, sxc, sxn, sgb, sgc, sgn,
        BF, BN, BKX, BKG, DT)
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
    tl.atomic_add(dbpsi_ptr, tl.sum(dp, axis=0), sem="relaxed")
    tl.atomic_add(dwpsi_ptr + offs_f, tl.sum(s * dp[None, :], axis=1), mask=mask_f, sem="relaxed")
    tl.atomic_add(dbias_ptr + offs_f, tl.sum(dh, axis=1), mask=mask_f, sem="relaxed")
    dh_lo = dh.to(DT)
    _input_grad(dx_ptr, x_ptr, wx_ptr, dwx_ptr, dh_lo, b, offs_n, mask_n, CX, sxb, sxc, sxn, sdxb, sdxc, sdxn,
                offs_f, mask_f, dout_ptr, sdb, sdc, sdn, alpha, True, BKX, DT)
    _input_grad(dg_ptr, g_ptr, wg_ptr, dwg_ptr, dh_lo, b, offs_n, mask_n, CG, sgb, sgc, sgn, sdgb, sdgc, sdgn,
                offs_f, mask_f, dout_ptr, sdb, sdc, sdn, alpha, False, BKG, DT)


# Tile sizes (tuned on an H100; any powers of two >= 16 are valid): pixels per program for F <= 32 / F > 32,
# channel chunk, warps.
CFG = {"bn_small_f": 128, "bn_large_f": 64, "bk": 64, "warps": 4}


def _blocks(n: int, cx: int, cg: int, f: int) -> tuple[int, int, int, int]:
    bf = max(16, next_pow2(f))
    bkx = min(CFG["bk"], max(16, next_pow2(cx)))
    bkg = min(CFG["bk"], max(16, next_pow2(cg)))
    bn = CFG["bn_small_f"] if bf <= 32 else CFG["bn_large_f"]
    return min(bn, max(16, next_pow2(n))), bf, bkx, bkg


def _flat(t: torch.Tensor) -> torch.Tensor:
    return t.flatten(2)


def gate_fwd_triton(x: torch.Tensor, g: torch.Tensor, wx: torch.Tensor, wg: torch.Tensor, bx: torch.Tensor,
                    bg: torch.Tensor, wpsi: torch.Tensor, bpsi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Fused forward. wx [F, Cx], wg [F, Cg], bx, bg, wpsi [F], bpsi [1] (any float dtype); x, g [B, C, *s]."""
    out = torch.empty_like(x)
    alpha = torch.empty_like(x[:, :1])
    B, CX, CG, F = x.shape[0], x.shape[1], g.shape[1], wx.shape[0]
    xf, gf, of, af = _flat(x), _flat(g), _flat(out), _flat(alpha)
    N = xf.shape[2]
    bn, bf, bkx, bkg = _blocks(N, CX, CG, F)
    grid = (triton.cdiv(N, bn), B)
    _gate_fwd_kernel[grid](xf, gf, wx, wg, bx, bg, wpsi, bpsi, of, af, N, CX, CG, F,
                           *xf.stride(), *gf.stride(), *of.stride(), af.stride(0), af.stride(2),
                           BN=bn, BF=bf, BKX=bkx, BKG=bkg, DT=_TL[x.dtype], num_warps=CFG["warps"])
    return out, alpha


def gate_bwd_triton(x: torch.Tensor, g: torch.Tensor, wx: torch.Tensor, wg: torch.Tensor, bx: torch.Tensor,
                    bg: torch.Tensor, wpsi: torch.Tensor, bpsi: torch.Tensor, dout: torch.Tensor,
                    dalpha: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
    """Fused backward, one pass (weight gradients by fp32 atomics).
    Returns dx, dg and fp32 dwx [F, Cx], dwg [F, Cg], dbias [F] (= dbx = dbg), dwpsi [F], dbpsi [1]."""
    B, CX, CG, F = x.shape[0], x.shape[1], g.shape[1], wx.shape[0]
    dx, dg = torch.empty_like(x), torch.empty_like(g)
    xf, gf, dof, dxf, dgf = _flat(x), _flat(g), _flat(dout), _flat(dx), _flat(dg)
    N = xf.shape[2]
    acc = torch.zeros(F * (CX + CG + 2) + 1, device=x.device, dtype=torch.float32)
    dwx, dwg = acc[:F * CX].view(F, CX), acc[F * CX:F * (CX + CG)].view(F, CG)
    dbias, dwpsi, dbpsi = acc[F * (CX + CG):F * (CX + CG + 1)], acc[F * (CX + CG + 1):-1], acc[-1:]
    daf = _flat(dalpha) if dalpha is not None else dof
    bn, bf, bkx, bkg = _blocks(N, CX, CG, F)
    grid = (triton.cdiv(N, bn), B)
    _gate_bwd_kernel[grid](xf, gf, wx, wg, bx, bg, wpsi, bpsi, dof, daf, dxf, dgf, dwx, dwg, dbias, dwpsi, dbpsi,
                           N, CX, CG, F, *xf.stride(), *gf.stride(), *dof.stride(), daf.stride(0), daf.stride(2),
                           *dxf.stride(), *dgf.stride(),
                           HAS_DALPHA=dalpha is not None, BN=bn, BF=bf, BKX=bkx, BKG=bkg, DT=_TL[x.dtype],
                           num_warps=CFG["warps"])
    return dx, dg, dwx, dwg, dbias, dwpsi, dbpsi
