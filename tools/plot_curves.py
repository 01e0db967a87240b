"""Training curves of `zoo fit` runs as one PNG: train loss per epoch (left) and a validation metric (right;
Dice by default, `--metric val/top1` for classifiers), one colour per run, drawn with Pillow (no plotting library
needed).

    python tools/plot_curves.py runs/drive_unet/metrics.csv runs/drive_attention_unet/metrics.csv \\
        --labels unet attention_unet --title "DRIVE" --output docs/training/drive_curves.png
"""
from __future__ import annotations

import argparse
import csv
import math
from pathlib import Path

from PIL import Image, ImageDraw

from zoo.overlay import class_colors

W, H, PAD = 520, 360, 56


def read_curves(path: str | Path, metric: str = "val/dice") -> dict[str, list[tuple[float, float]]]:
    """``{"train/loss_epoch": [(epoch, value), ...], metric: [...]}`` from a Lightning CSVLogger file."""
    curves: dict[str, list[tuple[float, float]]] = {"train/loss_epoch": [], metric: []}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            for key, points in curves.items():
                if row.get(key):
                    points.append((float(row["epoch"]) + 1, float(row[key])))
    if not any(curves.values()):
        raise ValueError(f"{path}: no train/loss_epoch or {metric} rows (is it a zoo fit metrics.csv?)")
    return curves


def _panel(series: list[tuple[str, list[tuple[float, float]]]], title: str,
           colours: list[tuple[int, ...]]) -> Image.Image:
    img = Image.new("RGB", (W, H), "white")
    d = ImageDraw.Draw(img)
    pts = [p for _, s in series for p in s]
    x1 = max((x for x, _ in pts), default=1.0)
    y0, y1 = min((y for _, y in pts), default=0.0), max((y for _, y in pts), default=1.0)
    if math.isclose(y0, y1):
        y0, y1 = y0 - 0.5, y1 + 0.5

    def to_px(x: float, y: float) -> tuple[float, float]:
        return PAD + x / x1 * (W - 1.5 * PAD), H - PAD - (y - y0) / (y1 - y0) * (H - 2 * PAD)

    d.rectangle([PAD, PAD, W - PAD / 2, H - PAD], outline="black")
    for i in range(5):
        y = y0 + (y1 - y0) * i / 4
        d.text((4, to_px(0, y)[1] - 6), f"{y:.3g}", fill="black")
        x = x1 * i / 4
        d.text((to_px(x, y0)[0] - 8, H - PAD + 6), f"{x:.0f}", fill="black")
    d.text((W / 2 - 20, H - 22), "epoch", fill="black")
    d.text((PAD, 14), title, fill="black")
    for k, ((label, s), colour) in enumerate(zip(series, colours)):
        if len(s) > 1:
            d.line([to_px(x, y) for x, y in s], fill=colour, width=2)
        for x, y in s[-1:]:
            d.text((W - PAD * 3.2, PAD + 6 + 14 * k), f"{label}: {y:.4f}", fill=colour)
    return img


def plot(files: list[str], labels: list[str], title: str, output: str | Path, metric: str = "val/dice") -> Path:
    """Write the two-panel PNG and return its path."""
    curves = [read_curves(f, metric) for f in files]
    colours = [tuple(int(c) for c in rgb) for rgb in class_colors(len(files) + 1)[1:]]
    loss = _panel([(l, c["train/loss_epoch"]) for l, c in zip(labels, curves)], f"{title}: train loss", colours)
    name = {"val/dice": "Dice", "val/top1": "top-1"}.get(metric, metric)
    dice = _panel([(l, c[metric]) for l, c in zip(labels, curves)], f"{title}: validation {name}", colours)
    out = Image.new("RGB", (2 * W, H), "white")
    out.paste(loss, (0, 0))
    out.paste(dice, (W, 0))
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    out.save(output)
    return output


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("files", nargs="+", help="metrics.csv of each run")
    p.add_argument("--labels", nargs="+", help="one per file (default: the run folder names)")
    p.add_argument("--title", default="")
    p.add_argument("--output", required=True)
    p.add_argument("--metric", default="val/dice", help="validation column of metrics.csv for the right panel")
    args = p.parse_args(argv)
    labels = args.labels or [Path(f).parent.name for f in args.files]
    if len(labels) != len(args.files):
        p.error(f"--labels: expected {len(args.files)} labels (one per file), got {len(labels)}")
    print(plot(args.files, labels, args.title, args.output, args.metric))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
