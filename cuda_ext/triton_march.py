"""Triton kernel for ray marching against the occupancy grid, in the packed layout.

Same rule as its PyTorch twin :func:`cuda_ext.march.march_packed_torch`: candidate points
``t_k = near + (j + k) * step`` for ``t_k < far`` (``j`` = per-ray jitter in [0, 1), 0 without jitter); candidates in
unoccupied cells of the ``[R, R, R]`` boolean grid are skipped and the first ``max_steps`` remaining ones become the
samples. One lane marches one ray; a block stops as soon as all of its rays are done. Two passes over the same walk:
``count`` (samples per ray), a prefix sum on the host, then ``write`` into the compacted arrays ``positions [M, 3]``,
``t [M]``, ``ray_indices [M]`` with per-ray ``offsets [N + 1]`` — no padding, so the field runs on exactly the real
samples.

Kernels run with ``enable_fp_fusion=False`` and a correctly rounded division (``div_rn``; Triton's ``/`` is
approximate on the GPU) so ``o + t * d`` and ``p / bound`` round like PyTorch and pick the same cells.
Importing this module imports Triton; nothing imports it before the kernels are asked for.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from .march import PackedSamples, march_packed_torch, num_candidates, occupied_at

BLOCK = 128
NUM_WARPS = 4  # 128 threads: one lane per ray of a block


@triton.jit
def _march_kernel(o_ptr, d_ptr, near_ptr, far_ptr, jitter_ptr, grid_ptr, offset_ptr, pos_ptr, t_ptr, ray_ptr,
                  count_ptr, n_rays, n_candidates, max_steps, step, bound, half_res, res: tl.constexpr,
                  HAS_GRID: tl.constexpr, WRITE: tl.constexpr, BLOCK: tl.constexpr):
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
    if WRITE:
        base = tl.load(offset_ptr + ray, mask=valid, other=0)
    count = tl.zeros([BLOCK], dtype=tl.int32)
    k = tl.zeros([BLOCK], dtype=tl.int32)
    kk = 0
    running = kk < n_candidates
    while running:
        t = near + (jitter + k.to(tl.float32)) * step
        live = valid & (t < far) & (count < max_steps)
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
        if WRITE:
            slot = (base + count).to(tl.int64)
            tl.store(pos_ptr + slot * 3, px, mask=keep)
            tl.store(pos_ptr + slot * 3 + 1, py, mask=keep)
            tl.store(pos_ptr + slot * 3 + 2, pz, mask=keep)
            tl.store(t_ptr + slot, t, mask=keep)
            tl.store(ray_ptr + slot, ray.to(tl.int64), mask=keep)
        count += keep.to(tl.int32)
        k += live.to(tl.int32)
        kk += 1
        running = (kk < n_candidates) & (tl.max(live.to(tl.int32), axis=0) > 0)
    if not WRITE:
        tl.store(count_ptr + ray, count, mask=valid)


def march_packed_triton(rays_o: Tensor, rays_d: Tensor, near: Tensor, far: Tensor, *, step: float, max_steps: int,
                        jitter: Tensor | None = None, occupied: Tensor | None = None,
                        bound: float = 1.0) -> PackedSamples:
    """Packed samples of rays: the kernel version of :func:`cuda_ext.march.march_packed_torch` (same arguments,
    same samples; float32 rays).

    Args:
        rays_o, rays_d: [N, 3] origins and unit directions.
        near, far: [N] segment to sample.
        step: distance between samples; max_steps: samples kept per ray.
        jitter: [N] offset of each ray's first sample in steps, in [0, 1) (None: 0).
        occupied: [R, R, R] bool occupancy grid over ``[-bound, bound]^3`` (None: dense marching).
        bound: half the side of the grid's cube.

    Returns:
        PackedSamples with M = total samples.
    """
    if rays_o.dim() != 2 or rays_o.shape[1] != 3 or rays_d.shape != rays_o.shape:
        raise ValueError(f"march: rays_o and rays_d must both be [N, 3], got {tuple(rays_o.shape)} and "
                         f"{tuple(rays_d.shape)}")
    n = rays_o.shape[0]
    if near.shape != (n,) or far.shape != near.shape or (jitter is not None and jitter.shape != near.shape):
        raise ValueError(f"march: near, far and jitter must be [N] with N = {n}")
    device = rays_o.device
    f32 = dict(dtype=torch.float32, device=device)
    rays = [x.to(**f32).contiguous() for x in (rays_o, rays_d, near, far)]
    jitter = jitter.to(**f32).contiguous() if jitter is not None else torch.zeros(n, **f32)
    grid = occupied.to(device).contiguous() if occupied is not None else torch.zeros(1, dtype=torch.bool,
                                                                                      device=device)
    count = torch.zeros(n, dtype=torch.int32, device=device)
    offsets = torch.zeros(n + 1, dtype=torch.int64, device=device)
    launch = dict(n_candidates=num_candidates(rays[2], rays[3], step), max_steps=int(max_steps), step=float(step),
                  bound=float(bound), resolution=grid.shape[0] if occupied is not None else 1,
                  has_grid=occupied is not None)
    if n:
        _launch(*rays, jitter, grid, offsets, None, None, None, count, write=False, **launch)
        torch.cumsum(count, dim=0, out=offsets[1:])
    total = int(offsets[-1])
    positions, t = torch.empty(total, 3, **f32), torch.empty(total, **f32)
    ray_indices = torch.empty(total, dtype=torch.int64, device=device)
    if total:
        _launch(*rays, jitter, grid, offsets, positions, t, ray_indices, count, write=True, **launch)
    return PackedSamples(positions=positions, t=t, deltas=torch.full((total,), float(step), **f32),
                         ray_indices=ray_indices, offsets=offsets)


def _launch(rays_o: Tensor, rays_d: Tensor, near: Tensor, far: Tensor, jitter: Tensor, grid: Tensor, offsets: Tensor,
            positions: Tensor | None, t: Tensor | None, ray_indices: Tensor | None, count: Tensor, *, write: bool,
            n_candidates: int, max_steps: int, step: float, bound: float, resolution: int, has_grid: bool) -> None:
    n = rays_o.shape[0]
    dummy_f = torch.empty(1, dtype=torch.float32, device=rays_o.device)
    _march_kernel[(triton.cdiv(n, BLOCK),)](
        rays_o, rays_d, near, far, jitter, grid, offsets, positions if positions is not None else dummy_f,
        t if t is not None else dummy_f, ray_indices if ray_indices is not None else offsets, count,
        n, n_candidates, max_steps, step, bound, 0.5 * resolution,
        res=resolution, HAS_GRID=has_grid, WRITE=write, BLOCK=BLOCK, num_warps=NUM_WARPS, enable_fp_fusion=False)


def probe(kind: str) -> str | None:
    """March a few random rays through a random grid; None when the samples match the twin's."""
    device = torch.device("cuda" if kind == "cuda" else "cpu")
    gen = torch.Generator().manual_seed(0)
    n = 32
    rays_o = (torch.randn(n, 3, generator=gen) * 0.2 + torch.tensor([0.0, 0.0, 2.0])).to(device)
    rays_d = torch.nn.functional.normalize(-rays_o + torch.randn(n, 3, generator=gen).to(device) * 0.3, dim=-1)
    near = torch.full((n,), 1.0, device=device)
    far = near + torch.rand(n, generator=gen).to(device) * 2.0
    jitter = torch.rand(n, generator=gen).to(device)
    occupied = (torch.rand(8, 8, 8, generator=gen) > 0.5).to(device)
    kwargs = dict(step=0.1, max_steps=6, jitter=jitter, occupied=occupied, bound=1.0)
    fast = march_packed_triton(rays_o, rays_d, near, far, **kwargs)
    ref = march_packed_torch(rays_o, rays_d, near, far, **kwargs)
    if not torch.equal(fast.offsets, ref.offsets) or not torch.equal(fast.ray_indices, ref.ray_indices):
        return "marching picked other samples than the PyTorch reference"
    if not torch.allclose(fast.positions, ref.positions, atol=1e-5):
        return f"sample positions: max abs diff {float((fast.positions - ref.positions).abs().max()):.3g}"
    if not bool(occupied_at(fast.positions, occupied, 1.0).all()):
        return "a sample was taken in an empty cell"
    return None
