"""Ship a trained model: segzoo Lightning checkpoint -> fp16 safetensors + manifest in `zoo/weights/`.

    PYTHONPATH=$PWD python tools/export_weights.py runs/drive/attention_unet/checkpoints/best.ckpt \\
        --dataset drive --split "official test set (20 images), inside the FOV" --licence "DRIVE terms of use" \\
        --metrics drive_metrics.json --throughput drive_throughput.json --config configs/drive/attention_unet.yaml \\
        --time-hours 1.4 --gpu "1x NVIDIA H100 80GB"

``--metrics`` is a JSON object ``{"dice": {"value": 0.83, "command": "zoo eval ..."}, "miou": {...}, ...}`` (the
manifest's format; optional "auc", "hd95", ...), ``--throughput`` one ``{"value", "unit", "device", "batch_size",
"input_size", "command"}``. The checkpoint is read with ``torch.load(weights_only=True)`` and its model rebuilt
from the registry; the fp16 weights are checked to load back into it before anything is written. Both files are
written atomically (temporary names, then renamed; the manifest last), so a failure leaves no partial file.
Then `zoo.create_model("<model>_<dataset>", pretrained=True)` loads them, and tools/make_model_zoo.py lists them.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

import torch

from zoo.checkpoint import load_segzoo_checkpoint
from zoo.weights import WEIGHTS_DIR
from zoo.weights_manifest import MAX_WEIGHTS_BYTES, SCHEMA_VERSION, validate_manifest

MAX_TOTAL_BYTES = 150 * 1024 * 1024  # all shipped weights together (issue 6)


def to_fp16(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Floating tensors as contiguous fp16 copies (others unchanged), except those whose values overflow fp16 (a
    BatchNorm running_var can), which stay fp32; returns the state and the names kept in fp32. Non-finite values
    are an error."""
    out, kept = {}, []
    limit = torch.finfo(torch.float16).max
    for k, v in state.items():
        v = v.detach().cpu()
        if v.is_floating_point():
            if v.numel() and not torch.isfinite(v).all():
                raise ValueError(f"checkpoint tensor {k!r} holds non-finite values; refusing to ship it")
            if v.numel() and v.abs().max().item() > limit:
                kept.append(k)
                v = v.to(torch.float32)
            else:
                v = v.to(torch.float16)
        out[k] = v.contiguous().clone()
    return out, kept


def _read_json(path: str | Path, arg: str) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{arg}: cannot read {str(path)!r} as JSON: {err}") from err


def _atomic_write(files: list[tuple[Path, bytes]]) -> None:
    """Write every (path, data) to a temporary name, then rename them in order. On failure the new files are
    removed and files they were replacing are restored, so the folder is as it was."""
    pid = os.getpid()
    tmps = [(p.with_name(f".{p.name}.tmp-{pid}"), p, data) for p, data in files]
    backups: list[tuple[Path, Path]] = []
    done: list[Path] = []
    try:
        for tmp, _, data in tmps:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        for _, path, _ in tmps:
            if path.exists():
                backup = path.with_name(f".{path.name}.bak-{pid}")
                os.replace(path, backup)
                backups.append((backup, path))
        for tmp, path, _ in tmps:
            os.replace(tmp, path)
            done.append(path)
    except BaseException:
        for path in done:
            path.unlink(missing_ok=True)
        for backup, path in backups:
            os.replace(backup, path)
        raise
    finally:
        for tmp, _, _ in tmps:
            tmp.unlink(missing_ok=True)
    for backup, _ in backups:
        backup.unlink(missing_ok=True)


def build_export(ckpt: str | Path, dataset: dict[str, str], metrics: dict[str, Any], throughput: dict[str, Any],
                 training: dict[str, Any], sw_overlap: float | None = None,
                 max_bytes: int = MAX_WEIGHTS_BYTES, name: str | None = None) -> tuple[dict[str, Any], bytes]:
    """The manifest and the fp16 safetensors bytes of a segzoo checkpoint (nothing is written)."""
    from safetensors.torch import load as st_load
    from safetensors.torch import save as st_save

    model, info, hp = load_segzoo_checkpoint(ckpt)
    state, kept_fp32 = to_fp16(model.state_dict())
    name = f"{name or hp['model_name']}_{dataset.get('name')}"
    data = st_save(state, metadata={"name": name, "format": "pt", "source": Path(ckpt).name})
    if len(data) > max_bytes:
        raise ValueError(f"ckpt: the fp16 weights of {hp['model_name']!r} take {len(data) / 2**20:.1f} MiB, more "
                         f"than the {max_bytes / 2**20:.0f} MiB a shipped file may take; ship a smaller variant")
    model.load_state_dict({k: v.to(model.state_dict()[k].dtype) for k, v in st_load(data).items()}, strict=True)
    try:
        json.dumps(hp["model_kwargs"])
    except TypeError as err:
        raise ValueError(f"ckpt: model_kwargs {hp['model_kwargs']!r} are not JSON values: {err}") from err
    manifest = {
        "schema_version": SCHEMA_VERSION, "name": name, "model": hp["model_name"],
        "model_kwargs": dict(hp["model_kwargs"]), "dataset": dataset,
        "data_info": {k: v for k, v in info.items() if v is not None}, "metrics": metrics, "training": training,
        "throughput": throughput, "file": f"{name}.safetensors", "sha256": hashlib.sha256(data).hexdigest(),
        "bytes": len(data), "dtype": "float16",
        **({"float32_tensors": kept_fp32} if kept_fp32 else {}),
        "sw_overlap": float(hp.get("sw_overlap", 0.5) if sw_overlap is None else sw_overlap),
    }
    validate_manifest(manifest, f"manifest for {Path(ckpt).name}")
    return manifest, data


