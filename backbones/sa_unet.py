"""SA-UNet (Guo et al. 2021) for 2-D/3-D: conv blocks with DropBlock, max-pool downsampling and a spatial
attention module at the bottleneck; the shared U-Net decoder with the same DropBlock conv blocks."""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from backbones.base import StageEncoder, max_pool_stages
from backbones.layers import act_layer, conv_nd, norm_nd
from backbones.unet import EncoderDecoder, UNetDecoder

__all__ = ["DropBlock", "SpatialAttention", "SAConvBlock", "SAUNetEncoder", "SAUNet"]

_MAX_POOL = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}


class DropBlock(nn.Module):
    """DropBlock (Ghiasi et al. 2018): in training, zero contiguous `block_size`^d regions per channel so that
    about `drop_prob` of the units are dropped, and rescale the rest; identity in eval mode."""

    def __init__(self, drop_prob: float = 0.1, block_size: int = 7) -> None:
        super().__init__()
        if not 0.0 <= drop_prob < 1.0:
            raise ValueError(f"drop_prob must be in [0, 1), got {drop_prob}")
        if block_size < 1:
            raise ValueError(f"block_size must be >= 1, got {block_size}")
        self.drop_prob, self.block_size = drop_prob, block_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.drop_prob == 0.0:
            return x
        spatial = x.shape[2:]
        bs = min(self.block_size, *spatial)
        bs -= 1 - bs % 2  # odd, so the max-pool below keeps the size
        # Block centres only where a whole block fits; the seed rate makes about drop_prob of the units dropped.
        valid = [s - bs + 1 for s in spatial]
        gamma = self.drop_prob * math.prod(spatial) / (bs ** len(spatial) * math.prod(valid))
        seeds = (torch.rand(*x.shape[:2], *valid, device=x.device) < gamma).to(x.dtype)
        seeds = F.pad(seeds, [bs // 2] * (2 * len(spatial)))
        keep = 1.0 - _MAX_POOL[len(spatial)](seeds, bs, 1, bs // 2)
        return x * keep * (keep.numel() / keep.sum().clamp_min(1.0))

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob}, block_size={self.block_size}"


class SpatialAttention(nn.Module):
    """Spatial attention (CBAM's): channel-wise mean and max -> k^d conv -> sigmoid, multiplied into x."""

    def __init__(self, spatial_dims: int, kernel_size: int = 7) -> None:
        super().__init__()
        self.conv = conv_nd(spatial_dims, 2, 1, kernel_size, padding=kernel_size // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.conv(pooled))


class SAConvBlock(nn.Sequential):
    """`num_convs` x (3^d conv -> DropBlock -> norm -> activation); optional spatial attention after the first."""

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, num_convs: int = 2,
                 drop_prob: float = 0.1, block_size: int = 7, norm: str | None = "batch", act: str | None = "relu",
                 attention: bool = False) -> None:
        layers: list[nn.Module] = []
        for i in range(num_convs):
            layers += [conv_nd(spatial_dims, in_channels if i == 0 else out_channels, out_channels, 3, padding=1,
                               bias=False),
                       DropBlock(drop_prob, block_size), norm_nd(norm, spatial_dims, out_channels), act_layer(act)]
            if attention and i == 0:
                layers.append(SpatialAttention(spatial_dims))
        super().__init__(*layers)


class _ConcatSAStage(SAConvBlock):
    """Decoder stage: concatenate the upsampled map and the skip, then an `SAConvBlock`."""

    def forward(self, up: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return super().forward(torch.cat([up, skip], dim=1))


class SAUNetEncoder(StageEncoder):
    """SA-UNet encoder: `SAConvBlock` stages with 2x max-pool between them; spatial attention in the last one."""

    def __init__(self, spatial_dims: int = 2, in_channels: int = 1, channels: Sequence[int] = (16, 32, 64, 128),
                 drop_prob: float = 0.1, block_size: int = 7, norm: str | None = "batch",
                 act: str | None = "relu") -> None:
        super().__init__()
        self.spatial_dims, self.in_channels = spatial_dims, in_channels
        ins = [in_channels, *channels[:-1]]
        self.stages = max_pool_stages(spatial_dims, [
            SAConvBlock(spatial_dims, cin, c, 2, drop_prob, block_size, norm, act, attention=k == len(channels) - 1)
            for k, (cin, c) in enumerate(zip(ins, channels))])
        self.feature_channels = list(channels)
        self.feature_strides = [2 ** i for i in range(len(channels))]


class SAUNet(EncoderDecoder):
    """SA-UNet: `SAUNetEncoder` + U-Net decoder whose stages are DropBlock conv blocks (batch norm, ReLU).
    Any input whose size is a multiple of 2^(len(channels)-1)."""

    def __init__(self, spatial_dims: int = 2, in_channels: int = 1, num_classes: int = 2,
                 channels: Sequence[int] = (16, 32, 64, 128), drop_prob: float = 0.1, block_size: int = 7,
                 norm: str | None = "batch", act: str | None = "relu", deep_supervision: bool = False,
                 pad_input: bool = False) -> None:
        encoder = SAUNetEncoder(spatial_dims, in_channels, channels, drop_prob, block_size, norm, act)

        def stage(up_c: int, skip_c: int, out_c: int) -> nn.Module:
            return _ConcatSAStage(spatial_dims, up_c + skip_c, out_c, 2, drop_prob, block_size, norm, act)

        decoder = UNetDecoder(spatial_dims, encoder.feature_channels, encoder.feature_strides, num_classes,
                              deep_supervision=deep_supervision, stage_builder=stage)
        super().__init__(encoder, decoder, spatial_dims, in_channels, num_classes, encoder.feature_strides[-1],
                         pad_input)
