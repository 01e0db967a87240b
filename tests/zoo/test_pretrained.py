"""Shipping weights: manifest schema, export tool, pretrained names, `zoo predict --model <pretrained>`, weights
over HTTP (loopback), and the generated MODEL_ZOO page. Every weight here is a tiny random model in tmp_path."""
from __future__ import annotations

import copy
import functools
import os
import http.server
import json
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

import zoo
import zoo.registry as registry
from zoo.data.normalize import normalize
from zoo.inference import predict_logits
from zoo.predict import Predictor, predict_main
from zoo.weights import WEIGHTS_DIR, sha256_of
from zoo.weights_manifest import (ManifestError, load_manifest, manifest_paths, register_pretrained,
                                  validate_manifest)

ROOT = Path(__file__).resolve().parents[2]
NAME = "unet_tiny_toy"
NORM = {"kind": "mean_std", "mean": [100.0], "std": [50.0]}
METRICS = {"dice": {"value": 0.5, "command": "zoo eval --pred p --gt g --num-classes 3"},
           "miou": {"value": 0.4, "command": "zoo eval --pred p --gt g --num-classes 3"},
           "hd95": {"value": 7.25, "command": "zoo eval --pred p --gt g --num-classes 3"}}
THROUGHPUT = {"value": 12.5, "unit": "images/s", "device": "CPU (test)", "batch_size": 1, "input_size": [32, 32],
              "command": "python tools/bench_models.py unet_tiny"}


@pytest.fixture
def isolated_registry(monkeypatch):
    """Pretrained names registered in a test disappear after it."""
    zoo.list_models()  # built-in models and zoo/weights registered first, into the real registry
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))


def _lightning_ckpt(path: Path, seed: int = 0) -> torch.nn.Module:
    """A checkpoint as `zoo fit` saves it: SegmentationModule's state_dict and hyper_parameters (random weights)."""
    from zoo.lightning.segmentation import SegmentationModule

    torch.manual_seed(seed)
    info = dict(num_classes=3, in_channels=1, spatial_dims=2, patch_size=[32, 32], class_names=["bg", "a", "b"],
                normalization=NORM)
    module = SegmentationModule("unet_tiny", data_info=info, sw_overlap=0.25)
    torch.save({"epoch": 1, "state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}, path)
    return module.model.eval()


def _export_args(tmp_path: Path, metrics=METRICS, out: Path | None = None) -> list[str]:
    (tmp_path / "metrics.json").write_text(json.dumps(metrics))
    (tmp_path / "tp.json").write_text(json.dumps(THROUGHPUT))
    (tmp_path / "toy.yaml").write_text("model: {}\n")
    return [str(tmp_path / "run.ckpt"), "--dataset", "toy", "--split", "val (4 cases)", "--licence", "CC0 (test)",
            "--metrics", str(tmp_path / "metrics.json"), "--throughput", str(tmp_path / "tp.json"),
            "--config", str(tmp_path / "toy.yaml"), "--time-hours", "0.01", "--gpu", "none (test)",
            "--out-dir", str(out or tmp_path / "weights")]


@pytest.fixture
def exported(tmp_path, isolated_registry, load_tool):
    """A tiny random model exported to tmp_path/weights and registered as `unet_tiny_toy`."""
    model = _lightning_ckpt(tmp_path / "run.ckpt")
    assert load_tool("export_weights").main(_export_args(tmp_path)) == 0
    weights = tmp_path / "weights"
    assert register_pretrained(weights) == [NAME]
    return weights, model


def test_export_writes_fp16_safetensors_and_a_valid_manifest(exported):
    weights, model = exported
    assert sorted(p.name for p in weights.iterdir()) == [f"{NAME}.json", f"{NAME}.safetensors"]
    m = load_manifest(weights / f"{NAME}.json", check_file=True)
    assert m["model"] == "unet_tiny" and m["data_info"]["normalization"] == NORM and m["sw_overlap"] == 0.25
    assert m["sha256"] == sha256_of(weights / m["file"]) and m["bytes"] == (weights / m["file"]).stat().st_size
    state = load_file(str(weights / m["file"]))
    float_keys = [k for k, v in model.state_dict().items() if v.is_floating_point()]
    assert float_keys and all(state[k].dtype == torch.float16 for k in float_keys)
    # the pretrained name builds the architecture with the manifest's overrides and loads the fp16 weights
    shipped = [path.stem for path in manifest_paths(WEIGHTS_DIR)]
    assert zoo.list_models(pretrained=True) == sorted([*shipped, NAME])
    assert NAME not in zoo.list_models(pretrained=False)
    loaded = zoo.create_model(NAME, pretrained=True).eval()
    assert loaded.num_classes == 3 and zoo.get_model_entry(NAME).default_cfg["base_model"] == "unet_tiny"
    for k, v in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[k], v.half().to(v.dtype), rtol=0, atol=0, msg=k)
    x = torch.randn(1, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), atol=2e-2, rtol=2e-2)


