"""Model benchmark (GPU, bf16 autocast): training-step and inference images/s and training peak memory for
every registered family at 2-D 512x512 (batch 16) and 3-D 96^3 (batch 2), side by side with MONAI's
AttentionUnet, UNETR and SwinUNETR, in one run.

    python tools/bench_models.py [--dims 2 3] [--models NAME ...] [--channels-last] [--out docs/benchmarks/models.md]

By default each family is represented by its `*_small` model (else its first) and compared with MONAI
baselines of matching width and depth. `--smoke` runs one step of each on tiny inputs on the CPU, untimed
(checks the plumbing).
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import zoo  # noqa: E402
from zoo.registry import get_model_entry  # noqa: E402

SETTINGS = {2: dict(batch=16, size=(512, 512)), 3: dict(batch=2, size=(96, 96, 96))}
SMOKE_SETTINGS = {2: dict(batch=2, size=(64, 64)), 3: dict(batch=1, size=(32, 32, 32))}
NUM_CLASSES, IN_CHANNELS = 4, 1

# MONAI baselines at the widths/depths of the segzoo models they are compared with.
BASELINES: list[tuple[str, str, dict[str, Any]]] = [
    ("monai AttentionUnet (= attention_unet_small)", "monai:AttentionUnet",
     dict(channels=(16, 32, 64, 128, 256), strides=(2, 2, 2, 2))),
    ("monai AttentionUnet (unet_small widths)", "monai:AttentionUnet",
     dict(channels=(32, 64, 128, 256, 320), strides=(2, 2, 2, 2))),
    ("monai UNETR (ViT-B/16, = vit_unetr_base)", "monai:UNETR", dict(feature_size=16)),
    ("monai SwinUNETR (feature 48, paper size)", "monai:SwinUNETR", dict(feature_size=48)),
    ("monai SwinUNETR (feature 36, 35 M in 3-D ~ nat_unet_small's 31 M)", "monai:SwinUNETR", dict(feature_size=36)),
    ("monai SwinUNETR (feature 24)", "monai:SwinUNETR", dict(feature_size=24)),
]


@dataclass
class Case:
    label: str
    name: str
    overrides: dict[str, Any] = field(default_factory=dict)


def default_cases() -> list[Case]:
    """One model per registered family (its `*_small`, else its first) plus the MONAI baselines."""
    by_family: dict[str, list[str]] = {}
    for name in zoo.list_models(pretrained=False):
        by_family.setdefault(get_model_entry(name).family, []).append(name)
    cases = [Case(n, n) for names in by_family.values() for n in [next((m for m in names if "small" in m),
                                                                        names[0])]]
    cases += [Case("vit_unetr_base", "vit_unetr_base"), Case("nat_unet_small", "nat_unet_small")]  # MONAI-size peers
    return cases + [Case(label, name, dict(kw)) for label, name, kw in BASELINES]


def build(case: Case, dims: int, size: tuple[int, ...], device: torch.device) -> torch.nn.Module:
    """The model for `case` in `dims`; transformer families get `img_size` = the benchmark size."""
    kwargs = dict(spatial_dims=dims, in_channels=IN_CHANNELS, num_classes=NUM_CLASSES, **case.overrides)
    try:
        model = zoo.create_model(case.name, img_size=size, **kwargs)
    except TypeError:  # a family without a position embedding takes no img_size
        model = zoo.create_model(case.name, **kwargs)
    return model.to(device)


def make_steps(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
               amp: bool) -> tuple[Callable[[], None], Callable[[], None]]:
    """(training step, inference step) closures: AdamW step on cross-entropy / no-grad forward, bf16 autocast."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    ctx = (lambda: torch.autocast(x.device.type, dtype=torch.bfloat16)) if amp else torch.enable_grad

    def train_step() -> None:
        model.train()
        with ctx():
            loss = F.cross_entropy(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def infer_step() -> None:
        model.eval()
        with torch.no_grad(), ctx():
            model(x)

    return train_step, infer_step


def bench_case(case: Case, dims: int, batch: int, size: tuple[int, ...], device: torch.device,
               channels_last: bool, smoke: bool) -> list[Any]:
    """One table row: label, dims, params (M), train img/s, train peak MiB, inference img/s (or the error)."""
    try:
        model = build(case, dims, size, device)
        params = sum(p.numel() for p in model.parameters()) / 1e6
        x = torch.randn(batch, IN_CHANNELS, *size, device=device)
        y = torch.randint(0, NUM_CLASSES, (batch, *size), device=device)
        if channels_last:
            fmt = torch.channels_last if dims == 2 else torch.channels_last_3d
            model, x = model.to(memory_format=fmt), x.contiguous(memory_format=fmt)
        train_step, infer_step = make_steps(model, x, y, amp=not smoke)
        if smoke:
            t0 = time.perf_counter()
            train_step()
            infer_step()
            return [case.label, dims, params, None, None, None, f"smoke ok {time.perf_counter() - t0:.1f}s"]
        from benchlib import peak_mem_mb, time_ms

        train_step()  # optimizer state allocated before measuring
        mem = peak_mem_mb(train_step)
        train_ms, infer_ms = time_ms(train_step, warmup=5, rep=30), time_ms(infer_step, warmup=5, rep=30)
        return [case.label, dims, params, batch * 1000 / train_ms, mem, batch * 1000 / infer_ms, ""]
    except torch.cuda.OutOfMemoryError:
        return [case.label, dims, None, None, None, None, "out of memory"]
    except Exception as e:  # one failing model must not cost the whole run
        return [case.label, dims, None, None, None, None, f"{type(e).__name__}: {str(e)[:80]}"]
    finally:
        if device.type == "cuda":
            torch.cuda.empty_cache()


HEADER = ["model", "dims", "params (M)", "train img/s", "train peak MiB", "infer img/s", "note"]


def main(argv: list[str] | None = None) -> list[list[Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dims", type=int, nargs="+", default=[2, 3], choices=[2, 3])
    parser.add_argument("--models", nargs="+", help="registry names (default: one per family + MONAI baselines)")
    parser.add_argument("--channels-last", action="store_true", help="channels_last(_3d) memory format")
    parser.add_argument("--smoke", action="store_true", help="one untimed step per model, tiny inputs, CPU ok")
    parser.add_argument("--out", default="docs/benchmarks/models.md")
    args = parser.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type != "cuda" and not args.smoke:
        raise SystemExit("bench_models.py needs a CUDA GPU (or --smoke)")
    cases = [Case(n, n) for n in args.models] if args.models else default_cases()
    settings = SMOKE_SETTINGS if args.smoke else SETTINGS
    rows = []
    for dims in args.dims:
        for case in cases:
            if dims not in get_model_entry(case.name).spatial_dims:
                continue
            row = bench_case(case, dims, settings[dims]["batch"], settings[dims]["size"], device,
                             args.channels_last, args.smoke)
            print(row, flush=True)
            rows.append(row)
    if not args.smoke:
        from benchlib import markdown_table, write_report

        note = ("2-D: batch 16 at 512x512; 3-D: batch 2 at 96^3; bf16 autocast; train = forward + cross-entropy + "
                "backward + AdamW step; peak memory of one training step above the resident weights and optimizer "
                f"state; {'channels_last' if args.channels_last else 'contiguous (NCHW)'}.\n\n")
        write_report(args.out, "Model throughput", "python tools/bench_models.py " + " ".join(argv or sys.argv[1:]),
                     note + markdown_table(HEADER, rows))
    return rows


if __name__ == "__main__":
    main()
