"""Structural similarity (Wang et al. 2004): 11x11 Gaussian window (sigma 1.5), K1 = 0.01, K2 = 0.03, data range 1,
computed per channel over the valid region (no padding) and averaged over pixels, channels, then frames."""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from synctalk_lib.metrics._images import matching_frames

WINDOW = 11
SIGMA = 1.5
K1, K2 = 0.01, 0.03


def gaussian_window(size: int = WINDOW, sigma: float = SIGMA) -> Tensor:
    """[size] float64 normalised 1-D Gaussian."""
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x ** 2) / (2 * sigma ** 2))
    return g / g.sum()


def _blur(x: Tensor, g: Tensor) -> Tensor:
    """Separable valid filtering of [B, C, H, W] with the 1-D kernel g."""
    c = x.shape[1]
    x = torch.nn.functional.conv2d(x, g.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return torch.nn.functional.conv2d(x, g.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def ssim_per_frame(pred: Tensor | np.ndarray, target: Tensor | np.ndarray, data_range: float = 1.0) -> list[float]:
    """SSIM of each frame.

    Args:
        pred, target: [H, W, 3] or [B, H, W, 3] float in [0, 1] (or uint8); frames at least 11 x 11.
        data_range: value range of the images.
    """
    a, b = matching_frames(pred, target)
    if min(a.shape[1:3]) < WINDOW:
        raise ValueError(f"SSIM needs frames of at least {WINDOW}x{WINDOW} pixels, got {tuple(a.shape[1:3])}")
    a, b = a.permute(0, 3, 1, 2), b.permute(0, 3, 1, 2)
    g = gaussian_window()
    c1, c2 = (K1 * data_range) ** 2, (K2 * data_range) ** 2
    mu_a, mu_b = _blur(a, g), _blur(b, g)
    var_a = _blur(a * a, g) - mu_a ** 2
    var_b = _blur(b * b, g) - mu_b ** 2
    cov = _blur(a * b, g) - mu_a * mu_b
    ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return [float(v) for v in ssim_map.flatten(1).mean(dim=1)]


def ssim(pred: Tensor | np.ndarray, target: Tensor | np.ndarray, data_range: float = 1.0) -> float:
    """Mean SSIM over frames."""
    values = ssim_per_frame(pred, target, data_range)
    return float(sum(values) / len(values))


__all__ = ["ssim", "ssim_per_frame", "gaussian_window"]