def test_zoo_models_lists_pretrained_names(exported, capsys):
    from zoo.models.listing import models_main

    assert models_main(["--pretrained", "--no-flops"]) == 0
    table = capsys.readouterr().out
    assert NAME in table and "unet_small" not in table


def test_pretrained_weights_are_verified(exported):
    weights, _ = exported
    file = weights / f"{NAME}.safetensors"
    data = bytearray(file.read_bytes())
    data[-1] ^= 0xFF
    file.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="sha256 mismatch"):
        zoo.create_model(NAME, pretrained=True)
    file.unlink()
    with pytest.raises(FileNotFoundError, match="names weights file .* which is missing"):
        zoo.create_model(NAME, pretrained=True)
    with pytest.raises(ManifestError, match="weights file .* is missing"):
        load_manifest(weights / f"{NAME}.json", check_file=True)
    with pytest.raises(FileNotFoundError, match=rf"no pretrained weights for model 'unet_tiny'.*'{NAME}'"):
        zoo.create_model("unet_tiny", pretrained=True)


def test_predict_with_a_pretrained_name_uses_the_manifest(exported, tmp_path):
    rng = np.random.default_rng(0)
    inputs = tmp_path / "in"
    inputs.mkdir()
    raws = {"fits": rng.integers(0, 256, (32, 32), dtype=np.uint8), "big": rng.integers(0, 256, (48, 72), dtype=np.uint8)}
    for stem, arr in raws.items():
        Image.fromarray(arr).save(inputs / f"{stem}.png")
    out = tmp_path / "out"
    assert predict_main(["--model", NAME, str(inputs), "--output", str(out), "--device", "cpu", "--quiet"]) == 0
    predictor = Predictor.from_registry(NAME, device="cpu")
    assert predictor.normalization == NORM and predictor.roi_size == [32, 32] and predictor.overlap == 0.25
    assert predictor.class_names == ["bg", "a", "b"]
    model = zoo.create_model(NAME, pretrained=True).eval()
    for stem, arr in raws.items():
        x = torch.as_tensor(normalize(arr[None].astype(np.float32), NORM))[None]
        want = predict_logits(model, x, [32, 32], 0.25)[0].argmax(0).numpy()
        np.testing.assert_array_equal(np.asarray(Image.open(out / f"{stem}.png")), want)
    for argv in ([str(inputs), "--input", str(inputs)], []):  # the input twice, or not at all
        with pytest.raises(SystemExit):
            predict_main(["--model", NAME, *argv, "--output", str(out)])


