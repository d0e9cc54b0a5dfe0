"""PyTorch twin of the 2-D multiresolution hash-grid kernel (``triton_hashgrid.py``): one plane of the tri-plane
encoder, all levels at once, in plain vectorised PyTorch. It is the reference the kernel is tested against and the
implementation that runs wherever the kernel does not (the CPU).

Layout and lookup follow the original grid encoder exactly (reference-synctalk.md 5.1): level ``l`` has a table of
``entries[l]`` rows starting at ``offsets[l]`` in one ``embeddings`` table ``[offsets[-1], C]``; a point ``u`` in the
unit square is looked up at ``pos = u * scale_l + 0.5``, its 4 corners are indexed densely (``g0 + g1 * stride_l``)
when the level fits in its table and by the XOR hash ``g0 ^ (g1 * 2654435761)`` (uint32) otherwise, modulo
``entries[l]``; the 4 rows are mixed bilinearly. Points outside the unit square encode to 0. The per-level
constants come from ``synctalk_lib.nerf.hashgrid.level_table``.

    features = hash_grid_2d_torch(u, embeddings, offsets, scales, strides, dense)   # [N, 2] -> [N, L * C]
"""
from __future__ import annotations

import torch
from torch import Tensor

HASH_PRIME = 2654435761
"""Multiplier of the second coordinate in the spatial hash (the first coordinate's prime is 1)."""


def _corner_indices(g0: Tensor, g1: Tensor, offsets: Tensor, strides: Tensor, dense: Tensor) -> Tensor:
    """Table rows of the 4 corners (00, 10, 01, 11) of each point's cell at every level.

    Dense levels must come first (they do: the dense test only gets harder as levels get finer). Hashed levels
    whose table size E is a power of two use ``(g0 ^ g1 * (P mod E)) & (E - 1)``, which equals the uint32 hash
    modulo E and stays inside int32; other sizes take the general int64 route.

    Args:
        g0, g1: [N, L] int32 lower cell corner per level.
        offsets: [L + 1] first row per level (+ total); strides: [L] dense strides; dense: [L] bool.

    Returns:
        [4, N, L] row indices into ``embeddings`` (corner-major), int32 (int64 for tables beyond int32).
    """
    n, levels = g0.shape
    num_dense = int(dense.sum())
    entries = (offsets[1:] - offsets[:-1]).long()
    index_dtype = torch.int32 if int(offsets[-1]) < 2 ** 31 else torch.int64
    index = torch.empty(4, n, levels, dtype=index_dtype, device=g0.device)
    if num_dense:
        stride = strides[:num_dense].to(index_dtype)
        base = (g0[:, :num_dense] + g1[:, :num_dense] * stride).to(index_dtype) + offsets[:num_dense].to(index_dtype)
        index[0, :, :num_dense] = base
        torch.add(base, 1, out=index[1, :, :num_dense])
        torch.add(base, stride, out=index[2, :, :num_dense])
        torch.add(index[2, :, :num_dense], 1, out=index[3, :, :num_dense])
    if num_dense < levels:
        h0, h1 = g0[:, num_dense:], g1[:, num_dense:]
        sizes = entries[num_dense:]
        first = offsets[num_dense:-1].to(index_dtype)
        pow2 = bool(((sizes & (sizes - 1)) == 0).all())
        largest_g1 = int(h1.max()) + 1 if h1.numel() else 0
        if pow2 and largest_g1 * int(sizes.max()) < 2 ** 31:
            prime = (HASH_PRIME % sizes).to(g0.dtype)
            mask = (sizes - 1).to(g0.dtype)
            b0 = h1 * prime
            b1 = b0 + prime
            a1 = h0 + 1
            for corner, (a, b) in enumerate(((h0, b0), (a1, b0), (h0, b1), (a1, b1))):
                index[corner, :, num_dense:] = ((a ^ b) & mask).to(index_dtype) + first
        else:
            a0, a1 = h0.long(), h0.long() + 1
            b0 = (h1.long() * HASH_PRIME) & 0xFFFFFFFF
            b1 = ((h1.long() + 1) * HASH_PRIME) & 0xFFFFFFFF
            for corner, (a, b) in enumerate(((a0, b0), (a1, b0), (a0, b1), (a1, b1))):
                index[corner, :, num_dense:] = (torch.remainder(a ^ b, sizes) + first).to(index_dtype)
    return index


def _bilinear_weights(fx: Tensor, fy: Tensor) -> Tensor:
    """[N, L] fractions -> [4, N, L] bilinear weights of the corners (00, 10, 01, 11)."""
    gx, gy = 1 - fx, 1 - fy
    return torch.stack((gx * gy, fx * gy, gx * fy, fx * fy))


def _gather(embeddings: Tensor, index: Tensor) -> Tensor:
    """[T, C] rows at [4, N, L] indices -> [4, N, L, C] (or [4, N, L] when C == 1).

    ``index_select`` on the flat index is several times faster on CPU than advanced indexing (which first widens
    an int32 index to int64)."""
    rows = torch.index_select(embeddings, 0, index.reshape(-1))
    return rows.view(index.shape) if embeddings.shape[1] == 1 else rows.view(*index.shape, embeddings.shape[1])


