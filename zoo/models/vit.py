"""Registered UNETR models (ViT encoder + UNETR decoder), ViT-Ti/S/B widths, 2-D and 3-D."""
from __future__ import annotations

from typing import Any

from backbones.vit import UNETR
from zoo.models.defaults import model_config
from zoo.registry import register_model

_SIZES = {
    "tiny": dict(embed_dim=192, depth=12, num_heads=3),
    "small": dict(embed_dim=384, depth=12, num_heads=6),
    "base": dict(embed_dim=768, depth=12, num_heads=12),
}


def default_img_size(spatial_dims: int) -> int:
    """Position-embedding grid the transformer families are built for: 256^2 in 2-D, 96^3 in 3-D."""
    return 256 if spatial_dims == 2 else 96


def _unetr(size: str, **kwargs: Any) -> UNETR:
    cfg = model_config(dict(patch_size=16, feature_size=16), _SIZES[size], **kwargs)
    cfg.setdefault("img_size", default_img_size(cfg["spatial_dims"]))
    return UNETR(**cfg)


@register_model(family="unetr")
def vit_unetr_tiny(**kwargs: Any) -> UNETR:
    """UNETR on ViT-Ti/16 (192 wide, 12 blocks, 3 heads); stride 16."""
    return _unetr("tiny", **kwargs)


@register_model(family="unetr")
def vit_unetr_small(**kwargs: Any) -> UNETR:
    """UNETR on ViT-S/16 (384 wide, 12 blocks, 6 heads); stride 16."""
    return _unetr("small", **kwargs)


@register_model(family="unetr")
def vit_unetr_base(**kwargs: Any) -> UNETR:
    """UNETR on ViT-B/16 (768 wide, 12 blocks, 12 heads), the UNETR paper's configuration; stride 16."""
    return _unetr("base", **kwargs)
