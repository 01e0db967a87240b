import pytest
import torch

from zoo.lightning.checkpoint_io import AtomicCheckpointIO


def test_failed_save_keeps_previous_checkpoint_and_leaves_no_temp(tmp_path, monkeypatch):
    io = AtomicCheckpointIO()
    path = tmp_path / "ckpts" / "last.ckpt"
    io.save_checkpoint({"epoch": 1, "w": torch.ones(3)}, path)
    assert torch.load(path, weights_only=True)["epoch"] == 1

    def broken_save(obj, f, *a, **k):
        with open(f, "wb") as fh:
            fh.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        io.save_checkpoint({"epoch": 2, "w": torch.zeros(3)}, path)
    assert torch.load(path, weights_only=True)["epoch"] == 1
    assert [p.name for p in path.parent.iterdir()] == ["last.ckpt"]


def test_write_atomic_replaces_whole_file_or_keeps_old(tmp_path):
    from zoo.atomic import write_atomic

    path = tmp_path / "run" / "metrics.json"
    write_atomic(path, lambda tmp: tmp.write_text("old"))
    assert path.read_text() == "old"

    def half_write(tmp):
        tmp.write_text("ne")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomic(path, half_write)
    assert path.read_text() == "old"
    assert [p.name for p in path.parent.iterdir()] == ["metrics.json"]
    write_atomic(path, lambda tmp: tmp.write_text("new"))
    assert path.read_text() == "new"
    assert [p.name for p in path.parent.iterdir()] == ["metrics.json"]