class _HashGrid2DFunction(torch.autograd.Function):
    """Forward: gather + bilinear mix of all levels at once (corner-major, few temporaries). Backward: one 1-D
    ``index_add`` into the table and, only when asked for, the analytic derivative for the input points."""

    @staticmethod
    def forward(ctx, u: Tensor, embeddings: Tensor, offsets: Tensor, scales: Tensor, strides: Tensor,
                dense: Tensor) -> Tensor:
        inside = ((u >= 0) & (u <= 1)).all(dim=-1)
        u_c = u.clamp(0.0, 1.0).to(embeddings.dtype)
        pos = u_c[:, None, :] * scales.to(u_c.dtype)[None, :, None] + 0.5  # [N, L, 2]
        cell = torch.floor(pos)
        frac = pos - cell
        cell = cell.to(torch.int32)
        fx, fy = frac[..., 0].contiguous(), frac[..., 1].contiguous()
        index = _corner_indices(cell[..., 0], cell[..., 1], offsets, strides, dense)  # [4, N, L]
        weights = _bilinear_weights(fx, fy)
        rows = _gather(embeddings, index)
        n, levels = fx.shape
        channels = embeddings.shape[1]
        if channels == 1:
            out = (rows * weights).sum(dim=0)  # [N, L]
        else:
            out = (rows * weights.unsqueeze(-1)).sum(dim=0)  # [N, L, C]
        out = out * inside.view(n, *([1] * (out.dim() - 1))).to(out.dtype)
        ctx.save_for_backward(index, fx, fy, inside, scales)
        ctx.table_shape = embeddings.shape
        ctx.embeddings = embeddings if ctx.needs_input_grad[0] else None
        return out.reshape(n, levels * channels)

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        index, fx, fy, inside, scales = ctx.saved_tensors
        n, levels = fx.shape
        rows_total, channels = ctx.table_shape
        grad = (grad_out.reshape(n, levels, channels) * inside[:, None, None].to(grad_out.dtype))
        grad_u = grad_emb = None
        if ctx.needs_input_grad[1]:
            weights = _bilinear_weights(fx, fy).to(grad.dtype)  # [4, N, L]
            contrib = weights.unsqueeze(-1) * grad.unsqueeze(0)  # [4, N, L, C]
            flat = index.unsqueeze(-1) * channels + torch.arange(channels, dtype=index.dtype, device=index.device)
            grad_emb = torch.zeros(rows_total * channels, dtype=grad.dtype, device=grad.device)
            grad_emb.index_add_(0, flat.reshape(-1), contrib.reshape(-1))  # 1-D: much faster than row-wise on CPU
            grad_emb = grad_emb.view(rows_total, channels)
        if ctx.needs_input_grad[0]:
            rows = _gather(ctx.embeddings, index).view(*index.shape, channels)  # [4, N, L, C]
            fxc, fyc = fx.unsqueeze(-1), fy.unsqueeze(-1)
            d_fx = (1 - fyc) * (rows[1] - rows[0]) + fyc * (rows[3] - rows[2])  # [N, L, C]
            d_fy = (1 - fxc) * (rows[2] - rows[0]) + fxc * (rows[3] - rows[1])
            scale = scales.to(grad.dtype)[None, :, None]
            gx = (grad * d_fx * scale).sum(dim=(1, 2))
            gy = (grad * d_fy * scale).sum(dim=(1, 2))
            grad_u = torch.stack((gx, gy), dim=-1)
        return grad_u, grad_emb, None, None, None, None


def hash_grid_2d_torch(u: Tensor, embeddings: Tensor, offsets: Tensor, scales: Tensor, strides: Tensor,
                       dense: Tensor) -> Tensor:
    """Encode 2-D points with a multiresolution hash grid (the PyTorch reference; differentiable in u and rows).

    Args:
        u: [N, 2] points in the unit square (coordinates outside [0, 1] encode to 0, with zero gradient).
        embeddings: [T, C] table rows of all levels.
        offsets: [L + 1] int first row of each level (+ total).
        scales: [L] float lookup scales.
        strides: [L] int dense row strides.
        dense: [L] bool, True for densely indexed levels (they come first).

    Returns:
        [N, L * C] features, level-major (level 0's C channels first), dtype of ``embeddings``.
    """
    return _HashGrid2DFunction.apply(u, embeddings, offsets, scales, strides, dense)


def hash_grid_2d_reference(u: Tensor, embeddings: Tensor, offsets: Tensor, scales: Tensor, strides: Tensor,
                           dense: Tensor) -> Tensor:
    """Literal, slow transcription of the lookup (uint32 hash in int64, ``remainder``, autograd) used by the tests
    to check the fast path. Same arguments and result as :func:`hash_grid_2d_torch`."""
    num_levels, channels = scales.shape[0], embeddings.shape[1]
    inside = ((u >= 0) & (u <= 1)).all(dim=-1)
    u = u.clamp(0.0, 1.0).to(embeddings.dtype)
    pos = u[:, None, :] * scales.to(u.dtype)[None, :, None] + 0.5
    cell = torch.floor(pos)
    frac = pos - cell
    g0, g1 = cell.long()[..., 0], cell.long()[..., 1]
    c0 = torch.stack((g0, g0 + 1, g0, g0 + 1), dim=-1)
    c1 = torch.stack((g1, g1, g1 + 1, g1 + 1), dim=-1)
    dense_index = c0 + c1 * strides.long()[None, :, None]
    hashed_index = torch.bitwise_xor(c0, (c1 * HASH_PRIME) & 0xFFFFFFFF)
    index = torch.where(dense[None, :, None], dense_index, hashed_index)
    entries = (offsets[1:] - offsets[:-1]).long()
    index = torch.remainder(index, entries[None, :, None]) + offsets[:-1].long()[None, :, None]
    fx, fy = frac[..., 0], frac[..., 1]
    weights = torch.stack(((1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy), dim=-1)
    out = (weights.unsqueeze(-1) * embeddings[index]).sum(dim=2) * inside[:, None, None].to(embeddings.dtype)
    return out.reshape(u.shape[0], num_levels * channels)
