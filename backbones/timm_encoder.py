"""Any timm model as a 2-D U-Net encoder (timm's `features_only`), like segmentation_models_pytorch's `tu-`."""
from __future__ import annotations

from typing import Any, Sequence

import torch

from backbones.base import FeatureEncoder
from backbones.unet import EncoderDecoder, UNetDecoder

__all__ = ["TimmEncoder", "TimmUNet"]


class TimmEncoder(FeatureEncoder):
    """`timm.create_model(name, features_only=True)`; `forward_features` returns its maps in NCHW."""

    def __init__(self, name: str, in_channels: int = 3, pretrained: bool = False,
                 out_indices: Sequence[int] | None = None, timm_kwargs: dict[str, Any] | None = None) -> None:
        super().__init__()
        import timm

        kwargs: dict[str, Any] = dict(features_only=True, pretrained=pretrained, in_chans=in_channels)
        if out_indices is not None:
            kwargs["out_indices"] = tuple(out_indices)
        self.model = timm.create_model(name, **kwargs, **(timm_kwargs or {}))
        self.spatial_dims, self.in_channels, self.name = 2, in_channels, name
        self.feature_channels = list(self.model.feature_info.channels())
        self.feature_strides = [int(r) for r in self.model.feature_info.reduction()]
        for a, b in zip(self.feature_strides, self.feature_strides[1:]):
            if b % a:
                raise ValueError(f"timm model {name!r} has feature strides {self.feature_strides}; each must divide "
                                 "the next for a U-Net decoder (choose out_indices)")
        self.channels_last_output = getattr(self.model, "output_fmt", "NCHW") == "NHWC"

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = self.model(x)
        if self.channels_last_output:
            feats = [f.permute(0, 3, 1, 2) for f in feats]
        return list(feats)


class TimmUNet(EncoderDecoder):
    """2-D U-Net on a timm encoder: the shared decoder (batch norm, ReLU, channels min(encoder, 256) per scale)
    with a final upsampling when the shallowest map has stride > 1. Any input whose size is a multiple of the
    encoder's deepest stride."""

    def __init__(self, encoder_name: str, spatial_dims: int = 2, in_channels: int = 3, num_classes: int = 2,
                 encoder_pretrained: bool = False, out_indices: Sequence[int] | None = None,
                 decoder_channels: Sequence[int] | None = None, norm: str | None = "batch", act: str | None = "relu",
                 deep_supervision: bool = False, pad_input: bool = False,
                 timm_kwargs: dict[str, Any] | None = None) -> None:
        if spatial_dims != 2:
            raise ValueError(f"timm encoders are 2-D only; got spatial_dims={spatial_dims}")
        encoder = TimmEncoder(encoder_name, in_channels, encoder_pretrained, out_indices, timm_kwargs)
        if decoder_channels is None:
            decoder_channels = [min(c, 256) for c in encoder.feature_channels[:-1]]
        decoder = UNetDecoder(2, encoder.feature_channels, encoder.feature_strides, num_classes, decoder_channels, 2,
                              norm, act, deep_supervision)
        super().__init__(encoder, decoder, 2, in_channels, num_classes, encoder.feature_strides[-1], pad_input)
