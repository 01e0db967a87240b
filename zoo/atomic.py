"""Atomic file writes: write to a hidden temporary name beside the target, then rename onto it.

A killed process never leaves a half-written target: readers see the old file or the new one, never a mix.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

__all__ = ["write_atomic"]


def write_atomic(path: str | os.PathLike, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a temporary file in ``path``'s folder (created if needed), then rename it to ``path``;
    the temporary file is removed if anything fails."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
