"""Segmentation networks built from `ops/`; plain `nn.Module`s that know nothing of Lightning or the registry."""
from backbones.base import EncoderClassifier, SegmentationModel, StageEncoder, WrappedSegmenter
from backbones.mk_unet import MKUNet
from backbones.sa_unet import SAUNet
from backbones.transunet import TransUNet
from backbones.unet import EncoderDecoder, UNet, UNetDecoder, UNetEncoder
from backbones.vit import UNETR, ViTEncoder, VisionTransformerClassifier

__all__ = ["EncoderClassifier", "EncoderDecoder", "MKUNet", "SAUNet", "SegmentationModel", "StageEncoder",
           "TransUNet", "UNETR", "UNet", "UNetDecoder", "UNetEncoder", "ViTEncoder", "VisionTransformerClassifier",
           "WrappedSegmenter"]
