"""Turn DRIVE's ground truth and field-of-view masks (0/255 GIFs, named `01_manual1.gif` / `01_test_mask.gif`)
into 0/1 PNG label maps named like the images (`01_test.png`), so `zoo eval` can match them to predictions.

    python tools/prepare_drive_eval.py ../shared/datasets/DRIVE/test --output data/drive_test_eval
    zoo predict --ckpt best.ckpt ../shared/datasets/DRIVE/test/images --output pred --save-probs
    zoo eval --pred pred --gt data/drive_test_eval/gt --roi-dir data/drive_test_eval/fov --probs pred/probs \
        --num-classes 2
"""
from __future__ import annotations

import argparse
from pathlib import Path


from zoo.data.drive import read_binary_mask
from zoo.data.io import write_mask


def prepare(split_dir: str | Path, output: str | Path) -> Path:
    """Write `output/gt/<image stem>.png` (vessel = 1) and `output/fov/<image stem>.png` (inside FOV = 1)."""
    split_dir, output = Path(split_dir), Path(output)
    images = sorted((split_dir / "images").glob("*.tif"))
    if not images:
        raise FileNotFoundError(f"no DRIVE images (*.tif) in {split_dir / 'images'}")
    (output / "gt").mkdir(parents=True, exist_ok=True)
    (output / "fov").mkdir(parents=True, exist_ok=True)
    for image in images:
        case = image.stem.split("_")[0]  # "01" of "01_test" / "21_training"
        gt = split_dir / "1st_manual" / f"{case}_manual1.gif"
        fov = next(iter(sorted((split_dir / "mask").glob(f"{case}_*mask.gif"))), None)
        if not gt.is_file() or fov is None:
            raise FileNotFoundError(f"DRIVE case {image.name}: expected {gt} and {split_dir / 'mask'}/{case}_*mask.gif")
        write_mask(output / "gt" / f"{image.stem}.png", read_binary_mask(gt))
        write_mask(output / "fov" / f"{image.stem}.png", read_binary_mask(fov))
    return output


def main(argv: list[str] | None = None) -> Path:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("split_dir", help="a DRIVE split folder holding images/, 1st_manual/ and mask/")
    p.add_argument("--output", required=True, help="folder to write gt/ and fov/ into")
    args = p.parse_args(argv)
    out = prepare(args.split_dir, args.output)
    print(f"wrote {out / 'gt'} and {out / 'fov'}")
    return out


if __name__ == "__main__":
    main()
