"""Per-model test matrix (segmentation_models_pytorch style), parametrised over the registry.

Every registered (name, dims): pinned parameter count and output shapes (on the meta device, so base sizes are
cheap). The smallest model of every family, plus a few `timm:`/`monai:` names, on real tiny inputs: forward
shapes at several sizes (non-square, odd multiples of the stride), finite gradients for every parameter,
train/eval modes, state-dict round trip, deep supervision, torch.compile, torch.export (2-D; 3-D tracing is
covered by torch.compile), the input-size contract.
"""
from __future__ import annotations

import importlib.util
import inspect
import io

import pytest
import torch

import zoo
from zoo.registry import get_model_entry

IN_CHANNELS, NUM_CLASSES = 2, 3

# Extra builder arguments for external models so they stay tiny on CPU.
EXTERNAL: dict[str, dict] = {
    "timm:resnet18": {},
    "timm:convnext_atto": {},
    "monai:AttentionUnet": dict(channels=(8, 16, 32), strides=(2, 2)),
    "monai:UNETR": dict(img_size=32, feature_size=8, hidden_size=96, mlp_dim=192, num_heads=4),
    "monai:SwinUNETR": dict(feature_size=12, depths=(1, 1, 1, 1), num_heads=(1, 2, 2, 4)),
}
NEEDS = {"monai:SwinUNETR": "einops", "monai:UNETR": "einops"}  # MONAI imports einops lazily
UNUSED_OK = {"monai:UNETR": "norm_cross_attn"}  # MONAI's UNETR builds cross-attention norms it never uses

# Parameter counts at in_channels=1, num_classes=2, generated once from the code: a change here is an
# architecture change and must be deliberate.
PINNED_PARAMS: dict[tuple[str, int], int] = {
    ('mk_unet_base', 2): 1230482,
    ('mk_unet_base', 3): 2074750,
    ('mk_unet_small', 2): 326458,
    ('mk_unet_small', 3): 586790,
    ('mk_unet_tiny', 2): 91070,
    ('mk_unet_tiny', 3): 180874,
    ('resenc_unet_base', 2): 34600802,
    ('resenc_unet_base', 3): 102381986,
    ('resenc_unet_small', 2): 21177442,
    ('resenc_unet_small', 3): 62744226,
    ('resenc_unet_tiny', 2): 2178802,
    ('resenc_unet_tiny', 3): 6461458,
    ('sa_unet_base', 2): 1926340,
    ('sa_unet_base', 3): 5601616,
    ('sa_unet_small', 2): 482452,
    ('sa_unet_small', 3): 1401856,
    ('sa_unet_tiny', 2): 121084,
    ('sa_unet_tiny', 3): 351448,
    ('transunet_base', 2): 121533634,
    ('transunet_base', 3): 191922498,
    ('transunet_small', 2): 20640098,
    ('transunet_small', 3): 32774050,
    ('transunet_tiny', 2): 2734130,
    ('transunet_tiny', 3): 4399954,
    ('unet_base', 2): 10704738,
    ('unet_base', 3): 31189410,
    ('unet_small', 2): 5684578,
    ('unet_small', 3): 16543650,
    ('unet_tiny', 2): 482354,
    ('unet_tiny', 3): 1401170,
    ('vit_unetr_base', 2): 87733010,
    ('vit_unetr_base', 3): 93975602,
    ('vit_unetr_small', 2): 23233682,
    ('vit_unetr_small', 3): 27476402,
    ('vit_unetr_tiny', 2): 6909266,
    ('vit_unetr_tiny', 3): 10152050,
    # attention families (Attention U-Net, NA-UNet, LKA-UNet, gated-axial, cross-axis)
    ('attention_unet_base', 2): 7065462,
    ('attention_unet_base', 3): 20314550,
    ('attention_unet_small', 2): 1767870,
    ('attention_unet_small', 3): 5080286,
    ('attention_unet_tiny', 2): 439293,
    ('attention_unet_tiny', 3): 1261341,
    ('dinat_unet_base', 2): 30462338,
    ('dinat_unet_base', 3): 39199682,
    ('dinat_unet_small', 2): 22561154,
    ('dinat_unet_small', 3): 31298498,
    ('dinat_unet_tiny', 2): 1337634,
    ('dinat_unet_tiny', 3): 2305986,
    ('gated_axial_unet_base', 2): 6912402,
    ('gated_axial_unet_base', 3): 16225322,
    ('gated_axial_unet_small', 2): 1791618,
    ('gated_axial_unet_small', 3): 4189330,
    ('gated_axial_unet_tiny', 2): 428962,
    ('gated_axial_unet_tiny', 3): 1031562,
    ('lka_unet_base', 2): 17616962,
    ('lka_unet_base', 3): 30507714,
    ('lka_unet_small', 2): 4914850,
    ('lka_unet_small', 3): 8588514,
    ('lka_unet_tiny', 2): 491874,
    ('lka_unet_tiny', 3): 951714,
    ('mca_unet_base', 2): 16548194,
    ('mca_unet_base', 3): 29385634,
    ('mca_unet_small', 2): 4053346,
    ('mca_unet_small', 3): 7273378,
    ('mca_unet_tiny', 2): 665778,
    ('mca_unet_tiny', 3): 1348050,
    ('nat_unet_base', 2): 30462338,
    ('nat_unet_base', 3): 39199682,
    ('nat_unet_small', 2): 22561154,
    ('nat_unet_small', 3): 31298498,
    ('nat_unet_tiny', 2): 1337634,
    ('nat_unet_tiny', 3): 2305986,
}


