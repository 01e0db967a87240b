"""`zoo models`: the registered models as a table (name, family, dims)."""
from __future__ import annotations

import argparse

from zoo.registry import get_model_entry, list_models

__all__ = ["models_main"]


def models_main(argv: list[str] | None = None) -> None:
    """Print registered models matching a pattern."""
    parser = argparse.ArgumentParser(prog="zoo models", description="List the models in segzoo's registry.")
    parser.add_argument("pattern", nargs="?", default="*", help="shell-style name pattern (default: all)")
    args = parser.parse_args(argv)
    from rich.console import Console
    from rich.table import Table

    table = Table(title="segzoo models")
    for col in ("name", "family", "dims"):
        table.add_column(col)
    for name in list_models(args.pattern):
        e = get_model_entry(name)
        table.add_row(name, e.family, ",".join(f"{d}-D" for d in e.spatial_dims))
    Console().print(table)
