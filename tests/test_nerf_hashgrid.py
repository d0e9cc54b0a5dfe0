"""Tri-plane hash encoder: level table, lookup rule, gradients, fitting power, backends."""
from __future__ import annotations

import math
import warnings

import pytest
import torch

from cuda_ext.hashgrid import HASH_PRIME, hash_grid_2d_reference, hash_grid_2d_torch
from synctalk_lib.metrics.psnr import psnr_from_mse
from synctalk_lib.nerf import backends
from synctalk_lib.nerf.hashgrid import HashGrid2D, level_table, make_hash_grid_2d
from synctalk_lib.nerf.triplane import TriPlaneEncoding

# reference-synctalk.md 5.1
REFERENCE_OFFSETS = [0, 4232, 10480, 19512, 32512, 48896, 65280, 81664, 98048, 114432, 130816, 147200, 163584]
REFERENCE_RESOLUTIONS = [64, 78, 94, 113, 137, 165, 199, 241, 291, 351, 424, 512]


pytestmark = pytest.mark.usefixtures("one_thread")


def _args(grid: HashGrid2D, x: torch.Tensor):
    return ((x + grid.bound) / (2 * grid.bound), grid.embeddings, grid.offsets, grid.scales, grid.strides, grid.dense)


def test_level_table_matches_reference():
    table = level_table(12, 64, 14, 512)
    assert list(table.offsets) == REFERENCE_OFFSETS
    assert list(table.resolutions) == REFERENCE_RESOLUTIONS
    assert table.entries[:4] == (4232, 6248, 9032, 13000) and set(table.entries[4:]) == {16384}
    assert table.dense == (True,) * 4 + (False,) * 8
    assert table.per_level_scale == pytest.approx(1.2080894, abs=1e-7)
    grid = HashGrid2D()
    assert grid.embeddings.shape == (163584, 1)
    assert grid.offsets.dtype == torch.int32 and grid.offsets.tolist() == REFERENCE_OFFSETS
    assert float(grid.embeddings.detach().abs().max()) <= 1e-4
    assert set(grid.state_dict()) == {"embeddings", "offsets"}


def _expected_lookup(grid: HashGrid2D, u: tuple[float, float], level: int) -> float:
    """The rule of reference 5.1 written out with Python integers for one point and level."""
    scale = grid.table.scales[level]
    entries = grid.table.entries[level]
    stride = math.ceil(scale) + 2
    pos = [c * scale + 0.5 for c in u]
    g = [math.floor(p) for p in pos]
    f = [p - gi for p, gi in zip(pos, g)]
    value = 0.0
    for dx in (0, 1):
        for dy in (0, 1):
            c0, c1 = g[0] + dx, g[1] + dy
            if stride * stride <= entries:
                index = c0 + c1 * stride
            else:
                index = c0 ^ ((c1 * HASH_PRIME) % 2 ** 32)
            row = index % entries + grid.table.offsets[level]
            weight = (f[0] if dx else 1 - f[0]) * (f[1] if dy else 1 - f[1])
            value += weight * float(grid.embeddings.detach()[row, 0])
    return value


def test_lookup_follows_the_reference_rule_on_dense_and_hashed_levels():
    torch.manual_seed(0)
    grid = HashGrid2D().double()
    with torch.no_grad():
        grid.embeddings.normal_()
    points = [(0.5, 0.25), (0.0, 0.0), (1.0, 1.0), (0.123456, 0.987654), (0.731, 0.0042)]
    x = torch.tensor(points, dtype=torch.float64) * 2 - 1
    out = grid(x).detach()
    for i, u in enumerate(points):
        for level in range(12):
            expected = _expected_lookup(grid, u, level)
            assert float(out[i, level]) == pytest.approx(expected, abs=1e-9), (u, level)


def test_fast_path_equals_literal_reference_outputs_and_gradients():
    torch.manual_seed(1)
    grid = HashGrid2D(levels=6, level_dim=2, base_resolution=16, log2_hashmap_size=10, desired_resolution=128)
    with torch.no_grad():
        grid.embeddings.normal_()
    x = (torch.rand(3000, 2) * 2.2 - 1.1).requires_grad_(True)  # some points outside [-1, 1]
    fast = hash_grid_2d_torch(*_args(grid, x))
    ref = hash_grid_2d_reference(*_args(grid, x))
    assert torch.equal(fast, ref), f"max abs diff {float((fast - ref).abs().max())}"
    weights = torch.randn_like(fast)
    g_fast = torch.autograd.grad((fast * weights).sum(), (x, grid.embeddings))
    g_ref = torch.autograd.grad((ref * weights).sum(), (x, grid.embeddings))
    for a, b in zip(g_fast, g_ref):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-4), f"max abs diff {float((a - b).abs().max())}"


