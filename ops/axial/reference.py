"""Pure-PyTorch axial attention (plain and with Axial-DeepLab/MedT relative terms): any device and dtype, autograd.

Layout is NATTEN's heads-last: q, k, v [B, *spatial, heads, head_dim]; attention runs along one spatial axis."""
from __future__ import annotations

import math

import torch

__all__ = ["check_axial_args", "check_rel_args", "to_lines", "from_lines", "rel_index", "axial_attention_reference",
           "axial_rel_attention_reference", "axial_rel_attention_backward"]


def check_axial_args(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, axis: int) -> int:
    """Validate q, k, v (shape, dtype, device) and axis; returns the axis length L."""
    if q.dim() < 4:
        raise ValueError(f"q must be [B, *spatial, heads, head_dim] with >= 1 spatial dim, got {list(q.shape)}")
    if not q.is_floating_point():
        raise TypeError(f"q must be a floating-point tensor, got dtype {q.dtype}")
    for name, t in (("k", k), ("v", v)):
        if t.shape != q.shape:
            raise ValueError(f"{name} must have q's shape {list(q.shape)}, got {list(t.shape)}")
        if t.dtype != q.dtype:
            raise ValueError(f"{name} must have q's dtype {q.dtype}, got {t.dtype}")
        if t.device != q.device:
            raise ValueError(f"{name} must be on q's device {q.device}, got {t.device}")
    nsp = q.dim() - 3
    if not isinstance(axis, int) or not 0 <= axis < nsp:
        raise ValueError(f"axis must be an int in [0, {nsp}) (0-based among the spatial dims), got {axis!r}")
    return q.shape[axis + 1]


def to_lines(t: torch.Tensor, axis: int) -> torch.Tensor:
    """[B, *s, h, d] -> [N, M, L, d]: dims before `axis` merge into N, dims after it (and heads) into M, so each
    (n, m) is one line of length L; a view (no copy) for contiguous input."""
    n = math.prod(t.shape[:axis + 1])
    return t.reshape(n, t.shape[axis + 1], -1, t.shape[-1]).transpose(1, 2)


def from_lines(t: torch.Tensor, like: torch.Tensor, axis: int) -> torch.Tensor:
    """Inverse of `to_lines` for a tensor shaped like `like`."""
    return t.transpose(1, 2).reshape(like.shape)


def rel_index(L: int, device: torch.device) -> torch.Tensor:
    """[L, L] index p - o + L - 1 into a [2L - 1, d] table of relative embeddings (query o, key p)."""
    r = torch.arange(L, device=device)
    return r[None, :] - r[:, None] + L - 1


def axial_attention_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, axis: int,
                              scale: float | None = None) -> torch.Tensor:
    """softmax(scale q k^T) v along `axis`, materialising the logits (the unfused composition)."""
    check_axial_args(q, k, v, axis)
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    ql, kl, vl = (to_lines(t, axis) for t in (q, k, v))
    p = torch.softmax((ql @ kl.transpose(-1, -2)).float() * scale, dim=-1).to(q.dtype)
    return from_lines(p @ vl, q, axis)


def axial_rel_attention_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, axis: int, rel_q: torch.Tensor,
                                  rel_k: torch.Tensor, rel_v: torch.Tensor, gates: torch.Tensor | None = None,
                                  scale: float | None = None) -> torch.Tensor:
    """Axial attention with relative terms (Axial-DeepLab), optionally gated (MedT):

    logits[o, p] = scale * (q_o.k_p + g_q q_o.r^q_{p-o} + g_k k_p.r^k_{p-o}),
    out_o = sum_p softmax(logits)[o, p] (g_v1 v_p + g_v2 r^v_{p-o}); rel_* are [2L - 1, head_dim] (offset -(L-1)
    first), gates = (g_q, g_k, g_v1, g_v2) or None for all ones."""
    L = check_axial_args(q, k, v, axis)
    check_rel_args(rel_q, rel_k, rel_v, gates, L, q.shape[-1])
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    gq, gk, gv1, gv2 = (1.0, 1.0, 1.0, 1.0) if gates is None else gates.to(q.dtype).unbind()
    ql, kl, vl = (to_lines(t, axis) for t in (q, k, v))
    idx = rel_index(L, q.device)
    rq, rk, rv = (r.to(q.dtype)[idx] for r in (rel_q, rel_k, rel_v))  # [L, L, d] indexed by (o, p)
    logits = ql @ kl.transpose(-1, -2) + gq * torch.einsum("nhod,opd->nhop", ql, rq) \
        + gk * torch.einsum("nhpd,opd->nhop", kl, rk)
    p = torch.softmax(logits.float() * scale, dim=-1).to(q.dtype)
    out = gv1 * (p @ vl) + gv2 * torch.einsum("nhop,opd->nhod", p, rv)
    return from_lines(out, q, axis)


