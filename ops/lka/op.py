"""`lka`: the public functional form. CUDA tensors go through the Triton kernels: in eager mode by a plain
torch.autograd.Function (little per-call CPU overhead), under torch.compile by the same launchers registered as
torch.library custom ops (so Dynamo traces through them); other devices use the PyTorch reference."""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from .._nd import TRITON_DTYPES, channels_last_format, eager_or_traced
from .reference import check_lka_args, lka_reference

__all__ = ["lka", "lka_triton"]


def _channels_last(t: Tensor) -> Tensor:
    return t.contiguous(memory_format=channels_last_format(t))


def _split_taps(wt: Tensor, w0: Tensor, w1: Tensor) -> tuple[Tensor, ...]:
    """w0's and w1's tap-major weights, views of `tap_major(w0, w1)`."""
    return wt.split([w0[0].numel(), w1[0].numel()])


def _launch_fwd(x: Tensor, w0: Tensor, b0: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor, dilation: int,
                keep: bool) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(out, a1, a2, wt): the two depthwise results (a2 is kept for the backward only when `keep`, else empty) and
    both depthwise weights as the kernels read them (`tap_major`, w0's taps then w1's), which the backward reuses."""
    from .kernels import depthwise_triton, pointwise_mul_triton, tap_major

    wt = tap_major(w0, w1)
    w0t, w1t = _split_taps(wt, w0, w1)
    a1 = depthwise_triton(x, w0t, tuple(w0.shape[2:]), b0, 1)
    a2 = depthwise_triton(a1, w1t, tuple(w1.shape[2:]), b1, dilation)
    out = pointwise_mul_triton(a2, w2, b2, x)
    return out, a1, a2 if keep else x.new_empty(0), wt


def _from_tap_major(dw: Tensor, w: Tensor) -> Tensor:
    """A depthwise weight gradient accumulated tap-major in fp32 ([taps, C]), in w's shape and dtype (one copy)."""
    out = torch.empty(w.shape, device=w.device, dtype=w.dtype)
    out.view(w.shape[0], -1).copy_(dw.view(-1, w.shape[0]).t())
    return out


