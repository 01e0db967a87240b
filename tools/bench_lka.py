"""LKA benchmark (GPU, bf16, channels_last): Triton kernels vs cuDNN eager vs torch.compile of the same composition
vs the bandwidth floor, forward and forward+backward. `python tools/bench_ops.py lka [--out docs/benchmarks/lka.md]`."""
from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchlib import channels_last_leaf, cuda_leaves, floor_benchmark, op_args  # noqa: E402

CASES = [(16, 64, (128, 128)), (32, 128, (64, 64)), (8, 256, (64, 64)), (2, 32, (64, 64, 64))]
NOTES = ("bf16, channels_last, kernels 5 then 7 with dilation 3. Floor = (bytes that must move) / measured copy "
         "bandwidth: fwd reads x and writes out; fwd+bwd also reads x and dout and writes dx. Plain columns time "
         "eager calls (CPU launch overhead included); 'graph' columns replay the same calls from CUDA graphs, "
         "fwd+bwd as the whole step (forward and torch.autograd.grad) captured in one graph: GPU time only. "
         "fwd+bwd returns the gradients of every input (torch.autograd.grad), as a training step computes them, and "
         "adds nothing into existing .grad tensors.\n")


def make(b: int, c: int, s: tuple[int, ...]) -> tuple[list, str]:
    """One case's inputs (x channels-last, w0, b0, w1, b1, w2, b2: bf16 CUDA leaves; dilation 3) and its label."""
    dt, nd = torch.bfloat16, len(s)
    x = channels_last_leaf(b, c, *s, dtype=dt)
    ps = cuda_leaves([torch.randn(c, 1, *(5,) * nd), torch.randn(c), torch.randn(c, 1, *(7,) * nd),
                      torch.randn(c), torch.randn(c, c, *(1,) * nd) / c**0.5, torch.randn(c)], dt)
    return [x, *ps, 3], f"B{b} C{c} {'x'.join(map(str, s))}"


def main(argv: list[str] | None = None) -> None:
    argv, args = op_args("lka", argv)
    from ops.lka import lka_reference, lka_triton

    def nbytes(b: int, c: int, s: tuple[int, ...]) -> tuple[float, float]:
        n = b * c * torch.Size(s).numel() * 2
        return 2 * n, 5 * n   # fwd: read x, write out; bwd adds read x, dout, write dx

    compiled = torch.compile(lka_reference)
    fns = {"eager (cuDNN)": lka_reference, "torch.compile": compiled, "triton": lka_triton}
    floor_benchmark("lka", argv, args.out, "Large-kernel attention (LKA) benchmark", NOTES, fns, make, CASES, nbytes)


if __name__ == "__main__":
    main()
