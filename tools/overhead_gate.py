"""Per-call CPU overhead of the attention-gate op path (no GPU needed): the Triton launchers are replaced by stubs
that only allocate their outputs, so what is timed is the Python wrapper, argument checks and autograd/custom-op
dispatch. Compares the eager path (autograd.Function) with the torch.library custom ops that torch.compile uses.
`python tools/overhead_gate.py [--iters N]`."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchlib import fwd_bwd, host_us  # noqa: E402


def _stub_launchers() -> None:
    """Replace the kernel launchers by allocations of what they return."""
    import ops.gate.kernels as k

    def fwd(x, g, wx, wg, bx, bg, wpsi, bpsi):
        return torch.empty_like(x), torch.empty_like(x[:, :1])

    def bwd(x, g, wx, wg, bx, bg, wpsi, bpsi, dout, dalpha):
        f, cx, cg = wx.shape[0], x.shape[1], g.shape[1]
        return torch.empty_like(x), torch.empty_like(g), torch.zeros(sum(k.wgrad_sizes(f, cx, cg)), dtype=wx.dtype)

    k.gate_fwd_triton, k.gate_bwd_triton = fwd, bwd


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--iters", type=int, default=2000)
    iters = p.parse_args(argv).iters
    _stub_launchers()
    from ops.gate import attention_gate_triton
    from ops.gate.op import _gate_fwd

    torch.manual_seed(0)
    x, g = torch.randn(2, 8, 4, 4, requires_grad=True), torch.randn(2, 8, 4, 4, requires_grad=True)
    ps = [t.requires_grad_() for t in (torch.randn(4, 8, 1, 1), torch.randn(4), torch.randn(4, 8, 1, 1),
                                       torch.randn(4), torch.randn(1, 4, 1, 1), torch.randn(1))]
    dout, leaves = torch.randn_like(x), [x, g, *ps]

    def step(fn: Callable) -> Callable[[], object]:
        return fwd_bwd(lambda: fn(x, g, *ps)[0], dout, leaves)

    def no_grad(fn: Callable) -> Callable[[], object]:
        def run() -> None:
            with torch.no_grad():
                fn(x, g, *ps)
        return run

    stub = host_us(lambda: (torch.empty_like(x), torch.empty_like(x[:, :1])), iters)[0]
    print(f"stub forward launch alone (2x empty_like): {stub:.1f} us")
    for name, fn in (("attention_gate_triton (eager path)", attention_gate_triton), ("custom op directly", _gate_fwd)):
        print(f"{name}: fwd (no_grad) {host_us(no_grad(fn), iters)[0]:.1f} us, "
              f"fwd+bwd (autograd.grad of out) {host_us(step(fn), iters)[0]:.1f} us")


if __name__ == "__main__":
    main()