def test_export_refuses_and_leaves_nothing_behind(tmp_path, monkeypatch, isolated_registry, load_tool):
    export = load_tool("export_weights")
    _lightning_ckpt(tmp_path / "run.ckpt")
    out = tmp_path / "weights"
    kw = dict(dataset={"name": "toy", "split": "val", "licence": "CC0"}, metrics=METRICS, throughput=THROUGHPUT,
              training={"config": "toy.yaml", "time_hours": 0.01, "gpu": "none"})
    with pytest.raises(ValueError, match=r"take 0\.\d MiB, more than the 0 MiB"):
        export.export_weights(tmp_path / "run.ckpt", out, max_bytes=1000, **kw)
    bad = copy.deepcopy(METRICS)
    del bad["miou"]
    with pytest.raises(ManifestError, match=r"metrics lacks \['miou'\]"):
        export.export_weights(tmp_path / "run.ckpt", out, **{**kw, "metrics": bad})
    assert export.main(_export_args(tmp_path, metrics=bad, out=out)) == 1
    # a failure between the two renames removes the weights already renamed and every temporary file
    real_replace = export.os.replace

    def flaky_replace(src, dst):
        if ".tmp-" in str(src) and str(dst).endswith(".json"):
            raise OSError("disk full")
        real_replace(src, dst)

    monkeypatch.setattr(export.os, "replace", flaky_replace)
    with pytest.raises(OSError, match="disk full"):
        export.export_weights(tmp_path / "run.ckpt", out, **kw)
    assert not out.exists() or list(out.iterdir()) == []
    monkeypatch.setattr(export.os, "replace", real_replace)
    args = _export_args(tmp_path, out=out)
    assert export.main(args) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(FileExistsError, match="--overwrite"):
        export.export_weights(tmp_path / "run.ckpt", out, **kw)
    # an overwrite that fails half-way restores the previous export exactly
    _lightning_ckpt(tmp_path / "run.ckpt", seed=1)
    monkeypatch.setattr(export.os, "replace", flaky_replace)
    with pytest.raises(OSError, match="disk full"):
        export.export_weights(tmp_path / "run.ckpt", out, overwrite=True, **kw)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    monkeypatch.setattr(export.os, "replace", real_replace)
    assert export.main([*args, "--overwrite"]) == 0
    after = load_manifest(out / f"{NAME}.json", check_file=True)
    assert after["sha256"] != json.loads(before[f"{NAME}.json"])["sha256"]  # the seed-1 weights replaced them
    with pytest.raises(ValueError, match="non-finite"):
        export.to_fp16({"w": torch.tensor([1.0, float("nan")])})


def test_export_keeps_tensors_beyond_fp16_in_fp32(tmp_path, isolated_registry, load_tool):
    """A tensor whose values overflow fp16 (as a BatchNorm running_var can) ships in fp32, named in the manifest;
    everything else stays fp16 and the pretrained model loads the exact values."""
    export = load_tool("export_weights")
    state, kept = export.to_fp16({"w": torch.full((4,), 1e6), "b": torch.ones(2), "n": torch.tensor([3])})
    assert kept == ["w"] and state["w"].dtype == torch.float32 and state["b"].dtype == torch.float16
    assert state["n"].dtype == torch.int64
    _lightning_ckpt(tmp_path / "run.ckpt")
    ckpt = torch.load(tmp_path / "run.ckpt", weights_only=True)
    key = next(k for k, v in ckpt["state_dict"].items() if k.startswith("model.") and k.endswith("bias"))
    ckpt["state_dict"][key] = torch.full_like(ckpt["state_dict"][key], 2.5e5)
    torch.save(ckpt, tmp_path / "run.ckpt")
    assert export.main(_export_args(tmp_path)) == 0
    manifest = load_manifest(tmp_path / "weights" / f"{NAME}.json", check_file=True)
    name = key[len("model."):]
    assert manifest["float32_tensors"] == [name] and manifest["dtype"] == "float16"
    tensors = load_file(tmp_path / "weights" / f"{NAME}.safetensors")
    assert tensors[name].dtype == torch.float32 and torch.all(tensors[name] == 2.5e5)
    assert {v.dtype for k, v in tensors.items() if k != name} == {torch.float16}
    register_pretrained(tmp_path / "weights")
    model = zoo.create_model(NAME, pretrained=True)
    assert torch.all(model.state_dict()[name] == 2.5e5)
    bad = dict(manifest, float32_tensors="w")
    with pytest.raises(ManifestError, match="float32_tensors"):
        validate_manifest(bad)


def _valid_manifest() -> dict:
    return {"schema_version": 1, "name": NAME, "model": "unet_tiny", "model_kwargs": {"num_classes": 3},
            "dataset": {"name": "toy", "split": "val", "licence": "CC0"},
            "data_info": {"num_classes": 3, "in_channels": 1, "spatial_dims": 2, "patch_size": [32, 32],
                          "normalization": NORM},
            "metrics": copy.deepcopy(METRICS), "training": {"config": "c.yaml", "time_hours": 1.0, "gpu": "H100"},
            "throughput": dict(THROUGHPUT), "file": f"{NAME}.safetensors", "sha256": "a" * 64, "bytes": 10,
            "dtype": "float16"}


def test_validator_accepts_a_family_prefix_name():
    m = _valid_manifest()
    m["name"], m["file"] = "unet_toy", "unet_toy.safetensors"  # unet_tiny shipped as unet_<dataset>
    validate_manifest(m, "x.json")


