"""Triton kernels of the attention gate: one pass forward (both 1x1 projections, relu, psi, sigmoid and the gating
multiply fused; x and g read once) and one pass backward (recomputes the projections, writes dx, dg and the weight
gradients). The backward is persistent: a fixed number of programs (about twice the SM count) each loop over many
pixel tiles, keep their weight-gradient sums in registers and write them once as a per-program partial row; a small
row-sum kernel finishes the reduction in the weights' dtype (deterministic, no atomics). Activations are passed
without strides, as dense channels-last or contiguous maps (fewer launch arguments: host time per call matters)."""
from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl

from .._nd import cdiv, memory_format_of, next_pow2
from .._triton import TL_DTYPE as _TL
from .._triton import launch

__all__ = ["gate_fwd_triton", "gate_bwd_triton", "wgrad_sizes"]


@triton.jit
def _strides(C, N, CL: tl.constexpr):
    """(batch, channel, pixel) strides of a dense [B, C, N] map stored channels-last (CL) or contiguous."""
    if CL:
        return C * N, 1, C
    else:
        return C * N, N, 1


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
                     N, CX, CG, F, CL: tl.constexpr,
                     HAS_BX: tl.constexpr, HAS_BG: tl.constexpr, HAS_BPSI: tl.constexpr,
                     BN: tl.constexpr, BF: tl.constexpr, BKX: tl.constexpr, BKG: tl.constexpr, DT: tl.constexpr):
    """x, g and out share one layout (CL); alpha is [B, N]."""
    sxb, sxc, sxn = _strides(CX, N, CL)
    sgb, sgc, sgn = _strides(CG, N, CL)
    b = tl.program_id(1).to(tl.int64)
    offs_n = tl.program_id(0) * BN + tl.arange(0, BN)
    mask_n = offs_n < N
    offs_f = tl.arange(0, BF)
    mask_f = offs_f < F
    h, s, wpsi, alpha = _gate_alpha(
        x_ptr, g_ptr, wx_ptr, wg_ptr, bx_ptr, bg_ptr, wpsi_ptr, bpsi_ptr, b, offs_n, mask_n, offs_f, mask_f,
        F, CX, CG, sxb, sxc, sxn, sgb, sgc, sgn, HAS_BX, HAS_BG, HAS_BPSI, BF, BN, BKX, BKG, DT)
    tl.store(alpha_ptr + b * N + offs_n, alpha.to(alpha_ptr.dtype.element_ty), mask=mask_n)
    for c0 in range(0, CX, BKX):
        offs_c = c0 + tl.arange(0, BKX)
        m = (offs_c < CX)[:, None] & mask_n[None, :]
        t = tl.load(x_ptr + b * sxb + offs_c[:, None] * sxc + offs_n[None, :] * sxn, mask=m, other=0.0)
        y = t.to(tl.float32) * alpha[None, :]
        tl.store(out_ptr + b * sxb + offs_c[:, None] * sxc + offs_n[None, :] * sxn, y.to(out_ptr.dtype.element_ty),
                 mask=m)


@triton.jit
def _input_grad(acc, dsrc_ptr, src_ptr, w_ptr, dh, b, offs_n, mask_n, offs_c, mask_c, C, s_b, s_c, s_n,
                offs_f, mask_f, dout_ptr, alpha, HAS_DIRECT: tl.constexpr, DT: tl.constexpr):
    """dsrc[b, offs_c, offs_n] = W[F, offs_c]^T @ dh (+ dout * alpha for x, whose direct path is the gating
    multiply; dsrc and dout share src's layout); returns acc + dh @ src[b, offs_c, offs_n]^T (this tile's share of
    dW[F, offs_c])."""
    m = mask_c[:, None] & mask_n[None, :]
    tile = b * s_b + offs_c[:, None] * s_c + offs_n[None, :] * s_n
    wt = tl.load(w_ptr + offs_f[None, :] * C + offs_c[:, None], mask=mask_f[None, :] & mask_c[:, None], other=0.0)
    d = tl.dot(wt.to(DT), dh)
    if HAS_DIRECT:
        do = tl.load(dout_ptr + tile, mask=m, other=0.0)
        d += do.to(tl.float32) * alpha[None, :]
    tl.store(dsrc_ptr + tile, d.to(dsrc_ptr.dtype.element_ty), mask=m)
    t = tl.load(src_ptr + tile, mask=m, other=0.0)
    return tl.dot(dh, tl.trans(t.to(DT)), acc)


