"""Ray samples for the head NeRF: near/far from the render box, then constant-step marching that skips empty cells.

Marching (reference-synctalk.md 6.3, vectorised): every ray gets candidate points ``t_k = near + (j + k) * dt``
(``j`` = 0, or U(0, 1) per ray when ``perturb``) for all ``t_k < far``; candidates in unoccupied cells are dropped
and the first ``max_steps`` remaining ones become the samples. With a constant step this visits the same lattice
of points as the original's march-and-skip loop, except that the original's jump to the next cell boundary can
overshoot a lattice point just inside an occupied cell (here it is kept). Rays that miss the box get no samples.

    near, far, hit = ray_aabb_intersect(rays_o, rays_d, aabb, min_near=0.05)
    samples = march_rays(rays_o, rays_d, near, far, step=config.step_size, max_steps=16, occupancy=grid)
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

from synctalk_lib.nerf.occupancy import OccupancyGrid


@dataclass
class RaySamples:
    """Fixed-width (padded) samples of N rays: S = max_steps slots per ray, ``mask`` marks the real ones."""

    positions: Tensor
    """[N, S, 3] sample points in NGP space (0 in empty slots)."""
    t: Tensor
    """[N, S] distance of each sample along its (unit) ray."""
    deltas: Tensor
    """[N, S] step length each sample stands for (``dt``; 0 in empty slots)."""
    mask: Tensor
    """[N, S] bool, True for real samples (they come first in each row)."""

    @property
    def num_samples(self) -> int:
        """Real samples in the batch."""
        return int(self.mask.sum())


def ray_aabb_intersect(rays_o: Tensor, rays_d: Tensor, aabb: Sequence[float] | Tensor,
                       min_near: float = 0.0) -> tuple[Tensor, Tensor, Tensor]:
    """Slab test of rays against an axis-aligned box.

    Args:
        rays_o: [N, 3] origins.
        rays_d: [N, 3] directions (need not be unit; distances are in units of |d|).
        aabb: (xmin, ymin, zmin, xmax, ymax, zmax).
        min_near: lower clamp of the near distance (keeps samples in front of the camera).

    Returns:
        near [N], far [N], hit [N] bool. Rays that miss the box (or whose box segment lies entirely before
        ``min_near``) have ``hit = False`` and ``near = far = 0``.
    """
    box = torch.as_tensor(aabb, dtype=rays_o.dtype, device=rays_o.device)
    tiny = torch.finfo(rays_d.dtype).tiny
    safe_d = torch.where(rays_d.abs() < tiny, torch.full_like(rays_d, tiny) * torch.where(rays_d < 0, -1.0, 1.0),
                         rays_d)
    inv_d = 1.0 / safe_d
    t0 = (box[:3] - rays_o) * inv_d
    t1 = (box[3:] - rays_o) * inv_d
    near = torch.minimum(t0, t1).amax(dim=-1).clamp(min=min_near)
    far = torch.maximum(t0, t1).amin(dim=-1)
    hit = far > near
    zero = torch.zeros_like(near)
    return torch.where(hit, near, zero), torch.where(hit, far, zero), hit


def march_rays(rays_o: Tensor, rays_d: Tensor, near: Tensor, far: Tensor, *, step: float, max_steps: int,
               occupancy: OccupancyGrid | None = None, perturb: bool = False,
               generator: torch.Generator | None = None) -> RaySamples:
    """Constant-step samples along rays, skipping unoccupied cells.

    Args:
        rays_o: [N, 3] origins.
        rays_d: [N, 3] unit directions.
        near, far: [N] segment to sample (``far <= near`` = no samples).
        step: distance between samples (``dt``).
        max_steps: samples kept per ray (the first ``max_steps`` occupied candidates).
        occupancy: grid to skip empty space with; None samples every candidate (dense marching).
        perturb: jitter each ray's first sample by ``step * U(0, 1)`` (training); False is deterministic.
        generator: random generator for the jitter.

    Returns:
        RaySamples with S = max_steps slots per ray.
    """
    n = rays_o.shape[0]
    span = (far - near).clamp(min=0)
    num_candidates = int(math.ceil(float(span.max()) / step)) if n > 0 else 0
    num_candidates = max(num_candidates, 1)
    if perturb:
        device = generator.device if generator is not None else rays_o.device
        jitter = torch.rand(n, generator=generator, device=device, dtype=rays_o.dtype).to(rays_o.device)
    else:
        jitter = torch.zeros(n, dtype=rays_o.dtype, device=rays_o.device)
    k = torch.arange(num_candidates, dtype=rays_o.dtype, device=rays_o.device)
    t = near[:, None] + (jitter[:, None] + k[None, :]) * step  # [N, K]
    keep = t < far[:, None]
    if occupancy is not None:
        points = rays_o[:, None, :] + t[..., None] * rays_d[:, None, :]
        keep &= occupancy.query(points.reshape(-1, 3)).reshape(n, num_candidates)
    rank = keep.long().cumsum(dim=1) - 1
    keep &= rank < max_steps
    slot = torch.where(keep, rank, torch.full_like(rank, max_steps))  # overflow goes to a spare column
    t_out = torch.zeros(n, max_steps + 1, dtype=t.dtype, device=t.device).scatter_(1, slot, t)[:, :max_steps]
    mask = torch.zeros(n, max_steps + 1, dtype=torch.bool, device=t.device).scatter_(1, slot, keep)[:, :max_steps]
    positions = (rays_o[:, None, :] + t_out[..., None] * rays_d[:, None, :]) * mask[..., None]
    deltas = mask.to(t.dtype) * step
    return RaySamples(positions=positions, t=t_out, deltas=deltas, mask=mask)
