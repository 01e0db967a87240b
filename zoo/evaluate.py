"""`zoo eval`: score a folder of predicted label maps against ground truth, per case and per class.

Writes a per-case CSV, a JSON summary (keys ``dice`` and ``miou``: foreground means; ``accuracy``; with probability
maps ``auc``: pooled) and a Markdown table.
The conventions are in `CONVENTIONS` (printed by ``--help``); the metrics themselves live in `zoo.metrics`.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from zoo.data.cases import check_label_range, files_by_stem, pair_by_stem
from zoo.metrics import (METRIC_NAMES, RocCounts, accuracy_counts, aggregate_cases, auc_per_class, case_metrics,
                         dice_iou, merge_roc_counts, nan_mean_std, roc_auc)
from zoo.volume_io import find_prob_map, is_nifti, list_cases, read_label_map, read_prob_map

__all__ = ["EvalResult", "match_cases", "evaluate_folders", "summary_json", "markdown_table", "fmt", "eval_main",
           "CONVENTIONS"]

CONVENTIONS = """\
Conventions:
  - Background (class 0) is excluded from every table and mean unless --include-background.
  - A class empty in both prediction and ground truth of a case is skipped for that case (undefined), never
    scored 0 or 1. A class present in only one scores Dice 0 and IoU 0; its HD95 is then undefined.
    Sensitivity is undefined where the ground truth lacks the class, precision where the prediction lacks it.
  - Per class: mean and std (population) over the cases where the metric is defined (n = their count).
  - dice / miou (and each metric's mean): the mean over scored classes of those per-class means; a metric's
    std is the std over cases of each case's mean over its scored classes.
  - HD95: max of the two directed 95th-percentile distances between the class surfaces, in mm from the
    ground truth's NIfTI voxel size (or in voxels with --hd95-voxels), in pixels for 2-D images.
  - AUC (with --probs): ROC AUC of each class against the rest from the predicted probabilities, exact
    (Mann-Whitney, ties count one half); undefined in a case where the class has no pixel or covers every
    (scored) pixel. Two summaries: 'auc' = pooled AUC (all pixels of all cases ranked together, as the DRIVE
    literature reports it), averaged over the scored classes; 'auc_per_case_mean' / 'auc_per_case_std' = the
    mean ± std over cases, as for the other metrics. The table shows both (AUC, AUC pooled).
  - Accuracy: the fraction of pixels whose predicted label equals the truth (every class, background
    included, whatever --include-background says): 'accuracy' = pooled over all pixels of all cases,
    'accuracy_per_case_mean' / 'accuracy_per_case_std' over cases. --roi-dir restricts AUC and accuracy too.
  - Pooled Dice ('dice_pooled'): 2TP / (2TP + FP + FN) with the pixels of all cases counted together, averaged
    over the scored classes; the F1 that the DRIVE literature reports. 'dice' stays the mean over cases.
  - Undefined values are written as n/a (null in JSON); NaN is never printed as a number.
  - Predictions and ground truth are matched by file stem (a.png <-> a.png, b.nii.gz <-> b.nii); every
    stem must have both files."""

_LABELS = dict(dice="Dice", iou="IoU", hd95="HD95", sensitivity="Sensitivity", precision="Precision", auc="AUC")


def fmt(value: float, digits: int = 4) -> str:
    """A number with ``digits`` decimals, or ``n/a`` for NaN/None (NaN is never printed as a number)."""
    if value is None or not math.isfinite(float(value)):
        return "n/a"
    return f"{float(value):.{digits}f}"


def _json_num(value: float) -> float | None:
    return None if value is None or not math.isfinite(float(value)) else float(value)


@dataclass
class EvalResult:
    """Per-case metric arrays ``{metric: [num_cases, num_classes]}`` and their `aggregate_cases` summary, plus
    per-case pixel accuracy ``[num_cases]`` and pooled values (``accuracy``; ``auc`` and ``dice``: ``[num_classes]``,
    all pixels of all cases counted together)."""

    cases: list[str]
    class_names: list[str]
    per_case: dict[str, np.ndarray]
    summary: dict[str, Any]
    include_background: bool
    hd95_unit: str
    accuracy: np.ndarray | None = None
    accuracy_pooled: float = math.nan
    auc_pooled: np.ndarray | None = None
    dice_pooled: np.ndarray | None = None

    @property
    def auc(self) -> float:
        """The headline AUC: pooled per-class AUC averaged over the scored classes (NaN without probabilities)."""
        if self.auc_pooled is None:
            return math.nan
        return nan_mean_std(self.auc_pooled[self.scored_classes])[0]

    @property
    def dice_pooled_mean(self) -> float:
        """Pooled Dice (all pixels of all cases) averaged over the scored classes (NaN if not computed)."""
        if self.dice_pooled is None:
            return math.nan
        return nan_mean_std(self.dice_pooled[self.scored_classes])[0]

    @property
    def scored_classes(self) -> list[int]:
        """Indices of the classes in tables and means (foreground unless background is included)."""
        return list(range(0 if self.include_background else 1, len(self.class_names)))

    def to_json(self) -> dict[str, Any]:
        """The JSON summary (see `summary_json`) plus case names and the HD95 unit."""
        out = summary_json(self.summary, self.class_names, self.include_background)
        if self.auc_pooled is not None:
            out.update(auc=_json_num(self.auc), auc_per_case_mean=_json_num(self.summary["mean"]["auc"]),
                       auc_per_case_std=_json_num(self.summary["std"]["auc"]))
            for c in self.scored_classes:
                out["per_class"][self.class_names[c]]["auc"]["pooled"] = _json_num(self.auc_pooled[c])
        if self.dice_pooled is not None:
            out["dice_pooled"] = _json_num(self.dice_pooled_mean)
            for c in self.scored_classes:
                out["per_class"][self.class_names[c]]["dice"]["pooled"] = _json_num(self.dice_pooled[c])
        if self.accuracy is not None:
            acc_mean, acc_std, _ = nan_mean_std(self.accuracy)
            out.update(accuracy=_json_num(self.accuracy_pooled), accuracy_per_case_mean=_json_num(acc_mean),
                       accuracy_per_case_std=_json_num(acc_std),
                       accuracy_per_case=[_json_num(a) for a in self.accuracy])
        out.update(num_cases=len(self.cases), hd95_unit=self.hd95_unit, cases=self.cases)
        return out

    def write_csv(self, path: str | Path) -> Path:
        """One row per case and scored class: case, class, class_name, then every metric (n/a if undefined) and
        the case's pixel accuracy (the same on each of its rows)."""
        path = Path(path)
        metrics = list(self.per_case)
        extra = ["accuracy"] if self.accuracy is not None else []
        with path.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["case", "class", "class_name", *metrics, *extra])
            for i, case in enumerate(self.cases):
                acc = [fmt(self.accuracy[i], 6)] if extra else []
                for c in self.scored_classes:
                    w.writerow([case, c, self.class_names[c], *(fmt(self.per_case[m][i, c], 6) for m in metrics),
                                *acc])
        return path

    def markdown(self) -> str:
        """The per-class mean ± std table with a final row of means over the scored classes, then accuracy."""
        pooled = {"auc": self.auc_pooled} if self.auc_pooled is not None else {}
        if self.dice_pooled is not None:
            pooled["dice"] = self.dice_pooled
        table = markdown_table(self.summary, self.class_names, self.include_background,
                               title=f"{len(self.cases)} case(s); HD95 in {self.hd95_unit}", pooled=pooled)
        if self.accuracy is None:
            return table
        acc_mean, acc_std, _ = nan_mean_std(self.accuracy)
        return (table + f"\nAccuracy (all classes): pooled {fmt(self.accuracy_pooled)}; per case "
                f"{_pm(acc_mean, acc_std, 4)}\n")


