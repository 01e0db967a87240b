"""Fused Triton forward and backward of axial attention with relative position terms (Axial-DeepLab, MedT gates).

Forward: one program per (line, head-group, block of BM queries); keys in blocks of BN with an online softmax. The
three relative terms use the window of relative embeddings that a (BM, BN) tile touches: q.r^q and k.r^k are
tensor-core products against the window followed by a register gather onto the (o, p) tile; the r^v term gathers
the probabilities into skewed (o, p - o) order and multiplies by the r^v window. It also writes the per-row
log-sum-exp (fp32), so the backward recomputes the probabilities of a tile in one pass.

Backward (flash-attention style, nothing of size L^2 reaches memory): a preprocess kernel writes
delta_o = dout_o . out_o; a dK/dV kernel (one program per block of BN keys, looping over query blocks) recomputes
p and ds = p (dp - delta) scale per tile, accumulates dk, dv and adds each tile's window of the table gradients
(drel_q, drel_k, drel_v, skewed like the forward) and the four gate sums with atomics into one of S fp32 slots
(slot = line % S, summed over S on the host), so thousands of programs do not contend for one table; a dQ kernel
(one program per block of BM queries, looping over key blocks) accumulates dq."""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .._nd import cdiv, next_pow2
from .._triton import TL_DTYPE as _TL
from .._triton import launch

__all__ = ["axial_rel_fwd_triton", "axial_rel_bwd_triton"]


@triton.jit
def _load_gates(g_ptr):
    """The MedT gates (g_q, g_k, g_v1, g_v2) from their fp32 [4] tensor."""
    return tl.load(g_ptr + 0), tl.load(g_ptr + 1), tl.load(g_ptr + 2), tl.load(g_ptr + 3)


@triton.jit
def _line_block(L, D, BLOCK: tl.constexpr, BD: tl.constexpr):
    """This program's line (n, m and its flat index) and block of BLOCK positions from `start` on a (position
    blocks, M, N) grid, with the positions' and head-dim offsets and masks."""
    m = tl.program_id(1)
    n = tl.program_id(2).to(tl.int64)
    start = tl.program_id(0) * BLOCK
    offs = start + tl.arange(0, BLOCK)
    offs_d = tl.arange(0, BD)
    return n, m, n * tl.num_programs(1) + m, start, offs, offs < L, offs_d, offs_d < D


@triton.jit
def _rows(n, m, sn, sl, sm, offs, offs_d):
    """Element offsets [len(offs), BD] of positions `offs` of line (n, m) in a lines tensor with strides sn, sl, sm
    (head_dim contiguous)."""
    return n * sn + m * sm + offs[:, None] * sl + offs_d[None, :]


@triton.jit
def _load_rows(ptr, n, m, sn, sl, sm, offs, mask, offs_d, mask_d, DT: tl.constexpr):
    """Positions `offs` of line (n, m) as a [len(offs), BD] tile in DT (zero where masked)."""
    return tl.load(ptr + _rows(n, m, sn, sl, sm, offs, offs_d), mask=mask[:, None] & mask_d[None, :],
                   other=0.0).to(DT)


@triton.jit
def _load_row_stats(lse_ptr, delta_ptr, line, L, offs_o, mask_o):
    """The forward's log-sum-exp (+inf on padded rows, so their p is 0) and delta of rows offs_o of a line."""
    lse = tl.load(lse_ptr + line * L + offs_o, mask=mask_o, other=float("inf"))
    return lse, tl.load(delta_ptr + line * L + offs_o, mask=mask_o, other=0.0)


@triton.jit
def _window_mask(offs_w, L, mask_d):
    """[WP, BD] mask of the window rows that exist in a [2L - 1, D] table."""
    return ((offs_w >= 0) & (offs_w < 2 * L - 1))[:, None] & mask_d[None, :]


