"""Registered Attention U-Nets (attention gates from `ops.gate` on every skip), 2-D and 3-D."""
from __future__ import annotations

from typing import Any

from backbones.attention_unet import AttentionUNet
from zoo.models.defaults import model_config
from zoo.registry import register_model

_SIZES = {
    "tiny": dict(channels=(16, 32, 64, 128), strides=(1, 2, 2, 2)),
    "small": dict(channels=(16, 32, 64, 128, 256), strides=(1, 2, 2, 2, 2)),  # MONAI AttentionUnet's example widths
    "base": dict(channels=(32, 64, 128, 256, 512), strides=(1, 2, 2, 2, 2)),
}


def _attention_unet(size: str, **kwargs: Any) -> AttentionUNet:
    return AttentionUNet(**model_config(_SIZES[size], **kwargs))


@register_model(family="attention_unet")
def attention_unet_tiny(**kwargs: Any) -> AttentionUNet:
    """Attention U-Net, 4 stages 16-128 channels; stride 8."""
    return _attention_unet("tiny", **kwargs)


@register_model(family="attention_unet")
def attention_unet_small(**kwargs: Any) -> AttentionUNet:
    """Attention U-Net, 5 stages 16-256 channels (= `monai:AttentionUnet` with channels 16-256, strides 2x4);
    stride 16."""
    return _attention_unet("small", **kwargs)


@register_model(family="attention_unet")
def attention_unet_base(**kwargs: Any) -> AttentionUNet:
    """Attention U-Net, 5 stages 32-512 channels; stride 16."""
    return _attention_unet("base", **kwargs)
