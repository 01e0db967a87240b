"""Fused Triton forward of axial attention with relative position terms (Axial-DeepLab, MedT gates).

One program per (line, head-group, block of BM queries); keys in blocks of BN with an online softmax. The three
relative terms use the window of relative embeddings that a (BM, BN) tile touches: q.r^q and k.r^k are tensor-core
products against the window followed by a register gather onto the (o, p) tile; the r^v term
gathers the probabilities into skewed (o, p - o) order and multiplies by the r^v window. Nothing of size L^2
reaches memory."""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .._nd import next_pow2
from .._triton import TL_DTYPE as _TL

__all__ = ["axial_rel_fwd_triton"]


@triton.jit
def _axial_rel_fwd_kernel(q_ptr, k_ptr, v_ptr, rq_ptr, rk_ptr, rv_ptr, g_ptr, o_ptr, L, D, scale,
                          sqn, sql, sqm, skn, skl, skm, svn, svl, svm, son, sol, som,
                          BM: tl.constexpr, BN: tl.constexpr, BD: tl.constexpr, WP: tl.constexpr,
                          DT: tl.constexpr):
    pid_l, m = tl.program_id(0), tl.program_id(1)
    n = tl.program_id(2).to(tl.int64)
    ol = tl.arange(0, BM)
    offs_o = pid_l * BM + ol
    offs_d = tl.arange(0, BD)
    mask_o, mask_d = offs_o < L, offs_d < D
    q = tl.load(q_ptr + n * sqn + m * sqm + offs_o[:, None] * sql + offs_d[None, :],
                mask=mask_o[:, None] & mask_d[None, :], other=0.0).to(DT)
    gq = tl.load(g_ptr + 0)
    gk = tl.load(g_ptr + 1)
    gv1 = tl.load(g_ptr + 2)
    gv2 = tl.load(g_ptr + 3)
    m_i = tl.full([BM], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BM], dtype=tl.float32)
    acc = tl.zeros([BM, BD], dtype=tl.float32)
    pl = tl.arange(0, BN)
    wl = tl.arange(0, WP)
    idx_qr = tl.minimum(pl[None, :] - ol[:, None] + BM - 1, WP - 1)        # [BM, BN] -> window column
    idx_pv = wl[None, :] + ol[:, None] - (BM - 1)                          # [BM, WP] -> key column
    ok_pv = (idx_pv >= 0) & (idx_pv < BN)
    idx_pv = tl.minimum(tl.maximum(idx_pv, 0), BN - 1)
    for j0 in range(0, L, BN):
        offs_p = j0 + pl
        mask_p = offs_p < L
        kv_mask = mask_p[:, None] & mask_d[None, :]
        k = tl.load(k_ptr + n * skn + m * skm + offs_p[:, None] * skl + offs_d[None, :], mask=kv_mask, other=0.0).to(DT)
        v = tl.load(v_ptr + n * svn + m * svm + offs_p[:, None] * svl + offs_d[None, :], mask=kv_mask, other=0.0).to(DT)
        offs_w = j0 - pid_l * BM - BM + L + wl          # relative index p - o + L - 1 of window column wl
        w_mask = ((offs_w >= 0) & (offs_w < 2 * L - 1))[:, None] & mask_d[None, :]
        w_off = offs_w[:, None] * D + offs_d[None, :]
        rq = tl.load(rq_ptr + w_off, mask=w_mask, other=0.0).to(DT)
        rk = tl.load(rk_ptr + w_off, mask=w_mask, other=0.0).to(DT)
        rv = tl.load(rv_ptr + w_off, mask=w_mask, other=0.0).to(DT)
        s = tl.dot(q, tl.trans(k))
        qr = tl.gather(tl.dot(q, tl.trans(rq)), idx_qr, axis=1)
        kr = tl.gather(tl.dot(rk, tl.trans(k)), idx_qr, axis=0)   # [WP, BN] -> [BM, BN] on the same diagonal
        s = (s + gq * qr + gk * kr) * scale
        s = tl.where(mask_p[None, :], s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, axis=1))
        alpha = tl.exp(m_i - m_new)
        p = tl.exp(s - m_new[:, None])
        l_i = l_i * alpha + tl.sum(p, axis=1)
        p_skew = tl.where(ok_pv, tl.gather(p, idx_pv, axis=1), 0.0)
        acc = acc * alpha[:, None] + gv1 * tl.dot(p.to(DT), v) + gv2 * tl.dot(p_skew.to(DT), rv)
        m_i = m_new
    out = acc / l_i[:, None]
    tl.store(o_ptr + n * son + m * som + offs_o[:, None] * sol + offs_d[None, :], out.to(o_ptr.dtype.element_ty),
             mask=mask_o[:, None] & mask_d[None, :])


# Query/key block and warps for head_dim <= 32 and > 32 (tuned on an H100; powers of two >= 16 are valid).
CFG = {"bm": 32, "bm_large_d": 32, "warps": 2, "warps_large_d": 4}


def axial_rel_fwd_triton(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, rel_q: torch.Tensor,
                         rel_k: torch.Tensor, rel_v: torch.Tensor, gates: torch.Tensor, scale: float) -> torch.Tensor:
    """q, k, v as lines [N, M, L, d] (d contiguous), rel_* [2L - 1, d], gates [4] fp32 -> out [N, M, L, d]."""
    N, M, L, D = q.shape
    out = torch.empty(N, L, M, D, device=q.device, dtype=q.dtype).transpose(1, 2)
    bd = max(16, next_pow2(D))
    bm = min(CFG["bm"] if D <= 32 else CFG["bm_large_d"], max(16, next_pow2(L)))
    bn = bm
    wp = next_pow2(bm + bn - 1)
    rq, rk, rv = (r.contiguous() for r in (rel_q, rel_k, rel_v))
    grid = (triton.cdiv(L, bm), M, N)
    _axial_rel_fwd_kernel[grid](q, k, v, rq, rk, rv, gates, out, L, D, scale,
                                q.stride(0), q.stride(2), q.stride(1), k.stride(0), k.stride(2), k.stride(1),
                                v.stride(0), v.stride(2), v.stride(1), out.stride(0), out.stride(2), out.stride(1),
                                BM=bm, BN=bn, BD=bd, WP=wp, DT=_TL[q.dtype],
                                num_warps=CFG["warps"] if D <= 32 else CFG["warps_large_d"])
    return out
