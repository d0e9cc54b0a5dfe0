"""The renderer: rays -> near/far against the render box -> occupancy-grid marching -> field -> compositing.

One sample layout, *packed*: the samples of N rays one after another (M in total), ray r owning samples
``offsets[r]:offsets[r + 1]`` — no padding, so the field runs on exactly the real samples. One compositing call
turns them into pixels. Two modes decide which samples the field is run on:

- **all samples** (training, or whenever gradients are on): one field call on every sample;
- **until opaque** (inference): the field runs in stages of :data:`STAGE_SAMPLES` samples per ray, and a ray stops
  once its transmittance is below 1e-4 (early ray termination). Samples behind an opaque surface are never
  evaluated; they would carry zero weight, so the image is the same.

Marching and compositing come from a kernel set (:class:`synctalk_lib.nerf.backends.Kernels`): cuda_ext's Triton
kernels or their PyTorch twins, drop-in replacements for each other.

    out = volume_render(field_fn, rays_o, rays_d, bg, aabb=aabb, step=dt, max_steps=16, occupancy=grid)
    out.rgb, out.alpha                                      # [N, 3], [N]
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Callable, Sequence

import torch
from torch import Tensor

from synctalk_lib.nerf import backends
from synctalk_lib.nerf.field import FieldOutputs
from synctalk_lib.nerf.occupancy import OccupancyGrid
from synctalk_lib.nerf.sampler import ray_aabb_intersect, sample_jitter

TRANSMITTANCE_EPS = backends.cuda_ext_module("composite").TRANSMITTANCE_EPS
"""A ray stops once its transmittance is below this (the compositing rule's early ray termination)."""

STAGE_SAMPLES = 4
"""Samples per ray evaluated per stage when rendering until opaque."""

FieldFn = Callable[[Tensor, Tensor, Tensor], FieldOutputs]
"""(positions [M, 3], directions [M, 3], ray index [M]) -> FieldOutputs of the M samples."""


@dataclass
class RenderOutput:
    """Per-ray render results (N rays)."""

    rgb: Tensor
    """[N, 3] colour composited over the background, clamped to [0, 1]."""
    alpha: Tensor
    """[N] accumulated weight (opacity of the head)."""
    depth: Tensor
    """[N] expected distance along the ray, NGP units (weighted sum of sample distances; 0 where empty)."""
    amb_aud: Tensor
    """[N] sum over visited samples of ||audio attention|| (official attention-mask loss)."""
    amb_eye: Tensor
    """[N] sum over visited samples of ||expression attention||."""
    uncertainty: Tensor
    """[N] weighted sum of the per-sample uncertainty."""

    @staticmethod
    def cat(parts: list["RenderOutput"]) -> "RenderOutput":
        """Concatenate chunk outputs along the ray dimension."""
        return RenderOutput(**{f.name: torch.cat([getattr(p, f.name) for p in parts]) for f in fields(RenderOutput)})


@dataclass
class SampleChannels:
    """The field's outputs at the M packed samples, in the channels compositing takes."""

    sigma: Tensor
    """[M] density."""
    values: Tensor
    """[M, 4] channels summed with the compositing weights: colour (3), uncertainty."""
    plain: Tensor
    """[M, 2] channels summed over the visited samples: ||audio attention||, ||expression attention||."""

    @staticmethod
    def of(out: FieldOutputs) -> "SampleChannels":
        values = torch.cat([out.rgb, out.uncertainty.unsqueeze(-1).to(out.rgb.dtype)], dim=-1)
        plain = torch.stack([out.amb_aud, out.amb_eye.to(out.amb_aud.dtype)], dim=-1)
        return SampleChannels(out.sigma, values, plain)

    @staticmethod
    def zeros(count: int, like: "SampleChannels | None", device: torch.device) -> "SampleChannels":
        """``count`` samples of zeros (dtypes of ``like``; float32 without it)."""
        if like is None:
            return SampleChannels(torch.zeros(count, device=device), torch.zeros(count, 4, device=device),
                                  torch.zeros(count, 2, device=device))
        return SampleChannels(*(x.new_zeros((count,) + x.shape[1:]) for x in (like.sigma, like.values, like.plain)))


def volume_render(field_fn: FieldFn, rays_o: Tensor, rays_d: Tensor, bg: Tensor, *, aabb: Sequence[float] | Tensor,
                  step: float, max_steps: int, min_near: float = 0.05, occupancy: OccupancyGrid | None = None,
                  perturb: bool = False, generator: torch.Generator | None = None, early_stop: bool | None = None,
                  kernels: backends.Kernels | None = None) -> RenderOutput:
    """Render rays through any field.

    Args:
        field_fn: evaluates the field at samples (see :data:`FieldFn`).
        rays_o, rays_d: [N, 3] origins and unit directions.
        bg: [N, 3] or [3] background colour.
        aabb: render box (xmin, ymin, zmin, xmax, ymax, zmax).
        step: marching step ``dt``; max_steps: samples per ray; min_near: near clamp.
        occupancy: grid whose empty cells are skipped (None = dense marching).
        perturb, generator: jitter of the first sample (training).
        early_stop: render until opaque (see the module docstring); None = on when gradients are off.
        kernels: marching and compositing implementation (None: :func:`backends.kernels_for` the rays' device).

    Returns:
        RenderOutput with N rows.
    """
    kernels = kernels or backends.kernels_for(rays_o.device)
    near, far, _ = ray_aabb_intersect(rays_o, rays_d, aabb, min_near)
    samples = kernels.march_packed(rays_o, rays_d, near, far, step=step, max_steps=max_steps,
                                   jitter=sample_jitter(rays_o, generator) if perturb else None,
                                   occupied=occupancy.occupied if occupancy is not None else None,
                                   bound=occupancy.bound if occupancy is not None else 1.0)
    if early_stop is None:
        early_stop = not torch.is_grad_enabled()
    if early_stop:
        channels = _evaluate_until_opaque(field_fn, samples, rays_d)
    else:
        channels = SampleChannels.of(field_fn(samples.positions, rays_d[samples.ray_indices], samples.ray_indices))
    out = kernels.composite_packed(channels.sigma, samples.deltas, samples.t, samples.offsets, channels.values,
                                   channels.plain, max_samples=max_steps)
    rgb = out.weighted[:, :3]
    return RenderOutput(rgb=composite_background(rgb, out.opacity, bg.to(rgb.dtype)), alpha=out.opacity,
                        depth=out.depth, amb_aud=out.plain[:, 0], amb_eye=out.plain[:, 1],
                        uncertainty=out.weighted[:, 3])


def _evaluate_until_opaque(field_fn: FieldFn, samples, rays_d: Tensor) -> SampleChannels:
    """The field at the packed samples, stage by stage, until every ray is opaque or out of samples (zeros for the
    samples never evaluated).

    Stage ``s`` evaluates samples ``s * STAGE_SAMPLES ..`` of every ray still alive; after it, rays whose
    transmittance fell below ``TRANSMITTANCE_EPS`` are dropped (their later samples would not be visited anyway).
    """
    counts = samples.offsets[1:] - samples.offsets[:-1]
    device = counts.device
    alive = torch.nonzero(counts > 0).squeeze(1)
    optical_depth = torch.zeros(counts.shape[0], device=device)
    evaluated: list[tuple[Tensor, SampleChannels]] = []
    first = 0
    while alive.numel() > 0:
        take = (counts[alive] - first).clamp(max=STAGE_SAMPLES)  # >= 1: alive rays have samples left
        skip = samples.offsets[alive] + first - (torch.cumsum(take, 0) - take)  # [A] first sample id - stage slot
        index = torch.repeat_interleave(skip, take) + torch.arange(int(take.sum()), device=device)  # [K] sample ids
        rays = samples.ray_indices[index]
        part = SampleChannels.of(field_fn(samples.positions[index], rays_d[rays], rays))
        evaluated.append((index, part))
        tau = part.sigma.detach().float() * samples.deltas[index]
        local = torch.repeat_interleave(torch.arange(alive.numel(), device=device), take)
        optical_depth[alive] += torch.zeros(alive.numel(), device=device).index_add_(0, local, tau)
        first += STAGE_SAMPLES
        alive = alive[(counts[alive] > first) & (torch.exp(-optical_depth[alive]) >= TRANSMITTANCE_EPS)]
    return _scatter(evaluated, samples.t.shape[0], device)


def _scatter(evaluated: list[tuple[Tensor, SampleChannels]], count: int, device: torch.device) -> SampleChannels:
    """Channels of ``count`` samples from the evaluated (sample ids, channels) pairs; zeros elsewhere."""
    if not evaluated:
        return SampleChannels.zeros(count, None, device)
    index = torch.cat([i for i, _ in evaluated])
    parts = [p for _, p in evaluated]
    whole = SampleChannels.zeros(count, parts[0], device)
    return SampleChannels(*(getattr(whole, name).index_copy(0, index, torch.cat([getattr(p, name) for p in parts]))
                            for name in ("sigma", "values", "plain")))


def composite_background(rgb: Tensor, opacity: Tensor, background: Tensor) -> Tensor:
    """Pixel colour ``rgb + (1 - opacity) * background``, clamped to [0, 1].

    Args:
        rgb: [N, 3] accumulated colour.
        opacity: [N] accumulated weight.
        background: [N, 3] or [3] background colour.

    Returns:
        [N, 3] pixel colours.
    """
    return (rgb + (1.0 - opacity).unsqueeze(-1) * background).clamp(0.0, 1.0)