def summary_json(summary: dict[str, Any], class_names: Sequence[str], include_background: bool = False) -> dict:
    """JSON-ready dict of an `aggregate_cases` summary: ``dice`` and ``miou`` (means over scored classes),
    ``metrics`` (mean/std per metric) and ``per_class`` (mean/std/n per metric); undefined values are null."""
    mean, std, per_class = summary["mean"], summary["std"], summary["per_class"]
    first = 0 if include_background else 1
    out: dict[str, Any] = {
        "dice": _json_num(mean.get("dice", math.nan)),
        "miou": _json_num(mean.get("iou", math.nan)),
        "include_background": include_background,
        "num_classes": len(class_names),
        "metrics": {m: {"mean": _json_num(mean[m]), "std": _json_num(std[m])} for m in mean},
        "per_class": {
            class_names[c]: {m: {"mean": _json_num(per_class[m]["mean"][c]), "std": _json_num(per_class[m]["std"][c]),
                                 "n": int(per_class[m]["n"][c])} for m in per_class}
            for c in range(first, len(class_names))
        },
    }
    return out


def markdown_table(summary: dict[str, Any], class_names: Sequence[str], include_background: bool = False,
                   title: str | None = None, pooled: dict[str, np.ndarray] | None = None) -> str:
    """Markdown table: one row per scored class (mean ± std over cases, n/a if undefined) + the overall mean;
    ``pooled`` ``{metric: [num_classes]}`` adds a "<metric> pooled" column (its mean row: mean over classes)."""
    metrics = list(summary["mean"])
    pooled = pooled or {}
    first = 0 if include_background else 1
    digits = {m: 2 if m == "hd95" else 4 for m in metrics}
    head = ["class", *(_LABELS.get(m, m) for m in metrics), *(f"{_LABELS.get(m, m)} pooled" for m in pooled)]
    rows = [head, ["---"] * len(head)]
    for c in range(first, len(class_names)):
        pc = summary["per_class"]
        rows.append([class_names[c], *(_pm(pc[m]["mean"][c], pc[m]["std"][c], digits[m]) for m in metrics),
                     *(fmt(v[c]) for v in pooled.values())])
    scope = "all classes" if include_background else "foreground"
    rows.append([f"**mean ({scope})**",
                 *(_pm(summary["mean"][m], summary["std"][m], digits[m]) for m in metrics),
                 *(fmt(nan_mean_std(np.asarray(v)[first:])[0]) for v in pooled.values())])
    lines = ["| " + " | ".join(r) + " |" for r in rows]
    return (f"{title}\n\n" if title else "") + "\n".join(lines) + "\n"


