import pytest
import torch
from safetensors.torch import save_file

import zoo
from zoo.weights import load_pretrained, sha256_of


def _state(model):
    return {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}


def test_load_safetensors_and_weights_only_checkpoint(tmp_path):
    src = zoo.create_model("unet_tiny", num_classes=3)
    st = tmp_path / "w.safetensors"
    save_file({k: v.half() for k, v in _state(src).items()}, str(st))
    dst = zoo.create_model("unet_tiny", num_classes=3, pretrained=str(st))
    for (k, a), b in zip(src.state_dict().items(), dst.state_dict().values()):
        torch.testing.assert_close(a.half().float(), b.float(), msg=k)

    ckpt = tmp_path / "run.ckpt"
    torch.save({"state_dict": {f"model.{k}": v for k, v in _state(src).items()}, "epoch": 3}, ckpt)
    dst2 = zoo.create_model("unet_tiny", num_classes=3, pretrained=str(ckpt))
    x = torch.randn(1, 1, 32, 32)
    src.eval(), dst2.eval()
    torch.testing.assert_close(src(x), dst2(x))


def test_sha256_mismatch_and_corrupt_and_missing(tmp_path, monkeypatch):
    model = zoo.create_model("unet_tiny")
    st = tmp_path / "w.safetensors"
    save_file(_state(model), str(st))
    import zoo.weights as w

    monkeypatch.setattr(w, "resolve_weights", lambda name, p: (st, "0" * 64))
    with pytest.raises(ValueError, match=f"sha256 mismatch .* got {sha256_of(st)}"):
        load_pretrained(model, "unet_tiny", "x")
    monkeypatch.undo()

    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="could not read weights from .*bad.pt"):
        load_pretrained(model, "unet_tiny", str(bad))
    with pytest.raises(FileNotFoundError, match="not found"):
        load_pretrained(model, "unet_tiny", str(tmp_path / "missing.safetensors"))
    with pytest.raises(FileNotFoundError, match="no pretrained weights for model 'unet_tiny'"):
        zoo.create_model("unet_tiny", pretrained=True)


def test_wrong_architecture_is_named(tmp_path):
    st = tmp_path / "w.safetensors"
    save_file(_state(zoo.create_model("unet_tiny", num_classes=2)), str(st))
    with pytest.raises(ValueError, match="has shape .* model expects"):
        zoo.create_model("unet_tiny", num_classes=5, pretrained=str(st))
    with pytest.raises(ValueError, match="missing keys"):
        zoo.create_model("unet_small", pretrained=str(st))


def test_weight_files_and_checkpoints_share_one_weights_only_loader(tmp_path):
    import argparse

    from zoo.checkpoint import load_segzoo_checkpoint
    from zoo.weights import load_state_dict_file

    pickled = tmp_path / "pickled.pt"
    torch.save({"state_dict": {}, "args": argparse.Namespace(a=1)}, pickled)  # a Python object: never unpickled
    expected = (r"could not read weights from .*pickled.pt.* with torch.load\(weights_only=True\): corrupt, not a "
                r"torch file, or it holds pickled Python objects \(.*argparse.Namespace")
    with pytest.raises(ValueError, match="weights: " + expected):
        load_state_dict_file(pickled)
    with pytest.raises(ValueError, match="ckpt: " + expected):
        load_segzoo_checkpoint(pickled)
