"""TransUNet-style hybrid (Chen et al. 2021) for 2-D/3-D: residual CNN encoder, ViT bottleneck on the
stride-16 map, the shared U-Net decoder."""
from __future__ import annotations

from typing import Sequence

import torch

from backbones.base import FeatureEncoder
from backbones.layers import conv_nd
from backbones.unet import EncoderDecoder, UNetDecoder, UNetEncoder
from backbones.vit import TransformerStack

__all__ = ["TransUNetEncoder", "TransUNet"]


class TransUNetEncoder(FeatureEncoder):
    """Residual CNN stages at strides 2, 4, 8, 16; the stride-16 map is projected to `embed_dim` tokens
    (patch size 1) and run through a transformer. `forward_features` returns the CNN maps at strides 2, 4, 8
    and the transformer's map at stride 16.
    """

    def __init__(self, spatial_dims: int = 2, in_channels: int = 1, channels: Sequence[int] = (32, 64, 128, 256),
                 blocks_per_stage: Sequence[int] = (1, 2, 3, 4), img_size: int | Sequence[int] = 256,
                 embed_dim: int = 384, depth: int = 8, num_heads: int = 6, mlp_ratio: float = 4.0,
                 drop_rate: float = 0.0, attn_drop_rate: float = 0.0, drop_path_rate: float = 0.0,
                 norm: str | None = "instance", act: str | None = "leakyrelu") -> None:
        super().__init__()
        if len(channels) != 4:
            raise ValueError(f"TransUNetEncoder needs 4 CNN stages (strides 2..16), got channels={tuple(channels)}")
        img = (img_size,) * spatial_dims if isinstance(img_size, int) else tuple(img_size)
        if len(img) != spatial_dims or any(s % 16 for s in img):
            raise ValueError(f"img_size must be {spatial_dims} multiples of 16, got {img_size!r}")
        self.spatial_dims, self.in_channels = spatial_dims, in_channels
        self.cnn = UNetEncoder(spatial_dims, in_channels, channels, (2, 2, 2, 2), blocks_per_stage, True, norm, act)
        self.embed = conv_nd(spatial_dims, channels[-1], embed_dim, 1)
        self.transformer = TransformerStack(spatial_dims, embed_dim, depth, num_heads, [s // 16 for s in img],
                                            mlp_ratio, True, drop_rate, attn_drop_rate, drop_path_rate)
        self.feature_channels = [*channels[:3], embed_dim]
        self.feature_strides = [2, 4, 8, 16]

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = self.cnn.forward_features(x)
        return [*feats[:3], self.transformer(self.embed(feats[3]))[-1]]


class TransUNet(EncoderDecoder):
    """TransUNet-style segmenter: `TransUNetEncoder` + U-Net decoder (skips at strides 8, 4, 2, then a final
    upsampling to the input resolution). Any input whose size is a multiple of 16."""

    def __init__(self, spatial_dims: int = 2, in_channels: int = 1, num_classes: int = 2,
                 channels: Sequence[int] = (32, 64, 128, 256), blocks_per_stage: Sequence[int] = (1, 2, 3, 4),
                 img_size: int | Sequence[int] = 256, embed_dim: int = 384, depth: int = 8, num_heads: int = 6,
                 mlp_ratio: float = 4.0, decoder_channels: Sequence[int] | None = None, drop_rate: float = 0.0,
                 attn_drop_rate: float = 0.0, drop_path_rate: float = 0.0, norm: str | None = "instance",
                 act: str | None = "leakyrelu", deep_supervision: bool = False, pad_input: bool = False) -> None:
        encoder = TransUNetEncoder(spatial_dims, in_channels, channels, blocks_per_stage, img_size, embed_dim, depth,
                                   num_heads, mlp_ratio, drop_rate, attn_drop_rate, drop_path_rate, norm, act)
        decoder = UNetDecoder(spatial_dims, encoder.feature_channels, encoder.feature_strides, num_classes,
                              decoder_channels, 2, norm, act, deep_supervision)
        super().__init__(encoder, decoder, spatial_dims, in_channels, num_classes, 16, pad_input)
