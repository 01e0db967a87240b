"""LKA Triton kernels against the fp32 reference at real sizes in bf16/fp16 (GPU only)."""
import pytest
import torch

from ops.lka import lka_reference, lka_triton

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("shape", [(4, 64, 67, 129), (2, 130, 33, 40), (1, 32, 20, 33, 17)])
def test_lka_gpu(dtype, shape):
    torch.manual_seed(0)
    c, nd = shape[1], len(shape) - 2
    x = torch.randn(shape, device="cuda")
    ps = [torch.randn(c, 1, *(5,) * nd) / 5, torch.randn(c), torch.randn(c, 1, *(7,) * nd) / 7, torch.randn(c),
          torch.randn(c, c, *(1,) * nd) / c**0.5, torch.randn(c)]
    ps = [p.cuda() for p in ps]
    lo = [t.to(dtype).requires_grad_() for t in (x, *ps)]
    hi = [t.detach().float().requires_grad_() for t in lo]
    out, want = lka_triton(*lo, dilation=3), lka_reference(*hi, 3)
    scale = want.abs().max().item()
    torch.testing.assert_close(out.float(), want, rtol=2e-2, atol=2e-2 * scale)
    go = torch.randn_like(want)
    for a, b in zip(torch.autograd.grad(out, lo, go.to(dtype)), torch.autograd.grad(want, hi, go)):
        torch.testing.assert_close(a.float(), b, rtol=3e-2, atol=3e-2 * b.abs().max().item())
