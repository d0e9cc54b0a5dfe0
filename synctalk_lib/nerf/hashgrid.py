"""2-D multiresolution hash grid (one plane of the tri-plane encoder): its level table and modules.

Layout and lookup follow the original grid encoder exactly (reference-synctalk.md 5.1), so official weights can be
imported: level ``l`` has a table of ``entries[l]`` rows starting at ``offsets[l]`` in one ``embeddings`` parameter
``[offsets[-1], level_dim]``; a point is looked up at ``pos = u * scale_l + 0.5`` with ``u = (x + bound) / 2 bound``,
its 4 corners are indexed densely (``g0 + g1 * (res_l + 1)``) when the level fits in its table and by the XOR hash
``g0 ^ (g1 * 2654435761)`` (uint32) otherwise, modulo ``entries[l]``; the 4 rows are mixed bilinearly. Points with a
coordinate outside ``[-bound, bound]`` encode to 0. The lookup itself is a kernel (``cuda_ext/hashgrid.py``, the
PyTorch twin, or its Triton version), chosen by :mod:`synctalk_lib.nerf.backends`.

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