@triton.jit
def _load_windows(rq_ptr, rk_ptr, rv_ptr, o0, j0, L, D, offs_d, mask_d, WP: tl.constexpr, BM: tl.constexpr,
                  DT: tl.constexpr):
    """The window rows (relative index p - o + L - 1 of each of the WP columns) of the tile with queries from o0
    and keys from j0, and those rows of the three relative tables (zero outside them)."""
    offs_w = j0 - o0 - BM + L + tl.arange(0, WP)
    w_off = offs_w[:, None] * D + offs_d[None, :]
    w_mask = _window_mask(offs_w, L, mask_d)
    rq = tl.load(rq_ptr + w_off, mask=w_mask, other=0.0).to(DT)
    rk = tl.load(rk_ptr + w_off, mask=w_mask, other=0.0).to(DT)
    rv = tl.load(rv_ptr + w_off, mask=w_mask, other=0.0).to(DT)
    return offs_w, rq, rk, rv


@triton.jit
def _tile_indices(BM: tl.constexpr, BN: tl.constexpr, WP: tl.constexpr):
    """Gather indices between a (BM, BN) tile and its window of WP relative offsets (column w = p - o + BM - 1):
    idx_qr [BM, BN] -> window column; idx_qw [BM, WP] -> key column (skewed by query), ok_qw its validity;
    idx_wk [WP, BN] -> query row (skewed by key), ok_wk its validity."""
    ol = tl.arange(0, BM)
    pl = tl.arange(0, BN)
    wl = tl.arange(0, WP)
    idx_qr = tl.minimum(pl[None, :] - ol[:, None] + BM - 1, WP - 1)
    idx_qw = wl[None, :] + ol[:, None] - (BM - 1)
    ok_qw = (idx_qw >= 0) & (idx_qw < BN)
    idx_wk = pl[None, :] - wl[:, None] + BM - 1
    ok_wk = (idx_wk >= 0) & (idx_wk < BM)
    return (idx_qr, tl.minimum(tl.maximum(idx_qw, 0), BN - 1), ok_qw, tl.minimum(tl.maximum(idx_wk, 0), BM - 1),
            ok_wk)


@triton.jit
def _rel_logits(q, k, rq, rk, idx_qr):
    """q.k^T and the unscaled, ungated q.r^q and k.r^k terms of a tile (fp32 [BM, BN] each)."""
    s = tl.dot(q, tl.trans(k))
    qr = tl.gather(tl.dot(q, tl.trans(rq)), idx_qr, axis=1)
    kr = tl.gather(tl.dot(rk, tl.trans(k)), idx_qr, axis=0)   # [WP, BN] -> [BM, BN] on the same diagonal
    return s, qr, kr


@triton.jit
def _axial_rel_fwd_kernel(q_ptr, k_ptr, v_ptr, rq_ptr, rk_ptr, rv_ptr, g_ptr, o_ptr, lse_ptr, L, D, scale,
                          sqn, sql, sqm, skn, skl, skm, svn, svl, svm, son, sol, som,
                          BM: tl.constexpr, BN: tl.constexpr, BD: tl.constexpr, WP: tl.constexpr,
                          DT: tl.constexpr):
    n, m, line, o0, offs_o, mask_o, offs_d, mask_d = _line_block(L, D, BM, BD)
    q = _load_rows(q_ptr, n, m, sqn, sql, sqm, offs_o, mask_o, offs_d, mask_d, DT)
    gq, gk, gv1, gv2 = _load_gates(g_ptr)
    m_i = tl.full([BM], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BM], dtype=tl.float32)
    acc = tl.zeros([BM, BD], dtype=tl.float32)
    idx_qr, idx_qw, ok_qw, idx_wk, ok_wk = _tile_indices(BM, BN, WP)
    for j0 in range(0, L, BN):
        offs_p = j0 + tl.arange(0, BN)
        mask_p = offs_p < L
        k = _load_rows(k_ptr, n, m, skn, skl, skm, offs_p, mask_p, offs_d, mask_d, DT)
        v = _load_rows(v_ptr, n, m, svn, svl, svm, offs_p, mask_p, offs_d, mask_d, DT)
        offs_w, rq, rk, rv = _load_windows(rq_ptr, rk_ptr, rv_ptr, o0, j0, L, D, offs_d, mask_d, WP, BM, DT)
        s, qr, kr = _rel_logits(q, k, rq, rk, idx_qr)
        s = (s + gq * qr + gk * kr) * scale
        s = tl.where(mask_p[None, :], s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, axis=1))
        alpha = tl.exp(m_i - m_new)
        p = tl.exp(s - m_new[:, None])
        l_i = l_i * alpha + tl.sum(p, axis=1)
        p_skew = tl.where(ok_qw, tl.gather(p, idx_qw, axis=1), 0.0)
        acc = acc * alpha[:, None] + gv1 * tl.dot(p.to(DT), v) + gv2 * tl.dot(p_skew.to(DT), rv)
        m_i = m_new
    out = acc / l_i[:, None]
    tl.store(o_ptr + _rows(n, m, son, sol, som, offs_o, offs_d), out.to(o_ptr.dtype.element_ty),
             mask=mask_o[:, None] & mask_d[None, :])
    tl.store(lse_ptr + line * L + offs_o, m_i + tl.log(l_i), mask=mask_o)


