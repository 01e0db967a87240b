"""NA benchmark (GPU, bf16): fused Triton kernels vs dense SDPA (flash), FlexAttention (best token layout) and the
reference on the issue's cases S1-S7 and NATTEN's published cases N1-N3.

`python tools/bench_ops.py na [--cases S1,S2] [--out docs/benchmarks/na.md] [--no-flex] [--no-ref]
[--tune [fwd,dq,dkv]]`
"""
from __future__ import annotations

import argparse
import gc
import itertools
import json
import math
import sys
from pathlib import Path
from typing import Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchlib import (env_header, fmt_num, fwd_bwd, fwd_ms, graph_ms, markdown_table,  # noqa: E402
                      peak_mem_mb, ratio, tflops, time_ms, write_report)

CASES = {  # name: (spatial shape, kernel, dilation, batch, heads, head_dim, flex tiles to try)
    "S1": ((64, 64), 7, 1, 16, 4, 32, [None, (8, 8)]),
    "S2": ((128, 128), 13, 1, 4, 4, 32, [None, (8, 8)]),
    "S3": ((128, 128), 31, 1, 4, 4, 64, [None, (8, 8)]),
    "S4": ((256, 256), 13, 1, 2, 2, 64, [None, (8, 8)]),
    "S5": ((128, 128), 7, 4, 4, 4, 32, [None, (8, 8)]),
    "S6": ((32, 32, 32), 7, 1, 2, 4, 32, [None, (4, 4, 8)]),
    "S7": ((64, 64, 64), 5, 1, 1, 4, 32, [None, (4, 4, 8)]),
    "N1": ((32768,), 2048, 1, 1, 8, 128, [None]),
    "N2": ((256, 256), 80, 1, 1, 24, 128, [(8, 16)]),
    "N3": ((30, 48, 80), (18, 24, 24), 1, 1, 24, 128, [(2, 8, 8)]),
}
REF_LIMIT = 1 << 29  # gathered elements B*H*N*k^d*D above which the reference is skipped (minutes per call)
NATTEN_H100 = {"N1": 8.3, "N2": 6.0, "N3": 3.6}


def _measure(fn: Callable[[], object], q, k, v, graph: bool = False) -> dict:
    """fwd ms, fwd+bwd ms and fwd+bwd peak MiB of an NA callable, and with `graph` the fwd+bwd step replayed from
    one CUDA graph (GPU time without host overhead); None where it fails (OOM or unsupported)."""
    res: dict = {"fwd": None, "fwdbwd": None, "mem": None, "err": None}
    try:
        res["fwd"] = fwd_ms(fn)
        step = fwd_bwd(fn, torch.randn_like(q), wrt=(q, k, v))
        res["fwdbwd"] = time_ms(step)
        res["mem"] = peak_mem_mb(step)
    except torch.OutOfMemoryError:
        res["err"] = "OOM"
    except Exception as e:  # noqa: BLE001  (any backend failure is reported as n/a with its reason)
        res["err"] = f"{type(e).__name__}: {str(e).splitlines()[0][:80]}"
    if graph and res["fwdbwd"] is not None:
        try:
            res["graph_fwdbwd"] = graph_ms(step)
        except Exception as e:  # noqa: BLE001  (a failed capture is reported; the plain timings stand)
            res["graph_err"] = f"{type(e).__name__}: {str(e).splitlines()[0][:80]}"
    gc.collect()
    torch.cuda.empty_cache()
    return res