def check_rel_args(rel_q: torch.Tensor, rel_k: torch.Tensor, rel_v: torch.Tensor, gates: torch.Tensor | None,
                   L: int, d: int) -> None:
    for name, r in (("rel_q", rel_q), ("rel_k", rel_k), ("rel_v", rel_v)):
        if tuple(r.shape) != (2 * L - 1, d):
            raise ValueError(f"{name} must have shape [2L - 1, head_dim] = [{2 * L - 1}, {d}], got {list(r.shape)}")
    if gates is not None and tuple(gates.shape) != (4,):
        raise ValueError(f"gates must have shape [4] (g_q, g_k, g_v1, g_v2), got {list(gates.shape)}")


def axial_rel_attention_backward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, axis: int, rel_q: torch.Tensor,
                                 rel_k: torch.Tensor, rel_v: torch.Tensor, gates: torch.Tensor, scale: float,
                                 dout: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Gradients (dq, dk, dv, drel_q, drel_k, drel_v, dgates) of `axial_rel_attention_reference`, written out in
    PyTorch: recomputes the L x L probabilities (logits and softmax in fp32), other products in q's dtype."""
    L, d, dt = q.shape[axis + 1], q.shape[-1], q.dtype
    ql, kl, vl, dol = (to_lines(t, axis) for t in (q, k, v, dout))
    gq, gk, gv1, gv2 = gates.float().unbind()
    idx = rel_index(L, q.device)
    rq, rk, rv = (r.to(dt)[idx] for r in (rel_q, rel_k, rel_v))
    # the logits in fp32 (as the Triton forward accumulates them): bf16-rounded logits would perturb p by ~1%
    q32, k32 = ql.float(), kl.float()
    qr, kr = torch.einsum("nhod,opd->nhop", q32, rq.float()), torch.einsum("nhpd,opd->nhop", k32, rk.float())
    p = torch.softmax((q32 @ k32.transpose(-1, -2) + gq * qr + gk * kr) * scale, dim=-1)
    p_lo = p.to(dt)
    dp_v, dp_rv = (dol @ vl.transpose(-1, -2)).float(), torch.einsum("nhod,opd->nhop", dol, rv).float()
    dp = gv1 * dp_v + gv2 * dp_rv
    ds = (p * (dp - (p * dp).sum(-1, keepdim=True)) * scale)
    ds_lo = ds.to(dt)
    dq = (ds_lo @ kl).float() + gq * torch.einsum("nhop,opd->nhod", ds_lo, rq).float()
    dk = (ds_lo.transpose(-1, -2) @ ql).float() + gk * torch.einsum("nhop,opd->nhpd", ds_lo, rk).float()
    dv = gv1 * (p_lo.transpose(-1, -2) @ dol).float()
    flat = idx.reshape(-1)

    def table(t: torch.Tensor) -> torch.Tensor:
        return torch.zeros(2 * L - 1, d, device=q.device).index_add_(0, flat, t.float().reshape(L * L, d))

    drq = gq * table(torch.einsum("nhop,nhod->opd", ds_lo, ql))
    drk = gk * table(torch.einsum("nhop,nhpd->opd", ds_lo, kl))
    drv = gv2 * table(torch.einsum("nhop,nhod->opd", p_lo, dol))
    dg = torch.stack([(ds * qr).sum(), (ds * kr).sum(), (p * dp_v).sum(), (p * dp_rv).sum()])
    grads = [from_lines(t, q, axis).to(dt) for t in (dq, dk, dv)]
    return (*grads, drq.to(rel_q.dtype), drk.to(rel_k.dtype), drv.to(rel_v.dtype), dg.to(gates.dtype))
