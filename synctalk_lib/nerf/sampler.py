"""Where rays sample the render box: near/far against the box, and the jitter of each ray's first sample.

The samples themselves come from the marching kernel (``cuda_ext/march.py`` and its Triton version, chosen by
:mod:`synctalk_lib.nerf.backends`): constant-step points from ``near`` to ``far`` that skip the occupancy grid's empty
cells, packed ray by ray.

    near, far, hit = ray_aabb_intersect(rays_o, rays_d, aabb, min_near=0.05)
    jitter = sample_jitter(rays_o, generator)                 # training: [N] in [0, 1)
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor


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


def sample_jitter(rays_o: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """[N] offset of each ray's first sample, in steps, uniform in [0, 1) (training), drawn with ``generator`` on
    its device so a seeded run draws the same jitter on the CPU and the GPU."""
    device = generator.device if generator is not None else rays_o.device
    return torch.rand(rays_o.shape[0], generator=generator, device=device, dtype=rays_o.dtype).to(rays_o.device)
