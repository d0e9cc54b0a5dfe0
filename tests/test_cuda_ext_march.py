"""Parity of the Triton marching kernel with its PyTorch twin ``cuda_ext.march.march_packed_torch`` (which samples
are taken, where, in which order). CPU through Triton's interpreter in CI; GPU where present. Tiny sizes.
"""
from __future__ import annotations


import pytest
import torch

from cuda_ext_testing import DEVICE, assert_close, require_triton

pytestmark = pytest.mark.usefixtures("one_thread")

require_triton()

from cuda_ext.march import march_packed_torch, occupied_at  # noqa: E402
from cuda_ext.triton_march import march_packed_triton  # noqa: E402
from synctalk_lib.nerf.sampler import ray_aabb_intersect  # noqa: E402

AABB = (-1.0, -0.5, -1.0, 1.0, 0.5, 1.0)
STEP = 2 * 3 ** 0.5 / 32


def scene(seed: int, n: int = 48, resolution: int = 32, fill: float = 0.35):
    """Rays from a camera in front of the box towards random points, near/far, a random occupancy grid."""
    gen = torch.Generator().manual_seed(seed)
    rays_o = torch.tensor([0.1, 0.0, 2.2]) + torch.randn(n, 3, generator=gen) * 0.05
    target = torch.randn(n, 3, generator=gen) * torch.tensor([0.5, 0.3, 0.5])
    rays_d = torch.nn.functional.normalize(target - rays_o, dim=-1)
    rays_d[0] = torch.tensor([0.0, 1.0, 0.0])  # misses the box
    rays_o, rays_d = rays_o.to(DEVICE), rays_d.to(DEVICE)
    near, far, hit = ray_aabb_intersect(rays_o, rays_d, AABB, min_near=0.05)
    occupied = (torch.rand(resolution, resolution, resolution, generator=gen) < fill).to(DEVICE)
    assert not bool(hit[0]) and bool(hit[1:].any())
    return rays_o, rays_d, near, far, occupied


def assert_same_samples(fast, ref, what: str) -> None:
    assert torch.equal(fast.offsets.cpu(), ref.offsets.cpu()), f"{what}: per-ray sample counts differ"
    assert torch.equal(fast.ray_indices.cpu(), ref.ray_indices.cpu()), f"{what}: sample rays differ"
    diff_t = float((fast.t - ref.t).abs().max()) if ref.t.numel() else 0.0
    diff_p = float((fast.positions - ref.positions).abs().max()) if ref.t.numel() else 0.0
    assert diff_t <= 1e-6 and diff_p <= 1e-6, f"{what}: max abs diff t {diff_t:.3g}, positions {diff_p:.3g}"
    assert torch.equal(fast.deltas.cpu(), ref.deltas.cpu()), f"{what}: deltas differ"


@pytest.mark.parametrize("jittered", [False, True])
def test_packed_samples_match_reference(jittered):
    rays_o, rays_d, near, far, occupied = scene(0)
    jitter = torch.rand(len(near), generator=torch.Generator().manual_seed(3)).to(DEVICE) if jittered else None
    kwargs = dict(step=STEP, max_steps=16, jitter=jitter, occupied=occupied, bound=1.0)
    fast = march_packed_triton(rays_o, rays_d, near, far, **kwargs)
    ref = march_packed_torch(rays_o, rays_d, near, far, **kwargs)
    assert int(ref.offsets[-1]) > 50 and int(ref.offsets[1]) == 0  # real work; the missing ray has none
    assert_same_samples(fast, ref, f"packed (jitter={jittered})")
    # samples lie on their rays, inside occupied cells, in increasing t
    p = rays_o[fast.ray_indices] + fast.t[:, None] * rays_d[fast.ray_indices]
    assert float((p - fast.positions).abs().max()) < 1e-6
    assert bool(occupied_at(fast.positions, occupied, 1.0).all()), "a sample was taken in an empty cell"
    same_ray = fast.ray_indices[1:] == fast.ray_indices[:-1]
    assert bool((fast.t[1:][same_ray] > fast.t[:-1][same_ray]).all())


def test_max_steps_caps_samples_and_no_grid_marches_densely():
    rays_o, rays_d, near, far, _ = scene(1)
    fast = march_packed_triton(rays_o, rays_d, near, far, step=STEP, max_steps=5)
    ref = march_packed_torch(rays_o, rays_d, near, far, step=STEP, max_steps=5)
    assert_same_samples(fast, ref, "dense marching, max_steps=5")
    assert int((fast.offsets[1:] - fast.offsets[:-1]).max()) == 5
