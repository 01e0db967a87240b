"""Family-specific checks for the attention families (shapes/grads/compile/params are in test_models.py):
attention gates really gate, NA wiring and DiNAT's dilation schedule, the NA minimum input size, encoder ->
classifier weight transfer, and the axial families' gates and cross attention."""
from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

import backbones.nat as nat_mod
import zoo
from backbones.attention_unet import AttentionUNet, GatedConcatStage
from backbones.nat import NAUNet, NeighborhoodAttention, dinat_dilation
from zoo.encoders import load_encoder_weights
from zoo.models.nat import dinat_tiny, nat_tiny
from zoo.models.van import van_tiny


def _attention_unet(dims: int) -> AttentionUNet:
    torch.manual_seed(0)  # train mode: batch statistics (an untrained eval-mode BN leaves the maps near zero)
    return AttentionUNet(dims, 2, 3, channels=(4, 8, 16), strides=(1, 2, 2)).train()


@pytest.mark.parametrize("dims", [2, 3])
def test_attention_gates_gate_the_skips(dims):
    net = _attention_unet(dims)
    x = torch.randn(2, 2, *[12] * dims)
    seen = []
    stages = [m for m in net.modules() if isinstance(m, GatedConcatStage)]
    assert len(stages) == 2  # one gate per skip
    hooks = [s.gate.register_forward_hook(lambda m, i, o: seen.append((i[0].shape, i[1].shape, o[1]))) for s in stages]
    with torch.no_grad():
        gated = net(x)
    for h in hooks:
        h.remove()
    for skip_shape, g_shape, alpha in seen:  # g: the upsampled coarser decoder map, at the skip's size
        assert g_shape[2:] == skip_shape[2:] and alpha.shape == (2, 1, *skip_shape[2:])
        assert alpha.min() > 0 and alpha.max() < 1 and alpha.std() > 0
    # A gate whose psi bias saturates the sigmoid (alpha = 1) is an identity gate: the plain concat U-Net.
    for s in stages:
        s.gate.psi.bias.data.fill_(50.0)
    with torch.no_grad():
        identity = net(x)
        manual = net.decoder.head(net.decoder.final(_ungated_decode(net, x)))
    torch.testing.assert_close(identity, manual)
    assert (gated - identity).abs().max() > 1e-3


def _ungated_decode(net: AttentionUNet, x: torch.Tensor) -> torch.Tensor:
    feats = net.encoder.forward_features(x)
    y = feats[-1]
    for j, (up, stage) in enumerate(zip(net.decoder.ups, net.decoder.stages)):
        u = up(y)
        y = stage.conv(torch.cat([u, feats[len(feats) - 2 - j]], dim=1))
    return y


def test_neighborhood_attention_with_full_window_is_dense_attention():
    torch.manual_seed(0)
    attn = NeighborhoodAttention(2, 16, 2, kernel_size=5)
    x = torch.randn(2, 5, 5, 16)
    q, k, v = attn.qkv(x).reshape(2, 25, 3, 2, 8).permute(2, 0, 3, 1, 4)
    dense = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(2, 5, 5, 16)
    torch.testing.assert_close(attn(x), attn.proj(dense), rtol=1e-5, atol=1e-5)


def test_dinat_dilation_schedule():
    # DiNAT at 224^2 with kernel 7: stage sizes 56, 28, 14, 7 -> dilations 8, 4, 2, 1.
    assert [dinat_dilation((s, s), (7, 7)) for s in (56, 28, 14, 7)] == [(8, 8), (4, 4), (2, 2), (1, 1)]
    assert dinat_dilation((20, 9, 7), (7, 3, 7)) == (2, 3, 1)
    for s, k in [(13, 3), (64, 7), (7, 7)]:
        d = dinat_dilation((s,), (k,))[0]
        assert d * k <= s < (d + 1) * k


