"""Triton kernels for volume compositing (paper Eq. 9) with its backward.

Per ray, front to back (the rule of :func:`synctalk_lib.nerf.compositing.render_weights`, the PyTorch twin):
``tau_i = sigma_i * delta_i``, ``T_i = exp(-sum_{j<i} tau_j)``, ``alpha_i = 1 - exp(-tau_i)``; a sample is
*visited* while ``T_i >= eps`` (1e-4, early ray termination) and then has the weight ``w_i = alpha_i T_i``.
Outputs per ray: ``opacity = sum w_i``, ``depth = sum w_i t_i``, ``weighted = sum w_i v_i`` for C value channels
(colour, uncertainty, ...) and ``plain = sum_{visited} p_i`` for P unweighted channels (the attention norms).

One lane composites one ray; a ray's samples are either packed (``offsets [N + 1]``, training) or dense rows of
S slots with a mask (padded layout; real samples need not be contiguous). The backward recomputes the weights in
two passes over each ray — first the total ``sum w_k G_k`` of ``G_k = dL/dw_k``, then
``dL/dsigma_i = delta_i (T_{i+1} G_i - sum_{k>i} w_k G_k)`` — so nothing per sample is stored. Everything is
computed in float32; outputs are float32, input gradients come back in the inputs' dtypes.

:func:`composite_step_triton` is the inference form: it starts each ray at a given optical depth (what earlier
steps accumulated) and returns the new one, so the renderer can march until opaque.

Importing this module imports Triton; :mod:`cuda_ext` imports it only on first use.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from .torch_twins import Composited
from .torch_twins import composite_dense_torch as _composite_dense_torch  # noqa: F401 (twin, tests)
from .torch_twins import composite_packed_torch as _composite_packed_torch
from synctalk_lib.nerf.compositing import TRANSMITTANCE_EPS

BLOCK = 128
NUM_WARPS = 4  # 128 threads: one lane per ray of a block


@triton.jit
def _ray_setup(start_ptr, count_ptr, tau0_ptr, pid, n_rays, HAS_TAU0: tl.constexpr, BLOCK: tl.constexpr):
    ray = pid * BLOCK + tl.arange(0, BLOCK)
    valid = ray < n_rays
    start = tl.load(start_ptr + ray, mask=valid, other=0).to(tl.int64)
    count = tl.load(count_ptr + ray, mask=valid, other=0).to(tl.int32)
    if HAS_TAU0:
        tau = tl.load(tau0_ptr + ray, mask=valid, other=0.0)
    else:
        tau = tl.zeros([BLOCK], dtype=tl.float32)
    return ray, valid, start, count, tau


@triton.jit
def _sample(sigma_ptr, delta_ptr, mask_ptr, start, count, i, valid, HAS_MASK: tl.constexpr):
    """Sample id, whether it is real, and its tau = sigma * delta (0 when not real)."""
    sid = start + i
    real = valid & (i < count)
    if HAS_MASK:
        real = real & (tl.load(mask_ptr + sid, mask=real, other=0).to(tl.int32) != 0)
    sigma = tl.load(sigma_ptr + sid, mask=real, other=0.0).to(tl.float32)
    delta = tl.load(delta_ptr + sid, mask=real, other=0.0).to(tl.float32)
    return sid, real, sigma * delta, delta


@triton.jit
def _composite_fwd_kernel(sigma_ptr, delta_ptr, t_ptr, val_ptr, plain_ptr, mask_ptr, start_ptr, count_ptr,
                          tau0_ptr, opacity_ptr, depth_ptr, weighted_ptr, plain_out_ptr, tau_out_ptr, n_rays,
                          max_count, eps, C: tl.constexpr, CP: tl.constexpr, P: tl.constexpr, PP: tl.constexpr,
                          HAS_MASK: tl.constexpr, HAS_TAU0: tl.constexpr, BLOCK: tl.constexpr):
    ray, valid, start, count, tau = _ray_setup(start_ptr, count_ptr, tau0_ptr, tl.program_id(0), n_rays,
                                               HAS_TAU0, BLOCK)
    c_cols = tl.arange(0, CP)
    p_cols = tl.arange(0, PP)
    opacity = tl.zeros([BLOCK], dtype=tl.float32)
    depth = tl.zeros([BLOCK], dtype=tl.float32)
    weighted = tl.zeros([BLOCK, CP], dtype=tl.float32)
    plain = tl.zeros([BLOCK, PP], dtype=tl.float32)
    for i in range(0, max_count):
        sid, real, tau_i, delta = _sample(sigma_ptr, delta_ptr, mask_ptr, start, count, i, valid, HAS_MASK)
        trans = tl.exp(-tau)
        visited = real & (trans >= eps)
        w = tl.where(visited, (1.0 - tl.exp(-tau_i)) * trans, 0.0)
        t = tl.load(t_ptr + sid, mask=visited, other=0.0).to(tl.float32)
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
    tl.store(tau_out_ptr + ray, tau, mask=valid)
    if C > 0:
        tl.store(weighted_ptr + ray[:, None] * C + c_cols[None, :], weighted,
                 mask=valid[:, None] & (c_cols[None, :] < C))
    if P > 0:
        tl.store(plain_out_ptr + ray[:, None] * P + p_cols[None, :], plain, mask=valid[:, None] & (p_cols[None, :] < P))


@triton.jit
def _composite_bwd_kernel(sigma_ptr, delta_ptr, t_ptr, val_ptr, mask_ptr, start_ptr, count_ptr,
                          g_opacity_ptr, g_depth_ptr, g_weighted_ptr, g_plain_ptr,
                          g_sigma_ptr, g_val_ptr, g_plain_in_ptr, n_rays, max_count, eps,
                          C: tl.constexpr, CP: tl.constexpr, P: tl.constexpr, PP: tl.constexpr,
                          HAS_MASK: tl.constexpr, BLOCK: tl.constexpr):
    ray, valid, start, count, tau0 = _ray_setup(start_ptr, count_ptr, start_ptr, tl.program_id(0), n_rays,
                                                False, BLOCK)
    c_cols = tl.arange(0, CP)
    p_cols = tl.arange(0, PP)
    g_op = tl.load(g_opacity_ptr + ray, mask=valid, other=0.0)
    g_dp = tl.load(g_depth_ptr + ray, mask=valid, other=0.0)
    g_w = tl.load(g_weighted_ptr + ray[:, None] * C + c_cols[None, :], mask=valid[:, None] & (c_cols[None, :] < C),
                  other=0.0)
    g_p = tl.load(g_plain_ptr + ray[:, None] * P + p_cols[None, :], mask=valid[:, None] & (p_cols[None, :] < P),
                  other=0.0)
    # pass 1: total = sum_k w_k G_k
    tau = tau0
    total = tl.zeros([BLOCK], dtype=tl.float32)
    for i in range(0, max_count):
        sid, real, tau_i, delta = _sample(sigma_ptr, delta_ptr, mask_ptr, start, count, i, valid, HAS_MASK)
        trans = tl.exp(-tau)
        visited = real & (trans >= eps)
        w = tl.where(visited, (1.0 - tl.exp(-tau_i)) * trans, 0.0)
        t = tl.load(t_ptr + sid, mask=visited, other=0.0).to(tl.float32)
        g = g_op + g_dp * t
        if C > 0:
            v = tl.load(val_ptr + sid[:, None] * C + c_cols[None, :], mask=visited[:, None] & (c_cols[None, :] < C),
                        other=0.0).to(tl.float32)
            g += tl.sum(v * g_w, axis=1)
        total += w * g
        tau += tau_i
    # pass 2: gradients, with the suffix sum_{k>i} w_k G_k = total - prefix
    tau = tau0
    prefix = tl.zeros([BLOCK], dtype=tl.float32)
    for i in range(0, max_count):
        sid, real, tau_i, delta = _sample(sigma_ptr, delta_ptr, mask_ptr, start, count, i, valid, HAS_MASK)
        trans = tl.exp(-tau)
        visited = real & (trans >= eps)
        w = tl.where(visited, (1.0 - tl.exp(-tau_i)) * trans, 0.0)
        t = tl.load(t_ptr + sid, mask=visited, other=0.0).to(tl.float32)
        g = g_op + g_dp * t
        if C > 0:
            v = tl.load(val_ptr + sid[:, None] * C + c_cols[None, :], mask=visited[:, None] & (c_cols[None, :] < C),
                        other=0.0).to(tl.float32)
            g += tl.sum(v * g_w, axis=1)
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


def _forward(sigma: Tensor, deltas: Tensor, t: Tensor, values: Tensor, plain: Tensor, mask: Tensor | None,
             start: Tensor, count: Tensor, max_count: int, eps: float,
             tau0: Tensor | None) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    n = start.shape[0]
    device = sigma.device
    c, p = values.shape[1], plain.shape[1]
    opacity = torch.empty(n, dtype=torch.float32, device=device)
    depth = torch.empty(n, dtype=torch.float32, device=device)
    weighted = torch.empty(n, c, dtype=torch.float32, device=device)
    plain_sum = torch.empty(n, p, dtype=torch.float32, device=device)
    tau_end = torch.empty(n, dtype=torch.float32, device=device)
    if n:
        dummy = torch.empty(1, dtype=torch.float32, device=device)
        _composite_fwd_kernel[(triton.cdiv(n, BLOCK),)](
            sigma, deltas, t, values if c else dummy, plain if p else dummy,
            mask if mask is not None else dummy, start, count, tau0 if tau0 is not None else dummy,
            opacity, depth, weighted if c else dummy, plain_sum if p else dummy, tau_end, n, max_count, float(eps),
            C=c, CP=_pow2(c), P=p, PP=_pow2(p), HAS_MASK=mask is not None, HAS_TAU0=tau0 is not None, BLOCK=BLOCK,
            num_warps=NUM_WARPS, enable_fp_fusion=False)
    return opacity, depth, weighted, plain_sum, tau_end


class _CompositeTriton(torch.autograd.Function):
    """Autograd wrapper; differentiable in sigma, values and plain (not in deltas or t)."""

    @staticmethod
    def forward(ctx, sigma: Tensor, values: Tensor, plain: Tensor, deltas: Tensor, t: Tensor, mask: Tensor | None,
                start: Tensor, count: Tensor, max_count: int, eps: float):
        # sigma/deltas/t: [M]; values: [M, C]; plain: [M, P]; start/count: [N]; RETURN: [N], [N], [N, C], [N, P]
        opacity, depth, weighted, plain_sum, _ = _forward(sigma, deltas, t, values, plain, mask, start, count,
                                                          max_count, eps, None)
        ctx.save_for_backward(sigma, values, deltas, t, mask, start, count)
        ctx.meta = (max_count, eps, values.dtype, plain.dtype, plain.shape)
        return opacity, depth, weighted, plain_sum

    @staticmethod
    def backward(ctx, g_opacity: Tensor, g_depth: Tensor, g_weighted: Tensor, g_plain: Tensor):
        sigma, values, deltas, t, mask, start, count = ctx.saved_tensors
        max_count, eps, values_dtype, plain_dtype, plain_shape = ctx.meta
        n = start.shape[0]
        c, p = values.shape[1], plain_shape[1]
        device = sigma.device
        f32 = dict(dtype=torch.float32, device=device)
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
                sigma, deltas, t, values if c else dummy, mask if mask is not None else dummy, start, count,
                g_opacity, g_depth, g_weighted if c else dummy, g_plain if p else dummy,
                g_sigma, g_values if c else dummy, g_plain_in if p else dummy, n, max_count, float(eps),
                C=c, CP=_pow2(c), P=p, PP=_pow2(p), HAS_MASK=mask is not None, BLOCK=BLOCK, num_warps=NUM_WARPS,
                enable_fp_fusion=False)
        return (g_sigma.to(sigma.dtype), g_values.to(values_dtype), g_plain_in.to(plain_dtype),
                None, None, None, None, None, None, None)


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
    """Composite packed samples (ray r owns samples ``offsets[r]:offsets[r + 1]``, front to back).

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
    out = _CompositeTriton.apply(sigma.contiguous(), values_2d, plain_2d, deltas.float().contiguous(),
                                 t.float().contiguous(), None, start, count, int(max_samples),
                                 float(transmittance_eps))
    return _finish(out)


