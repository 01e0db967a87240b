"""Whole-image and sliding-window inference, shared by `zoo predict` and validation so both see the same logits.

An input that fits in ``roi_size`` (the training patch) is run whole, zero-padded up to the model's size
divisor; a larger one goes through MONAI's ``sliding_window_inference`` with gaussian blending of the logits.
"""
from __future__ import annotations

import contextlib
import numbers
from itertools import combinations
from typing import Sequence

import torch
from monai.inferers import sliding_window_inference
from torch import nn

from backbones.layers import pad_to_multiple

__all__ = ["predict_logits", "model_divisor"]


def model_divisor(model: nn.Module, spatial_dims: int) -> list[int]:
    """Per-axis size the model's input must be a multiple of (its ``divisor`` attribute; 1 when it has none or
    pads its input itself, ``pad_input=True``)."""
    div = 1 if getattr(model, "pad_input", False) else getattr(model, "divisor", 1)
    return [int(div)] * spatial_dims if isinstance(div, int) else [int(d) for d in div]


def _forward(model: nn.Module, x: torch.Tensor, amp: bool) -> torch.Tensor:
    ctx = (torch.autocast(x.device.type, dtype=torch.bfloat16) if amp and x.device.type == "cuda"
           else contextlib.nullcontext())
    with ctx:
        out = model(x)
    if isinstance(out, (list, tuple)):  # deep supervision: full resolution comes first
        out = out[0]
    return out.float()


@torch.no_grad()
def predict_logits(model: nn.Module, image: torch.Tensor, roi_size: Sequence[int] | None = None,
                   overlap: float = 0.5, sw_batch_size: int = 1, amp: bool = False,
                   mirror_axes: Sequence[int] = ()) -> torch.Tensor:
    """Logits ``[B, K, *spatial]`` for normalised images ``[B, C, *spatial]`` (model in eval mode assumed).

    ``roi_size`` None runs the whole image; otherwise images larger than it along any axis are tiled with
    windows of ``roi_size`` overlapping by ``overlap`` (0 <= overlap < 1), ``sw_batch_size`` windows at a time.
    ``amp`` autocasts to bfloat16 on CUDA (ignored on CPU). ``mirror_axes`` (0-based spatial axes) is nnU-Net's
    test-time augmentation: the float32 logits are averaged over the input flipped along every subset of those
    axes (2^len passes, each flipped back); ``()`` is a single pass.
    """
    nd = image.ndim - 2
    if nd < 1:
        raise ValueError(f"image must be [B, C, *spatial], got shape {tuple(image.shape)}")
    divs = model_divisor(model, nd)
    roi = None if roi_size is None else _check_window(roi_size, divs, overlap, sw_batch_size)
    flips = _flip_dims(mirror_axes, nd)
    logits: torch.Tensor | None = None
    for dims in flips:
        out = _single_pass(model, image.flip(dims) if dims else image, roi, divs, overlap, sw_batch_size, amp)
        out = out.flip(dims) if dims else out
        logits = out if logits is None else logits.add_(out)
    return logits if len(flips) == 1 else logits.div_(len(flips))


def _check_window(roi_size: Sequence[int], divs: list[int], overlap: float, sw_batch_size: int) -> list[int]:
    roi = [int(r) for r in roi_size]
    if len(roi) != len(divs):
        raise ValueError(f"roi_size must have {len(divs)} entries for {len(divs)}-D images, got {list(roi_size)}")
    bad = [r for r, d in zip(roi, divs) if r <= 0 or r % d]
    if bad:
        raise ValueError(f"roi_size {roi} must be positive multiples of the model's size divisor {divs}")
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    if sw_batch_size < 1:
        raise ValueError(f"sw_batch_size must be >= 1, got {sw_batch_size}")
    return roi


def _flip_dims(mirror_axes: Sequence[int], nd: int) -> list[tuple[int, ...]]:
    """Tensor dims to flip for every subset of the spatial ``mirror_axes`` (the empty one, no flip, first)."""
    axes = list(mirror_axes)
    if (any(isinstance(a, bool) or not isinstance(a, numbers.Integral) or not 0 <= a < nd for a in axes)
            or len(set(axes)) != len(axes)):
        raise ValueError(f"mirror_axes must be unique spatial axes in [0, {nd}) for {nd}-D images, got {axes}")
    return [tuple(2 + int(a) for a in subset) for k in range(len(axes) + 1) for subset in combinations(axes, k)]


def _single_pass(model: nn.Module, image: torch.Tensor, roi: list[int] | None, divs: list[int], overlap: float,
                 sw_batch_size: int, amp: bool) -> torch.Tensor:
    """One pass: tiled when ``roi`` is set and the image exceeds it, else whole, zero-padded to ``divs``."""
    if roi is not None and any(s > r for s, r in zip(image.shape[2:], roi)):
        return sliding_window_inference(image, roi, sw_batch_size, lambda x: _forward(model, x, amp),
                                        overlap=overlap, mode="gaussian", padding_mode="constant", cval=0.0)
    x, crop = pad_to_multiple(image, divs)
    return _forward(model, x, amp)[crop]
