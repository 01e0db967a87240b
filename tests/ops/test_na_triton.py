"""Fused Triton NA kernels against the reference, forward and backward: on CPU through TRITON_INTERPRET=1 at tiny
shapes, on the GPU (`pytest -m gpu`) at real sizes in bf16/fp16; torch.library custom op under torch.compile."""
import pytest
import torch

from ops.na import NeighborhoodAttention2d, NeighborhoodAttention3d, na1d, na2d, na3d

FNS = {1: na1d, 2: na2d, 3: na3d}

CPU_CASES = [  # (shape, kernel, dilation, stride, causal, head_dim)
    ((13,), 5, 1, 1, False, 16), ((17,), 4, 2, 3, False, 16), ((15,), 5, 1, 2, True, 24),
    ((6, 9), (3, 4), (2, 1), (1, 2), False, 16), ((7, 6), 3, 1, 1, (True, False), 16), ((5, 5), 5, 1, 5, False, 32),
    ((4, 5, 6), (3, 2, 3), (1, 2, 1), (2, 1, 3), False, 16), ((4, 4, 5), 3, 1, 1, True, 16),
    ((200,), 150, 1, 1, False, 16), ((230,), 160, 1, 2, True, 16),  # 1-D blocks inside every window (no mask)
]


def _grads(fn, q, k, v, do):
    q, k, v = (t.detach().clone().requires_grad_() for t in (q, k, v))
    out = fn(q, k, v)
    out.backward(do)
    return out, q.grad, k.grad, v.grad


def _rel(a, b):
    return ((a.float() - b.float()).norm() / b.float().norm().clamp_min(1e-12)).item()


@pytest.mark.skipif(torch.cuda.is_available(), reason="interpreter test (CPU only)")
@pytest.mark.parametrize("case", CPU_CASES, ids=str)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_triton_interpreter_matches_reference(case, dtype):
    shape, ks, dil, st, ca, hd = case
    g = torch.Generator().manual_seed(1)
    q, k, v, do = (torch.randn(2, *shape, 2, hd, generator=g).to(dtype) for _ in range(4))
    fn = FNS[len(shape)]
    got = _grads(lambda a, b, c: fn(a, b, c, ks, dil, st, ca, backend="triton"), q, k, v, do)
    ref = _grads(lambda a, b, c: fn(a, b, c, ks, dil, st, ca, backend="reference"),
                 *(t.double() for t in (q, k, v, do)))
    tol = 1e-5 if dtype == torch.float32 else 5e-3
    for name, a, b in zip(("out", "dq", "dk", "dv"), got, ref):
        assert a.dtype == dtype
        assert _rel(a, b) < tol, (name, _rel(a, b))


@pytest.mark.skipif(torch.cuda.is_available(), reason="interpreter test (CPU only)")
def test_custom_op_compiles_without_graph_breaks():
    torch._dynamo.reset()
    g = torch.Generator().manual_seed(2)
    q, k, v = (torch.randn(1, 6, 7, 2, 16, generator=g, requires_grad=True) for _ in range(3))

    def f(a, b, c):
        return na2d(a, b, c, 3, dilation=(2, 1), backend="triton").square().sum()

    graphs = []

    def backend(gm, example_inputs):
        graphs.append(str(gm.graph))
        from torch._dynamo.backends.debugging import aot_eager

        return aot_eager(gm, example_inputs)

    compiled = torch.compile(f, backend=backend, fullgraph=True)
    loss = compiled(q, k, v)
    assert len(graphs) == 1 and "segzoo.na_fwd" in graphs[0]
    grads = torch.autograd.grad(loss, (q, k, v))
    loss_ref = f(q, k, v)
    grads_ref = torch.autograd.grad(loss_ref, (q, k, v))
    torch.testing.assert_close(loss, loss_ref)
    for a, b in zip(grads, grads_ref):
        torch.testing.assert_close(a, b)
    from torch.library import opcheck

    from ops.na.custom_op import na_fwd

    opcheck(na_fwd, (q.detach(), k.detach(), v.detach(), [3, 3], [2, 1], [1, 1], [False, False], 0.25),
            test_utils=("test_schema", "test_faketensor"))


