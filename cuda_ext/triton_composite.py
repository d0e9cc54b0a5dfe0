"""Triton kernels for volume compositing of packed samples (paper Eq. 9), with the backward.

Per ray, front to back (the rule of its PyTorch twin :func:`cuda_ext.composite.composite_packed_torch`):
``tau_i = sigma_i * delta_i``, ``T_i = exp(-sum_{j<i} tau_j)``, ``alpha_i = 1 - exp(-tau_i)``; a sample is
*visited* while ``T_i >= eps`` (1e-4, early ray termination) and then has the weight ``w_i = alpha_i T_i``.
Outputs per ray: ``opacity = sum w_i``, ``depth = sum w_i t_i``, ``weighted = sum w_i v_i`` for C value channels
(colour, uncertainty, ...) and ``plain = sum_{visited} p_i`` for P unweighted channels (the attention norms).

One lane composites one ray, whose samples are ``offsets[r]:offsets[r + 1]``. The backward recomputes the weights in
two passes over each ray — first the total ``sum w_k G_k`` of ``G_k = dL/dw_k``, then
``dL/dsigma_i = delta_i (T_{i+1} G_i - sum_{k>i} w_k G_k)`` — so nothing per sample is stored. Everything is
computed in float32; outputs are float32, input gradients come back in the inputs' dtypes.

Importing this module imports Triton; nothing imports it before the kernels are asked for.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from .composite import TRANSMITTANCE_EPS, Composited, composite_packed_torch

BLOCK = 128
NUM_WARPS = 4  # 128 threads: one lane per ray of a block


@triton.jit
def _ray_setup(start_ptr, count_ptr, pid, n_rays, BLOCK: tl.constexpr):
    ray = pid * BLOCK + tl.arange(0, BLOCK)
    valid = ray < n_rays
    start = tl.load(start_ptr + ray, mask=valid, other=0).to(tl.int64)
    count = tl.load(count_ptr + ray, mask=valid, other=0).to(tl.int32)
    return ray, valid, start, count


@triton.jit
def _sample(sigma_ptr, delta_ptr, t_ptr, start, count, i, valid, tau, eps):
    """Sample i of each ray: its id, whether it is real, its tau = sigma * delta (0 when not real), its delta and
    distance, whether it is visited (transmittance ``exp(-tau) >= eps`` in front of it) and its weight."""
    sid = start + i
    real = valid & (i < count)
    sigma = tl.load(sigma_ptr + sid, mask=real, other=0.0).to(tl.float32)
    delta = tl.load(delta_ptr + sid, mask=real, other=0.0).to(tl.float32)
    tau_i = sigma * delta
    trans = tl.exp(-tau)
    visited = real & (trans >= eps)
    w = tl.where(visited, (1.0 - tl.exp(-tau_i)) * trans, 0.0)
    t = tl.load(t_ptr + sid, mask=visited, other=0.0).to(tl.float32)
    return sid, real, tau_i, delta, visited, w, t


@triton.jit
def _composite_fwd_kernel(sigma_ptr, delta_ptr, t_ptr, val_ptr, plain_ptr, start_ptr, count_ptr, opacity_ptr,
                          depth_ptr, weighted_ptr, plain_out_ptr, n_rays, max_count, eps, C: tl.constexpr,
                          CP: tl.constexpr, P: tl.constexpr, PP: tl.constexpr, BLOCK: tl.constexpr):
    ray, valid, start, count = _ray_setup(start_ptr, count_ptr, tl.program_id(0), n_rays, BLOCK)
    c_cols = tl.arange(0, CP)
    p_cols = tl.arange(0, PP)
    tau = tl.zeros([BLOCK], dtype=tl.float32)
    opacity = tl.zeros([BLOCK], dtype=tl.float32)
    depth = tl.zeros([BLOCK], dtype=tl.float32)
    weighted = tl.zeros([BLOCK, CP], dtype=tl.float32)
    plain = tl.zeros([BLOCK, PP], dtype=tl.float32)
    for i in range(0, max_count):
        sid, real, tau_i, delta, visited, w, t = _sample(sigma_ptr, delta_ptr, t_ptr, start, count, i, valid, tau,
                                                         eps)
        opacity += w
        depth += w * t
        if C > 0:
            v = tl.load(val_ptr + sid[:, None] * C + c_cols[None, :], mask=visited[:, None] & (c_cols[None, :] < C),
                        other=0.0).to(tl.float32)
            weighted += w[:, None] * v
        if P > 0:
            p = tl.load(plain_ptr + sid[:, None] * P + p_cols[None, :],
                        mask=visited[:, None] & (p_cols[None, :] < P), other=0.0).to(tl.float32)
            plain += p
        tau += tau_i
    tl.store(opacity_ptr + ray, opacity, mask=valid)
    tl.store(depth_ptr + ray, depth, mask=valid)
    if C > 0:
        tl.store(weighted_ptr + ray[:, None] * C + c_cols[None, :], weighted,
                 mask=valid[:, None] & (c_cols[None, :] < C))
    if P > 0:
        tl.store(plain_out_ptr + ray[:, None] * P + p_cols[None, :], plain, mask=valid[:, None] & (p_cols[None, :] < P))


@triton.jit
def _weight_gradient(val_ptr, sid, visited, t, g_op, g_dp, g_w, c_cols, C: tl.constexpr):
    """``G = dL/dw`` of each ray's sample: ``g_opacity + g_depth * t + sum_c v_c g_weighted_c``."""
    g = g_op + g_dp * t
    if C > 0:
        v = tl.load(val_ptr + sid[:, None] * C + c_cols[None, :], mask=visited[:, None] & (c_cols[None, :] < C),
                    other=0.0).to(tl.float32)
        g += tl.sum(v * g_w, axis=1)
    return g


