"""NA layers `NeighborhoodAttention1d/2d/3d` on channels-last input `[B, *spatial, dim]` (qkv projection, NA,
output projection), with NAT/DiNAT's optional relative positional bias."""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from .functional import neighborhood_attention
from .params import BoolOrSeq, IntOrSeq, per_axis

__all__ = ["NeighborhoodAttention1d", "NeighborhoodAttention2d", "NeighborhoodAttention3d"]


class _NeighborhoodAttention(nn.Module):
    ndim = 0

    def __init__(self, dim: int, num_heads: int, kernel_size: IntOrSeq, dilation: IntOrSeq = 1, stride: IntOrSeq = 1,
                 is_causal: BoolOrSeq = False, qkv_bias: bool = True, rel_pos_bias: bool = False,
                 proj_drop: float = 0.0, backend: Optional[str] = None) -> None:
        super().__init__()
        if num_heads < 1 or dim % num_heads:
            raise ValueError(f"dim ({dim}) must be a positive multiple of num_heads ({num_heads})")
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.kernel_size = per_axis("kernel_size", kernel_size, self.ndim, int)
        self.dilation, self.stride, self.is_causal = dilation, stride, is_causal
        self.backend = backend
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        self.rpb: Optional[nn.Parameter] = None
        if rel_pos_bias:
            self.rpb = nn.Parameter(torch.zeros(num_heads, *[2 * k - 1 for k in self.kernel_size]))
            nn.init.trunc_normal_(self.rpb, std=0.02, a=-2.0, b=2.0)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != self.ndim + 2:
            raise ValueError(f"{type(self).__name__} expects [B, *spatial({self.ndim}), dim], got {tuple(x.shape)}")
        shape = x.shape[:-1]
        q, k, v = self.qkv(x).reshape(*shape, 3, self.num_heads, self.head_dim).unbind(-3)
        out = neighborhood_attention(q, k, v, self.ndim, self.kernel_size, self.dilation, self.stride,
                                     self.is_causal, backend=self.backend, rpb=self.rpb)
        return self.proj_drop(self.proj(out.reshape(*shape, -1)))

    def extra_repr(self) -> str:
        return (f"heads={self.num_heads}, head_dim={self.head_dim}, kernel_size={self.kernel_size}, "
                f"dilation={self.dilation}, stride={self.stride}, is_causal={self.is_causal}, "
                f"rel_pos_bias={self.rpb is not None}")


class NeighborhoodAttention1d(_NeighborhoodAttention):
    """1-D NA layer on `[B, L, dim]`."""

    ndim = 1


class NeighborhoodAttention2d(_NeighborhoodAttention):
    """2-D NA layer on `[B, H, W, dim]`."""

    ndim = 2


class NeighborhoodAttention3d(_NeighborhoodAttention):
    """3-D NA layer on `[B, D, H, W, dim]`."""

    ndim = 3
