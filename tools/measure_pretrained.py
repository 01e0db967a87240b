"""Re-measure a shipped model from its weights file, as a user would: `zoo predict --model NAME` on the test
images, `zoo eval` of those label maps, then record the CLI's numbers (and the commands) in the manifest.

    PYTHONPATH=$PWD python tools/prepare_drive_eval.py ../shared/datasets/DRIVE/test --output data/drive_test_eval
    PYTHONPATH=$PWD python tools/measure_pretrained.py unet_drive --images ../shared/datasets/DRIVE/test/images \\
        --gt data/drive_test_eval/gt --roi-dir data/drive_test_eval/fov --probs
    PYTHONPATH=$PWD python tools/measure_pretrained.py unet_hippocampus \\
        --images ../shared/datasets/Task04_Hippocampus/imagesTr --gt ../shared/datasets/Task04_Hippocampus/labelsTr \\
        --case-list ../shared/datasets/Task04_Hippocampus/split_val.txt

Add --tta to predict with mirroring test-time augmentation (`zoo predict --tta`); the recorded command shows it.

Writes docs/model_zoo/<NAME>/: metrics.md, metrics.json, metrics_per_case.csv (tests/zoo/test_shipped_metrics.py
reproduces a few of those cases) and overlay.png (the first case; 3-D: its middle axial slice). The weights and
their sha256 are untouched; only the manifest's `metrics` change (validated, written atomically).
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ship_run import manifest_metrics, predict_and_eval  # noqa: E402

from zoo.atomic import write_atomic  # noqa: E402
from zoo.data.cases import split_name  # noqa: E402
from zoo.overlay import save_overlay  # noqa: E402
from zoo.volume_io import read_input  # noqa: E402
from zoo.weights import WEIGHTS_DIR  # noqa: E402
from zoo.weights_manifest import load_manifest, validate_manifest  # noqa: E402

DOCS_DIR = Path(__file__).resolve().parents[1] / "docs" / "model_zoo"


def listed_cases(folder: Path, case_list: Path, into: Path) -> Path:
    """A folder of links to the files of `folder` whose names `case_list` lists (one per line)."""
    into.mkdir(parents=True, exist_ok=True)
    for line in case_list.read_text().split():
        src = folder / line
        if not src.is_file():
            raise FileNotFoundError(f"--case-list: {line!r} is not a file of {folder}")
        (into / line).symlink_to(src.resolve())
    return into


def write_overlay(image_path: Path, labels_path: Path, num_classes: int, out: Path) -> None:
    """The first case's prediction over its image (3-D: the middle slice of the last axis), at least 256 px."""
    image = read_input(image_path)[0]
    labels = np.asarray(read_input(labels_path)[0][0]).astype(np.int64)
    image = np.asarray(image, dtype=np.float32)
    if labels.ndim == 3:
        z = labels.shape[-1] // 2
        image, labels = image[..., z], labels[..., z]
    scale = max(1, 256 // min(labels.shape))  # small slices (Hippocampus: ~35x50) enlarged, nearest neighbour
    image = image.repeat(scale, axis=-1).repeat(scale, axis=-2)
    labels = labels.repeat(scale, axis=-1).repeat(scale, axis=-2)
    save_overlay(out, image, labels, num_classes)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", help="shipped model name (zoo/weights/<name>.json)")
    p.add_argument("--images", required=True)
    p.add_argument("--gt", required=True)
    p.add_argument("--roi-dir")
    p.add_argument("--probs", action="store_true", help="save probabilities and score ROC AUC")
    p.add_argument("--case-list", help="only these file names of --images/--gt (e.g. split_val.txt)")
    p.add_argument("--tta", action="store_true",
                   help="zoo predict --tta (logits averaged over flips): writes the manifest's metrics_tta and "
                        "docs/model_zoo/NAME/*_tta.* instead of metrics")
    p.add_argument("--docs-dir", default=str(DOCS_DIR))
    args = p.parse_args(argv)

    manifest_path = WEIGHTS_DIR / f"{args.name}.json"  # where `zoo predict --model NAME` finds it
    manifest = load_manifest(manifest_path, check_file=True)
    num_classes = manifest["data_info"]["num_classes"]
    docs = Path(args.docs_dir) / args.name
    with tempfile.TemporaryDirectory() as tmp:
        images, gt = Path(args.images), Path(args.gt)
        if args.case_list:
            images = listed_cases(images, Path(args.case_list), Path(tmp) / "images")
            gt = listed_cases(gt, Path(args.case_list), Path(tmp) / "gt")
        pred, out = Path(tmp) / "pred", Path(tmp) / "eval"
        eval_json, command = predict_and_eval(["--model", args.name], images, gt, num_classes, pred, out,
                                              args.roi_dir, args.probs, manifest["data_info"].get("class_names"),
                                              predict_options=("--tta",) if args.tta else ())
        shown = command.replace(str(tmp), "$TMP")
        if args.case_list:
            shown = f"(inputs: the files listed in {args.case_list}) " + shown
        docs.mkdir(parents=True, exist_ok=True)
        suffix = "_tta" if args.tta else ""
        for f in ("metrics.md", "metrics.json", "metrics_per_case.csv"):
            stem, ext = f.rsplit(".", 1)
            shutil.copyfile(out / f, docs / f"{stem}{suffix}.{ext}")
        if not args.tta:
            first = sorted(images.iterdir())[0]
            ext = ".nii.gz" if manifest["data_info"]["spatial_dims"] == 3 else ".png"
            write_overlay(first, pred / (split_name(first.name)[0] + ext), num_classes, docs / "overlay.png")
    section = "metrics_tta" if args.tta else "metrics"
    manifest[section] = manifest_metrics(eval_json, shown)
    validate_manifest(manifest, str(manifest_path))
    write_atomic(manifest_path, lambda t: t.write_text(json.dumps(manifest, indent=2) + "\n"))
    values = {k: v["value"] for k, v in manifest[section].items()}
    print(json.dumps(values), f"-> {manifest_path} ({section}), {docs}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
