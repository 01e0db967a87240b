"""LKA benchmark (GPU, bf16, channels_last): Triton kernels vs cuDNN eager vs torch.compile of the same composition
vs the bandwidth floor, forward and forward+backward. `python tools/bench_ops.py lka [--out docs/benchmarks/lka.md]`."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchlib import markdown_table, time_ms, write_report  # noqa: E402

CASES = [(16, 64, (128, 128)), (32, 128, (64, 64)), (8, 256, (64, 64)), (2, 32, (64, 64, 64))]


def copy_bandwidth() -> float:
    """Measured device copy bandwidth in bytes/ms (read + write) of a 1 GiB bf16 buffer."""
    a = torch.empty(2**29, device="cuda", dtype=torch.bfloat16)
    b = torch.empty_like(a)
    return 2 * a.numel() * a.element_size() / time_ms(lambda: b.copy_(a))


def fwd_bwd(fn: Callable[[], torch.Tensor], grad: torch.Tensor) -> Callable[[], None]:
    """A closure running forward then backward with a fixed output gradient."""
    def run() -> None:
        fn().backward(grad)
    return run


def graph_ms(fn: Callable[[], object]) -> float:
    """Median ms of ``fn`` captured once in a CUDA graph and replayed: GPU time without per-launch CPU overhead."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return time_ms(graph.replay)


def floor_ms(nbytes: float, bw: float) -> float:
    return nbytes / bw


def graph_fwd_bwd_ms(fn: Callable, inputs: list, grad: torch.Tensor) -> float:
    """Median ms of forward+backward with both passes replayed from CUDA graphs (torch.cuda.make_graphed_callables)."""
    pos = [i for i, t in enumerate(inputs) if isinstance(t, torch.Tensor)]

    def tensors_only(*ts: torch.Tensor) -> torch.Tensor:
        args = list(inputs)
        for i, t in zip(pos, ts):
            args[i] = t
        out = fn(*args)
        return out[0] if isinstance(out, tuple) else out

    graphed = torch.cuda.make_graphed_callables(tensors_only, tuple(inputs[i] for i in pos), allow_unused_input=True)
    return time_ms(lambda: graphed(*(inputs[i] for i in pos)).backward(grad))


def run_cases(fns: dict[str, Callable], make: Callable, cases: list, bw: float, bytes_fn: Callable,
              graphed: tuple[str, ...] = ("eager (cuDNN)", "triton")) -> list[dict]:
    """Time each implementation forward and forward+backward on each case; then, for the `graphed` ones, the same
    replayed from CUDA graphs (no per-launch CPU overhead; run last so a capture failure cannot spoil the rest).
    Returns one row dict per case."""
    rows, made = [], []
    for case in cases:
        inputs, label = make(*case)
        made.append(inputs)
        row: dict = {"case": label}
        nb_f, nb_fb = bytes_fn(*case)
        row["floor fwd"], row["floor fwd+bwd"] = floor_ms(nb_f, bw), floor_ms(nb_fb, bw)
        for name, fn in fns.items():
            try:
                out = fn(*inputs)
                out = out[0] if isinstance(out, tuple) else out
                row[f"grad {name}"] = grad = torch.randn_like(out)
                with torch.no_grad():
                    row[f"{name} fwd"] = time_ms(lambda: fn(*inputs))
                first = lambda: (lambda o: o[0] if isinstance(o, tuple) else o)(fn(*inputs))  # noqa: E731
                row[f"{name} fwd+bwd"] = time_ms(fwd_bwd(first, grad))
            except Exception as e:  # a failing baseline is reported, not hidden
                print(f"{label} {name}: {type(e).__name__}: {e}", file=sys.stderr)
                row[f"{name} fwd"] = row[f"{name} fwd+bwd"] = None
            torch.cuda.empty_cache()
        rows.append(row)
        print({k: v for k, v in row.items() if not k.startswith("grad")}, flush=True)
    for row, inputs in zip(rows, made):
        for name in graphed:
            for key, timer in (("graph fwd", lambda: _graph_fwd(fns[name], inputs)),
                               ("graph fwd+bwd", lambda: graph_fwd_bwd_ms(fns[name], inputs, row[f"grad {name}"]))):
                try:
                    row[f"{name} {key}"] = timer()
                except Exception as e:
                    print(f"{row['case']} {name} {key}: {type(e).__name__}: {str(e)[:300]}", file=sys.stderr)
                    row[f"{name} {key}"] = None
        print({k: v for k, v in row.items() if "graph" in k}, flush=True)
    for row in rows:
        for k in [k for k in row if k.startswith("grad")]:
            del row[k]
    return rows


