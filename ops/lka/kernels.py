"""Triton kernels of large-kernel attention, channels-last tiles [pixels, channels] over th x tw pixel patches,
2-D run as 3-D with depth 1; 2-D depthwise convs with small enough kernels walk down the rows instead
(`_dw_rows_kernel`), which loads each input element once per kernel column rather than once per tap.

Forward is three passes: depthwise conv0 writes a1, the dilated depthwise conv1 writes a2, and the pointwise GEMM
multiplies by x in its epilogue. (Computing conv1 inside the GEMM as its A operand, which saves a2's write and
read, measured slower on an H100: the GEMM's pixel tile is a poor depthwise tile.) The backward uses the same
kernels (depthwise input-gradient = depthwise conv with the mirrored kernel; the 'dx = dout * attn' term = the
pointwise kernel with dout as multiplier, whose epilogue also writes 'dout * x' and adds up its channel sums, db2)
and a depthwise weight-gradient kernel; the two pointwise GEMMs of the backward (dW2, W2^T dA) run in cuBLAS.

Depthwise weights reach the kernels tap-major in fp32 ([taps, C], see `tap_major`), so one tap's weights for a
channel block are one contiguous vector load (read in place as [C, taps], each such load touches one sector per
channel: the 3-D tile kernel took 1.5x as long on an H100). The row walk reads that copy too, though it loads its
weights once per program: reading the bf16 weights in place instead (22fae8e, reverted) saved the copy's launch
(1-2 us) but made the 7x7 dilated conv 48 -> 67 us on an H100 (B8 C256 64x64, triton 3.6) with fewer registers
(162 vs 168), likely converting them inside the row loop. `FAST` (compiled, not interpreted) converts bf16 pairs
with two integer ops (`to_f32`)."""
from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl

from .._nd import cdiv, next_pow2
from .._triton import TL_DTYPE as _TL
from .._triton import INTERPRET, launch, to_f32

__all__ = ["depthwise_triton", "pointwise_mul_triton", "pointwise_mul_grad_triton", "depthwise_wgrad_triton",
           "tap_major", "as_3d", "as_rows"]


@triton.jit
def _pdl_start(PDL: tl.constexpr):
    """With PDL (the kernel was launched with programmatic dependent launch), wait for the kernels before it to
    finish, then let the next one start launching: all of this kernel's memory traffic comes after the wait, so
    only launch latency overlaps."""
    if PDL:
        tl.extra.cuda.gdc_wait()
        tl.extra.cuda.gdc_launch_dependents()


@triton.jit
def _tile_origin(tile, H, W, TH: tl.constexpr, TW: tl.constexpr):
    """(d, h0, w0) of the TH x TW pixel tile number `tile` (tiles ordered d, h, w)."""
    nth, ntw = (H + TH - 1) // TH, (W + TW - 1) // TW
    rem = tile % (nth * ntw)
    return tile // (nth * ntw), (rem // ntw) * TH, (rem % ntw) * TW


@triton.jit
def _tile_pixels(d, h0, w0, D, H, W, TH: tl.constexpr, TW: tl.constexpr):
    """Coordinates (d, h, w) and validity of the TH x TW pixels from (d, h0, w0)."""
    loc = tl.arange(0, TH * TW)
    pd = d + loc * 0    # a vector like ph and pw (the interpreter cannot mix scalar masks)
    ph = h0 + loc // TW
    pw = w0 + loc % TW
    return pd, ph, pw, (pd < D) & (ph < H) & (pw < W)


@triton.jit
def _pixels(tile, D, H, W, TH: tl.constexpr, TW: tl.constexpr):
    """Coordinates (d, h, w) and validity of the TH x TW pixel tile number `tile` (tiles ordered d, h, w)."""
    d, h0, w0 = _tile_origin(tile, H, W, TH, TW)
    return _tile_pixels(d, h0, w0, D, H, W, TH, TW)


@triton.jit
def _same_shift(k, K: tl.constexpr, DIL: tl.constexpr):
    """Offset from an output pixel to the input pixel under tap k (0 <= k < K) of a 'same'-padded conv of odd
    kernel size K and dilation DIL, along one axis."""
    return k * DIL - DIL * (K - 1) // 2


