"""Registered NA-UNets (NAT and DiNAT encoders on `ops.na` + U-Net decoder), 2-D and 3-D, and their encoders as
image classifiers (`nat_tiny`, `dinat_small`, ... built by `zoo.encoders.create_classifier`).

Per-stage NA kernels (the minimum input size follows from them, see `backbones.nat`):
2-D tiny (7, 7, 3, 2) -> 64; 2-D small/base (7, 7, 7, 7) -> 224 (NAT's); 3-D tiny (5, 3, 2, 1) -> 32;
3-D small/base (5, 5, 5, 3) -> 96 (5^3 = 125 keys per query, about Swin's 7x7 window).
"""
from __future__ import annotations

from typing import Any

from backbones.base import EncoderClassifier
from backbones.nat import NAUNet
from zoo.encoders import create_classifier
from zoo.models.defaults import model_config
from zoo.registry import register_model

__all__ = ["nat_tiny", "nat_small", "nat_base", "dinat_tiny", "dinat_small", "dinat_base"]

_SIZES = {  # small: NAT-Mini's encoder, base: NAT-Tiny's
    "tiny": dict(embed_dim=32, depths=(1, 1, 2, 1), num_heads=(1, 2, 4, 8), mlp_ratio=2.0,
                 decoder_channels=(8, 16, 32)),
    "small": dict(embed_dim=64, depths=(3, 4, 6, 5), num_heads=(2, 4, 8, 16), mlp_ratio=3.0),
    "base": dict(embed_dim=64, depths=(3, 4, 18, 5), num_heads=(2, 4, 8, 16), mlp_ratio=3.0),
}
_KERNELS = {("tiny", 2): (7, 7, 3, 2), ("tiny", 3): (5, 3, 2, 1)}
_KERNELS_DEFAULT = {2: (7, 7, 7, 7), 3: (5, 5, 5, 3)}


def _na_unet(size: str, dilated: bool, **kwargs: Any) -> NAUNet:
    cfg = model_config(dict(dilated=dilated), _SIZES[size], **kwargs)
    dims = cfg["spatial_dims"]
    cfg.setdefault("kernel_sizes", _KERNELS.get((size, dims), _KERNELS_DEFAULT.get(dims, (7, 7, 7, 7))))
    return NAUNet(**cfg)


@register_model(family="na_unet")
def nat_unet_tiny(**kwargs: Any) -> NAUNet:
    """NA-UNet, NAT encoder 32-256 wide, depths 1/1/2/1; stride 32, inputs >= 64 (2-D) / 32 (3-D)."""
    return _na_unet("tiny", False, **kwargs)


@register_model(family="na_unet")
def nat_unet_small(**kwargs: Any) -> NAUNet:
    """NA-UNet on NAT-Mini (64-512 wide, depths 3/4/6/5); stride 32, inputs >= 224 (2-D) / 96 (3-D)."""
    return _na_unet("small", False, **kwargs)


@register_model(family="na_unet")
def nat_unet_base(**kwargs: Any) -> NAUNet:
    """NA-UNet on NAT-Tiny (64-512 wide, depths 3/4/18/5); stride 32, inputs >= 224 (2-D) / 96 (3-D)."""
    return _na_unet("base", False, **kwargs)


@register_model(family="na_unet")
def dinat_unet_tiny(**kwargs: Any) -> NAUNet:
    """NA-UNet, DiNAT encoder 32-256 wide, depths 1/1/2/1; stride 32, inputs >= 64 (2-D) / 32 (3-D)."""
    return _na_unet("tiny", True, **kwargs)


@register_model(family="na_unet")
def dinat_unet_small(**kwargs: Any) -> NAUNet:
    """NA-UNet on DiNAT-Mini (64-512 wide, depths 3/4/6/5); stride 32, inputs >= 224 (2-D) / 96 (3-D)."""
    return _na_unet("small", True, **kwargs)


@register_model(family="na_unet")
def dinat_unet_base(**kwargs: Any) -> NAUNet:
    """NA-UNet on DiNAT-Tiny (64-512 wide, depths 3/4/18/5); stride 32, inputs >= 224 (2-D) / 96 (3-D)."""
    return _na_unet("base", True, **kwargs)


def nat_tiny(num_classes: int = 1000, in_channels: int = 3, **kwargs: Any) -> EncoderClassifier:
    """NAT classifier: `nat_unet_tiny`'s encoder + global pool + head; weights load into `nat_unet_tiny`."""
    return create_classifier("nat_unet_tiny", num_classes, in_channels=in_channels, **kwargs)


def nat_small(num_classes: int = 1000, in_channels: int = 3, **kwargs: Any) -> EncoderClassifier:
    """NAT-Mini classifier (the encoder of `nat_unet_small`)."""
    return create_classifier("nat_unet_small", num_classes, in_channels=in_channels, **kwargs)


def nat_base(num_classes: int = 1000, in_channels: int = 3, **kwargs: Any) -> EncoderClassifier:
    """NAT-Tiny classifier (the encoder of `nat_unet_base`)."""
    return create_classifier("nat_unet_base", num_classes, in_channels=in_channels, **kwargs)


def dinat_tiny(num_classes: int = 1000, in_channels: int = 3, **kwargs: Any) -> EncoderClassifier:
    """DiNAT classifier (the encoder of `dinat_unet_tiny`)."""
    return create_classifier("dinat_unet_tiny", num_classes, in_channels=in_channels, **kwargs)


def dinat_small(num_classes: int = 1000, in_channels: int = 3, **kwargs: Any) -> EncoderClassifier:
    """DiNAT-Mini classifier (the encoder of `dinat_unet_small`)."""
    return create_classifier("dinat_unet_small", num_classes, in_channels=in_channels, **kwargs)


def dinat_base(num_classes: int = 1000, in_channels: int = 3, **kwargs: Any) -> EncoderClassifier:
    """DiNAT-Tiny classifier (the encoder of `dinat_unet_base`)."""
    return create_classifier("dinat_unet_base", num_classes, in_channels=in_channels, **kwargs)
