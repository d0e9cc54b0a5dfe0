"""Triton kernels for the 2-D multiresolution hash grid (one plane of the tri-plane encoder).

Computes exactly what its PyTorch twin :func:`cuda_ext.hashgrid.hash_grid_2d_torch` computes (same table layout, same
lookup rule, same weights; reference-synctalk.md 5.1), for all levels in one launch:

- forward: program ``(block of points, level)``; each point's cell corners are indexed densely
  (``g0 + g1 * stride``) or by the uint32 XOR hash ``g0 ^ (g1 * 2654435761)``, modulo the level's table size; the 4
  rows are mixed bilinearly; points outside the unit square give 0.
- backward: the same walk, adding ``weight * grad`` into the table gradient with atomic adds (float32 accumulator,
  cast to the table's dtype at the end), and — only when the points need it — the analytic derivative with
  respect to the points.

Positions and weights are computed in float32 even for float16 tables (the PyTorch twin rounds the points to
float16 first, which moves cells at fine levels; the parity tests compare float16 against the float32 twin).
Float32 atomics make the table gradient's summation order, and so its last bits, vary between GPU runs. Kernels
are compiled with ``enable_fp_fusion=False`` so ``u * scale + 0.5`` rounds exactly like PyTorch (a fused
multiply-add could move a point across a cell boundary and pick other rows).

Importing this module imports Triton; nothing imports it before the kernels are asked for.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from .hashgrid import hash_grid_2d_torch

HASH_PRIME = tl.constexpr(2654435761)
"""Multiplier of the second coordinate in the spatial hash (a constexpr so kernels can read it)."""
BLOCK = 128
NUM_WARPS = 4  # 128 threads: one lane per point of a block


@triton.jit
def _bilinear(fx, fy):
    """Bilinear weights of the corners 00, 10, 01, 11."""
    return (1.0 - fx) * (1.0 - fy), fx * (1.0 - fy), (1.0 - fx) * fy, fx * fy


@triton.jit
def _corners(u_ptr, offsets_ptr, scales_ptr, strides_ptr, dense_ptr, n_points, n_levels, C: tl.constexpr,
             BLOCK: tl.constexpr):
    """Shared front of forward and backward for program (block of points, level): point ids, inside mask,
    fractions, the 4 absolute row indices, their bilinear weights and each point's first output element."""
    pid = tl.program_id(0)
    level = tl.program_id(1)
    idx = pid * BLOCK + tl.arange(0, BLOCK)
    valid = idx < n_points
    ux = tl.load(u_ptr + idx * 2, mask=valid, other=0.0).to(tl.float32)
    uy = tl.load(u_ptr + idx * 2 + 1, mask=valid, other=0.0).to(tl.float32)
    inside = valid & (ux >= 0.0) & (ux <= 1.0) & (uy >= 0.0) & (uy <= 1.0)
    ux = tl.minimum(tl.maximum(ux, 0.0), 1.0)
    uy = tl.minimum(tl.maximum(uy, 0.0), 1.0)

    scale = tl.load(scales_ptr + level).to(tl.float32)
    stride = tl.load(strides_ptr + level).to(tl.uint32)
    first = tl.load(offsets_ptr + level).to(tl.int64)
    size = (tl.load(offsets_ptr + level + 1).to(tl.int64) - first).to(tl.uint32)
    dense = tl.load(dense_ptr + level).to(tl.int32) != 0

    px = ux * scale + 0.5
    py = uy * scale + 0.5
    fx0 = tl.floor(px)
    fy0 = tl.floor(py)
    fx = px - fx0
    fy = py - fy0
    x0 = fx0.to(tl.int32).to(tl.uint32)
    y0 = fy0.to(tl.int32).to(tl.uint32)
    x1 = x0 + 1
    y1 = y0 + 1
    prime = tl.full([BLOCK], HASH_PRIME, tl.uint32)
    hy0 = y0 * prime  # uint32 arithmetic wraps like the original's
    hy1 = y1 * prime
    r00 = tl.where(dense, x0 + y0 * stride, x0 ^ hy0) % size
    r10 = tl.where(dense, x1 + y0 * stride, x1 ^ hy0) % size
    r01 = tl.where(dense, x0 + y1 * stride, x0 ^ hy1) % size
    r11 = tl.where(dense, x1 + y1 * stride, x1 ^ hy1) % size
    w00, w10, w01, w11 = _bilinear(fx, fy)
    out_row = idx.to(tl.int64) * (n_levels * C) + level * C
    return (idx, valid, inside, fx, fy, scale,
            first + r00.to(tl.int64), first + r10.to(tl.int64), first + r01.to(tl.int64), first + r11.to(tl.int64),
            w00, w10, w01, w11, out_row)


