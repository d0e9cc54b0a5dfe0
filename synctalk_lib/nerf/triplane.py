"""Tri-plane hash encoding (paper Eq. 10-11): three 2-D hash grids on the xy, yz and xz planes, concatenated.

    encoder = TriPlaneEncoding.from_config(config)
    enc_x = encoder(points)           # [M, 3] in [-bound, bound]^3 -> [M, 36]

State-dict keys ``encoder_xy.*``, ``encoder_yz.*``, ``encoder_xz.*`` match the official checkpoint's.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from synctalk_lib.nerf.config import NerfConfig
from synctalk_lib.nerf.hashgrid import make_hash_grid_2d

PLANES: tuple[tuple[str, list[int]], ...] = (("xy", [0, 1]), ("yz", [1, 2]), ("xz", [0, 2]))
"""Plane names and the coordinate pair each one sees, in output order."""


class TriPlaneEncoding(nn.Module):
    """Encode 3-D points by three 2-D multiresolution hash grids (xy, yz, xz), features concatenated in that order."""

    def __init__(self, levels: int = 12, level_dim: int = 1, base_resolution: int = 64, log2_hashmap_size: int = 14,
                 desired_resolution: float = 512, bound: float = 1.0, backend: str = "auto"):
        super().__init__()
        for name, _ in PLANES:
            grid = make_hash_grid_2d(backend, levels=levels, level_dim=level_dim, base_resolution=base_resolution,
                                     log2_hashmap_size=log2_hashmap_size, desired_resolution=desired_resolution,
                                     bound=bound)
            self.add_module(f"encoder_{name}", grid)
        self.plane_dim = levels * level_dim

    @classmethod
    def from_config(cls, config: NerfConfig) -> "TriPlaneEncoding":
        """The tri-plane of a model config (finest resolution = desired_resolution * bound, like the original)."""
        return cls(levels=config.levels, level_dim=config.level_dim, base_resolution=config.base_resolution,
                   log2_hashmap_size=config.log2_hashmap_size,
                   desired_resolution=config.desired_resolution * config.bound, bound=config.bound,
                   backend=config.backend)

    def get_out_dim(self) -> int:
        """3 * levels * level_dim (36 by default)."""
        return 3 * self.plane_dim

    def forward(self, x: Tensor) -> Tensor:
        """Encode points.

        Args:
            x: [M, 3] points in NGP space (``[-bound, bound]^3``).

        Returns:
            [M, 3 * levels * level_dim] features ``[xy, yz, xz]``.
        """
        return torch.cat([getattr(self, f"encoder_{name}")(x[:, axes]) for name, axes in PLANES], dim=-1)
