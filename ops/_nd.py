"""Private helpers shared by the ops: functional convs by spatial rank, argument checks, memory formats and the
eager/compiled dispatch of the fused kernels."""
from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["conv_fn", "conv_module", "check_spatial_dims", "check_shape", "check_same", "next_pow2", "cdiv",
           "TRITON_DTYPES", "channels_last_format", "memory_format_of", "eager_or_traced"]

TRITON_DTYPES: tuple[torch.dtype, ...] = (torch.float16, torch.bfloat16, torch.float32)
"""The dtypes every fused Triton op takes; the public dispatchers send anything else to the reference."""

_CONV_FN: dict[int, Callable[..., torch.Tensor]] = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_CONV_MOD: dict[int, type[nn.Module]] = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}


def check_spatial_dims(spatial_dims: int, allowed: Sequence[int] = (2, 3)) -> None:
    if spatial_dims not in allowed:
        raise ValueError(f"spatial_dims must be one of {tuple(allowed)}, got {spatial_dims!r}")


def conv_fn(spatial_dims: int) -> Callable[..., torch.Tensor]:
    """`F.conv{1,2,3}d` chosen by the spatial rank."""
    check_spatial_dims(spatial_dims, (1, 2, 3))
    return _CONV_FN[spatial_dims]


def conv_module(spatial_dims: int, *args, **kwargs) -> nn.Module:
    """`nn.Conv{1,2,3}d` chosen by the spatial rank."""
    check_spatial_dims(spatial_dims, (1, 2, 3))
    return _CONV_MOD[spatial_dims](*args, **kwargs)


def check_shape(name: str, t: torch.Tensor, expected: Sequence[int | None]) -> None:
    """Raise a ValueError naming `name` when `t.shape` differs from `expected` (None matches any size)."""
    if t.shape == tuple(expected):
        return
    ok = t.dim() == len(expected) and all(e is None or e == s for e, s in zip(expected, t.shape))
    if not ok:
        want = "[" + ", ".join("*" if e is None else str(e) for e in expected) + "]"
        raise ValueError(f"{name} must have shape {want}, got {list(t.shape)}")


def check_same(name_a: str, a: object, name_b: str, b: object, what: str) -> None:
    if a != b:
        raise ValueError(f"{what} of {name_a} and {name_b} must match, got {a} and {b}")


def next_pow2(n: int) -> int:
    return 1 << max(0, int(n) - 1).bit_length()


def cdiv(a: int, b: int) -> int:
    """ceil(a / b) for launch grids: plain int arithmetic (`triton.cdiv` costs microseconds per host call)."""
    return -(-a // b)


def channels_last_format(t: torch.Tensor) -> torch.memory_format:
    """The channels-last memory format for a 4-D (`channels_last`) or 5-D (`channels_last_3d`) tensor."""
    return torch.channels_last if t.dim() == 4 else torch.channels_last_3d


def memory_format_of(t: torch.Tensor) -> torch.memory_format:
    """The layout `t` is stored in: channels-last where it is that and not also plain contiguous, else contiguous."""
    if t.dim() in (4, 5) and t.is_contiguous(memory_format=channels_last_format(t)) and not t.is_contiguous():
        return channels_last_format(t)
    return torch.contiguous_format


def eager_or_traced(function: type[torch.autograd.Function], op: Callable[..., Any]) -> Callable[..., Any]:
    """A callable running `function.apply` in eager mode and the torch.library custom op `op` while torch.compile
    traces: custom-op dispatch costs tens of microseconds per call that a plain autograd.Function does not, while
    Dynamo needs the custom op (fake impl, registered autograd). Both must launch the same kernels."""
    def call(*args: Any) -> Any:
        if torch.compiler.is_compiling():
            return op(*args)
        return function.apply(*args)
    return call
