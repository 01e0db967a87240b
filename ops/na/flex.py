"""FlexAttention backend for NA: the NA rule as a `mask_mod` (optionally over a tiled token layout, so that each
block of the block mask is a compact spatial tile) and an optional relative-positional-bias `score_mod`."""
from __future__ import annotations

import math
from functools import lru_cache
from typing import Optional

import torch
from torch import Tensor

from .params import NAParams

__all__ = ["na_flex", "na_mask_mod", "token_coords"]


def _axis_ok(qc: Tensor, kc: Tensor, L: int, k: int, d: int, s: int, causal: bool) -> Tensor:
    if d == 1 and s == 1 and not causal:  # plain clamped window: the cheapest form of the same rule
        ws = (qc - k // 2).clamp(0, L - k)
        return (kc >= ws) & (kc < ws + k)
    g, qi, ki = qc % d, qc // d, kc // d
    same = g == kc % d
    if causal:
        lead = (qi // s) * s
        return same & (ki <= lead) & (ki > lead - k)
    lead = (qi // s) * s + s // 2
    lg = (L - g + d - 1) // d
    ws = torch.minimum((lead - k // 2).clamp(min=0), lg - k)
    return same & (ki >= ws) & (ki < ws + k)


def token_coords(shape: tuple[int, ...], tile: Optional[tuple[int, ...]]):
    """Function from flat token index to per-axis coordinates, for the row-major layout (`tile` None) or the
    tile-major layout (tiles in row-major order, row-major tokens inside each tile)."""
    nd = len(shape)
    if tile is None:
        strides = [math.prod(shape[a + 1:]) for a in range(nd)]
        return lambda idx: [(idx // strides[a]) % shape[a] for a in range(nd)]
    nt = [n // t for n, t in zip(shape, tile)]
    outer = [math.prod(nt[a + 1:]) for a in range(nd)]
    inner = [math.prod(tile[a + 1:]) for a in range(nd)]
    per_tile = math.prod(tile)

    def coords(idx):
        t, r = idx // per_tile, idx % per_tile
        return [((t // outer[a]) % nt[a]) * tile[a] + (r // inner[a]) % tile[a] for a in range(nd)]

    return coords


def _to_tiles(x: Tensor, tile: tuple[int, ...]) -> Tensor:
    """`[B, *spatial, H, D]` -> `[B, H, N, D]` in tile-major token order."""
    B, H, D, nd = x.shape[0], x.shape[-2], x.shape[-1], len(tile)
    sp = x.shape[1:1 + nd]
    x = x.reshape(B, *[v for n, t in zip(sp, tile) for v in (n // t, t)], H, D)
    outer, inner = [1 + 2 * a for a in range(nd)], [2 + 2 * a for a in range(nd)]
    return x.permute(0, 2 * nd + 1, *outer, *inner, 2 * nd + 2).reshape(B, H, -1, D)


def _from_tiles(x: Tensor, shape: tuple[int, ...], tile: tuple[int, ...]) -> Tensor:
    """Inverse of `_to_tiles`: `[B, H, N, D]` -> `[B, *spatial, H, D]`."""
    B, H, D, nd = x.shape[0], x.shape[1], x.shape[-1], len(tile)
    x = x.reshape(B, H, *[n // t for n, t in zip(shape, tile)], *tile, D)
    perm = [0] + [v for a in range(nd) for v in (2 + a, 2 + nd + a)] + [1, 2 + 2 * nd]
    return x.permute(*perm).reshape(B, *shape, H, D)


def na_mask_mod(p: NAParams, coords):
    """FlexAttention mask_mod of the NA rule for tokens whose coordinates are `coords(idx)`."""
    axes = [a for a in range(p.ndim) if p.shape[a] > 1]

    def mask_mod(b, h, q_idx, kv_idx):
        qc, kc = coords(q_idx), coords(kv_idx)
        ok = q_idx >= 0
        for a in axes:
            ok = ok & _axis_ok(qc[a], kc[a], p.shape[a], p.kernel_size[a], p.dilation[a], p.stride[a],
                               p.is_causal[a])
        return ok

    return mask_mod


def rpb_score_mod(p: NAParams, coords, rpb: Tensor):
    """score_mod adding NAT's relative positional bias `rpb[h, *(2k-1 per axis)]` at in-group offsets."""
    flat = rpb.reshape(rpb.shape[0], -1)
    sizes = [2 * k - 1 for k in p.kernel_size]

    def score_mod(score, b, h, q_idx, kv_idx):
        idx = q_idx * 0
        qc, kc = coords(q_idx), coords(kv_idx)
        for a in range(p.ndim):
            rel = kc[a] // p.dilation[a] - qc[a] // p.dilation[a] + p.kernel_size[a] - 1
            idx = idx * sizes[a] + rel.clamp(0, sizes[a] - 1)
        return score + flat[h, idx].to(score.dtype)

    return score_mod


@lru_cache(maxsize=32)
def _block_mask(p: NAParams, tile: Optional[tuple[int, ...]], device: str, block: int):
    from torch.nn.attention.flex_attention import create_block_mask

    coords = token_coords(p.shape, tile)
    n = math.prod(p.shape)
    bm = create_block_mask(na_mask_mod(p, coords), None, None, n, n, device=device, BLOCK_SIZE=block,
                           _compile=device.startswith("cuda"))
    return bm, coords


@lru_cache(maxsize=1)
def _compiled_flex():
    from torch.nn.attention.flex_attention import flex_attention

    return torch.compile(flex_attention, dynamic=False)


def na_flex(q: Tensor, k: Tensor, v: Tensor, p: NAParams, scale: Optional[float] = None,
            tile: Optional[tuple[int, ...]] = None, block: int = 128, rpb: Optional[Tensor] = None) -> Tensor:
    """NA through FlexAttention (compiled on CUDA, eager elsewhere); `tile` picks a tiled token layout, which must
    divide the spatial shape."""
    from torch.nn.attention.flex_attention import flex_attention

    if tile is not None and any(n % t for n, t in zip(p.shape, tile)):
        raise ValueError(f"flex tile {tile} must divide the spatial shape {p.shape}")
    bm, coords = _block_mask(p, tile, str(q.device), block)
    if tile is None:
        qt, kt, vt = (x.flatten(1, p.ndim).transpose(1, 2) for x in (q, k, v))
    else:
        qt, kt, vt = (_to_tiles(x, tile) for x in (q, k, v))
    score_mod = None if rpb is None else rpb_score_mod(p, coords, rpb)
    fn = _compiled_flex() if q.is_cuda else flex_attention
    o = fn(qt, kt, vt, score_mod=score_mod, block_mask=bm, scale=scale)
    if tile is None:
        return o.transpose(1, 2).reshape(q.shape)
    return _from_tiles(o, p.shape, tile)