@triton.jit
def _axial_rel_bwd_pre_kernel(o_ptr, do_ptr, delta_ptr, L, D, son, sol, som,
                              BM: tl.constexpr, BD: tl.constexpr):
    """delta_o = dout_o . out_o (fp32 [N, M, L]); out and dout share strides."""
    n, m, line, _o0, offs_o, mask_o, offs_d, mask_d = _line_block(L, D, BM, BD)
    off = _rows(n, m, son, sol, som, offs_o, offs_d)
    mask = mask_o[:, None] & mask_d[None, :]
    o = tl.load(o_ptr + off, mask=mask, other=0.0).to(tl.float32)
    do = tl.load(do_ptr + off, mask=mask, other=0.0).to(tl.float32)
    tl.store(delta_ptr + line * L + offs_o, tl.sum(o * do, axis=1), mask=mask_o)


@triton.jit
def _tile_probs(q, k, v, do, rq, rk, rv, lse, delta, valid, gq, gk, gv1, gv2, scale, idx_qr):
    """Recompute one tile's probabilities p and ds = dlogits (fp32 [BM, BN], zero where `valid` is false) plus
    the ungated terms the gate gradients need: q.r^q, k.r^k, dout.v and dout.r^v."""
    s, qr, kr = _rel_logits(q, k, rq, rk, idx_qr)
    s = (s + gq * qr + gk * kr) * scale
    p = tl.where(valid, tl.exp(s - lse[:, None]), 0.0)
    dpv = tl.dot(do, tl.trans(v))
    dprv = tl.gather(tl.dot(do, tl.trans(rv)), idx_qr, axis=1)
    ds = p * (gv1 * dpv + gv2 * dprv - delta[:, None]) * scale
    return p, ds, qr, kr, dpv, dprv


