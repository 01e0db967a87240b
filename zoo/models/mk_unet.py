"""Registered MK-UNet-style lightweight multi-kernel U-Nets, 2-D and 3-D."""
from __future__ import annotations

from typing import Any

from backbones.mk_unet import MKUNet
from zoo.models.defaults import model_config
from zoo.registry import register_model

_SIZES = {"tiny": (8, 16, 32, 48, 80), "small": (16, 32, 64, 96, 160), "base": (32, 64, 128, 192, 320)}


def _mk_unet(size: str, **kwargs: Any) -> MKUNet:
    return MKUNet(**model_config(dict(channels=_SIZES[size]), **kwargs))


@register_model(family="mk_unet")
def mk_unet_tiny(**kwargs: Any) -> MKUNet:
    """MK-UNet-style, 8-80 channels; stride 16."""
    return _mk_unet("tiny", **kwargs)


@register_model(family="mk_unet")
def mk_unet_small(**kwargs: Any) -> MKUNet:
    """MK-UNet-style, 16-160 channels (the paper's widths); stride 16."""
    return _mk_unet("small", **kwargs)


@register_model(family="mk_unet")
def mk_unet_base(**kwargs: Any) -> MKUNet:
    """MK-UNet-style, 32-320 channels; stride 16."""
    return _mk_unet("base", **kwargs)
