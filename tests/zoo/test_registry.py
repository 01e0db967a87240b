import pytest
import torch
from torch import nn

import zoo
from zoo.registry import UnknownModelError, register_model


def test_list_models_has_unets_and_filters():
    names = zoo.list_models()
    assert "unet_tiny" in names and "resenc_unet_small" in names
    assert names == sorted(names)
    assert zoo.list_models("resenc_*") == [n for n in names if n.startswith("resenc_")]
    assert "unet_tiny" in zoo.list_models(family="unet", spatial_dims=3)


@pytest.mark.parametrize("dims,size", [(2, (1, 2, 48, 32)), (3, (1, 2, 16, 32, 16))])
def test_create_model_overrides(dims, size):
    model = zoo.create_model("unet_tiny", num_classes=5, in_channels=2, spatial_dims=dims)
    out = model(torch.randn(size))
    assert out.shape == (size[0], 5, *size[2:])


def test_unknown_name_suggests_closest():
    with pytest.raises(UnknownModelError, match=r"unknown model 'unet_smal'.*'unet_small'"):
        zoo.create_model("unet_smal")


def test_unknown_override_is_named():
    with pytest.raises(TypeError, match="num_clases"):
        zoo.create_model("unet_tiny", num_clases=3)


def test_register_model_decorator_and_duplicate_guard():
    @register_model(name="_test_identity_net", family="test", spatial_dims=(2,))
    def _net(num_classes: int = 2, in_channels: int = 1, spatial_dims: int = 2) -> nn.Module:
        return nn.Conv2d(in_channels, num_classes, 1)

    assert "_test_identity_net" in zoo.list_models("_test_*")
    assert zoo.create_model("_test_identity_net", num_classes=3).out_channels == 3
    with pytest.raises(ValueError, match="spatial_dims"):
        zoo.create_model("_test_identity_net", spatial_dims=3)

    with pytest.raises(ValueError, match="already registered"):
        @register_model(name="_test_identity_net")
        def _other(**kw) -> nn.Module:
            return nn.Identity()
