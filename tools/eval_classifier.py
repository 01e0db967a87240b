"""Top-1/top-5 of a classifier weight file on an ImageFolder validation split, outside Lightning, so that an
encoder's Imagenette number can be re-measured from the exported weights (e.g. fp16 safetensors) on any device.

    PYTHONPATH=$PWD python tools/eval_classifier.py WEIGHTS --model lka_unet_small \\
        --root ../shared/datasets/imagenette2-160 [--image-size 160] [--out metrics.json]

WEIGHTS: a `ClassificationModule` checkpoint or a classifier state dict (safetensors or torch file).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from zoo.data.imagefolder import ImageFolderDataModule  # noqa: E402
from zoo.encoders import create_classifier  # noqa: E402
from zoo.weights import load_state_dict_file  # noqa: E402


@torch.no_grad()
def evaluate(model: torch.nn.Module, loader, device: torch.device) -> dict[str, float]:
    """Top-1 and top-5 accuracy of ``model`` over ``loader`` (batches of {"image", "label"})."""
    model.eval().to(device)
    correct1 = correct5 = total = 0
    for batch in tqdm(loader, desc="eval", unit="batch"):
        x, y = batch["image"].to(device), batch["label"].to(device)
        logits = model(x).float()
        top5 = logits.topk(min(5, logits.shape[1]), dim=1).indices
        correct1 += (top5[:, 0] == y).sum().item()
        correct5 += (top5 == y[:, None]).any(1).sum().item()
        total += y.numel()
    return {"top1": correct1 / total, "top5": correct5 / total, "images": total}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("weights")
    p.add_argument("--model", required=True, help="registered segmenter whose encoder the classifier is")
    p.add_argument("--root", required=True, help="ImageFolder root with train/ and val/")
    p.add_argument("--image-size", type=int, default=160)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--num-workers", type=int, default=2)
    p.add_argument("--out", help="write the metrics as JSON here")
    args = p.parse_args(argv)
    data = ImageFolderDataModule(args.root, image_size=args.image_size, batch_size=args.batch_size,
                                 num_workers=args.num_workers)
    model = create_classifier(args.model, num_classes=data.num_classes, in_channels=data.in_channels)
    model.load_state_dict({k: v.float() for k, v in load_state_dict_file(args.weights).items()})
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    metrics = evaluate(model, data.val_dataloader(), device)
    print(json.dumps(metrics))
    if args.out:
        Path(args.out).write_text(json.dumps(metrics, indent=2) + "\n")


if __name__ == "__main__":
    main()