@triton.jit
def _gate_bwd_kernel(x_ptr, g_ptr, wx_ptr, wg_ptr, bx_ptr, bg_ptr, wpsi_ptr, bpsi_ptr, dout_ptr, dalpha_ptr,
                     dx_ptr, dg_ptr, part_ptr, N, CX, CG, F, B, NPROG, NBLK, CL: tl.constexpr,
                     HAS_DALPHA: tl.constexpr, HAS_BX: tl.constexpr, HAS_BG: tl.constexpr, HAS_BPSI: tl.constexpr,
                     BN: tl.constexpr, BF: tl.constexpr, BKX: tl.constexpr, BKG: tl.constexpr,
                     BWX: tl.constexpr, BWG: tl.constexpr, DT: tl.constexpr):
    """Program (p, k) takes pixel tiles p, p + NPROG, ... (tile = batch-major over (B, cdiv(N, BN))) and channel
    block k < NBLK of Cx and Cg: it writes dx, dg there and row p of the partials [dWx | dWg | dbx | dbg | dwpsi |
    dbpsi] (block k of the weights; the vectors from k = 0 only). k varies fastest, so the programs sharing a tile run
    side by side and re-read it from L2. x, dout, dx share one layout (CL), g and dg too; alpha and dalpha are
    [B, N]."""
    sxb, sxc, sxn = _strides(CX, N, CL)
    sgb, sgc, sgn = _strides(CG, N, CL)
    TILES_N = tl.cdiv(N, BN)
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
    for tile in range(pid, B * TILES_N, NPROG):
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
            do = tl.load(dout_ptr + b * sxb + offs_c[:, None] * sxc + offs_n[None, :] * sxn, mask=m, other=0.0)
            da += tl.sum(t.to(tl.float32) * do.to(tl.float32), axis=0)
        if HAS_DALPHA:
            da += tl.load(dalpha_ptr + b * N + offs_n, mask=mask_n, other=0.0).to(tl.float32)
        dp = tl.where(mask_n, da * alpha * (1.0 - alpha), 0.0)
        dh = tl.where(h > 0, wpsi[:, None] * dp[None, :], 0.0)
        acc_dp += dp
        acc_psi += tl.sum(s * dp[None, :], axis=1)
        acc_b += tl.sum(dh, axis=1)
        dh_lo = dh.to(DT)
        acc_wx = _input_grad(acc_wx, dx_ptr, x_ptr, wx_ptr, dh_lo, b, offs_n, mask_n, offs_cx, mask_cx, CX,
                             sxb, sxc, sxn, offs_f, mask_f, dout_ptr, alpha, True, DT)
        acc_wg = _input_grad(acc_wg, dg_ptr, g_ptr, wg_ptr, dh_lo, b, offs_n, mask_n, offs_cg, mask_cg, CG,
                             sgb, sgc, sgn, offs_f, mask_f, dout_ptr, alpha, False, DT)
    row = part_ptr + pid.to(tl.int64) * (F * (CX + CG + 3) + 1)  # row length = sum(wgrad_sizes)
    tl.store(row + offs_f[:, None] * CX + offs_cx[None, :], acc_wx, mask=mask_f[:, None] & mask_cx[None, :])
    tl.store(row + F * CX + offs_f[:, None] * CG + offs_cg[None, :], acc_wg, mask=mask_f[:, None] & mask_cg[None, :])
    vec = row + F * (CX + CG)
    if k == 0:
        tl.store(vec + offs_f, acc_b, mask=mask_f)
        tl.store(vec + F + offs_f, acc_b, mask=mask_f)
        tl.store(vec + 2 * F + offs_f, acc_psi, mask=mask_f)
        tl.store(vec + 3 * F, tl.sum(acc_dp, axis=0))


