"""Attention U-Net (Oktay et al. 2018) for 2-D/3-D: the U-Net encoder and decoder, with an attention gate
(`ops.gate.AttentionGate`) on every skip, gated by the upsampled map of the coarser decoder stage."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from backbones.layers import ConvStage
from backbones.unet import EncoderDecoder, UNetDecoder, UNetEncoder
from ops.gate import AttentionGate

__all__ = ["GatedConcatStage", "AttentionUNet"]


class GatedConcatStage(nn.Module):
    """Decoder stage: gate the skip with the upsampled coarser map (`x * alpha`), concatenate, conv blocks."""

    def __init__(self, spatial_dims: int, up_channels: int, skip_channels: int, out_channels: int,
                 inter_channels: int, num_blocks: int = 2, norm: str | None = "batch", act: str | None = "relu",
                 residual: bool = False) -> None:
        super().__init__()
        self.gate = AttentionGate(spatial_dims, skip_channels, up_channels, inter_channels)
        self.conv = ConvStage(spatial_dims, up_channels + skip_channels, out_channels, num_blocks, 1, residual,
                              norm, act)

    def forward(self, up: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        gated, _ = self.gate(skip, up)
        return self.conv(torch.cat([up, gated], dim=1))


class AttentionUNet(EncoderDecoder):
    """Attention U-Net: `UNetEncoder` + `UNetDecoder` whose stages are `GatedConcatStage`s.

    `channels`/`strides` as the U-Net's (`strides[0]` is the first stage's, usually 1; MONAI's
    `AttentionUnet(channels=c, strides=s)` corresponds to `channels=c, strides=(1, *s)`). Like MONAI's: two conv
    blocks per encoder stage, one merge conv per decoder stage, gate inner width `skip_channels // 2`, batch norm and
    ReLU; leaner: 2^d transposed-conv upsampling without norm, and the fused gate op. Any input whose size is a
    multiple of the product of `strides`.
    """

    def __init__(self, spatial_dims: int = 2, in_channels: int = 1, num_classes: int = 2,
                 channels: Sequence[int] = (16, 32, 64, 128, 256), strides: Sequence[int] = (1, 2, 2, 2, 2),
                 encoder_blocks: int = 2, decoder_blocks: int = 1, residual: bool = False, norm: str | None = "batch",
                 act: str | None = "relu", deep_supervision: bool = False, pad_input: bool = False) -> None:
        encoder = UNetEncoder(spatial_dims, in_channels, channels, strides, encoder_blocks, residual, norm, act)

        def stage(up_c: int, skip_c: int, out_c: int) -> nn.Module:
            return GatedConcatStage(spatial_dims, up_c, skip_c, out_c, max(skip_c // 2, 1), decoder_blocks, norm,
                                    act, residual)

        decoder = UNetDecoder(spatial_dims, encoder.feature_channels, encoder.feature_strides, num_classes,
                              deep_supervision=deep_supervision, stage_builder=stage)
        super().__init__(encoder, decoder, spatial_dims, in_channels, num_classes, encoder.feature_strides[-1],
                         pad_input)
