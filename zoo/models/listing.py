"""`zoo models`: registered models with family, dims, parameters and GFLOPs at a stated input size."""
from __future__ import annotations

import argparse

from zoo.models.summary import DEFAULT_INPUT_SIZE, iter_model_table

__all__ = ["models_main"]


def models_main(argv: list[str] | None = None) -> int:
    """Print the model table (rows appear as they are computed); also written as Markdown with --markdown FILE."""
    parser = argparse.ArgumentParser(
        prog="zoo models",
        description="List segzoo's registered models: name, family, dims, parameters and forward GFLOPs (2 x "
                    f"multiply-adds, batch 1, 1 input channel, 2 classes) at {DEFAULT_INPUT_SIZE[2]} in 2-D and "
                    f"{DEFAULT_INPUT_SIZE[3]} in 3-D, counted on the meta device (no weights allocated). "
                    "`timm:<name>` (2-D) and `monai:AttentionUnet|UNETR|SwinUNETR` are also accepted by "
                    "zoo.create_model but not listed.")
    parser.add_argument("pattern", nargs="?", default="*", help="shell-style name pattern (default: all)")
    parser.add_argument("--no-flops", action="store_true", help="skip the GFLOPs count (faster)")
    parser.add_argument("--pretrained", action="store_true",
                        help="only names with shipped weights (<model>_<dataset>, see docs/MODEL_ZOO.md)")
    parser.add_argument("--markdown", metavar="FILE", help="also write the table as Markdown to FILE")
    args = parser.parse_args(argv)
    from rich.console import Console
    from rich.table import Table

    from zoo.registry import list_models

    header = ("name", "family", "dims", "params (M)", "GFLOPs", "input")
    table = Table(title="segzoo models")
    for col in header:
        table.add_column(col, no_wrap=col == "name")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    names = list_models(args.pattern, pretrained=True if args.pretrained else None)
    for row in iter_model_table(names, flops=not args.no_flops):
        cells = (row.name, row.family, f"{row.spatial_dims}-D", f"{row.params / 1e6:.2f}",
                 "n/a" if row.gflops is None else f"{row.gflops:.1f}", "x".join(map(str, row.input_size)))
        table.add_row(*cells)
        lines.append("| " + " | ".join(cells) + " |")
    Console().print(table)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write("\n".join(lines) + "\n")
    return 0
