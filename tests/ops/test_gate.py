"""Attention gate: reference against a plain torch.nn.functional composition, Triton kernels (interpreter on CPU)
against the reference, forward and backward (persistent backward with several tiles and channel blocks per program,
either output's gradient alone, absent biases, fp16), 2-D and 3-D, errors, module, the eager autograd.Function path and
torch.compile tracing."""
import pytest
import torch
import torch.nn.functional as F

from ops.gate import AttentionGate, attention_gate, attention_gate_reference, attention_gate_triton
from ops.gate import kernels


def _params(nd, cx, cg, f, dtype=torch.float32, bias=True):
    one = (1,) * nd
    ps = [torch.randn(f, cx, *one) / cx**0.5, torch.randn(f) if bias else None,
          torch.randn(f, cg, *one) / cg**0.5, torch.randn(f) if bias else None,
          torch.randn(1, f, *one) / f**0.5, torch.randn(1) if bias else None]
    return [None if p is None else p.to(dtype).requires_grad_() for p in ps]


def _plain(x, g, wx, bx, wg, bg, wpsi, bpsi):
    conv = F.conv2d if x.dim() == 4 else F.conv3d
    a = torch.sigmoid(conv(F.relu(conv(x, wx, bx) + conv(g, wg, bg)), wpsi, bpsi))
    return x * a, a


def _grads(fn, inputs, on=("out", "alpha")):
    out, alpha = fn(*inputs)
    torch.manual_seed(1)
    do, da = (torch.randn(t.shape).to(t.dtype) for t in (out, alpha))  # same draws in any dtype
    loss = sum((t * w).sum() for name, t, w in (("out", out, do), ("alpha", alpha, da)) if name in on)
    leaves = [t for t in inputs if t is not None]
    return [out, alpha, *torch.autograd.grad(loss, leaves)]


@pytest.mark.parametrize("size", [(7, 5), (3, 6, 5)])
def test_reference_matches_functional(size):
    torch.manual_seed(0)
    nd = len(size)
    x = torch.randn(2, 6, *size, requires_grad=True)
    g = torch.randn(2, 10, *size, requires_grad=True)
    inputs = [x, g, *_params(nd, 6, 10, 4)]
    got, want = _grads(attention_gate_reference, inputs), _grads(_plain, inputs)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("size,cx,cg,f,cl", [((9, 7), 5, 3, 6, False), ((4, 3, 5), 3, 7, 2, False),
                                             ((9, 7), 20, 3, 17, True), ((5, 3, 2), 70, 9, 4, True)])
def test_triton_matches_reference(size, cx, cg, f, cl):
    torch.manual_seed(0)
    nd = len(size)
    x, g = torch.randn(2, cx, *size), torch.randn(2, cg, *size)
    if cl:
        fmt = torch.channels_last if nd == 2 else torch.channels_last_3d
        x, g = x.to(memory_format=fmt), g.to(memory_format=fmt)
    inputs = [x.requires_grad_(), g.requires_grad_(), *_params(nd, cx, cg, f, bias=not cl or nd == 2)]
    got, want = _grads(attention_gate_triton, inputs), _grads(attention_gate_reference, inputs)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    if cl:
        assert got[0].stride() == x.stride()


