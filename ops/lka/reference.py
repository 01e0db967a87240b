"""Pure-PyTorch large-kernel attention (VAN): any device, dtype and spatial rank, autograd through it."""
from __future__ import annotations

import torch

from .._nd import check_shape, conv_fn

__all__ = ["check_lka_args", "lka_reference"]


def check_lka_args(x: torch.Tensor, w0: torch.Tensor, b0: torch.Tensor | None, w1: torch.Tensor,
                   b1: torch.Tensor | None, w2: torch.Tensor, b2: torch.Tensor | None, dilation: int) -> int:
    """Validate shapes; returns the number of spatial dims."""
    if x.dim() not in (4, 5):
        raise ValueError(f"x must be [B, C, *spatial] with 2 or 3 spatial dims, got shape {list(x.shape)}")
    nd, c = x.dim() - 2, x.shape[1]
    if not isinstance(dilation, int) or dilation < 1:
        raise ValueError(f"dilation must be a positive int, got {dilation!r}")
    for name, w in (("w0", w0), ("w1", w1)):
        check_shape(name, w, [c, 1, *[None] * nd])
        if any(k % 2 == 0 for k in w.shape[2:]):
            raise ValueError(f"{name} kernel sizes must be odd for 'same' padding, got {list(w.shape[2:])}")
    check_shape("w2", w2, [c, c, *[1] * nd])
    for name, b in (("b0", b0), ("b1", b1), ("b2", b2)):
        if b is not None:
            check_shape(name, b, [c])
    return nd


def lka_reference(x: torch.Tensor, w0: torch.Tensor, b0: torch.Tensor | None, w1: torch.Tensor,
                  b1: torch.Tensor | None, w2: torch.Tensor, b2: torch.Tensor | None, dilation: int = 3
                  ) -> torch.Tensor:
    """x * pw(dw_dilated(dw(x))): depthwise w0, depthwise w1 with `dilation`, pointwise w2; 'same' padding."""
    conv = conv_fn(check_lka_args(x, w0, b0, w1, b1, w2, b2, dilation))
    c = x.shape[1]

    def cast(t: torch.Tensor | None) -> torch.Tensor | None:
        return None if t is None else t.to(x.dtype)

    a = conv(x, cast(w0), cast(b0), padding=[(k - 1) // 2 for k in w0.shape[2:]], groups=c)
    a = conv(a, cast(w1), cast(b1), padding=[dilation * (k - 1) // 2 for k in w1.shape[2:]], dilation=dilation,
             groups=c)
    return x * conv(a, cast(w2), cast(b2))
