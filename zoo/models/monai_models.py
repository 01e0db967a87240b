"""`monai:<name>`: MONAI's AttentionUnet, UNETR and SwinUNETR behind segzoo's names and input contract,
the baselines the zoo is measured against."""
from __future__ import annotations

import math
from typing import Any, Callable, Sequence

from torch import nn

from backbones.base import WrappedSegmenter
from zoo.models.vit import default_img_size
from zoo.registry import ModelEntry, UnknownModelError, register_prefix


def monai_attention_unet(spatial_dims: int = 2, in_channels: int = 1, num_classes: int = 2,
                         channels: Sequence[int] = (16, 32, 64, 128, 256), strides: Sequence[int] = (2, 2, 2, 2),
                         pad_input: bool = False, **monai_kwargs: Any) -> WrappedSegmenter:
    """MONAI `AttentionUnet`; stride = product of `strides`."""
    from monai.networks.nets import AttentionUnet

    net = AttentionUnet(spatial_dims, in_channels, num_classes, channels, strides, **monai_kwargs)
    return WrappedSegmenter(net, spatial_dims, in_channels, num_classes, math.prod(strides), pad_input)


def monai_unetr(spatial_dims: int = 3, in_channels: int = 1, num_classes: int = 2,
                img_size: int | Sequence[int] | None = None, pad_input: bool = False,
                **monai_kwargs: Any) -> WrappedSegmenter:
    """MONAI `UNETR` (ViT-B/16 by default); accepts only inputs of `img_size` (default 256^2 / 96^3), or smaller
    ones zero-padded to it with `pad_input=True`."""
    from monai.networks.nets import UNETR

    size = img_size if img_size is not None else default_img_size(spatial_dims)
    img = (size,) * spatial_dims if isinstance(size, int) else tuple(size)
    net = UNETR(in_channels, num_classes, img, spatial_dims=spatial_dims, **monai_kwargs)
    return WrappedSegmenter(net, spatial_dims, in_channels, num_classes, img, pad_input, input_size=img)


def monai_swin_unetr(spatial_dims: int = 3, in_channels: int = 1, num_classes: int = 2, feature_size: int = 24,
                     pad_input: bool = False, **monai_kwargs: Any) -> WrappedSegmenter:
    """MONAI `SwinUNETR` (v1 by default); stride 32."""
    from monai.networks.nets import SwinUNETR

    net = SwinUNETR(in_channels, num_classes, feature_size=feature_size, spatial_dims=spatial_dims, **monai_kwargs)
    return WrappedSegmenter(net, spatial_dims, in_channels, num_classes, 32, pad_input)


_BUILDERS: dict[str, tuple[str, Callable[..., nn.Module]]] = {
    "attentionunet": ("AttentionUnet", monai_attention_unet),
    "unetr": ("UNETR", monai_unetr),
    "swinunetr": ("SwinUNETR", monai_swin_unetr),
}


def resolve_monai(name: str) -> ModelEntry:
    """Registry entry for `monai:<name>` (case-insensitive): AttentionUnet, UNETR or SwinUNETR."""
    key = name.lower().replace("_", "")
    if key not in _BUILDERS:
        known = ", ".join(f"monai:{n}" for n, _ in _BUILDERS.values())
        raise UnknownModelError(f"unknown MONAI model {name!r}; available: {known}")
    canonical, builder = _BUILDERS[key]
    return ModelEntry(f"monai:{canonical}", builder, family="monai", spatial_dims=(2, 3))


register_prefix("monai", resolve_monai)