@triton.jit
def _sum_rows_kernel(part_ptr, out_ptr, ROWS, COLS, BR: tl.constexpr, BLOCK: tl.constexpr):
    """out[j] = sum_r part[r, j] in fp32 (fixed order: deterministic), stored in out's dtype; BR rows per step."""
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < COLS
    acc = tl.zeros([BR, BLOCK], dtype=tl.float32)
    for r0 in range(0, ROWS, BR):
        r = r0 + tl.arange(0, BR)
        acc += tl.load(part_ptr + r[:, None].to(tl.int64) * COLS + offs[None, :], mask=(r < ROWS)[:, None] & mask,
                       other=0.0)
    tl.store(out_ptr + offs, tl.sum(acc, axis=0).to(out_ptr.dtype.element_ty), mask=mask)


# Tile sizes (tuned on an H100; any powers of two >= 16 are valid). Forward: pixels per tile for F <= 32 / F > 32,
# channel chunk of the projections, warps. Backward: pixels per tile, warps, fp32 elements of one [F, channel block]
# weight-gradient accumulator held in registers (wider Cx or Cg is split into blocks, each its own program that
# recomputes the tile's projections) and programs per SM, each for F <= 32 and (suffix _large_f) F > 32; the
# interpreter, without SMs, gets `interp_programs`.
CFG = {"bn_small_f": 128, "bn_large_f": 64, "bk": 64, "warps": 4,
       "bwd_bn": 128, "bwd_warps": 4, "acc_elems": 4096, "programs_per_sm": 2,
       "bwd_warps_large_f": 8, "acc_elems_large_f": 8192, "programs_per_sm_large_f": 1, "interp_programs": 3}


def _blocks(n: int, cx: int, cg: int, f: int, bwd: bool = False) -> tuple[int, int, int, int]:
    """Pixel tile, padded F and the channel chunks of the two projections."""
    bf = max(16, next_pow2(f))
    bkx = min(CFG["bk"], max(16, next_pow2(cx)))
    bkg = min(CFG["bk"], max(16, next_pow2(cg)))
    bn = CFG["bwd_bn"] if bwd else CFG["bn_small_f"] if bf <= 32 else CFG["bn_large_f"]
    return min(bn, max(16, next_pow2(n))), bf, bkx, bkg


def _bwd_cfg(bf: int) -> tuple[int, int, int]:
    """Backward (accumulator elements, warps, programs per SM) for the padded F."""
    sfx = "_large_f" if bf > 32 else ""
    return CFG["acc_elems" + sfx], CFG["bwd_warps" + sfx], CFG["programs_per_sm" + sfx]


