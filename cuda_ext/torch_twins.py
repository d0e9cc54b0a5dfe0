"""The PyTorch twins of every ``cuda_ext`` kernel, in the kernels' own layouts (no Triton needed).

Each twin is a thin adapter around the reference implementation in ``synctalk_lib.nerf`` — the hash grid
(``hashgrid.hash_grid_2d_torch``), the marching rule (``sampler.march_rays``) and the compositing rule
(``compositing.render_weights``) — so the kernels are always checked against the code the PyTorch renderer runs.
The wrappers in :mod:`cuda_ext` fall back to these when the kernels cannot run; the tests compare the two.

Layouts:
- *packed*: the samples of N rays one after another (M in total); ray r owns ``offsets[r]:offsets[r + 1]``.
- *padded* (dense): ``[N, S]`` slots with a mask (``sampler.RaySamples``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from synctalk_lib.nerf.compositing import TRANSMITTANCE_EPS, accumulate, render_weights
from synctalk_lib.nerf.sampler import RaySamples, march_rays


@dataclass
class PackedSamples:
    """Compacted samples of N rays (M in total), ray by ray in marching order."""

    positions: Tensor
    """[M, 3] sample points in NGP space."""
    t: Tensor
    """[M] distance of each sample along its ray."""
    deltas: Tensor
    """[M] step length each sample stands for."""
    ray_indices: Tensor
    """[M] int64 ray of each sample (non-decreasing)."""
    offsets: Tensor
    """[N + 1] int64: the samples of ray r are ``offsets[r]:offsets[r + 1]``."""

    @property
    def num_samples(self) -> int:
        return int(self.t.shape[0])


def draw_jitter(rays_o: Tensor, perturb: bool, generator: torch.Generator | None) -> Tensor:
    """Per-ray jitter drawn exactly as the PyTorch twin draws it (same generator, same values)."""
    n = rays_o.shape[0]
    if perturb:
        device = generator.device if generator is not None else rays_o.device
        return torch.rand(n, generator=generator, device=device, dtype=rays_o.dtype).to(rays_o.device)
    return torch.zeros(n, dtype=rays_o.dtype, device=rays_o.device)


def num_candidates(near: Tensor, far: Tensor, step: float) -> int:
    """Candidate count of the longest segment (the twin's bound on the loop; at least 1)."""
    if near.numel() == 0:
        return 1
    span = (far - near).clamp(min=0)
    return max(int(math.ceil(float(span.max()) / step)), 1)


def march_rays_step_torch(rays_o: Tensor, rays_d: Tensor, near: Tensor, far: Tensor, jitter: Tensor,
                          k_start: Tensor, limit: Tensor, *, step: float, slots: int, candidates: int,
                          occupancy=None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """PyTorch version of :func:`march_rays_step_triton` (same arguments and results), built on the twin's rule."""
    a = rays_o.shape[0]
    device = rays_o.device
    k = torch.arange(candidates, device=device)
    cand = k_start.long()[:, None] + k[None, :]  # [A, K]
    t = near[:, None] + (jitter[:, None] + cand.to(rays_o.dtype)) * step
    inside = t < far[:, None]
    keep = inside
    if occupancy is not None:
        points = rays_o[:, None, :] + t[..., None] * rays_d[:, None, :]
        keep = keep & occupancy.query(points.reshape(-1, 3)).reshape(a, candidates)
    rank = keep.long().cumsum(dim=1) - 1
    keep &= rank < limit.long()[:, None]
    # a candidate is consumed while the ray is inside and has not yet filled its quota
    recorded_before = torch.cat([torch.zeros_like(rank[:, :1]), keep.long().cumsum(dim=1)[:, :-1]], dim=1)
    consumed = inside & (recorded_before < limit.long()[:, None])
    k_end = (k_start.long() + consumed.long().sum(dim=1)).to(torch.int32)
    slot = torch.where(keep, rank, torch.full_like(rank, slots))
    t_out = torch.zeros(a, slots + 1, dtype=t.dtype, device=device).scatter_(1, slot, t)[:, :slots]
    mask = torch.zeros(a, slots + 1, dtype=torch.bool, device=device).scatter_(1, slot, keep)[:, :slots]
    positions = (rays_o[:, None, :] + t_out[..., None] * rays_d[:, None, :]) * mask[..., None]
    return positions, t_out, mask.sum(dim=1).to(torch.int32), k_end


def march_rays_packed_torch(rays_o: Tensor, rays_d: Tensor, near: Tensor, far: Tensor, *, step: float,
                             max_steps: int, occupancy=None, perturb: bool = False,
                             generator: torch.Generator | None = None) -> PackedSamples:
    """The PyTorch twin of ``march_rays_packed_triton``: ``sampler.march_rays``, then compaction."""
    samples = march_rays(rays_o, rays_d, near, far, step=step, max_steps=max_steps, occupancy=occupancy,
                                perturb=perturb, generator=generator)
    return pack(samples)


def pack(samples: RaySamples) -> PackedSamples:
    """Compact padded samples (real samples first in each row) into the packed layout."""
    ray_idx, slot_idx = samples.mask.nonzero(as_tuple=True)
    counts = samples.mask.sum(dim=1)
    offsets = torch.zeros(samples.mask.shape[0] + 1, dtype=torch.int64, device=samples.mask.device)
    torch.cumsum(counts, dim=0, out=offsets[1:])
    return PackedSamples(positions=samples.positions[ray_idx, slot_idx], t=samples.t[ray_idx, slot_idx],
                         deltas=samples.deltas[ray_idx, slot_idx], ray_indices=ray_idx, offsets=offsets)


class ProbeGrid:
    """Minimal stand-in for ``OccupancyGrid`` in probes and tests (occupied, resolution, bound, query)."""

    def __init__(self, occupied: Tensor, bound: float):
        self.occupied, self.resolution, self.bound = occupied, occupied.shape[0], bound

    def query(self, points: Tensor) -> Tensor:
        r = self.resolution
        ijk = ((points / self.bound + 1.0) * (0.5 * r)).long().clamp(0, r - 1)
        return self.occupied.reshape(-1)[(ijk[:, 0] * r + ijk[:, 1]) * r + ijk[:, 2]]


@dataclass
class Composited:
    """Per-ray compositing results (N rays)."""

    opacity: Tensor
    """[N] sum of weights (accumulated alpha)."""
    depth: Tensor
    """[N] weighted sum of the sample distances t."""
    weighted: Tensor
    """[N, C] weighted sums of the value channels."""
    plain: Tensor
    """[N, P] unweighted sums over the visited samples of the plain channels."""


def composite_dense_torch(sigma: Tensor, deltas: Tensor, t: Tensor, mask: Tensor | None = None,
                           values: Tensor | None = None, plain: Tensor | None = None, *,
                           transmittance_eps: float = TRANSMITTANCE_EPS) -> Composited:
    """The PyTorch twin of ``composite_dense_triton``, built on ``compositing.render_weights``."""
    weights, visited = render_weights(sigma, deltas, mask, transmittance_eps)
    n = sigma.shape[0]
    values = values.unsqueeze(-1) if values is not None and values.dim() == 2 else values
    plain = plain.unsqueeze(-1) if plain is not None and plain.dim() == 2 else plain
    weighted = accumulate(weights, values) if values is not None else weights.new_zeros(n, 0)
    plain_sum = (plain * visited.unsqueeze(-1).to(plain.dtype)).sum(dim=1) if plain is not None \
        else weights.new_zeros(n, 0)
    return Composited(opacity=weights.sum(dim=-1), depth=accumulate(weights, t.to(weights.dtype)),
                      weighted=weighted, plain=plain_sum)


def unpack(values: Tensor, offsets: Tensor, width: int) -> tuple[Tensor, Tensor]:
    """Packed [M, ...] -> padded [N, width, ...] (zeros after each ray's samples) and the [N, width] mask."""
    n = offsets.shape[0] - 1
    counts = offsets[1:] - offsets[:-1]
    ray = torch.repeat_interleave(torch.arange(n, device=values.device), counts)
    slot = torch.arange(values.shape[0], device=values.device) - offsets[:-1][ray]
    out = values.new_zeros((n, width) + values.shape[1:])
    out = out.index_put((ray, slot), values)
    mask = torch.zeros(n, width, dtype=torch.bool, device=values.device).index_put(
        (ray, slot), torch.ones_like(ray, dtype=torch.bool))
    return out, mask


def composite_packed_torch(sigma: Tensor, deltas: Tensor, t: Tensor, offsets: Tensor, values: Tensor | None = None,
                            plain: Tensor | None = None, *, max_samples: int | None = None,
                            transmittance_eps: float = TRANSMITTANCE_EPS) -> Composited:
    """The PyTorch twin of ``composite_packed_triton``: unpack to rows, then ``render_weights``."""
    counts = offsets[1:] - offsets[:-1]
    width = max_samples if max_samples is not None else max(int(counts.max()) if counts.numel() else 0, 1)
    sigma_p, mask = unpack(sigma, offsets, width)
    deltas_p, _ = unpack(deltas, offsets, width)
    t_p, _ = unpack(t, offsets, width)
    values_p = unpack(values if values.dim() == 2 else values.unsqueeze(-1), offsets, width)[0] \
        if values is not None else None
    plain_p = unpack(plain if plain.dim() == 2 else plain.unsqueeze(-1), offsets, width)[0] \
        if plain is not None else None
    return composite_dense_torch(sigma_p, deltas_p, t_p, mask, values_p, plain_p,
                                  transmittance_eps=transmittance_eps)




@torch.no_grad()
def composite_step_torch(sigma: Tensor, deltas: Tensor, t: Tensor, count: Tensor, tau0: Tensor,
                         values: Tensor | None = None, plain: Tensor | None = None, *,
                         transmittance_eps: float = TRANSMITTANCE_EPS) -> tuple[Composited, Tensor]:
    """The PyTorch twin of ``composite_step_triton`` (inference step of live rays with optical depth ``tau0``).

    The optical depth already accumulated enters ``render_weights`` as a virtual first sample with
    ``sigma * delta = tau0``, so the step follows the reference rule exactly.

    Args:
        sigma, deltas, t: [A, S]; count: [A] real samples per row (first in the row); tau0: [A].
        values: [A, S, C]; plain: [A, S, P].

    Returns:
        (this step's contributions, new optical depth [A]).
    """
    a, s = sigma.shape
    mask = torch.arange(s, device=sigma.device)[None, :] < count.long()[:, None]
    ones = torch.ones(a, 1, dtype=torch.bool, device=sigma.device)
    sigma_x = torch.cat([tau0.float()[:, None], sigma.float()], dim=1)
    deltas_x = torch.cat([torch.ones_like(tau0, dtype=torch.float32)[:, None], deltas.float()], dim=1)
    weights, visited = render_weights(sigma_x, deltas_x, torch.cat([ones, mask], dim=1), transmittance_eps)
    weights, visited = weights[:, 1:], visited[:, 1:]
    weighted = accumulate(weights, values.float()) if values is not None else weights.new_zeros(a, 0)
    plain_sum = (plain.float() * visited.unsqueeze(-1)).sum(dim=1) if plain is not None else weights.new_zeros(a, 0)
    tau_end = tau0.float() + torch.where(mask, sigma.float() * deltas.float(), torch.zeros_like(weights)).sum(dim=1)
    return Composited(opacity=weights.sum(dim=1), depth=accumulate(weights, t.float()), weighted=weighted,
                      plain=plain_sum), tau_end