def _graph_fwd(fn: Callable, inputs: list) -> float:
    with torch.no_grad():
        return graph_ms(lambda: fn(*inputs))


def report(rows: list[dict], names: list[str], ours: str, title: str, out: str, argv: list[str], notes: str) -> None:
    body = notes
    for m in ("fwd", "fwd+bwd"):
        header = (["case"] + [f"{n} (ms)" for n in names] + ["floor (ms)", f"{ours} vs {names[0]}", f"{ours} / floor"]
                  + [f"{names[0]} graph (ms)", f"{ours} graph (ms)", f"{ours} graph vs {names[0]} graph",
                     f"{ours} graph / floor"])
        table = []
        for r in rows:
            fl = r[f"floor {m}"]
            line = [r["case"]] + [r.get(f"{n} {m}") for n in names] + [fl]
            o, e = r.get(f"{ours} {m}"), r.get(f"{names[0]} {m}")
            line += [f"{e / o:.1f}x" if o and e else None, f"{o / fl:.1f}x" if o else None]
            go, ge = r.get(f"{ours} graph {m}"), r.get(f"{names[0]} graph {m}")
            line += [ge, go, f"{ge / go:.1f}x" if go and ge else None, f"{go / fl:.1f}x" if go else None]
            table.append(line)
        body += f"\n## {m}\n\n" + markdown_table(header, table)
    cmd = "python tools/bench_ops.py " + " ".join(argv)
    write_report(out, title, cmd, body)
    Path(out).with_suffix(".json").write_text(json.dumps(rows, indent=1))


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(prog="bench_ops.py lka")
    p.add_argument("--out", default="docs/benchmarks/lka.md")
    args = p.parse_args(argv)
    from ops.lka import lka_reference, lka_triton

    torch.manual_seed(0)
    dt = torch.bfloat16

    def make(b: int, c: int, s: tuple[int, ...]):
        nd = len(s)
        fmt = torch.channels_last if nd == 2 else torch.channels_last_3d
        x = torch.randn(b, c, *s, device="cuda", dtype=dt).to(memory_format=fmt).requires_grad_()
        ps = [torch.randn(c, 1, *(5,) * nd), torch.randn(c), torch.randn(c, 1, *(7,) * nd), torch.randn(c),
              torch.randn(c, c, *(1,) * nd) / c**0.5, torch.randn(c)]
        ps = [t.to("cuda", dt).requires_grad_() for t in ps]
        return [x, *ps, 3], f"B{b} C{c} {'x'.join(map(str, s))}"

    def nbytes(b: int, c: int, s: tuple[int, ...]) -> tuple[float, float]:
        n = b * c * torch.Size(s).numel() * 2
        return 2 * n, 5 * n   # fwd: read x, write out; bwd adds read x, dout, write dx

    compiled = torch.compile(lka_reference)
    fns = {"eager (cuDNN)": lka_reference, "torch.compile": compiled, "triton": lka_triton}
    rows = run_cases(fns, make, CASES, copy_bandwidth(), nbytes)
    notes = ("bf16, channels_last, kernels 5 then 7 with dilation 3. Floor = (bytes that must move) / measured copy "
             "bandwidth: fwd reads x and writes out; fwd+bwd also reads x and dout and writes dx. Plain columns time "
             "eager calls (CPU launch overhead included); 'graph' columns replay the same calls from CUDA graphs "
             "(torch.cuda.make_graphed_callables for fwd+bwd). "
             "fwd+bwd includes accumulating the leaf gradients, as a training step does.\n")
    report(rows, list(fns), "triton", "Large-kernel attention (LKA) benchmark", args.out, ["lka", *argv], notes)


if __name__ == "__main__":
    main()
