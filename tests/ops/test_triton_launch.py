"""`ops._triton.Launch`: the cached launch path against a stand-in JIT function (CPU; the real kernels' cached
launches are checked on the GPU in test_na_triton.py)."""
import inspect

import pytest
import torch

import ops._triton as launch_mod
from ops._triton import Launch


class _CudaLike(torch.Tensor):
    """A CPU tensor that claims to be on CUDA, so Launch takes its GPU path."""

    @property
    def is_cuda(self):
        return True


class _Param:
    def __init__(self, name, default=inspect.Parameter.empty):
        self.name, self.default = name, default


class _Compiled:
    def __init__(self, log):
        self.function, self.packed_metadata, self.log = "fn-handle", "meta", log

    @property
    def run(self):
        return lambda *a: self.log.append(("fast", a))


class _FakeJit:
    """Kernel `k(X, Y, scale, N, M, BLOCK: constexpr, FLAG: constexpr = 7)` recording how it is launched."""

    __name__ = "k"

    def __init__(self):
        self.params = [_Param(n) for n in ("X", "Y", "scale", "N", "M", "BLOCK")] + [_Param("FLAG", 7)]
        self.pre_run_hooks, self.log, self.compiles = [], [], 0

    def __getitem__(self, grid):
        def run(*args, **kwargs):
            self.log.append(("jit", grid, args, kwargs))
            self.compiles += 1
            return _Compiled(self.log)
        return run


@pytest.fixture
def fake_driver(monkeypatch):
    class _Active:
        get_current_device = staticmethod(lambda: 0)
        get_current_stream = staticmethod(lambda device: 1234)

    monkeypatch.setattr(launch_mod, "driver", type("D", (), {"active": _Active})())


def _cuda_like(n=32, offset=0):
    return torch.zeros(n + offset)[offset:].as_subclass(_CudaLike)


def test_launch_reuses_compiled_kernel_with_signature_order(fake_driver):
    fn = _FakeJit()
    launch = Launch(fn, (5, 2), (11, 12), BLOCK=64, num_warps=4)
    x, y = _cuda_like(), _cuda_like()
    launch(x, y, 0.5)
    assert fn.log[0] == ("jit", (5, 2, 1), (x, y, 0.5, 11, 12), {"BLOCK": 64, "num_warps": 4})
    launch(x, y, 0.25)
    kind, args = fn.log[1]
    assert kind == "fast" and fn.compiles == 1
    # grid, stream, function, metadata, launch metadata and hooks, then every kernel parameter in order
    assert args[:9] == (5, 2, 1, 1234, "fn-handle", "meta", None, None, None)
    assert args[9:] == (x, y, 0.25, 11, 12, 64, 7)


def test_launch_keys_on_pointer_alignment(fake_driver):
    fn = _FakeJit()
    launch = Launch(fn, (1,), (1, 1), BLOCK=16)
    aligned, odd = _cuda_like(), _cuda_like(offset=1)
    assert odd.data_ptr() % 16 != 0
    launch(aligned, aligned, 1.0)
    launch(aligned, odd, 1.0)  # a new specialization: back through the JIT
    launch(aligned, odd, 1.0)
    launch(aligned, aligned, 1.0)
    assert [entry[0] for entry in fn.log] == ["jit", "jit", "fast", "fast"]


def test_launch_keys_on_dtype(fake_driver):
    """A kernel compiled for bf16 pointers must not be relaunched on fp16 tensors of the same shape."""
    fn = _FakeJit()
    launch = Launch(fn, (1,), (1, 1), BLOCK=16)
    bf16, fp16 = (torch.zeros(32, dtype=dt).as_subclass(_CudaLike) for dt in (torch.bfloat16, torch.float16))
    launch(bf16, bf16, 1.0)
    launch(fp16, fp16, 1.0)
    launch(fp16, fp16, 1.0)
    assert [entry[0] for entry in fn.log] == ["jit", "jit", "fast"]


def test_launch_takes_jit_path_with_hooks_or_cpu_tensors(fake_driver):
    fn = _FakeJit()
    launch = Launch(fn, (1,), (1, 1), BLOCK=16)
    x = _cuda_like()
    launch(x, x, 1.0)
    fn.pre_run_hooks.append(lambda *a, **k: None)
    launch(x, x, 1.0)
    fn.pre_run_hooks.clear()
    launch(torch.zeros(4), torch.zeros(4), 1.0)
    assert [entry[0] for entry in fn.log] == ["jit", "jit", "jit"]
    launch(x, x, 1.0)
    assert fn.log[-1][0] == "fast"


def test_launch_names_a_missing_constexpr(fake_driver):
    launch = Launch(_FakeJit(), (1,), (1, 1))
    x = _cuda_like()
    with pytest.raises(TypeError, match="BLOCK"):
        launch(x, x, 1.0)
