"""NA reference backend against the dense masked-softmax oracle, gradcheck, the rule on literal cases, errors."""
import pytest
import torch

from na_oracle import case_tensors, dense_mask, dense_na, nat_bias, per_axis, window_1d
from ops.na import NeighborhoodAttention2d, na1d, na2d, na3d
from ops.na.params import make_params
from ops.na.reference import axis_windows

FNS = {1: na1d, 2: na2d, 3: na3d}

# (shape, kernel, dilation, stride, causal): borders, even kernels, dilation*kernel == L, stride == kernel,
# causal (with stride and dilation), non-square shapes
CASES = [
    ((11,), 3, 1, 1, False), ((11,), 4, 1, 1, False), ((12,), 3, 4, 1, False), ((10,), 5, 2, 1, False),
    ((11,), 4, 1, 4, False), ((13,), 5, 1, 2, False), ((11,), 4, 2, 3, False), ((12,), 3, 1, 1, True),
    ((13,), 4, 2, 2, True), ((7,), 7, 1, 1, False),
    ((5, 8), 3, 1, 1, False), ((6, 7), (2, 4), 1, 1, False), ((6, 9), 3, (2, 3), 1, False),
    ((6, 8), (3, 4), 1, (3, 4), False), ((7, 6), 3, 1, 1, (True, False)), ((8, 5), (4, 3), (2, 1), (2, 3), True),
    ((4, 5, 6), 3, 1, 1, False), ((4, 6, 5), (2, 3, 4), (2, 2, 1), 1, False),
    ((4, 4, 6), (3, 4, 3), 1, (3, 2, 3), (False, False, True)), ((3, 4, 5), (3, 2, 5), 1, 1, (True, False, False)),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_reference_matches_dense_oracle(case):
    shape, ks, dil, st, ca = case
    nd = len(shape)
    q, k, v = case_tensors(shape)
    mask = dense_mask(shape, per_axis(ks, nd), per_axis(dil, nd), per_axis(st, nd), per_axis(ca, nd))
    out = FNS[nd](q, k, v, ks, dil, st, ca, backend="reference")
    torch.testing.assert_close(out, dense_na(q, k, v, mask), rtol=1e-10, atol=1e-10)


def test_rule_literals():
    assert window_1d(0, 7, 3, 1, 1, False) == [0, 1, 2]
    assert window_1d(6, 7, 3, 1, 1, False) == [4, 5, 6]
    assert window_1d(3, 8, 4, 1, 1, False) == [1, 2, 3, 4]  # even kernel: 2 left, 1 right
    assert window_1d(7, 9, 3, 2, 1, False) == [3, 5, 7]  # dilation group [1, 3, 5, 7], clamped at its end
    assert window_1d(4, 9, 3, 1, 3, False) == [3, 4, 5]  # stride == kernel: blocks
    assert window_1d(4, 9, 3, 3, 1, False) == [1, 4, 7]  # dilation 3: group [1, 4, 7]
    assert window_1d(5, 9, 3, 1, 3, False) == [3, 4, 5]
    assert window_1d(6, 9, 3, 1, 2, False) == [6, 7, 8]  # stride 2: leader 7
    assert window_1d(1, 9, 3, 1, 1, True) == [0, 1]
    for L, k, d, s, c in [(9, 3, 1, 1, False), (10, 4, 2, 3, False), (11, 5, 2, 2, True)]:
        win, ok = axis_windows(L, k, d, s, c)
        for i in range(L):
            assert sorted(win[i][ok[i]].tolist()) == window_1d(i, L, k, d, s, c)


def test_every_query_sees_k_keys():
    mask = dense_mask((9, 10), (4, 3), (2, 3), (1, 1), (False, False))
    assert (mask.sum(1) == 12).all()


@pytest.mark.parametrize("case", [((7,), 4, 1, 2, True), ((4, 6), 3, (1, 2), (1, 3), (False, True)),
                                  ((3, 3, 4), (3, 2, 3), 1, 1, False)], ids=str)
def test_reference_gradcheck(case):
    shape, ks, dil, st, ca = case
    q, k, v = (t.requires_grad_() for t in case_tensors(shape, B=1, H=1, D=3))
    fn = FNS[len(shape)]
    assert torch.autograd.gradcheck(lambda a, b, c: fn(a, b, c, ks, dil, st, ca, backend="reference"), (q, k, v))


def test_reference_chunked(monkeypatch):
    import ops.na.reference as ref

    q, k, v = case_tensors((9, 10))
    full = na2d(q, k, v, 3, (2, 1), backend="reference")
    monkeypatch.setattr(ref, "_CHUNK_ELEMS", 1)  # one query per chunk
    torch.testing.assert_close(na2d(q, k, v, 3, (2, 1), backend="reference"), full, rtol=0, atol=0)


def test_rel_pos_bias_matches_oracle():
    from ops.na.functional import neighborhood_attention

    shape, ks, dil = (6, 7), (3, 4), (2, 1)
    q, k, v = case_tensors(shape)
    rpb = torch.randn(2, 5, 7, dtype=torch.float64)
    out = neighborhood_attention(q, k, v, 2, ks, dil, rpb=rpb, backend="reference")
    mask = dense_mask(shape, ks, dil, (1, 1), (False, False))
    torch.testing.assert_close(out, dense_na(q, k, v, mask, bias=nat_bias(rpb, shape, ks, dil)))


def test_module_shapes_and_rpb_grad():
    m = NeighborhoodAttention2d(16, 2, 3, dilation=2, rel_pos_bias=True)
    x = torch.randn(2, 7, 9, 16, requires_grad=True)
    y = m(x)
    assert y.shape == x.shape
    y.square().mean().backward()
    assert m.rpb.grad is not None and m.rpb.grad.abs().sum() > 0 and x.grad.abs().sum() > 0


@pytest.mark.parametrize("args, match", [
    (dict(kernel_size=9), "kernel_size 9 is larger than spatial axis 0 of length 8"),
    (dict(kernel_size=3, dilation=3), r"dilation\*kernel_size = 3\*3 = 9 is larger than spatial axis 0"),
    (dict(kernel_size=3, stride=4), "stride 4 is larger than kernel_size 3"),
    (dict(kernel_size=(3, 3, 3)), "kernel_size must have 2 entries"),
    (dict(kernel_size=0), "kernel_size must be >= 1"),
    (dict(kernel_size=3, dilation=(1, 0)), "dilation must be >= 1"),
    (dict(kernel_size=3, backend="cuda"), "backend must be one of"),
])
def test_argument_errors(args, match):
    q, k, v = case_tensors((8, 8), B=1)
    with pytest.raises((ValueError, TypeError), match=match):
        na2d(q, k, v, **args)


def test_qkv_errors():
    q, k, v = case_tensors((8, 8), B=1)
    with pytest.raises(ValueError, match="same shape"):
        na2d(q, k[:, :7], v, 3)
    with pytest.raises(ValueError, match="same dtype"):
        na2d(q, k.float(), v, 3)
    with pytest.raises(ValueError, match=r"\[B, \*spatial\(2\), heads, head_dim\]"):
        na2d(q[0], k[0], v[0], 3)
    with pytest.raises(ValueError, match="same device"):
        na2d(q, k.to("meta"), v, 3)
    with pytest.raises(ValueError, match="rpb must have shape"):
        from ops.na.functional import neighborhood_attention
        neighborhood_attention(q, k, v, 2, 3, rpb=torch.zeros(2, 3, 3, dtype=q.dtype))
    make_params((8,), 8, 1, 8)  # the borders themselves are accepted


def test_triton_backend_errors():
    from ops.na.functional import neighborhood_attention
    from ops.na.triton_kernels import INTERPRET

    q, k, v = case_tensors((8, 8), B=1)
    with pytest.raises(ValueError, match="does not take a relative positional bias"):
        neighborhood_attention(q, k, v, 2, 3, backend="triton", rpb=torch.zeros(2, 5, 5, dtype=q.dtype))
    if not INTERPRET:
        with pytest.raises(ValueError, match="backend='triton' needs CUDA tensors"):
            na2d(q, k, v, 3, backend="triton")
        return
    with pytest.raises(ValueError, match=r"backend='triton' supports dtypes .*got torch.float64"):
        na2d(q, k, v, 3, backend="triton")
    q, k, v = case_tensors((8, 8), B=1, D=136, dtype=torch.float32)
    with pytest.raises(ValueError, match="backend='triton' supports head_dim <= 128, got 136"):
        na2d(q, k, v, 3, backend="triton")
