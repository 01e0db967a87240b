"""Host (CPU) time of the fused ops on the GPU machine: one NA kernel launch through Triton's `JITFunction.run`
against the cached `ops._triton.Launch` path, and whole forward+backward steps of NA S1, the 3-D attention gate and
two LKA cases against a bare one-op autograd step (each the best of 5 rounds: host time is noisy). Small problems
are bound by this time when it exceeds their GPU time. `python tools/host_cost.py [--iters N]` (CUDA GPU)."""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench_gate import CASES as GATE_CASES  # noqa: E402
from bench_gate import make as make_gate_case  # noqa: E402
from bench_lka import CASES as LKA_CASES  # noqa: E402
from bench_lka import make as make_lka_case  # noqa: E402
from bench_na import CASES as NA_CASES  # noqa: E402
from benchlib import env_header, first, fwd_bwd, host_us, markdown_table  # noqa: E402


def _na_s1() -> tuple[Callable, Callable, Callable]:
    """NA S1 of the NA benchmark (bf16): its forward launch via JITFunction.run and via Launch, and its whole step."""
    from ops.na import na2d
    from ops.na.params import make_params
    from ops.na.triton_kernels import LOG2E, launch_plans

    shape, ks, dil, B, H, D, _ = NA_CASES["S1"]
    q, k, v = (torch.randn(B, *shape, H, D, device="cuda", dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
    fwd = launch_plans(q, make_params(shape, ks, dil)).fwd
    qd = q.detach()
    args = (qd, k.detach(), v.detach(), torch.empty_like(qd),
            torch.empty(B, H, math.prod(shape), device="cuda"), D ** -0.5 * LOG2E)
    step = fwd_bwd(lambda: na2d(q, k, v, ks, dil, backend="triton"), torch.randn_like(q), (q, k, v))
    return (lambda: fwd.fn[fwd.grid](*args, *fwd.fixed, **fwd.kwargs)), (lambda: fwd(*args)), step


def _gate_3d() -> Callable:
    """The gate benchmark's 3-D case: its whole step."""
    from ops.gate import attention_gate_triton

    inputs, _ = make_gate_case(*GATE_CASES[-1])
    grad = torch.randn_like(first(attention_gate_triton(*inputs)))
    return fwd_bwd(lambda: first(attention_gate_triton(*inputs)), grad, inputs)


def _lka_step(case: tuple) -> Callable:
    """One LKA benchmark case's whole step."""
    from ops.lka import lka_triton

    inputs, _ = make_lka_case(*case)
    return fwd_bwd(lambda: lka_triton(*inputs), torch.randn_like(inputs[0]), inputs[:-1])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="host_cost.py", description=__doc__)
    ap.add_argument("--iters", type=int, default=300)
    iters = ap.parse_args(argv).iters
    if not torch.cuda.is_available():
        raise SystemExit("host_cost.py needs a CUDA GPU")
    jit_launch, cached_launch, na_step = _na_s1()
    y = torch.randn(16, 64, 64, 4, 32, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    gy = torch.randn_like(y)
    cases = [("NA S1 forward launch, JITFunction.run", jit_launch),
             ("NA S1 forward launch, ops._triton.Launch", cached_launch),
             ("NA S1 fwd+bwd step", na_step), ("gate 3-D fwd+bwd step", _gate_3d()),
             ("LKA B32 C128 64x64 fwd+bwd step", _lka_step(LKA_CASES[1])),
             ("LKA B8 C256 64x64 fwd+bwd step", _lka_step(LKA_CASES[2])),
             ("bare autograd step (x * 2, torch.autograd.grad)", lambda: torch.autograd.grad(y * 2.0, (y,), gy))]
    rows = [(name, *(f"{t:.1f}" for t in host_us(fn, iters))) for name, fn in cases]
    cmd = "python tools/host_cost.py " + " ".join(argv if argv is not None else sys.argv[1:])
    print(env_header(cmd.strip()))
    print(markdown_table(("call", "host us per call", "wall us per call (host + GPU)"), rows))


if __name__ == "__main__":
    main()
