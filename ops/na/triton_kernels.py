"""Fused neighborhood-attention Triton kernels (forward, dQ, dK/dV), one generic 3-axis kernel for 1-D/2-D/3-D.

Queries are tiled in dilation-group coordinates (a tile holds TX x TY x TZ queries of one dilation group, contiguous
per axis), so the union of their key windows is a small box; each program walks that box in flattened blocks of
keys with an exact per-(query, key) NA mask, online softmax in fp32 and no attention matrix in memory. The dK/dV
kernel walks the inverse box (queries whose windows can reach a key tile). The backward either runs a dQ kernel and
then the dK/dV kernel (split: deterministic), or, where `default_config` finds it faster, only the dK/dV kernel, which
then also adds each block's dQ share into an fp32 buffer with atomics (fused: five products per block instead of
seven over the two kernels). Tensors are contiguous `[B, X, Y, Z, H, D]`; the logsumexp (base 2) is `[B, H, N]`.
"""
from __future__ import annotations

import functools
import math
from typing import NamedTuple

import torch
import triton
import triton.language as tl

from .._nd import cdiv, next_pow2
from .._triton import INTERPRET, Launch
from .params import NAParams

__all__ = ["na_fwd_triton", "na_bwd_triton", "launch_plans", "Plans", "default_config", "INTERPRET"]

LOG2E = 1.4426950408889634