def test_dinat_alternates_plain_and_dilated_layers_at_run_time(monkeypatch):
    calls = []
    real = nat_mod.neighborhood_attention

    def spy(q, k, v, ndim, kernel_size, dilation=1, **kw):
        calls.append((tuple(q.shape[1:1 + ndim]), kernel_size, tuple(dilation)))
        return real(q, k, v, ndim, kernel_size, dilation, **kw)

    monkeypatch.setattr(nat_mod, "neighborhood_attention", spy)
    torch.manual_seed(0)
    net = NAUNet(2, 1, 2, embed_dim=8, depths=(2, 2, 2, 2), num_heads=(1, 1, 2, 2), kernel_sizes=(3, 3, 3, 1),
                 dilated=True).eval()
    with torch.no_grad():
        net(torch.randn(1, 1, 64, 96))
    # stage sizes 16x24, 8x12, 4x6, 2x3; layers: plain, dilated (L // k per axis)
    assert calls == [((16, 24), (3, 3), (1, 1)), ((16, 24), (3, 3), (5, 8)),
                     ((8, 12), (3, 3), (1, 1)), ((8, 12), (3, 3), (2, 4)),
                     ((4, 6), (3, 3), (1, 1)), ((4, 6), (3, 3), (1, 2)),
                     ((2, 3), (1, 1), (1, 1)), ((2, 3), (1, 1), (2, 3))]
    calls.clear()
    plain = NAUNet(2, 1, 2, embed_dim=8, depths=(2, 2, 2, 2), num_heads=(1, 1, 2, 2), kernel_sizes=(3, 3, 3, 1))
    plain.load_state_dict(net.state_dict())  # same weights, NAT (no dilation)
    x = torch.randn(1, 1, 64, 96)
    with torch.no_grad():
        out_plain = plain.eval()(x)
        assert all(c[2] == (1, 1) for c in calls)
        assert (net(x) - out_plain).abs().max() > 1e-4


@pytest.mark.parametrize("name,dims,ok,too_small", [
    ("nat_unet_tiny", 2, (64, 96), (32, 96)),
    ("dinat_unet_tiny", 3, (32, 32, 64), None),
    ("nat_unet_small", 2, None, (192, 224)),
    ("dinat_unet_small", 3, None, (64, 96, 96)),
])
def test_na_minimum_input_size(name, dims, ok, too_small):
    model = zoo.create_model(name, spatial_dims=dims).eval()
    expected = {("tiny", 2): 64, ("tiny", 3): 32, ("small", 2): 224, ("small", 3): 96}[(name.split("_")[-1], dims)]
    assert model.min_input_size == model.encoder.min_input_size == expected
    if ok is not None:
        with torch.no_grad():
            assert model(torch.randn(1, 1, *ok)).shape == (1, 2, *ok)
    if too_small is not None:
        with pytest.raises(ValueError, match=rf"too small .* must be >= {expected} \(NA kernel_sizes"):
            model(torch.randn(1, 1, *too_small))


@pytest.mark.parametrize("make,seg_name,size", [(nat_tiny, "nat_unet_tiny", 64), (dinat_tiny, "dinat_unet_tiny", 64),
                                                (van_tiny, "lka_unet_tiny", 64)])
def test_classifier_weights_load_into_segmenter(make, seg_name, size):
    torch.manual_seed(0)
    clf = make(num_classes=5).eval()
    x = torch.randn(2, 3, size, size)
    assert clf(x).shape == (2, 5)
    for p in clf.parameters():  # make sure nothing matches by chance
        p.data.normal_(0, 0.05)
    seg = zoo.create_model(seg_name, in_channels=3, num_classes=4).eval()
    loaded = load_encoder_weights(seg, clf.state_dict())
    assert loaded == sorted(seg.encoder.state_dict())
    with torch.no_grad():
        for a, b in zip(seg.encoder.forward_features(x), clf.forward_features(x)):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
        assert seg(x).shape == (2, 4, size, size)
    with pytest.raises(ValueError, match="shape mismatches"):
        load_encoder_weights(zoo.create_model(seg_name, in_channels=1), clf.state_dict())


