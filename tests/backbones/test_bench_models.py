"""tools/bench_models.py's plumbing (untimed smoke mode on the CPU): every default case builds and steps."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path


TOOLS = Path(__file__).resolve().parents[2] / "tools"


def _load():
    spec = importlib.util.spec_from_file_location("bench_models", TOOLS / "bench_models.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_models"] = module
    spec.loader.exec_module(module)
    return module


def test_default_cases_cover_every_family_and_monai_baselines() -> None:
    bench = _load()
    import zoo
    from zoo.registry import get_model_entry

    cases = bench.default_cases()
    families = {get_model_entry(c.name).family for c in cases}
    assert families >= {get_model_entry(n).family for n in zoo.list_models()} | {"monai"}
    assert {c.name for c in cases} >= {"monai:AttentionUnet", "monai:UNETR", "monai:SwinUNETR"}


def test_smoke_run_steps_models() -> None:
    bench = _load()
    rows = bench.main(["--smoke", "--dims", "2", "--models", "unet_tiny", "sa_unet_tiny",
                       "monai:AttentionUnet"])
    assert [r[0] for r in rows] == ["unet_tiny", "sa_unet_tiny", "monai:AttentionUnet"]
    assert all(r[-1].startswith("smoke ok") for r in rows), rows
