"""NAT and DiNAT encoders (Hassani et al. 2022/2023) for 2-D/3-D on `ops.na` neighborhood attention, and NA-UNet
(the encoder + the shared U-Net decoder).

Layout: conv tokenizer (two 3^d stride-2 convs, stride 4), 4 stages of pre-norm NA blocks, 3^d stride-2 conv
downsamplers between stages; `forward_features` returns the stage maps at strides 4, 8, 16, 32 (channels-first).
Each stage has its own NA kernel size; NA needs `kernel_size <= stage size` on every axis (NATTEN's rule: windows
are never clamped), so the encoder's `min_input_size` is `max_i(kernel_sizes[i] * 4 * 2^i)` rounded up to a multiple
of 32 (NAT's kernel 7 everywhere: 224). DiNAT alternates plain and dilated layers; a dilated layer's dilation is
`max(1, L // kernel_size)` per axis for the stage's size L at run time (DiNAT's 8/4/2/1 at 224^2).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from timm.layers import DropPath
from torch import nn

from backbones.base import StageEncoder
from backbones.layers import conv_nd
from backbones.unet import EncoderDecoder, UNetDecoder
from ops.na import neighborhood_attention

__all__ = ["dinat_dilation", "NeighborhoodAttention", "NABlock", "NATStage", "NATEncoder", "NAUNet"]


def dinat_dilation(sizes: Sequence[int], kernel_size: Sequence[int]) -> tuple[int, ...]:
    """DiNAT's dilation per axis: the largest d with `d * kernel_size <= size`, so the window spans the axis."""
    return tuple(max(1, s // k) for s, k in zip(sizes, kernel_size))


def _to_last(x: torch.Tensor) -> torch.Tensor:
    return x.movedim(1, -1)


def _to_first(x: torch.Tensor) -> torch.Tensor:
    return x.movedim(-1, 1)


class NeighborhoodAttention(nn.Module):
    """qkv projection -> NA (`ops.na`) -> projection on channels-last `[B, *spatial, dim]`; the dilation is given
    per call (DiNAT chooses it from the input size), with NAT's optional relative positional bias."""

    def __init__(self, spatial_dims: int, dim: int, num_heads: int, kernel_size: int, rel_pos_bias: bool = False,
                 qkv_bias: bool = True, proj_drop: float = 0.0) -> None:
        super().__init__()
        if num_heads < 1 or dim % num_heads:
            raise ValueError(f"dim ({dim}) must be a positive multiple of num_heads ({num_heads})")
        self.spatial_dims, self.num_heads, self.head_dim = spatial_dims, num_heads, dim // num_heads
        self.kernel_size = (kernel_size,) * spatial_dims
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        self.rpb = None
        if rel_pos_bias:
            self.rpb = nn.Parameter(torch.zeros(num_heads, *[2 * kernel_size - 1] * spatial_dims))
            nn.init.trunc_normal_(self.rpb, std=0.02)

    def forward(self, x: torch.Tensor, dilation: Sequence[int] | int = 1) -> torch.Tensor:
        shape = x.shape[:-1]
        q, k, v = self.qkv(x).reshape(*shape, 3, self.num_heads, self.head_dim).unbind(-3)
        out = neighborhood_attention(q, k, v, self.spatial_dims, self.kernel_size, dilation, rpb=self.rpb)
        return self.proj_drop(self.proj(out.reshape(*shape, -1)))


class NABlock(nn.Module):
    """Pre-norm NA transformer block on `[B, *spatial, dim]`: x + NA(LN(x)), then x + MLP(LN(x)); `dilated`
    layers use `dinat_dilation` of the input size."""

    def __init__(self, spatial_dims: int, dim: int, num_heads: int, kernel_size: int, dilated: bool = False,
                 mlp_ratio: float = 4.0, rel_pos_bias: bool = False, drop: float = 0.0,
                 drop_path: float = 0.0) -> None:
        super().__init__()
        self.dilated = dilated
        self.norm1 = nn.LayerNorm(dim)
        self.attn = NeighborhoodAttention(spatial_dims, dim, num_heads, kernel_size, rel_pos_bias, proj_drop=drop)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(drop), nn.Linear(hidden, dim),
                                 nn.Dropout(drop))
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def dilation(self, sizes: Sequence[int]) -> tuple[int, ...]:
        """The dilation this layer uses on a map of spatial `sizes`."""
        if not self.dilated:
            return (1,) * len(sizes)
        return dinat_dilation(sizes, self.attn.kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x), self.dilation(x.shape[1:-1])))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class NATStage(nn.Module):
    """`downsample` (strided convs to `dim` channels) + LayerNorm, NA blocks, output LayerNorm; channels-first."""

    def __init__(self, spatial_dims: int, downsample: nn.Module, dim: int, depth: int, num_heads: int,
                 kernel_size: int, dilated: bool, mlp_ratio: float, rel_pos_bias: bool, drop: float,
                 drop_path: Sequence[float]) -> None:
        super().__init__()
        self.downsample = downsample
        self.down_norm = nn.LayerNorm(dim)
        # DiNAT: plain, dilated, plain, dilated, ...
        self.blocks = nn.ModuleList(
            NABlock(spatial_dims, dim, num_heads, kernel_size, dilated and i % 2 == 1, mlp_ratio, rel_pos_bias, drop,
                    drop_path[i]) for i in range(depth))
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.down_norm(_to_last(self.downsample(x)))
        for block in self.blocks:
            x = block(x)
        return _to_first(self.norm(x))


