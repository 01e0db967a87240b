"""tools/bench_models.py's plumbing (untimed smoke mode on the CPU): every default case builds and steps."""
from __future__ import annotations


def test_default_cases_cover_every_family_and_monai_baselines(load_tool) -> None:
    bench = load_tool("bench_models")
    import zoo
    from zoo.registry import get_model_entry

    cases = bench.default_cases()
    families = {get_model_entry(c.name).family for c in cases}
    assert families >= {get_model_entry(n).family for n in zoo.list_models()} | {"monai"}
    assert {c.name for c in cases} >= {"monai:AttentionUnet", "monai:UNETR", "monai:SwinUNETR"}


def test_smoke_run_steps_models(load_tool) -> None:
    bench = load_tool("bench_models")
    rows = bench.main(["--smoke", "--dims", "2", "--models", "unet_tiny", "sa_unet_tiny",
                       "monai:AttentionUnet"])
    assert [r[0] for r in rows] == ["unet_tiny", "sa_unet_tiny", "monai:AttentionUnet"]
    assert all(r[-1].startswith("smoke ok") for r in rows), rows
