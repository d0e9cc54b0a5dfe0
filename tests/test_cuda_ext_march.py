"""Parity of the Triton marching kernels with ``synctalk_lib.nerf.sampler.march_rays`` (which samples are taken,
where, in which order). CPU through Triton's interpreter in CI; GPU where present. Tiny sizes.
"""
from __future__ import annotations


import pytest
import torch

from cuda_ext_testing import DEVICE, assert_close, one_thread, require_triton  # noqa: F401

require_triton()

from cuda_ext.torch_twins import march_rays_packed_torch, march_rays_step_torch, num_candidates  # noqa: E402
from cuda_ext.triton_march import (  # noqa: E402
    march_rays_packed_triton,
    march_rays_step_triton,
    march_rays_triton,
)
from synctalk_lib.nerf.occupancy import OccupancyGrid  # noqa: E402
from synctalk_lib.nerf.sampler import march_rays, ray_aabb_intersect  # noqa: E402

AABB = (-1.0, -0.5, -1.0, 1.0, 0.5, 1.0)
STEP = 2 * 3 ** 0.5 / 32


def scene(seed: int, n: int = 48, resolution: int = 32, fill: float = 0.35):
    """Rays from a camera in front of the box towards random points, a random occupancy grid, near/far."""
    gen = torch.Generator().manual_seed(seed)
    rays_o = torch.tensor([0.1, 0.0, 2.2]) + torch.randn(n, 3, generator=gen) * 0.05
    target = torch.randn(n, 3, generator=gen) * torch.tensor([0.5, 0.3, 0.5])
    rays_d = torch.nn.functional.normalize(target - rays_o, dim=-1)
    rays_d[0] = torch.tensor([0.0, 1.0, 0.0])  # misses the box
    rays_o, rays_d = rays_o.to(DEVICE), rays_d.to(DEVICE)
    near, far, hit = ray_aabb_intersect(rays_o, rays_d, AABB, min_near=0.05)
    grid = OccupancyGrid(resolution=resolution, bound=1.0).to(DEVICE)
    grid.occupied.copy_((torch.rand(resolution, resolution, resolution, generator=gen) < fill).to(DEVICE))
    assert not bool(hit[0]) and bool(hit[1:].any())
    return rays_o, rays_d, near, far, grid


def assert_same_samples(fast, ref, what: str) -> None:
    assert torch.equal(fast.offsets.cpu(), ref.offsets.cpu()), f"{what}: per-ray sample counts differ"
    assert torch.equal(fast.ray_indices.cpu(), ref.ray_indices.cpu()), f"{what}: sample rays differ"
    diff_t = float((fast.t - ref.t).abs().max()) if ref.t.numel() else 0.0
    diff_p = float((fast.positions - ref.positions).abs().max()) if ref.t.numel() else 0.0
    assert diff_t <= 1e-6 and diff_p <= 1e-6, f"{what}: max abs diff t {diff_t:.3g}, positions {diff_p:.3g}"
    assert torch.equal(fast.deltas.cpu(), ref.deltas.cpu()), f"{what}: deltas differ"


@pytest.mark.parametrize("perturb", [False, True])
def test_packed_samples_match_reference(perturb):
    rays_o, rays_d, near, far, grid = scene(0)
    kwargs = dict(step=STEP, max_steps=16, occupancy=grid, perturb=perturb)
    fast = march_rays_packed_triton(rays_o, rays_d, near, far, generator=torch.Generator().manual_seed(3), **kwargs)
    ref = march_rays_packed_torch(rays_o, rays_d, near, far, generator=torch.Generator().manual_seed(3), **kwargs)
    assert ref.num_samples > 50 and int(ref.offsets[1]) == 0  # real work; the missing ray has none
    assert_same_samples(fast, ref, f"packed (perturb={perturb})")
    # samples lie on their rays, inside occupied cells, in increasing t
    p = rays_o[fast.ray_indices] + fast.t[:, None] * rays_d[fast.ray_indices]
    assert float((p - fast.positions).abs().max()) < 1e-6
    assert bool(grid.query(fast.positions).all()), "a sample was taken in an empty cell"
    same_ray = fast.ray_indices[1:] == fast.ray_indices[:-1]
    assert bool((fast.t[1:][same_ray] > fast.t[:-1][same_ray]).all())


def test_max_steps_caps_samples_and_no_grid_marches_densely():
    rays_o, rays_d, near, far, _ = scene(1)
    fast = march_rays_packed_triton(rays_o, rays_d, near, far, step=STEP, max_steps=5, occupancy=None)
    ref = march_rays_packed_torch(rays_o, rays_d, near, far, step=STEP, max_steps=5, occupancy=None)
    assert_same_samples(fast, ref, "dense marching, max_steps=5")
    assert int((fast.offsets[1:] - fast.offsets[:-1]).max()) == 5


def test_padded_samples_match_sampler():
    rays_o, rays_d, near, far, grid = scene(2)
    fast = march_rays_triton(rays_o, rays_d, near, far, step=STEP, max_steps=16, occupancy=grid)
    ref = march_rays(rays_o, rays_d, near, far, step=STEP, max_steps=16, occupancy=grid)
    assert torch.equal(fast.mask, ref.mask), "padded: different slots filled"
    assert float((fast.t - ref.t).abs().max()) <= 1e-6
    assert float((fast.positions - ref.positions).abs().max()) <= 1e-6
    assert torch.equal(fast.deltas, ref.deltas)


def test_inference_steps_match_twin_and_add_up_to_full_march():
    """Rounds of ``march_rays_step`` (a few samples per ray, resuming at k_end) give exactly the full march."""
    rays_o, rays_d, near, far, grid = scene(4)
    n = rays_o.shape[0]
    jitter = torch.zeros(n, device=DEVICE)
    candidates = num_candidates(near, far, STEP)
    full = march_rays_packed_torch(rays_o, rays_d, near, far, step=STEP, max_steps=16, occupancy=grid)
    k = torch.zeros(n, dtype=torch.int32, device=DEVICE)
    taken = torch.zeros(n, dtype=torch.int32, device=DEVICE)
    collected = [[] for _ in range(n)]
    for rnd, n_step in enumerate((1, 3, 8, 8, 8)):
        limit = (16 - taken).clamp(max=n_step).to(torch.int32)
        args = (rays_o, rays_d, near, far, jitter, k, limit)
        kwargs = dict(step=STEP, slots=n_step, candidates=candidates, occupancy=grid)
        pos_f, t_f, count_f, kend_f = march_rays_step_triton(*args, **kwargs)
        pos_r, t_r, count_r, kend_r = march_rays_step_torch(*args, **kwargs)
        assert torch.equal(count_f, count_r) and torch.equal(kend_f, kend_r), f"round {rnd}: counts/k_end differ"
        assert float((t_f - t_r).abs().max()) <= 1e-6 and float((pos_f - pos_r).abs().max()) <= 1e-6
        for r in range(n):
            collected[r].extend(t_f[r, :int(count_f[r])].tolist())
        k, taken = kend_f, taken + count_f
    for r in range(n):
        expected = full.t[int(full.offsets[r]):int(full.offsets[r + 1])].tolist()
        assert collected[r] == pytest.approx(expected, abs=1e-6), f"ray {r}: steps {collected[r]} != {expected}"
