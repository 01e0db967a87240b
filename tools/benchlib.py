"""Shared benchmark plumbing for every `tools/bench_*.py`: GPU timing (median of triton.testing.do_bench, plain or
replayed from CUDA graphs), peak memory, copy-bandwidth floors, the per-case runner of the floor benchmarks, ratio
and TFLOP/s formatting, and Markdown/JSON reports with the environment header, so every tool reports the same way."""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import torch

__all__ = ["env_header", "time_ms", "fwd_ms", "peak_mem_mb", "first", "fwd_bwd", "graph_ms", "graph_fwd_bwd_ms",
           "channels_last_leaf", "cuda_leaves", "copy_bandwidth", "floor_ms", "run_cases", "floor_report",
           "floor_benchmark", "op_args", "ratio", "tflops", "speedup", "fmt_num", "markdown_table", "write_report"]


def env_header(command: str) -> str:
    """GPU name, versions and the command that produced the table."""
    import triton

    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    return (f"- GPU: {gpu}\n- torch {torch.__version__}, triton {triton.__version__}, "
            f"CUDA {torch.version.cuda}, Python {platform.python_version()}\n- command: `{command}`\n")


def time_ms(fn: Callable[[], object], warmup: int = 25, rep: int = 100) -> float:
    """Median milliseconds of ``fn()`` on the GPU (events, L2 flushed between runs by do_bench)."""
    from triton.testing import do_bench

    return float(do_bench(fn, warmup=warmup, rep=rep, return_mode="median"))