@triton.jit
def _dw_tile(src_ptr, wt_ptr, b, pd, ph, pw, mask_p, offs_c, mask_c, C, D, H, W, s_b, s_c, s_d, s_h, s_w,
             KD: tl.constexpr, KH: tl.constexpr, KW: tl.constexpr, DIL: tl.constexpr, FLIP: tl.constexpr,
             FAST: tl.constexpr):
    """Depthwise 'same' convolution of src at pixels (pd, ph, pw) and channels offs_c -> [BP, BC] fp32, with the
    tap-major weights wt [taps, C] (mirrored when FLIP: the input-gradient of the same conv)."""
    base = src_ptr + b * s_b + offs_c[None, :] * s_c
    acc = tl.zeros([ph.shape[0], offs_c.shape[0]], dtype=tl.float32)
    for kd in range(KD):
        idd = pd + _same_shift(kd, KD, DIL)
        md = mask_p & (idd >= 0) & (idd < D)
        for kh in range(KH):
            ih = ph + _same_shift(kh, KH, DIL)
            mh = md & (ih >= 0) & (ih < H)
            for kw in range(KW):
                iw = pw + _same_shift(kw, KW, DIL)
                m = mh & (iw >= 0) & (iw < W)
                v = tl.load(base + (idd * s_d + ih * s_h + iw * s_w)[:, None], mask=m[:, None] & mask_c[None, :],
                            other=0.0)
                tap = (kd * KH + kh) * KW + kw
                if FLIP:
                    tap = KD * KH * KW - 1 - tap
                wt = tl.load(wt_ptr + tap * C + offs_c, mask=mask_c, other=0.0)
                acc += to_f32(v, FAST) * wt[None, :]
    return acc


@triton.jit
def _dw_kernel(x_ptr, w_ptr, bias_ptr, add_ptr, y_ptr, C, D, H, W,
               sxb, sxc, sxd, sxh, sxw, syb, syc, syd, syh, syw,
               KD: tl.constexpr, KH: tl.constexpr, KW: tl.constexpr, DIL: tl.constexpr,
               HAS_BIAS: tl.constexpr, HAS_ADD: tl.constexpr, FLIP: tl.constexpr, TH: tl.constexpr,
               TW: tl.constexpr, BC: tl.constexpr, FAST: tl.constexpr):
    pid_p, pid_c = tl.program_id(0), tl.program_id(1)
    b = tl.program_id(2).to(tl.int64)
    pd, ph, pw, mask_p = _pixels(pid_p, D, H, W, TH, TW)
    offs_c = pid_c * BC + tl.arange(0, BC)
    mask_c = offs_c < C
    acc = _dw_tile(x_ptr, w_ptr, b, pd, ph, pw, mask_p, offs_c, mask_c, C, D, H, W, sxb, sxc, sxd, sxh, sxw,
                   KD, KH, KW, DIL, FLIP, FAST)
    if HAS_BIAS:
        acc += tl.load(bias_ptr + offs_c, mask=mask_c, other=0.0).to(tl.float32)[None, :]
    off = b * syb + (pd * syd + ph * syh + pw * syw)[:, None] + offs_c[None, :] * syc
    m = mask_p[:, None] & mask_c[None, :]
    if HAS_ADD:
        acc += tl.load(add_ptr + off, mask=m, other=0.0).to(tl.float32)
    tl.store(y_ptr + off, acc.to(y_ptr.dtype.element_ty), mask=m)


@triton.jit
def _dw_rows_store(acc, o, h_first, ROWS, H, y_ptr, add_ptr, out_off, mask_o, bias, syh,
                   DIL: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_ADD: tl.constexpr):
    """Store the finished accumulator of output row number o (row h_first + DIL * o) of a `_dw_rows_kernel`
    program, if that row is one of its ROWS rows and inside the image."""
    ho = h_first + DIL * o
    m = mask_o & (o >= 0) & (o < ROWS) & (ho < H)
    if HAS_BIAS:
        acc += bias
    off = out_off + ho * syh
    if HAS_ADD:
        acc += tl.load(add_ptr + off, mask=m, other=0.0).to(tl.float32)
    tl.store(y_ptr + off, acc.to(y_ptr.dtype.element_ty), mask=m)


