"""Attention-gate Triton kernels against the fp32 reference at real sizes in bf16/fp16 (GPU only)."""
import pytest
import torch

from ops.gate import attention_gate_reference, attention_gate_triton

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("b,cx,cg,f,s", [(4, 64, 128, 32, (67, 129)), (2, 200, 96, 100, (33, 40)),
                                         (1, 32, 32, 16, (20, 33, 17))])
def test_gate_gpu(dtype, b, cx, cg, f, s):
    torch.manual_seed(0)
    one = (1,) * len(s)
    x, g = torch.randn(b, cx, *s, device="cuda"), torch.randn(b, cg, *s, device="cuda")
    ps = [torch.randn(f, cx, *one) / cx**0.5, torch.randn(f), torch.randn(f, cg, *one) / cg**0.5, torch.randn(f),
          torch.randn(1, f, *one) / f**0.5, torch.randn(1)]
    lo = [t.to("cuda", dtype).requires_grad_() for t in (x, g, *ps)]
    hi = [t.detach().float().requires_grad_() for t in lo]
    got, want = attention_gate_triton(*lo), attention_gate_reference(*hi)
    for a, w in zip(got, want):
        torch.testing.assert_close(a.float(), w, rtol=2e-2, atol=2e-2 * w.abs().max().item())
    go = [torch.randn_like(w) for w in want]
    ga = torch.autograd.grad(got, lo, [t.to(dtype) for t in go])
    gw = torch.autograd.grad(want, hi, go)
    for a, w in zip(ga, gw):
        torch.testing.assert_close(a.float(), w, rtol=3e-2, atol=3e-2 * w.abs().max().item())