@triton.jit
def _rows(emb_ptr, r00, r10, r01, r11, c, inside, C: tl.constexpr):
    """Channel ``c`` of the 4 corner rows, in float32 (0 outside the square)."""
    return (tl.load(emb_ptr + r00 * C + c, mask=inside, other=0.0).to(tl.float32),
            tl.load(emb_ptr + r10 * C + c, mask=inside, other=0.0).to(tl.float32),
            tl.load(emb_ptr + r01 * C + c, mask=inside, other=0.0).to(tl.float32),
            tl.load(emb_ptr + r11 * C + c, mask=inside, other=0.0).to(tl.float32))


@triton.jit
def _hashgrid_fwd_kernel(u_ptr, emb_ptr, out_ptr, offsets_ptr, scales_ptr, strides_ptr, dense_ptr, n_points,
                         n_levels, C: tl.constexpr, BLOCK: tl.constexpr):
    idx, valid, inside, fx, fy, scale, r00, r10, r01, r11, w00, w10, w01, w11, out_row = _corners(
        u_ptr, offsets_ptr, scales_ptr, strides_ptr, dense_ptr, n_points, n_levels, C, BLOCK)
    for c in tl.static_range(C):
        e00, e10, e01, e11 = _rows(emb_ptr, r00, r10, r01, r11, c, inside, C)
        value = w00 * e00 + w10 * e10 + w01 * e01 + w11 * e11
        value = tl.where(inside, value, 0.0)
        tl.store(out_ptr + out_row + c, value.to(out_ptr.dtype.element_ty), mask=valid)


@triton.jit
def _hashgrid_bwd_kernel(u_ptr, emb_ptr, grad_out_ptr, grad_emb_ptr, grad_u_ptr, offsets_ptr, scales_ptr,
                         strides_ptr, dense_ptr, n_points, n_levels, C: tl.constexpr, NEED_EMB: tl.constexpr,
                         NEED_U: tl.constexpr, BLOCK: tl.constexpr):
    idx, valid, inside, fx, fy, scale, r00, r10, r01, r11, w00, w10, w01, w11, out_row = _corners(
        u_ptr, offsets_ptr, scales_ptr, strides_ptr, dense_ptr, n_points, n_levels, C, BLOCK)
    dx = tl.zeros([BLOCK], dtype=tl.float32)
    dy = tl.zeros([BLOCK], dtype=tl.float32)
    for c in tl.static_range(C):
        g = tl.load(grad_out_ptr + out_row + c, mask=inside, other=0.0).to(tl.float32)
        if NEED_EMB:
            tl.atomic_add(grad_emb_ptr + r00 * C + c, w00 * g, mask=inside, sem="relaxed")
            tl.atomic_add(grad_emb_ptr + r10 * C + c, w10 * g, mask=inside, sem="relaxed")
            tl.atomic_add(grad_emb_ptr + r01 * C + c, w01 * g, mask=inside, sem="relaxed")
            tl.atomic_add(grad_emb_ptr + r11 * C + c, w11 * g, mask=inside, sem="relaxed")
        if NEED_U:
            e00, e10, e01, e11 = _rows(emb_ptr, r00, r10, r01, r11, c, inside, C)
            dx += g * ((1.0 - fy) * (e10 - e00) + fy * (e11 - e01))
            dy += g * ((1.0 - fx) * (e01 - e00) + fx * (e11 - e10))
    if NEED_U:
        tl.atomic_add(grad_u_ptr + idx * 2, dx * scale, mask=inside, sem="relaxed")
        tl.atomic_add(grad_u_ptr + idx * 2 + 1, dy * scale, mask=inside, sem="relaxed")


class _HashGrid2DTriton(torch.autograd.Function):
    """Autograd wrapper of the two kernels (inputs validated by :func:`hash_grid_2d`)."""

    @staticmethod
    def forward(ctx, u: Tensor, embeddings: Tensor, offsets: Tensor, scales: Tensor, strides: Tensor,
                dense: Tensor) -> Tensor:
        # u: [N, 2] float32 contiguous; embeddings: [T, C] float32/float16 contiguous; RETURN: [N, L * C]
        n = u.shape[0]
        levels = scales.shape[0]
        channels = embeddings.shape[1]
        out = torch.empty(n, levels * channels, dtype=embeddings.dtype, device=u.device)
        if n > 0:
            grid = (triton.cdiv(n, BLOCK), levels)
            _hashgrid_fwd_kernel[grid](u, embeddings, out, offsets, scales, strides, dense, n, levels,
                                       C=channels, BLOCK=BLOCK, num_warps=NUM_WARPS, enable_fp_fusion=False)
        ctx.save_for_backward(u, embeddings, offsets, scales, strides, dense)
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        u, embeddings, offsets, scales, strides, dense = ctx.saved_tensors
        need_u, need_emb = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        n = u.shape[0]
        levels = scales.shape[0]
        channels = embeddings.shape[1]
        grad_out = grad_out.contiguous()
        grad_emb = torch.zeros(embeddings.shape, dtype=torch.float32, device=u.device) if need_emb else None
        grad_u = torch.zeros(n, 2, dtype=torch.float32, device=u.device) if need_u else None
        if n > 0 and (need_u or need_emb):
            grid = (triton.cdiv(n, BLOCK), levels)
            dummy = torch.empty(1, dtype=torch.float32, device=u.device)
            _hashgrid_bwd_kernel[grid](u, embeddings, grad_out, grad_emb if need_emb else dummy,
                                       grad_u if need_u else dummy, offsets, scales, strides, dense, n, levels,
                                       C=channels, NEED_EMB=need_emb, NEED_U=need_u, BLOCK=BLOCK,
                                       num_warps=NUM_WARPS, enable_fp_fusion=False)
        if grad_emb is not None and grad_emb.dtype != embeddings.dtype:
            grad_emb = grad_emb.to(embeddings.dtype)
        return grad_u, grad_emb, None, None, None, None