def host_us(fn: Callable[[], object], iters: int, repeats: int = 5) -> tuple[float, float]:
    """(host, wall) microseconds per call of the fastest of `repeats` rounds of `iters` calls, after a warm-up: host =
    the time to issue them, wall = until the GPU has run them too (= host without CUDA). Host time is noisy between
    rounds, hence the best round."""
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    for _ in range(max(iters // 10, 5)):
        fn()
    sync()
    best = (float("inf"), float("inf"))
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(iters):
            fn()
        t1 = time.perf_counter()
        sync()
        best = min(best, ((t1 - t0) / iters * 1e6, (time.perf_counter() - t0) / iters * 1e6))
    return best


def fwd_ms(fn: Callable[[], object]) -> float:
    """Median ms of a forward call without autograd bookkeeping (under ``torch.no_grad``)."""
    with torch.no_grad():
        return time_ms(fn)


def peak_mem_mb(fn: Callable[[], object]) -> float:
    """Peak GPU memory (MiB) allocated during one call of ``fn`` above what was allocated before it."""
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base) / 2**20


def first(out: Any) -> Any:
    """The first output of an op returning a tuple (e.g. ``(out, alpha)``), else the output itself."""
    return out[0] if isinstance(out, tuple) else out


def fwd_bwd(fn: Callable[[], Any], grad: Any, wrt: Sequence[torch.Tensor]) -> Callable[[], tuple[torch.Tensor, ...]]:
    """A closure running ``fn()`` forward then backward with fixed output gradient(s) (a tensor, or a list matching a
    list of outputs) and returning the gradients of ``wrt`` (``torch.autograd.grad``: nothing accumulated into
    ``.grad``, as a training step with ``zero_grad(set_to_none=True)`` computes them)."""
    def grads() -> tuple[torch.Tensor, ...]:
        return torch.autograd.grad(fn(), wrt, grad)
    return grads


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


def graph_fwd_bwd_ms(fn: Callable, inputs: list, grad: torch.Tensor) -> float:
    """Median ms of one forward+backward step (``torch.autograd.grad`` of every leaf, as in `run_cases`) captured
    whole in one CUDA graph and replayed: its GPU time, without the per-launch and autograd-engine host time that
    the plain timing pays (and that dominates small problems on a slow host)."""
    return graph_ms(fwd_bwd(lambda: first(fn(*inputs)), grad, grad_leaves(inputs)))


def grad_leaves(inputs: Sequence[object]) -> list[torch.Tensor]:
    """The inputs a forward+backward differentiates: every tensor that requires grad."""
    return [t for t in inputs if isinstance(t, torch.Tensor) and t.requires_grad]


def _graph_fwd_ms(fn: Callable, inputs: list) -> float:
    with torch.no_grad():
        return graph_ms(lambda: fn(*inputs))


def channels_last_leaf(*shape: int, dtype: torch.dtype) -> torch.Tensor:
    """A random CUDA activation [B, C, *spatial] in channels_last(_3d) memory format that requires grad."""
    fmt = torch.channels_last if len(shape) == 4 else torch.channels_last_3d
    return torch.randn(*shape, device="cuda", dtype=dtype).to(memory_format=fmt).requires_grad_()


def cuda_leaves(tensors: Sequence[torch.Tensor], dtype: torch.dtype) -> list[torch.Tensor]:
    """``tensors`` (e.g. weights drawn on the CPU) moved to the GPU in ``dtype`` as leaves that require grad."""
    return [t.to("cuda", dtype).requires_grad_() for t in tensors]


def copy_bandwidth() -> float:
    """Measured device copy bandwidth in bytes/ms (read + write) of a 1 GiB bf16 buffer."""
    a = torch.empty(2**29, device="cuda", dtype=torch.bfloat16)
    b = torch.empty_like(a)
    return 2 * a.numel() * a.element_size() / time_ms(lambda: b.copy_(a))


def floor_ms(nbytes: float, bw: float) -> float:
    """Bandwidth floor: the ms that moving ``nbytes`` takes at ``bw`` bytes/ms."""
    return nbytes / bw


def run_cases(fns: dict[str, Callable], make: Callable, cases: list, bw: float, bytes_fn: Callable,
              graphed: tuple[str, ...] = ("triton", "eager (cuDNN)")) -> list[dict]:
    """Time each implementation forward and forward+backward on each case; then, for the `graphed` ones, the same
    replayed from CUDA graphs (no host overhead; run last, so that a failing capture cannot spoil the plain timings,
    and ours first).
    ``make(*case)`` gives (inputs, label), ``bytes_fn(*case)`` the bytes that fwd and fwd+bwd must move.
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
                # no output kept: a live autograd graph of the last case made its CUDA-graph capture fail
                row[f"grad {name}"] = grad = torch.randn_like(first(fn(*inputs)))
                row[f"{name} fwd"] = fwd_ms(lambda: fn(*inputs))
                row[f"{name} fwd+bwd"] = time_ms(fwd_bwd(lambda: first(fn(*inputs)), grad, grad_leaves(inputs)))
            except Exception as e:  # a failing baseline is reported, not hidden
                print(f"{label} {name}: {type(e).__name__}: {e}", file=sys.stderr)
                row[f"{name} fwd"] = row[f"{name} fwd+bwd"] = None
            torch.cuda.empty_cache()
        rows.append(row)
        print({k: v for k, v in row.items() if not k.startswith("grad")}, flush=True)
    for row, inputs in zip(rows, made):
        for name in graphed:
            for key, timer in (("graph fwd", lambda: _graph_fwd_ms(fns[name], inputs)),
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


def floor_report(rows: list[dict], names: list[str], ours: str, title: str, out: str, argv: list[str],
                 notes: str) -> None:
    """Markdown (fwd and fwd+bwd tables: times, floor, `ours` vs the first of `names`, plain and graphed) and JSON
    report of `run_cases` rows; `argv` is what followed `tools/bench_ops.py` on the command line."""
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
            line += [speedup(e, o), speedup(o, fl)]
            go, ge = r.get(f"{ours} graph {m}"), r.get(f"{names[0]} graph {m}")
            line += [ge, go, speedup(ge, go), speedup(go, fl)]
            table.append(line)
        body += f"\n## {m}\n\n" + markdown_table(header, table)
    write_report(out, title, "python tools/bench_ops.py " + " ".join(argv), body, data=rows)


def floor_benchmark(op: str, argv: list[str], out: str, title: str, notes: str, fns: dict[str, Callable],
                    make: Callable, cases: list, bytes_fn: Callable) -> None:
    """`run_cases` (seeded, so inputs repeat from run to run) at the measured copy bandwidth, then `floor_report` of
    "triton" vs the first of `fns`."""
    torch.manual_seed(0)
    rows = run_cases(fns, make, cases, copy_bandwidth(), bytes_fn)
    floor_report(rows, list(fns), "triton", title, out, [op, *argv], notes)


def op_args(op: str, argv: list[str] | None) -> tuple[list[str], argparse.Namespace]:
    """(argv, parsed args) of an op benchmark whose only option is `--out` (default docs/benchmarks/<op>.md)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(prog=f"bench_ops.py {op}")
    p.add_argument("--out", default=f"docs/benchmarks/{op}.md")
    return argv, p.parse_args(argv)


def ratio(a: Optional[float], b: Optional[float]) -> Optional[float]:
    """a / b, None when either is missing."""
    return None if a is None or b is None else a / b


def tflops(gflop: float, ms: Optional[float], factor: float = 1.0) -> Optional[float]:
    """TFLOP/s of ``gflop * factor`` GFLOP done in ``ms`` (GFLOP / ms == TFLOP/s); None when the time is missing."""
    return None if ms is None else gflop * factor / ms


def speedup(a: Optional[float], b: Optional[float]) -> Optional[str]:
    """a / b as a table cell like "2.5x"; None (n/a) when either is missing."""
    return f"{a / b:.1f}x" if a and b else None


def fmt_num(x: Optional[float], digits: int = 2) -> str:
    """``x`` with ``digits`` decimals for prose, "n/a" when missing."""
    return "n/a" if x is None else f"{x:.{digits}f}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table; floats with 3 significant digits (integers from 1000 up), None as "n/a"."""
    def fmt(v: object) -> str:
        if v is None:
            return "n/a"
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"
        return str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def write_report(path: str | Path, title: str, command: str, body: str, data: Any = None, env: Optional[str] = None,
                 runs: Sequence[str] = ()) -> None:
    """Write a Markdown report headed by the environment (``env_header(command)``, or ``env`` kept from an earlier
    run) and a line per further merged command in ``runs``; ``data`` goes as JSON next to it. Prints the Markdown."""
    text = f"# {title}\n\n{env_header(command) if env is None else env}" + "".join(f"- run: `{c}`\n" for c in runs)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{text}\n{body}")
    if data is not None:
        path.with_suffix(".json").write_text(json.dumps(data, indent=1))
    print(f"{text}\n{body}")