@triton.jit
def _axial_rel_bwd_dkv_kernel(q_ptr, k_ptr, v_ptr, rq_ptr, rk_ptr, rv_ptr, g_ptr, do_ptr, lse_ptr, delta_ptr,
                              dk_ptr, dv_ptr, dtab_ptr, dg_ptr, L, D, scale, S,
                              sqn, sql, sqm, skn, skl, skm, svn, svl, svm,
                              BM: tl.constexpr, BN: tl.constexpr, BD: tl.constexpr, WP: tl.constexpr,
                              DT: tl.constexpr):
    """dk, dv for a block of BN keys; the table windows and gate sums of every tile go to slot line % S."""
    n, m, line, j0, offs_p, mask_p, offs_d, mask_d = _line_block(L, D, BN, BD)
    kv_mask = mask_p[:, None] & mask_d[None, :]
    k = _load_rows(k_ptr, n, m, skn, skl, skm, offs_p, mask_p, offs_d, mask_d, DT)
    v = _load_rows(v_ptr, n, m, svn, svl, svm, offs_p, mask_p, offs_d, mask_d, DT)
    gq, gk, gv1, gv2 = _load_gates(g_ptr)
    idx_qr, idx_qw, ok_qw, idx_wk, ok_wk = _tile_indices(BM, BN, WP)
    dk = tl.zeros([BN, BD], dtype=tl.float32)
    dv = tl.zeros([BN, BD], dtype=tl.float32)
    g_sums = tl.zeros([4], dtype=tl.float32)
    g_col = tl.arange(0, 4)
    tab = dtab_ptr + (line % S) * 3 * (2 * L - 1) * D
    for o0 in range(0, L, BM):
        offs_o = o0 + tl.arange(0, BM)
        mask_o = offs_o < L
        q = _load_rows(q_ptr, n, m, sqn, sql, sqm, offs_o, mask_o, offs_d, mask_d, DT)
        do = _load_rows(do_ptr, n, m, sqn, sql, sqm, offs_o, mask_o, offs_d, mask_d, DT)
        lse, delta = _load_row_stats(lse_ptr, delta_ptr, line, L, offs_o, mask_o)
        offs_w, rq, rk, rv = _load_windows(rq_ptr, rk_ptr, rv_ptr, o0, j0, L, D, offs_d, mask_d, WP, BM, DT)
        p, ds, qr, kr, dpv, dprv = _tile_probs(q, k, v, do, rq, rk, rv, lse, delta, mask_o[:, None] & mask_p[None, :],
                                               gq, gk, gv1, gv2, scale, idx_qr)
        p_lo, ds_lo = p.to(DT), ds.to(DT)
        ds_wk = tl.where(ok_wk, tl.gather(ds, idx_wk, axis=0), 0.0).to(DT)     # [WP, BN]: ds by (window, key)
        ds_qw = tl.where(ok_qw, tl.gather(ds, idx_qw, axis=1), 0.0).to(DT)     # [BM, WP]: ds by (query, window)
        p_qw = tl.where(ok_qw, tl.gather(p, idx_qw, axis=1), 0.0).to(DT)
        dv += gv1 * tl.dot(tl.trans(p_lo), do)
        dk += tl.dot(tl.trans(ds_lo), q) + gk * tl.dot(tl.trans(ds_wk), rk)
        w_off = offs_w[:, None] * D + offs_d[None, :]
        w_mask = _window_mask(offs_w, L, mask_d)
        tl.atomic_add(tab + w_off, tl.dot(tl.trans(ds_qw), q), mask=w_mask, sem="relaxed")
        tl.atomic_add(tab + (2 * L - 1) * D + w_off, tl.dot(ds_wk, k), mask=w_mask, sem="relaxed")
        tl.atomic_add(tab + 2 * (2 * L - 1) * D + w_off, tl.dot(tl.trans(p_qw), do), mask=w_mask, sem="relaxed")
        g_sums += tl.where(g_col == 0, tl.sum(ds * qr), 0.0) + tl.where(g_col == 1, tl.sum(ds * kr), 0.0) \
            + tl.where(g_col == 2, tl.sum(p * dpv), 0.0) + tl.where(g_col == 3, tl.sum(p * dprv), 0.0)
    tl.atomic_add(dg_ptr + (line % S) * 4 + g_col, g_sums, sem="relaxed")
    tl.store(dk_ptr + _rows(n, m, skn, skl, skm, offs_p, offs_d), dk.to(dk_ptr.dtype.element_ty), mask=kv_mask)
    tl.store(dv_ptr + _rows(n, m, svn, svl, svm, offs_p, offs_d), dv.to(dv_ptr.dtype.element_ty), mask=kv_mask)


