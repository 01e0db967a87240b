"""`zoo models` table: name, family, dims, parameters and GFLOPs of every registered model at a stated input
size, computed lazily per row on the meta device (no weights are allocated, nothing is run for real)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator, Mapping, Sequence

import torch
from torch.utils.flop_counter import FlopCounterMode

from zoo.registry import create_model, get_model_entry, list_models

__all__ = ["ModelRow", "DEFAULT_INPUT_SIZE", "model_row", "iter_model_table", "model_table"]

# FLOPs are counted at one image of these sizes (batch 1, one input channel).
DEFAULT_INPUT_SIZE: dict[int, tuple[int, ...]] = {2: (256, 256), 3: (96, 96, 96)}


@dataclass(frozen=True)
class ModelRow:
    """One row of the model table; `gflops` is 2 x multiply-adds of one forward pass (None if not computed)."""

    name: str
    family: str
    spatial_dims: int
    params: int
    gflops: float | None
    input_size: tuple[int, ...]


def model_row(name: str, spatial_dims: int, input_size: Sequence[int] | None = None, flops: bool = True,
              in_channels: int = 1, num_classes: int = 2) -> ModelRow:
    """Parameters and forward GFLOPs of `name` in `spatial_dims` at `input_size` (default 256^2 / 96^3)."""
    entry = get_model_entry(name)
    size = tuple(input_size) if input_size is not None else DEFAULT_INPUT_SIZE[spatial_dims]
    if len(size) != spatial_dims:
        raise ValueError(f"input_size must have {spatial_dims} entries for spatial_dims={spatial_dims}, got {size}")
    overrides = dict(spatial_dims=spatial_dims, in_channels=in_channels, num_classes=num_classes)
    try:
        with torch.device("meta"):
            model = create_model(name, **overrides)
    except RuntimeError:  # a builder that reads tensor values at init (e.g. MONAI's SwinUNETR): build, then move
        model = create_model(name, **overrides).to("meta")
    params = sum(p.numel() for p in model.parameters())
    gflops = None
    if flops:
        model.eval()
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            model(torch.empty(1, in_channels, *size, device="meta"))
        gflops = counter.get_total_flops() / 1e9
    return ModelRow(entry.name, entry.family, spatial_dims, params, gflops, size)


def iter_model_table(names: Iterable[str] | None = None,
                     input_size: Mapping[int, Sequence[int]] | None = None, flops: bool = True) -> Iterator[ModelRow]:
    """Rows one by one (one per name and supported dims), so a CLI can print them as they come."""
    sizes = {**DEFAULT_INPUT_SIZE, **{k: tuple(v) for k, v in (input_size or {}).items()}}
    for name in (list_models() if names is None else names):
        for dims in get_model_entry(name).spatial_dims:
            yield model_row(name, dims, sizes[dims], flops)


def model_table(names: Iterable[str] | None = None, input_size: Mapping[int, Sequence[int]] | None = None,
                flops: bool = True) -> list[ModelRow]:
    """All rows of `iter_model_table` (every registered model by default; `timm:`/`monai:` names may be added)."""
    return list(iter_model_table(names, input_size, flops))