@triton.jit
def _win(ig, Lg, K, S, CAUSAL: tl.constexpr):
    """In-group window [ws, we] (inclusive) of in-group query index `ig` (scalar or tensor)."""
    if CAUSAL:
        lead = (ig // S) * S
        ws = tl.maximum(lead - K + 1, 0)
        we = lead
    else:
        lead = (ig // S) * S + S // 2
        ws = tl.minimum(tl.maximum(lead - K // 2, 0), Lg - K)
        we = ws + K - 1
    return ws, we


@triton.jit
def _inv(a, b, Lg, K, S, CAUSAL: tl.constexpr):
    """In-group query range [lo, hi] whose windows can contain a key in [a, b]."""
    if CAUSAL:
        lo = ((a + S - 1) // S) * S
        hi = ((b + K - 1) // S) * S + S - 1
    else:
        left = K // 2
        pmin = tl.where(a - K + 1 <= 0, 0, a - K + 1 + left)
        lo = ((tl.maximum(pmin - S // 2, 0) + S - 1) // S) * S
        hi = tl.where(b >= Lg - K, Lg - 1, ((b + left - S // 2) // S) * S + S - 1)
    return lo, tl.minimum(hi, Lg - 1)


@triton.jit
def _tile(idx, L, Dil, TPG, T: tl.constexpr):
    """Dilation group, first in-group index and group length of tile `idx` on one axis."""
    g = idx // TPG
    ig0 = (idx % TPG) * T
    Lg = (L - g + Dil - 1) // Dil
    return g, ig0, Lg


@triton.jit
def _pids(HEADS_FAST: tl.constexpr):
    """(tile, batch*head) program ids; heads vary fastest when the grid allows it, so that programs running
    together share the cache lines of the interleaved heads."""
    if HEADS_FAST:
        pid = tl.program_id(1)
        bh = tl.program_id(0)
    else:
        pid = tl.program_id(0)
        bh = tl.program_id(1)
    return pid, bh


@triton.jit
def _program(H, N, HD, HEAD_DIM: tl.constexpr, HEADS_FAST: tl.constexpr):
    """Program ids, token row stride, this (batch, head)'s base offset, head-dim offsets and their mask."""
    pid, bh = _pids(HEADS_FAST)
    row = H * HD
    base = (bh // H).to(tl.int64) * N * row + (bh % H) * HD
    dofs = tl.arange(0, HEAD_DIM)
    return pid, bh, row, base, dofs, dofs[None, :] < HD


@triton.jit
def _and_axis(ok, kc, ws, we, FULL: tl.constexpr, KEYS_FIRST: tl.constexpr):
    """`ok` and the per-(query, key) window test on one axis (skipped where the window is the whole axis); `ok` is
    [queries, keys], or [keys, queries] when KEYS_FIRST."""
    if not FULL:
        if KEYS_FIRST:
            ok = ok & (kc[:, None] >= ws[None, :]) & (kc[:, None] <= we[None, :])
        else:
            ok = ok & (kc[None, :] >= ws[:, None]) & (kc[None, :] <= we[:, None])
    return ok


@triton.jit
def _box(n, x0, y0, z0, by, bz, TRX: tl.constexpr, TRY: tl.constexpr):
    """Coordinates of entries `n` of a flattened box starting at (x0, y0, z0) with extents (., by, bz); axes of
    length 1 (TRX/TRY) stay scalar so that 1-D boxes keep contiguous addresses."""
    if TRX:
        cx = x0
    else:
        cx = x0 + n // (by * bz)
    if TRY:
        cy = y0
    else:
        cy = y0 + (n // bz) % by
    if TRX and TRY:
        cz = z0 + n
    else:
        cz = z0 + n % bz
    return cx, cy, cz


@triton.jit
def _kblock(it, x0, y0, z0, zmax, by, bz, nch, nbox, wslx, wefx, wsly, wefy, wslz, wefz,
            BLOCK: tl.constexpr, ROWS: tl.constexpr, TRX: tl.constexpr, TRY: tl.constexpr):
    """Block `it` of a box: coordinates (x, y scalar in ROWS mode), validity, and whether it lies inside every
    window of the tile (ranges [wsl, wef] per axis: last query's start, first query's end).

    ROWS mode walks the box row by row in chunks of BLOCK along the innermost axis (large windows, so that
    interior chunks skip the mask); otherwise the box is flattened (small windows, no padding per row)."""
    if ROWS:
        r = it // nch
        zs = z0 + (it % nch) * BLOCK
        cx = x0 + r // by
        cy = y0 + r % by
        cz = zs + tl.arange(0, BLOCK)
        valid = cz <= zmax
        inner = (cx >= wslx) & (cx <= wefx) & (cy >= wsly) & (cy <= wefy) & (zs >= wslz) & (zs + BLOCK - 1 <= wefz)
    else:
        n = it * BLOCK + tl.arange(0, BLOCK)
        cx, cy, cz = _box(n, x0, y0, z0, by, bz, TRX, TRY)
        valid = n < nbox
        if TRX and TRY:
            inner = (z0 + it * BLOCK >= wslz) & (z0 + it * BLOCK + BLOCK - 1 <= wefz)
        else:
            inner = it < 0
    return cx, cy, cz, valid, inner


@triton.jit
def _kmask(kx, ky, kz, kvalid, wsx, wex, wsy, wey, wsz, wez,
           FX: tl.constexpr, FY: tl.constexpr, FZ: tl.constexpr, ROWS: tl.constexpr):
    """[queries, keys] NA mask for a key block against per-query windows."""
    ok = kvalid[None, :]
    if ROWS:
        if not FX:
            ok = ok & ((kx >= wsx) & (kx <= wex))[:, None]
        if not FY:
            ok = ok & ((ky >= wsy) & (ky <= wey))[:, None]
    else:
        ok = _and_axis(_and_axis(ok, kx, wsx, wex, FX, False), ky, wsy, wey, FY, False)
    return _and_axis(ok, kz, wsz, wez, FZ, False)


@triton.jit
def _tile3(pid, Lx, Ly, Lz, Dx, Dy, Dz, TPGx, TPGy, TPGz, TX: tl.constexpr, TY: tl.constexpr, TZ: tl.constexpr):
    """Tile `pid` over 3 axes: dilation groups, first in-group indices, group lengths, and its tokens' in-group
    coordinates, validity and flat token indices."""
    ntz = Dz * TPGz
    nty = Dy * TPGy
    gx, ig0x, Lgx = _tile(pid // (ntz * nty), Lx, Dx, TPGx, TX)
    gy, ig0y, Lgy = _tile((pid // ntz) % nty, Ly, Dy, TPGy, TY)
    gz, ig0z, Lgz = _tile(pid % ntz, Lz, Dz, TPGz, TZ)
    m = tl.arange(0, TX * TY * TZ)
    cx = ig0x + m // (TY * TZ)
    cy = ig0y + (m // TZ) % TY
    cz = ig0z + m % TZ
    valid = (cx < Lgx) & (cy < Lgy) & (cz < Lgz)
    tok = ((gx + Dx * cx) * Ly + gy + Dy * cy) * Lz + gz + Dz * cz
    return gx, gy, gz, ig0x, ig0y, ig0z, Lgx, Lgy, Lgz, cx, cy, cz, valid, tok


@triton.jit
def _qtile(Lx, Ly, Lz, Kx, Ky, Kz, Dx, Dy, Dz, Sx, Sy, Sz, TPGx, TPGy, TPGz, pid,
           CX: tl.constexpr, CY: tl.constexpr, CZ: tl.constexpr,
           TX: tl.constexpr, TY: tl.constexpr, TZ: tl.constexpr, BLOCK_N: tl.constexpr, ROWS: tl.constexpr):
    """A program's query tile: token indices, validity, per-query windows and its key box."""
    (gx, gy, gz, ig0x, ig0y, ig0z, Lgx, Lgy, Lgz, qx, qy, qz, qvalid, tok_q) = _tile3(
        pid, Lx, Ly, Lz, Dx, Dy, Dz, TPGx, TPGy, TPGz, TX, TY, TZ)
    wsx, wex = _win(qx, Lgx, Kx, Sx, CX)
    wsy, wey = _win(qy, Lgy, Ky, Sy, CY)
    wsz, wez = _win(qz, Lgz, Kz, Sz, CZ)
    kminx, wefx = _win(ig0x, Lgx, Kx, Sx, CX)
    kminy, wefy = _win(ig0y, Lgy, Ky, Sy, CY)
    kminz, wefz = _win(ig0z, Lgz, Kz, Sz, CZ)
    wslx, kmaxx = _win(tl.minimum(ig0x + TX - 1, Lgx - 1), Lgx, Kx, Sx, CX)
    wsly, kmaxy = _win(tl.minimum(ig0y + TY - 1, Lgy - 1), Lgy, Ky, Sy, CY)
    wslz, kmaxz = _win(tl.minimum(ig0z + TZ - 1, Lgz - 1), Lgz, Kz, Sz, CZ)
    bx = kmaxx - kminx + 1
    by = kmaxy - kminy + 1
    bz = kmaxz - kminz + 1
    empty = (ig0x >= Lgx) | (ig0y >= Lgy) | (ig0z >= Lgz)
    nbox = tl.where(empty, 0, bx * by * bz)
    nch = tl.cdiv(bz, BLOCK_N)
    if ROWS:
        nblocks = tl.where(empty, 0, bx * by * nch)
    else:
        nblocks = tl.cdiv(nbox, BLOCK_N)
    return (gx, gy, gz, tok_q, qvalid, wsx, wex, wsy, wey, wsz, wez, kminx, kminy, kminz, kmaxz,
            wslx, wefx, wsly, wefy, wslz, wefz, by, bz, nbox, nch, nblocks)


@triton.jit
def _na_fwd_kernel(
    Q, K, V, O, LSE, qk_scale, H, N, HD,
    Lx, Ly, Lz, Kx, Ky, Kz, Dx, Dy, Dz, Sx, Sy, Sz, TPGx, TPGy, TPGz,
    CX: tl.constexpr, CY: tl.constexpr, CZ: tl.constexpr,
    FX: tl.constexpr, FY: tl.constexpr, FZ: tl.constexpr, TRX: tl.constexpr, TRY: tl.constexpr,
    TX: tl.constexpr, TY: tl.constexpr, TZ: tl.constexpr, ROWS: tl.constexpr,
    BLOCK_N: tl.constexpr, HEAD_DIM: tl.constexpr, PREC: tl.constexpr, HEADS_FAST: tl.constexpr,
):
    pid, bh, row, base, dofs, dmask = _program(H, N, HD, HEAD_DIM, HEADS_FAST)
    (gx, gy, gz, tok_q, qvalid, wsx, wex, wsy, wey, wsz, wez, kminx, kminy, kminz, kmaxz,
     wslx, wefx, wsly, wefy, wslz, wefz, by, bz, nbox, nch, nblocks) = _qtile(
        Lx, Ly, Lz, Kx, Ky, Kz, Dx, Dy, Dz, Sx, Sy, Sz, TPGx, TPGy, TPGz, pid, CX, CY, CZ, TX, TY, TZ, BLOCK_N, ROWS)

    q = tl.load(Q + base + tok_q[:, None] * row + dofs[None, :], mask=qvalid[:, None] & dmask, other=0.0)

    m_i = tl.full([TX * TY * TZ], -1.0e30, dtype=tl.float32)
    l_i = tl.zeros([TX * TY * TZ], dtype=tl.float32)
    acc = tl.zeros([TX * TY * TZ, HEAD_DIM], dtype=tl.float32)
    for it in range(0, nblocks):
        kx, ky, kz, kvalid, inner = _kblock(it, kminx, kminy, kminz, kmaxz, by, bz, nch, nbox, wslx, wefx, wsly,
                                            wefy, wslz, wefz, BLOCK_N, ROWS, TRX, TRY)
        tok_k = ((gx + Dx * kx) * Ly + gy + Dy * ky) * Lz + gz + Dz * kz
        kptr = base + tok_k[:, None] * row + dofs[None, :]
        kt = tl.load(K + kptr, mask=kvalid[:, None] & dmask, other=0.0)
        s = tl.dot(q, tl.trans(kt), input_precision=PREC) * qk_scale
        if not inner:
            s = tl.where(_kmask(kx, ky, kz, kvalid, wsx, wex, wsy, wey, wsz, wez, FX, FY, FZ, ROWS), s,
                         float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        alpha = tl.math.exp2(m_i - m_new)
        p = tl.math.exp2(s - m_new[:, None])
        l_i = l_i * alpha + tl.sum(p, 1)
        vt = tl.load(V + kptr, mask=kvalid[:, None] & dmask, other=0.0)
        acc = acc * alpha[:, None] + tl.dot(p.to(vt.dtype), vt, input_precision=PREC)
        m_i = m_new
    l_safe = tl.where(l_i > 0, l_i, 1.0)
    out = acc / l_safe[:, None]
    tl.store(O + base + tok_q[:, None] * row + dofs[None, :], out.to(O.dtype.element_ty), mask=qvalid[:, None] & dmask)
    tl.store(LSE + bh.to(tl.int64) * N + tok_q, m_i + tl.math.log2(l_safe), mask=qvalid)


@triton.jit
def _na_bwd_dq_kernel(
    Q, K, V, O, DO, LSE, DELTA, DQ, qk_scale, sm_scale, H, N, HD,
    Lx, Ly, Lz, Kx, Ky, Kz, Dx, Dy, Dz, Sx, Sy, Sz, TPGx, TPGy, TPGz,
    CX: tl.constexpr, CY: tl.constexpr, CZ: tl.constexpr,
    FX: tl.constexpr, FY: tl.constexpr, FZ: tl.constexpr, TRX: tl.constexpr, TRY: tl.constexpr,
    TX: tl.constexpr, TY: tl.constexpr, TZ: tl.constexpr, ROWS: tl.constexpr,
    BLOCK_N: tl.constexpr, HEAD_DIM: tl.constexpr, PREC: tl.constexpr, HEADS_FAST: tl.constexpr,
):
    pid, bh, row, base, dofs, dmask = _program(H, N, HD, HEAD_DIM, HEADS_FAST)
    (gx, gy, gz, tok_q, qvalid, wsx, wex, wsy, wey, wsz, wez, kminx, kminy, kminz, kmaxz,
     wslx, wefx, wsly, wefy, wslz, wefz, by, bz, nbox, nch, nblocks) = _qtile(
        Lx, Ly, Lz, Kx, Ky, Kz, Dx, Dy, Dz, Sx, Sy, Sz, TPGx, TPGy, TPGz, pid, CX, CY, CZ, TX, TY, TZ, BLOCK_N, ROWS)

    qmask = qvalid[:, None] & dmask
    qptr = base + tok_q[:, None] * row + dofs[None, :]
    q = tl.load(Q + qptr, mask=qmask, other=0.0)
    do = tl.load(DO + qptr, mask=qmask, other=0.0)
    lse = tl.load(LSE + bh.to(tl.int64) * N + tok_q, mask=qvalid, other=0.0)
    # delta = rowsum(dO * O), the softmax-backward correction; stored for the dK/dV kernel, which runs after this one
    o = tl.load(O + qptr, mask=qmask, other=0.0)
    delta = tl.sum(do.to(tl.float32) * o.to(tl.float32), 1)
    tl.store(DELTA + bh.to(tl.int64) * N + tok_q, delta, mask=qvalid)

    dq = tl.zeros([TX * TY * TZ, HEAD_DIM], dtype=tl.float32)
    for it in range(0, nblocks):
        kx, ky, kz, kvalid, inner = _kblock(it, kminx, kminy, kminz, kmaxz, by, bz, nch, nbox, wslx, wefx, wsly,
                                            wefy, wslz, wefz, BLOCK_N, ROWS, TRX, TRY)
        tok_k = ((gx + Dx * kx) * Ly + gy + Dy * ky) * Lz + gz + Dz * kz
        kptr = base + tok_k[:, None] * row + dofs[None, :]
        kt = tl.load(K + kptr, mask=kvalid[:, None] & dmask, other=0.0)
        vt = tl.load(V + kptr, mask=kvalid[:, None] & dmask, other=0.0)
        s = tl.dot(q, tl.trans(kt), input_precision=PREC) * qk_scale
        p = tl.math.exp2(s - lse[:, None])
        if not inner:
            p = tl.where(_kmask(kx, ky, kz, kvalid, wsx, wex, wsy, wey, wsz, wez, FX, FY, FZ, ROWS), p, 0.0)
        dp = tl.dot(do, tl.trans(vt), input_precision=PREC)
        ds = p * (dp - delta[:, None])
        dq += tl.dot(ds.to(kt.dtype), kt, input_precision=PREC)
    tl.store(DQ + qptr, (dq * sm_scale).to(DQ.dtype.element_ty), mask=qmask)


@triton.jit
def _na_bwd_delta_kernel(O, DO, DELTA, H, N, HD, BLOCK_T: tl.constexpr, HEAD_DIM: tl.constexpr):
    """delta = rowsum(dO * O) `[B, H, N]` fp32, for the fused backward (the split one computes it in the dQ kernel)."""
    pid, bh, row, base, dofs, dmask = _program(H, N, HD, HEAD_DIM, False)
    tok = pid * BLOCK_T + tl.arange(0, BLOCK_T)
    ptr = base + tok[:, None] * row + dofs[None, :]
    mask = (tok[:, None] < N) & dmask
    o = tl.load(O + ptr, mask=mask, other=0.0).to(tl.float32)
    do = tl.load(DO + ptr, mask=mask, other=0.0).to(tl.float32)
    tl.store(DELTA + bh.to(tl.int64) * N + tok, tl.sum(o * do, 1), mask=tok < N)


@triton.jit
def _na_bwd_dkv_kernel(
    Q, K, V, DO, LSE, DELTA, DK, DV, DQ, qk_scale, sm_scale, H, N, HD,
    Lx, Ly, Lz, Kx, Ky, Kz, Dx, Dy, Dz, Sx, Sy, Sz, TPGx, TPGy, TPGz,
    CX: tl.constexpr, CY: tl.constexpr, CZ: tl.constexpr,
    FX: tl.constexpr, FY: tl.constexpr, FZ: tl.constexpr, TRX: tl.constexpr, TRY: tl.constexpr,
    TX: tl.constexpr, TY: tl.constexpr, TZ: tl.constexpr, ROWS: tl.constexpr,
    BLOCK_M: tl.constexpr, HEAD_DIM: tl.constexpr, PREC: tl.constexpr, HEADS_FAST: tl.constexpr,
    FUSED_DQ: tl.constexpr,
):
    # FUSED_DQ: also add sm_scale * dS K of every block into DQ (fp32, zeroed), so that no dQ kernel runs
    tl.static_assert(not (FUSED_DQ and ROWS), "the fused backward walks flattened query boxes only")
    pid, bh, row, base, dofs, dmask = _program(H, N, HD, HEAD_DIM, HEADS_FAST)
    (gx, gy, gz, ig0x, ig0y, ig0z, Lgx, Lgy, Lgz, kx, ky, kz, kvalid, tok_k) = _tile3(
        pid, Lx, Ly, Lz, Dx, Dy, Dz, TPGx, TPGy, TPGz, TX, TY, TZ)
    klx = tl.minimum(ig0x + TX - 1, Lgx - 1)
    kly = tl.minimum(ig0y + TY - 1, Lgy - 1)
    klz = tl.minimum(ig0z + TZ - 1, Lgz - 1)
    qlox, qhix = _inv(ig0x, klx, Lgx, Kx, Sx, CX)
    qloy, qhiy = _inv(ig0y, kly, Lgy, Ky, Sy, CY)
    qloz, qhiz = _inv(ig0z, klz, Lgz, Kz, Sz, CZ)
    bx = qhix - qlox + 1
    by = qhiy - qloy + 1
    bz = qhiz - qloz + 1
    empty = (ig0x >= Lgx) | (ig0y >= Lgy) | (ig0z >= Lgz) | (bx <= 0) | (by <= 0) | (bz <= 0)
    nbox = tl.where(empty, 0, bx * by * bz)
    nch = tl.cdiv(bz, BLOCK_M)
    if ROWS:
        nblocks = tl.where(empty, 0, bx * by * nch)
    else:
        nblocks = tl.cdiv(nbox, BLOCK_M)

    kmask = kvalid[:, None] & dmask
    kptr = base + tok_k[:, None] * row + dofs[None, :]
    kt = tl.load(K + kptr, mask=kmask, other=0.0)
    vt = tl.load(V + kptr, mask=kmask, other=0.0)

    dk = tl.zeros([TX * TY * TZ, HEAD_DIM], dtype=tl.float32)
    dv = tl.zeros([TX * TY * TZ, HEAD_DIM], dtype=tl.float32)
    for it in range(0, nblocks):
        # queries of this block; an "inner" block has every key of the tile in every query's window
        qx, qy, qz, qvalid, _unused = _kblock(it, qlox, qloy, qloz, qhiz, by, bz, nch, nbox, 0, 0, 0, 0, 0, 0,
                                              BLOCK_M, ROWS, TRX, TRY)
        tok_q = ((gx + Dx * qx) * Ly + gy + Dy * qy) * Lz + gz + Dz * qz
        wsx, wex = _win(qx, Lgx, Kx, Sx, CX)
        wsy, wey = _win(qy, Lgy, Ky, Sy, CY)
        wsz, wez = _win(qz, Lgz, Kz, Sz, CZ)
        qptr = base + tok_q[:, None] * row + dofs[None, :]
        q = tl.load(Q + qptr, mask=qvalid[:, None] & dmask, other=0.0)
        do = tl.load(DO + qptr, mask=qvalid[:, None] & dmask, other=0.0)
        lse = tl.load(LSE + bh.to(tl.int64) * N + tok_q, mask=qvalid, other=0.0)
        delta = tl.load(DELTA + bh.to(tl.int64) * N + tok_q, mask=qvalid, other=0.0)
        if ROWS:
            # transposed, [keys, BLOCK_M], so that dK and dV take P^T and dS^T as computed. The plain form's
            # tl.dot(tl.trans(ds), q) gave wrong dK here when pipelined on an H100 (triton 3.6, head_dim 96/128,
            # 32-query blocks; off by up to 0.19), like fla-org/flash-linear-attention#640; this form is exact at
            # 1-3 stages and, pipelined, the faster one (N2 dK/dV 59.9 -> 40.2 ms)
            pt = tl.math.exp2(tl.dot(kt, tl.trans(q), input_precision=PREC) * qk_scale - lse[None, :])
            zs = qloz + (it % nch) * BLOCK_M
            ws_last, _a = _win(tl.minimum(zs + BLOCK_M - 1, qhiz), Lgz, Kz, Sz, CZ)
            _b, we_first = _win(zs, Lgz, Kz, Sz, CZ)
            inner = ((wsx <= ig0x) & (wex >= klx) & (wsy <= ig0y) & (wey >= kly) & (ws_last <= ig0z)
                     & (we_first >= klz) & (zs + BLOCK_M - 1 <= qhiz))
            if not inner:
                ok = qvalid[None, :] & _and_axis(kvalid[:, None] | True, kz, wsz, wez, FZ, True)
                if not FX:
                    ok = ok & ((kx[:, None] >= wsx) & (kx[:, None] <= wex))
                if not FY:
                    ok = ok & ((ky[:, None] >= wsy) & (ky[:, None] <= wey))
                pt = tl.where(ok, pt, 0.0)
            dv += tl.dot(pt.to(do.dtype), do, input_precision=PREC)
            dst = pt * (tl.dot(vt, tl.trans(do), input_precision=PREC) - delta[None, :])
            dk += tl.dot(dst.to(q.dtype), q, input_precision=PREC)
        else:
            # [BLOCK_M, keys]: on the flattened walk 1.5-2.6x faster than the transposed form (S1-S7, N3), and exact
            # at every depth swept
            p = tl.math.exp2(tl.dot(q, tl.trans(kt), input_precision=PREC) * qk_scale - lse[:, None])
            ok = _and_axis(_and_axis(_and_axis(qvalid[:, None], kx, wsx, wex, FX, False), ky, wsy, wey, FY, False),
                           kz, wsz, wez, FZ, False)
            p = tl.where(ok, p, 0.0)
            dv += tl.dot(tl.trans(p.to(do.dtype)), do, input_precision=PREC)
            ds = p * (tl.dot(do, tl.trans(vt), input_precision=PREC) - delta[:, None])
            dk += tl.dot(tl.trans(ds.to(q.dtype)), q, input_precision=PREC)
            if FUSED_DQ:
                dq = tl.dot(ds.to(kt.dtype), kt, input_precision=PREC) * sm_scale
                tl.atomic_add(DQ + qptr, dq, mask=qvalid[:, None] & dmask, sem="relaxed")
    tl.store(DK + kptr, (dk * sm_scale).to(DK.dtype.element_ty), mask=kmask)
    tl.store(DV + kptr, dv.to(DV.dtype.element_ty), mask=kmask)


# ----------------------------------------------------------------------------------------------- launch helpers

_TILE_64 = {1: (1, 1, 64), 2: (1, 8, 8), 3: (4, 4, 4)}  # 64-token tiles (X, Y, Z) per number of real axes
_SHORT_2D_KEYS = 256  # 2-D windows up to this many keys run the forward on 64-query tiles walking rows
_SHORT_2D_TILES = ((1, 4, 16), (1, 2, 32), (1, 8, 8))  # its candidates; the one that walks the fewest keys wins
_DELTA_TOKENS = 64  # tokens per program of the delta kernel


def fit_tile(lg_max: tuple[int, ...], target: tuple[int, ...], min_tokens: int = 16) -> tuple[int, int, int]:
    """Shrink a target tile to the axes' group lengths and regrow other axes to keep the token count."""
    t = [min(t, next_pow2(n)) for t, n in zip(target, lg_max)]
    total = max(math.prod(target), min_tokens)
    grown = True
    while math.prod(t) < total and grown:
        grown = False
        for a in (2, 1, 0):
            if t[a] < next_pow2(lg_max[a]) and math.prod(t) < total:
                t[a] *= 2
                grown = True
    while math.prod(t) < min_tokens:
        t[2] *= 2
    return tuple(t)  # type: ignore[return-value]


def _geometry(p: NAParams, tile: tuple[int, int, int]) -> tuple[list, int]:
    """Per-axis runtime ints (shape, kernel, dilation, stride, tiles per dilation group) and the number of tiles
    of a padded 3-axis problem."""
    tpg = tuple(cdiv(cdiv(L, d), t) for L, d, t in zip(p.shape, p.dilation, tile))
    ints = [*p.shape, *p.kernel_size, *p.dilation, *p.stride, *tpg]
    ntiles = math.prod(d * n for d, n in zip(p.dilation, tpg))
    return ints, ntiles


def _grid(ntiles: int, bh: int) -> tuple[int, int]:
    return (bh, ntiles) if ntiles <= 65535 else (ntiles, bh)


def _flags(p: NAParams) -> dict:
    full = [(not c) and d == 1 and k == L for L, k, d, c in zip(p.shape, p.kernel_size, p.dilation, p.is_causal)]
    return dict(CX=p.is_causal[0], CY=p.is_causal[1], CZ=p.is_causal[2], FX=full[0], FY=full[1], FZ=full[2],
                TRX=p.shape[0] == 1, TRY=p.shape[1] == 1)


def default_config(p: NAParams, ndim: int, head_dim: int) -> dict:
    """Tile shapes, block sizes, warps and pipeline stages, from config sweeps on an H100 (`tools/bench_ops.py na
    --tune`; S1-S7, N2, N3). The forward takes the first of two candidate tiles whose key rows fill whole blocks
    (ROWS mode: interior blocks skip the mask), which is what made k=31 d64 1.5x and N3 2.2x faster. Without
    ROWS, small heads (d <= 32) run narrower programs: 2 warps over 32-key blocks in 2-D, and 3-D windows up to 7
    take 2x4x4 query tiles (S6 forward 0.58 -> 0.42 ms, S7 1.33 -> 0.92 ms). The 2-D small-head backward runs
    dK/dV on 1x4x8 key tiles, 32-query blocks and 2 warps (S1/S5/S2 backward 4.5/5.5/2.5 % faster), and dQ on
    1x2x16 tiles when windows are short and undilated (S1 3 % faster; slower on S2 and S5). With larger 2-D heads,
    dQ walks rows on the forward's tile, 3 stages deep, whenever the forward does (S3 dQ 0.87 -> 0.55 ms,
    N2 31 -> 19 ms), and dK/dV runs 3 stages deep (S3 0.82 -> 0.77 ms, S4 0.29 -> 0.28, N2 40.2 -> 38.7). 1-D
    runs both backward kernels 2 stages deep (N1 dQ 1.16 -> 0.87 ms); 3-D keeps them unpipelined (2 stages: N3
    +10 %, S7 +6 %, S6 +6 %). The backward is fused (dQ by atomics in the dK/dV kernel) for heads up to 64 and
    windows of at least 128 keys: backward S4 1.27x, S6 1.20x, S3 1.14x, S2 1.07x faster than split. Split stays
    for 49-key windows (S1 0.98x, S5 0.94x), head_dim 128 (N3 0.67x) and S7's 125 keys (1.03x, not worth its fp32
    dQ buffer: peak memory 264 -> 392 MiB). 2-D windows of up to 256 keys run the forward on 64-query tiles
    walking rows in 32-key chunks (`fwd_rows`, even where chunks are a third padding), on whichever of 4x16, 2x32
    and 8x8 walks the fewest keys: forward S4 1.50x, S2 1.38x, S5 1.17x, S1 1.12x faster than the
    flattened walk on 64- or 128-query tiles; 961 keys (S3) stay faster on 128-query tiles."""
    lg = tuple(cdiv(L, d) for L, d in zip(p.shape, p.dilation))
    small = head_dim <= 32
    small_3d = ndim == 3 and small and max(p.kernel_size) <= 7
    if ndim == 2:
        fwd_opts = ((1, 4, 16), (1, 4, 32)) if small else ((1, 8, 16), (1, 4, 32))
        short_rows = small and max(p.kernel_size) <= 7 and max(p.dilation) == 1
        dq = ((1, 2, 16) if short_rows else (1, 4, 8)) if small else (1, 8, 8)
        dkv = (1, 4, 8) if small else (1, 8, 8)
    else:
        fwd_opts = ((2, 4, 4),) if small_3d else (_TILE_64[ndim], (2, 8, 8)) if ndim == 3 else (_TILE_64[ndim],)
        dq = (2, 4, 4) if small_3d else _TILE_64[ndim]
        dkv = _TILE_64[ndim]
    block_n = 128 if ndim == 3 and small and not small_3d else 64
    fits = [fit_tile(lg, t) for t in fwd_opts]
    # the tile of the padding rule (`_rows_mode`): the forward's, unless short 2-D windows take their own below;
    # dQ walks rows on it wherever the rule picks rows
    tile, rows = next(((t, True) for t in fits if _rows_mode(p, t, block_n, None)[0]), (fits[0], False))
    narrow_fwd = ndim == 2 and small and not rows
    fwd, fwd_block_n, fwd_warps, fwd_rows = tile, 32 if narrow_fwd else block_n, 2 if narrow_fwd else 4, None
    if ndim == 2 and math.prod(p.kernel_size) <= _SHORT_2D_KEYS:
        fwd = min((fit_tile(lg, t) for t in _SHORT_2D_TILES), key=lambda t: _walked_keys(p, lg, t, 32))
        fwd_block_n, fwd_rows = 32, True
    narrow_dq = (ndim == 2 and small) or small_3d
    rows_dq = ndim == 2 and not small and rows
    bwd_stages = 1 if ndim == 3 else 2
    return dict(fwd_tile=fwd, fwd_block_n=fwd_block_n, fwd_warps=fwd_warps, fwd_rows=fwd_rows,
                fwd_stages=3 if ndim == 2 or rows else 2,
                dq_tile=tile if rows_dq else fit_tile(lg, dq), dq_block_n=32 if narrow_dq else 64,
                dq_warps=2 if narrow_dq else 4, dq_stages=3 if rows_dq else bwd_stages,
                dkv_tile=fit_tile(lg, dkv), dkv_block_m=32 if ndim == 2 and small else 64,
                dkv_warps=2 if ndim == 2 and small else 4, dkv_stages=3 if ndim == 2 and not small else bwd_stages,
                fused_bwd=head_dim <= 64 and math.prod(p.kernel_size) >= 128)


def _box_extent(p: NAParams, tile: tuple[int, int, int], axis: int) -> int:
    """Upper bound on a tile's key-box extent along `axis`: tile + kernel + stride - 2, before clamping to the axis."""
    return tile[axis] + p.kernel_size[axis] + p.stride[axis] - 2


def _walked_keys(p: NAParams, lg: tuple[int, ...], tile: tuple[int, int, int], block: int) -> int:
    """Keys all of one group's tiles walk by rows in chunks of `block`: tiles times box keys, the box's innermost
    extent rounded up to whole chunks."""
    ext = [min(_box_extent(p, tile, a), n) for a, n in enumerate(lg)]
    return math.prod(cdiv(n, t) for n, t in zip(lg, tile)) * ext[0] * ext[1] * cdiv(ext[2], block) * block


def _rows_mode(pp: NAParams, tile: tuple[int, int, int], block: int, rows: bool | None) -> tuple[bool, int]:
    """(ROWS, block): walk boxes row by row when the innermost box extent (about tile + kernel + stride) fills
    whole blocks with little padding (<= 12.5 %); `rows` forces the mode."""
    extent = _box_extent(pp, tile, 2)
    for bn in (block, 32) if block > 32 else (block,):
        if cdiv(extent, bn) * bn <= 1.125 * extent and rows is not False:
            return True, bn
    return bool(rows), block


def _check_index_range(q: torch.Tensor) -> None:
    per_sample = math.prod(q.shape[1:])
    if per_sample >= 2**31:
        raise ValueError(f"backend='triton' indexes one sample with int32: tokens*heads*head_dim must be < 2**31, "
                         f"got {per_sample} for q of shape {tuple(q.shape)}")


class Plans(NamedTuple):
    """A problem's launches: forward, the split backward (dQ, then dK/dV) and, where `default_config` picks it and
    the dK/dV kernel walks a flattened box, the fused backward (delta, then dK/dV with dQ by atomics)."""

    fwd: Launch
    dq: Launch
    dkv: Launch
    delta: Launch | None
    fused: Launch | None


@functools.lru_cache(maxsize=256)
def _plans(p: NAParams, B: int, H: int, D: int, dtype: torch.dtype, config: tuple | None) -> Plans:
    """The launches (grids, the ints after the tensors and scales, constexprs, options). Cached: host time per call
    matters for small problems, and these depend only on the problem and the config (`config` as sorted items, or
    None for the defaults)."""
    pp = p if p.ndim == 3 else p.padded()
    cfg = default_config(pp, p.ndim, D)
    cfg.update(dict(config or ()))
    N = math.prod(p.shape)
    common = dict(_flags(pp), HEAD_DIM=next_pow2(max(16, D)), PREC="ieee" if dtype == torch.float32 else "tf32")

    def plan(kernel, tile: tuple[int, int, int], block: int, block_name: str, warps: int, stages: int,
             row_default: bool | None = None, **extra) -> Launch:
        ints, ntiles = _geometry(pp, tile)
        rows, blk = _rows_mode(pp, tile, block, cfg.get("rows", row_default))
        kw = dict(common, TX=tile[0], TY=tile[1], TZ=tile[2], ROWS=rows, HEADS_FAST=ntiles <= 65535,
                  num_warps=warps, num_stages=stages, **{block_name: blk}, **extra)
        return Launch(kernel, _grid(ntiles, B * H), (H, N, D, *ints), **kw)

    def dkv(fused: bool) -> Launch:
        return plan(_na_bwd_dkv_kernel, cfg["dkv_tile"], cfg["dkv_block_m"], "BLOCK_M", cfg["dkv_warps"],
                    cfg["dkv_stages"], FUSED_DQ=fused)

    split = dkv(False)
    fused = cfg["fused_bwd"] and not split.kwargs["ROWS"]
    delta = Launch(_na_bwd_delta_kernel, (cdiv(N, _DELTA_TOKENS), B * H), (H, N, D), BLOCK_T=_DELTA_TOKENS,
                   HEAD_DIM=common["HEAD_DIM"]) if fused else None
    return Plans(plan(_na_fwd_kernel, cfg["fwd_tile"], cfg["fwd_block_n"], "BLOCK_N", cfg["fwd_warps"],
                      cfg["fwd_stages"], cfg["fwd_rows"]),
                 plan(_na_bwd_dq_kernel, cfg["dq_tile"], cfg["dq_block_n"], "BLOCK_N", cfg["dq_warps"],
                      cfg["dq_stages"]),
                 split, delta, dkv(True) if fused else None)


def launch_plans(q: torch.Tensor, p: NAParams, config: dict | None = None) -> Plans:
    """The launch plans for q's batch, heads, head_dim and dtype (`config` overrides `default_config`'s entries);
    cached per problem."""
    return _plans(p, q.shape[0], q.shape[-2], q.shape[-1], q.dtype,
                  tuple(sorted(config.items())) if config else None)


def na_fwd_triton(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, p: NAParams, scale: float,
                  config: dict | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward on contiguous `[B, *spatial, H, D]`; returns (out, logsumexp base 2 `[B, H, N]` fp32)."""
    _check_index_range(q)
    fwd = launch_plans(q, p, config).fwd
    out = torch.empty_like(q)
    lse = torch.empty((q.shape[0], q.shape[-2], math.prod(p.shape)), device=q.device, dtype=torch.float32)
    fwd(q, k, v, out, lse, scale * LOG2E)
    return out, lse


def na_bwd_triton(do: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out: torch.Tensor,
                  lse: torch.Tensor, p: NAParams, scale: float, config: dict | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Backward (dq, dk, dv) from the forward's output and logsumexp; all tensors contiguous `[B, *spatial, H, D]`.
    Fused where the plans have it, except under `torch.use_deterministic_algorithms` (dQ's atomics add in no fixed
    order)."""
    _check_index_range(q)
    plans = launch_plans(q, p, config)
    delta = torch.empty_like(lse)
    dk, dv = torch.empty_like(k), torch.empty_like(v)
    if plans.fused is not None and not torch.are_deterministic_algorithms_enabled():
        plans.delta(out, do, delta)
        dq32 = torch.zeros(q.shape, device=q.device, dtype=torch.float32)
        plans.fused(q, k, v, do, lse, delta, dk, dv, dq32, scale * LOG2E, scale)
        return dq32.to(q.dtype), dk, dv
    dq = torch.empty_like(q)
    plans.dq(q, k, v, out, do, lse, delta, dq, scale * LOG2E, scale)
    plans.dkv(q, k, v, do, lse, delta, dk, dv, dq, scale * LOG2E, scale)  # dq: a pointer the split kernel ignores
    return dq, dk, dv
