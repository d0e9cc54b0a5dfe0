"""The fast render path of :class:`synctalk_lib.nerf.SyncTalkNeRF`: packed marching, the field on exactly the real
samples, and compositing kernels — same results as the model's PyTorch renderer within float32 rounding.

Two modes, picked per call:

- **packed** (training, or whenever gradients are on or samples are jittered): march every ray up to
  ``max_steps`` occupied samples into a compacted array, run the field once on all of them, composite with the
  differentiable kernel. No padded ``[N, S]`` tensors are built.
- **until opaque** (inference: no gradients, no jitter): march a few samples per live ray, run the field, add their
  contribution, drop the rays that became opaque (transmittance < 1e-4), are out of the box or out of steps, and
  repeat — like the original's inference loop (``n_step = clamp(N // live, 1, 8)`` samples per live ray per round).
  Samples behind an opaque surface are never evaluated, which is where most of the inference speed-up comes from;
  they carry zero weight in the PyTorch renderer too, so the image is the same.

The kernels come from ``kernels`` (``synctalk_lib.nerf.backends``: the Triton kernels, or their PyTorch twins), so
this path also runs on the CPU (slowly under ``TRITON_INTERPRET=1``, or with the twins), which is how the tests
check it.

    out = render_chunk(model, rays_o, rays_d, kernels=backends.triton_kernels(), audio_code=code, expression=expr,
                       code_index=None, bg=bg, lip_mask=None, expr_mask=None, perturb=False, generator=None)
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from .torch_twins import draw_jitter, num_candidates
from synctalk_lib.nerf.compositing import TRANSMITTANCE_EPS, composite_background
from synctalk_lib.nerf.model import RenderOutput, SyncTalkNeRF
from synctalk_lib.nerf.sampler import ray_aabb_intersect

SampleFn = Callable[[Tensor, Tensor], tuple[Tensor, Tensor, Tensor]]
"""(positions [M, 3], ray index [M]) -> sigma [M], weighted channels [M, C], plain channels [M, P]."""

MAX_STEP_SAMPLES = 8
"""Most samples a live ray marches per round of the until-opaque loop (the original's cap)."""


def render_chunk(model: SyncTalkNeRF, rays_o: Tensor, rays_d: Tensor, *, kernels, audio_code: Tensor,
                 expression: Tensor | None, code_index: int | Tensor | None, bg: Tensor, lip_mask: Tensor | None,
                 expr_mask: Tensor | None, perturb: bool, generator: torch.Generator | None) -> RenderOutput:
    """Render one chunk of rays (same arguments and result as ``SyncTalkNeRF._render_chunk``).

    Args:
        model: the head NeRF (its config gives step, max_steps, render box; its occupancy grid is used).
        kernels: ``synctalk_lib.nerf.backends.Kernels`` to march and composite with.
        rays_o, rays_d: [N, 3] NGP-space origins and unit directions.
        audio_code: [A] or [N, A]; expression: [E] or [N, E]; code_index: int, [N] or None (row 0).
        bg: [N, 3] or [3] background; lip_mask, expr_mask: [N] ray gates or None.
        perturb, generator: jitter of the first sample (training).

    Returns:
        RenderOutput with N rows.
    """
    cfg = model.config
    near, far, hit = ray_aabb_intersect(rays_o, rays_d, model.aabb, cfg.min_near)
    sample_fn = _field_sampler(model, rays_d, audio_code=audio_code, expression=expression, code_index=code_index,
                               lip_mask=lip_mask, expr_mask=expr_mask)
    if perturb or torch.is_grad_enabled():
        result = _render_packed(kernels, rays_o, rays_d, near, far, sample_fn, step=cfg.step_size,
                                max_steps=cfg.max_steps,
                                occupancy=model.occupancy, perturb=perturb, generator=generator)
    else:
        result = render_until_opaque(kernels, rays_o, rays_d, near, far, hit, sample_fn, step=cfg.step_size,
                                     max_steps=cfg.max_steps, occupancy=model.occupancy)
    opacity, depth, weighted, plain = result
    rgb = weighted[:, :3]
    return RenderOutput(rgb=composite_background(rgb, opacity, bg.to(rgb.dtype)), alpha=opacity, depth=depth,
                        amb_aud=plain[:, 0], amb_eye=plain[:, 1], uncertainty=weighted[:, 3])


def _field_sampler(model: SyncTalkNeRF, rays_d: Tensor, *, audio_code: Tensor, expression: Tensor | None,
                   code_index: int | Tensor | None, lip_mask: Tensor | None, expr_mask: Tensor | None) -> SampleFn:
    """The field as a SampleFn: per-ray conditioning is gathered for each sample's ray, like the PyTorch renderer."""
    latent = model.latent_code(code_index)

    def per_sample(value: Tensor | None, ray: Tensor) -> Tensor | None:
        return value[ray] if value is not None and value.dim() == 2 else value

    def sample(positions: Tensor, ray: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        out = model.field(positions, rays_d[ray], audio_code=per_sample(audio_code, ray),
                          expression=per_sample(expression, ray), latent_code=per_sample(latent, ray),
                          lip_gate=lip_mask[ray] if lip_mask is not None else None,
                          expr_gate=expr_mask[ray] if expr_mask is not None else None)
        values = torch.cat([out.rgb, out.uncertainty.unsqueeze(-1).to(out.rgb.dtype)], dim=-1)  # [M, 4]
        plain = torch.stack([out.amb_aud, out.amb_eye.to(out.amb_aud.dtype)], dim=-1)  # [M, 2]
        return out.sigma, values, plain

    return sample


def _render_packed(kernels, rays_o: Tensor, rays_d: Tensor, near: Tensor, far: Tensor, sample_fn: SampleFn, *,
                   step: float, max_steps: int, occupancy, perturb: bool,
                   generator: torch.Generator | None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    samples = kernels.march_packed(rays_o, rays_d, near, far, step=step, max_steps=max_steps, occupancy=occupancy,
                                perturb=perturb, generator=generator)
    sigma, values, plain = sample_fn(samples.positions, samples.ray_indices)
    out = kernels.composite_packed(sigma, samples.deltas, samples.t, samples.offsets, values, plain,
                                   max_samples=max_steps)
    return out.opacity, out.depth, out.weighted, out.plain


@torch.no_grad()
def render_until_opaque(kernels, rays_o: Tensor, rays_d: Tensor, near: Tensor, far: Tensor, hit: Tensor,
                        sample_fn: SampleFn, *, step: float, max_steps: int, occupancy,
                        transmittance_eps: float = TRANSMITTANCE_EPS,
                        value_channels: int = 4, plain_channels: int = 2) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Inference marching: rounds of (march a few samples per live ray, evaluate, composite) until no ray is live.

    Args:
        rays_o, rays_d: [N, 3]; near, far: [N]; hit: [N] bool rays that meet the render box.
        sample_fn: the field as (positions [M, 3], ray index [M]) -> (sigma [M], values [M, C], plain [M, P]).
        step, max_steps, occupancy: marching settings (as ``sampler.march_rays``; no jitter).
        transmittance_eps: a ray stops when its transmittance falls below this.
        value_channels, plain_channels: C and P of ``sample_fn``'s outputs.

    Returns:
        opacity [N], depth [N], weighted [N, C], plain [N, P] (float32).
    """
    n = rays_o.shape[0]
    device = rays_o.device
    f32 = dict(dtype=torch.float32, device=device)
    opacity, depth = torch.zeros(n, **f32), torch.zeros(n, **f32)
    weighted, plain = torch.zeros(n, value_channels, **f32), torch.zeros(n, plain_channels, **f32)
    rays_o, rays_d = rays_o.float().contiguous(), rays_d.float().contiguous()
    near, far = near.float().contiguous(), far.float().contiguous()
    jitter = draw_jitter(rays_o, False, None)
    k_next = torch.zeros(n, dtype=torch.int32, device=device)
    taken = torch.zeros(n, dtype=torch.int32, device=device)
    tau = torch.zeros(n, **f32)
    candidates = num_candidates(near, far, step)
    march_step, composite_step = kernels.march_step, kernels.composite_step
    alive = hit.nonzero().squeeze(1)
    while alive.numel() > 0:
        live = alive.numel()
        n_step = max(min(n // live, MAX_STEP_SAMPLES), 1)
        limit = (max_steps - taken[alive]).clamp(max=n_step).to(torch.int32).contiguous()
        positions, t, count, k_end = march_step(rays_o[alive], rays_d[alive], near[alive], far[alive],
                                                jitter[alive], k_next[alive].contiguous(), limit, step=step,
                                                slots=n_step, candidates=candidates, occupancy=occupancy)
        mask = torch.arange(n_step, device=device)[None, :] < count[:, None]
        local, slot = mask.nonzero(as_tuple=True)
        sigma_s, values_s, plain_s = sample_fn(positions[local, slot], alive[local])
        sigma = torch.zeros(live, n_step, **f32).index_put((local, slot), sigma_s.float())
        values = torch.zeros(live, n_step, value_channels, **f32).index_put((local, slot), values_s.float())
        plains = torch.zeros(live, n_step, plain_channels, **f32).index_put((local, slot), plain_s.float())
        deltas = mask.to(torch.float32) * step
        part, tau_alive = composite_step(sigma, deltas, t, count, tau[alive], values, plains,
                                         transmittance_eps=transmittance_eps)
        opacity.index_add_(0, alive, part.opacity)
        depth.index_add_(0, alive, part.depth)
        weighted.index_add_(0, alive, part.weighted)
        plain.index_add_(0, alive, part.plain)
        tau[alive] = tau_alive
        k_next[alive] = k_end
        taken[alive] += count
        # out of candidates (fewer samples than allowed), out of steps, or opaque
        done = (count < limit) | (taken[alive] >= max_steps) | (torch.exp(-tau_alive) < transmittance_eps)
        alive = alive[~done]
    return opacity, depth, weighted, plain