def hash_grid_2d_triton(u: Tensor, embeddings: Tensor, offsets: Tensor, scales: Tensor, strides: Tensor,
                        dense: Tensor) -> Tensor:
    """Encode 2-D points with the Triton kernels (same contract as ``hash_grid_2d_torch``).

    Args:
        u: [N, 2] points in the unit square (outside -> 0, zero gradient); any float dtype (computed in float32).
        embeddings: [T, C] float32 or float16 table rows of all levels.
        offsets: [L + 1] int first row of each level (+ total).
        scales: [L] float lookup scales.
        strides: [L] int dense row strides.
        dense: [L] bool, True for densely indexed levels.

    Returns:
        [N, L * C] level-major features in the dtype of ``embeddings``; differentiable in ``u`` and
        ``embeddings``.
    """
    if u.dim() != 2 or u.shape[1] != 2:
        raise ValueError(f"hash_grid_2d: u must be [N, 2], got {tuple(u.shape)}")
    if embeddings.dim() != 2 or embeddings.dtype not in (torch.float32, torch.float16):
        raise ValueError(f"hash_grid_2d: embeddings must be a [T, C] float32/float16 table, got "
                         f"{tuple(embeddings.shape)} {embeddings.dtype}")
    if not (offsets.shape[0] == scales.shape[0] + 1 == strides.shape[0] + 1 == dense.shape[0] + 1):
        raise ValueError("hash_grid_2d: offsets must have one more entry than scales, strides and dense")
    device = embeddings.device
    u32 = u.to(device=device, dtype=torch.float32).contiguous()
    return _HashGrid2DTriton.apply(u32, embeddings.contiguous(), offsets.to(device).contiguous(),
                                   scales.to(device, torch.float32).contiguous(), strides.to(device).contiguous(),
                                   dense.to(device).contiguous())


def probe(kind: str) -> str | None:
    """Run forward and backward (float32 and float16 tables) on a tiny grid; None when they match the twin."""
    device = torch.device("cuda" if kind == "cuda" else "cpu")
    gen = torch.Generator().manual_seed(0)
    # the level table of 3 levels, resolutions 4..16, 32 rows each: one dense level, then two hashed ones
    offsets = torch.tensor([0, 32, 64, 96], dtype=torch.int32, device=device)
    scales = torch.tensor([3.0, 7.0, 15.0], dtype=torch.float32, device=device)
    strides = torch.tensor([5, 9, 17], dtype=torch.int64, device=device)
    dense = torch.tensor([True, False, False], device=device)
    u = (torch.rand(64, 2, generator=gen) * 1.2 - 0.1).to(device).requires_grad_(True)
    emb = torch.randn(96, 1, generator=gen).to(device).requires_grad_(True)
    weights = torch.randn(64, 3, generator=gen).to(device)
    fast = hash_grid_2d_triton(u, emb, offsets, scales, strides, dense)
    grad_u, grad_emb = torch.autograd.grad((fast * weights).sum(), (u, emb))
    ref = hash_grid_2d_torch(u, emb, offsets, scales, strides, dense)
    ref_u, ref_emb = torch.autograd.grad((ref * weights).sum(), (u, emb))
    half = hash_grid_2d_triton(u.detach(), emb.detach().half().requires_grad_(True), offsets, scales, strides, dense)
    half.float().sum().backward()
    for name, a, b, tol in (("output", fast, ref, 1e-5), ("table gradient", grad_emb, ref_emb, 1e-5),
                            ("point gradient", grad_u, ref_u, 1e-3), ("float16 output", half.float(), ref, 1e-2)):
        if not torch.allclose(a, b, rtol=tol, atol=tol * float(b.detach().abs().max().clamp(min=1e-6))):
            return f"hash grid {name}: max abs diff {float((a - b).detach().abs().max()):.3g}"
    return None
