"""`torch.library` registration of the Triton NA kernels (custom ops `segzoo::na_fwd` / `segzoo::na_bwd`, autograd,
fake implementations), so `torch.compile` traces through them without graph breaks."""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor

from .params import NAParams
from .triton_kernels import na_bwd_triton, na_fwd_triton

__all__ = ["na_triton"]


def _params(q: Tensor, kernel_size: Sequence[int], dilation: Sequence[int], stride: Sequence[int],
            is_causal: Sequence[bool]) -> NAParams:
    nd = len(kernel_size)
    return NAParams(tuple(q.shape[1:1 + nd]), tuple(kernel_size), tuple(dilation), tuple(stride), tuple(is_causal))


@torch.library.custom_op("segzoo::na_fwd", mutates_args=())
def na_fwd(q: Tensor, k: Tensor, v: Tensor, kernel_size: list[int], dilation: list[int], stride: list[int],
           is_causal: list[bool], scale: float) -> tuple[Tensor, Tensor]:
    """Fused NA forward; returns the output and the base-2 logsumexp `[B, H, N]` (saved for backward)."""
    p = _params(q, kernel_size, dilation, stride, is_causal)
    return na_fwd_triton(q.contiguous(), k.contiguous(), v.contiguous(), p, scale)


@na_fwd.register_fake
def _na_fwd_fake(q, k, v, kernel_size, dilation, stride, is_causal, scale):
    n = math.prod(q.shape[1:1 + len(kernel_size)])
    return q.new_empty(q.shape), q.new_empty((q.shape[0], q.shape[-2], n), dtype=torch.float32)


@torch.library.custom_op("segzoo::na_bwd", mutates_args=())
def na_bwd(do: Tensor, q: Tensor, k: Tensor, v: Tensor, out: Tensor, lse: Tensor, kernel_size: list[int],
           dilation: list[int], stride: list[int], is_causal: list[bool], scale: float
           ) -> tuple[Tensor, Tensor, Tensor]:
    """Fused NA backward (dq, dk, dv)."""
    p = _params(q, kernel_size, dilation, stride, is_causal)
    return na_bwd_triton(do.contiguous(), q.contiguous(), k.contiguous(), v.contiguous(), out, lse, p, scale)


@na_bwd.register_fake
def _na_bwd_fake(do, q, k, v, out, lse, kernel_size, dilation, stride, is_causal, scale):
    return q.new_empty(q.shape), k.new_empty(k.shape), v.new_empty(v.shape)


def _setup_context(ctx, inputs, output) -> None:
    q, k, v, kernel_size, dilation, stride, is_causal, scale = inputs
    out, lse = output
    ctx.save_for_backward(q, k, v, out, lse)
    ctx.args = (kernel_size, dilation, stride, is_causal, scale)


def _backward(ctx, d_out, d_lse):
    q, k, v, out, lse = ctx.saved_tensors
    dq, dk, dv = na_bwd(d_out, q, k, v, out, lse, *ctx.args)
    return dq, dk, dv, None, None, None, None, None


na_fwd.register_autograd(_backward, setup_context=_setup_context)


class _EagerNA(torch.autograd.Function):
    """The same kernels without the custom-op dispatch, for eager mode (less CPU overhead per call)."""

    @staticmethod
    def forward(ctx, q: Tensor, k: Tensor, v: Tensor, p: NAParams, scale: float) -> Tensor:
        q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
        out, lse = na_fwd_triton(q, k, v, p, scale)
        ctx.save_for_backward(q, k, v, out, lse)
        ctx.p, ctx.scale = p, scale
        return out

    @staticmethod
    def backward(ctx, d_out: Tensor):
        q, k, v, out, lse = ctx.saved_tensors
        dq, dk, dv = na_bwd_triton(d_out.contiguous(), q, k, v, out, lse, ctx.p, ctx.scale)
        return dq, dk, dv, None, None


def na_triton(q: Tensor, k: Tensor, v: Tensor, p: NAParams, scale: float) -> Tensor:
    """NA on the fused kernels: the registered custom op under torch.compile (traceable), a plain autograd
    Function in eager mode."""
    if not torch.compiler.is_compiling():
        return _EagerNA.apply(q, k, v, p, float(scale))
    out, _ = na_fwd(q, k, v, list(p.kernel_size), list(p.dilation), list(p.stride), list(p.is_causal), float(scale))
    return out
