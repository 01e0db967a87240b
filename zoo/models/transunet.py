"""Registered TransUNet-style hybrids (residual CNN encoder, ViT bottleneck at stride 16), 2-D and 3-D."""
from __future__ import annotations

from typing import Any

from backbones.transunet import TransUNet
from zoo.models.vit import default_img_size
from zoo.models.defaults import model_config
from zoo.registry import register_model

_SIZES = {
    "tiny": dict(channels=(16, 32, 64, 128), blocks_per_stage=(1, 1, 2, 2), embed_dim=192, depth=4, num_heads=3),
    "small": dict(channels=(32, 64, 128, 256), blocks_per_stage=(1, 2, 3, 4), embed_dim=384, depth=8, num_heads=6),
    "base": dict(channels=(64, 128, 256, 512), blocks_per_stage=(1, 3, 4, 6), embed_dim=768, depth=12,
                 num_heads=12),
}


def _transunet(size: str, **kwargs: Any) -> TransUNet:
    cfg = model_config(_SIZES[size], **kwargs)
    cfg.setdefault("img_size", default_img_size(cfg["spatial_dims"]))
    return TransUNet(**cfg)


@register_model(family="transunet")
def transunet_tiny(**kwargs: Any) -> TransUNet:
    """TransUNet-style: CNN 16-128 channels, 4 ViT blocks 192 wide; stride 16."""
    return _transunet("tiny", **kwargs)


@register_model(family="transunet")
def transunet_small(**kwargs: Any) -> TransUNet:
    """TransUNet-style: CNN 32-256 channels, 8 ViT blocks 384 wide; stride 16."""
    return _transunet("small", **kwargs)


@register_model(family="transunet")
def transunet_base(**kwargs: Any) -> TransUNet:
    """TransUNet-style: CNN 64-512 channels (ResNet-50-like depths), 12 ViT-B blocks; stride 16."""
    return _transunet("base", **kwargs)
