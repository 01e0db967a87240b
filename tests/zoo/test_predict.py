"""`zoo predict`: checkpoint/registry loading, 2-D and 3-D outputs, sliding window, predict -> eval, errors."""
from __future__ import annotations

import argparse

import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import zoo
from zoo.data.normalize import normalize
from zoo.evaluate import evaluate_folders
from zoo.inference import predict_logits
from zoo.metrics import case_metrics
from zoo.predict import Predictor, predict, predict_main

NUM_CLASSES = 3


def _save_ckpt(path, spatial_dims=2, in_channels=1, patch=(32, 32), seed=0):
    torch.manual_seed(seed)
    kwargs = dict(num_classes=NUM_CLASSES, in_channels=in_channels, spatial_dims=spatial_dims)
    model = zoo.create_model("unet_tiny", **kwargs)
    info = dict(kwargs, patch_size=list(patch), class_names=["bg", "a", "b"], normalization={"kind": "zscore"})
    torch.save({"state_dict": {"model." + k: v for k, v in model.state_dict().items()},
                "hyper_parameters": dict(model_name="unet_tiny", model_kwargs=kwargs, data_info=info)}, path)
    return model.eval()


@pytest.fixture(scope="module")
def ckpt2d(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "model.ckpt"
    return path, _save_ckpt(path)


@pytest.fixture
def images(tmp_path):
    rng = np.random.default_rng(1)
    d = tmp_path / "images"
    d.mkdir()
    Image.fromarray(rng.integers(0, 256, (32, 32), dtype=np.uint8)).save(d / "fits.png")  # == training patch
    Image.fromarray(rng.integers(0, 256, (21, 27), dtype=np.uint8)).save(d / "small.tif")  # padded to x8
    Image.fromarray(rng.integers(0, 256, (45, 70), dtype=np.uint8)).save(d / "large.jpg")  # sliding window
    return d


def test_predict_2d_files_match_direct_model(ckpt2d, images, tmp_path):
    path, model = ckpt2d
    out = tmp_path / "out"
    assert predict_main(["--ckpt", str(path), "--input", str(images), "--output", str(out), "--overlay",
                         "--quiet"]) == 0
    for stem in ("fits", "small", "large"):
        src = np.asarray(Image.open(next(images.glob(stem + ".*"))))
        lab = np.asarray(Image.open(out / f"{stem}.png"))
        assert lab.shape == src.shape and lab.dtype == np.uint8 and lab.max() < NUM_CLASSES
        ov = Image.open(out / "overlays" / f"{stem}.png")
        assert ov.mode == "RGB" and ov.size == (src.shape[1], src.shape[0])
    # an image of the training patch size runs whole: same as the model on the normalised image
    x = torch.as_tensor(normalize(np.asarray(Image.open(images / "fits.png"), np.float32)[None], {"kind": "zscore"}))
    with torch.no_grad():
        direct = model(x[None])[0].argmax(0).numpy()
    np.testing.assert_array_equal(np.asarray(Image.open(out / "fits.png")), direct)


def test_real_lightning_checkpoint_predicts_like_validation(tmp_path):
    """A checkpoint saved by Lightning from `SegmentationModule` loads (weights_only) and gives the logits its
    validation step computes, whole-image and sliding-window."""
    import lightning as L

    from zoo.lightning.segmentation import SegmentationModule

    torch.manual_seed(0)
    info = dict(num_classes=NUM_CLASSES, in_channels=1, spatial_dims=2, patch_size=[16, 16],
                class_names=["bg", "a", "b"], normalization={"kind": "zscore"})
    module = SegmentationModule("unet_tiny", data_info=info)
    batch = {"image": torch.randn(2, 1, 16, 16), "label": torch.randint(0, NUM_CLASSES, (2, 16, 16))}
    trainer = L.Trainer(max_steps=1, default_root_dir=tmp_path, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=0, accelerator="cpu")
    trainer.fit(module, torch.utils.data.DataLoader([{k: v[i] for k, v in batch.items()} for i in range(2)],
                                                    batch_size=2))
    trainer.save_checkpoint(tmp_path / "real.ckpt")
    predictor = Predictor.from_checkpoint(tmp_path / "real.ckpt", device="cpu")
    assert predictor.roi_size == [16, 16] and predictor.overlap == module.hparams["sw_overlap"]
    module.eval()
    for shape in ((16, 16), (40, 24)):  # fits the patch / tiled
        raw = np.random.default_rng(0).normal(5, 2, (1, *shape)).astype(np.float32)
        with torch.no_grad():
            val = module.predict_logits(torch.as_tensor(normalize(raw, info["normalization"]))[None])
        np.testing.assert_array_equal(predictor.predict_array(raw), val[0].argmax(0).numpy())


def test_sliding_window_equals_whole_image_for_pointwise_model():
    torch.manual_seed(0)
    head = nn.Conv2d(2, 4, 1)  # pointwise: every window sees the same logits, so blending must reproduce them
    x = torch.randn(1, 2, 37, 53)
    whole = predict_logits(head, x)
    tiled = predict_logits(head, x, roi_size=(16, 24), overlap=0.25, sw_batch_size=3)
    torch.testing.assert_close(tiled, whole, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="overlap must be in"):
        predict_logits(head, x, roi_size=(16, 24), overlap=1.0)
    with pytest.raises(ValueError, match="multiples of the model's size divisor"):
        predict_logits(zoo.create_model("unet_tiny"), torch.randn(1, 1, 40, 40), roi_size=(20, 20))



class _Counted(nn.Module):
    """A model that counts its forward passes."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net, self.calls = net, 0

    def forward(self, x):
        self.calls += 1
        return self.net(x)


def _flip_average(run, x, axes):
    """The mirroring TTA by hand: ``run`` on every flip of ``x`` along a subset of the spatial ``axes``."""
    import itertools

    subsets = [[2 + a for a in c] for k in range(len(axes) + 1) for c in itertools.combinations(axes, k)]
    return sum(run(x.flip(d)).flip(d) for d in subsets) / len(subsets)


def test_mirror_tta_keeps_the_logits_of_a_flip_equivariant_model():
    torch.manual_seed(0)
    pointwise = nn.Conv2d(2, 4, 1)
    symmetric = nn.Conv2d(2, 4, 3, padding=1)
    with torch.no_grad():  # a kernel equal to its own flips: flipping the input flips the logits
        w = symmetric.weight
        w.copy_(w + w.flip(-1))
        w.copy_(w + w.flip(-2))
    x = torch.randn(1, 2, 19, 26)
    for model, roi in ((pointwise, None), (pointwise, (8, 16)), (symmetric, None)):
        plain = predict_logits(model, x, roi, overlap=0.25)
        torch.testing.assert_close(predict_logits(model, x, roi, overlap=0.25, mirror_axes=(0, 1)), plain,
                                   atol=1e-5, rtol=1e-5)


def test_mirror_tta_averages_the_flipped_passes():
    torch.manual_seed(0)
    conv2, conv3 = _Counted(nn.Conv2d(2, 3, 3, padding=1)), _Counted(nn.Conv3d(1, 3, 3, padding=1))
    x2, x3 = torch.randn(2, 2, 13, 18), torch.randn(1, 1, 7, 9, 6)
    plain = predict_logits(conv2, x2)
    assert conv2.calls == 1  # no mirror_axes: one pass, as before
    cases = ((conv2, x2, (0, 1), None), (conv3, x3, (0, 2), None),  # 4 passes each (2 of 3 axes in 3-D)
             (conv2, x2, (1, 0), (8, 8)), (conv3, x3, (0, 1, 2), (4, 4, 4)))  # tiled by the sliding window
    for model, x, axes, roi in cases:
        model.calls = 0
        want = _flip_average(lambda v: predict_logits(model, v, roi, overlap=0.25, sw_batch_size=2), x, axes)
        calls, model.calls = model.calls, 0
        got = predict_logits(model, x, roi, overlap=0.25, sw_batch_size=2, mirror_axes=axes)
        assert model.calls == calls and (roi is not None or calls == 2 ** len(axes))
        assert got.dtype == torch.float32 and got.shape == want.shape
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    with torch.no_grad():
        by_model = _flip_average(conv2, x2, (0, 1))  # whole images: the bare model on each flip
    torch.testing.assert_close(predict_logits(conv2, x2, mirror_axes=(0, 1)), by_model, atol=1e-5, rtol=1e-5)
    assert (predict_logits(conv2, x2, mirror_axes=(0, 1)) - plain).abs().max() > 1e-2  # the flips do matter
    torch.testing.assert_close(predict_logits(conv2, x2, mirror_axes=np.arange(2)), by_model, atol=1e-5, rtol=1e-5)


def test_mirror_axes_errors():
    conv = nn.Conv2d(1, 2, 3, padding=1)
    x = torch.randn(1, 1, 8, 8)
    for bad in ((0, 0), (2,), (-1,), (0.5,), (True,)):
        with pytest.raises(ValueError, match=r"mirror_axes must be unique spatial axes in \[0, 2\) for 2-D images, "
                                             r"got \["):
            predict_logits(conv, x, mirror_axes=bad)
    with pytest.raises(ValueError, match="mirror_axes"):
        Predictor(conv, 2, 1, 2, device="cpu", mirror_axes=(0, 3)).predict_array(np.ones((1, 8, 8), np.float32))


def test_predict_cli_tta_matches_the_python_api(ckpt2d, images, tmp_path):
    from zoo.volume_io import read_prob_map

    path, _ = ckpt2d
    out = tmp_path / "cli"
    assert predict_main(["--ckpt", str(path), str(images), "--output", str(out), "--tta", "--save-probs",
                         "--quiet"]) == 0
    api = predict(images, tmp_path / "api", ckpt=path, save_probs=True, mirror_axes=(0, 1))
    plain = predict(images, tmp_path / "plain", ckpt=path, save_probs=True)
    for a, p in zip(api, plain):  # fits, small (padded) and large (sliding window)
        stem = a.stem
        np.testing.assert_array_equal(np.asarray(Image.open(out / a.name)), np.asarray(Image.open(a)))
        cli_probs = read_prob_map(out / "probs" / f"{stem}_prob.tif")
        np.testing.assert_array_equal(cli_probs, read_prob_map(tmp_path / "api" / "probs" / f"{stem}_prob.tif"))
        assert np.abs(cli_probs - read_prob_map(tmp_path / "plain" / "probs" / f"{stem}_prob.tif")).max() > 1e-4
    with pytest.raises(ValueError, match="tta .* or mirror_axes, not both"):
        predict(images, tmp_path / "both", ckpt=path, tta=True, mirror_axes=(0,))


def test_predict_cli_largest_component_post_processes_the_label_maps(ckpt2d, images, tmp_path):
    from zoo.postprocess import keep_largest_component
    from zoo.volume_io import read_prob_map

    path, _ = ckpt2d
    out, plain = tmp_path / "lcc", tmp_path / "plain"
    assert predict_main(["--ckpt", str(path), str(images), "--output", str(out), "--largest-component",
                         "--save-probs", "--quiet"]) == 0
    written = predict(images, plain, ckpt=path, save_probs=True)
    changed = 0
    for p in written:
        raw = np.asarray(Image.open(p)).astype(np.int64)
        got = np.asarray(Image.open(out / p.name)).astype(np.int64)
        np.testing.assert_array_equal(got, keep_largest_component(raw, NUM_CLASSES))
        changed += int((got != raw).sum())
        stem = p.stem
        np.testing.assert_array_equal(read_prob_map(out / "probs" / f"{stem}_prob.tif"),
                                      read_prob_map(plain / "probs" / f"{stem}_prob.tif"))
    assert changed > 0, "the random model's maps should have islands to remove"


def test_predict_3d_nifti_keeps_affine_and_header(tmp_path):
    ckpt = tmp_path / "m3.ckpt"
    _save_ckpt(ckpt, spatial_dims=3, patch=(16, 16, 16))
    d = tmp_path / "vols"
    d.mkdir()
    affine = np.array([[0.8, 0, 0, -10], [0, 0.8, 0, 5], [0, 0, 2.0, 3], [0, 0, 0, 1]])
    vol = nib.Nifti1Image(np.random.default_rng(0).normal(size=(20, 16, 11)).astype(np.float32), affine)
    vol.header["descrip"] = b"segzoo test"
    vol.header.set_qform(affine, code=1)
    nib.save(vol, str(d / "case.nii.gz"))
    out = predict(d, tmp_path / "out", ckpt=ckpt, overlap=0.25)
    assert [p.name for p in out] == ["case.nii.gz"]
    lab = nib.load(str(out[0]))
    assert lab.shape == (20, 16, 11) and lab.get_data_dtype() == np.uint8
    np.testing.assert_allclose(lab.affine, affine)
    assert lab.header["descrip"].tobytes().rstrip(b"\0") == b"segzoo test" and int(lab.header["qform_code"]) == 1
    assert np.asarray(lab.dataobj).max() < NUM_CLASSES


def test_nifti_regridding_round_trips_to_the_input_grid():
    """A pointwise model commutes with reorientation: flipping to RAS and back must give the direct labels."""
    torch.manual_seed(0)
    model = nn.Conv3d(1, NUM_CLASSES, 1)
    vol = np.random.default_rng(3).normal(size=(1, 9, 8, 7)).astype(np.float32)
    affine = np.array([[-1.5, 0, 0, 10], [0, 1, 0, -3], [0, 0, 2, 5], [0, 0, 0, 1]])  # LAS, anisotropic
    direct = Predictor(model, NUM_CLASSES, 1, 3, device="cpu").predict_array(vol)
    flipped = Predictor(model, NUM_CLASSES, 1, 3, device="cpu", orientation="RAS")
    np.testing.assert_array_equal(flipped.predict_array(vol, affine=affine), direct)
    # a ramp resampled finer or coarser and back: its linear logits keep (almost) every label
    ramp = np.broadcast_to(np.linspace(-3, 3, 9)[:, None, None], (9, 8, 7))[None].astype(np.float32)
    plain = Predictor(model, NUM_CLASSES, 1, 3, device="cpu").predict_array(ramp)
    assert len(np.unique(plain)) > 1
    for spacing in ([0.75, 0.75, 0.75], [3.0, 2.0, 4.0]):
        regrid = Predictor(model, NUM_CLASSES, 1, 3, device="cpu", orientation="RAS", spacing=spacing)
        labels = regrid.predict_array(ramp, affine=affine)
        assert labels.shape == plain.shape and (labels == plain).mean() > 0.95


def test_predict_then_eval_reproduces_in_memory_dice(ckpt2d, images, tmp_path):
    path, _ = ckpt2d
    rng = np.random.default_rng(2)
    gt = tmp_path / "gt"
    gt.mkdir()
    predictor = Predictor.from_checkpoint(path, device="cpu")
    expected = []
    for f in sorted(images.iterdir()):
        image = np.asarray(Image.open(f), np.float32)[None]
        mask = rng.integers(0, NUM_CLASSES, image.shape[1:]).astype(np.uint8)
        Image.fromarray(mask).save(gt / (f.stem + ".png"))
        expected.append(case_metrics(predictor.predict_array(image), mask, NUM_CLASSES, hd95=False)["dice"])
    predictor.predict_paths(sorted(images.iterdir()), tmp_path / "pred", progress=False)
    r = evaluate_folders(tmp_path / "pred", gt, NUM_CLASSES, hd95=False)
    np.testing.assert_allclose(r.per_case["dice"], np.stack(expected))


def test_registry_model_with_weights_file_matches_checkpoint(ckpt2d, images, tmp_path):
    from safetensors.torch import save_file

    path, model = ckpt2d
    weights = tmp_path / "w.safetensors"
    save_file(model.state_dict(), str(weights))
    a = predict(images / "small.tif", tmp_path / "a", ckpt=path)[0]
    b = predict(images / "small.tif", tmp_path / "b", model="unet_tiny", weights=weights, num_classes=NUM_CLASSES)[0]
    np.testing.assert_array_equal(np.asarray(Image.open(a)), np.asarray(Image.open(b)))
    # a Lightning checkpoint works as a weights file too
    assert predict_main(["--model", "unet_tiny", "--weights", str(path), "--num-classes", "3", "--input",
                         str(images / "small.tif"), "--output", str(tmp_path / "c"), "--quiet"]) == 0


def _err(argv, capsys) -> str:
    assert predict_main([*argv, "--quiet"]) == 1
    return capsys.readouterr().err


def test_predict_errors(ckpt2d, images, tmp_path, capsys):
    path, _ = ckpt2d
    out = ["--output", str(tmp_path / "o")]
    msg = _err(["--ckpt", str(tmp_path / "none.ckpt"), "--input", str(images), *out], capsys)
    assert "none.ckpt" in msg and "does not exist" in msg
    (tmp_path / "bad.ckpt").write_bytes(b"not a checkpoint")
    assert "weights_only" in _err(["--ckpt", str(tmp_path / "bad.ckpt"), "--input", str(images), *out], capsys)
    torch.save({"state_dict": {}}, tmp_path / "other.ckpt")
    assert "not a segzoo checkpoint" in _err(["--ckpt", str(tmp_path / "other.ckpt"), "--input", str(images), *out],
                                             capsys)
    # a checkpoint holding arbitrary Python objects is refused, never unpickled
    torch.save({"hyper_parameters": argparse.Namespace(model_name="unet_tiny"), "state_dict": {}},
               tmp_path / "pickled.ckpt")
    assert "weights_only" in _err(["--ckpt", str(tmp_path / "pickled.ckpt"), "--input", str(images), *out], capsys)
    msg = _err(["--ckpt", str(path), "--input", str(tmp_path / "missing"), *out], capsys)
    assert "missing" in msg and "does not exist" in msg
    rgb = tmp_path / "rgb"
    rgb.mkdir()
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(rgb / "x.png")
    msg = _err(["--ckpt", str(path), "--input", str(rgb), *out], capsys)
    assert "expects 1 input channel(s), got 3" in msg and "x.png" in msg
    (rgb / "x.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    assert "cannot read" in _err(["--ckpt", str(path), "--input", str(rgb / "x.png"), *out], capsys)
    vol = tmp_path / "v.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 8), np.float32), np.eye(4)), str(vol))
    assert "the model is 2-D but the input is 3-D" in _err(["--ckpt", str(path), "--input", str(vol), *out], capsys)
    with pytest.raises(SystemExit):
        predict_main(["--ckpt", str(path), "--weights", "w.pt", "--input", str(images), *out])
    assert "only go with --model" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        predict_main(["--input", str(images), *out])  # neither --ckpt nor --model


def test_predict_help(capsys):
    with pytest.raises(SystemExit) as e:
        predict_main(["--help"])
    assert e.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for phrase in ("--ckpt", "--model", "--weights", "--roi", "--overlap", "--sw-batch-size", "--device", "--amp",
                   "--overlay", "affine and header", "gaussian", "class indices", "--tta", "2^d passes",
                   "--largest-component"):
        assert phrase in text, phrase


def test_overlay_colours_only_foreground():
    from zoo.overlay import class_colors, overlay_rgb

    image = np.linspace(0, 255, 4 * 5, dtype=np.float32).reshape(1, 4, 5)
    labels = np.zeros((4, 5), np.int64)
    labels[1, 2], labels[3, 4] = 1, 13  # 13 > the 10 base colours: still a colour of its own
    out = overlay_rgb(image, labels, 14, alpha=1.0)
    assert out.shape == (4, 5, 3) and out.dtype == np.uint8
    cols = class_colors(14)
    assert len({tuple(c) for c in cols}) == 14
    assert (out[1, 2] == cols[1]).all() and (out[3, 4] == cols[13]).all()
    gray = out[labels == 0]
    assert (gray[:, 0] == gray[:, 1]).all() and gray[:, 0].max() > gray[:, 0].min()  # background: the image
    with pytest.raises(ValueError, match="does not match label shape"):
        overlay_rgb(image, labels[:3], 14)
