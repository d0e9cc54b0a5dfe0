"""2-D multiresolution hash grid (one plane of the tri-plane encoder), in plain vectorised PyTorch.

Layout and lookup follow the original grid encoder exactly (reference-synctalk.md 5.1), so official weights can be
imported: level ``l`` has a table of ``entries[l]`` rows starting at ``offsets[l]`` in one ``embeddings`` parameter
``[offsets[-1], level_dim]``; a point is looked up at ``pos = u * scale_l + 0.5`` with ``u = (x + bound) / 2 bound``,
its 4 corners are indexed densely (``g0 + g1 * (res_l + 1)``) when the level fits in its table and by the XOR hash
``g0 ^ (g1 * 2654435761)`` (uint32) otherwise, modulo ``entries[l]``; the 4 rows are mixed bilinearly. Points with a
coordinate outside ``[-bound, bound]`` encode to 0. All levels are computed at once (one gather of
``[N, levels, 4]`` rows), so there is no Python loop over levels.

    grid = HashGrid2D(levels=12, level_dim=1, base_resolution=64, log2_hashmap_size=14, desired_resolution=512)
    features = grid(points_2d)        # [N, 2] in [-1, 1] -> [N, 12]
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from synctalk_lib.nerf import backends

HASH_PRIME = 2654435761
"""Multiplier of the second coordinate in the spatial hash (the first coordinate's prime is 1)."""


@dataclass(frozen=True)
class LevelTable:
    """Per-level constants of a hash grid (all lists have one entry per level)."""

    resolutions: tuple[int, ...]
    """Nominal resolution ``ceil(base * per_level_scale ** l)`` (sizes the tables)."""
    entries: tuple[int, ...]
    """Table rows of the level: ``min(2 ** log2_hashmap_size, (res + 1) ** 2)`` rounded up to a multiple of 8."""
    offsets: tuple[int, ...]
    """First row of each level in ``embeddings``, plus the total row count at the end (``levels + 1`` values)."""
    scales: tuple[float, ...]
    """Lookup scale ``2 ** (l * log2(per_level_scale)) * base - 1``, evaluated in float32 like the original."""
    strides: tuple[int, ...]
    """Row stride of the dense index: ``ceil(scale) + 2``."""
    dense: tuple[bool, ...]
    """True where the level is indexed densely (``stride ** 2 <= entries``), False where it is hashed."""
    per_level_scale: float


def level_table(levels: int, base_resolution: int, log2_hashmap_size: int, desired_resolution: float) -> LevelTable:
    """Compute the level table of a 2-D hash grid (reference table in reference-synctalk.md 5.1).

    Args:
        levels: number of levels L.
        base_resolution: resolution of level 0.
        log2_hashmap_size: log2 of the maximum rows per level.
        desired_resolution: resolution of level L-1.

    Returns:
        The table; e.g. the default grid has ``offsets == (0, 4232, 10480, ..., 147200, 163584)``.
    """
    per_level_scale = float(np.exp2(np.log2(desired_resolution / base_resolution) / max(levels - 1, 1)))
    max_entries = 2 ** log2_hashmap_size
    resolutions, entries, offsets, scales, strides, dense = [], [], [0], [], [], []
    log2_scale = np.float32(np.log2(np.float32(per_level_scale)))
    for level in range(levels):
        resolution = int(math.ceil(base_resolution * per_level_scale ** level))
        rows = min(max_entries, (resolution + 1) ** 2)
        rows = int(math.ceil(rows / 8) * 8)
        scale = np.float32(np.exp2(np.float32(level) * log2_scale)) * np.float32(base_resolution) - np.float32(1.0)
        stride = int(math.ceil(float(scale))) + 2  # (ceil(scale) + 1) + 1 grid points per row
        resolutions.append(resolution)
        entries.append(rows)
        offsets.append(offsets[-1] + rows)
        scales.append(float(scale))
        strides.append(stride)
        dense.append(stride * stride <= rows)
    return LevelTable(tuple(resolutions), tuple(entries), tuple(offsets), tuple(scales), tuple(strides),
                      tuple(dense), per_level_scale)


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


class HashGrid2D(nn.Module):
    """One 2-D multiresolution hash grid with the original's table layout (state: ``embeddings``, ``offsets``).

    Args:
        levels, level_dim, base_resolution, log2_hashmap_size, desired_resolution: grid shape (NerfConfig).
        bound: inputs are in ``[-bound, bound]^2``.
        backend: "torch" or "cuda_ext" (same layout, same weights) — "auto"/"tinycudann" resolve through
            :func:`synctalk_lib.nerf.backends.resolve_backend`; tinycudann has its own class (TcnnHashGrid2D).
    """

    embeddings: Tensor
    """[T, level_dim] float32 rows of all levels (T = offsets[-1], 163584 for the default grid)."""
    offsets: Tensor
    """[levels + 1] int32 first row of each level, then T."""

    def __init__(self, levels: int = 12, level_dim: int = 1, base_resolution: int = 64, log2_hashmap_size: int = 14,
                 desired_resolution: float = 512, bound: float = 1.0, backend: str = "torch"):
        super().__init__()
        self.levels = levels
        self.level_dim = level_dim
        self.bound = float(bound)
        self.table = level_table(levels, base_resolution, log2_hashmap_size, desired_resolution)
        self.embeddings = nn.Parameter(torch.empty(self.table.offsets[-1], level_dim))
        self.register_buffer("offsets", torch.tensor(self.table.offsets, dtype=torch.int32))
        self.register_buffer("scales", torch.tensor(self.table.scales, dtype=torch.float32), persistent=False)
        self.register_buffer("strides", torch.tensor(self.table.strides, dtype=torch.int64), persistent=False)
        self.register_buffer("dense", torch.tensor(self.table.dense, dtype=torch.bool), persistent=False)
        num_dense = sum(self.table.dense)
        if any(self.table.dense[num_dense:]):
            raise ValueError(f"hash grid levels must be dense first, then hashed; got {self.table.dense}")
        self.backend = "cuda_ext" if backend == "cuda_ext" and backends.resolve_backend(backend) == backend else "torch"
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Embeddings uniform in [-1e-4, 1e-4] (original init)."""
        nn.init.uniform_(self.embeddings, -1e-4, 1e-4)

    def get_out_dim(self) -> int:
        """Output width: levels * level_dim."""
        return self.levels * self.level_dim

    def forward(self, x: Tensor) -> Tensor:
        """Encode points.

        Args:
            x: [N, 2] points in ``[-bound, bound]^2``.

        Returns:
            [N, levels * level_dim] features (0 for points outside the square).
        """
        u = (x + self.bound) / (2.0 * self.bound)
        kernels = backends.kernels_for(u.device, self.backend)
        return kernels.hash_grid_2d(u, self.embeddings, self.offsets, self.scales, self.strides, self.dense)

    def extra_repr(self) -> str:
        return (f"levels={self.levels}, level_dim={self.level_dim}, rows={self.table.offsets[-1]}, "
                f"resolutions={self.table.resolutions[0]}..{self.table.resolutions[-1]}, backend={self.backend}")


class TcnnHashGrid2D(nn.Module):
    """tiny-cuda-nn's 2-D ``HashGrid`` with the same level count, base resolution, table size and scale factor.

    What matches the reference grid: inputs (``[-bound, bound]^2``, 0 outside), output width and level-major
    order, per-level scale and resolution, the hash primes and bilinear interpolation. What does not: tcnn
    strides dense levels by ``res`` instead of ``res + 1`` and sizes its tables accordingly, and keeps all
    parameters in one flat ``params`` vector — so outputs agree only in distribution, weights cannot be
    exchanged with :class:`HashGrid2D` (or the official checkpoints), and models trained with this backend must
    be rendered with it. Needs CUDA.
    """

    def __init__(self, levels: int = 12, level_dim: int = 1, base_resolution: int = 64, log2_hashmap_size: int = 14,
                 desired_resolution: float = 512, bound: float = 1.0):
        super().__init__()
        tcnn = backends.tcnn_module()
        if tcnn is None:
            raise RuntimeError("tinycudann is not usable here (package missing or no CUDA GPU)")
        self.levels = levels
        self.level_dim = level_dim
        self.bound = float(bound)
        per_level_scale = float(np.exp2(np.log2(desired_resolution / base_resolution) / max(levels - 1, 1)))
        self.encoding = tcnn.Encoding(
            n_input_dims=2,
            encoding_config={"otype": "HashGrid", "n_levels": levels, "n_features_per_level": level_dim,
                             "log2_hashmap_size": log2_hashmap_size, "base_resolution": base_resolution,
                             "per_level_scale": per_level_scale, "interpolation": "Linear"},
            dtype=torch.float32,
        )
        with torch.no_grad():
            self.encoding.params.uniform_(-1e-4, 1e-4)

    def get_out_dim(self) -> int:
        return self.levels * self.level_dim

    def forward(self, x: Tensor) -> Tensor:
        """[N, 2] points in ``[-bound, bound]^2`` -> [N, levels * level_dim] float32."""
        u = (x + self.bound) / (2.0 * self.bound)
        inside = ((u >= 0) & (u <= 1)).all(dim=-1, keepdim=True)
        out = self.encoding(u.clamp(0.0, 1.0).contiguous()).float()
        return out * inside.to(out.dtype)


def make_hash_grid_2d(backend: str = "auto", *, levels: int = 12, level_dim: int = 1, base_resolution: int = 64,
                      log2_hashmap_size: int = 14, desired_resolution: float = 512,
                      bound: float = 1.0) -> nn.Module:
    """Build a 2-D hash grid for the requested backend (resolved with :func:`backends.resolve_backend`).

    Args:
        backend: "auto" | "torch" | "tinycudann" | "cuda_ext".
        levels, level_dim, base_resolution, log2_hashmap_size, desired_resolution, bound: see :class:`HashGrid2D`.
    """
    resolved = backends.resolve_backend(backend)
    shape = dict(levels=levels, level_dim=level_dim, base_resolution=base_resolution,
                 log2_hashmap_size=log2_hashmap_size, desired_resolution=desired_resolution, bound=bound)
    if resolved == "tinycudann":
        return TcnnHashGrid2D(**shape)
    return HashGrid2D(backend=resolved, **shape)
