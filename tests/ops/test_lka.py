"""Large-kernel attention: reference against plain torch.nn.functional convs, Triton kernels (interpreter on CPU)
against the reference, forward and backward, 2-D and 3-D, errors, modules and torch.compile tracing."""
import pytest
import torch
import torch.nn.functional as F

from ops.lka import LargeKernelAttention, VANBlock, lka, lka_reference, lka_triton


def _params(c, k0, k1, nd, bias=True):
    ps = [torch.randn(c, 1, *(k0,) * nd) / k0, torch.randn(c) if bias else None,
          torch.randn(c, 1, *(k1,) * nd) / k1, torch.randn(c) if bias else None,
          torch.randn(c, c, *(1,) * nd) / c**0.5, torch.randn(c) if bias else None]
    return [None if p is None else p.requires_grad_() for p in ps]


def _plain(x, w0, b0, w1, b1, w2, b2, dilation):
    conv = F.conv2d if x.dim() == 4 else F.conv3d
    c = x.shape[1]
    a = conv(x, w0, b0, padding=w0.shape[-1] // 2, groups=c)
    a = conv(a, w1, b1, padding=dilation * (w1.shape[-1] // 2), dilation=dilation, groups=c)
    return x * conv(a, w2, b2)


def _check(fn, ref, x, ps, dilation, tol):
    inputs = [x, *ps]
    leaves = [t for t in inputs if t is not None]
    got, want = fn(*inputs, dilation=dilation), ref(*inputs, dilation)
    torch.testing.assert_close(got, want, rtol=tol, atol=tol)
    go = torch.randn_like(want)
    for a, b in zip(torch.autograd.grad(got, leaves, go), torch.autograd.grad(want, leaves, go)):
        torch.testing.assert_close(a, b, rtol=tol, atol=tol * max(1.0, b.abs().max().item()))


@pytest.mark.parametrize("size,dil", [((11, 7), 3), ((4, 5, 3), 2)])
def test_reference_matches_functional(size, dil):
    torch.manual_seed(0)
    x = torch.randn(2, 3, *size, requires_grad=True)
    _check(lka_reference, _plain, x, _params(3, 5, 7, len(size)), dil, 1e-5)


@pytest.mark.parametrize("size,c,k,dil,cl,bias", [((9, 7), 5, (3, 5), 2, False, True),
                                                   ((6, 13), 18, (5, 3), 3, True, False),
                                                   ((3, 5, 4), 3, (3, 3), 2, False, True),
                                                   ((2, 4, 5), 17, (3, 1), 1, True, True)])
def test_triton_matches_reference(size, c, k, dil, cl, bias):
    torch.manual_seed(0)
    nd = len(size)
    x = torch.randn(2, c, *size)
    if cl:
        x = x.to(memory_format=torch.channels_last if nd == 2 else torch.channels_last_3d)
    _check(lka_triton, lka_reference, x.requires_grad_(), _params(c, *k, nd, bias), dil, 1e-4)


def test_triton_fp16_forward():
    torch.manual_seed(0)
    x = torch.randn(1, 16, 6, 5).half()
    ps = [p.detach().half() for p in _params(16, 3, 3, 2)]
    got = lka_triton(x, *ps, dilation=2)
    want = lka_reference(x.float(), *[p.float() for p in ps], 2)
    torch.testing.assert_close(got.float(), want, rtol=2e-2, atol=2e-2)


def test_triton_grads_keep_each_parameter_dtype():
    """Weight and bias gradients come back in their own parameters' dtypes, also when those differ."""
    torch.manual_seed(0)
    x = torch.randn(2, 6, 7, 9, requires_grad=True)
    ps = _params(6, 3, 5, 2)
    ps[3] = ps[3].detach().double().requires_grad_()
    got = torch.autograd.grad(lka_triton(x, *ps, dilation=2).sum(), [x, *ps])
    want = torch.autograd.grad(lka_reference(x, *ps, 2).sum(), [x, *ps])
    for p, a, b in zip([x, *ps], got, want):
        assert a.dtype == p.dtype and a.shape == p.shape
        torch.testing.assert_close(a.float(), b.float(), rtol=1e-4, atol=1e-4 * max(1.0, b.abs().max().item()))


def test_triton_pointwise_in_several_output_channel_blocks(monkeypatch):
    """The pointwise kernels split the output channels into blocks of CFG["pw_bco"]; with several blocks, each
    block's epilogue (the gating multiply, dout * x and its channel sums) must cover only its own channels."""
    from ops.lka import kernels

    monkeypatch.setitem(kernels.CFG, "pw_bco", 16)
    torch.manual_seed(0)
    x = torch.randn(2, 40, 5, 6).contiguous(memory_format=torch.channels_last).requires_grad_()
    _check(lka_triton, lka_reference, x, _params(40, 3, 3, 2), 2, 1e-4)


@pytest.mark.parametrize("cfg", [{}, {"rows_split": False}, {"rows_sub_taps": 0}, {"rows_halo": 1},
                                 {"rows_weights": 1}],
                         ids=["rows", "rows-all-masked", "rows-1-subtile", "row-chunks", "taps"])
@pytest.mark.parametrize("flip", [False, True])
@pytest.mark.parametrize("size,c", [((11, 9), 20), ((2, 5), 16), ((4, 37), 20), ((3, 140), 16), ((3, 140), 20)])
def test_triton_depthwise_both_kernels(monkeypatch, cfg, flip, size, c):
    """2-D depthwise convs walk down the rows (`_dw_rows_kernel`: here in one or several row chunks per residue
    class of the rows; column tiles whose taps all fall inside the image load without masks unless rows_split is
    off) unless the kernel's weights do not fit in registers (CFG rows_weights), then go tile by tile
    (`_dw_kernel`); both match F.conv2d with a non-square kernel, dilation, bias, added tensor and mirroring, also
    when the dilated kernel is taller and wider than the image, and with several column tiles (37 and 140 columns;
    at 140, some tiles lie inside the image, and with 16 channels those load without masks)."""
    from ops.lka import kernels

    for key, value in cfg.items():
        monkeypatch.setitem(kernels.CFG, key, value)
    torch.manual_seed(0)
    k, dil = (3, 5), 2
    x = torch.randn(2, c, *size).contiguous(memory_format=torch.channels_last)
    w, bias, add = torch.randn(c, 1, *k), torch.randn(c), torch.randn_like(x)
    wt = kernels.tap_major(w)
    launched = []
    real_launch = kernels.launch
    monkeypatch.setattr(kernels, "launch", lambda fn, *args, **kw: (launched.append(fn), real_launch(fn, *args, **kw)))
    got = kernels.depthwise_triton(x, wt, k, bias, dil, add=add, flip=flip)
    want = F.conv2d(x, w.flip(-2, -1) if flip else w, bias, padding=(dil * (k[0] // 2), dil * (k[1] // 2)),
                    dilation=dil, groups=c) + add
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert launched == [kernels._dw_kernel if "rows_weights" in cfg else kernels._dw_rows_kernel]


@pytest.mark.parametrize("shape,k,dil", [((8, 256, 64, 64), 5, 1), ((32, 128, 64, 64), 5, 1),
                                         ((16, 64, 128, 128), 7, 3), ((1, 32, 512, 96), 5, 1), ((2, 16, 9, 300), 7, 3)])
@pytest.mark.parametrize("sms", [None, 132, 16])
def test_rows_plan_fills_the_gpu_once(shape, k, dil, sms):
    """The row walk's plan covers every row of every residue class; on a GPU of `sms` multiprocessors it splits the
    rows into more than one chunk only while all programs stay resident at once, into as many as that allows, and
    never into more than rows_halo permits (chunks of at least rows_halo * (KH - 1) rows, the rows a chunk reads
    above its first output row); on an unknown GPU into exactly that many."""
    from ops.lka import kernels

    B, C, H, W = shape
    tw, sub, bc, rows, programs = kernels._rows_plan(shape, k, k * k, dil, sms)
    per_class = -(-H // dil)
    across = -(-W // (tw * sub)) * dil
    chunks = programs // across
    assert programs == across * chunks and (chunks - 1) * rows < per_class <= chunks * rows
    most = max(1, -(-per_class // (kernels.CFG["rows_halo"] * (k - 1))))
    assert chunks <= most
    if sms is None:
        assert chunks == most
    else:
        per_chunk, slots = across * -(-C // bc) * B, sms * kernels.CFG["rows_blocks_per_sm"][sub - 1]
        assert chunks == 1 or chunks * per_chunk <= slots
        assert chunks == most or (chunks + 1) * per_chunk > slots
    assert sub == (2 if k * k <= kernels.CFG["rows_sub_taps"] and W > tw else 1)


@pytest.mark.parametrize("keep", [True, False])
def test_forward_keeps_a2_only_for_training(keep):
    """The forward writes the dilated depthwise result a2 for the backward only when asked (training)."""
    from ops.lka.op import _launch_fwd

    torch.manual_seed(0)
    x = torch.randn(2, 5, 9, 7).contiguous(memory_format=torch.channels_last)
    w0, b0, w1, b1, w2, b2 = [p.detach() for p in _params(5, 3, 5, 2)]
    out, a1, a2, *_ = _launch_fwd(x, w0, b0, w1, b1, w2, b2, 2, keep)
    want_a1 = F.conv2d(x, w0, b0, padding=1, groups=5)
    want_a2 = F.conv2d(want_a1, w1, b1, padding=4, dilation=2, groups=5)
    torch.testing.assert_close(a1, want_a1, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(out, x * F.conv2d(want_a2, w2, b2), rtol=1e-4, atol=1e-4)
    if keep:
        torch.testing.assert_close(a2, want_a2, rtol=1e-4, atol=1e-4)
    else:
        assert a2.numel() == 0


def test_errors():
    x = torch.randn(1, 4, 8, 8)
    w0, b0, w1, b1, w2, b2 = _params(4, 5, 7, 2)
    with pytest.raises(ValueError, match="w0"):
        lka(x, w0[:3], b0, w1, b1, w2, b2)
    with pytest.raises(ValueError, match="w1"):
        lka(x, w0, b0, w1[:, :, :6, :6], b1, w2, b2)
    with pytest.raises(ValueError, match="w2"):
        lka(x, w0, b0, w1, b1, w2[:, :, :, :, None], b2)
    with pytest.raises(ValueError, match="b2"):
        lka(x, w0, b0, w1, b1, w2, b2[:2])
    with pytest.raises(ValueError, match="dilation"):
        lka(x, w0, b0, w1, b1, w2, b2, dilation=0)
    with pytest.raises(ValueError, match="x must be"):
        lka(x[0], w0, b0, w1, b1, w2, b2)
    with pytest.raises(ValueError, match="kernel_sizes"):
        LargeKernelAttention(4, 2, (4, 7))
    with pytest.raises(ValueError, match=r"kernel_sizes must be two odd ints, got \(5, 7, 9\)"):
        LargeKernelAttention(4, 2, (5, 7, 9))
    with pytest.raises(TypeError, match="x must be one of .*got torch.float64"):
        lka_triton(x.double(), *[p.detach().double() for p in (w0, b0, w1, b1, w2, b2)])


@pytest.mark.parametrize("nd", [2, 3])
def test_modules(nd):
    torch.manual_seed(0)
    m = LargeKernelAttention(4, nd, (5, 7), 3)
    x = torch.randn(2, 4, *(7,) * nd)
    want = _plain(x, m.conv0.weight, m.conv0.bias, m.conv_spatial.weight, m.conv_spatial.bias,
                  m.conv1.weight, m.conv1.bias, 3)
    torch.testing.assert_close(m(x), want)
    blk = VANBlock(4, nd, mlp_ratio=2.0, drop_path=0.1)
    y = blk(x)
    assert y.shape == x.shape
    y.sum().backward()
    assert blk.lka.conv0.weight.grad is not None and blk.layer_scale_1.grad is not None


def test_compile_traces_custom_op():
    torch.manual_seed(0)
    x = torch.randn(1, 3, 5, 4, requires_grad=True)
    ps = _params(3, 3, 3, 2)
    fn = torch.compile(lambda *a: lka_triton(*a, dilation=2), backend="aot_eager", fullgraph=True)
    got, want = fn(x, *ps), lka_reference(x, *ps, 2)
    dout = torch.randn_like(want)
    grads = [torch.autograd.grad((o * dout).sum(), [x, *ps]) for o in (got, want)]
    for a, b in zip([got, *grads[0]], [want, *grads[1]]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_eager_path_is_autograd_function():
    """Eager calls skip the custom-op dispatch (a plain autograd.Function on the same launchers) and match the
    reference forward and backward; torch.compile takes the custom op (test above)."""
    torch.manual_seed(0)
    x = torch.randn(2, 3, 6, 5, requires_grad=True)
    ps = _params(3, 3, 3, 2)
    got, want = lka_triton(x, *ps, dilation=2), lka_reference(x, *ps, 2)
    assert type(got.grad_fn).__name__ == "_LKAFunctionBackward"
    dout = torch.randn_like(want)
    grads = [torch.autograd.grad((o * dout).sum(), [x, *ps]) for o in (got, want)]
    for a, b in zip([got, *grads[0]], [want, *grads[1]]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_tap_major_stacks_both_weights():
    """`tap_major(w0, w1)` is w0's taps then w1's, each [taps, C] in fp32; alone, w0's taps."""
    from ops.lka import kernels

    torch.manual_seed(0)
    w0, w1 = torch.randn(6, 1, 3, 5, dtype=torch.float64), torch.randn(6, 1, 7, 7, dtype=torch.float64)
    want0, want1 = (w.reshape(6, -1).t().float() for w in (w0, w1))
    assert torch.equal(kernels.tap_major(w0, w1), torch.cat([want0, want1]))
    assert torch.equal(kernels.tap_major(w0), want0)