@pytest.mark.parametrize("name", ["nat_unet_tiny", "lka_unet_tiny", "attention_unet_tiny", "gated_axial_unet_tiny",
                                  "mca_unet_tiny"])
def test_encoder_contract(name):
    model = zoo.create_model(name, spatial_dims=2, in_channels=1).eval()
    enc = model.encoder
    x = torch.randn(1, 1, 64, 96)
    with torch.no_grad():
        feats = enc.forward_features(x)
    assert [f.shape[1] for f in feats] == enc.feature_channels
    assert [(64 // s, 96 // s) for s in enc.feature_strides] == [tuple(f.shape[2:]) for f in feats]


def test_gated_axial_unet_gates_only_in_the_deep_stages():
    from ops.axial import AxialAttention

    torch.manual_seed(0)
    model = zoo.create_model("gated_axial_unet_tiny", spatial_dims=2)
    per_stage = [[m for m in stage.modules() if isinstance(m, AxialAttention)] for stage in model.encoder.stages]
    assert [len(a) for a in per_stage] == [0, 0, 1, 1]
    assert all(a.gated and a.rel_pos and isinstance(a.gates, torch.nn.Parameter) for s in per_stage for a in s)
    x = torch.randn(2, 1, 32, 48)
    model(x).square().mean().backward()
    for attn in per_stage[2] + per_stage[3]:
        assert attn.gates.grad is not None and attn.gates.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="max_len"):  # rel-pos tables cover max_input_size / stride
        zoo.create_model("gated_axial_unet_tiny", max_input_size=64)(torch.randn(1, 1, 128, 64))


def _sdpa_along(q, k, v, axis):
    """Reference attention along spatial `axis` of [B, H, W, heads, d] tensors."""
    move = lambda t: t.movedim(axis + 1, 3)  # noqa: E731  [B, other, heads, L, d]
    return F.scaled_dot_product_attention(move(q), move(k), move(v)).movedim(3, axis + 1)


def test_cross_axis_attention_matches_composition():
    from backbones.axial_unet import CrossAxisAttention

    torch.manual_seed(0)
    attn = CrossAxisAttention(2, 8, 2)
    bh, bw = torch.randn(2, 5, 6, 8), torch.randn(2, 5, 6, 8)
    split = lambda t, n: t.unflatten(-1, (n, 2, 4)).unbind(-3)  # noqa: E731
    own = [_sdpa_along(*split(attn.self_qkv[a](b), 3), a).flatten(-2) for a, b in enumerate((bh, bw))]
    cross = []
    for a in range(2):
        (q,) = split(attn.cross_q[a](own[1 - a]), 1)
        k, v = split(attn.cross_kv[a](own[a]), 2)
        cross.append(_sdpa_along(q, k, v, a).flatten(-2))
    torch.testing.assert_close(attn([bh, bw]), attn.proj(cross[0] + cross[1]), rtol=1e-5, atol=1e-5)
    # receptive field of one output position (h, w): column w of the H branch, row h of the W branch
    bh.requires_grad_(True), bw.requires_grad_(True)
    attn([bh, bw])[0, 2, 3].sum().backward()
    assert set(bh.grad[0].abs().sum(-1).nonzero()[:, 1].tolist()) == {3}
    assert set(bw.grad[0].abs().sum(-1).nonzero()[:, 0].tolist()) == {2}


def test_strip_convs_run_along_their_axis():
    from backbones.axial_unet import MCABlock

    block = MCABlock(3, 16, head_dim=8, strip_kernels=(3, 5))
    assert [[tuple(c.kernel_size) for c in s.convs] for s in block.strips] == [
        [(3, 1, 1), (5, 1, 1)], [(1, 3, 1), (1, 5, 1)], [(1, 1, 3), (1, 1, 5)]]
    with pytest.raises(ValueError, match="must be odd"):
        MCABlock(2, 16, head_dim=8, strip_kernels=(4,))
