"""Peak signal-to-noise ratio: ``-10 log10(mean((pred - target)^2))`` per frame on [0, 1] images, averaged.

The one PSNR of the code base: evaluation, the trainer's held-out PSNR and the training log all go through
:func:`psnr_from_mse`.
"""
from __future__ import annotations

import math

import numpy as np
from torch import Tensor

from synctalk_lib.metrics._images import matching_frames

MAX_PSNR_DB = 100.0
"""Cap where a finite PSNR must be logged (training log, held-out PSNR): an MSE of 1e-10."""


def psnr_from_mse(mse: float | Tensor, max_db: float = math.inf) -> float:
    """PSNR in dB of a mean squared error on [0, 1] images (``inf`` for 0, or at most ``max_db``).

    Args:
        mse: the mean squared error (a float or a one-element tensor).
        max_db: cap for (near-)identical images, e.g. 100 where a finite number must be logged.
    """
    value = float(mse)
    if value < 0 or value != value:
        raise ValueError(f"a mean squared error must be >= 0, got {value}")
    if value == 0:
        return float(max_db)
    return min(-10.0 * math.log10(value), float(max_db))


def psnr_per_frame(pred: Tensor | np.ndarray, target: Tensor | np.ndarray) -> list[float]:
    """PSNR of each frame in dB (``inf`` for identical frames).

    Args:
        pred, target: [H, W, 3] or [B, H, W, 3] float in [0, 1] (or uint8).
    """
    a, b = matching_frames(pred, target)
    mse = ((a - b) ** 2).flatten(1).mean(dim=1)
    return [psnr_from_mse(m) for m in mse]


def psnr(pred: Tensor | np.ndarray, target: Tensor | np.ndarray) -> float:
    """Mean over frames of the per-frame PSNR in dB (as the original evaluation averages frames)."""
    values = psnr_per_frame(pred, target)
    return float(sum(values) / len(values))
