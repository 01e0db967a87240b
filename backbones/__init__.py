"""Segmentation networks built from `ops/`; plain `nn.Module`s that know nothing of Lightning or the registry."""
from backbones.unet import EncoderDecoder, UNet, UNetDecoder, UNetEncoder

__all__ = ["EncoderDecoder", "UNet", "UNetDecoder", "UNetEncoder"]