# ------------------------------------------------------------------------------------------------------ GPU

GPU_CASES = [  # (shape, kernel, dilation, stride, causal, batch, heads, head_dim)
    ((4096,), 255, 1, 1, False, 2, 2, 128), ((3000,), 64, 3, 16, True, 1, 2, 64),
    ((64, 64), 7, 1, 1, False, 2, 4, 32), ((61, 77), (13, 8), (2, 3), (1, 4), False, 1, 2, 64),
    ((48, 40), 9, 2, 3, (True, False), 1, 2, 16), ((128, 96), 31, 1, 1, False, 1, 1, 128),
    ((16, 20, 24), 5, 1, 1, False, 1, 2, 32), ((14, 18, 22), (3, 4, 5), (2, 1, 2), (3, 2, 1), (True, False, False),
                                              1, 2, 64),
    ((12, 16, 32), (12, 8, 8), 1, (12, 8, 8), False, 1, 2, 96),
    # dK/dV walks the query rows in 32-query blocks with head_dim 128 and 96, pipelined: its old form (dS transposed in
    # registers) gave wrong dK here on an H100 (triton 3.6)
    ((48, 48), 25, 1, 1, False, 1, 2, 128), ((40, 52), 25, 1, 1, False, 1, 2, 96),
]


def _poison():
    """Fill freed cached memory with NaNs so that unwritten outputs show up."""
    junk = torch.full((64 << 20,), float("nan"), device="cuda")
    del junk


@pytest.mark.gpu
@pytest.mark.parametrize("case", GPU_CASES, ids=str)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_triton_gpu_matches_reference(case, dtype):
    shape, ks, dil, st, ca, B, H, hd = case
    q, k, v, do = (torch.randn(B, *shape, H, hd, device="cuda").to(dtype) for _ in range(4))
    fn = FNS[len(shape)]
    _poison()
    got = _grads(lambda a, b, c: fn(a, b, c, ks, dil, st, ca, backend="triton"), q, k, v, do)
    ref = _grads(lambda a, b, c: fn(a, b, c, ks, dil, st, ca, backend="reference"),
                 *(t.float() for t in (q, k, v, do)))
    tol = 2e-2 if dtype == torch.bfloat16 else 5e-3
    for name, a, b in zip(("out", "dq", "dk", "dv"), got, ref):
        assert torch.isfinite(a).all(), name
        assert _rel(a, b) < tol, (name, _rel(a, b))


@pytest.mark.gpu
@pytest.mark.parametrize("cls, shape", [(NeighborhoodAttention2d, (2, 40, 56)), (NeighborhoodAttention3d, (1, 12, 16, 20))])
def test_module_torch_compile_gpu(cls, shape):
    torch._dynamo.reset()
    m = cls(64, 2, 5, dilation=2).cuda()
    x = torch.randn(*shape, 64, device="cuda", requires_grad=True)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        y_ref = m(x)
        y = torch.compile(m, fullgraph=True)(x)
    assert _rel(y, y_ref) < 1e-2
    y.float().sum().backward()
    assert torch.isfinite(x.grad).all()


@pytest.mark.skipif(torch.cuda.is_available(), reason="interpreter test (CPU only)")
@pytest.mark.parametrize("rows", [True, False])
@pytest.mark.parametrize("case", [((40,), 33, 1, 1, False), ((9, 40), (3, 37), (1, 1), (1, 2), (False, True)),
                                  ((3, 4, 24), (3, 2, 19), (1, 2, 1), (2, 1, 1), False)], ids=str)
