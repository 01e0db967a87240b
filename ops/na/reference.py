"""Pure-PyTorch neighborhood attention: any device and dtype, autograd, memory O(N * k^d) (windows gathered in
query chunks; the N x N attention matrix is never formed)."""
from __future__ import annotations

import math
from typing import Optional

import torch

from .params import NAParams

__all__ = ["axis_windows", "na_reference"]

_CHUNK_ELEMS = 1 << 25  # gathered K/V elements per chunk (128 MiB in fp32)


def axis_windows(L: int, k: int, d: int, s: int, causal: bool, device: torch.device | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Key coordinates `[L, k]` of every query's window on one axis and their validity (causal windows are
    shorter near the start); the rule is the one in `ops/na/params.py`."""
    i = torch.arange(L, device=device)
    g, ig = i % d, i // d
    lg = (L - g + d - 1) // d
    offs = torch.arange(k, device=device)
    if causal:
        lead = (ig // s) * s
        j = (lead - k + 1)[:, None] + offs
        valid = j >= 0
        j = j.clamp(min=0)
    else:
        lead = (ig // s) * s + s // 2
        start = torch.minimum((lead - k // 2).clamp(min=0), lg - k)
        j = start[:, None] + offs
        valid = torch.ones_like(j, dtype=torch.bool)
    return g[:, None] + d * j, valid


def _neighbors(p: NAParams, rows: torch.Tensor, device: torch.device
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Flat key indices `[len(rows), k^d]`, their validity and their flat relative-position-bias index (NAT's
    table of `2k-1` in-group offsets per axis) for flat query indices `rows`."""
    idx = torch.zeros(rows.numel(), 1, dtype=torch.long, device=device)
    rel = torch.zeros_like(idx)
    valid = torch.ones(rows.numel(), 1, dtype=torch.bool, device=device)
    rem, stride = rows, math.prod(p.shape)
    for ax in range(p.ndim):
        stride //= p.shape[ax]
        coord = (rem // stride) % p.shape[ax]
        win, ok = axis_windows(p.shape[ax], p.kernel_size[ax], p.dilation[ax], p.stride[ax], p.is_causal[ax], device)
        d, k = p.dilation[ax], p.kernel_size[ax]
        r = (win[coord] // d - (coord // d)[:, None] + k - 1).clamp(0, 2 * k - 2)
        idx = (idx[:, :, None] + stride * win[coord][:, None, :]).flatten(1)
        rel = (rel[:, :, None] * (2 * k - 1) + r[:, None, :]).flatten(1)
        valid = (valid[:, :, None] & ok[coord][:, None, :]).flatten(1)
    return idx, valid, rel


def na_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, p: NAParams,
                 scale: Optional[float] = None, rpb: Optional[torch.Tensor] = None) -> torch.Tensor:
    """NA on `[B, *spatial, heads, head_dim]` tensors by gathering each query's k^d keys (chunked over queries);
    `rpb` `[heads, *(2k-1 per axis)]` is NAT's relative positional bias added to the logits."""
    B, H, D = q.shape[0], q.shape[-2], q.shape[-1]
    n = math.prod(p.shape)
    scale = D ** -0.5 if scale is None else scale
    qf, kf, vf = (t.reshape(B, n, H, D) for t in (q, k, v))
    kd = math.prod(p.kernel_size)
    chunk = max(1, _CHUNK_ELEMS // max(1, B * H * D * kd))
    ct = torch.promote_types(q.dtype, torch.float32)
    outs = []
    for r0 in range(0, n, chunk):
        rows = torch.arange(r0, min(n, r0 + chunk), device=q.device)
        idx, valid, rel = _neighbors(p, rows, q.device)
        kw, vw = kf[:, idx], vf[:, idx]  # [B, r, kd, H, D]
        logits = torch.einsum("brhd,brjhd->brhj", qf[:, rows].to(ct), kw.to(ct)) * scale
        if rpb is not None:
            logits = logits + rpb.reshape(H, -1)[:, rel].permute(1, 0, 2).to(ct)
        logits = logits.masked_fill(~valid[None, :, None, :], float("-inf"))
        attn = logits.softmax(-1)
        outs.append(torch.einsum("brhj,brjhd->brhd", attn, vw.to(ct)).to(q.dtype))
    return torch.cat(outs, 1).reshape(q.shape)
