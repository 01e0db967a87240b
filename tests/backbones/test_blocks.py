"""Blocks of the families against direct references."""
from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

from backbones.base import max_pool_stages
from backbones.layers import conv_nd
from backbones.sa_unet import DropBlock, SpatialAttention
from backbones.unet import UNetDecoder
from backbones.vit import Attention, PositionEmbedding


def test_attention_matches_softmax_reference() -> None:
    torch.manual_seed(0)
    attn = Attention(24, 3).eval()
    x = torch.randn(2, 7, 24)
    q, k, v = attn.qkv(x).reshape(2, 7, 3, 3, 8).permute(2, 0, 3, 1, 4)
    ref = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(8), -1) @ v
    ref = attn.proj(ref.transpose(1, 2).reshape(2, 7, 24))
    torch.testing.assert_close(attn(x), ref, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="divisible by num_heads"):
        Attention(10, 3)


@pytest.mark.parametrize("grid", [(4, 4), (6, 2), (3, 5, 2)])
def test_position_embedding_resamples_to_grid(grid: tuple[int, ...]) -> None:
    pe = PositionEmbedding(8, (4, 4) if len(grid) == 2 else (2, 2, 2))
    out = pe(grid)
    assert out.shape == (1, 8, *grid)
    if grid == pe.grid_size:
        assert out is pe.weight
    else:
        mode = "bilinear" if len(grid) == 2 else "trilinear"
        torch.testing.assert_close(out, F.interpolate(pe.weight, size=grid, mode=mode, align_corners=False))


@pytest.mark.parametrize("dims", [2, 3])
def test_dropblock_drops_blocks_at_rate_and_is_identity_in_eval(dims: int) -> None:
    torch.manual_seed(0)
    db = DropBlock(drop_prob=0.1, block_size=5)
    x = torch.ones(4, 8, *([40] * dims if dims == 2 else [20] * dims))
    assert db.eval()(x) is x
    y = db.train()(x)
    dropped = (y == 0).float().mean().item()
    assert 0.07 < dropped < 0.11, dropped  # a bit under 0.1: blocks overlap
    kept = y[y != 0]
    torch.testing.assert_close(kept, torch.full_like(kept, x.numel() / (y != 0).sum().item()))
    # Dropped units come in blocks: most zeros have a zero neighbour along the last axis.
    zeros = y == 0
    neighbour = zeros[..., 1:] & zeros[..., :-1]
    assert neighbour.sum() > 0.5 * zeros.sum()
    with pytest.raises(ValueError, match="drop_prob"):
        DropBlock(1.0)


@pytest.mark.parametrize("dims", [2, 3])
def test_spatial_attention_matches_reference(dims: int) -> None:
    torch.manual_seed(0)
    sa = SpatialAttention(dims)
    x = torch.randn(2, 5, *([9] * dims))
    pooled = torch.cat([x.mean(1, keepdim=True), x.max(1, keepdim=True).values], 1)
    conv = F.conv2d if dims == 2 else F.conv3d
    torch.testing.assert_close(sa(x), x * torch.sigmoid(conv(pooled, sa.conv.weight, padding=3)))


def test_decoder_stage_builder_is_used_per_scale() -> None:
    calls = []

    class AddStage(torch.nn.Module):
        def __init__(self, up_c: int, skip_c: int, out_c: int) -> None:
            super().__init__()
            calls.append((up_c, skip_c, out_c))
            self.proj = torch.nn.Conv2d(skip_c, up_c, 1)

        def forward(self, up: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
            return up + self.proj(skip)

    dec = UNetDecoder(2, [4, 8, 16], [1, 2, 4], num_classes=3, stage_builder=AddStage)
    assert calls == [(8, 8, 8), (4, 4, 4)]
    feats = [torch.randn(1, 4, 16, 16), torch.randn(1, 8, 8, 8), torch.randn(1, 16, 4, 4)]
    assert dec(feats).shape == (1, 3, 16, 16)


@pytest.mark.parametrize("dims", [2, 3])
def test_max_pool_stages_pool_before_every_block_but_the_first(dims: int) -> None:
    stages = max_pool_stages(dims, [conv_nd(dims, 1, 1, 1) for _ in range(3)])
    # Later blocks' weights sit under `<i>.1.*`: the key layout that saved checkpoints rely on.
    assert [k for k in stages.state_dict() if k.endswith("weight")] == ["0.weight", "1.1.weight", "2.1.weight"]
    x = torch.randn(1, 1, *([8] * dims))
    assert stages[0](x).shape[2:] == (8,) * dims
    assert stages[2](stages[1](x)).shape[2:] == (2,) * dims


def test_registered_model_overrides_win_over_size_table() -> None:
    import zoo

    model = zoo.create_model("mk_unet_tiny", spatial_dims=3, in_channels=2, num_classes=3, channels=(4, 8))
    assert (model.spatial_dims, model.in_channels, model.num_classes) == (3, 2, 3)
    assert model.encoder.feature_channels == [4, 8]
    assert zoo.create_model("mk_unet_tiny").encoder.feature_channels == [8, 16, 32, 48, 80]