@pytest.mark.parametrize("path, value, message", [
    (("schema_version",), 2, "schema_version must be 1, got 2"),
    (("name",), "unet_tiny_other", "name must be '<model or its family prefix>_<dataset.name>', e.g. 'unet_tiny_toy'"),
    (("name",), "attention_toy", "name must be '<model or its family prefix>_<dataset.name>'"),
    (("dataset", "name"), "to_y", "dataset.name must be lower-case letters and digits only"),
    (("dataset", "licence"), "", "dataset.licence must be a non-empty string"),
    (("model_kwargs", "num_classes"), 4, "model_kwargs.num_classes=4 contradicts data_info.num_classes=3"),
    (("data_info", "patch_size"), [32], "data_info.patch_size must be a list of 2 positive integers"),
    (("data_info", "normalization"), {"kind": "minmax"}, "data_info.normalization: normalization kind must be"),
    (("metrics", "dice", "value"), 1.5, "metrics.dice.value must be a number in [0, 1], got 1.5"),
    (("metrics", "hd95", "value"), -1.0, "metrics.hd95.value must be a non-negative number"),
    (("metrics", "miou", "command"), " ", "metrics.miou.command must be a non-empty string"),
    (("training", "time_hours"), 0, "training.time_hours must be a positive number"),
    (("throughput", "unit"), "it/s", "throughput.unit must be one of"),
    (("throughput", "input_size"), [32, 32, 32], "throughput.input_size must be a list of 2 positive integers"),
    (("file",), "other.safetensors", "file must be 'unet_tiny_toy.safetensors'"),
    (("sha256",), "A" * 64, "sha256 must be 64 lower-case hex digits"),
    (("bytes",), 26 * 2**20, "bytes must be a positive integer <= 26214400"),
    (("dtype",), "float64", "dtype must be one of"),
])
def test_validator_names_the_bad_field(path, value, message):
    m = _valid_manifest()
    validate_manifest(m, "x.json")  # the base manifest is valid
    target = m
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(ManifestError, match="^x.json: " + message.replace("[", r"\[").replace("(", r"\(")):
        validate_manifest(m, "x.json")


def test_registration_errors(tmp_path, isolated_registry):
    m = _valid_manifest()
    (tmp_path / f"{NAME}.json").write_text(json.dumps({**m, "name": "unet_tiny_other"}))
    with pytest.raises(ManifestError, match="name must be"):
        register_pretrained(tmp_path)
    m2 = {**m, "name": "unet_tiny", "model": "unet", "dataset": {**m["dataset"], "name": "tiny"},
          "file": "unet_tiny.safetensors"}
    (tmp_path / f"{NAME}.json").unlink()
    (tmp_path / "unet_tiny.json").write_text(json.dumps(m2))
    with pytest.raises(ManifestError, match="'unet_tiny' is already registered"):
        register_pretrained(tmp_path)
    (tmp_path / "unet_tiny.json").unlink()
    (tmp_path / "nomodel_toy.json").write_text(json.dumps({**m, "name": "nomodel_toy", "model": "nomodel",
                                                          "file": "nomodel_toy.safetensors"}))
    with pytest.raises(KeyError, match="unknown model 'nomodel'"):
        register_pretrained(tmp_path)
    (tmp_path / "nomodel_toy.json").write_text("{not json")
    with pytest.raises(ManifestError, match="cannot read the manifest as JSON"):
        register_pretrained(tmp_path)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest's output clean
        pass


def test_pretrained_from_url_cached_and_verified(tmp_path, monkeypatch):
    from safetensors.torch import save_file

    src = zoo.create_model("unet_tiny", num_classes=3)
    served = tmp_path / "served"
    served.mkdir()
    save_file({k: v.contiguous() for k, v in src.state_dict().items()}, str(served / "w.safetensors"))
    good = sha256_of(served / "w.safetensors")
    monkeypatch.setenv("SEGZOO_CACHE", str(tmp_path / "cache"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=served))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        with pytest.raises(ValueError, match="checksum mismatch .* sha256 expected 0{64}, got " + good):
            zoo.create_model("unet_tiny", num_classes=3, pretrained=f"{base}/w.safetensors?v=bad#sha256={'0' * 64}")
        assert [p for p in (tmp_path / "cache").rglob("*") if p.is_file()] == []  # nothing half-downloaded kept
        with pytest.raises(ConnectionError, match="HTTP 404"):
            zoo.create_model("unet_tiny", num_classes=3, pretrained=f"{base}/missing.safetensors")
        url = f"{base}/w.safetensors#sha256={good}"
        a = zoo.create_model("unet_tiny", num_classes=3, pretrained=url)
    finally:
        server.shutdown()
        server.server_close()
    b = zoo.create_model("unet_tiny", num_classes=3, pretrained=url)  # server gone: served from the cache
    for k, v in src.state_dict().items():
        torch.testing.assert_close(a.state_dict()[k], v)
        torch.testing.assert_close(b.state_dict()[k], v)


