"""Test-wide setup: without a CUDA GPU, Triton kernels run in Triton's CPU interpreter."""
import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
# OpenMP threads that sleep instead of spinning between ops: much faster on a busy or 2-core machine.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402  (importing torch does not import any Triton kernel)

# Must be set before any segzoo kernel module is imported: kernels are JIT-decorated at import.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import importlib.util  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402
from types import ModuleType  # noqa: E402
from typing import Callable  # noqa: E402

import pytest  # noqa: E402

TOOLS = Path(__file__).resolve().parents[1] / "tools"
SHARED_DATASETS = Path(os.environ.get("SEGZOO_DATASETS", Path(__file__).resolve().parents[1].parent / "shared" / "datasets"))


def pytest_configure(config: pytest.Config) -> None:
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture
def shared_datasets() -> Path:
    """Path of ../shared/datasets; the test is skipped when it is absent."""
    if not SHARED_DATASETS.is_dir():
        pytest.skip(f"shared datasets not found at {SHARED_DATASETS}")
    return SHARED_DATASETS


def _load_tool(name: str) -> ModuleType:
    """tools/<name>.py as a module (tools are scripts, not a package; they import their siblings by name)."""
    if str(TOOLS) not in sys.path:
        sys.path.insert(0, str(TOOLS))
    spec = importlib.util.spec_from_file_location(name, TOOLS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look the module up by name
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def load_tool() -> Callable[[str], ModuleType]:
    """``load_tool("ship_run")`` imports tools/ship_run.py."""
    return _load_tool
