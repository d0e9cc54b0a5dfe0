"""Spherical-harmonics view-direction encoding, degree 4 (16 values), with instant-ngp's sign convention.

    sh = SHEncoding()
    view = sh(directions)             # [M, 3] unit vectors -> [M, 16]

No learnable state. Coefficients: reference-synctalk.md 5.2.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn


class SHEncoding(nn.Module):
    """Real spherical harmonics up to degree 4 (l = 0..3) of a normalised direction."""

    def __init__(self, degree: int = 4):
        super().__init__()
        if degree != 4:
            raise ValueError(f"only degree 4 (16 coefficients, as in the original) is implemented, got {degree}")
        self.degree = degree

    def get_out_dim(self) -> int:
        """degree ** 2 = 16."""
        return self.degree ** 2

    def forward(self, directions: Tensor) -> Tensor:
        """Encode directions.

        Args:
            directions: [M, 3] directions (normalised here; zero vectors give the constant term only).

        Returns:
            [M, 16] SH values.
        """
        d = nn.functional.normalize(directions, dim=-1)
        x, y, z = d.unbind(-1)
        xx, yy, zz = x * x, y * y, z * z
        xy, yz, xz = x * y, y * z, x * z
        return torch.stack([
            torch.full_like(x, 0.28209479177387814),
            -0.48860251190291987 * y,
            0.48860251190291987 * z,
            -0.48860251190291987 * x,
            1.0925484305920792 * xy,
            -1.0925484305920792 * yz,
            0.94617469575755997 * zz - 0.31539156525251999,
            -1.0925484305920792 * xz,
            0.54627421529603959 * (xx - yy),
            0.59004358992664352 * y * (-3.0 * xx + yy),
            2.8906114426405538 * xy * z,
            0.45704579946446572 * y * (1.0 - 5.0 * zz),
            0.3731763325901154 * z * (5.0 * zz - 3.0),
            0.45704579946446572 * x * (1.0 - 5.0 * zz),
            1.4453057213202769 * z * (xx - yy),
            0.59004358992664352 * x * (-xx + 3.0 * yy),
        ], dim=-1)
