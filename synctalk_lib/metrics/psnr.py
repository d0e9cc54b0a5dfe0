"""Peak signal-to-noise ratio: ``-10 log10(mean((pred - target)^2))`` per frame on [0, 1] images, averaged."""
from __future__ import annotations

import math

import numpy as np
from torch import Tensor

from synctalk_lib.metrics._images import matching_frames


def psnr_per_frame(pred: Tensor | np.ndarray, target: Tensor | np.ndarray) -> list[float]:
    """PSNR of each frame in dB (``inf`` for identical frames).

    Args:
        pred, target: [H, W, 3] or [B, H, W, 3] float in [0, 1] (or uint8).
    """
    a, b = matching_frames(pred, target)
    mse = ((a - b) ** 2).flatten(1).mean(dim=1)
    return [math.inf if float(m) == 0 else -10.0 * math.log10(float(m)) for m in mse]


def psnr(pred: Tensor | np.ndarray, target: Tensor | np.ndarray) -> float:
    """Mean over frames of the per-frame PSNR in dB (as the original evaluation averages frames)."""
    values = psnr_per_frame(pred, target)
    return float(sum(values) / len(values))