def _pm(mean: float, std: float, digits: int) -> str:
    if not math.isfinite(mean):
        return "n/a"
    return fmt(mean, digits) + (f" ± {fmt(std, digits)}" if math.isfinite(std) else "")


def match_cases(pred_dir: str | Path, gt_dir: str | Path) -> list[tuple[str, Path, Path]]:
    """``(stem, pred, gt)`` for every stem, sorted; unmatched stems on either side raise ValueError naming them."""
    for arg, d in (("--pred", pred_dir), ("--gt", gt_dir)):
        if Path(d).exists() and not Path(d).is_dir():
            raise ValueError(f"{arg}: expected a folder of label maps, got the file {str(d)!r}")
    preds = files_by_stem(list_cases(pred_dir, "--pred"), "--pred")
    gts = files_by_stem(list_cases(gt_dir, "--gt"), "--gt")
    return pair_by_stem(preds, gts, ("prediction", "ground-truth"), (pred_dir, gt_dir))


def evaluate_folders(pred_dir: str | Path, gt_dir: str | Path, num_classes: int, include_background: bool = False,
                     class_names: Sequence[str] | None = None, hd95: bool = True, hd95_voxels: bool = False,
                     progress: bool = False, roi_dir: str | Path | None = None,
                     probs_dir: str | Path | None = None) -> EvalResult:
    """Score every prediction in ``pred_dir`` against the ground truth of the same stem in ``gt_dir``
    (inside the nonzero pixels of the same-stem mask in ``roi_dir``, when given); with ``probs_dir`` (the
    ``probs/`` folder of `zoo predict --save-probs`) also ROC AUC, per case and pooled."""
    if not isinstance(num_classes, int) or num_classes < (1 if include_background else 2):
        raise ValueError(f"num_classes must be an int >= {1 if include_background else 2} "
                         f"(background + at least one scored class), got {num_classes!r}")
    names = [str(i) for i in range(num_classes)] if class_names is None else [str(n) for n in class_names]
    if len(names) != num_classes:
        raise ValueError(f"class_names must have num_classes={num_classes} entries, got {len(names)}: {names}")
    pairs = match_cases(pred_dir, gt_dir)
    rois = files_by_stem(list_cases(roi_dir, "--roi-dir"), "--roi-dir") if roi_dir is not None else None
    missing = sorted({p[0] for p in pairs} - set(rois)) if rois is not None else []
    if missing:
        raise ValueError(f"--roi-dir: {len(missing)} case(s) have no ROI mask in {str(roi_dir)!r}: "
                         + ", ".join(repr(m) for m in missing[:10]))
    probs = _match_probs(probs_dir, [p[0] for p in pairs]) if probs_dir is not None else None
    from rich.console import Console
    from rich.progress import track

    per_case: dict[str, list[np.ndarray]] = {m: [] for m in (*METRIC_NAMES, *(("auc",) if probs else ()))}
    roc_parts: list[list[RocCounts]] = [[] for _ in range(num_classes)]
    accuracy, correct_total = [], np.zeros(2, np.int64)
    confusion = np.zeros((num_classes, 3), np.int64)  # tp, fp, fn summed over cases: the pooled Dice
    units = set()
    for stem, pred_path, gt_path in track(pairs, description="evaluating", disable=not progress,
                                          console=Console(stderr=True)):
        pred, _ = read_label_map(pred_path)
        gt, spacing = read_label_map(gt_path)
        if pred.shape != gt.shape:
            raise ValueError(f"case {stem!r}: prediction {str(pred_path)!r} has shape {pred.shape} but ground "
                             f"truth {str(gt_path)!r} has shape {gt.shape}")
        for arr, path in ((pred, pred_path), (gt, gt_path)):
            check_label_range(arr, num_classes, f"label map {str(path)!r}", "--num-classes")
        roi = None
        if rois is not None:
            roi = read_label_map(rois[stem])[0] > 0
            if roi.shape != gt.shape:
                raise ValueError(f"case {stem!r}: ROI mask {str(rois[stem])!r} has shape {roi.shape} but ground "
                                 f"truth {str(gt_path)!r} has shape {gt.shape}")
        physical = is_nifti(gt_path) and not hd95_voxels
        units.add("mm" if physical else ("voxels" if gt.ndim == 3 else "pixels"))
        values = case_metrics(pred, gt, num_classes, spacing if physical else None, hd95=hd95, roi=roi,
                              include_background=include_background)
        if probs is not None:
            prob = read_prob_map(probs[stem])
            if prob.shape != (num_classes, *gt.shape):
                raise ValueError(f"case {stem!r}: probability map {str(probs[stem])!r} has shape "
                                 f"{list(prob.shape)} but [num_classes, *ground truth shape] is "
                                 f"{[num_classes, *gt.shape]}")
            values["auc"], counts = auc_per_class(prob, gt, num_classes, roi, include_background)
            for c, part in enumerate(counts):
                if part is not None:
                    roc_parts[c].append(part)
        for m in per_case:
            per_case[m].append(values[m])
        confusion += values["confusion"]
        correct, total = accuracy_counts(pred, gt, roi)
        accuracy.append(correct / total if total else math.nan)
        correct_total += (correct, total)
    arrays = {m: np.stack(v) for m, v in per_case.items()}
    if not hd95:
        arrays.pop("hd95")
    summary = aggregate_cases(arrays, include_background)
    unit = " / ".join(sorted(units)) if hd95 else "n/a"
    auc_pooled = (np.array([roc_auc(merge_roc_counts(parts)) for parts in roc_parts]) if probs is not None
                  else None)
    acc_pooled = correct_total[0] / correct_total[1] if correct_total[1] else math.nan
    return EvalResult([p[0] for p in pairs], names, arrays, summary, include_background, unit,
                      np.array(accuracy, dtype=np.float64), float(acc_pooled), auc_pooled,
                      dice_iou(torch.from_numpy(confusion))[0].numpy())


