"""Triton kernels for ray marching against the occupancy grid.

Same sampling rule as :func:`synctalk_lib.nerf.sampler.march_rays` (the PyTorch twin): candidate points
``t_k = near + (j + k) * step`` for ``t_k < far`` (``j`` = per-ray jitter in [0, 1) when perturbing, else 0);
candidates in unoccupied cells of the ``[R, R, R]`` boolean grid are skipped and the first ``max_steps`` remaining
ones become the samples. One lane marches one ray; a block stops as soon as all of its rays are done.

Three outputs of the same walk:

- **packed** (training): ``count`` pass, prefix sum on the host, ``write`` pass into compacted arrays
  ``positions [M, 3]``, ``t [M]``, ``ray_indices [M]`` with per-ray ``offsets [N + 1]`` — no padding, so the
  field runs on exactly the real samples.
- **padded**: ``[N, S]`` slots plus a mask, a drop-in for ``march_rays``'s :class:`RaySamples`.
- **step** (inference, march until opaque): resumes every live ray at its next candidate ``k_start`` and records
  at most ``limit`` samples, returning where it stopped (``k_end``) — the renderer alternates this with the field
  and :func:`cuda_ext.triton_composite.composite_step` until every ray is opaque, out of the box or out of steps.

Kernels run with ``enable_fp_fusion=False`` and a correctly rounded division (``div_rn``; Triton's ``/`` is
approximate on the GPU) so ``o + t * d`` and ``p / bound`` round like PyTorch and pick the same cells.
Importing this module imports Triton; :mod:`cuda_ext` imports it only on first use.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from .torch_twins import PackedSamples, ProbeGrid, draw_jitter, num_candidates
from .torch_twins import march_rays_packed_torch as _march_rays_packed_torch  # the PyTorch twin
from synctalk_lib.nerf.sampler import RaySamples

BLOCK = 128
NUM_WARPS = 4  # 128 threads: one lane per ray of a block
MODE_COUNT, MODE_PACKED, MODE_PADDED = 0, 1, 2


@triton.jit
def _march_kernel(o_ptr, d_ptr, near_ptr, far_ptr, jitter_ptr, kstart_ptr, limit_ptr, grid_ptr, offset_ptr,
                  pos_ptr, t_ptr, ray_ptr, count_ptr, kend_ptr, n_rays, n_candidates, step, bound, half_res,
                  res: tl.constexpr, HAS_GRID: tl.constexpr, MODE: tl.constexpr, S: tl.constexpr,
                  BLOCK: tl.constexpr):
    ray = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    valid = ray < n_rays
    ox = tl.load(o_ptr + ray * 3, mask=valid, other=0.0)
    oy = tl.load(o_ptr + ray * 3 + 1, mask=valid, other=0.0)
    oz = tl.load(o_ptr + ray * 3 + 2, mask=valid, other=0.0)
    dx = tl.load(d_ptr + ray * 3, mask=valid, other=0.0)
    dy = tl.load(d_ptr + ray * 3 + 1, mask=valid, other=0.0)
    dz = tl.load(d_ptr + ray * 3 + 2, mask=valid, other=0.0)
    near = tl.load(near_ptr + ray, mask=valid, other=0.0)
    far = tl.load(far_ptr + ray, mask=valid, other=0.0)
    jitter = tl.load(jitter_ptr + ray, mask=valid, other=0.0)
    k = tl.load(kstart_ptr + ray, mask=valid, other=0)
    limit = tl.load(limit_ptr + ray, mask=valid, other=0)
    if MODE == 1:
        base = tl.load(offset_ptr + ray, mask=valid, other=0)
    count = tl.zeros([BLOCK], dtype=tl.int32)
    kk = 0
    running = kk < n_candidates
    while running:
        t = near + (jitter + k.to(tl.float32)) * step
        live = valid & (t < far) & (count < limit)
        px = ox + t * dx
        py = oy + t * dy
        pz = oz + t * dz
        if HAS_GRID:
            ix = tl.minimum(tl.maximum(((tl.math.div_rn(px, bound) + 1.0) * half_res).to(tl.int32), 0), res - 1)
            iy = tl.minimum(tl.maximum(((tl.math.div_rn(py, bound) + 1.0) * half_res).to(tl.int32), 0), res - 1)
            iz = tl.minimum(tl.maximum(((tl.math.div_rn(pz, bound) + 1.0) * half_res).to(tl.int32), 0), res - 1)
            cell = (ix * res + iy) * res + iz
            occupied = tl.load(grid_ptr + cell, mask=live, other=0).to(tl.int32) != 0
            keep = live & occupied
        else:
            keep = live
        if MODE == 1:
            slot = (base + count).to(tl.int64)
            tl.store(pos_ptr + slot * 3, px, mask=keep)
            tl.store(pos_ptr + slot * 3 + 1, py, mask=keep)
            tl.store(pos_ptr + slot * 3 + 2, pz, mask=keep)
            tl.store(t_ptr + slot, t, mask=keep)
            tl.store(ray_ptr + slot, ray.to(tl.int64), mask=keep)
        if MODE == 2:
            slot = ray.to(tl.int64) * S + count
            tl.store(pos_ptr + slot * 3, px, mask=keep)
            tl.store(pos_ptr + slot * 3 + 1, py, mask=keep)
            tl.store(pos_ptr + slot * 3 + 2, pz, mask=keep)
            tl.store(t_ptr + slot, t, mask=keep)
        count += keep.to(tl.int32)
        k += live.to(tl.int32)
        kk += 1
        running = (kk < n_candidates) & (tl.max(live.to(tl.int32), axis=0) > 0)
    tl.store(count_ptr + ray, count, mask=valid)
    tl.store(kend_ptr + ray, k, mask=valid)


def _grid_args(occupancy, device: torch.device) -> tuple[Tensor, bool, int, float]:
    if occupancy is None:
        return torch.zeros(1, dtype=torch.bool, device=device), False, 1, 1.0
    occupied = occupancy.occupied.to(device).contiguous()
    return occupied, True, int(occupancy.resolution), float(occupancy.bound)


def _launch(mode: int, rays_o: Tensor, rays_d: Tensor, near: Tensor, far: Tensor, jitter: Tensor, k_start: Tensor,
            limit: Tensor, occupancy, *, step: float, candidates: int, offsets: Tensor | None = None,
            positions: Tensor | None = None, t: Tensor | None = None, ray_indices: Tensor | None = None,
            slots: int = 1) -> tuple[Tensor, Tensor]:
    n = rays_o.shape[0]
    device = rays_o.device
    count = torch.empty(n, dtype=torch.int32, device=device)
    k_end = torch.empty(n, dtype=torch.int32, device=device)
    if n == 0:
        return count, k_end
    grid_t, has_grid, res, bound = _grid_args(occupancy, device)
    dummy_f = torch.empty(1, dtype=torch.float32, device=device)
    dummy_l = torch.empty(1, dtype=torch.int64, device=device)
    _march_kernel[(triton.cdiv(n, BLOCK),)](
        rays_o, rays_d, near, far, jitter, k_start, limit, grid_t,
        offsets if offsets is not None else dummy_l,
        positions if positions is not None else dummy_f, t if t is not None else dummy_f,
        ray_indices if ray_indices is not None else dummy_l, count, k_end,
        n, candidates, float(step), bound, 0.5 * res,
        res=res, HAS_GRID=has_grid, MODE=mode, S=slots, BLOCK=BLOCK, num_warps=NUM_WARPS, enable_fp_fusion=False)
    return count, k_end


def _prepare(rays_o: Tensor, rays_d: Tensor, near: Tensor, far: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    if rays_o.dim() != 2 or rays_o.shape[1] != 3 or rays_d.shape != rays_o.shape:
        raise ValueError(f"march: rays_o and rays_d must both be [N, 3], got {tuple(rays_o.shape)} and "
                         f"{tuple(rays_d.shape)}")
    if near.shape != (rays_o.shape[0],) or far.shape != near.shape:
        raise ValueError(f"march: near and far must be [N] with N = {rays_o.shape[0]}")
    f32 = dict(dtype=torch.float32)
    return (rays_o.to(**f32).contiguous(), rays_d.to(**f32).contiguous(), near.to(**f32).contiguous(),
            far.to(**f32).contiguous())


def march_rays_packed_triton(rays_o: Tensor, rays_d: Tensor, near: Tensor, far: Tensor, *, step: float,
                             max_steps: int, occupancy=None, perturb: bool = False,
                             generator: torch.Generator | None = None) -> PackedSamples:
    """Compacted samples (training layout); arguments as :func:`synctalk_lib.nerf.sampler.march_rays`.

    Args:
        rays_o, rays_d: [N, 3] origins and unit directions (float32).
        near, far: [N] segment to sample.
        step: distance between samples.
        max_steps: samples kept per ray.
        occupancy: an ``OccupancyGrid`` (its ``occupied [R, R, R]`` bool, ``resolution`` and ``bound``) or None.
        perturb, generator: per-ray jitter of the first sample, drawn like the twin draws it.

    Returns:
        PackedSamples with M = total samples.
    """
    rays_o, rays_d, near, far = _prepare(rays_o, rays_d, near, far)
    n = rays_o.shape[0]
    device = rays_o.device
    jitter = draw_jitter(rays_o, perturb, generator)
    candidates = num_candidates(near, far, step)
    k_start = torch.zeros(n, dtype=torch.int32, device=device)
    limit = torch.full((n,), int(max_steps), dtype=torch.int32, device=device)
    count, _ = _launch(MODE_COUNT, rays_o, rays_d, near, far, jitter, k_start, limit, occupancy, step=step,
                       candidates=candidates)
    offsets = torch.zeros(n + 1, dtype=torch.int64, device=device)
    torch.cumsum(count, dim=0, out=offsets[1:])
    total = int(offsets[-1]) if n else 0
    positions = torch.empty(total, 3, dtype=torch.float32, device=device)
    t = torch.empty(total, dtype=torch.float32, device=device)
    ray_indices = torch.empty(total, dtype=torch.int64, device=device)
    if total:
        _launch(MODE_PACKED, rays_o, rays_d, near, far, jitter, k_start, limit, occupancy, step=step,
                candidates=candidates, offsets=offsets, positions=positions, t=t, ray_indices=ray_indices)
    deltas = torch.full((total,), float(step), dtype=torch.float32, device=device)
    return PackedSamples(positions=positions, t=t, deltas=deltas, ray_indices=ray_indices, offsets=offsets)


def march_rays_triton(rays_o: Tensor, rays_d: Tensor, near: Tensor, far: Tensor, *, step: float, max_steps: int,
                      occupancy=None, perturb: bool = False,
                      generator: torch.Generator | None = None) -> RaySamples:
    """Padded samples ``[N, max_steps]``: a drop-in for :func:`synctalk_lib.nerf.sampler.march_rays`."""
    rays_o, rays_d, near, far = _prepare(rays_o, rays_d, near, far)
    n = rays_o.shape[0]
    device = rays_o.device
    jitter = draw_jitter(rays_o, perturb, generator)
    k_start = torch.zeros(n, dtype=torch.int32, device=device)
    limit = torch.full((n,), int(max_steps), dtype=torch.int32, device=device)
    positions = torch.zeros(n, max_steps, 3, dtype=torch.float32, device=device)
    t = torch.zeros(n, max_steps, dtype=torch.float32, device=device)
    count, _ = _launch(MODE_PADDED, rays_o, rays_d, near, far, jitter, k_start, limit, occupancy, step=step,
                       candidates=num_candidates(near, far, step), positions=positions, t=t, slots=max_steps)
    mask = torch.arange(max_steps, device=device)[None, :] < count[:, None]
    return RaySamples(positions=positions, t=t, deltas=mask.to(torch.float32) * step, mask=mask)


def march_rays_step_triton(rays_o: Tensor, rays_d: Tensor, near: Tensor, far: Tensor, jitter: Tensor,
                           k_start: Tensor, limit: Tensor, *, step: float, slots: int, candidates: int,
                           occupancy=None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """One inference marching step for live rays (no autograd).

    Args:
        rays_o, rays_d: [A, 3] live rays (float32, contiguous).
        near, far, jitter: [A] float32.
        k_start: [A] int32 next candidate index of each ray.
        limit: [A] int32 samples this step may record per ray (<= slots).
        step: distance between candidates; slots: width S of the outputs; candidates: loop bound.
        occupancy: OccupancyGrid or None.

    Returns:
        positions [A, S, 3], t [A, S], count [A] int32 (real samples come first in each row), k_end [A] int32.
    """
    a = rays_o.shape[0]
    positions = torch.zeros(a, slots, 3, dtype=torch.float32, device=rays_o.device)
    t = torch.zeros(a, slots, dtype=torch.float32, device=rays_o.device)
    count, k_end = _launch(MODE_PADDED, rays_o, rays_d, near, far, jitter, k_start, limit, occupancy, step=step,
                           candidates=candidates, positions=positions, t=t, slots=slots)
    return positions, t, count, k_end


def probe(kind: str) -> str | None:
    """March a few random rays through a random grid; None when packed, padded and step outputs match the twin."""
    device = torch.device("cuda" if kind == "cuda" else "cpu")
    gen = torch.Generator().manual_seed(0)
    n = 32
    rays_o = (torch.randn(n, 3, generator=gen) * 0.2 + torch.tensor([0.0, 0.0, 2.0])).to(device)
    rays_d = torch.nn.functional.normalize(-rays_o + torch.randn(n, 3, generator=gen).to(device) * 0.3, dim=-1)
    near = torch.full((n,), 1.0, device=device)
    far = near + torch.rand(n, generator=gen).to(device) * 2.0
    grid = ProbeGrid((torch.rand(8, 8, 8, generator=gen) > 0.5).to(device), 1.0)
    fast = march_rays_packed_triton(rays_o, rays_d, near, far, step=0.1, max_steps=6, occupancy=grid)
    ref = _march_rays_packed_torch(rays_o, rays_d, near, far, step=0.1, max_steps=6, occupancy=grid)
    if not torch.equal(fast.offsets, ref.offsets) or not torch.equal(fast.ray_indices, ref.ray_indices):
        return "marching picked other samples than the PyTorch reference"
    if not torch.allclose(fast.positions, ref.positions, atol=1e-5):
        return f"sample positions: max abs diff {float((fast.positions - ref.positions).abs().max()):.3g}"
    return None