@triton.jit
def _composite_bwd_kernel(sigma_ptr, delta_ptr, t_ptr, val_ptr, start_ptr, count_ptr, g_opacity_ptr, g_depth_ptr,
                          g_weighted_ptr, g_plain_ptr, g_sigma_ptr, g_val_ptr, g_plain_in_ptr, n_rays, max_count, eps,
                          C: tl.constexpr, CP: tl.constexpr, P: tl.constexpr, PP: tl.constexpr,
                          BLOCK: tl.constexpr):
    ray, valid, start, count = _ray_setup(start_ptr, count_ptr, tl.program_id(0), n_rays, BLOCK)
    c_cols = tl.arange(0, CP)
    p_cols = tl.arange(0, PP)
    g_op = tl.load(g_opacity_ptr + ray, mask=valid, other=0.0)
    g_dp = tl.load(g_depth_ptr + ray, mask=valid, other=0.0)
    g_w = tl.load(g_weighted_ptr + ray[:, None] * C + c_cols[None, :], mask=valid[:, None] & (c_cols[None, :] < C),
                  other=0.0)
    g_p = tl.load(g_plain_ptr + ray[:, None] * P + p_cols[None, :], mask=valid[:, None] & (p_cols[None, :] < P),
                  other=0.0)
    # pass 1: total = sum_k w_k G_k
    tau = tl.zeros([BLOCK], dtype=tl.float32)
    total = tl.zeros([BLOCK], dtype=tl.float32)
    for i in range(0, max_count):
        sid, real, tau_i, delta, visited, w, t = _sample(sigma_ptr, delta_ptr, t_ptr, start, count, i, valid, tau,
                                                         eps)
        total += w * _weight_gradient(val_ptr, sid, visited, t, g_op, g_dp, g_w, c_cols, C)
        tau += tau_i
    # pass 2: gradients, with the suffix sum_{k>i} w_k G_k = total - prefix
    tau = tl.zeros([BLOCK], dtype=tl.float32)
    prefix = tl.zeros([BLOCK], dtype=tl.float32)
    for i in range(0, max_count):
        sid, real, tau_i, delta, visited, w, t = _sample(sigma_ptr, delta_ptr, t_ptr, start, count, i, valid, tau,
                                                         eps)
        g = _weight_gradient(val_ptr, sid, visited, t, g_op, g_dp, g_w, c_cols, C)
        if C > 0:
            tl.store(g_val_ptr + sid[:, None] * C + c_cols[None, :], w[:, None] * g_w,
                     mask=real[:, None] & (c_cols[None, :] < C))
        if P > 0:
            tl.store(g_plain_in_ptr + sid[:, None] * P + p_cols[None, :],
                     tl.where(visited[:, None], g_p, 0.0), mask=real[:, None] & (p_cols[None, :] < P))
        prefix += w * g
        trans_after = tl.exp(-(tau + tau_i))
        g_tau = tl.where(visited, trans_after * g - (total - prefix), 0.0)
        tl.store(g_sigma_ptr + sid, g_tau * delta, mask=real)
        tau += tau_i


