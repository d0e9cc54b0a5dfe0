"""PyTorch twin of the marching kernel (``triton_march.py``): constant-step samples along rays that skip the empty
cells of an occupancy grid, in the *packed* layout (the samples of N rays one after another, ray by ray in marching
order; ray r owns samples ``offsets[r]:offsets[r + 1]``).

The rule (reference-synctalk.md 6.3, vectorised): ray r gets candidate points ``t_k = near_r + (j_r + k) * step``
(``j_r`` = its jitter in [0, 1), 0 without jitter) for all ``t_k < far_r``; candidates in unoccupied cells are dropped
and the first ``max_steps`` remaining ones become its samples. With a constant step this visits the same lattice of
points as the original's march-and-skip loop, except that the original's jump to the next cell boundary can overshoot
a lattice point just inside an occupied cell (here it is kept). Rays with ``far <= near`` get no samples.

Occupancy grid: ``occupied [R, R, R]`` bool over ``[-bound, bound]^3``, axis order (x, y, z); cell ``(i, j, k)``
covers ``x in [-b + i * 2b/R, -b + (i + 1) * 2b/R)`` and so on (:func:`cell_index`).

    samples = march_packed_torch(rays_o, rays_d, near, far, step=dt, max_steps=16, occupied=grid, bound=1.0)
    samples.positions, samples.offsets                     # [M, 3], [N + 1]
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor


class PackedSamples(NamedTuple):
    """Samples of N rays (M in total), ray by ray in marching order."""

    positions: Tensor
    """[M, 3] sample points."""
    t: Tensor
    """[M] distance of each sample along its ray."""
    deltas: Tensor
    """[M] step length each sample stands for."""
    ray_indices: Tensor
    """[M] int64 ray of each sample (non-decreasing)."""
    offsets: Tensor
    """[N + 1] int64: the samples of ray r are ``offsets[r]:offsets[r + 1]``."""


def cell_index(points: Tensor, resolution: int, bound: float) -> Tensor:
    """[M, 3] points -> [M] flat index ``(i * R + j) * R + k`` of their cells (outside the cube: the border cells)."""
    ijk = ((points / bound + 1.0) * (0.5 * resolution)).long().clamp(0, resolution - 1)
    return (ijk[:, 0] * resolution + ijk[:, 1]) * resolution + ijk[:, 2]


def occupied_at(points: Tensor, occupied: Tensor, bound: float) -> Tensor:
    """[M, 3] points -> [M] bool: does the cell of each point hold density (``occupied [R, R, R]``)?"""
    return occupied.reshape(-1)[cell_index(points, occupied.shape[0], bound)]


def num_candidates(near: Tensor, far: Tensor, step: float) -> int:
    """Candidates of the longest segment ``far - near`` (the bound of the marching loop; at least 1)."""
    if near.numel() == 0:
        return 1
    return max(int(math.ceil(float((far - near).clamp(min=0).max()) / step)), 1)


def march_packed_torch(rays_o: Tensor, rays_d: Tensor, near: Tensor, far: Tensor, *, step: float, max_steps: int,
                       jitter: Tensor | None = None, occupied: Tensor | None = None,
                       bound: float = 1.0) -> PackedSamples:
    """Packed samples of rays (the rule in the module docstring).

    Args:
        rays_o, rays_d: [N, 3] origins and unit directions.
        near, far: [N] segment to sample.
        step: distance between samples; max_steps: samples kept per ray.
        jitter: [N] offset of each ray's first sample in steps, in [0, 1) (None: 0).
        occupied: [R, R, R] bool occupancy grid over ``[-bound, bound]^3`` (None: every cell, dense marching).
        bound: half the side of the grid's cube.

    Returns:
        PackedSamples (``deltas`` are all ``step``).
    """
    n, k = rays_o.shape[0], num_candidates(near, far, step)
    if jitter is None:
        jitter = torch.zeros(n, dtype=rays_o.dtype, device=rays_o.device)
    candidates = torch.arange(k, dtype=rays_o.dtype, device=rays_o.device)
    t = near[:, None] + (jitter[:, None] + candidates[None, :]) * step  # [N, K]
    keep = t < far[:, None]
    points = None
    if occupied is not None:
        points = (rays_o[:, None, :] + t[..., None] * rays_d[:, None, :]).reshape(-1, 3)
        keep &= occupied_at(points, occupied, bound).reshape(n, k)
    keep &= keep.long().cumsum(dim=1) <= max_steps
    chosen = keep.reshape(-1).nonzero().squeeze(1)  # row-major: ray by ray, in marching order
    ray = torch.div(chosen, k, rounding_mode="floor")
    t = t.reshape(-1)[chosen]
    positions = points[chosen] if points is not None else rays_o[ray] + t[:, None] * rays_d[ray]
    offsets = torch.zeros(n + 1, dtype=torch.int64, device=rays_o.device)
    torch.cumsum(keep.sum(dim=1), dim=0, out=offsets[1:])
    return PackedSamples(positions=positions, t=t, deltas=torch.full_like(t, step), ray_indices=ray, offsets=offsets)
