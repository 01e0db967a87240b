"""Registered U-Nets (plain and residual-encoder) in three widths, 2-D and 3-D."""
from __future__ import annotations

from typing import Any

from backbones.unet import UNet
from zoo.models.defaults import model_config
from zoo.registry import register_model

_WIDTHS = {
    "tiny": dict(channels=(16, 32, 64, 128), strides=(1, 2, 2, 2)),
    "small": dict(channels=(32, 64, 128, 256, 320), strides=(1, 2, 2, 2, 2)),
    "base": dict(channels=(32, 64, 128, 256, 320, 320), strides=(1, 2, 2, 2, 2, 2)),
}


def _unet(size: str, residual: bool, **kwargs: Any) -> UNet:
    resenc: dict[str, Any] = {}
    if residual:  # nnU-Net ResEnc: more blocks in deeper encoder stages, one block per decoder stage
        n = len(_WIDTHS[size]["channels"])
        resenc = dict(encoder_blocks=tuple([1, 3, 4, 6, 6, 6][:n]), decoder_blocks=1, residual=True)
    return UNet(**model_config(_WIDTHS[size], resenc, **kwargs))


@register_model(family="unet")
def unet_tiny(**kwargs: Any) -> UNet:
    """U-Net, 4 stages 16-128 channels (~0.5 M parameters in 2-D): the quickstart model."""
    return _unet("tiny", False, **kwargs)


@register_model(family="unet")
def unet_small(**kwargs: Any) -> UNet:
    """U-Net, 5 stages 32-320 channels (nnU-Net's 2-D/3-D widths, shallower)."""
    return _unet("small", False, **kwargs)


@register_model(family="unet")
def unet_base(**kwargs: Any) -> UNet:
    """U-Net, 6 stages 32-320 channels (nnU-Net's default 2-D depth)."""
    return _unet("base", False, **kwargs)


@register_model(family="unet")
def resenc_unet_tiny(**kwargs: Any) -> UNet:
    """Residual-encoder U-Net (nnU-Net ResEnc), 4 stages."""
    return _unet("tiny", True, **kwargs)


@register_model(family="unet")
def resenc_unet_small(**kwargs: Any) -> UNet:
    """Residual-encoder U-Net (nnU-Net ResEnc), 5 stages."""
    return _unet("small", True, **kwargs)


@register_model(family="unet")
def resenc_unet_base(**kwargs: Any) -> UNet:
    """Residual-encoder U-Net (nnU-Net ResEnc M-like), 6 stages."""
    return _unet("base", True, **kwargs)
