"""Axial-attention U-Nets for 2-D/3-D on `ops.axial`: a MedT-style gated-axial U-Net (Valanarasu et al. 2021) and an
MCANet-style cross-axis U-Net (multi-size strip convolutions, parallel axial attention per axis, cross attention
between the axis branches). Both: conv stages at the shallow scales, attention stages (strided-conv downsampling
+ blocks) at the deeper ones, and the shared U-Net decoder.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
from torch import nn

from backbones.base import StageEncoder
from backbones.layers import ConvNormAct, ConvStage, ParallelSum, act_layer, conv_nd, norm_nd
from backbones.unet import EncoderDecoder, UNetDecoder
from ops.axial import AxialAttention, axial_attention

__all__ = ["GatedAxialBlock", "StripConv", "CrossAxisAttention", "MCABlock", "HybridAxialEncoder", "GatedAxialUNet",
           "MCAUNet"]

# (channels, stage index) -> one attention block at that width.
BlockBuilder = Callable[[int, int], nn.Module]


def _heads(width: int, head_dim: int) -> int:
    if width % head_dim:
        raise ValueError(f"attention width {width} must be a multiple of head_dim={head_dim}")
    return width // head_dim


class GatedAxialBlock(nn.Module):
    """MedT's gated axial block: 1x1 conv-norm-act to `channels // 2`, gated axial attention with relative
    position terms along every axis (`ops.axial.AxialAttention(rel_pos=True, gated=True)`), norm-act, 1x1
    conv-norm back to `channels`, residual, activation."""

    def __init__(self, spatial_dims: int, channels: int, head_dim: int = 16, max_len: int = 128,
                 norm: str | None = "instance", act: str | None = "leakyrelu") -> None:
        super().__init__()
        width = max(channels // 2, head_dim)
        self.reduce = ConvNormAct(spatial_dims, channels, width, 1, 1, norm, act)
        self.attn = AxialAttention(width, _heads(width, head_dim), spatial_dims, rel_pos=True, gated=True,
                                   max_len=max_len)
        self.post = nn.Sequential(norm_nd(norm, spatial_dims, width), act_layer(act))
        self.expand = ConvNormAct(spatial_dims, width, channels, 1, 1, norm, None)
        self.act = act_layer(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.attn(self.reduce(x).movedim(1, -1)).movedim(-1, 1)
        return self.act(x + self.expand(self.post(h)))


class StripConv(nn.Module):
    """Multi-size depthwise strip convolutions along one axis (kernel k on `axis`, 1 elsewhere), summed."""

    def __init__(self, spatial_dims: int, channels: int, axis: int, kernels: Sequence[int] = (7, 11, 21)) -> None:
        super().__init__()
        if any(k % 2 == 0 for k in kernels):
            raise ValueError(f"strip kernels must be odd, got {tuple(kernels)}")
        self.convs = ParallelSum()
        for k in kernels:
            size = tuple(k if a == axis else 1 for a in range(spatial_dims))
            pad = tuple(k // 2 if a == axis else 0 for a in range(spatial_dims))
            self.convs.append(conv_nd(spatial_dims, channels, channels, size, 1, pad, groups=channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.convs(x)


class CrossAxisAttention(nn.Module):
    """MCANet-style cross-axis attention on channels-last branches `[B, *spatial, dim]`, one per axis: axial
    self-attention of branch a along axis a, then cross attention along axis a with queries from the next
    branch's self-attention output and keys/values from branch a's; the cross outputs are summed and projected."""

    def __init__(self, spatial_dims: int, dim: int, num_heads: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim ({dim}) must be divisible by num_heads ({num_heads})")
        self.spatial_dims, self.num_heads, self.head_dim = spatial_dims, num_heads, dim // num_heads
        self.self_qkv = nn.ModuleList(nn.Linear(dim, 3 * dim) for _ in range(spatial_dims))
        self.cross_q = nn.ModuleList(nn.Linear(dim, dim) for _ in range(spatial_dims))
        self.cross_kv = nn.ModuleList(nn.Linear(dim, 2 * dim) for _ in range(spatial_dims))
        self.proj = nn.Linear(dim, dim)

    def _heads(self, t: torch.Tensor, n: int) -> tuple[torch.Tensor, ...]:
        return t.unflatten(-1, (n, self.num_heads, self.head_dim)).unbind(-3)

    def forward(self, branches: Sequence[torch.Tensor]) -> torch.Tensor:
        own = []
        for a, b in enumerate(branches):
            q, k, v = self._heads(self.self_qkv[a](b), 3)
            own.append(axial_attention(q, k, v, a).flatten(-2))
        out = None
        for a in range(self.spatial_dims):
            (q,) = self._heads(self.cross_q[a](own[(a + 1) % self.spatial_dims]), 1)
            k, v = self._heads(self.cross_kv[a](own[a]), 2)
            y = axial_attention(q, k, v, a).flatten(-2)
            out = y if out is None else out + y
        return self.proj(out)


class MCABlock(nn.Module):
    """Pre-norm cross-axis block: x + CrossAxisAttention(strip-conv branches of LN(x)), then x + MLP(LN(x));
    channels-first in and out."""

    def __init__(self, spatial_dims: int, channels: int, head_dim: int = 16, strip_kernels: Sequence[int] = (7, 11, 21),
                 mlp_ratio: float = 2.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(channels)
        self.strips = nn.ModuleList(StripConv(spatial_dims, channels, a, strip_kernels) for a in range(spatial_dims))
        self.attn = CrossAxisAttention(spatial_dims, channels, _heads(channels, head_dim))
        self.norm2 = nn.LayerNorm(channels)
        hidden = int(channels * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(channels, hidden), nn.GELU(), nn.Linear(hidden, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.movedim(1, -1)
        h = self.norm1(x).movedim(-1, 1)
        x = x + self.attn([strip(h).movedim(1, -1) for strip in self.strips])
        x = x + self.mlp(self.norm2(x))
        return x.movedim(-1, 1)


class HybridAxialEncoder(StageEncoder):
    """Conv stages (`ConvStage`) for the first `num_conv_stages`, then stages of a strided conv-norm-act
    downsampler + `depths[i]` blocks from `block_builder(channels, stage)`; maps at the cumulative `strides`."""

    def __init__(self, spatial_dims: int, in_channels: int, channels: Sequence[int], strides: Sequence[int],
                 num_conv_stages: int, depths: Sequence[int], block_builder: BlockBuilder,
                 norm: str | None = "instance", act: str | None = "leakyrelu") -> None:
        super().__init__()
        if len(channels) != len(strides):
            raise ValueError(f"channels and strides must have the same length, got {len(channels)} and {len(strides)}")
        if not 1 <= num_conv_stages < len(channels):
            raise ValueError(f"num_conv_stages must be in [1, {len(channels) - 1}], got {num_conv_stages}")
        if len(depths) != len(channels) - num_conv_stages:
            raise ValueError(f"depths must have {len(channels) - num_conv_stages} entries (one per attention stage), "
                             f"got {tuple(depths)}")
        self.spatial_dims, self.in_channels = spatial_dims, in_channels
        self.stages = nn.ModuleList()
        prev = in_channels
        for i, (c, s) in enumerate(zip(channels, strides)):
            if i < num_conv_stages:
                self.stages.append(ConvStage(spatial_dims, prev, c, 2, s, False, norm, act))
            else:
                down = ConvNormAct(spatial_dims, prev, c, 3, s, norm, act)
                blocks = [block_builder(c, i) for _ in range(depths[i - num_conv_stages])]
                self.stages.append(nn.Sequential(down, *blocks))
            prev = c
        self.feature_channels = list(channels)
        self.feature_strides = [int(math.prod(strides[: i + 1])) for i in range(len(strides))]


class GatedAxialUNet(EncoderDecoder):
    """MedT-style gated-axial U-Net: conv stages, then `GatedAxialBlock` stages; the shared U-Net decoder.

    The relative-position tables cover axes up to `max_input_size / stride` at each attention stage (longer inputs
    raise a clear error). Any input whose size is a multiple of the product of `strides`."""

    def __init__(self, spatial_dims: int = 2, in_channels: int = 1, num_classes: int = 2,
                 channels: Sequence[int] = (16, 32, 64, 128), strides: Sequence[int] = (1, 2, 2, 2),
                 num_conv_stages: int = 2, depths: Sequence[int] = (1, 1), head_dim: int = 16,
                 max_input_size: int = 1024, norm: str | None = "instance", act: str | None = "leakyrelu",
                 deep_supervision: bool = False, pad_input: bool = False) -> None:
        cum = [int(math.prod(strides[: i + 1])) for i in range(len(strides))]

        def block(c: int, stage: int) -> nn.Module:
            return GatedAxialBlock(spatial_dims, c, head_dim, max(1, math.ceil(max_input_size / cum[stage])), norm,
                                   act)

        encoder = HybridAxialEncoder(spatial_dims, in_channels, channels, strides, num_conv_stages, depths, block,
                                     norm, act)
        decoder = UNetDecoder(spatial_dims, encoder.feature_channels, encoder.feature_strides, num_classes,
                              None, 2, norm, act, deep_supervision)
        super().__init__(encoder, decoder, spatial_dims, in_channels, num_classes, cum[-1], pad_input)


class MCAUNet(EncoderDecoder):
    """MCANet-style cross-axis U-Net: conv stages, then `MCABlock` stages (strip convs + parallel axial + cross
    attention); the shared U-Net decoder. Any input whose size is a multiple of the product of `strides`."""

    def __init__(self, spatial_dims: int = 2, in_channels: int = 1, num_classes: int = 2,
                 channels: Sequence[int] = (16, 32, 64, 128), strides: Sequence[int] = (1, 2, 2, 2),
                 num_conv_stages: int = 2, depths: Sequence[int] = (1, 1), head_dim: int = 16,
                 strip_kernels: Sequence[int] = (7, 11, 21), mlp_ratio: float = 2.0, norm: str | None = "instance",
                 act: str | None = "leakyrelu", deep_supervision: bool = False, pad_input: bool = False) -> None:
        def block(c: int, stage: int) -> nn.Module:
            return MCABlock(spatial_dims, c, head_dim, strip_kernels, mlp_ratio)

        encoder = HybridAxialEncoder(spatial_dims, in_channels, channels, strides, num_conv_stages, depths, block,
                                     norm, act)
        decoder = UNetDecoder(spatial_dims, encoder.feature_channels, encoder.feature_strides, num_classes,
                              None, 2, norm, act, deep_supervision)
        super().__init__(encoder, decoder, spatial_dims, in_channels, num_classes, encoder.feature_strides[-1],
                         pad_input)