def run_case(name: str, flex: bool, ref: bool, row_major_only: bool = False, graph: bool = False) -> dict:
    from ops.na.flex import na_flex
    from ops.na.functional import neighborhood_attention
    from ops.na.params import make_params

    shape, ks, dil, B, H, D, tiles = CASES[name]
    nd = len(shape)
    p = make_params(shape, ks, dil)
    N, kd = math.prod(shape), math.prod(p.kernel_size)
    q, k, v = (torch.randn(B, *shape, H, D, device="cuda", dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
    flops = 4 * B * H * N * kd * D
    row = {"case": name, "problem": f"{nd}-D {'x'.join(map(str, shape))} k={ks} dil={dil} B{B} h{H} d{D}",
           "useful_fwd_gflop": flops / 1e9}
    row["triton"] = _measure(lambda: neighborhood_attention(q, k, v, nd, ks, dil, backend="triton"), q, k, v, graph)

    qs, ks_, vs = (t.detach().flatten(1, nd).transpose(1, 2).requires_grad_() for t in (q, k, v))
    from torch.nn.attention import SDPBackend, sdpa_kernel

    def sdpa():
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            return torch.nn.functional.scaled_dot_product_attention(qs, ks_, vs)

    row["sdpa"] = _measure(sdpa, qs, ks_, vs)
    row["flex"] = {"err": "skipped (--no-flex)"}
    if flex:
        best = None
        for tile in tiles[:1] if row_major_only else tiles:
            r = _measure(lambda: na_flex(q, k, v, p, tile=tile), q, k, v, graph)
            r["layout"] = "row-major" if tile is None else "x".join(map(str, tile)) + " tiles"
            print(f"  flex {name} {r['layout']}: {r}", flush=True)
            if r["fwdbwd"] is not None and (best is None or r["fwdbwd"] < best["fwdbwd"]):
                best = r
            elif best is None:
                best = r
            torch._dynamo.reset()
        row["flex"] = best
    gathered = B * H * N * kd * D
    if ref and gathered <= REF_LIMIT:
        row["ref"] = _measure(lambda: neighborhood_attention(q, k, v, nd, ks, dil, backend="reference"), q, k, v)
    else:
        row["ref"] = {"err": f"skipped: gathers {gathered / 1e9:.1f}G elements (limit {REF_LIMIT / 1e9:.2f}G)"
                      if ref else "skipped (--no-ref)"}
    print(f"{name}: {json.dumps(row)}", flush=True)
    return row


def render(rows: list[dict]) -> str:
    head = ["case", "problem", "NA fwd ms", "NA fwd+bwd ms", "NA peak MiB", "NA fwd TFLOP/s", "NA fwd+bwd TFLOP/s",
            "SDPA fwd ms", "SDPA fwd+bwd ms", "flex layout", "flex fwd ms", "flex fwd+bwd ms", "flex peak MiB",
            "ref fwd ms", "ref fwd+bwd ms", "fwd vs SDPA", "fwd+bwd vs SDPA", "fwd vs flex", "fwd+bwd vs flex",
            "fwd+bwd vs ref"]
    out = []
    for r in rows:
        t, s, f, rf = r["triton"], r["sdpa"], r["flex"], r["ref"]
        g = r["useful_fwd_gflop"]
        out.append([r["case"], r["problem"], t.get("fwd"), t.get("fwdbwd"), t.get("mem"), tflops(g, t.get("fwd")),
                    tflops(g, t.get("fwdbwd"), 3.5), s.get("fwd"), s.get("fwdbwd"), f.get("layout", "n/a"),
                    f.get("fwd"), f.get("fwdbwd"), f.get("mem"), rf.get("fwd"), rf.get("fwdbwd"),
                    ratio(s.get("fwd"), t.get("fwd")), ratio(s.get("fwdbwd"), t.get("fwdbwd")),
                    ratio(f.get("fwd"), t.get("fwd")), ratio(f.get("fwdbwd"), t.get("fwdbwd")),
                    ratio(rf.get("fwdbwd"), t.get("fwdbwd"))])
    notes = []
    for r in rows:
        for be in ("triton", "sdpa", "flex", "ref"):
            if r[be].get("err"):
                notes.append(f"- {r['case']} {be}: n/a, {r[be]['err']}")
        if r["case"] in NATTEN_H100:
            notes.append(f"- {r['case']}: NATTEN's Hopper kernels reported {NATTEN_H100[r['case']]}x forward over "
                         f"dense cuDNN attention; here {fmt_num(ratio(r['sdpa'].get('fwd'), r['triton'].get('fwd')))}x "
                         f"over dense SDPA flash")
    return markdown_table(head, out) + "\n" + "\n".join(notes) + "\n" + _render_graphed(rows)


def _render_graphed(rows: list[dict]) -> str:
    """The fwd+bwd steps replayed from CUDA graphs (runs with --graph): GPU time, without the host time that the plain
    timing of small problems carries on a slow host."""
    rows = [r for r in rows if "graph_fwdbwd" in r["triton"] or "graph_err" in r["triton"]]
    if not rows:
        return ""
    head = ["case", "NA fwd+bwd graph ms", "flex layout", "flex fwd+bwd graph ms", "graph fwd+bwd vs flex"]
    out = [[r["case"], r["triton"].get("graph_fwdbwd"), r["flex"].get("layout", "n/a"), r["flex"].get("graph_fwdbwd"),
            ratio(r["flex"].get("graph_fwdbwd"), r["triton"].get("graph_fwdbwd"))] for r in rows]
    errs = [f"- {r['case']} {be} graph: n/a, {r[be]['graph_err']}" for r in rows for be in ("triton", "flex")
            if r[be].get("graph_err")]
    return ("\n### fwd+bwd replayed from one CUDA graph (GPU time)\n\n" + markdown_table(head, out) + "\n"
            + "".join(e + "\n" for e in errs))


def tune(names: list[str], parts: list[str], top: int = 4) -> None:
    """Sweep Triton configurations on the given cases and print the defaults' raw kernel times and the `top` fastest
    configurations of each part: "fwd" (tile, warps, pipeline stages, key block, row or flattened walk), "dq" and
    "dkv" (the backward's two kernels apart: tile, key/query block, warps; the other kernel keeps its default; "dq"
    runs the split backward, "dkv" whichever backward the case defaults to)."""
    from ops.na.params import make_params
    from ops.na.triton_kernels import default_config, na_bwd_triton, na_fwd_triton

    tiles = {1: [(1, 1, 64), (1, 1, 128)],
             2: [(1, 4, 8), (1, 2, 16), (1, 8, 8), (1, 4, 16), (1, 8, 16), (1, 16, 8), (1, 4, 32)],
             3: [(2, 4, 4), (2, 2, 8), (4, 4, 4), (2, 4, 8), (4, 4, 8), (2, 8, 8), (1, 8, 8), (2, 2, 16)]}
    for name in names:
        shape, ks, dil, B, H, D, _ = CASES[name]
        p = make_params(shape, ks, dil)
        q, k, v, do = (torch.randn(B, *shape, H, D, device="cuda", dtype=torch.bfloat16) for _ in range(4))
        base = default_config(p.padded(), len(shape), D)
        out, lse = na_fwd_triton(q, k, v, p, D ** -0.5)

        def fwd(cfg=None):
            return na_fwd_triton(q, k, v, p, D ** -0.5, cfg)

        def bwd(cfg=None):
            return na_bwd_triton(do, q, k, v, out, lse, p, D ** -0.5, cfg)

        print(f"DEFAULT {name} fwd {time_ms(fwd, warmup=5, rep=40):.4f} ms, bwd {time_ms(bwd, warmup=5, rep=40):.4f} "
              f"ms: {base}", flush=True)
        sweeps = {
            "fwd": (fwd, itertools.product(tiles[len(shape)], (2, 4, 8), (2, 3), (32, 64, 128), (True, False)),
                    lambda t, w, st, bn, r: dict(fwd_tile=t, fwd_warps=w, fwd_stages=st, fwd_block_n=bn, fwd_rows=r)),
            "dq": (bwd, itertools.product(tiles[len(shape)], (2, 4, 8), (32, 64, 128)),
                   lambda t, w, bn: dict(dq_tile=t, dq_warps=w, dq_block_n=bn, fused_bwd=False)),
            "dkv": (bwd, itertools.product(tiles[len(shape)], (2, 4, 8), (32, 64, 128)),
                    lambda t, w, bm: dict(dkv_tile=t, dkv_warps=w, dkv_block_m=bm)),
        }
        for part in parts:
            fn, grid, make = sweeps[part]
            res = []
            for combo in grid:
                cfg = make(*combo)
                try:
                    res.append((time_ms(lambda: fn(cfg), warmup=5, rep=40), cfg))
                except Exception as e:  # noqa: BLE001  (a config that does not compile or fit is reported)
                    print(f"TUNE {name} {part} {cfg} failed: {type(e).__name__}", flush=True)
            for ms, cfg in sorted(res, key=lambda r: r[0])[:top]:
                print(f"TUNE {name} {part} {ms:.4f} ms: {cfg}", flush=True)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="bench_ops.py na", description=__doc__)
    ap.add_argument("--cases", default=",".join(CASES), help="comma-separated subset of " + ",".join(CASES))
    ap.add_argument("--out", default="docs/benchmarks/na.md", help="Markdown report; JSON goes next to it")
    ap.add_argument("--no-flex", action="store_true")
    ap.add_argument("--no-ref", action="store_true")
    ap.add_argument("--flex-first-layout", action="store_true", help="only the first flex layout of each case")
    ap.add_argument("--graph", action="store_true",
                    help="also time NA's and flex's fwd+bwd step replayed from a CUDA graph (GPU time only)")
    ap.add_argument("--tune", nargs="?", const="fwd,dq,dkv", default="",
                    help="sweep Triton configurations instead of the table: comma-separated parts of fwd, dq, dkv")
    ap.add_argument("--merge", default="", help="comma-separated JSON reports of earlier runs to merge into --out")
    args = ap.parse_args(argv)
    cmd = "python tools/bench_ops.py na " + " ".join(argv or [])
    if args.merge:
        parts = [json.loads(Path(f).read_text()) for f in args.merge.split(",")]
        rows = sorted((r for part in parts for r in part["rows"]), key=lambda r: list(CASES).index(r["case"]))
        _write(args.out, parts[0]["env"], rows,
               [c for part in parts for c in (part["command"], *part.get("runs", ()))])
        return
    names = [c for c in args.cases.split(",") if c]
    unknown = [c for c in names if c not in CASES]
    if unknown:
        raise SystemExit(f"unknown cases {unknown}; expected some of {list(CASES)}")
    if not torch.cuda.is_available():
        raise SystemExit("bench_ops.py na needs a CUDA GPU")
    if args.tune:
        parts = args.tune.split(",")
        if any(part not in ("fwd", "dq", "dkv") for part in parts):
            raise SystemExit(f"--tune takes parts of fwd, dq, dkv; got {args.tune!r}")
        tune(names, parts)
        return
    rows = []
    for n in names:  # the report is rewritten after each case, so that a cut-off run keeps what it measured
        rows.append(run_case(n, not args.no_flex, not args.no_ref, args.flex_first_layout, args.graph))
        _write(args.out, env_header(cmd.strip()), rows, [cmd.strip()])


def _write(out: str, env: str, rows: list[dict], commands: list[str]) -> None:
    """Markdown table (with the GPU/version header of the run) and its JSON next to it."""
    body = ("bf16, medians of triton.testing.do_bench; TFLOP/s count useful work only (4*N*k^d*head_dim per head "
            "forward, 3.5x that for forward+backward); ratios are other time / fused NA time (> 1: NA faster); "
            "flex = FlexAttention compiled, best of the listed token layouts by fwd+bwd time.\n\n" + render(rows))
    write_report(out, "Neighborhood attention benchmark", commands[0], body,
                 data={"env": env, "command": commands[0], "runs": commands[1:], "rows": rows}, env=env,
                 runs=commands[1:])


if __name__ == "__main__":
    main()