def _match_probs(probs_dir: str | Path, stems: Sequence[str]) -> dict[str, Path]:
    """The probability map of every case stem in ``probs_dir``; missing ones raise ValueError naming them."""
    folder = Path(probs_dir)
    if not folder.is_dir():
        if folder.exists():
            raise ValueError(f"--probs: expected a folder of probability maps, got the file {str(folder)!r}")
        raise FileNotFoundError(f"--probs: path {str(folder)!r} does not exist")
    found = {stem: find_prob_map(folder, stem) for stem in stems}
    missing = [s for s, f in found.items() if f is None]
    if missing:
        raise ValueError(f"--probs: {len(missing)} case(s) have no probability map <stem>_prob.tif or "
                         f"<stem>_prob.nii.gz in {str(folder)!r}: " + ", ".join(repr(m) for m in missing[:10])
                         + (f" and {len(missing) - 10} more" if len(missing) > 10 else ""))
    return {s: f for s, f in found.items() if f is not None}


def build_parser(prog: str = "zoo eval") -> argparse.ArgumentParser:
    """The argparse parser of `zoo eval`."""
    desc = ("Score predicted label maps against ground truth: Dice, IoU, HD95, sensitivity and precision per "
            "case and per class, mean ± std over cases; pixel accuracy; with --probs ROC AUC.\n\nWrites "
            "<output>/metrics_per_case.csv, <output>/metrics.json (keys 'dice' and 'miou': foreground means, "
            "'accuracy': pooled, with --probs 'auc': pooled foreground mean, plus per-class and per-metric "
            "mean/std) and <output>/metrics.md, and prints the table.\nLabel maps: single-channel PNG/TIFF "
            "(2-D) or NIfTI (3-D) of class indices 0..N-1.\n\n" + CONVENTIONS)
    p = argparse.ArgumentParser(prog=prog, description=desc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pred", required=True, help="folder of predicted label maps")
    p.add_argument("--gt", required=True, help="folder of ground-truth label maps (same stems)")
    p.add_argument("--num-classes", type=int, required=True, help="number of classes N, background included")
    p.add_argument("--include-background", action="store_true", help="score class 0 too (excluded by default)")
    p.add_argument("--class-names", help="comma-separated names of all N classes, background first")
    p.add_argument("--output", help="folder for the CSV/JSON/Markdown files (default: the --pred folder)")
    p.add_argument("--roi-dir", help="folder of masks with the same stems; only their nonzero pixels are scored "
                                     "(e.g. DRIVE's field of view)")
    p.add_argument("--probs", help="folder of class probability maps with the same stems, as `zoo predict "
                                   "--save-probs` writes them (<its output>/probs: <stem>_prob.tif for 2-D, "
                                   "<stem>_prob.nii.gz for 3-D); adds ROC AUC per case and pooled")
    p.add_argument("--hd95-voxels", action="store_true", help="HD95 in voxels even for NIfTI (default: mm)")
    p.add_argument("--no-hd95", action="store_true", help="skip HD95 (the slowest metric)")
    p.add_argument("--quiet", action="store_true", help="no progress bar and no table on the terminal")
    return p


def eval_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `zoo eval`; returns the exit status (errors are printed, not raised)."""
    args = build_parser().parse_args(argv)
    names = [n.strip() for n in args.class_names.split(",")] if args.class_names else None
    try:
        result = evaluate_folders(args.pred, args.gt, args.num_classes, args.include_background, names,
                                  hd95=not args.no_hd95, hd95_voxels=args.hd95_voxels, progress=not args.quiet,
                                  roi_dir=args.roi_dir, probs_dir=args.probs)
        out = Path(args.output or args.pred)
        out.mkdir(parents=True, exist_ok=True)
        result.write_csv(out / "metrics_per_case.csv")
        (out / "metrics.json").write_text(json.dumps(result.to_json(), indent=2) + "\n")
        table = result.markdown()
        (out / "metrics.md").write_text(table)
    except (ValueError, FileNotFoundError) as err:
        print(f"zoo eval: error: {err}", file=sys.stderr)
        return 1
    if not args.quiet:
        from rich.console import Console
        from rich.markdown import Markdown

        Console().print(Markdown(table))
    auc = f"auc {fmt(result.auc)} (pooled)  " if result.auc_pooled is not None else ""
    print(f"dice {fmt(result.summary['mean']['dice'])} (pooled {fmt(result.dice_pooled_mean)})  "
          f"miou {fmt(result.summary['mean']['iou'])}  {auc}"
          f"accuracy {fmt(result.accuracy_pooled)} (pooled)  -> {out / 'metrics.json'}")
    return 0
