"""Private helpers shared by the Triton kernel modules (kept apart from `_nd` so the references never import
Triton): the `tl` dtype map, `Launch`/`launch` (kernel launches with a cached fast path) and the device-side
`to_f32` conversion, and `beside` (work on a second CUDA stream)."""
from __future__ import annotations

import inspect
import os
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Sequence

import torch
import triton
import triton.language as tl
from triton import knobs
from triton.runtime.driver import driver

__all__ = ["TL_DTYPE", "INTERPRET", "Launch", "launch", "to_f32", "beside"]

TL_DTYPE: dict[torch.dtype, tl.dtype] = {torch.float16: tl.float16, torch.bfloat16: tl.bfloat16,
                                         torch.float32: tl.float32}
"""`torch` dtype -> the `tl` dtype passed as a kernel's `DT` constexpr; keys are `ops._nd.TRITON_DTYPES`."""

INTERPRET: bool = os.environ.get("TRITON_INTERPRET", "0") == "1"
"""Whether Triton runs kernels in its CPU interpreter (read once, as Triton does, before kernels are imported)."""


@triton.jit
def to_f32(v, FAST: tl.constexpr):
    """`v.to(tl.float32)`; with FAST (pass `not INTERPRET`: the interpreter has no inline assembly) a bf16 pair
    converts with one shift and one mask instead of the compiler's three ops, which counts in loops that
    convert every loaded element once per multiply-add."""
    if FAST and v.dtype == tl.bfloat16:
        return tl.inline_asm_elementwise("shl.b32 $0, $2, 16; and.b32 $1, $2, 0xffff0000;", "=r,=r,r", [v],
                                         dtype=tl.float32, is_pure=True, pack=2)
    else:
        return v.to(tl.float32)


def _hooks_set(fn: Any) -> bool:
    """Whether anything watches launches (profilers, user hooks): those launches take Triton's own path."""
    rt = knobs.runtime
    return bool(fn.pre_run_hooks or getattr(rt.launch_enter_hook, "calls", rt.launch_enter_hook)
                or getattr(rt.launch_exit_hook, "calls", rt.launch_exit_hook))


class Launch:
    """One Triton kernel at a fixed grid, trailing runtime arguments, constexprs and options (a launch plan).

    Calling it with `*args` runs `fn[grid](*args, *fixed, **kwargs)`. The first launch per device and per dtype and
    16-byte alignment of each tensor in `args` goes through `JITFunction.run`, which compiles and returns the
    kernel; later ones call that compiled kernel's launcher directly, skipping the per-call argument binding,
    specialization and cache-key work of `JITFunction.run`, which costs tens of microseconds of host time per launch
    and dominates small problems. Everything else the compiled kernel was specialized on is fixed by the plan, so
    the tensors in `args` must be the only per-call values Triton specializes on: per-call scalars must be floats
    (never specialized). Launches under the interpreter, on CPU tensors or with launch hooks set always take
    Triton's own path."""

    __slots__ = ("fn", "grid", "fixed", "kwargs", "_tail", "_kernels")

    def __init__(self, fn: Any, grid: Sequence[int], fixed: Sequence[Any] = (), **kwargs: Any) -> None:
        self.fn, self.fixed, self.kwargs = fn, tuple(fixed), kwargs
        self.grid = (*grid, 1, 1)[:3]
        self._tail: tuple | None = None  # constexpr values in parameter order, set on the first compiled launch
        self._kernels: dict[tuple, Any] = {}

    def _constexpr_tail(self, npos: int) -> tuple:
        """The kernel parameters after the positional ones, in signature order: keywords given here, else defaults."""
        tail = []
        for p in self.fn.params[npos:]:
            if p.name in self.kwargs:
                tail.append(self.kwargs[p.name])
            elif p.default is not inspect.Parameter.empty:
                tail.append(p.default)
            else:
                raise TypeError(f"{self.fn.__name__}: no value for kernel parameter {p.name!r}")
        return tuple(tail)

    def __call__(self, *args: Any) -> None:
        if not args[0].is_cuda or _hooks_set(self.fn):
            self._jit_launch(args)
            return
        device = driver.active.get_current_device()
        key = (device, *[(a.dtype, a.data_ptr() % 16 == 0) for a in args if isinstance(a, torch.Tensor)])
        compiled = self._kernels.get(key)
        if compiled is None:
            self._first_launch(key, args)
            return
        run, function, metadata = compiled
        run(*self.grid, driver.active.get_current_stream(device), function, metadata, None, None, None,
            *args, *self.fixed, *self._tail)

    def _jit_launch(self, args: tuple) -> Any:
        """Launch through `JITFunction.run` (compiling on a cache miss); returns what it returns."""
        return self.fn[self.grid](*args, *self.fixed, **self.kwargs)

    def _first_launch(self, key: tuple, args: tuple) -> None:
        """Launch through `JITFunction.run` and keep the compiled kernel's launcher for `key`."""
        kernel = self._jit_launch(args)
        kernel = kernel.result() if hasattr(kernel, "result") else kernel
        if kernel is None or getattr(kernel, "function", None) is None:
            return
        if self._tail is None:
            self._tail = self._constexpr_tail(len(args) + len(self.fixed))
        self._kernels[key] = (kernel.run, kernel.function, kernel.packed_metadata)


_LAUNCHES: dict[tuple, Launch] = {}
_MAX_LAUNCHES = 1024


def launch(fn: Any, grid: Sequence[int], tensors: Sequence[torch.Tensor], scalars: Sequence[Any] = (),
           **kwargs: Any) -> None:
    """`fn[grid](*tensors, *scalars, **kwargs)` through a `Launch` kept per (kernel, grid, scalars, keywords), for
    launchers that rebuild their arguments on every call. The kernel's leading parameters must be the tensors;
    the scalars after them (ints, floats, hashable) and the keywords are part of the cache key."""
    key = (fn, tuple(grid), tuple(scalars), tuple(kwargs.items()))
    plan = _LAUNCHES.get(key)
    if plan is None:
        if len(_LAUNCHES) >= _MAX_LAUNCHES:
            _LAUNCHES.clear()
        plan = _LAUNCHES[key] = Launch(fn, grid, scalars, **kwargs)
    plan(*tensors)


_SIDE_STREAMS: dict[int, torch.cuda.Stream] = {}


@contextmanager
def beside(t: torch.Tensor) -> Iterator[Callable[..., None]]:
    """Yields `side(fn, *args, **kwargs)`, which runs fn on a second CUDA stream after everything queued so far on the
    current one (on other devices: right away); on exit the current stream waits for it. fn should write into
    tensors allocated outside (on the current stream): those, and the inputs, are safe to free after the exit, since
    later work on the current stream is ordered after the side stream's."""
    if not t.is_cuda:
        yield lambda fn, *args, **kwargs: fn(*args, **kwargs)
        return
    main = torch.cuda.current_stream(t.device)
    stream = _SIDE_STREAMS.get(t.device.index)
    if stream is None:
        stream = _SIDE_STREAMS[t.device.index] = torch.cuda.Stream(t.device)

    def side(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        stream.wait_stream(main)
        with torch.cuda.stream(stream):
            fn(*args, **kwargs)

    try:
        yield side
    finally:
        main.wait_stream(stream)
