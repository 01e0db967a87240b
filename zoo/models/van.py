"""Registered LKA-UNets (VAN encoder of `ops.lka` blocks + U-Net decoder), 2-D and 3-D, and VAN image classifiers
(`van_tiny`, `van_small`, `van_base`: the same encoders + global pool + head, by `zoo.encoders.create_classifier`)."""
from __future__ import annotations

from typing import Any

from backbones.base import EncoderClassifier
from backbones.van import LKAUNet
from zoo.encoders import create_classifier
from zoo.models.defaults import model_config
from zoo.registry import register_model

__all__ = ["van_tiny", "van_small", "van_base"]

_SIZES = {  # small: VAN-B0's encoder, base: VAN-B1's
    "tiny": dict(dims=(16, 32, 64, 128), depths=(1, 1, 2, 1), mlp_ratios=(4, 4, 4, 4), decoder_channels=(8, 16, 32)),
    "small": dict(dims=(32, 64, 160, 256), depths=(3, 3, 5, 2), mlp_ratios=(8, 8, 4, 4)),
    "base": dict(dims=(64, 128, 320, 512), depths=(2, 2, 4, 2), mlp_ratios=(8, 8, 4, 4)),
}


def _lka_unet(size: str, **kwargs: Any) -> LKAUNet:
    return LKAUNet(**model_config(_SIZES[size], **kwargs))


@register_model(family="lka_unet")
def lka_unet_tiny(**kwargs: Any) -> LKAUNet:
    """LKA-UNet, VAN encoder 16-128 wide, depths 1/1/2/1; stride 32."""
    return _lka_unet("tiny", **kwargs)


@register_model(family="lka_unet")
def lka_unet_small(**kwargs: Any) -> LKAUNet:
    """LKA-UNet on VAN-B0 (32-256 wide, depths 3/3/5/2); stride 32."""
    return _lka_unet("small", **kwargs)


@register_model(family="lka_unet")
def lka_unet_base(**kwargs: Any) -> LKAUNet:
    """LKA-UNet on VAN-B1 (64-512 wide, depths 2/2/4/2); stride 32."""
    return _lka_unet("base", **kwargs)


def van_tiny(num_classes: int = 1000, in_channels: int = 3, **kwargs: Any) -> EncoderClassifier:
    """VAN classifier: `lka_unet_tiny`'s encoder + global pool + head; weights load into `lka_unet_tiny`."""
    return create_classifier("lka_unet_tiny", num_classes, in_channels=in_channels, **kwargs)


def van_small(num_classes: int = 1000, in_channels: int = 3, **kwargs: Any) -> EncoderClassifier:
    """VAN-B0 classifier (the encoder of `lka_unet_small`)."""
    return create_classifier("lka_unet_small", num_classes, in_channels=in_channels, **kwargs)


def van_base(num_classes: int = 1000, in_channels: int = 3, **kwargs: Any) -> EncoderClassifier:
    """VAN-B1 classifier (the encoder of `lka_unet_base`)."""
    return create_classifier("lka_unet_base", num_classes, in_channels=in_channels, **kwargs)