class NATEncoder(StageEncoder):
    """NAT (`dilated=False`) or DiNAT (`dilated=True`) encoder: maps at strides 4, 8, 16, 32 from
    `forward_features`. Inputs must be at least `min_input_size` per axis (see the module docstring)."""

    def __init__(self, spatial_dims: int = 2, in_channels: int = 3, embed_dim: int = 64,
                 depths: Sequence[int] = (3, 4, 6, 5), num_heads: Sequence[int] = (2, 4, 8, 16),
                 kernel_sizes: Sequence[int] = (7, 7, 7, 7), dilated: bool = False, mlp_ratio: float = 3.0,
                 rel_pos_bias: bool = False, drop_rate: float = 0.0, drop_path_rate: float = 0.0) -> None:
        super().__init__()
        for name, v in (("depths", depths), ("num_heads", num_heads), ("kernel_sizes", kernel_sizes)):
            if len(v) != 4:
                raise ValueError(f"{name} must have 4 entries (one per stage), got {tuple(v)}")
        if any(k < 1 for k in kernel_sizes):
            raise ValueError(f"kernel_sizes must be >= 1, got {tuple(kernel_sizes)}")
        self.spatial_dims, self.in_channels, self.dilated = spatial_dims, in_channels, dilated
        self.kernel_sizes = tuple(kernel_sizes)
        dims = [embed_dim * 2 ** i for i in range(4)]
        n = sum(depths)  # stochastic depth rising linearly over all blocks
        rates = [drop_path_rate * i / max(n - 1, 1) for i in range(n)]
        self.stages = nn.ModuleList()
        start = 0
        for i in range(4):
            if i == 0:  # the conv tokenizer (NAT's: two 3^d stride-2 convs, no activation)
                down: nn.Module = nn.Sequential(conv_nd(spatial_dims, in_channels, embed_dim // 2, 3, 2, 1),
                                                conv_nd(spatial_dims, embed_dim // 2, embed_dim, 3, 2, 1))
            else:
                down = conv_nd(spatial_dims, dims[i - 1], dims[i], 3, 2, 1, bias=False)
            self.stages.append(NATStage(spatial_dims, down, dims[i], depths[i], num_heads[i], kernel_sizes[i],
                                        dilated, mlp_ratio, rel_pos_bias, drop_rate, rates[start:start + depths[i]]))
            start += depths[i]
        self.feature_channels = dims
        self.feature_strides = [4, 8, 16, 32]
        need = max(k * s for k, s in zip(kernel_sizes, self.feature_strides))
        self.min_input_size = 32 * math.ceil(need / 32)

    def check_input_size(self, sizes: Sequence[int]) -> None:
        """Raise a clear error when a spatial size is below `min_input_size` (a stage smaller than its kernel)."""
        if any(s < self.min_input_size for s in sizes):
            raise ValueError(f"input spatial size {tuple(sizes)} is too small for this NA encoder: every axis must be "
                             f">= {self.min_input_size} (NA kernel_sizes {self.kernel_sizes} at strides "
                             f"{tuple(self.feature_strides)} need each stage at least as large as its kernel)")

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        self.check_input_size(x.shape[2:])
        return super().forward_features(x)


class NAUNet(EncoderDecoder):
    """NA-UNet: `NATEncoder` (NAT or DiNAT) + the shared U-Net decoder (skips at strides 16, 8, 4, then a x4
    upsampling to the input resolution). Inputs: multiples of 32, at least `encoder.min_input_size` per axis."""

    def __init__(self, spatial_dims: int = 2, in_channels: int = 1, num_classes: int = 2, embed_dim: int = 64,
                 depths: Sequence[int] = (3, 4, 6, 5), num_heads: Sequence[int] = (2, 4, 8, 16),
                 kernel_sizes: Sequence[int] = (7, 7, 7, 7), dilated: bool = False, mlp_ratio: float = 3.0,
                 rel_pos_bias: bool = False, drop_rate: float = 0.0, drop_path_rate: float = 0.0,
                 decoder_channels: Sequence[int] | None = None, norm: str | None = "instance",
                 act: str | None = "leakyrelu", deep_supervision: bool = False, pad_input: bool = False) -> None:
        encoder = NATEncoder(spatial_dims, in_channels, embed_dim, depths, num_heads, kernel_sizes, dilated,
                             mlp_ratio, rel_pos_bias, drop_rate, drop_path_rate)
        decoder = UNetDecoder(spatial_dims, encoder.feature_channels, encoder.feature_strides, num_classes,
                              decoder_channels, 2, norm, act, deep_supervision)
        super().__init__(encoder, decoder, spatial_dims, in_channels, num_classes, 32, pad_input)
        self.min_input_size = encoder.min_input_size
