"""Registered axial-attention U-Nets on `ops.axial`: MedT-style gated-axial U-Nets and MCANet-style cross-axis
U-Nets, 2-D and 3-D."""
from __future__ import annotations

from typing import Any

from backbones.axial_unet import GatedAxialUNet, MCAUNet
from zoo.models.defaults import model_config
from zoo.registry import register_model

_SIZES = {
    "tiny": dict(channels=(16, 32, 64, 128), strides=(1, 2, 2, 2), num_conv_stages=2, depths=(1, 1)),
    "small": dict(channels=(32, 64, 128, 256), strides=(1, 2, 2, 2), num_conv_stages=2, depths=(2, 2)),
    "base": dict(channels=(32, 64, 128, 256, 512), strides=(1, 2, 2, 2, 2), num_conv_stages=2, depths=(2, 2, 2),
                 head_dim=32),
}


def _cfg(size: str, **kwargs: Any) -> dict[str, Any]:
    return model_config(_SIZES[size], **kwargs)


@register_model(family="gated_axial_unet")
def gated_axial_unet_tiny(**kwargs: Any) -> GatedAxialUNet:
    """MedT-style U-Net, 16-128 channels, gated axial blocks in the 2 deepest stages; stride 8."""
    return GatedAxialUNet(**_cfg("tiny", **kwargs))


@register_model(family="gated_axial_unet")
def gated_axial_unet_small(**kwargs: Any) -> GatedAxialUNet:
    """MedT-style U-Net, 32-256 channels, 2 gated axial blocks per deep stage; stride 8."""
    return GatedAxialUNet(**_cfg("small", **kwargs))


@register_model(family="gated_axial_unet")
def gated_axial_unet_base(**kwargs: Any) -> GatedAxialUNet:
    """MedT-style U-Net, 32-512 channels, gated axial blocks in the 3 deepest stages; stride 16."""
    return GatedAxialUNet(**_cfg("base", **kwargs))


@register_model(family="mca_unet")
def mca_unet_tiny(**kwargs: Any) -> MCAUNet:
    """MCANet-style cross-axis U-Net, 16-128 channels, cross-axis blocks in the 2 deepest stages; stride 8."""
    return MCAUNet(**_cfg("tiny", **kwargs))


@register_model(family="mca_unet")
def mca_unet_small(**kwargs: Any) -> MCAUNet:
    """MCANet-style cross-axis U-Net, 32-256 channels, 2 cross-axis blocks per deep stage; stride 8."""
    return MCAUNet(**_cfg("small", **kwargs))


@register_model(family="mca_unet")
def mca_unet_base(**kwargs: Any) -> MCAUNet:
    """MCANet-style cross-axis U-Net, 32-512 channels, cross-axis blocks in the 3 deepest stages; stride 16."""
    return MCAUNet(**_cfg("base", **kwargs))