def _launch_bwd(x: Tensor, a1: Tensor, a2: Tensor, wt: Tensor, w0: Tensor, b0: Tensor, w1: Tensor,
                b1: Tensor, w2: Tensor, b2: Tensor, dilation: int, dout: Tensor
                ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Gradients of x, w0, b0, w1, b1, w2, b2 (dout channels-last like x). The depthwise weights' and the biases'
    gradients add up in one zeroed fp32 buffer; the three bias gradients come back as views of one cast of it
    when the biases share a dtype."""
    from .._triton import beside
    from .kernels import as_rows, depthwise_triton, depthwise_wgrad_triton, pointwise_mul_grad_triton

    C = x.shape[1]
    w0t, w1t = _split_taps(wt, w0, w1)
    acc = torch.zeros(w0.numel() + w1.numel() + 3 * C, device=x.device, dtype=torch.float32)
    dw0, dw1, dbias = acc.split([w0.numel(), w1.numel(), 3 * C])
    db0, db1, db2 = dbias.split(C)
    dx_direct, d_attn = pointwise_mul_grad_triton(a2, w2, b2, dout, x, db2)      # dout * attn, dout * x
    d_attn = as_rows(d_attn)
    dw2 = d_attn.new_empty(C, C)
    with beside(x) as side:       # the weight gradients overlap the input-gradient chain
        side(torch.mm, d_attn.t(), as_rows(a2), out=dw2)
        da2 = torch.mm(d_attn, w2.reshape(C, C).to(x.dtype)).view(x.shape[0], *x.shape[2:], C).movedim(-1, 1)
        side(depthwise_wgrad_triton, a1, da2, tuple(w1.shape[2:]), dilation, dw1, db1)
        da1 = depthwise_triton(da2, w1t, tuple(w1.shape[2:]), None, dilation, flip=True)
        side(depthwise_wgrad_triton, x, da1, tuple(w0.shape[2:]), 1, dw0, db0)
        dx = depthwise_triton(da1, w0t, tuple(w0.shape[2:]), None, 1, add=dx_direct, flip=True)
    biases = (b0, b1, b2)
    if len({b.dtype for b in biases}) == 1:
        db0, db1, db2 = dbias.to(b0.dtype).split(C)
    else:
        db0, db1, db2 = (g.to(b.dtype) for g, b in zip((db0, db1, db2), biases))
    return (dx, _from_tap_major(dw0, w0), db0, _from_tap_major(dw1, w1), db1, dw2.reshape(w2.shape).to(w2.dtype),
            db2)


@torch.library.custom_op("segzoo::lka_fwd", mutates_args=())
def _lka_fwd(x: Tensor, w0: Tensor, b0: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor, dilation: int,
             keep: bool) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    return _launch_fwd(x, w0, b0, w1, b1, w2, b2, dilation, keep)


@_lka_fwd.register_fake
def _(x, w0, b0, w1, b1, w2, b2, dilation, keep):
    taps = w0.new_empty(w0[0].numel() + w1[0].numel(), w0.shape[0], dtype=torch.float32)
    return torch.empty_like(x), torch.empty_like(x), torch.empty_like(x) if keep else x.new_empty(0), taps


@torch.library.custom_op("segzoo::lka_bwd", mutates_args=())
def _lka_bwd(x: Tensor, a1: Tensor, a2: Tensor, wt: Tensor, w0: Tensor, b0: Tensor, w1: Tensor,
             b1: Tensor, w2: Tensor, b2: Tensor, dilation: int, dout: Tensor
             ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    dx, *grads = _launch_bwd(x, a1, a2, wt, w0, b0, w1, b1, w2, b2, dilation, dout)
    return (dx, *(g.clone() for g in grads))  # custom-op outputs may not alias one another


@_lka_bwd.register_fake
def _(x, a1, a2, wt, w0, b0, w1, b1, w2, b2, dilation, dout):
    return tuple(torch.empty_like(t) for t in (x, w0, b0, w1, b1, w2, b2))


def _save(ctx, inputs: tuple, kept: tuple[Tensor, ...]) -> None:
    """Keep what both backward paths need, in `_launch_bwd`'s order: x, the forward's kept outputs (a1, a2, wt),
    the weights, and the dilation."""
    x, *weights, dilation, _keep = inputs
    ctx.save_for_backward(x, *kept, *weights)
    ctx.dilation = dilation


def _grads(bwd: Callable[..., tuple[Tensor, ...]], ctx, dout: Tensor) -> tuple[Tensor | None, ...]:
    """Gradients of (x, w0, b0, w1, b1, w2, b2, dilation, keep) by `bwd` (custom op or plain launcher)."""
    return (*bwd(*ctx.saved_tensors, ctx.dilation, _channels_last(dout)), None, None)


def _setup(ctx, inputs, output) -> None:
    _save(ctx, inputs, output[1:])


def _op_backward(ctx, dout: Tensor, *_kept_grads: Tensor | None):
    return _grads(_lka_bwd, ctx, dout)


_lka_fwd.register_autograd(_op_backward, setup_context=_setup)


class _LKAFunction(torch.autograd.Function):
    """The eager path: the same launchers as the custom ops, without the custom-op dispatch."""

    @staticmethod
    def forward(ctx, *inputs) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        out, *kept = _launch_fwd(*inputs)
        ctx.mark_non_differentiable(*kept)
        _save(ctx, inputs, tuple(kept))
        return out, *kept

    @staticmethod
    def backward(ctx, dout: Tensor, *_kept_grads: Tensor | None):
        return _grads(_launch_bwd, ctx, dout)


_lka = eager_or_traced(_LKAFunction, _lka_fwd)


def lka_triton(x: Tensor, w0: Tensor, b0: Tensor | None, w1: Tensor, b1: Tensor | None, w2: Tensor,
               b2: Tensor | None, dilation: int = 3) -> Tensor:
    """The Triton path on any device Triton runs on (CPU only under TRITON_INTERPRET=1). Works in channels-last
    internally (an NCHW input costs one layout copy) and returns a channels-last tensor."""
    check_lka_args(x, w0, b0, w1, b1, w2, b2, dilation)
    if x.dtype not in TRITON_DTYPES:
        raise TypeError(f"x must be one of {TRITON_DTYPES}, got {x.dtype}")
    c = x.shape[1]
    b0, b1, b2 = (w0.new_zeros(c) if b is None else b for b in (b0, b1, b2))
    keep = torch.is_grad_enabled() and any(t.requires_grad for t in (x, w0, b0, w1, b1, w2, b2))
    return _lka(_channels_last(x), w0, b0, w1, b1, w2, b2, dilation, keep)[0]


def lka(x: Tensor, w0: Tensor, b0: Tensor | None, w1: Tensor, b1: Tensor | None, w2: Tensor, b2: Tensor | None,
        dilation: int = 3) -> Tensor:
    """VAN's large-kernel attention: x * conv_w2(conv_w1(conv_w0(x))), w0/w1 depthwise (w1 dilated), w2 1x1.

    x [B, C, *s] (2-D or 3-D, contiguous or channels_last), w0 [C, 1, *k0], w1 [C, 1, *k1] (odd k), w2 [C, C, 1...]."""
    if x.is_cuda and x.dtype in TRITON_DTYPES:
        return lka_triton(x, w0, b0, w1, b1, w2, b2, dilation)
    return lka_reference(x, w0, b0, w1, b1, w2, b2, dilation)
