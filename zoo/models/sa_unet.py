"""Registered SA-UNets (spatial attention + DropBlock), 2-D and 3-D."""
from __future__ import annotations

from typing import Any

from backbones.sa_unet import SAUNet
from zoo.models.defaults import model_config
from zoo.registry import register_model

_SIZES = {"tiny": (8, 16, 32, 64), "small": (16, 32, 64, 128), "base": (32, 64, 128, 256)}


def _sa_unet(size: str, **kwargs: Any) -> SAUNet:
    return SAUNet(**model_config(dict(channels=_SIZES[size]), **kwargs))


@register_model(family="sa_unet")
def sa_unet_tiny(**kwargs: Any) -> SAUNet:
    """SA-UNet, 8-64 channels; stride 8."""
    return _sa_unet("tiny", **kwargs)


@register_model(family="sa_unet")
def sa_unet_small(**kwargs: Any) -> SAUNet:
    """SA-UNet, 16-128 channels (the paper's retinal-vessel model); stride 8."""
    return _sa_unet("small", **kwargs)


@register_model(family="sa_unet")
def sa_unet_base(**kwargs: Any) -> SAUNet:
    """SA-UNet, 32-256 channels; stride 8."""
    return _sa_unet("base", **kwargs)
