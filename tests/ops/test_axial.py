"""Axial attention: references against torch.nn.functional.scaled_dot_product_attention and an explicit loop for
the relative terms, the fused Triton forward and backward (interpreter on CPU) against the reference and its
autograd, errors, the module and torch.compile tracing."""
import math

import pytest
import torch
import torch.nn.functional as F

from ops.axial import (AxialAttention, axial_attention, axial_attention_reference, axial_rel_attention,
                       axial_rel_attention_reference, axial_rel_attention_triton)


def _sdpa_along(q, k, v, axis, scale=None):
    nsp = q.dim() - 3
    perm = [0] + [1 + i for i in range(nsp) if i != axis] + [q.dim() - 2, axis + 1, q.dim() - 1]
    inv = [perm.index(i) for i in range(q.dim())]
    out = F.scaled_dot_product_attention(*(t.permute(perm) for t in (q, k, v)), scale=scale)
    return out.permute(inv)


@pytest.mark.parametrize("shape,axis", [((2, 5, 7, 3, 4), 0), ((2, 5, 7, 3, 4), 1), ((1, 3, 4, 5, 2, 8), 1),
                                        ((1, 3, 4, 5, 2, 8), 2), ((2, 9, 1, 6), 0)])
def test_plain_matches_sdpa(shape, axis):
    torch.manual_seed(0)
    q, k, v = (torch.randn(shape, requires_grad=True) for _ in range(3))
    want = _sdpa_along(q, k, v, axis, 0.3)
    for fn in (axial_attention_reference, axial_attention):
        got = fn(q, k, v, axis, scale=0.3)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
        go = torch.randn_like(want)
        for a, b in zip(torch.autograd.grad(got, (q, k, v), go),
                        torch.autograd.grad(want, (q, k, v), go, retain_graph=True)):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def _rel_loop(q, k, v, axis, rq, rk, rv, g):
    """Explicit per-line, per-position loop over the relative-attention definition (2-D, one axis)."""
    L, d = q.shape[axis + 1], q.shape[-1]
    ql, kl, vl = (t.movedim(axis + 1, -3) for t in (q, k, v))  # [B, other, L, h, d]
    out = torch.zeros_like(ql)
    for o in range(L):
        logits = torch.stack([(ql[..., o, :, :] * kl[..., p, :, :]).sum(-1)
                              + g[0] * (ql[..., o, :, :] * rq[p - o + L - 1]).sum(-1)
                              + g[1] * (kl[..., p, :, :] * rk[p - o + L - 1]).sum(-1) for p in range(L)], -1)
        prob = torch.softmax(logits / math.sqrt(d), -1)
        out[..., o, :, :] = sum(prob[..., p, None] * (g[2] * vl[..., p, :, :] + g[3] * rv[p - o + L - 1])
                                for p in range(L))
    return out.movedim(-3, axis + 1)


