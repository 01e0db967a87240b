"""Pure-PyTorch attention gate (Attention U-Net): any device, dtype and spatial rank, autograd through it."""
from __future__ import annotations

import torch

from .._nd import check_same, check_shape, conv_fn

__all__ = ["check_gate_args", "attention_gate_reference"]


def check_gate_args(x: torch.Tensor, g: torch.Tensor, wx: torch.Tensor, bx: torch.Tensor | None, wg: torch.Tensor,
                    bg: torch.Tensor | None, wpsi: torch.Tensor, bpsi: torch.Tensor | None) -> int:
    """Validate shapes; returns the number of spatial dims."""
    if x.dim() not in (4, 5):
        raise ValueError(f"x must be [B, C, *spatial] with 2 or 3 spatial dims, got shape {list(x.shape)}")
    nd = x.dim() - 2
    check_same("x", x.dim(), "g", g.dim(), "ranks")
    check_same("x", x.shape[0], "g", g.shape[0], "batch sizes")
    check_same("x", tuple(x.shape[2:]), "g", tuple(g.shape[2:]), "spatial sizes")
    f = wx.shape[0] if wx.dim() else -1
    ones = [1] * nd
    check_shape("wx", wx, [f, x.shape[1], *ones])
    check_shape("wg", wg, [f, g.shape[1], *ones])
    check_shape("wpsi", wpsi, [1, f, *ones])
    for name, b, n in (("bx", bx, f), ("bg", bg, f), ("bpsi", bpsi, 1)):
        if b is not None:
            check_shape(name, b, [n])
    return nd


def attention_gate_reference(x: torch.Tensor, g: torch.Tensor, wx: torch.Tensor, bx: torch.Tensor | None,
                             wg: torch.Tensor, bg: torch.Tensor | None, wpsi: torch.Tensor,
                             bpsi: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(x * alpha, alpha) with alpha = sigmoid(psi(relu(Wx x + Wg g))); all convs 1x1."""
    conv = conv_fn(check_gate_args(x, g, wx, bx, wg, bg, wpsi, bpsi))
    h = torch.relu(conv(x, wx.to(x.dtype), None if bx is None else bx.to(x.dtype))
                   + conv(g, wg.to(x.dtype), None if bg is None else bg.to(x.dtype)))
    alpha = torch.sigmoid(conv(h, wpsi.to(x.dtype), None if bpsi is None else bpsi.to(x.dtype)))
    return x * alpha, alpha