def test_triton_box_walks_match_reference(case, rows):
    """Both ways of walking the key box (row by row with unmasked interior blocks, and flattened)."""
    from ops.na.params import make_params
    from ops.na.reference import na_reference
    from ops.na.triton_kernels import na_bwd_triton, na_fwd_triton

    shape, ks, dil, st, ca = case
    p = make_params(shape, ks, dil, st, ca)
    g = torch.Generator().manual_seed(5)
    q, k, v, do = (torch.randn(1, *shape, 1, 16, generator=g) for _ in range(4))
    cfg = dict(rows=rows, fwd_block_n=16, dq_block_n=16, dkv_block_m=16)
    out, lse = na_fwd_triton(q, k, v, p, 0.25, cfg)
    dq, dk, dv = na_bwd_triton(do, q, k, v, out, lse, p, 0.25, cfg)
    ref = _grads(lambda a, b, c: na_reference(a, b, c, p, 0.25), *(t.double() for t in (q, k, v, do)))
    for name, a, b in zip(("out", "dq", "dk", "dv"), (out, dq, dk, dv), ref):
        assert _rel(a, b) < 1e-5, (name, _rel(a, b))


@pytest.mark.skipif(torch.cuda.is_available(), reason="interpreter test (CPU only)")
def test_triton_kernels_with_different_tiles():
    """Forward, dQ and dK/dV on three different tiles: each kernel gets its own tiles-per-group arguments."""
    from ops.na.params import make_params
    from ops.na.reference import na_reference
    from ops.na.triton_kernels import na_bwd_triton, na_fwd_triton

    p = make_params((5, 9, 20), 5, 1)
    g = torch.Generator().manual_seed(6)
    q, k, v, do = (torch.randn(1, 5, 9, 20, 1, 16, generator=g) for _ in range(4))
    cfg = dict(fwd_tile=(4, 4, 4), dq_tile=(2, 8, 8), dkv_tile=(2, 2, 16))
    out, lse = na_fwd_triton(q, k, v, p, 0.25, cfg)
    dq, dk, dv = na_bwd_triton(do, q, k, v, out, lse, p, 0.25, cfg)
    ref = _grads(lambda a, b, c: na_reference(a, b, c, p, 0.25), *(t.double() for t in (q, k, v, do)))
    for name, a, b in zip(("out", "dq", "dk", "dv"), (out, dq, dk, dv), ref):
        assert _rel(a, b) < 1e-5, (name, _rel(a, b))


FUSED_CASES = [  # (shape, kernel, dilation, stride, causal, head_dim): windows of >= 128 keys, so fused by default
    ((150,), 130, 1, 1, False, 16), ((150,), 132, 1, 3, True, 24), ((12, 16), (12, 11), 1, 1, False, 16),
    ((26, 13), (13, 10), (2, 1), (2, 1), (False, True), 32), ((6, 7, 7), (5, 5, 6), 1, 1, False, 16),
    ((5, 8, 8), (5, 4, 7), (1, 2, 1), (1, 1, 2), (True, False, False), 24),
]


@pytest.mark.skipif(torch.cuda.is_available(), reason="interpreter test (CPU only)")
@pytest.mark.parametrize("case", FUSED_CASES, ids=str)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_triton_fused_backward_matches_reference(case, dtype):
    """The fused backward (dQ added by atomics in the dK/dV kernel) is the default for these windows, and matches the
    reference; small query blocks (with flattened walks, which these blocks would otherwise turn into row walks) make
    several blocks add into each query's dQ."""
    from ops.na.params import make_params
    from ops.na.reference import na_reference
    from ops.na.triton_kernels import launch_plans, na_bwd_triton, na_fwd_triton

    shape, ks, dil, st, ca, hd = case
    p = make_params(shape, ks, dil, st, ca)
    g = torch.Generator().manual_seed(7)
    q, k, v, do = (torch.randn(2, *shape, 2, hd, generator=g).to(dtype) for _ in range(4))
    cfg = dict(dkv_block_m=16, rows=False)
    assert launch_plans(q, p).fused is not None and launch_plans(q, p, cfg).fused is not None
    out, lse = na_fwd_triton(q, k, v, p, hd ** -0.5)
    dq, dk, dv = na_bwd_triton(do, q, k, v, out, lse, p, hd ** -0.5, cfg)
    ref = _grads(lambda a, b, c: na_reference(a, b, c, p, hd ** -0.5), *(t.double() for t in (q, k, v, do)))
    tol = 1e-5 if dtype == torch.float32 else 5e-3
    for name, a, b in zip(("out", "dq", "dk", "dv"), (out, dq, dk, dv), ref):
        assert a.dtype == dtype
        assert _rel(a, b) < tol, (name, _rel(a, b))


