"""Occupancy grid over ``[-bound, bound]^3``: which cells may hold density, so marching can skip empty space.

State (reference-synctalk.md 6.2, without the Morton layout): ``density`` [R, R, R] float32 (a running max of
the field's density per cell, -1 for cells no training camera sees) and ``occupied`` [R, R, R] bool
(``density > min(mean density, density_thresh)``). Axis order is (x, y, z): cell ``(i, j, k)`` covers
``x in [-b + i * 2b/R, -b + (i+1) * 2b/R)`` and so on.

A fresh grid marks every cell occupied (dense marching) until the first :meth:`OccupancyGrid.update`.

    grid = OccupancyGrid(resolution=128, bound=1.0)
    grid.mark_untrained(poses_ngp, focal, cx, cy)          # once, before training
    grid.update(lambda x: field.density(x, code, expr))    # every 16 steps
    occupied = grid.query(points)                          # [M] bool
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

from synctalk_lib.nerf.backends import cuda_ext_module

SPREAD_CAMERAS = 320
"""Cameras of the first pass of ``mark_untrained`` (the reference clip's 300 training frames all count)."""

DensityFn = Callable[[Tensor], Tensor]
"""[M, 3] NGP points -> [M] density."""


class OccupancyGrid(nn.Module):
    """Dense occupancy grid with decayed-max updates and a boolean occupancy mask."""

    density: Tensor
    """[R, R, R] float32 running density per cell; -1 = never seen by a training camera."""
    occupied: Tensor
    """[R, R, R] bool cells that marching samples."""
    mean_density: Tensor
    """[] float32 mean of the non-negative densities at the last update."""

    def __init__(self, resolution: int = 128, bound: float = 1.0, density_thresh: float = 10.0):
        super().__init__()
        self.resolution = int(resolution)
        self.bound = float(bound)
        self.density_thresh = float(density_thresh)
        r = self.resolution
        self.register_buffer("density", torch.zeros(r, r, r))
        self.register_buffer("occupied", torch.ones(r, r, r, dtype=torch.bool))
        self.register_buffer("mean_density", torch.zeros(()))

    @property
    def cell_size(self) -> float:
        """Edge length of a cell in NGP units (2 bound / R)."""
        return 2.0 * self.bound / self.resolution

    def cell_index(self, points: Tensor) -> Tensor:
        """[M, 3] points -> [M] flat cell index (points outside the cube are clamped to the border cells); the
        marching kernel's own cell rule (``cuda_ext/march.py``), so the grid and the marcher always agree."""
        return cuda_ext_module("march").cell_index(points, self.resolution, self.bound)

    def query(self, points: Tensor) -> Tensor:
        """[M, 3] points -> [M] bool occupancy."""
        return self.occupied.reshape(-1)[self.cell_index(points)]

    def cell_centres(self) -> Tensor:
        """[R^3, 3] centres of all cells, in flat-index order."""
        r = self.resolution
        axis = (torch.arange(r, device=self.density.device, dtype=torch.float32) + 0.5) * self.cell_size - self.bound
        return torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), dim=-1).reshape(-1, 3)

    @torch.no_grad()
    def update(self, density_fn: DensityFn, *, decay: float = 0.95, fraction: float = 1.0,
               generator: torch.Generator | None = None, chunk: int = 65536) -> None:
        """Re-evaluate the density at a jittered point in cells and fold it into the grid.

        ``new`` = density at the cell centre + U(-half cell, +half cell) per axis, dilated by a 6-neighbour max;
        for cells seen by training cameras ``density = max(decay * density, new)``; then
        ``occupied = density > min(mean(clamp(density, 0)), density_thresh)``. Cells marked -1 (never seen) are
        not evaluated.

        Args:
            density_fn: [M, 3] -> [M] density of the current model and conditioning.
            decay: factor applied to the old value before the max.
            fraction: 1 evaluates every seen cell (the original). Below 1, about ``fraction * R^3`` cells are
                evaluated: half drawn uniformly, half from the occupied cells (instant-ngp's partial update; cuts
                the cost on CPU). Cells that are neither evaluated nor next to an evaluated cell keep their value.
            generator: random generator for the jitter and the cell choice (seeded training is reproducible).
            chunk: points per density_fn call.
        """
        flat_density = self.density.reshape(-1)
        cells = torch.nonzero(flat_density >= 0).squeeze(-1)
        if fraction < 1.0:
            cells = self._partial_cells(cells, fraction, generator)
        device = generator.device if generator is not None else flat_density.device
        jitter = torch.rand(len(cells), 3, generator=generator, device=device).to(flat_density.device)
        points = self.cell_centres()[cells] + (jitter * 2.0 - 1.0) * (0.5 * self.cell_size)
        new = torch.full_like(flat_density, -1.0)
        if len(cells):
            values = [density_fn(points[i:i + chunk]).float().reshape(-1) for i in range(0, len(points), chunk)]
            new[cells] = torch.cat(values).clamp(min=0)
        new = dilate6(new.reshape(self.density.shape))
        update = (self.density >= 0) & (new >= 0)
        self.density.copy_(torch.where(update, torch.maximum(self.density * decay, new), self.density))
        self._refresh_occupied()

    def _partial_cells(self, seen: Tensor, fraction: float, generator: torch.Generator | None) -> Tensor:
        """About ``fraction * R^3`` seen cells: half uniform, half among the occupied ones (unique, sorted)."""
        count = max(1, int(fraction * self.resolution ** 3) // 2)
        device = generator.device if generator is not None else seen.device
        picks = [seen[torch.randint(0, len(seen), (count,), generator=generator, device=device).to(seen.device)]]
        occupied = torch.nonzero(self.occupied.reshape(-1) & (self.density.reshape(-1) >= 0)).squeeze(-1)
        if len(occupied):
            chosen = torch.randint(0, len(occupied), (count,), generator=generator, device=device)
            picks.append(occupied[chosen.to(occupied.device)])
        return torch.unique(torch.cat(picks))

    def _refresh_occupied(self) -> None:
        self.mean_density.copy_(self.density.clamp(min=0).mean())
        threshold = min(float(self.mean_density), self.density_thresh)
        self.occupied.copy_(self.density > threshold)

    @torch.no_grad()
    def mark_untrained(self, poses: Tensor, focal: float, cx: float, cy: float, *, camera_chunk: int = 16,
                       spread: int = SPREAD_CAMERAS) -> None:
        """Set cells that no training camera sees to -1 (never occupied, never updated).

        A cell counts as seen when its centre lies in front of at least one camera and inside its image
        rectangle widened by one cell (the frustum test of the original, with the principal point at the centre).
        With more than ``spread`` cameras (a long clip) every cell is first tested against ``spread`` cameras
        spread over the poses, then only the cells on the border of what they see are tested against all of
        them, ring by ring, until no new cell is seen: the same result at a cost that hardly grows with the clip.

        Args:
            poses: [F, 4, 4] NGP-space camera-to-world (OpenCV-like cameras: x right, y down, looking down +z).
            focal, cx, cy: intrinsics in pixels.
            camera_chunk: cameras tested at once (bounds memory).
            spread: cameras of the first pass.
        """
        centres = self.cell_centres()
        poses = poses.to(centres.device, torch.float32)
        first = spread_cameras(poses, spread)
        seen = self._seen_by(centres, first, focal, cx, cy, camera_chunk)
        if len(first) < len(poses):
            tested = seen.clone()
            while True:
                ring = (dilate6(seen.reshape(self.density.shape).float()) > 0).reshape(-1) & ~tested
                cells = torch.nonzero(ring).squeeze(-1)
                if len(cells) == 0:
                    break
                tested[cells] = True
                found = cells[self._seen_by(centres[cells], poses, focal, cx, cy, camera_chunk)]
                if len(found) == 0:
                    break
                seen[found] = True
        seen = seen.reshape(self.density.shape)
        self.density.copy_(torch.where(seen, self.density.clamp(min=0), torch.full_like(self.density, -1.0)))
        self.occupied &= seen

    def _seen_by(self, points: Tensor, poses: Tensor, focal: float, cx: float, cy: float,
                 camera_chunk: int) -> Tensor:
        """[M] bool: which of the ``points`` lie inside at least one camera's frustum (widened by one cell)."""
        rot, trans = poses[:, :3, :3], poses[:, :3, 3]
        margin = self.cell_size
        seen = torch.zeros(len(points), dtype=torch.bool, device=points.device)
        cell_chunk = 262144
        for c0 in range(0, len(points), cell_chunk):
            chunk = points[c0:c0 + cell_chunk]
            for f0 in range(0, len(poses), camera_chunk):
                r, t = rot[f0:f0 + camera_chunk], trans[f0:f0 + camera_chunk]
                cam = torch.einsum("fij,fmi->fmj", r, chunk[None] - t[:, None])  # R^T (p - t): [f, m, 3]
                x, y, z = cam.unbind(-1)
                inside = (z > 0) & (x.abs() < cx / focal * z + margin) & (y.abs() < cy / focal * z + margin)
                seen[c0:c0 + cell_chunk] |= inside.any(dim=0)
        return seen


def spread_cameras(poses: Tensor, limit: int = SPREAD_CAMERAS) -> Tensor:
    """At most ``limit`` of the ``[F, 4, 4]`` camera poses, spread over them by farthest-point sampling on
    (position, viewing direction), so the extreme head poses whose frustums reach furthest are kept."""
    if len(poses) <= limit:
        return poses
    key = torch.cat([poses[:, :3, 3], poses[:, :3, 2]], dim=1).double()  # [F, 6]
    key = (key - key.mean(0)) / key.std(0).clamp(min=1e-9)
    chosen = [int(torch.argmax(key.norm(dim=1)))]
    distance = (key - key[chosen[0]]).norm(dim=1)
    for _ in range(limit - 1):
        nxt = int(torch.argmax(distance))
        if float(distance[nxt]) == 0.0:  # every distinct pose is in (a clip that repeats itself)
            break
        chosen.append(nxt)
        distance = torch.minimum(distance, (key - key[nxt]).norm(dim=1))
    return poses[sorted(chosen)]


def dilate6(grid: Tensor) -> Tensor:
    """Max over each cell and its 6 face neighbours.

    Args:
        grid: [R, R, R] values.

    Returns:
        [R, R, R] dilated values (borders use only the neighbours that exist).
    """
    padded = nn.functional.pad(grid[None, None], (1, 1, 1, 1, 1, 1), value=float("-inf"))[0, 0]
    out = grid.clone()
    r0, r1, r2 = grid.shape
    for dx, dy, dz in ((0, 1, 1), (2, 1, 1), (1, 0, 1), (1, 2, 1), (1, 1, 0), (1, 1, 2)):
        out = torch.maximum(out, padded[dx:dx + r0, dy:dy + r1, dz:dz + r2])
    return out
