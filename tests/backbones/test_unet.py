import pytest
import torch

from backbones import UNet


@pytest.mark.parametrize("residual", [False, True])
@pytest.mark.parametrize("norm", ["instance", "batch"])
def test_unet_2d_shapes_and_grads(residual, norm):
    net = UNet(2, 3, 4, channels=(8, 16, 32), strides=(1, 2, 2), residual=residual, norm=norm)
    x = torch.randn(2, 3, 24, 40)
    out = net(x)
    assert out.shape == (2, 4, 24, 40)
    out.square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())


def test_unet_deep_supervision_train_vs_eval():
    net = UNet(3, 1, 3, channels=(4, 8, 16), strides=(1, 2, 2), deep_supervision=True)
    x = torch.randn(1, 1, 16, 16, 8)
    outs = net(x)
    assert [o.shape[2:] for o in outs] == [(16, 16, 8), (8, 8, 4)]
    net.eval()
    assert net(x).shape == (1, 3, 16, 16, 8)


def test_unet_size_error_names_nearest_valid_size_and_padding():
    net = UNet(2, 1, 2, channels=(4, 8, 16), strides=(1, 2, 2))
    with pytest.raises(ValueError, match=r"multiple of \(4, 4\); nearest valid size is \(20, 32\)"):
        net(torch.randn(1, 1, 21, 31))
    padded = UNet(2, 1, 2, channels=(4, 8, 16), strides=(1, 2, 2), pad_input=True)
    assert padded(torch.randn(1, 1, 21, 31)).shape == (1, 2, 21, 31)


def test_unet_wrong_channels_and_ndim():
    net = UNet(2, 3, 2, channels=(4, 8), strides=(1, 2))
    with pytest.raises(ValueError, match="must have 3 channels .* got 1"):
        net(torch.randn(1, 1, 8, 8))
    with pytest.raises(ValueError, match="must have 4 dims"):
        net(torch.randn(1, 3, 8, 8, 8))