def export_weights(ckpt: str | Path, out_dir: str | Path, overwrite: bool = False, **kwargs: Any) -> Path:
    """Write `<out_dir>/<model>_<dataset>.safetensors` and `.json` atomically; returns the manifest path."""
    manifest, data = build_export(ckpt, **kwargs)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    weights, path = out / manifest["file"], out / f"{manifest['name']}.json"
    existing = [str(p) for p in (weights, path) if p.exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{existing} already exist; pass --overwrite to replace them")
    others = sum(p.stat().st_size for p in out.glob("*.safetensors") if p != weights)
    if others + len(data) > MAX_TOTAL_BYTES:
        raise ValueError(f"{out} would hold {(others + len(data)) / 2**20:.1f} MiB of weights, more than the "
                         f"{MAX_TOTAL_BYTES / 2**20:.0f} MiB all shipped weights may take")
    _atomic_write([(weights, data), (path, (json.dumps(manifest, indent=2) + "\n").encode())])
    return path


def add_manifest_arguments(p: argparse.ArgumentParser) -> None:
    """The command-line options that describe a shipped model (also used by tools/ship_run.py)."""
    p.add_argument("--name", help="shipped name before _<dataset> (default: the model's registry name), a prefix "
                   "of it such as attention_unet for attention_unet_small -> attention_unet_drive")
    p.add_argument("--dataset", required=True, help="dataset name: lower-case letters and digits (e.g. drive)")
    p.add_argument("--split", required=True, help="the split the metrics were measured on")
    p.add_argument("--licence", required=True, help="licence / terms of use of the training data")
    p.add_argument("--dataset-url", help="where the dataset is published")
    p.add_argument("--config", required=True, help="the training config (committed YAML) that produced ckpt")
    p.add_argument("--time-hours", type=float, required=True, help="training wall time in hours")
    p.add_argument("--gpu", required=True, help='training hardware, e.g. "1x NVIDIA H100 80GB"')
    p.add_argument("--epochs", type=int, help="epochs trained")
    p.add_argument("--out-dir", default=str(WEIGHTS_DIR), help=f"output folder (default {WEIGHTS_DIR})")


def manifest_sections(args: argparse.Namespace, ckpt: str | Path) -> tuple[dict[str, str], dict[str, Any]]:
    """The manifest's ``dataset`` and ``training`` sections from `add_manifest_arguments`' options; the training
    config must exist (the recipe is committed before its weights)."""
    if not Path(args.config).is_file():
        raise FileNotFoundError(f"--config: {args.config!r} does not exist (commit the recipe first)")
    dataset = {"name": args.dataset, "split": args.split, "licence": args.licence}
    if args.dataset_url:
        dataset["url"] = args.dataset_url
    training: dict[str, Any] = {"config": args.config, "time_hours": args.time_hours, "gpu": args.gpu,
                                "checkpoint": Path(ckpt).name}
    if args.epochs is not None:
        training["epochs"] = args.epochs
    return dataset, training


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("ckpt", help="segzoo checkpoint (.ckpt from `zoo fit`)")
    add_manifest_arguments(p)
    p.add_argument("--metrics", required=True, help="JSON file of metrics in the manifest's format")
    p.add_argument("--throughput", required=True, help="JSON file of the inference throughput entry")
    p.add_argument("--sw-overlap", type=float, help="sliding-window overlap for predict (default: the ckpt's)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing export of the same name")
    args = p.parse_args(argv)
    try:
        dataset, training = manifest_sections(args, args.ckpt)
        path = export_weights(args.ckpt, args.out_dir, args.overwrite, dataset=dataset,
                              metrics=_read_json(args.metrics, "--metrics"),
                              throughput=_read_json(args.throughput, "--throughput"), training=training,
                              sw_overlap=args.sw_overlap, name=args.name)
    except (ValueError, FileNotFoundError, FileExistsError) as err:
        print(f"export_weights: error: {err}", file=sys.stderr)
        return 1
    print(f"wrote {path} and {path.with_suffix('.safetensors')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
