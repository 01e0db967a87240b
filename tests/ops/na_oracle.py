"""Test oracle for neighborhood attention: the NA rule written out per query from its definition (explicit
dilation-group lists), a dense boolean mask, and dense masked-softmax attention in float64."""
from __future__ import annotations

import itertools

import torch


def window_1d(i: int, L: int, k: int, d: int, s: int, causal: bool) -> list[int]:
    """Coordinates of the keys query `i` sees on one axis."""
    group = [j for j in range(L) if j % d == i % d]
    pos, n = group.index(i), len(group)
    block = pos - pos % s
    if causal:
        lo, hi = max(block - k + 1, 0), block
    else:
        lo = max(0, min(block + s // 2 - k // 2, n - k))
        hi = lo + k - 1
    return [group[t] for t in range(lo, hi + 1)]


def dense_mask(shape, ks, dil, st, causal) -> torch.Tensor:
    """[N, N] boolean: query (row-major flat index) may attend key."""
    coords = list(itertools.product(*[range(n) for n in shape]))
    wins = [[set(window_1d(i, L, k, d, s, c)) for i in range(L)]
            for L, k, d, s, c in zip(shape, ks, dil, st, causal)]
    n = len(coords)
    m = torch.zeros(n, n, dtype=torch.bool)
    for a, qc in enumerate(coords):
        for b, kc in enumerate(coords):
            m[a, b] = all(kc[ax] in wins[ax][qc[ax]] for ax in range(len(shape)))
    return m


def dense_na(q, k, v, mask, scale=None, bias=None):
    """Dense masked-softmax attention on `[B, *spatial, H, D]` in float64 (bias: `[H, N, N]` added to logits)."""
    B, H, D = q.shape[0], q.shape[-2], q.shape[-1]
    n = mask.shape[0]
    qf, kf, vf = (t.reshape(B, n, H, D).double().transpose(1, 2) for t in (q, k, v))
    logits = qf @ kf.transpose(-1, -2) * (D ** -0.5 if scale is None else scale)
    if bias is not None:
        logits = logits + bias.double()
    logits = logits.masked_fill(~mask, float("-inf"))
    return (logits.softmax(-1) @ vf).transpose(1, 2).reshape(q.shape)


def nat_bias(rpb, shape, ks, dil) -> torch.Tensor:
    """[H, N, N] dense bias from NAT's table `rpb[h, *(2k-1)]` at in-group offsets key - query."""
    coords = list(itertools.product(*[range(n) for n in shape]))
    n = len(coords)
    out = torch.zeros(rpb.shape[0], n, n, dtype=rpb.dtype)
    for a, qc in enumerate(coords):
        for b, kc in enumerate(coords):
            idx = tuple(min(max(kc[x] // dil[x] - qc[x] // dil[x] + ks[x] - 1, 0), 2 * ks[x] - 2)
                        for x in range(len(shape)))
            out[:, a, b] = rpb[(slice(None),) + idx]
    return out


def per_axis(v, nd):
    return tuple(v) if isinstance(v, (tuple, list)) else (v,) * nd


def case_tensors(shape, B=2, H=2, D=8, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(B, *shape, H, D, generator=g, dtype=dtype) for _ in range(3)]

