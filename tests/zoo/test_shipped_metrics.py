"""Each shipped model reproduces its recorded per-case test metrics (docs/model_zoo/<name>/metrics_per_case.csv,
written by tools/measure_pretrained.py) on its first cases, through the same predict and eval code as the CLI.
Skipped when ../shared/datasets is absent."""
from __future__ import annotations

import csv
from pathlib import Path
from types import ModuleType
from typing import Callable

import pytest

from zoo.evaluate import evaluate_folders
from zoo.predict import predict
from zoo.weights import WEIGHTS_DIR
from zoo.weights_manifest import load_manifest, manifest_paths

DOCS = Path(__file__).resolve().parents[2] / "docs" / "model_zoo"
CASES = 2  # per model: enough to catch a wrong weight file or pre-processing, cheap on the CPU


def _drive_eval(root: Path, tmp: Path, prepare_drive_eval: ModuleType) -> tuple[Path, Path, Path]:
    out = prepare_drive_eval.prepare(root / "DRIVE" / "test", tmp / "drive_eval")
    return root / "DRIVE" / "test" / "images", out / "gt", out / "fov"


def _inputs(dataset: str, root: Path, tmp: Path, load_tool: Callable[[str], ModuleType]
            ) -> tuple[Path, Path, Path | None, str]:
    """(images folder, ground-truth folder, ROI folder or None, image suffix) of a shipped model's test set."""
    if dataset == "drive":
        images, gt, fov = _drive_eval(root, tmp, load_tool("prepare_drive_eval"))
        return images, gt, fov, ".tif"
    if dataset == "hippocampus":
        task = root / "Task04_Hippocampus"
        return task / "imagesTr", task / "labelsTr", None, ".nii.gz"
    raise AssertionError(f"no test-set layout known for dataset {dataset!r}: add it here")


@pytest.mark.parametrize("path", manifest_paths(WEIGHTS_DIR), ids=lambda p: p.stem)
def test_shipped_model_reproduces_its_recorded_cases(path, shared_datasets, tmp_path, load_tool):
    m = load_manifest(path, check_file=True)
    table = DOCS / m["name"] / "metrics_per_case.csv"
    assert table.is_file(), f"{table} missing: run tools/measure_pretrained.py {m['name']}"
    rows = list(csv.DictReader(table.open()))
    cases = list(dict.fromkeys(r["case"] for r in rows))[:CASES]
    images, gt, roi, suffix = _inputs(m["dataset"]["name"], shared_datasets, tmp_path, load_tool)
    subset = tmp_path / "images"
    gt_subset = tmp_path / "gt"
    subset.mkdir()
    gt_subset.mkdir()
    for case in cases:
        (subset / f"{case}{suffix}").symlink_to(images / f"{case}{suffix}")
        gt_file = next(gt.glob(f"{case}.*"))
        (gt_subset / gt_file.name).symlink_to(gt_file)
    predict(subset, tmp_path / "pred", model=m["name"], save_probs="auc" in m["metrics"])
    result = evaluate_folders(tmp_path / "pred", gt_subset, m["data_info"]["num_classes"], roi_dir=roi,
                              probs_dir=(tmp_path / "pred" / "probs") if "auc" in m["metrics"] else None,
                              hd95=False)
    for row in rows:
        if row["case"] not in cases:
            continue
        i, c = result.cases.index(row["case"]), int(row["class"])
        assert result.per_case["dice"][i, c] == pytest.approx(float(row["dice"]), abs=2e-3), (row["case"], c)
        if "auc" in m["metrics"]:
            assert result.per_case["auc"][i, c] == pytest.approx(float(row["auc"]), abs=2e-3), (row["case"], c)
