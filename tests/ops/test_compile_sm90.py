"""Every Triton kernel of ops/, as its launcher launches it, compiles for an H100 (sm_90) on this GPU-less machine
(tests/ops/sm90_compile.py). The interpreter the other CPU tests run under accepts code that Triton's compiler
rejects; this is the check that a kernel edit made without a GPU still builds."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.parametrize("op", ["na", "lka", "gate", "axial"])
def test_kernels_compile_for_sm90(op):
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    r = subprocess.run([sys.executable, str(ROOT / "tests" / "ops" / "sm90_compile.py"), op], cwd=ROOT, env=env,
                       capture_output=True, text=True)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    assert "ok   " in r.stdout and "0 failure(s)" in r.stdout
