"""FlexAttention NA backend (mask_mod of the NA rule, tiled layouts, NAT bias score_mod) against the reference."""
import pytest
import torch

from ops.na.flex import na_flex
from ops.na.params import make_params
from ops.na.reference import na_reference


@pytest.mark.parametrize("shape, ks, dil, st, ca, tile", [
    ((8, 12), (3, 4), (2, 1), (1, 2), (False, True), None),
    ((8, 12), 5, 1, 1, False, (4, 4)),
    ((4, 6, 8), (3, 2, 3), (1, 2, 1), (1, 1, 3), False, (2, 2, 4)),
    ((32,), 6, 2, 3, True, (8,)),
], ids=str)
def test_flex_matches_reference(shape, ks, dil, st, ca, tile):
    p = make_params(shape, ks, dil, st, ca)
    g = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(2, *shape, 2, 16, generator=g) for _ in range(3))
    torch.testing.assert_close(na_flex(q, k, v, p, 0.25, tile=tile), na_reference(q, k, v, p, 0.25),
                               rtol=1e-4, atol=1e-5)


@pytest.mark.gpu
@pytest.mark.parametrize("tile", [None, (8, 8)])
def test_flex_gpu_forward_backward(tile):
    p = make_params((40, 48), (7, 9), (2, 1), (1, 3))
    q, k, v, do = (torch.randn(2, 40, 48, 2, 32, device="cuda", dtype=torch.bfloat16) for _ in range(4))
    grads = []
    for fn in (lambda a, b, c: na_flex(a, b, c, p, tile=tile), lambda a, b, c: na_reference(a, b, c, p)):
        leaves = [t.float().requires_grad_() for t in (q, k, v)]
        out = fn(*(t.to(torch.bfloat16) for t in leaves))
        grads.append([out, *torch.autograd.grad(out, leaves, do)])
    for a, b in zip(*grads):
        assert ((a.float() - b.float()).norm() / b.float().norm()).item() < 2e-2


def test_flex_rel_pos_bias_matches_reference():
    p = make_params((6, 10), (3, 5), (2, 1))
    g = torch.Generator().manual_seed(4)
    q, k, v = (torch.randn(1, 6, 10, 2, 16, generator=g) for _ in range(3))
    rpb = torch.randn(2, 5, 9, generator=g)
    torch.testing.assert_close(na_flex(q, k, v, p, 0.25, rpb=rpb), na_reference(q, k, v, p, 0.25, rpb=rpb),
                               rtol=1e-4, atol=1e-5)


def test_flex_tile_must_divide():
    p = make_params((6, 10), 3)
    q = torch.randn(1, 6, 10, 1, 16)
    with pytest.raises(ValueError, match="must divide"):
        na_flex(q, q, q, p, tile=(4, 4))