def _cases(names: list[str]) -> list:
    return [pytest.param(n, d, id=f"{n}-{d}d") for n in names for d in get_model_entry(n).spatial_dims]


def _smallest_per_family() -> list[str]:
    """One model per registered family: the one named '*tiny*' if any, else the first by name."""
    by_family: dict[str, list[str]] = {}
    for name in zoo.list_models(pretrained=False):
        by_family.setdefault(get_model_entry(name).family, []).append(name)
    return sorted(next((n for n in names if "tiny" in n), names[0]) for names in by_family.values())


ALL = _cases(zoo.list_models(pretrained=False))  # architectures; shipped weights have their own tests
CHECKED = _cases(_smallest_per_family() + list(EXTERNAL))


def _build(name: str, dims: int, **kwargs) -> torch.nn.Module:
    if name in NEEDS and importlib.util.find_spec(NEEDS[name]) is None:
        pytest.skip(f"{name} needs {NEEDS[name]}")
    torch.manual_seed(0)
    return zoo.create_model(name, spatial_dims=dims, in_channels=IN_CHANNELS, num_classes=NUM_CLASSES,
                            **{**EXTERNAL.get(name, {}), **kwargs})


def _stride(model: torch.nn.Module, dims: int) -> tuple[int, ...]:
    d = model.divisor
    return (d,) * dims if isinstance(d, int) else tuple(d)


def _sizes(model: torch.nn.Module, dims: int) -> list[tuple[int, ...]]:
    """Non-square sizes with odd multiples of the stride; a fixed-size model only takes its own size."""
    if getattr(model, "input_size", None) is not None:
        return [model.input_size]
    s = _stride(model, dims)
    mults = [(2, 3), (3, 1)] if dims == 2 else [(2, 1, 1), (1, 3, 1)]  # >= 2 units at the deepest level
    # the m-th valid size per axis, counted from the model's minimum input size if it has one (NA: stage >= kernel)
    first = [max(si, getattr(model, "min_input_size", 0)) for si in s]
    return [tuple(f + (m - 1) * si for m, f, si in zip(mult, first, s)) for mult in mults]


def _input(model: torch.nn.Module, size: tuple[int, ...], batch: int = 2) -> torch.Tensor:
    torch.manual_seed(1)
    return torch.randn(batch, IN_CHANNELS, *size)


@pytest.mark.parametrize("name,dims", ALL)
def test_param_count_pinned(name: str, dims: int) -> None:
    with torch.device("meta"):
        model = zoo.create_model(name, spatial_dims=dims, in_channels=1, num_classes=2)
    count = sum(p.numel() for p in model.parameters())
    if (name, dims) not in PINNED_PARAMS:
        pytest.fail(f"no pinned parameter count for {(name, dims)}: add {(name, dims)!r}: {count} to PINNED_PARAMS")
    assert count == PINNED_PARAMS[(name, dims)]


@pytest.mark.parametrize("name,dims", ALL)
def test_output_shape_meta(name: str, dims: int) -> None:
    with torch.device("meta"):
        model = zoo.create_model(name, spatial_dims=dims, in_channels=IN_CHANNELS, num_classes=NUM_CLASSES)
    for size in _sizes(model, dims):
        out = model.eval()(torch.empty(2, IN_CHANNELS, *size, device="meta"))
        assert out.shape == (2, NUM_CLASSES, *size)


