"""Parity of the Triton hash-grid kernels with their PyTorch twin ``cuda_ext.hashgrid`` (outputs and gradients).

Runs in CI on the CPU through Triton's interpreter (TRITON_INTERPRET=1, set here before Triton is imported) and on
the GPU where one is present. Sizes are tiny because the interpreter is slow.
"""
from __future__ import annotations


import pytest
import torch

from cuda_ext_testing import DEVICE, assert_close, require_triton

pytestmark = pytest.mark.usefixtures("one_thread")

require_triton()

from cuda_ext.hashgrid import hash_grid_2d_reference, hash_grid_2d_torch  # noqa: E402
from cuda_ext.triton_hashgrid import hash_grid_2d_triton  # noqa: E402
from synctalk_lib.nerf.hashgrid import level_table  # noqa: E402


def table_tensors(table):
    return (torch.tensor(table.offsets, dtype=torch.int32, device=DEVICE),
            torch.tensor(table.scales, dtype=torch.float32, device=DEVICE),
            torch.tensor(table.strides, dtype=torch.int64, device=DEVICE),
            torch.tensor(table.dense, dtype=torch.bool, device=DEVICE))


def random_points(n: int, gen: torch.Generator) -> torch.Tensor:
    """Points mostly inside the unit square, some outside (they must encode to 0), some exactly on the border."""
    u = torch.rand(n, 2, generator=gen) * 1.2 - 0.1
    u[:4] = torch.tensor([[0.0, 0.0], [1.0, 1.0], [0.0, 1.0], [1.0, 0.5]])
    return u.to(DEVICE)


@pytest.mark.parametrize("level_dim", [1, 2])
def test_original_grid_forward_and_gradients_match_reference(level_dim):
    """The official tri-plane grid (12 levels, 64..512, 2^14 rows: dense and hashed levels)."""
    gen = torch.Generator().manual_seed(42)
    table = level_table(12, 64, 14, 512)
    assert table.offsets[-1] == 163584 and any(table.dense) and not all(table.dense)
    offsets, scales, strides, dense = table_tensors(table)
    u = random_points(256, gen).requires_grad_(True)
    emb = (torch.randn(table.offsets[-1], level_dim, generator=gen)).to(DEVICE).requires_grad_(True)
    upstream = torch.randn(256, 12 * level_dim, generator=gen).to(DEVICE)

    fast = hash_grid_2d_triton(u, emb, offsets, scales, strides, dense)
    ref = hash_grid_2d_torch(u, emb, offsets, scales, strides, dense)
    assert_close(fast, ref, 1e-5, "features")
    outside = ((u < 0) | (u > 1)).any(dim=1)
    assert outside.any() and bool((fast[outside] == 0).all()), "points outside the square must encode to 0"

    g_fast = torch.autograd.grad((fast * upstream).sum(), (u, emb))
    g_ref = torch.autograd.grad((ref * upstream).sum(), (u, emb))
    assert_close(g_fast[1], g_ref[1], 1e-5, "table gradient")
    assert_close(g_fast[0], g_ref[0], 1e-4, "point gradient")  # scale ~511 amplifies float32 rounding


def test_matches_literal_reference_with_non_power_of_two_hashed_table():
    """A hashed level whose table size is not a power of two takes the uint32 ``%`` path (no bit-mask shortcut)."""
    gen = torch.Generator().manual_seed(1)
    scales = torch.tensor([7.0, 40.0], device=DEVICE)
    strides = torch.tensor([10, 43], dtype=torch.int64, device=DEVICE)
    dense = torch.tensor([True, False], device=DEVICE)
    offsets = torch.tensor([0, 104, 104 + 1000], dtype=torch.int32, device=DEVICE)  # 1000 rows, hashed
    u = random_points(200, gen)
    emb = torch.randn(1104, 1, generator=gen).to(DEVICE)
    fast = hash_grid_2d_triton(u, emb, offsets, scales, strides, dense)
    assert_close(fast, hash_grid_2d_reference(u, emb, offsets, scales, strides, dense), 1e-5, "features")


def test_float16_table_matches_float32_reference():
    """fp16 features: positions stay float32 in the kernel, so it matches the float32 reference to fp16 precision
    (the PyTorch twin itself rounds the points to fp16 first and is further off at fine levels)."""
    gen = torch.Generator().manual_seed(7)
    table = level_table(6, 16, 10, 128)
    offsets, scales, strides, dense = table_tensors(table)
    u = random_points(128, gen)
    emb32 = torch.randn(table.offsets[-1], 1, generator=gen).to(DEVICE)
    emb16 = emb32.half().requires_grad_(True)
    fast = hash_grid_2d_triton(u, emb16, offsets, scales, strides, dense)
    assert fast.dtype == torch.float16
    ref = hash_grid_2d_torch(u, emb16.detach().float().requires_grad_(True), offsets, scales, strides, dense)
    assert_close(fast, ref, 1e-3, "fp16 features")
    upstream = torch.randn(fast.shape, generator=gen).to(DEVICE)
    (g16,) = torch.autograd.grad((fast.float() * upstream).sum(), (emb16,))
    emb_ref = emb16.detach().float().requires_grad_(True)
    (g32,) = torch.autograd.grad((hash_grid_2d_torch(u, emb_ref, offsets, scales, strides, dense) * upstream).sum(),
                                 (emb_ref,))
    assert g16.dtype == torch.float16
    assert_close(g16, g32, 1e-3, "fp16 table gradient")


def test_empty_input_and_kernel_set():
    from synctalk_lib.nerf import backends

    table = level_table(3, 4, 6, 16)
    offsets, scales, strides, dense = table_tensors(table)
    emb = torch.randn(table.offsets[-1], 1).to(DEVICE)
    empty = hash_grid_2d_triton(torch.zeros(0, 2, device=DEVICE), emb, offsets, scales, strides, dense)
    assert empty.shape == (0, 3)
    ok, reason = backends.availability("hashgrid", DEVICE)
    assert ok, reason
    u = random_points(32, torch.Generator().manual_seed(3))
    assert_close(backends.triton_kernels().hash_grid_2d(u, emb, offsets, scales, strides, dense),
                 hash_grid_2d_torch(u, emb, offsets, scales, strides, dense), 1e-5, "kernel set's hash grid")


def test_rejects_bad_shapes_with_a_clear_message():
    table = level_table(2, 4, 6, 8)
    offsets, scales, strides, dense = table_tensors(table)
    with pytest.raises(ValueError, match=r"u must be \[N, 2\]"):
        hash_grid_2d_triton(torch.zeros(4, 3, device=DEVICE), torch.zeros(table.offsets[-1], 1, device=DEVICE),
                            offsets, scales, strides, dense)


def test_availability_probe_works_under_inference_mode():
    """ComfyUI runs nodes under torch.inference_mode(); the first availability question may come from there."""
    from synctalk_lib.nerf import backends

    backends.reset()
    with torch.inference_mode():
        ok, reason = backends.availability("all", DEVICE)
    assert ok, reason
