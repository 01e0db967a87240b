"""Shared benchmark plumbing: GPU timing (median of triton.testing.do_bench), peak memory, environment header,
and Markdown tables, so every `tools/bench_*.py` reports the same way."""
from __future__ import annotations

import platform
from pathlib import Path
from typing import Callable, Sequence

import torch

__all__ = ["env_header", "time_ms", "peak_mem_mb", "markdown_table", "write_report"]


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


def peak_mem_mb(fn: Callable[[], object]) -> float:
    """Peak GPU memory (MiB) allocated during one call of ``fn`` above what was allocated before it."""
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base) / 2**20


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    def fmt(v: object) -> str:
        if v is None:
            return "n/a"
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"
        return str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def write_report(path: str | Path, title: str, command: str, body: str) -> None:
    """Write a Markdown report with the environment header; prints it too."""
    text = f"# {title}\n\n{env_header(command)}\n{body}"
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(text)
    print(text)
