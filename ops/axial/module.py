"""`AxialAttention` module (Axial-DeepLab / MedT), channels-last input [B, *spatial, dim]."""
from __future__ import annotations

import torch
from torch import nn

from .._nd import check_spatial_dims
from .op import axial_attention, axial_rel_attention

__all__ = ["AxialAttention"]


class AxialAttention(nn.Module):
    """Multi-head self-attention along each spatial axis in turn, channels-last: [B, *spatial, dim] -> same.

    Each axis pass has its own qkv projection and feeds the next; one output projection follows the last pass.
    rel_pos=True adds Axial-DeepLab's relative embeddings for q, k and v (tables of 2 * max_len - 1 rows per axis,
    shared by the heads; the central 2L - 1 rows are used for an input of length L <= max_len). gated=True adds
    MedT's learnable gates (g_q, g_k, g_v1, g_v2) on those terms, initialised to (0.1, 0.1, 1, 0.1)."""

    def __init__(self, dim: int, num_heads: int, spatial_dims: int = 2, rel_pos: bool = False, gated: bool = False,
                 max_len: int = 256, qkv_bias: bool = True) -> None:
        super().__init__()
        check_spatial_dims(spatial_dims, (1, 2, 3))
        if num_heads < 1 or dim % num_heads:
            raise ValueError(f"dim ({dim}) must be a positive multiple of num_heads ({num_heads})")
        if gated and not rel_pos:
            raise ValueError("gated=True gates the relative position terms and needs rel_pos=True")
        self.dim, self.num_heads, self.head_dim = dim, num_heads, dim // num_heads
        self.spatial_dims, self.rel_pos, self.gated, self.max_len = spatial_dims, rel_pos, gated, max_len
        self.qkv = nn.ModuleList(nn.Linear(dim, 3 * dim, bias=qkv_bias) for _ in range(spatial_dims))
        self.proj = nn.Linear(dim, dim)
        if rel_pos:
            self.rel = nn.Parameter(torch.randn(spatial_dims, 3, 2 * max_len - 1, self.head_dim) * 0.02)
            g = torch.tensor([0.1, 0.1, 1.0, 0.1]).repeat(spatial_dims, 1)
            if gated:
                self.gates = nn.Parameter(g)
            else:
                self.register_buffer("gates", torch.ones(spatial_dims, 4), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != self.spatial_dims + 2 or x.shape[-1] != self.dim:
            raise ValueError(f"x must be [B, *spatial, dim] with {self.spatial_dims} spatial dims and dim={self.dim}, "
                             f"got {list(x.shape)}")
        for axis in range(self.spatial_dims):
            q, k, v = self.qkv[axis](x).unflatten(-1, (3, self.num_heads, self.head_dim)).unbind(-3)
            if self.rel_pos:
                L = x.shape[axis + 1]
                if L > self.max_len:
                    raise ValueError(f"axis {axis} has length {L} > max_len={self.max_len}; construct with a larger "
                                     f"max_len")
                rel = self.rel[axis, :, self.max_len - L: self.max_len + L - 1]
                y = axial_rel_attention(q, k, v, axis, rel[0], rel[1], rel[2], self.gates[axis])
            else:
                y = axial_attention(q, k, v, axis)
            x = y.flatten(-2)
        return self.proj(x)