def _grad_block(c: int, bf: int, acc_elems: int) -> int:
    """Channel block of one weight-gradient accumulator: all of c when [bf, c] fits the register budget."""
    return max(16, min(next_pow2(c), next_pow2(acc_elems // bf + 1) // 2))


@functools.lru_cache(maxsize=None)
def _sm_count(device: torch.device) -> int:
    return torch.cuda.get_device_properties(device).multi_processor_count


def _target_programs(device: torch.device, per_sm: int) -> int:
    if device.type == "cuda":
        return per_sm * _sm_count(device)
    return CFG["interp_programs"]


def _layout(x: torch.Tensor, *others: torch.Tensor) -> tuple[bool, list[torch.Tensor]]:
    """(channels_last, tensors): x's layout when it is dense channels-last, else contiguous (x copied if neither);
    `others` ([B, C', *s] maps read or written alongside x) are brought into the same layout (no copy when they are
    already)."""
    fmt = memory_format_of(x)
    return fmt != torch.contiguous_format, [t.contiguous(memory_format=fmt) for t in (x, *others)]


def _alpha_like(x: torch.Tensor) -> torch.Tensor:
    """An empty [B, 1, *s] map (element (b, n) at b * N + n in either layout)."""
    return torch.empty((x.shape[0], 1, *x.shape[2:]), device=x.device, dtype=x.dtype,
                       memory_format=memory_format_of(x))


def _bias_args(bx: torch.Tensor | None, bg: torch.Tensor | None, bpsi: torch.Tensor | None, dummy: torch.Tensor
               ) -> tuple[list[torch.Tensor], dict[str, bool]]:
    """Bias pointers (an absent bias is passed as `dummy` and never read) and the HAS_* flags."""
    return ([dummy if b is None else b for b in (bx, bg, bpsi)],
            {"HAS_BX": bx is not None, "HAS_BG": bg is not None, "HAS_BPSI": bpsi is not None})


def gate_fwd_triton(x: torch.Tensor, g: torch.Tensor, wx: torch.Tensor, wg: torch.Tensor, bx: torch.Tensor | None,
                    bg: torch.Tensor | None, wpsi: torch.Tensor, bpsi: torch.Tensor | None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Fused forward. x [B, Cx, *s], g [B, Cg, *s] (channels-last or contiguous; anything else is copied);
    contiguous weights wx [F, Cx, 1...], wg [F, Cg, 1...], wpsi [1, F, 1...]; biases bx, bg [F], bpsi [1] or None;
    any float dtypes. out has x's layout."""
    cl, (x, g) = _layout(x, g)
    out, alpha = torch.empty_like(x), _alpha_like(x)
    B, CX, CG, F = x.shape[0], x.shape[1], g.shape[1], wx.shape[0]
    N = x.numel() // (B * CX)
    bn, bf, bkx, bkg = _blocks(N, CX, CG, F)
    (bx, bg, bpsi), flags = _bias_args(bx, bg, bpsi, wpsi)
    launch(_gate_fwd_kernel, (cdiv(N, bn), B), (x, g, wx, wg, bx, bg, wpsi, bpsi, out, alpha), (N, CX, CG, F),
           CL=cl, **flags, BN=bn, BF=bf, BKX=bkx, BKG=bkg, DT=_TL[x.dtype], num_warps=CFG["warps"])
    return out, alpha


def gate_bwd_triton(x: torch.Tensor, g: torch.Tensor, wx: torch.Tensor, wg: torch.Tensor, bx: torch.Tensor | None,
                    bg: torch.Tensor | None, wpsi: torch.Tensor, bpsi: torch.Tensor | None, dout: torch.Tensor,
                    dalpha: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Fused backward (arguments as `gate_fwd_triton`'s plus the output gradients). Returns dx, dg and the weight
    gradients in one flat buffer of wx's dtype, split by `wgrad_sizes`."""
    cl, (x, g, dout) = _layout(x, g, dout)
    B, CX, CG, F = x.shape[0], x.shape[1], g.shape[1], wx.shape[0]
    N = x.numel() // (B * CX)
    dx, dg = torch.empty_like(x), torch.empty_like(g)
    bn, bf, bkx, bkg = _blocks(N, CX, CG, F, bwd=True)
    acc_elems, warps, per_sm = _bwd_cfg(bf)
    bwx, bwg = _grad_block(CX, bf, acc_elems), _grad_block(CG, bf, acc_elems)
    blocks = max(cdiv(CX, bwx), cdiv(CG, bwg))
    nprog = max(1, min(B * cdiv(N, bn), _target_programs(x.device, per_sm) // blocks))
    cols = sum(wgrad_sizes(F, CX, CG))
    part = torch.empty(nprog, cols, device=x.device, dtype=torch.float32)
    (bx, bg, bpsi), flags = _bias_args(bx, bg, bpsi, wpsi)
    launch(_gate_bwd_kernel, (nprog * blocks,),
           (x, g, wx, wg, bx, bg, wpsi, bpsi, dout, dout if dalpha is None else dalpha.contiguous(), dx, dg, part),
           (N, CX, CG, F, B, nprog, blocks), CL=cl, HAS_DALPHA=dalpha is not None, **flags, BN=bn, BF=bf, BKX=bkx,
           BKG=bkg, BWX=bwx, BWG=bwg, DT=_TL[x.dtype], num_warps=warps)
    wgrads = torch.empty(cols, device=x.device, dtype=wx.dtype)
    launch(_sum_rows_kernel, (cdiv(cols, 64),), (part, wgrads), (nprog, cols), BR=32, BLOCK=64, num_warps=4)
    return dx, dg, wgrads


def wgrad_sizes(f: int, cx: int, cg: int) -> tuple[int, ...]:
    """Lengths of dWx, dWg, dbx, dbg, dwpsi and dbpsi, in this order, in `gate_bwd_triton`'s flat weight gradients."""
    return f * cx, f * cg, f, f, f, 1
