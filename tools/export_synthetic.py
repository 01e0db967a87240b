"""Write a split of the built-in procedural data to disk (images/, masks/, dataset.json), as a config defines it.

So `zoo predict` and `zoo eval` can be run on the very cases the quickstart validated on:

    python tools/export_synthetic.py --config configs/quickstart.yaml --split val --output data/quickstart_val
"""
from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from zoo.data import SyntheticSegDataModule


def main(argv: list[str] | None = None) -> Path:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", required=True, help="a YAML whose data is zoo.data.SyntheticSegDataModule")
    p.add_argument("--split", default="val", choices=("train", "val", "test"))
    p.add_argument("--output", required=True, help="folder to write images/, masks/ and dataset.json into")
    args = p.parse_args(argv)
    data = (yaml.safe_load(Path(args.config).read_text()) or {}).get("data") or {}
    if not str(data.get("class_path", "")).endswith("SyntheticSegDataModule"):
        raise SystemExit(f"--config {args.config}: data.class_path must be zoo.data.SyntheticSegDataModule, "
                         f"got {data.get('class_path')!r}")
    out = SyntheticSegDataModule(**(data.get("init_args") or {})).export(args.output, args.split)
    print(f"wrote {args.split} cases to {out}")
    return out


if __name__ == "__main__":
    main()