def test_model_zoo_page(exported, tmp_path, load_tool):
    make = load_tool("make_model_zoo")
    weights, model = exported
    page = make.render(weights)
    params = sum(p.numel() for p in model.parameters())
    row = next(line for line in page.splitlines() if line.startswith(f"| `{NAME}`"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[:5] == [f"`{NAME}`", "`unet_tiny`", "toy", "val (4 cases)", f"{params / 1e6:.2f}"]
    assert float(cells[5]) > 0 and cells[6] == "32x32"
    assert cells[7:12] == ["0.5000", "-", "0.4000", "-", "7.25"] and cells[14] == "CC0 (test)"
    assert METRICS["dice"]["command"] in page and THROUGHPUT["command"] in page
    out = tmp_path / "MODEL_ZOO.md"
    assert make.main(["--weights-dir", str(weights), "--output", str(out)]) == 0 and out.read_text() == page
    assert make.main(["--weights-dir", str(tmp_path / "none"), "--output", str(out), "--check"]) == 1
    empty = make.render(tmp_path / "none")
    assert "No pretrained weights are shipped yet" in empty and "| name" not in empty
    # the committed page is the generator's output for the shipped manifests
    assert make.main(["--check"]) == 0


def test_model_zoo_page_lists_tta_metrics_and_their_command(exported, load_tool):
    weights, _ = exported
    path = weights / f"{NAME}.json"
    manifest = json.loads(path.read_text())
    command = "zoo predict --model unet_tiny_toy in --output p --tta && zoo eval --pred p --gt g --num-classes 3"
    manifest["metrics_tta"] = {"dice": {"value": 0.55, "command": command}, "miou": {"value": 0.45, "command": command}}
    path.write_text(json.dumps(manifest))
    page = load_tool("make_model_zoo").render(weights)
    tta = page.split("## With test-time augmentation")[1].split("## How each")[0]
    row = next(line for line in tta.splitlines() if line.startswith(f"| `{NAME}`"))
    assert [c.strip() for c in row.strip("|").split("|")] == [f"`{NAME}`", "toy", "0.5500", "-", "0.4500", "-", "-"]
    assert f"dice 0.55, miou 0.45: `{command}`" in page
    del manifest["metrics_tta"]["miou"]
    with pytest.raises(ManifestError, match="metrics_tta lacks"):
        validate_manifest(manifest)
    manifest["metrics_tta"]["miou"] = {"value": 1.5, "command": command}
    with pytest.raises(ManifestError, match=r"metrics_tta\.miou\.value"):
        validate_manifest(manifest)


@pytest.mark.parametrize("path", manifest_paths(WEIGHTS_DIR), ids=lambda p: p.stem)
def test_shipped_weights_load_and_match_their_sha256(path):
    m = load_manifest(path, check_file=True)
    assert m["name"] in zoo.list_models(pretrained=True)
    model = zoo.create_model(m["name"], pretrained=True)
    assert getattr(model, "num_classes", m["data_info"]["num_classes"]) == m["data_info"]["num_classes"]


def test_register_pretrained_first_thing_in_a_fresh_process():
    """register_pretrained(zoo/weights) before anything else touched the registry (as make_model_zoo does) must
    not collide with the registry's own lazy registration of the same manifests."""
    code = ("from zoo.weights import WEIGHTS_DIR; from zoo.weights_manifest import register_pretrained, "
            "manifest_paths; names = register_pretrained(WEIGHTS_DIR); "
            "assert len(names) == len(manifest_paths(WEIGHTS_DIR)), names; print(len(names))")
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(root)})
    assert out.returncode == 0, out.stderr[-2000:]
