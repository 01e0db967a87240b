"""From a finished `zoo fit` run to shipped weights: `zoo predict` on the test images, `zoo eval` of those label
maps, inference throughput on the GPU, then `tools/export_weights.py` with the CLI's numbers (not the training
log's) in the manifest.

    PYTHONPATH=$PWD python tools/ship_run.py runs/drive_attention_unet --config configs/drive/attention_unet.yaml \\
        --name attention_unet --dataset drive --images ../shared/datasets/DRIVE/test/images \\
        --gt data/drive_test_eval/gt --roi-dir data/drive_test_eval/fov --probs --num-classes 2 \\
        --split "official test set (20 images), inside the FOV" --licence "DRIVE terms of use (research)" \\
        --time-hours 0.2 --gpu "1x NVIDIA H100 80GB HBM3"

Writes <run>/test_pred/ (label maps, probabilities, overlays), <run>/test_eval/ (metrics.json/.md/.csv) and
<run>/ship.json (the metrics and throughput entries), then the weights and manifest in zoo/weights/ (--out-dir).
"""
from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from export_weights import add_manifest_arguments, export_weights, manifest_sections  # noqa: E402

from zoo.checkpoint import load_segzoo_checkpoint  # noqa: E402

_KEYS = ("dice", "dice_pooled", "miou", "auc", "accuracy", "sensitivity", "precision", "hd95")


def run_zoo(args: list[str]) -> str:
    """Run `zoo <args>` (as `python -m zoo.cli`, which works without the console script); returns the command
    line as a user would type it."""
    subprocess.run([sys.executable, "-m", "zoo.cli", *args], check=True)
    return "zoo " + shlex.join(args)


def predict_and_eval(model: list[str], images: str | Path, gt: str | Path, num_classes: int, pred: Path, out: Path,
                     roi_dir: str | None = None, probs: bool = False, class_names: list[str] | None = None,
                     hd95: bool = True, predict_options: tuple[str, ...] = ()) -> tuple[dict[str, Any], str]:
    """`zoo predict` (``model``: ``["--ckpt", FILE]`` or ``["--model", NAME]``) of ``images`` into ``pred``, then
    `zoo eval` against ``gt`` into ``out``; returns eval's metrics.json and the two commands joined by ``&&``."""
    predict = ["predict", *model, str(images), "--output", str(pred), *predict_options, "--quiet"]
    predict += ["--save-probs"] if probs else []
    evaluate = ["eval", "--pred", str(pred), "--gt", str(gt), "--num-classes", str(num_classes),
                "--output", str(out), "--quiet"]
    evaluate += ["--class-names", ",".join(class_names)] if class_names else []
    evaluate += ["--roi-dir", str(roi_dir)] if roi_dir else []
    evaluate += ["--probs", str(pred / "probs")] if probs else []
    evaluate += [] if hd95 else ["--no-hd95"]
    command = f"{run_zoo(predict)} && {run_zoo(evaluate)}"
    return json.loads((out / "metrics.json").read_text()), command


def manifest_metrics(eval_json: dict[str, Any], command: str) -> dict[str, Any]:
    """The manifest's metrics (value + the command that produced it) from `zoo eval`'s metrics.json."""
    values = {"dice": eval_json["dice"], "dice_pooled": eval_json.get("dice_pooled"), "miou": eval_json["miou"],
              "auc": eval_json.get("auc"), "accuracy": eval_json.get("accuracy")}
    for key in ("sensitivity", "precision", "hd95"):
        values[key] = eval_json["metrics"].get(key, {}).get("mean")
    return {k: {"value": round(float(values[k]), 6), "command": command} for k in _KEYS if values.get(k) is not None}


@torch.no_grad()
def measure_throughput(ckpt: Path, batch_size: int, device: str, repeats: int = 20) -> dict[str, Any]:
    """Forward passes per second of the model at its training patch size (bf16 autocast on CUDA)."""
    model, info, _ = load_segzoo_checkpoint(ckpt)
    model = model.to(device).eval()
    size = [int(s) for s in info["patch_size"]]
    x = torch.randn(batch_size, int(info["in_channels"]), *size, device=device)
    amp = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.startswith("cuda"))
    with amp:
        for _ in range(3):
            model(x)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(repeats):
            model(x)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
    seconds = (time.perf_counter() - t0) / repeats
    name = torch.cuda.get_device_name() if device.startswith("cuda") else "CPU"
    unit = "volumes/s" if len(size) == 3 else "images/s"
    return {"value": round(batch_size / seconds, 1), "unit": unit, "batch_size": batch_size, "input_size": size,
            "device": f"{name}, bf16 autocast, torch {torch.__version__}"}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", help="run folder of `zoo fit` (holds checkpoints/best.ckpt and last.ckpt)")
    p.add_argument("--checkpoint", choices=("best", "last"), default="best",
                   help="which checkpoint to ship: best (by the run's monitored validation metric) or last epoch")
    p.add_argument("--images", required=True, help="folder of test images/volumes")
    p.add_argument("--gt", required=True, help="folder of ground-truth label maps with the same stems")
    p.add_argument("--roi-dir", help="masks restricting the scored pixels (DRIVE's field of view)")
    p.add_argument("--probs", action="store_true", help="also save probabilities and score ROC AUC")
    p.add_argument("--no-hd95", action="store_true", help="skip HD95")
    p.add_argument("--num-classes", type=int, required=True)
    p.add_argument("--batch-size", type=int, default=16, help="batch for the throughput measurement")
    add_manifest_arguments(p)
    args = p.parse_args(argv)

    run = Path(args.run)
    ckpt = run / "checkpoints" / f"{args.checkpoint}.ckpt"
    if not ckpt.is_file():
        p.error(f"run: {str(ckpt)!r} does not exist (is the run finished?)")
    dataset, training = manifest_sections(args, ckpt)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    options = ("--overlay", "--amp") if device == "cuda" else ("--overlay",)
    eval_json, command = predict_and_eval(["--ckpt", str(ckpt)], args.images, args.gt, args.num_classes,
                                          run / "test_pred", run / "test_eval", args.roi_dir, args.probs,
                                          hd95=not args.no_hd95, predict_options=options)
    metrics = manifest_metrics(eval_json, command)
    throughput = measure_throughput(ckpt, args.batch_size, device)
    throughput["command"] = "python tools/ship_run.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    (run / "ship.json").write_text(json.dumps({"metrics": metrics, "throughput": throughput}, indent=2) + "\n")
    path = export_weights(ckpt, args.out_dir, overwrite=True, dataset=dataset, metrics=metrics,
                          throughput=throughput, training=training, name=args.name)
    print(json.dumps({k: v["value"] for k, v in metrics.items()}), f"-> {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