def _pow2(n: int) -> int:
    return max(1, triton.next_power_of_2(max(n, 1)))


class _CompositeTriton(torch.autograd.Function):
    """Autograd wrapper; differentiable in sigma, values and plain (not in deltas or t)."""

    @staticmethod
    def forward(ctx, sigma: Tensor, values: Tensor, plain: Tensor, deltas: Tensor, t: Tensor, start: Tensor,
                count: Tensor, max_count: int, eps: float):
        # sigma/deltas/t: [M]; values: [M, C]; plain: [M, P]; start/count: [N]; RETURN: [N], [N], [N, C], [N, P]
        n = start.shape[0]
        c, p = values.shape[1], plain.shape[1]
        f32 = dict(dtype=torch.float32, device=sigma.device)
        opacity, depth = torch.empty(n, **f32), torch.empty(n, **f32)
        weighted, plain_sum = torch.empty(n, c, **f32), torch.empty(n, p, **f32)
        if n:
            dummy = torch.empty(1, **f32)
            _composite_fwd_kernel[(triton.cdiv(n, BLOCK),)](
                sigma, deltas, t, values if c else dummy, plain if p else dummy, start, count, opacity, depth,
                weighted if c else dummy, plain_sum if p else dummy, n, max_count, float(eps),
                C=c, CP=_pow2(c), P=p, PP=_pow2(p), BLOCK=BLOCK, num_warps=NUM_WARPS, enable_fp_fusion=False)
        ctx.save_for_backward(sigma, values, deltas, t, start, count)
        ctx.meta = (max_count, eps, values.dtype, plain.dtype, plain.shape)
        return opacity, depth, weighted, plain_sum

    @staticmethod
    def backward(ctx, g_opacity: Tensor, g_depth: Tensor, g_weighted: Tensor, g_plain: Tensor):
        sigma, values, deltas, t, start, count = ctx.saved_tensors
        max_count, eps, values_dtype, plain_dtype, plain_shape = ctx.meta
        n = start.shape[0]
        c, p = values.shape[1], plain_shape[1]
        f32 = dict(dtype=torch.float32, device=sigma.device)
        g_opacity = g_opacity.float().contiguous() if g_opacity is not None else torch.zeros(n, **f32)
        g_depth = g_depth.float().contiguous() if g_depth is not None else torch.zeros(n, **f32)
        g_weighted = g_weighted.float().contiguous() if g_weighted is not None else torch.zeros(n, c, **f32)
        g_plain = g_plain.float().contiguous() if g_plain is not None else torch.zeros(n, p, **f32)
        g_sigma = torch.zeros(sigma.shape, **f32)
        g_values = torch.zeros(values.shape, **f32)
        g_plain_in = torch.zeros(plain_shape, **f32)
        if n:
            dummy = torch.empty(1, **f32)
            _composite_bwd_kernel[(triton.cdiv(n, BLOCK),)](
                sigma, deltas, t, values if c else dummy, start, count, g_opacity, g_depth,
                g_weighted if c else dummy, g_plain if p else dummy, g_sigma, g_values if c else dummy,
                g_plain_in if p else dummy, n, max_count, float(eps),
                C=c, CP=_pow2(c), P=p, PP=_pow2(p), BLOCK=BLOCK, num_warps=NUM_WARPS, enable_fp_fusion=False)
        return (g_sigma.to(sigma.dtype), g_values.to(values_dtype), g_plain_in.to(plain_dtype),
                None, None, None, None, None, None)


