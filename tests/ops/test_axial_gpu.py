"""Axial attention on the GPU at real sizes in bf16/fp16: the fused relative-position forward (and its backward)
against the fp32 reference, and the SDPA path against the reference."""
import pytest
import torch

from ops.axial import (axial_attention, axial_attention_reference, axial_rel_attention_reference,
                       axial_rel_attention_triton)

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("shape,axis", [((2, 64, 48, 4, 32), 0), ((2, 64, 48, 4, 32), 1), ((1, 256, 6, 2, 32), 0),
                                        ((1, 20, 33, 17, 2, 32), 2), ((1, 20, 33, 17, 2, 32), 0),
                                        ((2, 9, 130, 2, 64), 1), ((2, 33, 12, 4, 16), 0), ((1, 40, 24, 2, 128), 1),
                                        ((4, 1, 70, 2, 32), 0)])
def test_axial_rel_gpu(dtype, shape, axis):
    torch.manual_seed(0)
    L, d = shape[axis + 1], shape[-1]
    hi = [torch.randn(shape, device="cuda") for _ in range(3)] + [torch.randn(2 * L - 1, d, device="cuda") * 0.3
                                                                 for _ in range(3)]
    hi.append(torch.tensor([0.4, 0.2, 1.0, 0.3], device="cuda"))
    lo = [t.to(dtype).requires_grad_() if i < 6 else t.clone().requires_grad_() for i, t in enumerate(hi)]
    hi = [t.detach().float().requires_grad_() for t in lo]
    out = axial_rel_attention_triton(lo[0], lo[1], lo[2], axis, *lo[3:])
    want = axial_rel_attention_reference(hi[0], hi[1], hi[2], axis, *hi[3:])
    torch.testing.assert_close(out.float(), want, rtol=2e-2, atol=2e-2)
    go = torch.randn_like(want)
    got, ref = torch.autograd.grad(out, lo, go.to(dtype)), torch.autograd.grad(want, hi, go)
    # dv's scale bounds the tolerance from below: at L == 1 dq and dk are exactly 0 in the reference while the
    # kernel's bf16 rounding of out (delta = dout . out) leaves noise of that relative size
    floor = ref[2].abs().max().item()
    for a, b in zip(got, ref):
        torch.testing.assert_close(a.float(), b, rtol=3e-2, atol=3e-2 * max(b.abs().max().item(), floor))
    q = lo[0].detach()
    torch.testing.assert_close(axial_attention(q, q, q, axis).float(),
                               axial_attention_reference(q.float(), q.float(), q.float(), axis), rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("d", [16, 128])
def test_axial_rel_gpu_fp32(d):
    """fp32 (tf32 products) forward and backward, including head_dim 128 (smaller tiles to fit shared memory)."""
    torch.manual_seed(0)
    shape, L = (2, 40, 24, 2, d), 40
    inputs = [torch.randn(shape, device="cuda", requires_grad=True) for _ in range(3)]
    inputs += [(torch.randn(2 * L - 1, d, device="cuda") * 0.3).requires_grad_() for _ in range(3)]
    inputs.append(torch.tensor([0.4, 0.2, 1.0, 0.3], device="cuda", requires_grad=True))
    out = axial_rel_attention_triton(inputs[0], inputs[1], inputs[2], 0, *inputs[3:])
    want = axial_rel_attention_reference(inputs[0], inputs[1], inputs[2], 0, *inputs[3:])
    torch.testing.assert_close(out, want, rtol=1e-2, atol=1e-2)
    go = torch.randn_like(want)
    for a, b in zip(torch.autograd.grad(out, inputs, go), torch.autograd.grad(want, inputs, go)):
        torch.testing.assert_close(a, b, rtol=1e-2, atol=1e-2 * b.abs().max().item())