def composite_dense_triton(sigma: Tensor, deltas: Tensor, t: Tensor, mask: Tensor | None = None,
                           values: Tensor | None = None, plain: Tensor | None = None, *,
                           transmittance_eps: float = TRANSMITTANCE_EPS) -> Composited:
    """Composite padded samples ``[N, S]`` (a mask marks the real ones; they need not come first).

    Args:
        sigma, deltas, t: [N, S]; mask: [N, S] bool or None (all real).
        values: [N, S, C] or [N, S]; plain: [N, S, P] or [N, S].

    Returns:
        Composited (float32).
    """
    if sigma.dim() != 2 or deltas.shape != sigma.shape or t.shape != sigma.shape:
        raise ValueError("composite: sigma, deltas and t must all be [N, S]")
    n, s = sigma.shape
    flat = sigma.reshape(-1)
    values_2d = _channels(values.reshape(n * s, -1) if values is not None else None, flat, "values")
    plain_2d = _channels(plain.reshape(n * s, -1) if plain is not None else None, flat, "plain")
    start = torch.arange(n, device=sigma.device, dtype=torch.int64) * s
    count = torch.full((n,), s, dtype=torch.int32, device=sigma.device)
    mask_flat = mask.reshape(-1).contiguous() if mask is not None else None
    out = _CompositeTriton.apply(flat.contiguous(), values_2d, plain_2d, deltas.reshape(-1).float().contiguous(),
                                 t.reshape(-1).float().contiguous(), mask_flat, start, count, s,
                                 float(transmittance_eps))
    return _finish(out)


