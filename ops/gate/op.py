"""`attention_gate`: the public functional form. CUDA tensors go through the fused Triton kernels (registered as
torch.library custom ops so torch.compile traces through them); other devices use the PyTorch reference."""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from .._nd import TRITON_DTYPES, memory_format_of
from .reference import attention_gate_reference, check_gate_args

__all__ = ["attention_gate", "attention_gate_triton"]


@torch.library.custom_op("segzoo::attention_gate_fwd", mutates_args=())
def _gate_fwd(x: Tensor, g: Tensor, wx: Tensor, bx: Tensor, wg: Tensor, bg: Tensor, wpsi: Tensor, bpsi: Tensor
              ) -> tuple[Tensor, Tensor]:
    from .kernels import gate_fwd_triton

    return gate_fwd_triton(x, g, wx, wg, bx, bg, wpsi, bpsi)


@_gate_fwd.register_fake
def _(x, g, wx, bx, wg, bg, wpsi, bpsi):
    return torch.empty_like(x), torch.empty_like(x[:, :1])


@torch.library.custom_op("segzoo::attention_gate_bwd", mutates_args=())
def _gate_bwd(x: Tensor, g: Tensor, wx: Tensor, bx: Tensor, wg: Tensor, bg: Tensor, wpsi: Tensor, bpsi: Tensor,
              dout: Tensor, dalpha: Optional[Tensor]) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor,
                                                               Tensor]:
    from .kernels import gate_bwd_triton

    dx, dg, dwx, dwg, dbias, dwpsi, dbpsi = gate_bwd_triton(x, g, wx, wg, bx, bg, wpsi, bpsi, dout, dalpha)
    # the fp32 gradients share one buffer: copy each out (custom-op outputs may not alias)
    return (dx, dg, *(t.to(ref.dtype, copy=True) for t, ref in ((dwx, wx), (dbias, bx), (dwg, wg), (dbias, bg),
                                                                 (dwpsi, wpsi), (dbpsi, bpsi))))


@_gate_bwd.register_fake
def _(x, g, wx, bx, wg, bg, wpsi, bpsi, dout, dalpha):
    return tuple(torch.empty_like(t) for t in (x, g, wx, bx, wg, bg, wpsi, bpsi))


def _setup(ctx, inputs, output) -> None:
    ctx.save_for_backward(*inputs)


def _backward(ctx, dout: Tensor | None, dalpha: Tensor | None):
    x, g, *params = ctx.saved_tensors
    if dout is None:
        dout = torch.zeros_like(x)
    return _gate_bwd(x, g, *params, dout.contiguous(memory_format=memory_format_of(x)), dalpha)


_gate_fwd.register_autograd(_backward, setup_context=_setup)


def attention_gate_triton(x: Tensor, g: Tensor, wx: Tensor, bx: Tensor | None, wg: Tensor, bg: Tensor | None,
                          wpsi: Tensor, bpsi: Tensor | None) -> tuple[Tensor, Tensor]:
    """The fused Triton path on any device Triton runs on (CPU only under TRITON_INTERPRET=1)."""
    check_gate_args(x, g, wx, bx, wg, bg, wpsi, bpsi)
    if x.dtype not in TRITON_DTYPES or g.dtype != x.dtype:
        raise TypeError(f"x and g must share one of {TRITON_DTYPES}, got {x.dtype} and {g.dtype}")
    f = wx.shape[0]
    x, g = x.contiguous(memory_format=memory_format_of(x)), g.contiguous(memory_format=memory_format_of(g))
    bx, bg = (wx.new_zeros(f) if b is None else b for b in (bx, bg))
    bpsi = wx.new_zeros(1) if bpsi is None else bpsi
    return _gate_fwd(x, g, wx.reshape(f, -1).contiguous(), bx, wg.reshape(f, -1).contiguous(), bg,
                     wpsi.reshape(-1).contiguous(), bpsi)


def attention_gate(x: Tensor, g: Tensor, wx: Tensor, bx: Tensor | None, wg: Tensor, bg: Tensor | None,
                   wpsi: Tensor, bpsi: Tensor | None) -> tuple[Tensor, Tensor]:
    """Attention U-Net gate: returns (x * alpha, alpha), alpha = sigmoid(psi(relu(Wx x + bx + Wg g + bg)) + bpsi).

    x [B, Cx, *s] (skip), g [B, Cg, *s] (gating signal at x's size), wx [F, Cx, 1...], wg [F, Cg, 1...],
    wpsi [1, F, 1...]; 2-D or 3-D, contiguous or channels_last."""
    if x.is_cuda and x.dtype in TRITON_DTYPES:
        return attention_gate_triton(x, g, wx, bx, wg, bg, wpsi, bpsi)
    return attention_gate_reference(x, g, wx, bx, wg, bg, wpsi, bpsi)
