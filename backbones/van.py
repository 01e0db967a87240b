"""VAN encoder (Guo et al. 2022) for 2-D/3-D on `ops.lka` (large-kernel attention blocks), and LKA-UNet (the
encoder + the shared U-Net decoder).

Layout: 4 stages, each an overlapping patch embedding (7^d stride-4 conv for the first, 3^d stride-2 convs after)
with batch norm, `ops.lka.VANBlock`s, and a LayerNorm; `forward_features` returns maps at strides 4, 8, 16, 32.
Any input whose size is a multiple of 32.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from backbones.base import StageEncoder
from backbones.layers import conv_nd, norm_nd
from backbones.unet import EncoderDecoder, UNetDecoder
from ops.lka import VANBlock

__all__ = ["VANStage", "VANEncoder", "LKAUNet"]


class VANStage(nn.Module):
    """Overlapping patch embedding (strided conv + batch norm), VAN blocks, channels LayerNorm; channels-first."""

    def __init__(self, spatial_dims: int, in_channels: int, dim: int, depth: int, patch_size: int, stride: int,
                 mlp_ratio: float, drop: float, drop_path: Sequence[float]) -> None:
        super().__init__()
        self.embed = nn.Sequential(conv_nd(spatial_dims, in_channels, dim, patch_size, stride, patch_size // 2),
                                   norm_nd("batch", spatial_dims, dim))
        self.blocks = nn.Sequential(*[VANBlock(dim, spatial_dims, mlp_ratio, drop=drop, drop_path=drop_path[i])
                                      for i in range(depth)])
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.blocks(self.embed(x)).movedim(1, -1)).movedim(-1, 1)


class VANEncoder(StageEncoder):
    """VAN encoder: 4 `VANStage`s at strides 4, 8, 16, 32 (VAN-B0: dims 32/64/160/256, depths 3/3/5/2)."""

    def __init__(self, spatial_dims: int = 2, in_channels: int = 3, dims: Sequence[int] = (32, 64, 160, 256),
                 depths: Sequence[int] = (3, 3, 5, 2), mlp_ratios: Sequence[float] = (8, 8, 4, 4),
                 drop_rate: float = 0.0, drop_path_rate: float = 0.0) -> None:
        super().__init__()
        for name, v in (("dims", dims), ("depths", depths), ("mlp_ratios", mlp_ratios)):
            if len(v) != 4:
                raise ValueError(f"{name} must have 4 entries (one per stage), got {tuple(v)}")
        self.spatial_dims, self.in_channels = spatial_dims, in_channels
        n = sum(depths)  # stochastic depth rising linearly over all blocks
        rates = [drop_path_rate * i / max(n - 1, 1) for i in range(n)]
        self.stages = nn.ModuleList()
        start = 0
        for i in range(4):
            self.stages.append(VANStage(spatial_dims, dims[i - 1] if i else in_channels, dims[i], depths[i],
                                        7 if i == 0 else 3, 4 if i == 0 else 2, mlp_ratios[i], drop_rate,
                                        rates[start:start + depths[i]]))
            start += depths[i]
        self.feature_channels = list(dims)
        self.feature_strides = [4, 8, 16, 32]


class LKAUNet(EncoderDecoder):
    """LKA-UNet: `VANEncoder` + the shared U-Net decoder (skips at strides 16, 8, 4, then a x4 upsampling to the
    input resolution). Any input whose size is a multiple of 32."""

    def __init__(self, spatial_dims: int = 2, in_channels: int = 1, num_classes: int = 2,
                 dims: Sequence[int] = (32, 64, 160, 256), depths: Sequence[int] = (3, 3, 5, 2),
                 mlp_ratios: Sequence[float] = (8, 8, 4, 4), drop_rate: float = 0.0, drop_path_rate: float = 0.0,
                 decoder_channels: Sequence[int] | None = None, norm: str | None = "instance",
                 act: str | None = "leakyrelu", deep_supervision: bool = False, pad_input: bool = False) -> None:
        encoder = VANEncoder(spatial_dims, in_channels, dims, depths, mlp_ratios, drop_rate, drop_path_rate)
        decoder = UNetDecoder(spatial_dims, encoder.feature_channels, encoder.feature_strides, num_classes,
                              decoder_channels, 2, norm, act, deep_supervision)
        super().__init__(encoder, decoder, spatial_dims, in_channels, num_classes, 32, pad_input)
