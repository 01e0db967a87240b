"""Op benchmarks on the GPU: `python tools/bench_ops.py {na,lka,gate,axial} [--out FILE]`.

Each op's benchmark lives in `tools/bench_<op>.py` with a `main(argv)`; this file only dispatches.
"""
from __future__ import annotations

import importlib
import sys
from pathlib import Path

OPS = ("na", "lka", "gate", "axial")


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in OPS:
        raise SystemExit(f"usage: bench_ops.py {{{','.join(OPS)}}} [options]; got {argv[:1] or 'nothing'}")
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    importlib.import_module(f"bench_{argv[0]}").main(argv[1:])


if __name__ == "__main__":
    main()