@triton.jit
def _axial_rel_bwd_dq_kernel(q_ptr, k_ptr, v_ptr, rq_ptr, rk_ptr, rv_ptr, g_ptr, do_ptr, lse_ptr, delta_ptr, dq_ptr,
                             L, D, scale, sqn, sql, sqm, skn, skl, skm, svn, svl, svm,
                             BM: tl.constexpr, BN: tl.constexpr, BD: tl.constexpr, WP: tl.constexpr,
                             DT: tl.constexpr):
    """dq for a block of BM queries."""
    n, m, line, o0, offs_o, mask_o, offs_d, mask_d = _line_block(L, D, BM, BD)
    q = _load_rows(q_ptr, n, m, sqn, sql, sqm, offs_o, mask_o, offs_d, mask_d, DT)
    do = _load_rows(do_ptr, n, m, sqn, sql, sqm, offs_o, mask_o, offs_d, mask_d, DT)
    lse, delta = _load_row_stats(lse_ptr, delta_ptr, line, L, offs_o, mask_o)
    gq, gk, gv1, gv2 = _load_gates(g_ptr)
    idx_qr, idx_qw, ok_qw, idx_wk, ok_wk = _tile_indices(BM, BN, WP)
    dq = tl.zeros([BM, BD], dtype=tl.float32)
    for j0 in range(0, L, BN):
        offs_p = j0 + tl.arange(0, BN)
        mask_p = offs_p < L
        k = _load_rows(k_ptr, n, m, skn, skl, skm, offs_p, mask_p, offs_d, mask_d, DT)
        v = _load_rows(v_ptr, n, m, svn, svl, svm, offs_p, mask_p, offs_d, mask_d, DT)
        offs_w, rq, rk, rv = _load_windows(rq_ptr, rk_ptr, rv_ptr, o0, j0, L, D, offs_d, mask_d, WP, BM, DT)
        p, ds, qr, kr, dpv, dprv = _tile_probs(q, k, v, do, rq, rk, rv, lse, delta, mask_o[:, None] & mask_p[None, :],
                                               gq, gk, gv1, gv2, scale, idx_qr)
        ds_qw = tl.where(ok_qw, tl.gather(ds, idx_qw, axis=1), 0.0).to(DT)
        dq += tl.dot(ds.to(DT), k) + gq * tl.dot(ds_qw, rq)
    tl.store(dq_ptr + _rows(n, m, sqn, sql, sqm, offs_o, offs_d), dq.to(dq_ptr.dtype.element_ty),
             mask=mask_o[:, None] & mask_d[None, :])


# Forward: query/key block and warps for head_dim <= 32 and > 32 (tuned on an H100; powers of two >= 16 are valid).
CFG = {"bm": 32, "bm_large_d": 32, "warps": 2, "warps_large_d": 4}
# Backward: block and warps of the dK/dV kernel and of the dQ kernel for head_dim <= 32 and > 32 (swept on an H100
# at d32 and d64: fewer warps win although the offline compile spills more; 32/2 at d64 spills badly), and the
# number of fp32 slots the table gradients spread over (64 to 16384 timed the same: the atomics do not contend).
BWD_CFG = {"bm": 32, "warps": 2, "dq_bm": 16, "dq_warps": 2,
           "bm_large_d": 32, "warps_large_d": 4, "dq_bm_large_d": 32, "dq_warps_large_d": 4, "slots": 64}


def _blocks(L: int, D: int, bm: int, dtype: torch.dtype) -> tuple[int, int, int]:
    """(block, padded head_dim, window width) for a block size capped at the (>= 16) padded L."""
    if dtype == torch.float32 and D > 64:
        bm = 16     # fp32 tiles of 32 at head_dim 128 need more than an H100's 228 KB of shared memory
    b = min(bm, max(16, next_pow2(L)))
    return b, max(16, next_pow2(D)), next_pow2(2 * b - 1)


def _line_like(t: torch.Tensor) -> torch.Tensor:
    """An empty [N, M, L, d] lines view laid out like `to_lines` of a contiguous tensor."""
    N, M, L, D = t.shape
    return torch.empty(N, L, M, D, device=t.device, dtype=t.dtype).transpose(1, 2)


def _strides(t: torch.Tensor) -> tuple[int, int, int]:
    return t.stride(0), t.stride(2), t.stride(1)


