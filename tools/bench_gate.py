"""Attention-gate benchmark (GPU, bf16, channels_last): fused Triton vs cuDNN eager vs torch.compile vs the bandwidth
floor, forward and forward+backward. `python tools/bench_ops.py gate [--out docs/benchmarks/gate.md]`."""
from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchlib import channels_last_leaf, cuda_leaves, floor_benchmark, op_args  # noqa: E402

CASES = [(16, 64, 32, (128, 128)), (8, 128, 64, (128, 128)), (2, 32, 16, (64, 64, 64))]
NOTES = ("bf16, channels_last, g at x's size with Cg = Cx. Floor = (bytes that must move) / measured copy "
         "bandwidth: fwd reads x, g and writes out, alpha; fwd+bwd also reads x, g, dout and writes dx, dg. "
         "fwd+bwd times the gradient of out only; it returns the gradients of every input (torch.autograd.grad), as a "
         "training step computes them, and adds nothing into existing .grad tensors. Plain columns "
         "time eager calls (CPU launch overhead included); 'graph' columns replay the same calls from "
         "CUDA graphs, fwd+bwd as the whole step (forward and torch.autograd.grad) captured in one graph: GPU time "
         "only.\n")


def make(b: int, c: int, f: int, s: tuple[int, ...]) -> tuple[list[torch.Tensor], str]:
    """One case's inputs (x, g, wx, bx, wg, bg, wpsi, bpsi: bf16 CUDA leaves, x and g channels-last) and its label."""
    dt = torch.bfloat16
    x, g = channels_last_leaf(b, c, *s, dtype=dt), channels_last_leaf(b, c, *s, dtype=dt)
    one = (1,) * len(s)
    ps = cuda_leaves([torch.randn(f, c, *one) / c**0.5, torch.randn(f), torch.randn(f, c, *one) / c**0.5,
                      torch.randn(f), torch.randn(1, f, *one) / f**0.5, torch.randn(1)], dt)
    return [x, g, *ps], f"B{b} C{c} F{f} {'x'.join(map(str, s))}"


def main(argv: list[str] | None = None) -> None:
    argv, args = op_args("gate", argv)
    from ops.gate import attention_gate_reference, attention_gate_triton

    def nbytes(b: int, c: int, f: int, s: tuple[int, ...]) -> tuple[float, float]:
        n = b * torch.Size(s).numel() * 2
        fwd = n * (c + c + c + 1)              # read x, g; write out, alpha
        return fwd, fwd + n * (3 * c + 2 * c)  # bwd: read x, g, dout; write dx, dg

    fns = {"eager (cuDNN)": attention_gate_reference, "torch.compile": torch.compile(attention_gate_reference),
           "triton": attention_gate_triton}
    floor_benchmark("gate", argv, args.out, "Attention gate benchmark", NOTES, fns, make, CASES, nbytes)


if __name__ == "__main__":
    main()
