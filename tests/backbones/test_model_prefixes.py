"""The registry's prefix hook: `timm:<name>` and `monai:<name>` resolve on demand."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import zoo
from zoo import registry
from zoo.registry import ModelEntry, UnknownModelError


def test_timm_prefix_resolves_and_validates() -> None:
    entry = zoo.get_model_entry("timm:resnet18")
    assert (entry.name, entry.family, entry.spatial_dims) == ("timm:resnet18", "timm", (2,))
    model = zoo.create_model("timm:resnet18", in_channels=1, num_classes=4)
    assert model.segzoo_name == "timm:resnet18"
    assert model.encoder.feature_strides == [2, 4, 8, 16, 32]
    assert model(torch.randn(1, 1, 64, 96)).shape == (1, 4, 64, 96)
    with pytest.raises(ValueError, match="spatial_dims in \\(2,\\)"):
        zoo.create_model("timm:resnet18", spatial_dims=3)
    with pytest.raises(TypeError, match="bogus"):
        zoo.create_model("timm:resnet18", bogus=1)
    with pytest.raises(UnknownModelError, match="did you mean.*timm:resnet18"):
        zoo.get_model_entry("timm:resnet1")
    assert not [n for n in zoo.list_models() if ":" in n]  # dynamic names are not listed


def test_monai_prefix_is_case_insensitive_and_lists_choices() -> None:
    assert zoo.get_model_entry("monai:swinunetr").name == "monai:SwinUNETR"
    assert zoo.get_model_entry("monai:attention_unet").name == "monai:AttentionUnet"
    with pytest.raises(UnknownModelError, match="monai:AttentionUnet, monai:UNETR, monai:SwinUNETR"):
        zoo.get_model_entry("monai:SegResNet")
    model = zoo.create_model("monai:AttentionUnet", spatial_dims=3, in_channels=2, num_classes=3,
                             channels=(4, 8), strides=(2,))
    assert model(torch.randn(1, 2, 8, 8, 4)).shape == (1, 3, 8, 8, 4)


def test_unknown_prefix_and_prefix_registration_rules() -> None:
    with pytest.raises(UnknownModelError, match="unknown model prefix 'foo:'.*monai:, timm:"):
        zoo.get_model_entry("foo:bar")
    with pytest.raises(ValueError, match="without ':'"):
        registry.register_prefix("a:b", lambda rest: None)
    with pytest.raises(ValueError, match="already registered"):
        registry.register_prefix("timm", lambda rest: None)


def test_custom_prefix_builds_through_create_model() -> None:
    def resolve(rest: str) -> ModelEntry:
        width = int(rest)
        return ModelEntry(f"lin:{rest}", lambda in_channels=1, num_classes=2: nn.Conv2d(in_channels, num_classes,
                                                                                        width), "test", (2,))

    registry.register_prefix("lin", resolve)
    try:
        model = zoo.create_model("lin:3", in_channels=2, num_classes=5)
        assert isinstance(model, nn.Conv2d) and model.kernel_size == (3, 3) and model.segzoo_name == "lin:3"
    finally:
        del registry._PREFIXES["lin"]