@pytest.mark.parametrize("name,dims", CHECKED)
def test_forward_shapes(name: str, dims: int) -> None:
    model = _build(name, dims).eval()
    with torch.no_grad():
        for size in _sizes(model, dims):
            out = model(_input(model, size))
            assert out.shape == (2, NUM_CLASSES, *size)
            assert torch.isfinite(out).all()


@pytest.mark.parametrize("name,dims", CHECKED)
def test_backward_finite_grads(name: str, dims: int) -> None:
    """Training-mode backward reaches every parameter with finite values; segzoo models with a deep-supervision
    option are built with it, so their auxiliary heads are covered and the outputs must go from fine to coarse."""
    model = _build(name, dims)
    deep = ":" not in name and "deep_supervision" in inspect.signature(type(model)).parameters
    if deep:
        model = _build(name, dims, deep_supervision=True)
    model.train()
    x = _input(model, _sizes(model, dims)[0])
    outs = model(x)
    if deep:
        assert isinstance(outs, list) and len(outs) >= 2
        for fine, coarse in zip(outs, outs[1:]):
            assert all(c < f for c, f in zip(coarse.shape[2:], fine.shape[2:]))
    else:
        outs = [outs]
    assert outs[0].shape == (2, NUM_CLASSES, *x.shape[2:])
    sum(o.float().pow(2).mean() for o in outs).backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None
               and not (name in UNUSED_OK and UNUSED_OK[name] in n)]
    assert not missing, f"parameters without gradient: {missing[:10]}"
    bad = [n for n, p in model.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
    assert not bad, f"non-finite gradients: {bad[:10]}"
    assert any(p.grad.abs().sum() > 0 for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize("name,dims", CHECKED)
def test_train_eval_modes_and_state_dict_round_trip(name: str, dims: int) -> None:
    model = _build(name, dims)
    x = _input(model, _sizes(model, dims)[0])
    model.train()
    assert all(m.training for m in model.modules())
    assert model(x).shape == (2, NUM_CLASSES, *x.shape[2:])
    model.eval()
    assert not any(m.training for m in model.modules())
    with torch.no_grad():
        a, b = model(x), model(x)
    torch.testing.assert_close(a, b, rtol=0, atol=0)  # eval mode is deterministic (no dropout/DropBlock)
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    torch.manual_seed(123)
    other = zoo.create_model(name, spatial_dims=dims, in_channels=IN_CHANNELS, num_classes=NUM_CLASSES,
                             **EXTERNAL.get(name, {})).eval()
    buf.seek(0)
    other.load_state_dict(torch.load(buf, weights_only=True))
    with torch.no_grad():
        torch.testing.assert_close(other(x), a, rtol=0, atol=0)


@pytest.mark.parametrize("name,dims", CHECKED)
def test_input_size_contract(name: str, dims: int) -> None:
    model = _build(name, dims).eval()
    size = _sizes(model, dims)[0]
    bad = (size[0] + 1, *size[1:])
    with pytest.raises(ValueError, match="nearest valid size|built for input size"):
        model(_input(model, bad))
    with pytest.raises(ValueError, match="channels"):
        model(torch.randn(1, IN_CHANNELS + 1, *size))
    if getattr(model, "input_size", None) is None:
        padded = _build(name, dims, pad_input=True).eval()
        with torch.no_grad():
            out = padded(_input(model, bad))
        assert out.shape == (2, NUM_CLASSES, *bad)


# External models: only the timm wrapper is compiled (MONAI's own graph is MONAI's business, and slow to trace).
@pytest.mark.parametrize("name,dims", [c for c in CHECKED if ":" not in c.values[0] or c.values[0] == "timm:resnet18"])
def test_torch_compile(name: str, dims: int) -> None:
    model = _build(name, dims).eval()
    x = _input(model, _sizes(model, dims)[0])
    torch._dynamo.reset()  # every family shares SegmentationModel.forward: avoid its recompile limit
    compiled = torch.compile(model, backend="aot_eager", fullgraph=":" not in name)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), model(x), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name,dims", [c for c in CHECKED if ":" not in c.values[0] and c.values[1] == 2])
def test_torch_export(name: str, dims: int) -> None:
    model = _build(name, dims).eval()
    x = _input(model, _sizes(model, dims)[0])
    exported = torch.export.export(model, (x,))
    with torch.no_grad():
        torch.testing.assert_close(exported.module()(x), model(x), rtol=1e-4, atol=1e-4)