@pytest.mark.parametrize("axis", [0, 1])
def test_rel_reference_matches_loop(axis):
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 5, 4, 2, 3) for _ in range(3))
    L = q.shape[axis + 1]
    rq, rk, rv = (torch.randn(2 * L - 1, 3) for _ in range(3))
    g = torch.tensor([0.5, -0.3, 1.2, 0.7])
    torch.testing.assert_close(axial_rel_attention_reference(q, k, v, axis, rq, rk, rv, g),
                               _rel_loop(q, k, v, axis, rq, rk, rv, g), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape,axis", [((2, 5, 7, 2, 8), 0), ((1, 3, 70, 2, 16), 1), ((1, 3, 4, 5, 1, 4), 2)])
def test_rel_triton_matches_reference(shape, axis):
    torch.manual_seed(0)
    L, d = shape[axis + 1], shape[-1]
    q, k, v = (torch.randn(shape, requires_grad=True) for _ in range(3))
    rels = [(torch.randn(2 * L - 1, d) * 0.5).requires_grad_() for _ in range(3)]
    g = torch.tensor([0.5, 0.3, 1.0, 0.7], requires_grad=True)
    inputs = [q, k, v, *rels, g]
    got = axial_rel_attention_triton(q, k, v, axis, *rels, g)
    want = axial_rel_attention_reference(q, k, v, axis, *rels, g)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    go = torch.randn_like(want)
    for a, b in zip(torch.autograd.grad(got, inputs, go), torch.autograd.grad(want, inputs, go)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def _rel_inputs(shape, axis, gated, dtype=torch.float32):
    L, d = shape[axis + 1], shape[-1]
    q, k, v = (torch.randn(shape).to(dtype).requires_grad_() for _ in range(3))
    rels = [(torch.randn(2 * L - 1, d) * 0.5).to(dtype).requires_grad_() for _ in range(3)]
    g = torch.tensor([0.6, -0.4, 1.3, 0.8], requires_grad=True) if gated else None
    return [q, k, v, *rels], g


@pytest.mark.parametrize("gated", [False, True])
@pytest.mark.parametrize("shape,axis,bm,slots", [
    ((2, 5, 7, 2, 8), 0, 32, 64), ((2, 5, 7, 2, 8), 1, 32, 3), ((1, 1, 4, 2, 8), 0, 32, 64),
    ((1, 33, 2, 1, 8), 0, 16, 64), ((1, 3, 33, 1, 4), 1, 32, 2), ((1, 2, 16, 1, 12), 1, 16, 64),
    ((1, 3, 4, 5, 1, 4), 0, 32, 4), ((1, 3, 4, 5, 1, 4), 1, 32, 64), ((1, 3, 4, 20, 1, 4), 2, 16, 5)])
def test_rel_triton_backward_matches_autograd(shape, axis, bm, slots, gated, monkeypatch):
    """All gradients of the fused backward against autograd of the reference: odd L, L below / not a multiple of /
    spanning several blocks, L == 1, 2-D and 3-D, every axis, fewer table slots than lines, gates None or not."""
    from ops.axial import kernels

    monkeypatch.setitem(kernels.BWD_CFG, "bm", bm)
    monkeypatch.setitem(kernels.BWD_CFG, "dq_bm", 48 - bm)   # the dQ kernel on the other block size
    monkeypatch.setitem(kernels.BWD_CFG, "slots", slots)
    torch.manual_seed(0)
    inputs, g = _rel_inputs(shape, axis, gated)
    wrt = inputs + ([g] if gated else [])
    got = axial_rel_attention_triton(*inputs[:3], axis, *inputs[3:], g)
    want = axial_rel_attention_reference(*inputs[:3], axis, *inputs[3:], g)
    go = torch.randn_like(want)
    for name, a, b in zip(["q", "k", "v", "rel_q", "rel_k", "rel_v", "gates"], torch.autograd.grad(got, wrt, go),
                          torch.autograd.grad(want, wrt, go)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4, msg=lambda m: f"d{name}: {m}")


def test_rel_triton_backward_large_logits():
    """Logits in the hundreds: the backward recomputes p from the saved log-sum-exp without overflow, also in the
    padding rows of a partial block (L = 20 in one block of 32)."""
    torch.manual_seed(0)
    inputs, g = _rel_inputs((1, 20, 2, 1, 8), 0, True)
    inputs = [(t.detach() * 20).requires_grad_() for t in inputs]
    got = axial_rel_attention_triton(*inputs[:3], 0, *inputs[3:], g)
    want = axial_rel_attention_reference(*inputs[:3], 0, *inputs[3:], g)
    go = torch.randn_like(want)
    for a, b in zip(torch.autograd.grad(got, inputs + [g], go), torch.autograd.grad(want, inputs + [g], go)):
        assert a.isfinite().all()
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-3 * b.abs().max().item())


def test_rel_backward_reference_matches_autograd():
    """The written-out PyTorch backward (ground truth of the fused one) against autograd of the reference."""
    from ops.axial.reference import axial_rel_attention_backward

    torch.manual_seed(0)
    inputs, g = _rel_inputs((2, 5, 3, 2, 4), 0, True)
    want = axial_rel_attention_reference(*inputs[:3], 0, *inputs[3:], g, 0.4)
    go = torch.randn_like(want)
    got = axial_rel_attention_backward(*(t.detach() for t in inputs[:3]), 0, *(t.detach() for t in inputs[3:]),
                                       g.detach(), 0.4, go)
    for a, b in zip(got, torch.autograd.grad(want, inputs + [g], go)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_rel_triton_fp16():
    torch.manual_seed(0)
    lo, g = _rel_inputs((1, 6, 37, 2, 16), 1, True, torch.float16)
    hi = [t.detach().float().requires_grad_() for t in lo]
    got = axial_rel_attention_triton(*lo[:3], 1, *lo[3:], g)
    want = axial_rel_attention_reference(*hi[:3], 1, *hi[3:], g)
    torch.testing.assert_close(got.float(), want, rtol=2e-2, atol=2e-2)
    go = torch.randn_like(want)
    grads_hi = torch.autograd.grad(want, hi + [g], go)
    for a, b in zip(torch.autograd.grad(got, lo + [g], go.half()), grads_hi):
        torch.testing.assert_close(a.float(), b, rtol=2e-2, atol=2e-2 * b.abs().max().item())


def test_errors():
    q = torch.randn(1, 4, 5, 2, 8)
    with pytest.raises(ValueError, match="axis"):
        axial_attention(q, q, q, 2)
    with pytest.raises(ValueError, match="k must have"):
        axial_attention(q, q[:, :3], q, 0)
    r = torch.randn(7, 8)
    with pytest.raises(ValueError, match=r"rel_k must have shape \[2L - 1, head_dim\] = \[9, 8\]"):
        axial_rel_attention(q, q, q, 1, torch.randn(9, 8), r, r)
    with pytest.raises(ValueError, match="gates"):
        axial_rel_attention(q, q, q, 0, r, r, r, torch.ones(3))
    with pytest.raises(TypeError, match="q must be one of .*got torch.float64"):
        axial_rel_attention_triton(q.double(), q.double(), q.double(), 0, r.double(), r.double(), r.double())
    with pytest.raises(ValueError, match="max_len"):
        AxialAttention(16, 2, 2, rel_pos=True, max_len=4)(torch.randn(1, 5, 3, 16))
    with pytest.raises(ValueError, match="num_heads"):
        AxialAttention(10, 3)
    with pytest.raises(ValueError, match="rel_pos"):
        AxialAttention(16, 2, gated=True)
    with pytest.raises(ValueError, match="dim=16"):
        AxialAttention(16, 2)(torch.randn(1, 5, 3, 12))


@pytest.mark.parametrize("fn", [axial_attention_reference, axial_attention])
def test_qkv_dtype_and_device_are_checked(fn):
    q = torch.randn(1, 4, 5, 2, 8)
    with pytest.raises(ValueError, match=r"k must have q's dtype torch.float32, got torch.float64"):
        fn(q, q.double(), q, 0)
    with pytest.raises(ValueError, match=r"v must have q's dtype torch.float32, got torch.float16"):
        fn(q, q, q.half(), 0)
    with pytest.raises(ValueError, match=r"v must be on q's device cpu, got meta"):
        fn(q, q, q.to("meta"), 0)
    with pytest.raises(TypeError, match=r"q must be a floating-point tensor, got dtype torch.int64"):
        fn(*(torch.zeros(1, 4, 5, 2, 8, dtype=torch.long),) * 3, 0)
    r = torch.randn(9, 8)
    with pytest.raises(ValueError, match=r"k must have q's dtype"):
        axial_rel_attention_reference(q, q.double(), q, 0, r, r, r)


@pytest.mark.parametrize("nd,rel,gated", [(2, False, False), (2, True, True), (3, True, False)])
def test_module(nd, rel, gated):
    torch.manual_seed(0)
    m = AxialAttention(16, 4, nd, rel_pos=rel, gated=gated, max_len=8)
    x = torch.randn(2, *(5, 7, 3)[:nd], 16)
    y = m(x)
    assert y.shape == x.shape
    # manual composition of the passes
    h = x
    for axis in range(nd):
        q, k, v = m.qkv[axis](h).unflatten(-1, (3, 4, 4)).unbind(-3)
        if rel:
            L = h.shape[axis + 1]
            r = m.rel[axis, :, 8 - L: 8 + L - 1]
            h = axial_rel_attention_reference(q, k, v, axis, r[0], r[1], r[2], m.gates[axis]).flatten(-2)
        else:
            h = _sdpa_along(q, k, v, axis).flatten(-2)
    torch.testing.assert_close(y, m.proj(h), rtol=1e-5, atol=1e-5)
    y.sum().backward()
    if gated:
        assert m.gates.grad is not None and m.rel.grad is not None


def test_compile_traces_custom_op():
    torch.manual_seed(0)
    q, k, v = (torch.randn(1, 5, 3, 2, 4, requires_grad=True) for _ in range(3))
    rels = [torch.randn(9, 4, requires_grad=True) for _ in range(3)]
    fn = torch.compile(lambda *a: axial_rel_attention_triton(a[0], a[1], a[2], 0, *a[3:]), backend="aot_eager",
                       fullgraph=True)
    got, want = fn(q, k, v, *rels), axial_rel_attention_reference(q, k, v, 0, *rels)
    dout = torch.randn_like(want)
    grads = [torch.autograd.grad((o * dout).sum(), [q, k, v, *rels]) for o in (got, want)]
    for a, b in zip([got, *grads[0]], [want, *grads[1]]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