@pytest.mark.skipif(torch.cuda.is_available(), reason="interpreter test (CPU only)")
def test_triton_backward_split_when_deterministic_or_rows():
    """Under torch.use_deterministic_algorithms the backward is the split one (bit for bit); a dK/dV walk by rows
    has no fused plan, whatever the config asks."""
    from ops.na.params import make_params
    from ops.na.triton_kernels import launch_plans, na_bwd_triton, na_fwd_triton

    p = make_params((12, 16), (12, 11), 1)
    g = torch.Generator().manual_seed(8)
    q, k, v, do = (torch.randn(1, 12, 16, 2, 16, generator=g) for _ in range(4))
    out, lse = na_fwd_triton(q, k, v, p, 0.25)
    cfg = dict(dkv_block_m=16, rows=False)
    assert launch_plans(q, p, cfg).fused is not None
    fused = na_bwd_triton(do, q, k, v, out, lse, p, 0.25, cfg)
    split = na_bwd_triton(do, q, k, v, out, lse, p, 0.25, dict(cfg, fused_bwd=False))
    assert not torch.equal(fused[0], split[0])  # dQ's sums run in another order: the check below can tell them apart
    torch.use_deterministic_algorithms(True)
    try:
        det = na_bwd_triton(do, q, k, v, out, lse, p, 0.25, cfg)
    finally:
        torch.use_deterministic_algorithms(False)
    for a, b in zip(det, split):
        assert torch.equal(a, b)
    p1 = make_params((200,), 150, 1)
    q1 = torch.zeros(1, 200, 1, 16)
    assert launch_plans(q1, p1).dkv.kwargs["ROWS"] and launch_plans(q1, p1, dict(fused_bwd=True)).fused is None


@pytest.mark.parametrize("shape, ks, dil, tile", [((64, 64), 7, 1, (1, 4, 16)), ((128, 128), 7, 4, (1, 2, 32)),
                                                  ((256, 256), 13, 1, (1, 4, 16)), ((64, 64), (7, 21), 1, (1, 8, 8))],
                         ids=["S1", "S5", "S4", "7x21"])
def test_short_2d_forward_walks_rows_on_fewest_keys(shape, ks, dil, tile):
    """2-D windows of up to 256 keys run the forward on the 64-query tile whose row walks read the fewest keys (S1:
    4x16 boxes are 10 rows of one 32-key chunk, 5 keys a query, against 8 for 2x32 and 7 for 8x8; S5's dilation-4
    groups are 32 long, so 2x32 reads 8 whole group rows, 4 a query; a 7x21 kernel takes 8x8, 7 keys a query
    against 10 for 4x16 and 8 for 2x32); an explicit `rows` config still wins, and 961-key windows keep 128-query
    tiles."""
    from ops.na.params import make_params
    from ops.na.triton_kernels import launch_plans

    p = make_params(shape, ks, dil)
    q = torch.zeros(1, *shape, 1, 32)
    fwd = launch_plans(q, p).fwd.kwargs
    assert (fwd["TX"], fwd["TY"], fwd["TZ"], fwd["ROWS"], fwd["BLOCK_N"]) == (*tile, True, 32)
    assert not launch_plans(q, p, dict(rows=False)).fwd.kwargs["ROWS"]
    long = launch_plans(torch.zeros(1, 128, 128, 1, 64), make_params((128, 128), 31, 1)).fwd.kwargs
    assert long["TX"] * long["TY"] * long["TZ"] == 128 and long["BLOCK_N"] == 64


