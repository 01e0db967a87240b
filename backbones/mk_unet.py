"""MK-UNet-style lightweight U-Net (after Rahman & Marculescu 2025) for 2-D/3-D: multi-kernel (1/3/5) depthwise
inverted-residual blocks, max-pool downsampling, grouped attention gates on the decoder's skips."""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from backbones.base import StageEncoder, max_pool_stages
from backbones.layers import ConvNormAct, ParallelSum, act_layer, conv_nd
from backbones.unet import EncoderDecoder, UNetDecoder

__all__ = ["MultiKernelDepthwiseConv", "MKIRBlock", "GroupedAttentionGate", "MKDecoderStage", "MKUNetEncoder",
           "MKUNet"]


class MultiKernelDepthwiseConv(nn.Module):
    """Parallel depthwise conv-norm-act branches with kernel sizes `kernels`, summed."""

    def __init__(self, spatial_dims: int, channels: int, kernels: Sequence[int] = (1, 3, 5),
                 norm: str | None = "batch", act: str | None = "relu") -> None:
        super().__init__()
        if any(k % 2 == 0 for k in kernels):
            raise ValueError(f"kernels must be odd, got {tuple(kernels)}")
        self.branches = ParallelSum(ConvNormAct(spatial_dims, channels, channels, k, 1, norm, act, groups=channels)
                                    for k in kernels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.branches(x)


class MKIRBlock(nn.Module):
    """Multi-kernel inverted residual: 1x1 expand -> `MultiKernelDepthwiseConv` -> 1x1 project, plus a shortcut."""

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, expansion: int = 2,
                 kernels: Sequence[int] = (1, 3, 5), norm: str | None = "batch", act: str | None = "relu") -> None:
        super().__init__()
        hidden = in_channels * expansion
        self.expand = ConvNormAct(spatial_dims, in_channels, hidden, 1, 1, norm, act)
        self.mkdc = MultiKernelDepthwiseConv(spatial_dims, hidden, kernels, norm, act)
        self.project = ConvNormAct(spatial_dims, hidden, out_channels, 1, 1, norm, None)
        self.shortcut = (nn.Identity() if in_channels == out_channels
                         else conv_nd(spatial_dims, in_channels, out_channels, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(self.mkdc(self.expand(x))) + self.shortcut(x)


class GroupedAttentionGate(nn.Module):
    """Attention gate with grouped 3^d convs: sigmoid(1x1(act(Wg g + Wx x))) gates the skip x."""

    def __init__(self, spatial_dims: int, gate_channels: int, skip_channels: int, inter_channels: int,
                 groups: int = 4, norm: str | None = "batch", act: str | None = "relu") -> None:
        super().__init__()
        g = math.gcd(groups, math.gcd(gate_channels, math.gcd(skip_channels, inter_channels)))
        self.w_gate = ConvNormAct(spatial_dims, gate_channels, inter_channels, 3, 1, norm, None, groups=g)
        self.w_skip = ConvNormAct(spatial_dims, skip_channels, inter_channels, 3, 1, norm, None, groups=g)
        self.act = act_layer(act)
        self.psi = ConvNormAct(spatial_dims, inter_channels, 1, 1, 1, norm, None)

    def forward(self, gate: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return skip * torch.sigmoid(self.psi(self.act(self.w_gate(gate) + self.w_skip(skip))))


class MKDecoderStage(nn.Module):
    """Decoder stage: gate the skip with the upsampled map, add them, then an `MKIRBlock`."""

    def __init__(self, spatial_dims: int, up_channels: int, skip_channels: int, out_channels: int,
                 kernels: Sequence[int] = (1, 3, 5), groups: int = 4, norm: str | None = "batch",
                 act: str | None = "relu") -> None:
        super().__init__()
        self.gate = GroupedAttentionGate(spatial_dims, up_channels, skip_channels, max(skip_channels // 2, 1), groups,
                                         norm, act)
        self.skip_proj = (nn.Identity() if skip_channels == up_channels
                          else conv_nd(spatial_dims, skip_channels, up_channels, 1, bias=False))
        self.block = MKIRBlock(spatial_dims, up_channels, out_channels, 2, kernels, norm, act)

    def forward(self, up: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.block(up + self.skip_proj(self.gate(up, skip)))


class MKUNetEncoder(StageEncoder):
    """`MKIRBlock` stages with 2x max-pool between them (strides 1, 2, 4, ...)."""

    def __init__(self, spatial_dims: int = 2, in_channels: int = 1, channels: Sequence[int] = (16, 32, 64, 96, 160),
                 kernels: Sequence[int] = (1, 3, 5), norm: str | None = "batch", act: str | None = "relu") -> None:
        super().__init__()
        self.spatial_dims, self.in_channels = spatial_dims, in_channels
        ins = [in_channels, *channels[:-1]]
        self.stages = max_pool_stages(spatial_dims, [MKIRBlock(spatial_dims, cin, c, 2, kernels, norm, act)
                                                     for cin, c in zip(ins, channels)])
        self.feature_channels = list(channels)
        self.feature_strides = [2 ** i for i in range(len(channels))]


class MKUNet(EncoderDecoder):
    """MK-UNet-style segmenter: `MKUNetEncoder` + U-Net decoder with `MKDecoderStage`s.
    Any input whose size is a multiple of 2^(len(channels)-1)."""

    def __init__(self, spatial_dims: int = 2, in_channels: int = 1, num_classes: int = 2,
                 channels: Sequence[int] = (16, 32, 64, 96, 160), kernels: Sequence[int] = (1, 3, 5),
                 groups: int = 4, norm: str | None = "batch", act: str | None = "relu",
                 deep_supervision: bool = False, pad_input: bool = False) -> None:
        encoder = MKUNetEncoder(spatial_dims, in_channels, channels, kernels, norm, act)

        def stage(up_c: int, skip_c: int, out_c: int) -> nn.Module:
            return MKDecoderStage(spatial_dims, up_c, skip_c, out_c, kernels, groups, norm, act)

        decoder = UNetDecoder(spatial_dims, encoder.feature_channels, encoder.feature_strides, num_classes,
                              deep_supervision=deep_supervision, stage_builder=stage)
        super().__init__(encoder, decoder, spatial_dims, in_channels, num_classes, encoder.feature_strides[-1],
                         pad_input)
