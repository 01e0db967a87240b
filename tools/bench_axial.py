"""Axial-attention benchmark (GPU, bf16), one pass per spatial axis. rel_pos off: `axial_attention` (SDPA on strided
line views) vs SDPA on the same tensors already laid out as [lines, heads, L, d]; rel_pos on: fused Triton forward
and backward vs the unfused PyTorch composition (eager and torch.compile). `python tools/bench_ops.py axial
[--out ...]`."""
from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchlib import (fwd_bwd, fwd_ms, markdown_table, op_args, ratio, speedup, tflops,  # noqa: E402
                      time_ms, write_report)

CASES = [(8, 8, (128, 128), 32), (4, 8, (256, 256), 32), (2, 4, (64, 64, 64), 32)]


def _timed(fn, grads: list[torch.Tensor] | None, wrt: list[torch.Tensor] | None = None) -> float | None:
    """Forward time (no grad) when grads is None, else the time of forward and the gradients of `wrt`; None when the
    call fails."""
    try:
        return fwd_ms(fn) if grads is None else time_ms(fwd_bwd(fn, grads, wrt))
    except Exception as e:  # a failing baseline (e.g. out of memory) is reported, not hidden
        print(f"failed: {type(e).__name__}: {str(e)[:200]}", file=sys.stderr)
        torch.cuda.empty_cache()
        return None


def main(argv: list[str] | None = None) -> None:
    argv, args = op_args("axial", argv)
    from ops.axial import axial_attention, axial_rel_attention_reference, axial_rel_attention_triton
    from ops.axial.reference import to_lines

    torch.manual_seed(0)
    dt = torch.bfloat16
    compiled_ref = torch.compile(axial_rel_attention_reference)
    rows_off, rows_on, raw = [], [], []
    for b, h, s, d in CASES:
        label = f"B{b} h{h} {'x'.join(map(str, s))} d{d}"
        nsp = len(s)
        q, k, v = (torch.randn(b, *s, h, d, device="cuda", dtype=dt, requires_grad=True) for _ in range(3))
        lines = [[to_lines(t, a).detach().contiguous().requires_grad_() for t in (q, k, v)] for a in range(nsp)]
        flops = 4 * b * h * torch.Size(s).numel() * d * sum(s)   # QK^T and PV over all axes
        grads = [torch.randn_like(q)] * nsp
        per_axis = [[t.detach().clone().requires_grad_() for t in (q, k, v)] for _ in range(nsp)]  # as SDPA's lines
        ours = lambda: [axial_attention(*per_axis[a], a) for a in range(nsp)]  # noqa: E731
        sdpa = lambda: [F.scaled_dot_product_attention(*lines[a]) for a in range(nsp)]  # noqa: E731
        line_grads = [torch.randn_like(lines[a][0]) for a in range(nsp)]
        r = {"case": label}
        for mode, g_ours, g_sdpa in (("fwd", None, None), ("fwd+bwd", grads, line_grads)):
            r[f"ours {mode}"] = _timed(ours, g_ours, [t for axis_inputs in per_axis for t in axis_inputs])
            r[f"sdpa {mode}"] = _timed(sdpa, g_sdpa, [t for axis_lines in lines for t in axis_lines])
        rows_off.append([label, r["sdpa fwd"], r["ours fwd"], ratio(r["sdpa fwd"], r["ours fwd"]),
                         tflops(flops / 1e9, r["ours fwd"]), r["sdpa fwd+bwd"], r["ours fwd+bwd"],
                         ratio(r["sdpa fwd+bwd"], r["ours fwd+bwd"])])
        rels = [[(torch.randn(2 * s[a] - 1, d, device="cuda", dtype=dt) * 0.3).requires_grad_() for _ in range(3)]
                for a in range(nsp)]
        gates = torch.tensor([0.1, 0.1, 1.0, 0.1], device="cuda", requires_grad=True)
        impls = {"eager": axial_rel_attention_reference, "compile": compiled_ref, "triton": axial_rel_attention_triton}
        for name, fn in impls.items():
            call = lambda fn=fn: [fn(q, k, v, a, *rels[a], gates) for a in range(nsp)]  # noqa: E731
            r[f"rel {name} fwd"] = _timed(call, None)
            r[f"rel {name} fwd+bwd"] = _timed(call, grads, [q, k, v, *(t for r3 in rels for t in r3), gates])
            torch.cuda.empty_cache()

        def speed(a: str, m: str) -> str | None:
            return speedup(r.get(f"rel {a} {m}"), r.get(f"rel triton {m}"))
        rows_on.append([label] + [r[f"rel {n} fwd"] for n in impls] + [speed("eager", "fwd"), speed("compile", "fwd")]
                       + [r[f"rel {n} fwd+bwd"] for n in impls] + [speed("eager", "fwd+bwd"),
                                                                    speed("compile", "fwd+bwd")])
        raw.append(r)
        print(r, flush=True)
    body = ("bf16, q, k, v [B, *spatial, heads, d] contiguous; every row is one pass per spatial axis. fwd+bwd "
            "returns the gradients of every input (torch.autograd.grad), adding nothing into .grad tensors. With "
            "rel_pos off, each axis's pass gets inputs of its own on both sides (SDPA's pre-arranged lines and ours), "
            "so neither pays for summing one input's gradients over the axes.\n\n"
            "## rel_pos off: `axial_attention` vs SDPA on the same tensors pre-arranged as [lines, heads, L, d]\n\n"
            + markdown_table(["case", "SDPA fwd (ms)", "ours fwd (ms)", "ours/SDPA throughput fwd", "ours TFLOP/s fwd",
                              "SDPA fwd+bwd (ms)", "ours fwd+bwd (ms)", "ours/SDPA throughput fwd+bwd"], rows_off)
            + "\n## rel_pos on (gated): fused Triton forward and backward vs the unfused PyTorch composition\n\n"
            "The Triton path's backward is fused too (a dK/dV and a dQ kernel recompute the probabilities tile by "
            "tile from the forward's log-sum-exp; nothing of size L x L reaches memory).\n\n"
            + markdown_table(["case", "eager fwd (ms)", "compile fwd (ms)", "triton fwd (ms)", "vs eager fwd",
                              "vs compile fwd", "eager fwd+bwd (ms)", "compile fwd+bwd (ms)", "triton fwd+bwd (ms)",
                              "vs eager fwd+bwd", "vs compile fwd+bwd"], rows_on))
    write_report(args.out, "Axial attention benchmark", "python tools/bench_ops.py axial " + " ".join(argv), body,
                 data=raw)


if __name__ == "__main__":
    main()
