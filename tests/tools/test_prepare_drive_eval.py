from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]


def test_gifs_become_01_pngs_named_like_images(tmp_path, load_tool):
    split = tmp_path / "test"
    for sub in ("images", "1st_manual", "mask"):
        (split / sub).mkdir(parents=True)
    rng = np.random.default_rng(0)
    vessels = (rng.random((9, 11)) > 0.7).astype(np.uint8) * 255
    Image.fromarray(rng.integers(0, 255, (9, 11, 3), dtype=np.uint8)).save(split / "images" / "03_test.tif")
    Image.fromarray(vessels).save(split / "1st_manual" / "03_manual1.gif")
    fov = np.zeros((9, 11), np.uint8)
    fov[2:7, 1:9] = 255
    Image.fromarray(fov).save(split / "mask" / "03_test_mask.gif")
    tool = load_tool("prepare_drive_eval")
    out = tool.main([str(split), "--output", str(tmp_path / "out")])
    gt = np.asarray(Image.open(out / "gt" / "03_test.png"))
    assert np.array_equal(gt, vessels // 255)
    assert np.array_equal(np.asarray(Image.open(out / "fov" / "03_test.png")), fov // 255)
    (split / "1st_manual" / "03_manual1.gif").unlink()
    with pytest.raises(FileNotFoundError, match="03_manual1.gif"):
        tool.main([str(split), "--output", str(tmp_path / "out2")])