def axial_rel_fwd_triton(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, rel_q: torch.Tensor,
                         rel_k: torch.Tensor, rel_v: torch.Tensor, gates: torch.Tensor,
                         scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """q, k, v as lines [N, M, L, d] (d contiguous), rel_* [2L - 1, d], gates [4] fp32 -> (out [N, M, L, d],
    row log-sum-exp of the scaled logits, fp32 [N, M, L] contiguous)."""
    N, M, L, D = q.shape
    out = _line_like(q)
    lse = torch.empty(N, M, L, device=q.device, dtype=torch.float32)
    bm, bd, wp = _blocks(L, D, CFG["bm"] if D <= 32 else CFG["bm_large_d"], q.dtype)
    rq, rk, rv = (r.contiguous() for r in (rel_q, rel_k, rel_v))
    grid = (cdiv(L, bm), M, N)
    launch(_axial_rel_fwd_kernel, grid, (q, k, v, rq, rk, rv, gates, out, lse),
           (L, D, scale, *_strides(q), *_strides(k), *_strides(v), *_strides(out)),
           BM=bm, BN=bm, BD=bd, WP=wp, DT=_TL[q.dtype], num_warps=CFG["warps"] if D <= 32 else CFG["warps_large_d"])
    return out, lse


def axial_rel_bwd_triton(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, rel_q: torch.Tensor,
                         rel_k: torch.Tensor, rel_v: torch.Tensor, gates: torch.Tensor, scale: float,
                         out: torch.Tensor, lse: torch.Tensor, dout: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Gradients of `axial_rel_fwd_triton` from its inputs (same layouts), out, lse and dout (out and dout with q's
    strides): dq, dk, dv strided like q, k, v; drel_q, drel_k, drel_v [2L - 1, d] and dgates [4] in fp32."""
    N, M, L, D = q.shape
    if dout.stride() != q.stride() or out.stride() != q.stride():
        raise ValueError("dout and out must have q's strides")
    cfg = {k: BWD_CFG[k if D <= 32 else f"{k}_large_d"] for k in ("bm", "warps", "dq_bm", "dq_warps")}
    bm, bd, wp = _blocks(L, D, cfg["bm"], q.dtype)
    grid = (cdiv(L, bm), M, N)
    delta = torch.empty(N, M, L, device=q.device, dtype=torch.float32)
    launch(_axial_rel_bwd_pre_kernel, grid, (out, dout, delta), (L, D, *_strides(out)), BM=bm, BD=bd)
    rq, rk, rv = (r.contiguous() for r in (rel_q, rel_k, rel_v))
    dq, dk, dv = (torch.empty_like(t) for t in (q, k, v))   # same strides: dense line views
    slots = min(BWD_CFG["slots"], N * M)
    dtab = torch.zeros(slots, 3, 2 * L - 1, D, device=q.device, dtype=torch.float32)
    dg = torch.zeros(slots, 4, device=q.device, dtype=torch.float32)
    launch(_axial_rel_bwd_dkv_kernel, grid, (q, k, v, rq, rk, rv, gates, dout, lse, delta, dk, dv, dtab, dg),
           (L, D, scale, slots, *_strides(q), *_strides(k), *_strides(v)), BM=bm, BN=bm, BD=bd, WP=wp,
           DT=_TL[q.dtype], num_warps=cfg["warps"])
    bm, bd, wp = _blocks(L, D, cfg["dq_bm"], q.dtype)
    launch(_axial_rel_bwd_dq_kernel, (cdiv(L, bm), M, N), (q, k, v, rq, rk, rv, gates, dout, lse, delta, dq),
           (L, D, scale, *_strides(q), *_strides(k), *_strides(v)), BM=bm, BN=bm, BD=bd, WP=wp, DT=_TL[q.dtype],
           num_warps=cfg["dq_warps"])
    drq, drk, drv = dtab.sum(0).unbind(0)
    g = gates.float()
    return dq, dk, dv, g[0] * drq, g[1] * drk, g[3] * drv, dg.sum(0)