def _finish(out: tuple[Tensor, Tensor, Tensor, Tensor]) -> Composited:
    opacity, depth, weighted, plain_sum = out
    return Composited(opacity=opacity, depth=depth, weighted=weighted, plain=plain_sum)


@torch.no_grad()
def composite_step_triton(sigma: Tensor, deltas: Tensor, t: Tensor, count: Tensor, tau0: Tensor,
                          values: Tensor | None = None, plain: Tensor | None = None, *,
                          transmittance_eps: float = TRANSMITTANCE_EPS) -> tuple[Composited, Tensor]:
    """Inference step: composite ``[A, S]`` new samples of live rays that already have optical depth ``tau0``.

    Args:
        sigma, deltas, t: [A, S]; count: [A] real samples per row (they come first).
        tau0: [A] float32 optical depth accumulated by earlier steps (T = exp(-tau0) in front of this step).
        values: [A, S, C]; plain: [A, S, P].

    Returns:
        (this step's contributions, to add to the running sums; new optical depth [A]).
    """
    a, s = sigma.shape
    flat = sigma.reshape(-1).float().contiguous()
    values_2d = _channels(values.reshape(a * s, -1) if values is not None else None, flat, "values").float()
    plain_2d = _channels(plain.reshape(a * s, -1) if plain is not None else None, flat, "plain").float()
    start = torch.arange(a, device=sigma.device, dtype=torch.int64) * s
    opacity, depth, weighted, plain_sum, tau_end = _forward(
        flat, deltas.reshape(-1).float().contiguous(), t.reshape(-1).float().contiguous(), values_2d.contiguous(),
        plain_2d.contiguous(), None, start, count.to(torch.int32).contiguous(), s, transmittance_eps,
        tau0.float().contiguous())
    return Composited(opacity=opacity, depth=depth, weighted=weighted, plain=plain_sum), tau_end


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
    ref = _composite_packed_torch(sigma, deltas, t, offsets, values)
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
