"""Triton kernels of the attention gate: one pass forward (both 1x1 projections, relu, psi, sigmoid and the gating
multiply fused; x and g read once) and one pass backward (recomputes the projections, writes dx, dg and the
pre-activation gradient for the weight GEMMs)."""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .._nd import next_pow2

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
def _gate_fwd_kernel(x_ptr, g_ptr, wx_ptr, wg_ptr, bias_ptr, wpsi_ptr, bpsi_ptr, out_ptr, alpha_ptr,
                     N, CX, CG, F,
                     sxb, sxc, sxn, sgb, sgc, sgn, sob, soc, son, sab, san,
                     BN: tl.constexpr, BF: tl.constexpr, BKX: tl.constexpr, BKG: tl.constexpr, DT: tl.constexpr):
    pid_n = tl.program_id(0)
    b = tl.program_id(1).to(tl.int64)
    offs_n = pid_n * BN + tl.arange(0, BN)
    mask_n = offs_n < N
    offs_f = tl.arange(0, BF)
    mask_f = offs_f < F
    h = tl.zeros([BF, BN], dtype=tl.float32)
    h = _project(h, x_ptr, wx_ptr, b, offs_n, mask_n, CX, sxb, sxc, sxn, offs_f, mask_f, BKX, DT)
    h = _project(h, g_ptr, wg_ptr, b, offs_n, mask_n, CG, sgb, sgc, sgn, offs_f, mask_f, BKG, DT)
    h += tl.load(bias_ptr + offs_f, mask=mask_f, other=0.0)[:, None]
    s = tl.maximum(h, 0.0)
    wpsi = tl.load(wpsi_ptr + offs_f, mask=mask_f, other=0.0)
    p = tl.sum(s * wpsi[:, None], axis=0) + tl.load(bpsi_ptr)
    alpha = tl.sigmoid(p)
    tl.store(alpha_ptr + b * sab + offs_n * san, alpha.to(alpha_ptr.dtype.element_ty), mask=mask_n)
    for c0 in range(0, CX, BKX):
        offs_c = c0 + tl.arange(0, BKX)
        m = (offs_c < CX)[:, None] & mask_n[None, :]
        t = tl.load(x_ptr + b * sxb + offs_c[:, None] * sxc + offs_n[None, :] * sxn, mask=m, other=0.0)
        y = t.to(tl.float32) * alpha[None, :]
        tl.store(out_ptr + b * sob + offs_c[:, None] * soc + offs_n[None, :] * son, y.to(out_ptr.dtype.element_ty),
                 mask=m)


@triton.jit
def _input_grad(dsrc_ptr, w_ptr, dh, b, offs_n, mask_n, C, s_b, s_c, s_n, offs_f, mask_f,
                dout_ptr, sdb, sdc, sdn, alpha, HAS_DIRECT: tl.constexpr, BK: tl.constexpr, DT: tl.constexpr):
    """dsrc[b, C, offs_n] = W[F, C]^T @ dh (+ dout * alpha for x, whose direct path is the gating multiply)."""
    for c0 in range(0, C, BK):
        offs_c = c0 + tl.arange(0, BK)
        mask_c = offs_c < C
        m = mask_c[:, None] & mask_n[None, :]
        wt = tl.load(w_ptr + offs_f[None, :] * C + offs_c[:, None], mask=mask_f[None, :] & mask_c[:, None], other=0.0)
        d = tl.dot(wt.to(DT), dh)
        if HAS_DIRECT:
            do = tl.load(dout_ptr + b * sdb + offs_c[:, None] * sdc + offs_n[None, :] * sdn, mask=m, other=0.0)
            d += do.to(tl.float32) * alpha[None, :]
        tl.store(dsrc_ptr + b * s_b + offs_c[:, None] * s_c + offs_n[None, :] * s_n, d.to(dsrc_ptr.dtype.element_ty),
                 mask=m)


@triton.jit
def _gate_bwd_kernel(x_ptr, g_ptr, wx_ptr, wg_ptr, bias_ptr, wpsi_ptr, bpsi_ptr, dout_ptr, dalpha_ptr,
                     dx_ptr, dg_ptr, dh_ptr, dbias_ptr, dwpsi_ptr, dbpsi_ptr,
                     N, CX, CG, F,
                     sxb, sxc, sxn, sgb, sgc, sgn, sdb, sdc, sdn, sab, san,
                     sdxb, sdxc, sdxn, sdgb, sdgc, sdgn,
                     HAS_DALPHA: tl.constexpr, BN: tl.constexpr, BF: tl.constexpr, BKX: tl.constexpr,
                     BKG: tl.constexpr, DT: tl.constexpr):
    pid_n = tl.program_id(0)
    b = tl.program_id(1).to(tl.int64)
    offs_n = pid_n * BN + tl.arange(0, BN)
    mask_n = offs_n < N
    offs_f = tl.arange(0, BF)
    mask_f = offs_f < F
    h = tl.zeros([BF, BN], dtype=tl.float32)
    h = _project(h, x_ptr, wx_ptr, b, offs_n, mask_n, CX, sxb, sxc, sxn, offs_f, mask_f, BKX, DT)
    h = _project(h, g_ptr, wg_ptr, b, offs_n, mask_n, CG, sgb, sgc, sgn, offs_f, mask_f, BKG, DT)
    h += tl.load(bias_ptr + offs_f, mask=mask_f, other=0.0)[:, None]
    s = tl.maximum(h, 0.0)
    wpsi = tl.load(wpsi_ptr + offs_f, mask=mask_f, other=0.0)
    alpha = tl.sigmoid(tl.sum(s * wpsi[:, None], axis=0) + tl.load(bpsi_ptr))
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
    tl.atomic_add(dbpsi_ptr, tl.sum(dp, axis=0))
    tl.atomic_add(dwpsi_ptr + offs_f, tl.sum(s * dp[None, :], axis=1), mask=mask_f)
    tl.atomic_add(dbias_ptr + offs_f, tl.sum(dh, axis=1), mask=mask_f)
    dh_lo = dh.to(DT)
    tl.store(dh_ptr + b * F * N + offs_f[:, None] * N + offs_n[None, :], dh_lo,
             mask=mask_f[:, None] & mask_n[None, :])
    _input_grad(dx_ptr, wx_ptr, dh_lo, b, offs_n, mask_n, CX, sdxb, sdxc, sdxn, offs_f, mask_f,
                dout_ptr, sdb, sdc, sdn, alpha, True, BKX, DT)
    _input_grad(dg_ptr, wg_ptr, dh_lo, b, offs_n, mask_n, CG, sdgb, sdgc, sdgn, offs_f, mask_f,
                dout_ptr, sdb, sdc, sdn, alpha, False, BKG, DT)