# pipeline depths and key-box walks besides the defaults; all matched the reference on an H100 (triton 3.6) in a wider
# sweep (docs/benchmarks/na.md). dK/dV walking rows with head_dim 96/128 at 2 or 3 stages is the regime where its old
# form (dS transposed in registers) gave wrong dK
PIPELINE_VARIANTS = [dict(fwd_stages=s) for s in (1, 2, 4)] + [dict(dq_stages=s) for s in (1, 3)] + [
    dict(dkv_stages=s) for s in (1, 2, 3)] + [dict(dkv_stages=2, dkv_warps=8), dict(dq_stages=3, dq_warps=8),
                                                dict(fwd_stages=3, fwd_warps=8)] + [
    dict(fused_bwd=f) for f in (False, True)] + [dict(fused_bwd=True, dkv_stages=s) for s in (1, 2)]


@pytest.mark.gpu
@pytest.mark.parametrize("rows", [None, True, False])
@pytest.mark.parametrize("case", [((48, 48), 25, 1, False, 128), ((64, 64), 31, 1, False, 64),
                                  ((50, 37), 11, 1, (True, False), 64), ((12, 16, 20), (5, 7, 7), 1, False, 128)],
                         ids=str)
def test_triton_gpu_pipelined_configs_match_reference(case, rows):
    """Other pipeline depths and warps per kernel, and both box walks (rows forced on or off), match the reference in
    bf16 on fresh NaN-poisoned outputs, twice each (the dK bug of stop 18 changed from run to run)."""
    from ops.na.params import make_params
    from ops.na.triton_kernels import na_bwd_triton, na_fwd_triton

    shape, ks, dil, ca, hd = case
    if rows is True and len(shape) == 3:
        pytest.skip("3-D boxes are walked flattened")
    p = make_params(shape, ks, dil, 1, ca)
    torch.manual_seed(0)
    q, k, v, do = (torch.randn(1, *shape, 2, hd, device="cuda").to(torch.bfloat16) for _ in range(4))
    ref = _grads(lambda a, b, c: FNS[len(shape)](a, b, c, ks, dil, 1, ca, backend="reference"),
                 *(t.float() for t in (q, k, v, do)))
    for variant in PIPELINE_VARIANTS:
        cfg = dict(variant) if rows is None else dict(variant, rows=rows)
        for _ in range(2):
            _poison()
            out, lse = na_fwd_triton(q, k, v, p, hd ** -0.5, cfg)
            got = (out, *na_bwd_triton(do, q, k, v, out, lse, p, hd ** -0.5, cfg))
            for name, a, b in zip(("out", "dq", "dk", "dv"), got, ref):
                assert _rel(a, b) < 2e-2, (name, cfg, _rel(a, b))


@pytest.mark.gpu
@pytest.mark.parametrize("case", [((256, 256), 80, 2, 128), ((256, 256), 25, 4, 64), ((128, 128), 31, 4, 64)], ids=str)
def test_triton_gpu_pipelining_keeps_accuracy_at_scale(case):
    """At large sizes the default (pipelined) kernels are as close to FlexAttention as the same kernels unpipelined:
    some pipelining bugs show only there (the old dK/dV row walk, 3 stages deep at 256x256 k=80 d128: 8.8e-3 against
    8.4e-4 unpipelined, while exact at 48x48)."""
    from ops.na.params import make_params
    from ops.na.triton_kernels import na_bwd_triton, na_fwd_triton

    shape, ks, H, hd = case
    p = make_params(shape, ks, 1)
    torch.manual_seed(0)
    q, k, v, do = (torch.randn(2, *shape, H, hd, device="cuda").to(torch.bfloat16) for _ in range(4))
    want = _grads(lambda a, b, c: na2d(a, b, c, ks, backend="flex"), q, k, v, do)
    errs = {}
    for name, cfg in (("default", None), ("unpipelined", dict(fwd_stages=1, dq_stages=1, dkv_stages=1))):
        worst = [0.0] * 4
        for _ in range(3):
            _poison()
            out, lse = na_fwd_triton(q, k, v, p, hd ** -0.5, cfg)
            got = (out, *na_bwd_triton(do, q, k, v, out, lse, p, hd ** -0.5, cfg))
            worst = [max(w, _rel(a, b)) for w, a, b in zip(worst, got, want)]
        errs[name] = worst
    for i, name in enumerate(("out", "dq", "dk", "dv")):
        assert errs["default"][i] <= 2 * errs["unpipelined"][i] + 1e-4, (name, errs)


