"""Neighborhood-attention parameters: normalisation of per-axis arguments and the input checks every backend shares.

The NA rule (NATTEN's), per spatial axis of length L with kernel k, dilation d, stride s:
- tokens split into d dilation groups by ``coord % d``; a query only sees keys of its own group, and the rule
  below runs on in-group indices ``coord // d`` over the group's length ``Lg = ceil((L - g) / d)``;
- stride: queries in blocks of s (in-group) share the window of a leader query;
- non-causal: leader = block start + s // 2, window start = clamp(leader - k // 2, 0, Lg - k), k keys, so every
  query sees exactly k keys (even kernels: k // 2 left, k // 2 - 1 right);
- causal: leader = block start, window = [max(leader - k + 1, 0), leader] (no future keys, fewer at the start).
The d-dimensional neighborhood is the product of the per-axis windows.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, Union

import torch

IntOrSeq = Union[int, Sequence[int]]
BoolOrSeq = Union[bool, Sequence[bool]]

__all__ = ["NAParams", "make_params", "check_qkv", "per_axis"]


@dataclass(frozen=True)
class NAParams:
    """Per-axis NA arguments for an input with `ndim` spatial axes (each tuple has `ndim` entries)."""

    shape: tuple[int, ...]
    kernel_size: tuple[int, ...]
    dilation: tuple[int, ...]
    stride: tuple[int, ...]
    is_causal: tuple[bool, ...]

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def padded(self) -> "NAParams":
        """The same problem on 3 axes (leading axes of length 1 with kernel 1), as the Triton kernels see it."""
        p = 3 - self.ndim
        return NAParams((1,) * p + self.shape, (1,) * p + self.kernel_size, (1,) * p + self.dilation,
                        (1,) * p + self.stride, (False,) * p + self.is_causal)


def per_axis(name: str, value: IntOrSeq | BoolOrSeq, ndim: int, kind: type) -> tuple:
    """`value` (a scalar or one entry per axis) as a tuple of `ndim` entries of type `kind`; clear errors otherwise."""
    if isinstance(value, (bool, int)) and not (kind is int and isinstance(value, bool)):
        value = (value,) * ndim
    try:
        vals = tuple(value)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"{name} must be a {kind.__name__} or a tuple of {ndim}, got {value!r}") from None
    if len(vals) != ndim:
        raise ValueError(f"{name} must have {ndim} entries (one per spatial axis), got {value!r}")
    for v in vals:
        ok = isinstance(v, bool) if kind is bool else (isinstance(v, int) and not isinstance(v, bool))
        if not ok:
            raise TypeError(f"{name} entries must be {kind.__name__}, got {value!r}")
    return vals


def make_params(shape: Sequence[int], kernel_size: IntOrSeq, dilation: IntOrSeq = 1, stride: IntOrSeq = 1,
                is_causal: BoolOrSeq = False) -> NAParams:
    """Normalise int-or-tuple arguments for spatial `shape` and check them against it (clear errors)."""
    shape = tuple(int(s) for s in shape)
    nd = len(shape)
    ks = per_axis("kernel_size", kernel_size, nd, int)
    dil = per_axis("dilation", dilation, nd, int)
    st = per_axis("stride", stride, nd, int)
    ca = per_axis("is_causal", is_causal, nd, bool)
    for ax in range(nd):
        L, k, d, s = shape[ax], ks[ax], dil[ax], st[ax]
        if k < 1:
            raise ValueError(f"kernel_size must be >= 1 on every axis, got {ks}")
        if d < 1:
            raise ValueError(f"dilation must be >= 1 on every axis, got {dil}")
        if s < 1:
            raise ValueError(f"stride must be >= 1 on every axis, got {st}")
        if k > L:
            raise ValueError(f"kernel_size {k} is larger than spatial axis {ax} of length {L} (input shape {shape})")
        if d * k > L:
            raise ValueError(f"dilation*kernel_size = {d}*{k} = {d * k} is larger than spatial axis {ax} of "
                             f"length {L} (input shape {shape})")
        if s > k:
            raise ValueError(f"stride {s} is larger than kernel_size {k} on axis {ax}; expected stride <= kernel_size")
    return NAParams(shape, ks, dil, st, ca)


def check_qkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, ndim: int) -> None:
    """Check q, k, v are `[B, *spatial(ndim), heads, head_dim]` with equal shapes, dtypes and devices."""
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() != ndim + 3:
            raise ValueError(f"{name} must have shape [B, *spatial({ndim}), heads, head_dim] ({ndim + 3} dims), "
                             f"got shape {tuple(t.shape)}")
    if not (q.shape == k.shape == v.shape):
        raise ValueError(f"q, k, v must have the same shape, got q {tuple(q.shape)}, k {tuple(k.shape)}, "
                         f"v {tuple(v.shape)}")
    if not (q.dtype == k.dtype == v.dtype):
        raise ValueError(f"q, k, v must have the same dtype, got q {q.dtype}, k {k.dtype}, v {v.dtype}")
    if not (q.device == k.device == v.device):
        raise ValueError(f"q, k, v must be on the same device, got q {q.device}, k {k.device}, v {v.device}")
    if not q.is_floating_point():
        raise TypeError(f"q, k, v must be floating point, got {q.dtype}")
