"""U-Net (nnU-Net style): a conv encoder, a shared U-Net decoder, optional residual encoder and deep supervision."""
from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
from torch import nn

from backbones.base import SegmentationModel, StageEncoder
from backbones.layers import ConvStage, conv_nd, conv_transpose_nd

__all__ = ["UNetEncoder", "UNetDecoder", "SegmentationHead", "ConcatConvStage", "EncoderDecoder", "UNet"]


class UNetEncoder(StageEncoder):
    """Stages of conv blocks with strided-conv downsampling; `forward_features` returns one map per stage."""

    def __init__(
        self, spatial_dims: int, in_channels: int, channels: Sequence[int] = (32, 64, 128, 256, 320),
        strides: Sequence[int] = (1, 2, 2, 2, 2), blocks_per_stage: int | Sequence[int] = 2, residual: bool = False,
        norm: str | None = "instance", act: str | None = "leakyrelu",
    ) -> None:
        super().__init__()
        if len(channels) != len(strides):
            raise ValueError(f"channels and strides must have the same length, got {len(channels)} and {len(strides)}")
        blocks = [blocks_per_stage] * len(channels) if isinstance(blocks_per_stage, int) else list(blocks_per_stage)
        if len(blocks) != len(channels):
            raise ValueError(f"blocks_per_stage must have {len(channels)} entries, got {len(blocks)}")
        self.spatial_dims, self.in_channels = spatial_dims, in_channels
        self.stages = nn.ModuleList()
        prev = in_channels
        for c, s, n in zip(channels, strides, blocks):
            # A residual stage's first block needs a conv stem so its shortcut is not taken on the raw input.
            self.stages.append(ConvStage(spatial_dims, prev, c, n, s, residual and prev != in_channels, norm, act))
            prev = c
        self.feature_channels = list(channels)
        self.feature_strides = [int(math.prod(strides[: i + 1])) for i in range(len(strides))]


class SegmentationHead(nn.Sequential):
    """1x1 conv to class logits."""

    def __init__(self, spatial_dims: int, in_channels: int, num_classes: int) -> None:
        super().__init__(conv_nd(spatial_dims, in_channels, num_classes, 1))


class ConcatConvStage(ConvStage):
    """The default decoder stage: concatenate the upsampled map and the skip, then conv blocks."""

    def forward(self, up: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return super().forward(torch.cat([up, skip], dim=1))


# (upsampled channels, skip channels, out channels) -> module whose forward(up, skip) fuses them.
StageBuilder = Callable[[int, int, int], nn.Module]


class UNetDecoder(nn.Module):
    """Upsample (transposed conv) -> concat skip -> conv blocks, from the deepest map to the shallowest.

    Shared by every encoder family: it only needs the encoder's `feature_channels` and `feature_strides`. If the
    shallowest feature has stride > 1, a final upsampling brings the logits back to the input resolution.
    Returns logits at full resolution, or, with deep supervision in training mode, a list from fine to coarse.
    `stage_builder` swaps the per-scale fusion block (default `ConcatConvStage`) for families with their own.
    """

    def __init__(
        self, spatial_dims: int, feature_channels: Sequence[int], feature_strides: Sequence[int], num_classes: int,
        decoder_channels: Sequence[int] | None = None, blocks_per_stage: int = 2, norm: str | None = "instance",
        act: str | None = "leakyrelu", deep_supervision: bool = False, residual: bool = False,
        stage_builder: StageBuilder | None = None,
    ) -> None:
        super().__init__()
        n = len(feature_channels)
        if n < 2:
            raise ValueError(f"a U-Net decoder needs at least 2 encoder features, got {n}")
        dec = list(decoder_channels) if decoder_channels is not None else list(feature_channels[:-1])
        if len(dec) != n - 1:
            raise ValueError(f"decoder_channels must have {n - 1} entries, got {len(dec)}")
        self.spatial_dims, self.deep_supervision = spatial_dims, deep_supervision
        self.ups, self.stages, self.heads = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        prev = feature_channels[-1]
        for i in range(n - 2, -1, -1):
            up = feature_strides[i + 1] // feature_strides[i]
            out_c = dec[i]
            if up > 1:
                self.ups.append(conv_transpose_nd(spatial_dims, prev, out_c, up, up, bias=False))
            else:
                self.ups.append(conv_nd(spatial_dims, prev, out_c, 1, bias=False))
            if stage_builder is None:
                self.stages.append(ConcatConvStage(spatial_dims, out_c + feature_channels[i], out_c,
                                                   blocks_per_stage, 1, residual, norm, act))
            else:
                self.stages.append(stage_builder(out_c, feature_channels[i], out_c))
            if deep_supervision and i > 0:  # auxiliary heads on every scale but the finest
                self.heads.append(SegmentationHead(spatial_dims, out_c, num_classes))
            prev = out_c
        self.final_up = feature_strides[0]
        if self.final_up > 1:
            self.final = nn.Sequential(
                conv_transpose_nd(spatial_dims, prev, prev, self.final_up, self.final_up, bias=False),
                ConvStage(spatial_dims, prev, prev, 1, 1, False, norm, act),
            )
        else:
            self.final = nn.Identity()
        self.head = SegmentationHead(spatial_dims, prev, num_classes)

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor | list[torch.Tensor]:
        x = feats[-1]
        aux: list[torch.Tensor] = []
        for j, (up, stage) in enumerate(zip(self.ups, self.stages)):
            x = stage(up(x), feats[len(feats) - 2 - j])
            if self.deep_supervision and self.training and j < len(self.heads):
                aux.append(self.heads[j](x))
        out = self.head(self.final(x))
        if self.deep_supervision and self.training:
            return [out, *reversed(aux)]
        return out


class EncoderDecoder(SegmentationModel):
    """Any encoder with `forward_features` + a `UNetDecoder`; checks (or pads) the input size."""

    def __init__(self, encoder: nn.Module, decoder: nn.Module, spatial_dims: int, in_channels: int,
                 num_classes: int, divisor: int | Sequence[int], pad_input: bool = False) -> None:
        super().__init__(spatial_dims, in_channels, num_classes, divisor, pad_input)
        self.encoder, self.decoder = encoder, decoder

    def forward_logits(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        return self.decoder(self.encoder.forward_features(x))


class UNet(EncoderDecoder):
    """U-Net for 2-D or 3-D: plain (conv-norm-LeakyReLU x2) or residual encoder (nnU-Net ResEnc), deep supervision.

    Output: logits `[B, num_classes, *spatial]`; with `deep_supervision=True` in training mode, a list of logits
    from full resolution to coarser scales (the loss downsamples targets to match).
    """

    def __init__(
        self, spatial_dims: int = 2, in_channels: int = 1, num_classes: int = 2,
        channels: Sequence[int] = (32, 64, 128, 256, 320), strides: Sequence[int] = (1, 2, 2, 2, 2),
        encoder_blocks: int | Sequence[int] = 2, decoder_blocks: int = 2, residual: bool = False,
        norm: str | None = "instance", act: str | None = "leakyrelu", deep_supervision: bool = False,
        pad_input: bool = False,
    ) -> None:
        encoder = UNetEncoder(spatial_dims, in_channels, channels, strides, encoder_blocks, residual, norm, act)
        decoder = UNetDecoder(spatial_dims, encoder.feature_channels, encoder.feature_strides, num_classes,
                              None, decoder_blocks, norm, act, deep_supervision)
        super().__init__(encoder, decoder, spatial_dims, in_channels, num_classes,
                         encoder.feature_strides[-1], pad_input)
