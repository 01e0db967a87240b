"""Compile every Triton kernel of ops/ for an H100 (sm_90) without a GPU, as the launchers launch it.

The launchers run on CPU tensors with each kernel launch recorded instead of executed (so the constexprs, warps and
stages are the ones a CUDA call would pick), then every distinct launch goes through `triton.compile`. This catches
what only Triton's compiler rejects (the interpreter accepts it, e.g. a loop-carried name changing type). Run it in a
process without TRITON_INTERPRET: `python tests/ops/sm90_compile.py` (tests/ops/test_compile_sm90.py does).
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

if os.environ.get("TRITON_INTERPRET") == "1":
    raise SystemExit("run without TRITON_INTERPRET=1: the interpreter replaces the compiler this script checks")
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402
import triton  # noqa: E402
import triton.language as tl  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402
from triton.runtime.jit import JITFunction  # noqa: E402

TARGET = GPUTarget("cuda", 90, 32)
_PTR = {torch.bfloat16: "*bf16", torch.float16: "*fp16", torch.float32: "*fp32", torch.int32: "*i32",
        torch.int64: "*i64", torch.int8: "*i8", torch.uint8: "*u8", torch.bool: "*i1"}


def _arg_type(value: Any) -> str:
    """Triton's signature type of a runtime (non-constexpr) argument."""
    if isinstance(value, torch.Tensor):
        return _PTR[value.dtype]
    if isinstance(value, bool):
        return "i1"
    if isinstance(value, int):
        return "i32" if -2**31 <= value < 2**31 else "i64"
    if isinstance(value, float):
        return "fp32"
    raise TypeError(f"no Triton signature type for {type(value).__name__} {value!r}")


class Recorder:
    """Replaces `JITFunction.run` while active: each launch is stored as (kernel, signature, constexprs, options)."""

    def __init__(self) -> None:
        self.launches: dict[tuple, tuple] = {}

    def run(self, fn: JITFunction, *args: Any, grid: Any = None, warmup: bool = False, **kwargs: Any) -> None:
        options = {k: kwargs.pop(k) for k in ("num_warps", "num_stages") if k in kwargs}
        bound = dict(zip(fn.arg_names, args)) | kwargs
        missing = [n for n in fn.arg_names if n not in bound]
        if missing:
            raise TypeError(f"{fn.__name__}: launch without {missing}")
        sig, consts = {}, {}
        for i, (name, param) in enumerate(zip(fn.arg_names, fn.params)):
            value = bound[name]
            if param.is_constexpr or value is None:
                sig[name], consts[(i,)] = "constexpr", value
            else:
                sig[name] = _arg_type(value)
        key = (fn.__name__, tuple(sig.items()), tuple((k, str(v)) for k, v in consts.items()),
               tuple(sorted(options.items())))
        self.launches.setdefault(key, (fn, sig, consts, options))

    def __enter__(self) -> "Recorder":
        self._orig = JITFunction.run
        recorder = self

        def run(fn: JITFunction, *args: Any, grid: Any = None, warmup: bool = False, **kwargs: Any) -> None:
            recorder.run(fn, *args, grid=grid, warmup=warmup, **kwargs)
        JITFunction.run = run
        return self

    def __exit__(self, *exc: Any) -> None:
        JITFunction.run = self._orig


def _leaf(*shape: int, dtype: torch.dtype, channels_last: bool = False) -> torch.Tensor:
    t = torch.randn(*shape).to(dtype)
    if channels_last:
        t = t.contiguous(memory_format=torch.channels_last if t.dim() == 4 else torch.channels_last_3d)
    return t.requires_grad_()


def na_launches() -> None:
    """Forward and backward over 1-D/2-D/3-D, dilation, stride, causal, small and large windows, head_dim 32/128."""
    from ops.na.params import make_params
    from ops.na.triton_kernels import na_bwd_triton, na_fwd_triton

    cases = [((64,), 7, 1, 1, False, 32, torch.bfloat16), ((300,), 65, 2, 1, True, 64, torch.float16),
             ((20, 24), 7, 1, 1, False, 32, torch.bfloat16), ((40, 40), 31, 1, 1, False, 64, torch.bfloat16),
             ((24, 24), 5, 3, 2, (True, False), 32, torch.float32), ((8, 10, 12), 3, 1, 1, False, 32, torch.bfloat16),
             ((10, 10, 10), (5, 3, 7), 1, (1, 2, 1), (True, False, False), 128, torch.bfloat16)]
    for shape, ks, dil, stride, causal, hd, dtype in cases:
        p = make_params(shape, ks, dil, stride, causal)
        q, k, v, do = (torch.randn(1, *shape, 2, hd).to(dtype) for _ in range(4))
        out, lse = na_fwd_triton(q, k, v, p, hd ** -0.5)
        na_bwd_triton(do, q, k, v, out, lse, p, hd ** -0.5)