def _misaligned(t):
    """`t`'s values in a view whose data pointer is off 16-byte alignment by one element."""
    flat = torch.empty(t.numel() + 1, device=t.device, dtype=t.dtype)[1:]
    return flat.view(t.shape).copy_(t)


@pytest.mark.gpu
def test_triton_gpu_cached_launches_match_reference():
    """Repeated launches of one plan take the cached launcher (ops._triton.Launch); a misaligned input must get its
    own compiled kernel and the aligned one must still run right afterwards."""
    shape, ks, B, H, hd = (37, 45), (5, 7), 2, 3, 32
    for misalign in (False, False, True, True, False):
        q, k, v, do = (torch.randn(B, *shape, H, hd, device="cuda").to(torch.float16) for _ in range(4))
        if misalign:
            q, k, v, do = (_misaligned(t) for t in (q, k, v, do))
            assert all(t.data_ptr() % 16 != 0 for t in (q, k, v, do))
        _poison()
        leaves = [t.requires_grad_() for t in (q, k, v)]  # no clone: the kernels must see these pointers
        out = na2d(*leaves, ks, backend="triton")
        out.backward(do)
        got = (out, *(t.grad for t in leaves))
        ref = _grads(lambda a, b, c: na2d(a, b, c, ks, backend="reference"), *(t.float() for t in (q, k, v, do)))
        for name, a, b in zip(("out", "dq", "dk", "dv"), got, ref):
            assert torch.isfinite(a).all(), (name, misalign)
            assert _rel(a, b) < 5e-3, (name, misalign, _rel(a, b))


@pytest.mark.gpu
def test_triton_gpu_deterministic_backward_is_reproducible():
    """With torch.use_deterministic_algorithms the backward of a fused-by-default problem takes the split kernels:
    bit for bit the same on every run and as the split config, and as close to the fused backward as bf16 allows."""
    from ops.na.params import make_params
    from ops.na.triton_kernels import launch_plans, na_bwd_triton, na_fwd_triton

    p = make_params((96, 80), 31, 1)
    torch.manual_seed(0)
    q, k, v, do = (torch.randn(2, 96, 80, 4, 64, device="cuda").to(torch.bfloat16) for _ in range(4))
    assert launch_plans(q, p).fused is not None
    out, lse = na_fwd_triton(q, k, v, p, 0.125)
    fused = na_bwd_triton(do, q, k, v, out, lse, p, 0.125)
    torch.use_deterministic_algorithms(True)
    try:
        runs = [na_bwd_triton(do, q, k, v, out, lse, p, 0.125) for _ in range(3)]
    finally:
        torch.use_deterministic_algorithms(False)
    split = na_bwd_triton(do, q, k, v, out, lse, p, 0.125, dict(fused_bwd=False))
    assert not torch.equal(fused[0], split[0])
    for run in runs:
        for a, b in zip(run, split):
            assert torch.equal(a, b)
    for name, a, b in zip(("dq", "dk", "dv"), fused, runs[0]):
        assert _rel(a, b) < 1e-2, (name, _rel(a, b))