def test_triton_mixed_layouts():
    """x channels-last with g contiguous, a non-dense (sliced) x and a transposed output gradient: the kernels take
    dense maps of one layout, so the launcher must bring every input into x's."""
    torch.manual_seed(0)
    x = torch.randn(2, 12, 7, 5).to(memory_format=torch.channels_last)[:, 2:9]   # not dense
    g = torch.randn(2, 4, 7, 5)                                                   # contiguous
    inputs = [x.requires_grad_(), g.requires_grad_(), *_params(2, 7, 4, 3)]
    dout = torch.randn(2, 7, 5, 7).transpose(2, 3)

    def outputs_and_grads(fn):
        out, alpha = fn(*inputs)
        return [out, alpha, *torch.autograd.grad((out * dout).sum() + alpha.sum(), inputs)]

    for a, b in zip(outputs_and_grads(attention_gate_triton), outputs_and_grads(attention_gate_reference)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def _check_triton(size, cx, cg, f, b=2, dtype=torch.float32, cl=False, bias=(True, True, True),
                  on=("out", "alpha"), tol=1e-4):
    """Triton forward and gradients (of the outputs in `on`) against the fp32 reference."""
    torch.manual_seed(0)
    nd = len(size)
    x, g = torch.randn(b, cx, *size), torch.randn(b, cg, *size)
    if cl:
        fmt = torch.channels_last if nd == 2 else torch.channels_last_3d
        x, g = x.to(memory_format=fmt), g.to(memory_format=fmt)
    ps = _params(nd, cx, cg, f)
    for i, keep in zip((1, 3, 5), bias):
        ps[i] = ps[i] if keep else None
    lo = [t if t is None else t.detach().to(dtype).requires_grad_() for t in (x, g, *ps)]
    hi = [t if t is None else t.detach().float().requires_grad_() for t in lo]
    got, want = _grads(attention_gate_triton, lo, on), _grads(attention_gate_reference, hi, on)
    for a, w, t in zip(got, want, [lo[0], lo[0], *[t for t in lo if t is not None]]):
        assert a.dtype == t.dtype and a.shape == w.shape
        torch.testing.assert_close(a.float(), w, rtol=tol, atol=tol * max(1.0, w.abs().max().item()))
    if cl:
        assert got[0].stride() == x.stride()


@pytest.mark.parametrize("cfg,size,b,cx,cg,f", [
    ({"bn_small_f": 16, "bwd_bn": 16}, (9, 7), 3, 5, 3, 6),   # 12 tiles of 16 px (last ragged), 3 programs
    ({"bwd_bn": 16, "interp_programs": 2}, (5, 3, 3), 2, 3, 7, 1),     # F = 1, 3-D, tiles across batches
    ({"acc_elems": 256, "interp_programs": 6}, (6, 7), 3, 40, 20, 9),  # 3 channel blocks of 16, 2 programs
    ({"bwd_bn": 16, "acc_elems": 256}, (13, 3), 2, 17, 33, 3),         # more Cg blocks than Cx blocks, 1 program
    ({"bwd_bn": 16, "acc_elems_large_f": 1024}, (5, 7), 2, 40, 20, 33),  # F > 32: its own budget, 3 blocks
    ({"bwd_bn": 16, "interp_programs": 40}, (16, 12), 4, 5, 3, 6),  # 40 partial rows: 2 steps of the row sum
])
def test_triton_persistent_backward(monkeypatch, cfg, size, b, cx, cg, f):
    for k, v in cfg.items():
        monkeypatch.setitem(kernels.CFG, k, v)
    _check_triton(size, cx, cg, f, b)


@pytest.mark.parametrize("on", [("out",), ("alpha",)])
@pytest.mark.parametrize("cl", [False, True])
def test_triton_one_output_gradient(on, cl):
    _check_triton((5, 7), 6, 4, 5, cl=cl, on=on)


@pytest.mark.parametrize("bias", [(False, True, True), (True, False, False), (False, False, True)])
def test_triton_some_biases_absent(bias):
    _check_triton((4, 3, 2), 4, 5, 3, bias=bias)


@pytest.mark.parametrize("cl", [False, True])
def test_triton_fp16_forward_backward(monkeypatch, cl):
    monkeypatch.setitem(kernels.CFG, "bn_small_f", 16)
    monkeypatch.setitem(kernels.CFG, "bwd_bn", 16)
    _check_triton((7, 5), 16, 8, 12, b=2, dtype=torch.float16, cl=cl, tol=2e-2)


def test_eager_path_is_autograd_function():
    x, g = torch.randn(1, 4, 3, 3, requires_grad=True), torch.randn(1, 3, 3, 3)
    out, alpha = attention_gate_triton(x, g, *_params(2, 4, 3, 5))
    assert type(out.grad_fn).__name__ == "_GateFunctionBackward"


def test_triton_fp16_forward():
    torch.manual_seed(0)
    x, g = torch.randn(1, 16, 5, 7).half(), torch.randn(1, 8, 5, 7).half()
    ps = [p.detach() if p is not None else None for p in _params(2, 16, 8, 16, torch.float16)]
    got = attention_gate_triton(x, g, *ps)
    want = attention_gate_reference(x.float(), g.float(), *[p.float() for p in ps])
    for a, b in zip(got, want):
        torch.testing.assert_close(a.float(), b, rtol=2e-2, atol=2e-2)


def test_errors():
    x, g = torch.randn(1, 4, 6, 6), torch.randn(1, 3, 6, 6)
    wx, bx, wg, bg, wpsi, bpsi = _params(2, 4, 3, 5)
    with pytest.raises(ValueError, match="wx"):
        attention_gate(x, g, wx[:, :3], bx, wg, bg, wpsi, bpsi)
    with pytest.raises(ValueError, match="wg"):
        attention_gate(x, torch.randn(1, 2, 6, 6), wx, bx, wg, bg, wpsi, bpsi)
    with pytest.raises(ValueError, match="spatial sizes"):
        attention_gate(x, torch.randn(1, 3, 6, 5), wx, bx, wg, bg, wpsi, bpsi)
    with pytest.raises(ValueError, match="wpsi"):
        attention_gate(x, g, wx, bx, wg, bg, wpsi[:, :4], bpsi)
    with pytest.raises(ValueError, match="bx"):
        attention_gate(x, g, wx, bx[:4], wg, bg, wpsi, bpsi)
    with pytest.raises(ValueError, match="spatial_dims"):
        AttentionGate(4, 4, 3, 5)
    with pytest.raises(TypeError, match="x and g must share one of .*float64"):
        attention_gate_triton(x.double(), g.double(), *[p.detach().double() for p in (wx, bx, wg, bg, wpsi, bpsi)])
    with pytest.raises(TypeError, match="x and g must share one of .*float16 and torch.float32"):
        attention_gate_triton(x.half(), g, wx, bx, wg, bg, wpsi, bpsi)


@pytest.mark.parametrize("nd", [2, 3])
def test_module_coarse_gating(nd):
    torch.manual_seed(0)
    m = AttentionGate(nd, 4, 6, 3)
    x, g = torch.randn(2, 4, *(6,) * nd), torch.randn(2, 6, *(3,) * nd)
    out, alpha = m(x, g)
    mode = "bilinear" if nd == 2 else "trilinear"
    g_up = F.interpolate(g, size=x.shape[2:], mode=mode, align_corners=False)
    want = _plain(x, g_up, m.theta_x.weight, m.theta_x.bias, m.phi_g.weight, m.phi_g.bias, m.psi.weight, m.psi.bias)
    torch.testing.assert_close(out, want[0])
    assert alpha.shape == (2, 1, *(6,) * nd)
    with pytest.raises(ValueError, match="spatial dims"):
        m(x[0], g)


def test_compile_traces_custom_op():
    torch.manual_seed(0)
    x, g = torch.randn(1, 4, 5, 3, requires_grad=True), torch.randn(1, 3, 5, 3)
    ps = _params(2, 4, 3, 5)
    fn = torch.compile(attention_gate_triton, backend="aot_eager", fullgraph=True)
    got, want = fn(x, g, *ps), attention_gate_reference(x, g, *ps)
    do, dalpha = torch.randn_like(want[0]), torch.randn_like(want[1])
    grads = [torch.autograd.grad((o * do).sum() + (a * dalpha).sum(), [x, *ps]) for o, a in (got, want)]
    for a, b in zip([*got, *grads[0]], [*want, *grads[1]]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
