"""`zoo predict`: a checkpoint or registry model + image files/folders -> label maps (and overlays, class
probabilities) in a folder."""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from zoo.checkpoint import load_segzoo_checkpoint
from zoo.data.normalize import check_normalization, normalize
from zoo.geometry import to_input_grid, to_training_grid
from zoo.inference import predict_logits
from zoo.overlay import save_overlay
from zoo.postprocess import keep_largest_component
from zoo.registry import create_model
from zoo.volume_io import (is_nifti, list_cases, prob_map_name, read_input, split_name, write_label_map,
                           write_prob_map)

__all__ = ["Predictor", "predict", "predict_main", "build_parser", "resolve_device"]


def resolve_device(device: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cuda`` without a GPU is an error."""
    if device not in ("auto", "cpu", "cuda") and not device.startswith("cuda:"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda[:N]', got {device!r}")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} was asked for but torch sees no CUDA GPU; use --device cpu")
    return torch.device(device)


@dataclass
class Predictor:
    """A model plus what it needs to predict on raw files: channels, dims, normalisation and window settings.

    ``mirror_axes`` (0-based spatial axes) averages the logits over flips along them (`predict_logits`);
    ``largest_component`` keeps only the largest connected component of each foreground class in the label maps
    (`zoo.postprocess.keep_largest_component`; probabilities are left as the model gave them)."""

    model: nn.Module
    num_classes: int
    in_channels: int
    spatial_dims: int
    normalization: dict[str, Any] = field(default_factory=lambda: {"kind": "zscore"})
    roi_size: list[int] | None = None
    overlap: float = 0.5
    sw_batch_size: int = 1
    device: str = "auto"
    amp: bool = False
    class_names: list[str] | None = None
    orientation: str | None = None
    spacing: list[float] | None = None
    mirror_axes: tuple[int, ...] | list[int] = ()
    largest_component: bool = False

    def __post_init__(self) -> None:
        self.normalization = check_normalization(self.normalization)
        if self.roi_size is not None and len(self.roi_size) != self.spatial_dims:
            raise ValueError(f"roi must have {self.spatial_dims} sizes for a {self.spatial_dims}-D model, "
                             f"got {list(self.roi_size)}")
        self.torch_device = resolve_device(self.device)
        self.model = self.model.to(self.torch_device).eval()

    @classmethod
    def from_checkpoint(cls, ckpt: str | Path, roi_size: Sequence[int] | None = None, overlap: float | None = None,
                        **kwargs: Any) -> Predictor:
        """From a segzoo checkpoint; window and overlap default to the training patch and ``sw_overlap``."""
        model, info, hp = load_segzoo_checkpoint(ckpt)
        patch = info.get("patch_size")
        roi = list(roi_size) if roi_size is not None else (list(patch) if patch else None)
        missing = [k for k in ("num_classes", "in_channels", "spatial_dims") if k not in info]
        if missing:
            raise ValueError(f"ckpt: {str(ckpt)!r} records no {missing} (neither data_info nor the model has them)")
        return cls(model, int(info["num_classes"]), int(info["in_channels"]), int(info["spatial_dims"]),
                   dict(info["normalization"]), roi,
                   overlap=float(hp.get("sw_overlap", 0.5)) if overlap is None else overlap,
                   class_names=info.get("class_names"), orientation=info.get("orientation"),
                   spacing=info.get("spacing"), **kwargs)

    @classmethod
    def from_registry(cls, name: str, weights: str | Path | None = None, num_classes: int | None = None,
                      in_channels: int | None = None, spatial_dims: int | None = None,
                      normalization: dict[str, Any] | None = None, **kwargs: Any) -> Predictor:
        """From a registry model (optionally with a weights file); no window unless ``roi_size`` is given.

        A pretrained name (`zoo.list_models(pretrained=True)`) loads its shipped weights unless ``weights`` is
        given, and defaults normalisation, window (training patch) and overlap to its manifest's."""
        from zoo.weights_manifest import pretrained_manifest

        overrides = {k: v for k, v in dict(num_classes=num_classes, in_channels=in_channels,
                                           spatial_dims=spatial_dims).items() if v is not None}
        found = pretrained_manifest(name)
        if found is not None:
            manifest = found[0]
            info = manifest["data_info"]
            normalization = normalization or info["normalization"]
            kwargs.setdefault("roi_size", list(info["patch_size"]))
            kwargs.setdefault("overlap", float(manifest.get("sw_overlap", 0.5)))
            for key in ("class_names", "orientation", "spacing"):
                if info.get(key) is not None:
                    kwargs.setdefault(key, info[key])
        pretrained: bool | str = str(weights) if weights is not None else found is not None
        model = create_model(name, pretrained=pretrained, **overrides)
        keys = ("num_classes", "in_channels", "spatial_dims")
        facts = [overrides.get(k, getattr(model, k, None)) for k in keys]
        if None in facts:
            lacking = [k for k, v in zip(keys, facts) if v is None]
            raise ValueError(f"model {name!r} does not expose {lacking}; pass them explicitly")
        return cls(model, *map(int, facts), normalization=normalization or {"kind": "zscore"}, **kwargs)

    def _prepare(self, image: np.ndarray | torch.Tensor, source: str) -> torch.Tensor:
        """Normalise a raw ``[C, *spatial]`` image into ``[1, C, *spatial]``, checking its channel count."""
        x = normalize(image, self.normalization)
        if x.shape[0] != self.in_channels:
            raise ValueError(f"{source}: the model expects {self.in_channels} input channel(s), got {x.shape[0]} "
                             f"(image shape [C, *spatial] = {list(image.shape)})")
        return torch.as_tensor(x)[None].to(self.torch_device)

    def predict_array(self, image: np.ndarray, source: str = "image", affine: np.ndarray | None = None) -> np.ndarray:
        """Label map ``[*spatial]`` (int64, argmax of `predict_logits_array`, then ``largest_component`` if set) for
        one raw image ``[C, *spatial]``."""
        return self.labels_from_logits(self.predict_logits_array(image, source, affine))

    def labels_from_logits(self, logits: torch.Tensor) -> np.ndarray:
        """Argmax over classes of ``[K, *spatial]`` logits (int64), post-processed if ``largest_component``."""
        labels = logits.argmax(0).cpu().numpy().astype(np.int64)
        return keep_largest_component(labels, self.num_classes) if self.largest_component else labels

    def predict_logits_array(self, image: np.ndarray, source: str = "image",
                             affine: np.ndarray | None = None) -> torch.Tensor:
        """Logits ``[K, *spatial]`` (float32) for one raw, unnormalised image ``[C, *spatial]``.

        With a NIfTI ``affine`` and a training ``orientation``/``spacing``, the image is first brought onto the
        training grid and the logits resampled back, so they lie on the input's own grid.
        """
        image = np.asarray(image, dtype=np.float32)
        if image.ndim - 1 != self.spatial_dims:
            raise ValueError(f"{source}: the model is {self.spatial_dims}-D but the input is "
                             f"{image.ndim - 1}-D (shape [C, *spatial] = {list(image.shape)})")
        regrid = affine is not None and bool(self.orientation or self.spacing)
        work: np.ndarray | torch.Tensor = image
        if regrid:
            work, work_affine = to_training_grid(image, affine, self.orientation, self.spacing)
        x = self._prepare(work, source)
        logits = predict_logits(self.model, x, self.roi_size, self.overlap, self.sw_batch_size, self.amp,
                                self.mirror_axes)[0]
        if regrid:
            logits = to_input_grid(logits, work_affine, affine, image.shape[1:])
        return logits

    def predict_file(self, path: str | Path, output_dir: str | Path, overlay: bool = False,
                     alpha: float = 0.5, save_probs: bool = False) -> Path:
        """Predict one file; writes ``<output>/<stem>.png`` or ``.nii.gz`` (+ ``overlays/<stem>.png`` and
        ``probs/<stem>_prob.tif|.nii.gz``, the softmax of the same logits, if asked)."""
        path, out_dir = Path(path), Path(output_dir)
        image, reference = read_input(path)
        logits = self.predict_logits_array(image, str(path), None if reference is None else reference.affine)
        labels = self.labels_from_logits(logits)
        stem = split_name(path)[0]
        out = write_label_map(out_dir / (stem + (".nii.gz" if reference is not None else ".png")), labels,
                              self.num_classes, reference)
        if overlay and reference is None:
            save_overlay(out_dir / "overlays" / f"{stem}.png", image, labels, self.num_classes, alpha)
        if save_probs:
            write_prob_map(out_dir / "probs" / prob_map_name(stem, reference is not None),
                           torch.softmax(logits, 0).cpu().numpy(), reference)
        return out

    def predict_paths(self, inputs: Sequence[str | Path], output_dir: str | Path, overlay: bool = False,
                      alpha: float = 0.5, progress: bool = True, save_probs: bool = False) -> list[Path]:
        """Predict many files with a progress bar; output stems must be unique."""
        from rich.progress import track

        stems: dict[str, Path] = {}
        for p in map(Path, inputs):
            stem = split_name(p)[0]
            if stem in stems:
                raise ValueError(f"input: {str(stems[stem])!r} and {str(p)!r} share the stem {stem!r}, so their "
                                 "label maps would overwrite each other")
            stems[stem] = p
        return [self.predict_file(p, output_dir, overlay, alpha, save_probs)
                for p in track(list(stems.values()), description="predicting", disable=not progress,
                               console=_stderr_console())]


def _stderr_console():
    from rich.console import Console

    return Console(stderr=True)


def predict(input: str | Path, output: str | Path, ckpt: str | Path | None = None, model: str | None = None,
            weights: str | Path | None = None, overlay: bool = False, alpha: float = 0.5, progress: bool = False,
            save_probs: bool = False, tta: bool = False, **kwargs: Any) -> list[Path]:
    """Python API of `zoo predict`: predict every supported file of ``input`` (file or folder) into ``output``.

    Give ``ckpt`` (segzoo checkpoint) or ``model`` (registry name, optional ``weights``); ``save_probs`` also
    writes class probabilities under ``output/probs/`` (for `zoo eval --probs`); ``tta`` averages the logits over
    flips along every spatial axis of the model (``mirror_axes`` for a subset); ``kwargs`` go to `Predictor`
    (``roi_size``, ``overlap``, ``sw_batch_size``, ``device``, ``amp``, ``mirror_axes``, ``largest_component``,
    and for ``model``: ``num_classes``, ``in_channels``, ``spatial_dims``, ``normalization``).
    """
    if (ckpt is None) == (model is None):
        raise ValueError("give exactly one of ckpt (a segzoo checkpoint) or model (a registry name)")
    if ckpt is not None and weights is not None:
        raise ValueError("weights goes with model, not with ckpt (a checkpoint holds its own weights)")
    if tta and kwargs.get("mirror_axes"):
        raise ValueError(f"give tta (every spatial axis) or mirror_axes, not both; got mirror_axes="
                         f"{kwargs['mirror_axes']}")
    files = list_cases(input, "input")
    kwargs = {k: v for k, v in kwargs.items() if v is not None}  # None: the checkpoint's or the default value
    predictor = (Predictor.from_checkpoint(ckpt, **kwargs) if ckpt is not None
                 else Predictor.from_registry(model, weights, **kwargs))
    if tta:
        predictor.mirror_axes = tuple(range(predictor.spatial_dims))
    if overlay and any(is_nifti(f) for f in files):
        warnings.warn("overlays are written for 2-D images only; NIfTI inputs get none", stacklevel=2)
    return predictor.predict_paths(files, output, overlay=overlay, alpha=alpha, progress=progress,
                                   save_probs=save_probs)


HELP = """\
Predict label maps for 2-D images (PNG/JPEG/TIFF) or 3-D volumes (NIfTI .nii/.nii.gz).

Each input <stem>.<ext> gives <output>/<stem>.png (2-D; uint8, uint16 above 255 labels) or <output>/<stem>.nii.gz
(3-D; the input's affine and header, integer labels). --overlay also writes <output>/overlays/<stem>.png (2-D).
Pixel values are class indices 0..num_classes-1 (argmax of the logits).
--save-probs also writes the softmax of the same logits, every class (background included), as float32 so that
`zoo eval --probs <output>/probs` ranks exactly what the model gave: <output>/probs/<stem>_prob.tif (2-D; a
multi-page TIFF, page k = class k, deflate-compressed; opens in Fiji/ImageJ) or <output>/probs/<stem>_prob.nii.gz
(3-D; [X, Y, Z, K], class axis last, the input's affine). They sit in a subfolder so that <output> still holds
only label maps for `zoo eval --pred <output>`.

Inputs are normalised as the checkpoint's data_info says (for --model: --normalization, default zscore; a
pretrained --model <model>_<dataset> uses its manifest's normalisation, training patch and overlap).
Multi-channel NIfTI inputs are 4-D with channels last [X, Y, Z, C]. Images that fit the window (the training
patch, or --roi) run whole, zero-padded to the model's size multiple; larger ones are tiled with MONAI's
sliding_window_inference (gaussian blending of logits, --overlap, --sw-batch-size).
--tta is nnU-Net's test-time augmentation: the float32 logits are averaged over the input flipped along every
subset of its spatial axes (2^d passes, i.e. 4x the time in 2-D, 8x in 3-D), each flipped back.
--largest-component keeps, in the label maps, only the largest connected component (face-connected) of each
foreground class and sets the rest to background, as nnU-Net's post-processing does for one-piece structures;
--save-probs still writes the model's probabilities unchanged.
When the checkpoint's data_info records an orientation (e.g. RAS) and/or a spacing (mm), NIfTI inputs are
reoriented/resampled as in training and the logits resampled back onto the input's own grid.
"""


def build_parser(prog: str = "zoo predict") -> argparse.ArgumentParser:
    """The argparse parser of `zoo predict`."""
    p = argparse.ArgumentParser(prog=prog, description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--ckpt", help="segzoo checkpoint (.ckpt from `zoo fit`); loaded with weights_only=True")
    src.add_argument("--model", help="registry model name (see `zoo models`), e.g. unet_tiny")
    p.add_argument("--weights", help="with --model: weights file (.safetensors, or a torch state dict/checkpoint)")
    p.add_argument("--num-classes", type=int, help="with --model: number of classes (default: the model's)")
    p.add_argument("--in-channels", type=int, help="with --model: input channels (default: the model's)")
    p.add_argument("--spatial-dims", type=int, choices=(2, 3), help="with --model: 2 or 3 (default: the model's)")
    p.add_argument("--normalization", default=None,
                   help='with --model: a kind (zscore, none) or a JSON spec such as \'{"kind": "window", '
                        '"min": -1000, "max": 1000}\' (default: zscore)')
    p.add_argument("input_path", nargs="?", metavar="INPUT", help="an image/volume file, or a folder of them")
    p.add_argument("--input", help="same as INPUT: an image/volume file, or a folder of them (not recursive)")
    p.add_argument("--output", required=True, help="output folder (created if missing)")
    p.add_argument("--overlay", action="store_true", help="also write colour overlays (2-D inputs only)")
    p.add_argument("--save-probs", action="store_true",
                   help="also write float32 class probabilities to <output>/probs/ (for zoo eval --probs)")
    p.add_argument("--overlay-alpha", type=float, default=0.5, help="overlay opacity in [0, 1] (default 0.5)")
    p.add_argument("--roi", type=int, nargs="+", metavar="SIZE",
                   help="sliding-window size, one per spatial dim (default: the checkpoint's training patch; "
                        "with --model: none, i.e. whole images)")
    p.add_argument("--overlap", type=float, default=None,
                   help="window overlap fraction in [0, 1) (default: the checkpoint's sw_overlap, else 0.5)")
    p.add_argument("--sw-batch-size", type=int, default=1, help="windows per forward pass (default 1)")
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, or cuda[:N] (default auto)")
    p.add_argument("--amp", action="store_true", help="bfloat16 autocast on CUDA (ignored on CPU)")
    p.add_argument("--tta", action="store_true",
                   help="average the logits over flips along every spatial axis (2^d passes), as nnU-Net does")
    p.add_argument("--largest-component", action="store_true",
                   help="keep only the largest connected component of each foreground class in the label maps")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def _parse_normalization(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    if text.lstrip().startswith("{"):
        try:
            return json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"--normalization: not valid JSON ({err}): {text!r}") from err
    return {"kind": text}


def predict_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `zoo predict`; returns the exit status (errors are printed, not raised)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if (args.input is None) == (args.input_path is None):
        parser.error("give the input once: as INPUT or as --input (an image/volume file or a folder)")
    args.input = args.input if args.input is not None else args.input_path
    if args.ckpt is not None:
        only_model = [f"--{k.replace('_', '-')}" for k in ("weights", "num_classes", "in_channels", "spatial_dims",
                                                            "normalization") if getattr(args, k) is not None]
        if only_model:
            parser.error(f"{', '.join(only_model)} only go with --model; a checkpoint records them itself")
    opts: dict[str, Any] = dict(roi_size=args.roi, overlap=args.overlap, sw_batch_size=args.sw_batch_size,
                                device=args.device, amp=args.amp, largest_component=args.largest_component)
    try:
        if args.model is not None:
            opts.update(num_classes=args.num_classes, in_channels=args.in_channels, spatial_dims=args.spatial_dims,
                        normalization=_parse_normalization(args.normalization))
        written = predict(args.input, args.output, args.ckpt, args.model, args.weights, overlay=args.overlay,
                          alpha=args.overlay_alpha, progress=not args.quiet, save_probs=args.save_probs,
                          tta=args.tta, **opts)
    except (ValueError, FileNotFoundError, KeyError, TypeError) as err:
        print(f"zoo predict: error: {err}", file=sys.stderr)
        return 1
    probs = f" and their probability maps to {Path(args.output) / 'probs'}" if args.save_probs else ""
    print(f"wrote {len(written)} label map(s) to {args.output}{probs}")
    return 0
