"""Functional axial attention. Without relative terms it is exactly SDPA on a strided view of the lines (flash /
memory-efficient kernels, no copies for contiguous input). With relative terms, CUDA tensors use the fused Triton
kernels (torch.library custom ops `segzoo::axial_rel_fwd`, which also returns the row log-sum-exp, and
`segzoo::axial_rel_bwd`, which recomputes the probabilities tile by tile from it); other devices use the reference
and its autograd (`reference.axial_rel_attention_backward` writes that backward out for the tests)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from .._nd import TRITON_DTYPES
from .reference import axial_rel_attention_reference, check_axial_args, check_rel_args, from_lines, to_lines

__all__ = ["axial_attention", "axial_rel_attention", "axial_rel_attention_triton"]


def axial_attention(q: Tensor, k: Tensor, v: Tensor, axis: int, scale: float | None = None) -> Tensor:
    """Multi-head attention along one spatial axis (0-based among the spatial dims).

    q, k, v [B, *spatial, heads, head_dim] (NATTEN's heads-last layout); returns the same shape."""
    check_axial_args(q, k, v, axis)
    out = F.scaled_dot_product_attention(to_lines(q, axis), to_lines(k, axis), to_lines(v, axis), scale=scale)
    return from_lines(out, q, axis)


def _lines_shape(q: Tensor, axis: int) -> tuple[int, int, int]:
    """(N, M, L) of `to_lines(q, axis)`."""
    return math.prod(q.shape[:axis + 1]), math.prod(q.shape[axis + 2:-1]), q.shape[axis + 1]


@torch.library.custom_op("segzoo::axial_rel_fwd", mutates_args=())
def _rel_fwd(q: Tensor, k: Tensor, v: Tensor, rel_q: Tensor, rel_k: Tensor, rel_v: Tensor, gates: Tensor,
             axis: int, scale: float) -> tuple[Tensor, Tensor]:
    from .kernels import axial_rel_fwd_triton

    out, lse = axial_rel_fwd_triton(to_lines(q, axis), to_lines(k, axis), to_lines(v, axis), rel_q, rel_k, rel_v,
                                    gates.float().contiguous(), scale)
    return from_lines(out, q, axis).contiguous(), lse


@_rel_fwd.register_fake
def _(q, k, v, rel_q, rel_k, rel_v, gates, axis, scale):
    return (torch.empty_like(q, memory_format=torch.contiguous_format),
            q.new_empty(_lines_shape(q, axis), dtype=torch.float32))


@torch.library.custom_op("segzoo::axial_rel_bwd", mutates_args=())
def _rel_bwd(q: Tensor, k: Tensor, v: Tensor, rel_q: Tensor, rel_k: Tensor, rel_v: Tensor, gates: Tensor,
             axis: int, scale: float, out: Tensor, lse: Tensor,
             dout: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    from .kernels import axial_rel_bwd_triton

    q, k, v, out, dout = (t.contiguous() for t in (q, k, v, out, dout))
    dq, dk, dv, drq, drk, drv, dg = axial_rel_bwd_triton(
        *(to_lines(t, axis) for t in (q, k, v)), rel_q, rel_k, rel_v, gates.float().contiguous(), scale,
        to_lines(out, axis), lse, to_lines(dout, axis))
    grads = [from_lines(t, q, axis).contiguous() for t in (dq, dk, dv)]
    return (*grads, drq.to(rel_q.dtype), drk.to(rel_k.dtype), drv.to(rel_v.dtype), dg.to(gates.dtype))


@_rel_bwd.register_fake
def _(q, k, v, rel_q, rel_k, rel_v, gates, axis, scale, out, lse, dout):
    return tuple(torch.empty_like(t, memory_format=torch.contiguous_format) for t in (q, k, v, rel_q, rel_k, rel_v,
                                                                                         gates))


def _setup(ctx, inputs, output) -> None:
    ctx.save_for_backward(*inputs[:7], *output)
    ctx.axis, ctx.scale = inputs[7], inputs[8]


def _backward(ctx, dout: Tensor, dlse: Tensor | None):
    *inputs, out, lse = ctx.saved_tensors
    return (*_rel_bwd(*inputs, ctx.axis, ctx.scale, out, lse, dout), None, None)


_rel_fwd.register_autograd(_backward, setup_context=_setup)


def _prepare(q: Tensor, k: Tensor, v: Tensor, axis: int, rel_q: Tensor, rel_k: Tensor, rel_v: Tensor,
             gates: Tensor | None, scale: float | None) -> tuple[Tensor, float]:
    L = check_axial_args(q, k, v, axis)
    check_rel_args(rel_q, rel_k, rel_v, gates, L, q.shape[-1])
    gates = q.new_ones(4, dtype=torch.float32) if gates is None else gates
    return gates, 1.0 / math.sqrt(q.shape[-1]) if scale is None else float(scale)


def axial_rel_attention_triton(q: Tensor, k: Tensor, v: Tensor, axis: int, rel_q: Tensor, rel_k: Tensor,
                               rel_v: Tensor, gates: Tensor | None = None, scale: float | None = None) -> Tensor:
    """The fused Triton forward and backward on any device Triton runs on (CPU only under TRITON_INTERPRET=1)."""
    gates, scale = _prepare(q, k, v, axis, rel_q, rel_k, rel_v, gates, scale)
    if q.dtype not in TRITON_DTYPES:
        raise TypeError(f"q must be one of {TRITON_DTYPES}, got {q.dtype}")
    q, k, v = (t.contiguous() for t in (q, k, v))
    return _rel_fwd(q, k, v, rel_q, rel_k, rel_v, gates, axis, scale)[0]


def axial_rel_attention(q: Tensor, k: Tensor, v: Tensor, axis: int, rel_q: Tensor, rel_k: Tensor, rel_v: Tensor,
                        gates: Tensor | None = None, scale: float | None = None) -> Tensor:
    """Axial attention with Axial-DeepLab relative terms for q, k, v (rel_* [2L - 1, head_dim], offset -(L-1)
    first, shared by all heads) and optional MedT gates [4] = (g_q, g_k, g_v1, g_v2); see the reference."""
    if q.is_cuda and q.dtype in TRITON_DTYPES:
        return axial_rel_attention_triton(q, k, v, axis, rel_q, rel_k, rel_v, gates, scale)
    gates, scale = _prepare(q, k, v, axis, rel_q, rel_k, rel_v, gates, scale)
    return axial_rel_attention_reference(q, k, v, axis, rel_q, rel_k, rel_v, gates, scale)