_TL = {torch.float16: tl.float16, torch.bfloat16: tl.bfloat16, torch.float32: tl.float32}


def _blocks(n: int, cx: int, cg: int, f: int) -> tuple[int, int, int, int]:
    bf = max(16, next_pow2(f))
    bkx = min(64, max(16, next_pow2(cx)))
    bkg = min(64, max(16, next_pow2(cg)))
    bn = 128 if bf <= 32 else 64
    return min(bn, max(16, next_pow2(n))), bf, bkx, bkg


def _flat(t: torch.Tensor) -> torch.Tensor:
    return t.flatten(2)


def gate_fwd_triton(x: torch.Tensor, g: torch.Tensor, wx: torch.Tensor, wg: torch.Tensor, bias: torch.Tensor,
                    wpsi: torch.Tensor, bpsi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Fused forward. wx [F, Cx], wg [F, Cg], bias = bx + bg [F] (fp32), wpsi [F], bpsi [1]; x, g [B, C, *s]."""
    out = torch.empty_like(x)
    alpha = torch.empty_like(x[:, :1])
    B, CX, CG, F = x.shape[0], x.shape[1], g.shape[1], wx.shape[0]
    xf, gf, of, af = _flat(x), _flat(g), _flat(out), _flat(alpha)
    N = xf.shape[2]
    bn, bf, bkx, bkg = _blocks(N, CX, CG, F)
    grid = (triton.cdiv(N, bn), B)
    _gate_fwd_kernel[grid](xf, gf, wx, wg, bias, wpsi, bpsi, of, af, N, CX, CG, F,
                           *xf.stride(), *gf.stride(), *of.stride(), af.stride(0), af.stride(2),
                           BN=bn, BF=bf, BKX=bkx, BKG=bkg, DT=_TL[x.dtype], num_warps=4)
    return out, alpha


def gate_bwd_triton(x: torch.Tensor, g: torch.Tensor, wx: torch.Tensor, wg: torch.Tensor, bias: torch.Tensor,
                    wpsi: torch.Tensor, bpsi: torch.Tensor, dout: torch.Tensor, dalpha: torch.Tensor | None
                    ) -> tuple[torch.Tensor, ...]:
    """Fused backward pass; the two weight GEMMs (dWx = dh x^T, dWg = dh g^T) run in cuBLAS.
    Returns dx, dg, dwx [F, Cx], dwg [F, Cg], dbias [F], dwpsi [F], dbpsi [1] (fp32 for the last five)."""
    B, CX, CG, F = x.shape[0], x.shape[1], g.shape[1], wx.shape[0]
    dx, dg = torch.empty_like(x), torch.empty_like(g)
    xf, gf, dof, dxf, dgf = _flat(x), _flat(g), _flat(dout), _flat(dx), _flat(dg)
    N = xf.shape[2]
    dh = torch.empty(B, F, N, device=x.device, dtype=x.dtype)
    dbias = torch.zeros(F, device=x.device, dtype=torch.float32)
    dwpsi = torch.zeros(F, device=x.device, dtype=torch.float32)
    dbpsi = torch.zeros(1, device=x.device, dtype=torch.float32)
    daf = _flat(dalpha) if dalpha is not None else dof
    bn, bf, bkx, bkg = _blocks(N, CX, CG, F)
    grid = (triton.cdiv(N, bn), B)
    _gate_bwd_kernel[grid](xf, gf, wx, wg, bias, wpsi, bpsi, dof, daf, dxf, dgf, dh, dbias, dwpsi, dbpsi,
                           N, CX, CG, F, *xf.stride(), *gf.stride(), *dof.stride(), daf.stride(0), daf.stride(2),
                           *dxf.stride(), *dgf.stride(),
                           HAS_DALPHA=dalpha is not None, BN=bn, BF=bf, BKX=bkx, BKG=bkg, DT=_TL[x.dtype],
                           num_warps=4)
    dwx = torch.matmul(dh, xf.transpose(1, 2)).sum(0, dtype=torch.float32)
    dwg = torch.matmul(dh, gf.transpose(1, 2)).sum(0, dtype=torch.float32)
    return dx, dg, dwx, dwg, dbias, dwpsi, dbpsi
