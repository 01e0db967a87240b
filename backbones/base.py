"""Model wrappers shared by every family: the input-size contract of a segmenter and the encoder-as-classifier."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from backbones.layers import check_spatial_input, max_pool_nd, pad_to_multiple

__all__ = ["SegmentationModel", "WrappedSegmenter", "FeatureEncoder", "StageEncoder", "max_pool_stages", "EncoderClassifier"]


class SegmentationModel(nn.Module):
    """Base of every segmenter: checks `[B, in_channels, *spatial]` with sizes a multiple of `divisor` (clear
    error naming the nearest valid size), or zero-pads up to it and crops the logits when `pad_input=True`.

    Subclasses implement `forward_logits(x)` for an input whose size is already valid.
    """

    def __init__(self, spatial_dims: int, in_channels: int, num_classes: int, divisor: int | Sequence[int],
                 pad_input: bool = False) -> None:
        super().__init__()
        self.spatial_dims, self.in_channels, self.num_classes = spatial_dims, in_channels, num_classes
        self.divisor, self.pad_input = divisor, pad_input

    def forward_logits(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        if self.pad_input:
            check_spatial_input(x, self.spatial_dims, self.in_channels, 1)
            x, crop = pad_to_multiple(x, self.divisor)
            out = self.forward_logits(x)
            if isinstance(out, list):  # deep-supervision outputs stay at their own (padded) scales
                return [out[0][crop], *out[1:]]
            return out[crop]
        check_spatial_input(x, self.spatial_dims, self.in_channels, self.divisor)
        return self.forward_logits(x)


class WrappedSegmenter(SegmentationModel):
    """Any `net(x) -> logits` (e.g. a MONAI network) behind segzoo's input contract; `input_size` pins the one
    size a net accepts (e.g. a fixed position embedding)."""

    def __init__(self, net: nn.Module, spatial_dims: int, in_channels: int, num_classes: int,
                 divisor: int | Sequence[int], pad_input: bool = False,
                 input_size: Sequence[int] | None = None) -> None:
        super().__init__(spatial_dims, in_channels, num_classes, divisor, pad_input)
        self.net = net
        self.input_size = tuple(input_size) if input_size is not None else None

    def forward_logits(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        if self.input_size is not None and tuple(x.shape[2:]) != self.input_size:
            raise ValueError(f"{type(self.net).__name__} was built for input size {self.input_size} "
                             f"(img_size), got spatial size {tuple(x.shape[2:])}")
        return self.net(x)


class FeatureEncoder(nn.Module):
    """Base of every encoder: `forward_features(x)` (and calling it) returns its feature maps, finest first
    (timm's convention), with `feature_channels` and `feature_strides` one per map."""

    feature_channels: list[int]
    feature_strides: list[int]

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.forward_features(x)


class StageEncoder(FeatureEncoder):
    """Base of encoders made of sequential `self.stages`: `forward_features` returns every stage's output;
    subclasses set `stages`, `feature_channels` and `feature_strides`."""

    stages: nn.ModuleList

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return feats


def max_pool_stages(spatial_dims: int, blocks: Sequence[nn.Module]) -> nn.ModuleList:
    """Stages of a max-pool U-Net encoder: the first block as is, each later one behind a 2x max-pool (strides
    1, 2, 4, ...); a later block's weights sit under `stages.<i>.1.*`."""
    return nn.ModuleList(block if i == 0 else nn.Sequential(max_pool_nd(spatial_dims, 2), block)
                         for i, block in enumerate(blocks))


class EncoderClassifier(nn.Module):
    """Any encoder with `forward_features` as an image classifier: global average pool of the deepest map,
    LayerNorm, linear head. Its `encoder.*` weights load into a segmenter's encoder (`zoo.load_encoder_weights`).
    """

    def __init__(self, encoder: nn.Module, num_classes: int, drop_rate: float = 0.0) -> None:
        super().__init__()
        channels = getattr(encoder, "feature_channels", None)
        if not channels:
            raise ValueError(f"encoder {type(encoder).__name__} must expose `feature_channels` (one per map)")
        self.encoder, self.num_classes = encoder, num_classes
        self.head = nn.Sequential()
        self.head.add_module("norm", nn.LayerNorm(channels[-1]))
        self.head.add_module("drop", nn.Dropout(drop_rate))
        self.head.add_module("fc", nn.Linear(channels[-1], num_classes))

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.encoder.forward_features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits `[B, num_classes]`."""
        deepest = self.encoder.forward_features(x)[-1]
        return self.head(deepest.flatten(2).mean(-1))