def test_points_outside_the_square_encode_to_zero():
    grid = HashGrid2D()
    with torch.no_grad():
        grid.embeddings.fill_(1.0)
    out = grid(torch.tensor([[1.01, 0.0], [0.0, -1.2], [0.3, 0.3]]))
    assert torch.all(out[:2] == 0)
    assert torch.allclose(out[2], torch.ones(12))


def test_gradients_match_finite_differences_float64():
    torch.manual_seed(2)
    grid = HashGrid2D(levels=4, level_dim=2, base_resolution=4, log2_hashmap_size=6, desired_resolution=32).double()
    assert grid.table.dense.count(False) >= 1  # exercises the hashed path too
    with torch.no_grad():
        grid.embeddings.normal_()
    x = (torch.rand(20, 2, dtype=torch.float64) * 1.8 - 0.9).requires_grad_(True)
    u = (x.detach() + 1) / 2

    def f(points, table):
        return hash_grid_2d_torch((points + 1) / 2, table, grid.offsets, grid.scales, grid.strides, grid.dense)

    assert torch.autograd.gradcheck(f, (x, grid.embeddings), eps=1e-6, atol=1e-6)
    assert u.shape == (20, 2)


def test_one_plane_fits_a_smooth_image_to_high_psnr():
    torch.manual_seed(3)
    size = 64
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    image = torch.stack([0.5 + 0.4 * torch.sin(3 * xs + 1) * torch.cos(2 * ys),
                         0.5 + 0.3 * torch.cos(4 * xs * ys),
                         0.5 + 0.45 * torch.sin(2 * (xs + ys))], dim=-1).reshape(-1, 3)
    points = torch.stack([xs, ys], dim=-1).reshape(-1, 2)
    grid = HashGrid2D(levels=6, level_dim=2, base_resolution=8, log2_hashmap_size=12, desired_resolution=64)
    head = torch.nn.Linear(grid.get_out_dim(), 3)
    opt = torch.optim.Adam([{"params": grid.parameters(), "lr": 5e-2}, {"params": head.parameters(), "lr": 1e-2}])
    for _ in range(300):
        loss = torch.mean((head(grid(points)) - image) ** 2)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        mse = torch.mean((head(grid(points)) - image) ** 2)
    psnr = psnr_from_mse(mse)
    assert psnr > 30, f"PSNR {psnr:.1f} dB"


def test_triplane_concatenates_xy_yz_xz_with_official_keys():
    torch.manual_seed(4)
    enc = TriPlaneEncoding(backend="torch")
    for name in ("xy", "yz", "xz"):
        with torch.no_grad():
            getattr(enc, f"encoder_{name}").embeddings.normal_()
    x = torch.rand(50, 3) * 2 - 1
    out = enc(x)
    assert out.shape == (50, 36) and enc.get_out_dim() == 36
    assert torch.equal(out[:, :12], enc.encoder_xy(x[:, [0, 1]]))
    assert torch.equal(out[:, 12:24], enc.encoder_yz(x[:, [1, 2]]))
    assert torch.equal(out[:, 24:], enc.encoder_xz(x[:, [0, 2]]))
    keys = set(enc.state_dict())
    assert keys == {f"encoder_{p}.{k}" for p in ("xy", "yz", "xz") for k in ("embeddings", "offsets")}


def test_backends_report_and_fall_back_with_one_warning(monkeypatch):
    available = backends.available_backends()
    assert available["torch"] is True and set(available) == {"torch", "tinycudann", "cuda_ext"}
    if available["tinycudann"] or available["cuda_ext"]:
        pytest.skip("a fast backend is installed here; the fallback path is not reachable")
    monkeypatch.setattr(backends, "_WARNED", set())
    assert backends.resolve_backend("auto") == "torch"
    with pytest.warns(UserWarning, match="tinycudann"):
        assert backends.resolve_backend("tinycudann") == "torch"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert backends.resolve_backend("tinycudann") == "torch"  # warned only once
        assert isinstance(make_hash_grid_2d("tinycudann"), HashGrid2D)
    with pytest.raises(ValueError, match="unknown backend"):
        backends.resolve_backend("vulkan")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_matches_cpu():
    torch.manual_seed(5)
    grid = HashGrid2D()
    with torch.no_grad():
        grid.embeddings.normal_()
    x = torch.rand(10000, 2) * 2 - 1
    cpu = grid(x)
    gpu = grid.cuda()(x.cuda()).cpu()
    assert torch.allclose(cpu, gpu, atol=1e-5), f"max abs diff {float((cpu - gpu).abs().max())}"
