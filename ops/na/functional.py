"""Functional neighborhood attention `na1d/na2d/na3d` on NATTEN's `[B, *spatial, heads, head_dim]` layout, with
argument checks and backend dispatch (`triton` on CUDA, `reference` elsewhere; `flex` on request)."""
from __future__ import annotations

from typing import Optional

from torch import Tensor

from .._nd import TRITON_DTYPES
from .params import BoolOrSeq, IntOrSeq, NAParams, check_qkv, make_params
from .reference import na_reference

__all__ = ["na1d", "na2d", "na3d", "neighborhood_attention", "BACKENDS"]

BACKENDS = ("reference", "triton", "flex")


def _interpreting() -> bool:
    from .triton_kernels import INTERPRET

    return INTERPRET


def _pick_backend(q: Tensor, backend: Optional[str], rpb: Optional[Tensor]) -> str:
    if backend is not None and backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS} or None, got {backend!r}")
    if backend is None:
        if rpb is not None:
            return "flex" if q.is_cuda else "reference"
        ok = q.is_cuda and q.dtype in TRITON_DTYPES and q.shape[-1] <= 128
        return "triton" if ok else "reference"
    if backend == "triton":
        if rpb is not None:
            raise ValueError("backend='triton' does not take a relative positional bias; use 'flex' or 'reference'")
        if not (q.is_cuda or _interpreting()):
            raise ValueError(f"backend='triton' needs CUDA tensors (or TRITON_INTERPRET=1), got device {q.device}")
        if q.dtype not in TRITON_DTYPES:
            raise ValueError(f"backend='triton' supports dtypes {TRITON_DTYPES}, got {q.dtype}")
        if q.shape[-1] > 128:
            raise ValueError(f"backend='triton' supports head_dim <= 128, got {q.shape[-1]}")
    return backend


def neighborhood_attention(q: Tensor, k: Tensor, v: Tensor, ndim: int, kernel_size: IntOrSeq, dilation: IntOrSeq = 1,
                           stride: IntOrSeq = 1, is_causal: BoolOrSeq = False, scale: Optional[float] = None,
                           backend: Optional[str] = None, rpb: Optional[Tensor] = None) -> Tensor:
    """NA over `ndim` spatial axes; `rpb` (`[heads, *(2k-1 per axis)]`, NAT/DiNAT's relative positional bias)
    is supported by the `reference` and `flex` backends."""
    check_qkv(q, k, v, ndim)
    p = make_params(q.shape[1:1 + ndim], kernel_size, dilation, stride, is_causal)
    if scale is None:
        scale = q.shape[-1] ** -0.5
    if rpb is not None:
        _check_rpb(rpb, p, q.shape[-2])
    be = _pick_backend(q, backend, rpb)
    if be == "reference":
        return na_reference(q, k, v, p, scale, rpb=rpb)
    if be == "flex":
        from .flex import na_flex

        return na_flex(q, k, v, p, scale, rpb=rpb)
    from .custom_op import na_triton

    return na_triton(q, k, v, p, scale)


def _check_rpb(rpb: Tensor, p: NAParams, heads: int) -> None:
    want = (heads, *[2 * k - 1 for k in p.kernel_size])
    if tuple(rpb.shape) != want:
        raise ValueError(f"rpb must have shape {want} ([heads, 2*kernel_size-1 per axis]), got {tuple(rpb.shape)}")
    if any(s != 1 for s in p.stride):
        raise ValueError(f"rpb (relative positional bias) needs stride 1 on every axis, got stride {p.stride}")


def na1d(q: Tensor, k: Tensor, v: Tensor, kernel_size: IntOrSeq, dilation: IntOrSeq = 1, stride: IntOrSeq = 1,
         is_causal: BoolOrSeq = False, scale: Optional[float] = None, backend: Optional[str] = None) -> Tensor:
    """1-D neighborhood attention on `[B, L, heads, head_dim]` (NATTEN semantics)."""
    return neighborhood_attention(q, k, v, 1, kernel_size, dilation, stride, is_causal, scale, backend)


def na2d(q: Tensor, k: Tensor, v: Tensor, kernel_size: IntOrSeq, dilation: IntOrSeq = 1, stride: IntOrSeq = 1,
         is_causal: BoolOrSeq = False, scale: Optional[float] = None, backend: Optional[str] = None) -> Tensor:
    """2-D neighborhood attention on `[B, H, W, heads, head_dim]` (NATTEN semantics)."""
    return neighborhood_attention(q, k, v, 2, kernel_size, dilation, stride, is_causal, scale, backend)


def na3d(q: Tensor, k: Tensor, v: Tensor, kernel_size: IntOrSeq, dilation: IntOrSeq = 1, stride: IntOrSeq = 1,
         is_causal: BoolOrSeq = False, scale: Optional[float] = None, backend: Optional[str] = None) -> Tensor:
    """3-D neighborhood attention on `[B, D, H, W, heads, head_dim]` (NATTEN semantics)."""
    return neighborhood_attention(q, k, v, 3, kernel_size, dilation, stride, is_causal, scale, backend)