def lka_launches() -> None:
    """lka forward and backward, 2-D channels-last bf16 and 3-D fp32, with and without programmatic dependent launch
    (which the launchers pick only for CUDA tensors on sm_90 and up: forced here)."""
    from ops.lka import kernels, lka_triton

    real_pdl = kernels._pdl
    for spatial, c, dtype, pdl in (((16, 16), 64, torch.bfloat16, False), ((16, 16), 64, torch.bfloat16, True),
                                   ((6, 7, 8), 32, torch.float32, False)):
        kernels._pdl = (lambda t: {"PDL": True}) if pdl else real_pdl
        one = (1,) * len(spatial)
        x = _leaf(2, c, *spatial, dtype=dtype, channels_last=True)
        ws = [_leaf(c, 1, *(5,) * len(spatial), dtype=dtype), _leaf(c, dtype=dtype),
              _leaf(c, 1, *(7,) * len(spatial), dtype=dtype), _leaf(c, dtype=dtype), _leaf(c, c, *one, dtype=dtype),
              _leaf(c, dtype=dtype)]
        try:
            lka_triton(x, *ws, dilation=3).sum().backward()
        finally:
            kernels._pdl = real_pdl


def gate_launches() -> None:
    """attention_gate forward and backward: 2-D bf16, 3-D fp16 without biases, wide F (split channel blocks)."""
    from ops.gate import attention_gate_triton

    for spatial, cx, cg, f, dtype, biases in (((16, 16), 64, 64, 32, torch.bfloat16, True),
                                               ((6, 7, 8), 32, 48, 20, torch.float16, False),
                                               ((12, 12), 128, 128, 64, torch.bfloat16, True)):
        one = (1,) * len(spatial)
        x, g = _leaf(2, cx, *spatial, dtype=dtype, channels_last=True), _leaf(2, cg, *spatial, dtype=dtype)
        b = (lambda n: _leaf(n, dtype=dtype)) if biases else (lambda n: None)
        out, alpha = attention_gate_triton(x, g, _leaf(f, cx, *one, dtype=dtype), b(f), _leaf(f, cg, *one, dtype=dtype),
                                           b(f), _leaf(1, f, *one, dtype=dtype), b(1))
        (out.sum() + alpha.sum()).backward()


def axial_launches() -> None:
    """Axial attention with relative terms, forward and backward: bf16 head_dim 32 and fp32 head_dim 128."""
    from ops.axial import axial_rel_attention_triton

    for shape, axis, dtype in (((2, 40, 12, 2, 32), 0, torch.bfloat16), ((1, 9, 33, 2, 128), 1, torch.float32)):
        L, d = shape[axis + 1], shape[-1]
        q, k, v = (_leaf(*shape, dtype=dtype) for _ in range(3))
        rels = [_leaf(2 * L - 1, d, dtype=dtype) for _ in range(3)]
        gates = torch.ones(4, requires_grad=True)
        axial_rel_attention_triton(q, k, v, axis, *rels, gates).sum().backward()


OPS: dict[str, Callable[[], None]] = {"na": na_launches, "lka": lka_launches, "gate": gate_launches,
                                      "axial": axial_launches}


def main(names: list[str]) -> int:
    failures = []
    for name in names or list(OPS):
        with Recorder() as rec:
            OPS[name]()
        for fn, sig, consts, options in rec.launches.values():
            shown = {fn.arg_names[i[0]]: (v.__name__ if isinstance(v, tl.dtype) and hasattr(v, "__name__") else v)
                     for i, v in consts.items()}
            start = time.perf_counter()
            try:
                triton.compile(ASTSource(fn, sig, constexprs=consts), target=TARGET, options=options)
                print(f"ok   {name} {fn.__name__} {options} {shown} ({time.perf_counter() - start:.1f} s)", flush=True)
            except Exception as e:  # report every failing launch, then fail
                failures.append(f"{fn.__name__} {options} {shown}: {type(e).__name__}: {e}")
                print(f"FAIL {name} {fn.__name__} {options} {shown}\n{e}", flush=True)
        if not rec.launches:
            failures.append(f"{name}: no kernel launch recorded")
    print(f"{len(failures)} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
