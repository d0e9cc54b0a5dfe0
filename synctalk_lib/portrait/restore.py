"""Detail restoration: real detail from the reference frame wherever the render must look like it.

Each output frame is rendered at the pose of a reference frame, and (with the default expression replay) with that
frame's blinks and brows, so outside the region the audio drives the render is meant to equal the reference frame;
a NeRF trained for minutes only gets it softer. There the reference frame itself is used, blended in by how well
the render agrees with it at low frequencies, so a rendered change (another expression, a lower jaw) keeps the
render. Inside the audio-driven region the render's low frequencies (where the lips, teeth and jaw are) are always
kept, and only the high-frequency band is taken from the reference frame where the two agree, so the mouth's shape
and motion stay the render's own.

    restored = restore_detail(render, original, mouth, DetailSettings())

Per pixel, with ``L`` a Gaussian low-pass, ``H = x - L(x)`` and ``a = exp(-(|L(render) - L(original)| / tol)^2)``:

    outside the mouth:  a * original + (1 - a) * render
    inside the mouth:   L(render) + a * H(original) + (1 - a) * H(render)
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from synctalk_lib.errors import require


@dataclass(frozen=True)
class DetailSettings:
    """How detail is restored (pixel sizes at 512, scaled with the frame)."""

    sigma: float = 3.0
    """Gaussian sigma of the low-pass that separates shape (kept from the render) from detail."""
    tolerance: float = 0.06
    """Colour difference (0..1) of the low-passed images at which the render stops counting as 'the same'."""


def _scale(shape: tuple[int, ...]) -> float:
    return max(shape[0], shape[1]) / 512.0


def low_pass(image: np.ndarray, sigma: float) -> np.ndarray:
    cv2 = require("cv2", "Detail restoration (OpenCV)", "opencv-contrib-python")
    return cv2.GaussianBlur(image, (0, 0), max(sigma, 1e-3))


def agreement(render: np.ndarray, original: np.ndarray, settings: DetailSettings = DetailSettings(),
              scale: float | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(a [H, W], L(render), L(original))``: 1 where the two agree at low frequencies, towards 0 where not
    (``scale``: the frame's size / 512, default the image's own; give the frame's for a crop)."""
    sigma = settings.sigma * (_scale(render.shape) if scale is None else scale)
    low_r, low_o = low_pass(render, sigma), low_pass(original, sigma)
    diff = np.abs(low_r - low_o).max(axis=2)
    return np.exp(-np.square(diff / settings.tolerance)).astype(np.float32), low_r, low_o


def restore_detail(render: np.ndarray, original: np.ndarray, mouth: np.ndarray,
                   settings: DetailSettings = DetailSettings(), scale: float | None = None) -> np.ndarray:
    """The render with the reference frame's detail restored (see the module docstring).

    Args:
        render: [H, W, 3] float32 0..1, rendered at ``original``'s pose.
        original: [H, W, 3] float32 0..1, the reference frame.
        mouth: [H, W] float32 0..1, the region the audio drives (soft edges), where the shape stays the render's.
        scale: see :func:`agreement`.
    """
    a, low_r, low_o = agreement(render, original, settings, scale)
    a3 = a[..., None]
    outside = a3 * original + (1.0 - a3) * render
    inside = low_r + a3 * (original - low_o) + (1.0 - a3) * (render - low_r)
    m = np.clip(mouth, 0.0, 1.0)[..., None]
    return np.clip(m * inside + (1.0 - m) * outside, 0.0, 1.0).astype(np.float32)
