"""`model_table`: parameters and GFLOPs at a stated input size."""
from __future__ import annotations

import pytest

import zoo
from zoo.models.summary import model_row, model_table


def test_row_counts_parameters_and_flops_scale_with_pixels() -> None:
    row = model_row("unet_tiny", 2, (64, 64))
    assert (row.name, row.family, row.spatial_dims, row.input_size) == ("unet_tiny", "unet", 2, (64, 64))
    assert row.params == sum(p.numel() for p in zoo.create_model("unet_tiny").parameters())
    # A pure conv net: FLOPs are linear in the number of pixels.
    assert model_row("unet_tiny", 2, (128, 128)).gflops == pytest.approx(4 * row.gflops, rel=1e-12)
    assert row.gflops > 0
    assert model_row("unet_tiny", 2, (64, 64), flops=False).gflops is None


def test_table_covers_dims_and_prefixed_names() -> None:
    rows = model_table(["sa_unet_tiny", "timm:resnet18"], input_size={2: (64, 64), 3: (16, 16, 16)})
    assert [(r.name, r.spatial_dims, r.input_size) for r in rows] == [
        ("sa_unet_tiny", 2, (64, 64)), ("sa_unet_tiny", 3, (16, 16, 16)), ("timm:resnet18", 2, (64, 64))]
    assert all(r.params > 0 and r.gflops > 0 for r in rows)
    with pytest.raises(ValueError, match="input_size must have 3 entries"):
        model_row("unet_tiny", 3, (64, 64))