def _channels(x: Tensor | None, m: Tensor, name: str) -> Tensor:
    """[M] or [M, K] -> [M, K] contiguous (None -> [M, 0])."""
    if x is None:
        return m.new_zeros(m.shape[0], 0)
    if x.dim() == 1:
        x = x.unsqueeze(-1)
    if x.dim() != 2 or x.shape[0] != m.shape[0]:
        raise ValueError(f"composite: {name} must be [M] or [M, K] with M = {m.shape[0]}, got {tuple(x.shape)}")
    return x.contiguous()


def composite_packed_triton(sigma: Tensor, deltas: Tensor, t: Tensor, offsets: Tensor, values: Tensor | None = None,
                            plain: Tensor | None = None, *, max_samples: int | None = None,
                            transmittance_eps: float = TRANSMITTANCE_EPS) -> Composited:
    """Composite packed samples: the kernel version of :func:`cuda_ext.composite.composite_packed_torch` (same
    arguments and results).

    Args:
        sigma: [M] densities (differentiable).
        deltas: [M] step lengths; t: [M] sample distances (for depth).
        offsets: [N + 1] int sample offsets per ray.
        values: [M, C] (or [M]) channels to weight, e.g. colour (differentiable); None = none.
        plain: [M, P] (or [M]) channels summed unweighted over visited samples (differentiable); None = none.
        max_samples: the largest per-ray count if known (saves a device-to-host sync).
        transmittance_eps: early-termination threshold.

    Returns:
        Composited (float32).
    """
    if sigma.dim() != 1 or deltas.shape != sigma.shape or t.shape != sigma.shape:
        raise ValueError("composite: sigma, deltas and t must all be [M]")
    values_2d = _channels(values, sigma, "values")
    plain_2d = _channels(plain, sigma, "plain")
    offsets = offsets.to(sigma.device)
    start = offsets[:-1].to(torch.int64).contiguous()
    count = (offsets[1:] - offsets[:-1]).to(torch.int32).contiguous()
    if max_samples is None:
        max_samples = int(count.max()) if count.numel() else 0
    opacity, depth, weighted, plain_sum = _CompositeTriton.apply(
        sigma.contiguous(), values_2d, plain_2d, deltas.float().contiguous(), t.float().contiguous(), start, count,
        int(max_samples), float(transmittance_eps))
    return Composited(opacity=opacity, depth=depth, weighted=weighted, plain=plain_sum)


def probe(kind: str) -> str | None:
    """Composite a few random rays forward and backward; None when the results match the twin."""
    device = torch.device("cuda" if kind == "cuda" else "cpu")
    gen = torch.Generator().manual_seed(0)
    counts = torch.randint(0, 6, (16,), generator=gen)
    offsets = torch.cat([torch.zeros(1, dtype=torch.int64), counts.cumsum(0)]).to(device)
    m = int(counts.sum())
    sigma = (torch.rand(m, generator=gen) * 30).to(device).requires_grad_(True)
    values = torch.rand(m, 3, generator=gen).to(device).requires_grad_(True)
    deltas = torch.full((m,), 0.1, device=device)
    t = torch.linspace(0.0, 1.0, m).to(device)
    fast = composite_packed_triton(sigma, deltas, t, offsets, values)
    ref = composite_packed_torch(sigma, deltas, t, offsets, values)
    loss_fast = fast.weighted.sum() + fast.opacity.sum() + fast.depth.sum()
    loss_ref = ref.weighted.sum() + ref.opacity.sum() + ref.depth.sum()
    g_fast = torch.autograd.grad(loss_fast, (sigma, values))
    g_ref = torch.autograd.grad(loss_ref, (sigma, values))
    pairs = (("colour", fast.weighted, ref.weighted), ("opacity", fast.opacity, ref.opacity),
             ("sigma gradient", g_fast[0], g_ref[0]), ("colour gradient", g_fast[1], g_ref[1]))
    for name, a, b in pairs:
        a, b = a.detach(), b.detach()
        if not torch.allclose(a, b, rtol=1e-4, atol=1e-5):
            return f"compositing {name}: max abs diff {float((a - b).abs().max()):.3g}"
    return None
