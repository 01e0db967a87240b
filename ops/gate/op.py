"""`attention_gate`: the public functional form. CUDA tensors go through the fused Triton kernels: in eager mode by a
plain torch.autograd.Function (little per-call CPU overhead), under torch.compile by the same launchers registered as
torch.library custom ops (so Dynamo traces through them); other devices use the PyTorch reference."""
from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import Tensor

from .._nd import TRITON_DTYPES, eager_or_traced
from .reference import attention_gate_reference, check_gate_args

__all__ = ["attention_gate", "attention_gate_triton"]

_Grads = tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]


def _launch_fwd(x: Tensor, g: Tensor, wx: Tensor, bx: Optional[Tensor], wg: Tensor, bg: Optional[Tensor],
                wpsi: Tensor, bpsi: Optional[Tensor]) -> tuple[Tensor, Tensor]:
    from .kernels import gate_fwd_triton

    return gate_fwd_triton(x, g, wx, wg, bx, bg, wpsi, bpsi)


def _as(t: Tensor, ref: Tensor) -> Tensor:
    return t if t.dtype == ref.dtype else t.to(ref.dtype)


def _launch_bwd(x: Tensor, g: Tensor, wx: Tensor, bx: Optional[Tensor], wg: Tensor, bg: Optional[Tensor],
                wpsi: Tensor, bpsi: Optional[Tensor], dout: Tensor, dalpha: Optional[Tensor]) -> _Grads:
    """dx, dg and the gradients of wx, bx, wg, bg, wpsi, bpsi shaped and typed like them (an absent bias's in wx's
    dtype); the six weight gradients are views of one buffer."""
    from .kernels import gate_bwd_triton, wgrad_sizes

    dx, dg, flat = gate_bwd_triton(x, g, wx, wg, bx, bg, wpsi, bpsi, dout, dalpha)
    dwx, dwg, dbx, dbg, dwpsi, dbpsi = flat.split(wgrad_sizes(wx.shape[0], x.shape[1], g.shape[1]))
    wgrads = [d if ref is None else _as(d.view(ref.shape), ref)
              for d, ref in ((dwx, wx), (dbx, bx), (dwg, wg), (dbg, bg), (dwpsi, wpsi), (dbpsi, bpsi))]
    return (dx, dg, *wgrads)


@torch.library.custom_op("segzoo::attention_gate_fwd", mutates_args=())
def _gate_fwd(x: Tensor, g: Tensor, wx: Tensor, bx: Optional[Tensor], wg: Tensor, bg: Optional[Tensor], wpsi: Tensor,
              bpsi: Optional[Tensor]) -> tuple[Tensor, Tensor]:
    return _launch_fwd(x, g, wx, bx, wg, bg, wpsi, bpsi)


@_gate_fwd.register_fake
def _(x, g, wx, bx, wg, bg, wpsi, bpsi):
    return torch.empty_like(x), torch.empty_like(x[:, :1])


@torch.library.custom_op("segzoo::attention_gate_bwd", mutates_args=())
def _gate_bwd(x: Tensor, g: Tensor, wx: Tensor, bx: Optional[Tensor], wg: Tensor, bg: Optional[Tensor], wpsi: Tensor,
              bpsi: Optional[Tensor], dout: Tensor, dalpha: Optional[Tensor]) -> _Grads:
    dx, dg, *wgrads = _launch_bwd(x, g, wx, bx, wg, bg, wpsi, bpsi, dout, dalpha)
    return (dx, dg, *(t.clone() for t in wgrads))  # custom-op outputs may not alias one another


@_gate_bwd.register_fake
def _(x, g, wx, bx, wg, bg, wpsi, bpsi, dout, dalpha):
    f = wx.shape[0]
    return (torch.empty_like(x), torch.empty_like(g), torch.empty_like(wx), (wx if bx is None else bx).new_empty(f),
            torch.empty_like(wg), (wx if bg is None else bg).new_empty(f), torch.empty_like(wpsi),
            (wx if bpsi is None else bpsi).new_empty(1))


def _backward(bwd: Callable[..., _Grads], saved: tuple[Optional[Tensor], ...], dout: Optional[Tensor],
              dalpha: Optional[Tensor]) -> tuple[Optional[Tensor], ...]:
    """The gradients of (x, g, wx, bx, wg, bg, wpsi, bpsi) by `bwd` (custom op or plain launcher); None for absent
    biases."""
    x = saved[0]
    grads = bwd(*saved, torch.zeros_like(x) if dout is None else dout, dalpha)
    return tuple(None if t is None else d for t, d in zip(saved, grads))


def _setup(ctx, inputs, output) -> None:
    ctx.save_for_backward(*inputs)


def _op_backward(ctx, dout: Optional[Tensor], dalpha: Optional[Tensor]):
    return _backward(_gate_bwd, ctx.saved_tensors, dout, dalpha)


_gate_fwd.register_autograd(_op_backward, setup_context=_setup)


class _GateFunction(torch.autograd.Function):
    """The eager path: the same launchers as the custom ops, without the custom-op dispatch."""

    @staticmethod
    def forward(ctx, *inputs: Optional[Tensor]) -> tuple[Tensor, Tensor]:
        ctx.set_materialize_grads(False)  # an unused output's gradient stays None: no zero tensor to fill
        ctx.save_for_backward(*inputs)
        return _launch_fwd(*inputs)

    @staticmethod
    def backward(ctx, dout: Optional[Tensor], dalpha: Optional[Tensor]) -> tuple[Optional[Tensor], ...]:
        return _backward(_launch_bwd, ctx.saved_tensors, dout, dalpha)


_gate = eager_or_traced(_GateFunction, _gate_fwd)


def _contiguous(t: Optional[Tensor]) -> Optional[Tensor]:
    return None if t is None else t.contiguous()


def attention_gate_triton(x: Tensor, g: Tensor, wx: Tensor, bx: Tensor | None, wg: Tensor, bg: Tensor | None,
                          wpsi: Tensor, bpsi: Tensor | None) -> tuple[Tensor, Tensor]:
    """The fused Triton path on any device Triton runs on (CPU only under TRITON_INTERPRET=1)."""
    check_gate_args(x, g, wx, bx, wg, bg, wpsi, bpsi)
    if x.dtype not in TRITON_DTYPES or g.dtype != x.dtype:
        raise TypeError(f"x and g must share one of {TRITON_DTYPES}, got {x.dtype} and {g.dtype}")
    return _gate(x, g, *(_contiguous(t) for t in (wx, bx, wg, bg, wpsi, bpsi)))


def attention_gate(x: Tensor, g: Tensor, wx: Tensor, bx: Tensor | None, wg: Tensor, bg: Tensor | None,
                   wpsi: Tensor, bpsi: Tensor | None) -> tuple[Tensor, Tensor]:
    """Attention U-Net gate: returns (x * alpha, alpha), alpha = sigmoid(psi(relu(Wx x + bx + Wg g + bg)) + bpsi).

    x [B, Cx, *s] (skip), g [B, Cg, *s] (gating signal at x's size), wx [F, Cx, 1...], wg [F, Cg, 1...],
    wpsi [1, F, 1...]; 2-D or 3-D, contiguous or channels_last."""
    if x.is_cuda and x.dtype in TRITON_DTYPES:
        return attention_gate_triton(x, g, wx, bx, wg, bg, wpsi, bpsi)
    return attention_gate_reference(x, g, wx, bx, wg, bg, wpsi, bpsi)