@triton.jit
def _dw_rows_kernel(x_ptr, wt_ptr, bias_ptr, add_ptr, y_ptr, C, H, W, ROWS,
                    sxb, sxc, sxh, sxw, syb, syc, syh, syw,
                    KH: tl.constexpr, KW: tl.constexpr, DIL: tl.constexpr, HAS_BIAS: tl.constexpr,
                    HAS_ADD: tl.constexpr, FLIP: tl.constexpr, TW: tl.constexpr, SUB: tl.constexpr,
                    BC: tl.constexpr, STAGES: tl.constexpr, INSIDE_UNMASKED: tl.constexpr,
                    FAST: tl.constexpr, PDL: tl.constexpr):
    """`_dw_kernel` for 2-D maps and kernels whose weights fit in registers, walking down the rows: a program
    covers SUB sub-tiles of TW columns x BC channels of ROWS output rows DIL apart (one residue class of the rows mod
    DIL) and reads the input rows they touch once each per kw, skipping those outside the image (zero padding).
    Accumulator q[k] holds output row t - k while input row t goes by; after the row, q[KH - 1] is complete and the
    accumulators shift by one. Every input element is loaded and converted KW times instead of once per tap.
    INSIDE_UNMASKED (only if C fills the channel blocks): programs whose column taps all fall inside the image
    load without masks."""
    _pdl_start(PDL)
    pid_p, pid_c = tl.program_id(0), tl.program_id(1)
    b = tl.program_id(2).to(tl.int64)
    ncol = (W + SUB * TW - 1) // (SUB * TW)
    cls = pid_p // ncol
    h_first = cls % DIL + DIL * ROWS * (cls // DIL)          # the first output row of this program
    PH: tl.constexpr = DIL * (KH - 1) // 2
    # input row t is h_first + DIL * t - PH; walk t over those inside the image only
    t_lo = (tl.maximum(PH - h_first, 0) + DIL - 1) // DIL
    t_hi = tl.minimum(ROWS + KH - 2, (H - 1 + PH - h_first) // DIL)
    col0 = (pid_p % ncol) * (SUB * TW)
    offs_c = pid_c * BC + tl.arange(0, BC)
    mask_c = offs_c < C
    zero = (tl.arange(0, TW) * 0)[:, None]  # scalars as vectors (the interpreter cannot mix them into masks)
    xb = x_ptr + b * sxb + offs_c[None, :] * sxc
    # per sub-tile s of TW columns (flat tuples, index s * KW + kw and s): tap column offsets, masks, outputs
    cols = ()
    cmask = ()
    out_off = ()
    mask_o = ()
    for s in tl.static_range(SUB):
        offs_w = col0 + s * TW + tl.arange(0, TW)
        for kw in tl.static_range(KW):
            iw = offs_w + _same_shift(kw, KW, DIL)
            cols = cols + ((iw * sxw)[:, None],)
            cmask = cmask + (((iw >= 0) & (iw < W))[:, None] & mask_c[None, :],)
        out_off = out_off + (b * syb + offs_c[None, :] * syc + (offs_w * syw)[:, None],)
        mask_o = mask_o + ((offs_w < W)[:, None] & mask_c[None, :],)
    wts = ()
    for tap in tl.static_range(KH * KW):
        src_tap = KH * KW - 1 - tap if FLIP else tap
        wts = wts + (tl.load(wt_ptr + src_tap * C + offs_c, mask=mask_c, other=0.0)[None, :],)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + offs_c, mask=mask_c, other=0.0).to(tl.float32)[None, :]
    else:
        bias = tl.zeros([1, BC], dtype=tl.float32)
    PW: tl.constexpr = DIL * (KW - 1) // 2
    if INSIDE_UNMASKED and (col0 >= PW) and (col0 + SUB * TW + PW <= W):
        _dw_rows_walk(xb, cols, cmask, wts, bias, y_ptr, add_ptr, out_off, mask_o, zero, h_first, t_lo, t_hi, ROWS,
                      H, sxh, syh, KH, KW, DIL, SUB, HAS_BIAS, HAS_ADD, STAGES, FAST, False)
    else:
        _dw_rows_walk(xb, cols, cmask, wts, bias, y_ptr, add_ptr, out_off, mask_o, zero, h_first, t_lo, t_hi, ROWS,
                      H, sxh, syh, KH, KW, DIL, SUB, HAS_BIAS, HAS_ADD, STAGES, FAST, True)


@triton.jit
def _dw_rows_walk(xb, cols, cmask, wts, bias, y_ptr, add_ptr, out_off, mask_o, zero, h_first, t_lo, t_hi, ROWS, H,
                  sxh, syh, KH: tl.constexpr, KW: tl.constexpr, DIL: tl.constexpr, SUB: tl.constexpr,
                  HAS_BIAS: tl.constexpr, HAS_ADD: tl.constexpr, STAGES: tl.constexpr, FAST: tl.constexpr,
                  MASKED: tl.constexpr):
    """The row walk of one `_dw_rows_kernel` program over input rows t_lo..t_hi, for SUB sub-tiles of columns at
    once (they share the weights in registers); MASKED=False (every column tap inside the image, every channel
    real) loads without masks, which saves a select per loaded element."""
    PH: tl.constexpr = DIL * (KH - 1) // 2
    TW: tl.constexpr = zero.shape[0]
    BC: tl.constexpr = wts[0].shape[1]
    q = ()                                  # flat: accumulator k of sub-tile s at s * KH + k
    for i in tl.static_range(SUB * KH):
        q = q + (tl.zeros([TW, BC], dtype=tl.float32),)
    for t in tl.range(t_lo, t_hi + 1, num_stages=STAGES):
        row = xb + (h_first + DIL * t - PH) * sxh
        q_in = q
        q = ()
        for s in tl.static_range(SUB):
            xs = ()
            for kw in tl.static_range(KW):
                if MASKED:
                    v = tl.load(row + cols[s * KW + kw], mask=cmask[s * KW + kw], other=0.0)
                else:
                    v = tl.load(row + cols[s * KW + kw])
                xs = xs + (to_f32(v, FAST),)
            q = q + (tl.zeros([TW, BC], dtype=tl.float32),)
            for k in tl.static_range(KH):
                acc = q_in[s * KH + k]
                for kw in tl.static_range(KW):
                    acc += xs[kw] * wts[k * KW + kw]
                if k < KH - 1:
                    q = q + (acc,)
                else:                       # output row t - (KH - 1) has all its taps
                    _dw_rows_store(acc, t - (KH - 1) + zero, h_first, ROWS, H, y_ptr, add_ptr, out_off[s],
                                   mask_o[s], bias, syh, DIL, HAS_BIAS, HAS_ADD)
    for s in tl.static_range(SUB):          # the rows below the image add nothing: finish the last KH - 1 rows
        for k in tl.static_range(1, KH):
            _dw_rows_store(q[s * KH + k], t_hi + 1 - k + zero, h_first, ROWS, H, y_ptr, add_ptr, out_off[s],
                           mask_o[s], bias, syh, DIL, HAS_BIAS, HAS_ADD)


@triton.jit
def _pw_mul_kernel(a_ptr, w2_ptr, b2_ptr, mul_ptr, times_ptr, out_ptr, prod_ptr, colsum_ptr, C, D, H, W,
                   sab, sac, sad, sah, saw, smb, smc, smd, smh, smw, sob, soc, sod, soh, sow,
                   PROD: tl.constexpr, TH: tl.constexpr, TW: tl.constexpr, BK: tl.constexpr, BCO: tl.constexpr,
                   DT: tl.constexpr, PDL: tl.constexpr):
    """out = mul * (W2 @ a + b2) on a pixel tile. PROD (the backward) also writes prod = mul * times (times in
    mul's layout, prod in out's) and adds prod's fp32 sums over the pixels into colsum[c]."""
    _pdl_start(PDL)
    pid_p, pid_co = tl.program_id(0), tl.program_id(1)
    b = tl.program_id(2).to(tl.int64)
    pd, ph, pw, mask_p = _pixels(pid_p, D, H, W, TH, TW)
    offs_co = pid_co * BCO + tl.arange(0, BCO)
    mask_co = offs_co < C
    acc = tl.zeros([TH * TW, BCO], dtype=tl.float32)
    for k0 in range(0, C, BK):
        offs_k = k0 + tl.arange(0, BK)
        mask_k = offs_k < C
        a = tl.load(a_ptr + b * sab + (pd * sad + ph * sah + pw * saw)[:, None] + offs_k[None, :] * sac,
                    mask=mask_p[:, None] & mask_k[None, :], other=0.0)
        w = tl.load(w2_ptr + offs_k[:, None] + offs_co[None, :] * C, mask=mask_k[:, None] & mask_co[None, :],
                    other=0.0)
        acc += tl.dot(a.to(DT), w.to(DT))
    acc += tl.load(b2_ptr + offs_co, mask=mask_co, other=0.0).to(tl.float32)[None, :]
    m = mask_p[:, None] & mask_co[None, :]
    sp = pd * smd + ph * smh + pw * smw
    mul = tl.load(mul_ptr + b * smb + sp[:, None] + offs_co[None, :] * smc, mask=m, other=0.0)
    y = mul.to(tl.float32) * acc
    so = b * sob + (pd * sod + ph * soh + pw * sow)[:, None] + offs_co[None, :] * soc
    tl.store(out_ptr + so, y.to(out_ptr.dtype.element_ty), mask=m)
    if PROD:
        t = tl.load(times_ptr + b * smb + sp[:, None] + offs_co[None, :] * smc, mask=m, other=0.0)
        pr = (mul.to(tl.float32) * t.to(tl.float32)).to(prod_ptr.dtype.element_ty)
        tl.store(prod_ptr + so, pr, mask=m)
        tl.atomic_add(colsum_ptr + offs_co, tl.sum(pr.to(tl.float32), axis=0), mask=mask_co, sem="relaxed")


@triton.jit
def _tap_x(xb, t, pd, ph, pw, p_off, mask_p, mask_c, D, H, W, sxd, sxh, sxw,
           KD: tl.constexpr, KH: tl.constexpr, KW: tl.constexpr, DIL: tl.constexpr, FAST: tl.constexpr):
    """x at the pixels (pd, ph, pw) (offsets p_off) shifted by tap t's offset, fp32 [pixels, channels]; zero outside
    the input and for t >= the number of taps."""
    od = _same_shift(t // (KH * KW), KD, DIL)
    oh = _same_shift((t // KW) % KH, KH, DIL)
    ow = _same_shift(t % KW, KW, DIL)
    # one unsigned compare per axis tests 0 <= i < size
    m = (mask_p & ((pd + od).to(tl.uint32, bitcast=True) < D) & ((ph + oh).to(tl.uint32, bitcast=True) < H)
         & ((pw + ow).to(tl.uint32, bitcast=True) < W) & (t < KD * KH * KW))
    v = tl.load(xb + (p_off + (od * sxd + oh * sxh + ow * sxw))[:, None], mask=m[:, None] & mask_c[None, :],
                other=0.0)
    return to_f32(v, FAST)


@triton.jit
def _dw_wgrad_kernel(x_ptr, dy_ptr, dw_ptr, db_ptr, C, D, H, W,
                     sxb, sxc, sxd, sxh, sxw, syb, syc, syd, syh, syw,
                     KD: tl.constexpr, KH: tl.constexpr, KW: tl.constexpr, DIL: tl.constexpr,
                     G: tl.constexpr, TH: tl.constexpr, TW: tl.constexpr, BC: tl.constexpr, ITERS: tl.constexpr,
                     FAST: tl.constexpr):
    """dw[tap, c] += sum_p dy[p, c] * x[p + offset(tap), c]; db[c] += sum_p dy[p, c], over ITERS pixel tiles
    stacked along h. The taps (all axes flattened) go in groups of G (at most 8, see `depthwise_wgrad_triton`), each
    tap with its own [pixels, channels] accumulator (a tuple), so one dy tile serves G taps and every load is a plain
    2-D tile in one layout."""
    NT: tl.constexpr = KD * KH * KW
    pid_p, pid_c = tl.program_id(0), tl.program_id(1)
    b = tl.program_id(2).to(tl.int64)
    d, h0, w0 = _tile_origin(pid_p, H, W, TH * ITERS, TW)
    offs_c = pid_c * BC + tl.arange(0, BC)
    mask_c = offs_c < C
    xb = x_ptr + b * sxb + offs_c[None, :] * sxc
    yb = dy_ptr + b * syb + offs_c[None, :] * syc
    dbias = tl.zeros([TH * TW, BC], dtype=tl.float32)
    for g in range(0, NT, G):
        accs = ()
        for j in tl.static_range(G):
            accs = accs + (tl.zeros([TH * TW, BC], dtype=tl.float32),)
        for it in range(ITERS):
            pd, ph, pw, mask_p = _tile_pixels(d, h0 + it * TH, w0, D, H, W, TH, TW)
            dy = to_f32(tl.load(yb + (pd * syd + ph * syh + pw * syw)[:, None],
                                mask=mask_p[:, None] & mask_c[None, :], other=0.0), FAST)
            if g == 0:
                dbias += dy
            p_off = pd * sxd + ph * sxh + pw * sxw
            acc_in = accs
            accs = ()
            for j in tl.static_range(G):
                tap_x = _tap_x(xb, g + j, pd, ph, pw, p_off, mask_p, mask_c, D, H, W, sxd, sxh, sxw, KD, KH, KW, DIL,
                               FAST)
                accs = accs + (acc_in[j] + dy * tap_x,)
        row = dw_ptr + g * C + offs_c      # tap-major: one atomic instruction covers contiguous channels
        for j in tl.static_range(G):
            tl.atomic_add(row + j * C, tl.sum(accs[j], axis=0), mask=mask_c & (g + j < NT), sem="relaxed")
    tl.atomic_add(db_ptr + offs_c, tl.sum(dbias, axis=0), mask=mask_c, sem="relaxed")


def as_3d(t: torch.Tensor) -> tuple[tuple[int, int, int], tuple[int, ...]]:
    """(D, H, W) and the 5 strides (b, c, d, h, w) of a [B, C, H, W] or [B, C, D, H, W] tensor; 2-D has D = 1."""
    if t.dim() == 4:
        return (1, t.shape[2], t.shape[3]), (t.stride(0), t.stride(1), 0, t.stride(2), t.stride(3))
    return tuple(t.shape[2:]), tuple(t.stride())


def as_rows(t: torch.Tensor) -> torch.Tensor:
    """The [pixels, C] view of a channels-last [B, C, *s] tensor (raises rather than copy if t is not one)."""
    return t.movedim(1, -1).view(-1, t.shape[1])


def _k3(ksize: tuple[int, ...]) -> tuple[int, int, int]:
    """A 2-D or 3-D kernel size as (kd, kh, kw)."""
    return (1, *ksize) if len(ksize) == 2 else tuple(ksize)


def _bc(c: int, most: int) -> int:
    """A channel block for c channels: a power of two from 16 to `most`."""
    return min(most, max(16, next_pow2(c)))


# Tile sizes (tuned on an H100 for C = 32..256): pixel tiles th x tw (powers of two, th * tw >= 16), channel
# blocks (powers of two >= 16; pw_bco: output channels per pointwise program), warps; the weight gradient sizes its
# pixel tile so that each of its per-tap [pixels, channels] accumulators holds wg_elems elements, and sums wg_iters
# such tiles per program. The row walk (`_dw_rows_kernel`, planned by `_rows_plan`) holds at most rows_weights
# weights per thread, keeps rows_stages input rows in flight, walks two column sub-tiles per program for kernels of
# at most rows_sub_taps taps (5x5 faster, 7x7 slower), loads unmasked where it can (rows_split), and fits
# rows_blocks_per_sm programs on an SM with one and with two sub-tiles (168 and 244 registers per thread, n_regs
# of the compiled 7x7 d3 and 5x5 on an H100 with triton 3.6; not read from the kernel, so a Triton that allocates
# differently leaves the plan stale but correct);
# pdl: launch the tap-major, row-walk and pointwise kernels with programmatic dependent launch where the GPU has it
# (compute capability 9.0 and up): each waits for the kernel before it at its top, so only launch latency overlaps.
CFG = {"rows_weights": 100, "rows_bc": 64, "rows_warps": 4, "rows_halo": 8, "rows_stages": 4, "rows_split": True,
       "rows_sub_taps": 25, "rows_blocks_per_sm": (3, 2), "pdl": True,
       "dw_th": 2, "dw_tw": 16, "dw_bc": 64, "dw_warps": 2, "pw_th": 4, "pw_tw": 32, "pw_bk": 64, "pw_bco": 128,
       "pw_warps": 8, "wg_elems": 512, "wg_bc": 64, "wg_iters": 16, "wg_warps": 1}


@functools.lru_cache(maxsize=None)
def _gpu(index: int) -> tuple[int, int]:
    """(multiprocessors, compute capability major) of CUDA device `index` (read once: launches are hot paths)."""
    props = torch.cuda.get_device_properties(index)
    return props.multi_processor_count, props.major


def _pdl(t: torch.Tensor) -> dict:
    """Launch options for programmatic dependent launch of a kernel that calls `_pdl_start`, when CFG asks for it
    and t's device has it (compute capability 9.0 and up)."""
    if CFG["pdl"] and not INTERPRET and t.is_cuda and _gpu(t.device.index)[1] >= 9:
        return {"PDL": True, "launch_pdl": True}
    return {"PDL": False}


def _tile(H: int, W: int, th: int, tw: int) -> tuple[int, int]:
    """The configured th x tw pixel tile, narrowed to the image width (keeping th * tw >= 16 pixels)."""
    tw2 = min(tw, next_pow2(W))
    th2 = min(th * (tw // tw2), next_pow2(H))
    return max(th2, 16 // tw2), tw2


def _ntiles(D: int, H: int, W: int, th: int, tw: int) -> int:
    return D * cdiv(H, th) * cdiv(W, tw)


def _rows_plan(shape: tuple[int, ...], kh: int, taps: int, dilation: int, sms: int | None
               ) -> tuple[int, int, int, int, int] | None:
    """(TW, SUB, BC, rows per program, programs along the image) of `_dw_rows_kernel` on a [B, C, H, W] map on a
    GPU of `sms` multiprocessors (None: not known, chunks by rows_halo alone), or None when the kernel's weights do
    not fit in registers: each thread holds `cpt` channels of every tap's weights, cpt * taps <= CFG["rows_weights"].
    Each residue class of the rows is split into as many chunks as keep every program resident at once
    (CFG["rows_blocks_per_sm"] per SM, by SUB), but no more than rows_halo allows: the KH - 1 rows a chunk reads
    above its first output row add at most 1 / rows_halo."""
    cpt = next((n for n in (4, 2, 1) if n * taps <= CFG["rows_weights"]), None)
    if cpt is None:
        return None
    B, C, H, W = shape
    bc = _bc(C, CFG["rows_bc"])
    tw = min(max(1, cpt * 32 * CFG["rows_warps"] // bc), next_pow2(W))
    sub = min(2 if taps <= CFG["rows_sub_taps"] else 1, cdiv(W, tw))
    per_class = cdiv(H, dilation)
    chunks = cdiv(per_class, CFG["rows_halo"] * (kh - 1)) if kh > 1 else 1
    across = cdiv(W, tw * sub) * dilation
    if sms is not None:
        slots = sms * CFG["rows_blocks_per_sm"][sub - 1]
        chunks = max(1, min(chunks, slots // (across * cdiv(C, bc) * B)))
    rows = cdiv(per_class, chunks)
    return tw, sub, bc, rows, across * cdiv(per_class, rows)


@triton.jit
def _tap_major_kernel(w0_ptr, w1_ptr, out_ptr, C, T0, T1, BLOCK: tl.constexpr, PDL: tl.constexpr):
    """out[tap, c] = w0[c, tap] for tap < T0, w1[c, tap - T0] after; w0, w1 contiguous [C, taps]."""
    _pdl_start(PDL)
    i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    tap, c = i // C, i % C
    first = tap < T0
    inside = i < (T0 + T1) * C
    v0 = tl.load(w0_ptr + c * T0 + tap, mask=inside & first, other=0.0)
    v1 = tl.load(w1_ptr + c * T1 + (tap - T0), mask=inside & (tap >= T0), other=0.0)
    tl.store(out_ptr + i, tl.where(first, v0.to(tl.float32), v1.to(tl.float32)), mask=inside)


def tap_major(w0: torch.Tensor, w1: torch.Tensor | None = None) -> torch.Tensor:
    """Depthwise weights [C, 1, *k] as the kernels read them: fp32 [taps, C], one contiguous vector per tap. With
    w1, the taps of both (same C) stacked, [taps0 + taps1, C], in one launch (it runs on every forward)."""
    C = w0.shape[0]
    first = w0.reshape(C, -1).contiguous()
    second = first if w1 is None else w1.reshape(C, -1).contiguous()   # without w1: no taps read from it
    t0, t1 = first.shape[1], 0 if w1 is None else second.shape[1]
    out = torch.empty(t0 + t1, C, device=w0.device, dtype=torch.float32)
    block = 1024
    launch(_tap_major_kernel, (cdiv(out.numel(), block),), (first, second, out), (C, t0, t1), BLOCK=block,
           **_pdl(out))
    return out


def depthwise_triton(x: torch.Tensor, wt: torch.Tensor, ksize: tuple[int, ...], bias: torch.Tensor | None,
                     dilation: int, add: torch.Tensor | None = None, flip: bool = False) -> torch.Tensor:
    """Depthwise 'same' conv of x with the `tap_major` weights wt of a kernel of size ksize (odd) + bias (+ add);
    flip=True mirrors the kernel, which makes it the input-gradient of the same conv. Output in x's layout.
    2-D maps with kernels of up to CFG["rows_weights"] taps walk down the rows (`_dw_rows_kernel`), the rest go
    tile by tile (`_dw_kernel`)."""
    C = x.shape[1]
    y = torch.empty_like(x)
    (D, H, W), sx = as_3d(x)
    _, sy = as_3d(y)
    k3 = _k3(ksize)
    tensors = (x, wt, bias if bias is not None else wt, add if add is not None else y, y)
    flags = dict(HAS_BIAS=bias is not None, HAS_ADD=add is not None, FLIP=flip, FAST=not INTERPRET)
    plan = None
    if x.dim() == 4:
        sms = _gpu(x.device.index)[0] if x.is_cuda else None
        plan = _rows_plan(tuple(x.shape), k3[1], k3[1] * k3[2], dilation, sms)
    if plan is not None:
        tw, sub, bc, rows, programs = plan
        launch(_dw_rows_kernel, (programs, cdiv(C, bc), x.shape[0]), tensors,
               (C, H, W, rows, *sx[:2], *sx[3:], *sy[:2], *sy[3:], *k3[1:], dilation), **flags, TW=tw, SUB=sub,
               BC=bc, STAGES=CFG["rows_stages"], INSIDE_UNMASKED=C % bc == 0 and CFG["rows_split"],
               num_warps=CFG["rows_warps"], **_pdl(x))
        return y
    (th, tw), bc = _tile(H, W, CFG["dw_th"], CFG["dw_tw"]), _bc(C, CFG["dw_bc"])
    grid = (_ntiles(D, H, W, th, tw), cdiv(C, bc), x.shape[0])
    launch(_dw_kernel, grid, tensors, (C, D, H, W, *sx, *sy, *k3, dilation), **flags, TH=th, TW=tw, BC=bc,
           num_warps=CFG["dw_warps"])
    return y


def _pointwise(a: torch.Tensor, w2: torch.Tensor, b2: torch.Tensor, mul: torch.Tensor, times: torch.Tensor | None,
               colsum: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Launch `_pw_mul_kernel`: (out, mul * times or None), adding the channel sums of mul * times into colsum."""
    C = a.shape[1]
    (D, H, W), sa = as_3d(a)
    _, sm = as_3d(mul)
    out = torch.empty_like(mul)
    prod = None
    if times is not None:
        if times.stride() != mul.stride():
            raise ValueError(f"times must have mul's strides {mul.stride()}, got {times.stride()}")
        prod = torch.empty_like(mul)
    _, so = as_3d(out)
    w2 = w2.reshape(C, C).contiguous()
    bco = min(CFG["pw_bco"], max(16, next_pow2(C)))
    (th, tw), bk = _tile(H, W, CFG["pw_th"], CFG["pw_tw"]), min(CFG["pw_bk"], max(16, next_pow2(C)))
    grid = (_ntiles(D, H, W, th, tw), cdiv(C, bco), a.shape[0])
    launch(_pw_mul_kernel, grid, (a, w2, b2, mul, mul if times is None else times, out,
                                  out if prod is None else prod, b2 if colsum is None else colsum),
           (C, D, H, W, *sa, *sm, *so), PROD=times is not None, TH=th, TW=tw, BK=bk, BCO=bco, DT=_TL[a.dtype],
           num_warps=max(CFG["pw_warps"], bco // 32), **_pdl(a))
    return out, prod


def pointwise_mul_triton(a: torch.Tensor, w2: torch.Tensor, b2: torch.Tensor, mul: torch.Tensor) -> torch.Tensor:
    """mul * (W2 @ a + b2), W2 the [C, C(, 1...)] pointwise weights."""
    return _pointwise(a, w2, b2, mul, None, None)[0]


def pointwise_mul_grad_triton(a: torch.Tensor, w2: torch.Tensor, b2: torch.Tensor, dout: torch.Tensor,
                              x: torch.Tensor, db2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The backward's pointwise pass, for out = x * (W2 @ a + b2): (dout * (W2 @ a + b2), dout * x); adds the sums
    of dout * x over everything but the channels (b2's gradient) into the fp32 [C] tensor db2. dout and x in one
    channels-last layout."""
    return _pointwise(a, w2, b2, dout, x, db2)


def depthwise_wgrad_triton(x: torch.Tensor, dy: torch.Tensor, ksize: tuple[int, ...], dilation: int,
                           dw: torch.Tensor, db: torch.Tensor) -> None:
    """Add the gradients of the weight and the bias of a depthwise 'same' conv of kernel size ksize, with input x and
    output gradient dy, into the fp32 tensors dw (tap-major, [taps, C]) and db [C]."""
    C = x.shape[1]
    (D, H, W), sx = as_3d(x)
    _, sy = as_3d(dy)
    k3 = _k3(ksize)
    bc = _bc(C, CFG["wg_bc"])
    pixels = max(1, CFG["wg_elems"] // bc)
    tw = min(pixels, next_pow2(W))
    th = min(pixels // tw, next_pow2(H))
    iters = min(CFG["wg_iters"], cdiv(H, th))
    grid = (_ntiles(D, H, W, th * iters, tw), cdiv(C, bc), x.shape[0])
    taps = k3[0] * k3[1] * k3[2]
    groups = cdiv(taps, 8)
    launch(_dw_wgrad_kernel, grid, (x, dy, dw, db), (C, D, H, W, *sx, *sy, *k3, dilation), G=cdiv(taps, groups),
           TH=th, TW=tw, BC=bc, ITERS=iters, FAST=not INTERPRET, num_warps=CFG["wg_warps"])
