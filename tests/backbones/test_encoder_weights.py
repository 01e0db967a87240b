"""Encoders build as classifiers, and their weights load into the segmentation model's encoder."""
from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

import zoo
from backbones.vit import VisionTransformerClassifier
from zoo.encoders import create_classifier, load_encoder_weights


@pytest.mark.parametrize("name,dims", [("vit_unetr_tiny", 2), ("unet_tiny", 2), ("resenc_unet_tiny", 3),
                                       ("transunet_tiny", 2), ("sa_unet_tiny", 2), ("mk_unet_tiny", 2)])
def test_classifier_weights_load_into_segmenter(name: str, dims: int) -> None:
    torch.manual_seed(0)
    clf = create_classifier(name, num_classes=5, spatial_dims=dims).eval()
    x = torch.randn(2, 1, *([32] * dims))
    logits = clf(x)
    assert logits.shape == (2, 5)
    torch.manual_seed(1)
    seg = zoo.create_model(name, spatial_dims=dims).eval()
    before = [f.clone() for f in seg.encoder.forward_features(x)]
    keys = load_encoder_weights(seg, clf.state_dict())
    assert keys == sorted(seg.encoder.state_dict())
    with torch.no_grad():
        after, expected = seg.encoder.forward_features(x), clf.encoder.forward_features(x)
    assert not torch.equal(before[-1], expected[-1])  # the two inits differed, so the load did something
    for a, b in zip(after, expected):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert seg(x).shape == (2, 2, *x.shape[2:])


def test_vit_classifier_at_other_image_size_loads_into_unetr() -> None:
    torch.manual_seed(0)
    clf = VisionTransformerClassifier(num_classes=10, spatial_dims=2, in_channels=1, img_size=224, patch_size=16,
                                      embed_dim=192, depth=12, num_heads=3).eval()
    seg = zoo.create_model("vit_unetr_tiny", spatial_dims=2).eval()  # built for 256 x 256: a 16 x 16 grid
    load_encoder_weights(seg, clf.state_dict())
    pos = clf.encoder.transformer.pos_embed.weight
    assert pos.shape[2:] == (14, 14)
    torch.testing.assert_close(seg.encoder.transformer.pos_embed.weight,
                               F.interpolate(pos, size=(16, 16), mode="bilinear", align_corners=False))
    x = torch.randn(1, 1, 256, 256)
    with torch.no_grad():  # the classifier resamples its embedding on the fly: same features
        torch.testing.assert_close(seg.encoder.forward_features(x)[-1], clf.forward_features(x)[-1])


def test_load_encoder_weights_errors_name_the_problem() -> None:
    seg = zoo.create_model("unet_tiny", in_channels=1)
    rgb = create_classifier("unet_tiny", num_classes=3, in_channels=3)
    with pytest.raises(ValueError, match=r"stages\.0\.0\.0\.weight: classifier \(16, 3, 3, 3\) vs encoder "
                                         r"\(16, 1, 3, 3\)"):
        load_encoder_weights(seg, rgb.state_dict())
    with pytest.raises(ValueError, match="no 'encoder.\\*' keys"):
        load_encoder_weights(seg, {"head.fc.weight": torch.zeros(2, 2)})
    other = create_classifier("sa_unet_tiny", num_classes=3)
    with pytest.raises(ValueError, match="missing"):
        load_encoder_weights(seg, other.state_dict())
    with pytest.raises(ValueError, match="no `encoder`"):
        create_classifier("monai:AttentionUnet")
