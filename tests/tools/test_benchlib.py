"""tools/benchlib.py's pure-Python parts on the CPU: table and ratio formatting, report writing (fake GPU), the
fwd+bwd closure and the per-case runner (with a fake timer)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))  # as the bench tools import it
import benchlib  # noqa: E402


@pytest.fixture
def bl():
    return benchlib


@pytest.fixture
def fake_gpu(monkeypatch: pytest.MonkeyPatch) -> str:
    name = "Fake GPU 80GB"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: name)
    return name


def test_markdown_table_formats_cells(bl) -> None:
    text = bl.markdown_table(["a", "b", "c", "d"], [["x", 0.123456, 1234.6, None], [7, 12.0, 999.94, "2.5x"]])
    assert text == ("| a | b | c | d |\n|---|---|---|---|\n"
                    "| x | 0.123 | 1235 | n/a |\n| 7 | 12 | 1e+03 | 2.5x |\n")


def test_ratio_tflops_speedup_fmt(bl) -> None:
    assert bl.ratio(3.0, 2.0) == 1.5
    assert bl.ratio(None, 2.0) is None and bl.ratio(3.0, None) is None
    assert bl.tflops(8.0, 2.0) == 4.0 and bl.tflops(8.0, 2.0, 3.5) == 14.0 and bl.tflops(8.0, None) is None
    assert bl.speedup(5.0, 2.0) == "2.5x" and bl.speedup(1.0, 3.0) == "0.3x"
    assert bl.speedup(None, 2.0) is None and bl.speedup(5.0, None) is None
    assert bl.fmt_num(4.567) == "4.57" and bl.fmt_num(4.567, 1) == "4.6" and bl.fmt_num(None) == "n/a"


def test_write_report_header_body_json(bl, fake_gpu: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import platform

    import triton

    out = tmp_path / "sub" / "r.md"
    bl.write_report(out, "My bench", "python tools/x.py --a", "body line\n", data=[{"case": "c", "v": 1.5}])
    expected = (f"# My bench\n\n- GPU: {fake_gpu}\n- torch {torch.__version__}, triton {triton.__version__}, "
                f"CUDA {torch.version.cuda}, Python {platform.python_version()}\n"
                "- command: `python tools/x.py --a`\n\nbody line\n")
    assert out.read_text() == expected
    assert capsys.readouterr().out == expected + "\n"
    assert json.loads(out.with_suffix(".json").read_text()) == [{"case": "c", "v": 1.5}]

    out2 = tmp_path / "r2.md"
    bl.write_report(out2, "T", "ignored", "b\n", env="- stored env\n", runs=["cmd 2", "cmd 3"])
    assert out2.read_text() == "# T\n\n- stored env\n- run: `cmd 2`\n- run: `cmd 3`\n\nb\n"
    assert not out2.with_suffix(".json").exists()


def test_floor_report_tables(bl, fake_gpu: str, tmp_path: Path) -> None:
    rows = [{"case": "B1", "floor fwd": 0.5, "floor fwd+bwd": 1.0, "ref fwd": 4.0, "ref fwd+bwd": 8.0,
             "other fwd": None, "other fwd+bwd": None, "ours fwd": 2.0, "ours fwd+bwd": 2.0,
             "ref graph fwd": 3.0, "ref graph fwd+bwd": None, "ours graph fwd": 1.0, "ours graph fwd+bwd": 1.5}]
    out = tmp_path / "f.md"
    bl.floor_report(rows, ["ref", "other", "ours"], "ours", "Floors", str(out), ["op", "--out", str(out)], "notes\n")
    text = out.read_text()
    assert f"- command: `python tools/bench_ops.py op --out {out}`\n\nnotes\n\n## fwd\n\n" in text
    assert ("| case | ref (ms) | other (ms) | ours (ms) | floor (ms) | ours vs ref | ours / floor | ref graph (ms) "
            "| ours graph (ms) | ours graph vs ref graph | ours graph / floor |") in text
    assert "| B1 | 4 | n/a | 2 | 0.5 | 2.0x | 4.0x | 3 | 1 | 3.0x | 2.0x |" in text
    assert "| B1 | 8 | n/a | 2 | 1 | 4.0x | 2.0x | n/a | 1.5 | n/a | 1.5x |" in text
    assert json.loads(out.with_suffix(".json").read_text()) == rows


def test_op_args(bl, capsys: pytest.CaptureFixture) -> None:
    argv, args = bl.op_args("gate", [])
    assert argv == [] and args.out == "docs/benchmarks/gate.md"
    assert bl.op_args("lka", ["--out", "x.md"])[1].out == "x.md"
    with pytest.raises(SystemExit):
        bl.op_args("axial", ["--help"])
    assert capsys.readouterr().out.startswith("usage: bench_ops.py axial [-h] [--out OUT]")


def test_fwd_bwd_returns_grads(bl) -> None:
    x = torch.randn(3, requires_grad=True)
    g = torch.randn(3)
    (dx,) = bl.fwd_bwd(lambda: x * x, g, wrt=(x,))()
    torch.testing.assert_close(dx, 2 * x.detach() * g)
    assert x.grad is None  # nothing accumulated
    y = torch.randn(2, requires_grad=True)
    dx, dy = bl.fwd_bwd(lambda: [x * 3, y * 5], [g, torch.ones(2)], wrt=(x, y))()  # outputs and gradients as lists
    torch.testing.assert_close(dx, 3 * g)
    torch.testing.assert_close(dy, torch.full((2,), 5.0))


def test_run_cases_with_fake_timer(bl, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    calls: list[bool] = []

    def fake_time(fn, warmup: int = 25, rep: int = 100) -> float:
        calls.append(torch.is_grad_enabled())
        fn()
        return 2.0 if calls[-1] else 1.0

    def broken(x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("no kernel")

    monkeypatch.setattr(bl, "time_ms", fake_time)
    make = lambda n: ([torch.randn(n, requires_grad=True)], f"n{n}")  # noqa: E731
    fns = {"good": lambda x: (x * 2, x), "bad": broken}
    rows = bl.run_cases(fns, make, [(3,), (5,)], 10.0, lambda n: (20.0 * n, 50.0 * n), graphed=())
    assert rows == [{"case": "n3", "floor fwd": 6.0, "floor fwd+bwd": 15.0, "good fwd": 1.0, "good fwd+bwd": 2.0,
                     "bad fwd": None, "bad fwd+bwd": None},
                    {"case": "n5", "floor fwd": 10.0, "floor fwd+bwd": 25.0, "good fwd": 1.0, "good fwd+bwd": 2.0,
                     "bad fwd": None, "bad fwd+bwd": None}]
    assert calls == [False, True, False, True]  # forward timed under no_grad, fwd+bwd with autograd
    assert "n3 bad: RuntimeError: no kernel" in capsys.readouterr().err
