"""Sharpness of rendered faces against the real frames: how much fine detail there is, and whether it is the real one.

Two numbers per frame pair, both measured on the grey image (ITU-R BT.601 luma) inside the face box:

* **Laplacian-variance ratio** ``var(L(output)) / var(L(real))`` with ``L`` the 4-neighbour Laplacian: the amount
  of fine detail relative to the real frame (1 = as much as the real frame, 0.2 = much softer). A sharpening filter
  raises it without adding any real detail, so on its own it is not a quality score.
* **High-pass correlation**: Pearson r between the output's and the real frame's high-pass bands (image minus a
  Gaussian blur of ``sigma`` pixels, at the frames' own size) over the box's pixels: 1 when the detail is the real
  frame's detail in the right places, near 0 for detail that is made up or misplaced. It does not depend on the
  band's amplitude: sharpening a render whose fine detail is missing (rendered at a low resolution and upscaled)
  raises the Laplacian ratio several-fold and leaves this correlation where it was (``tests/test_sharpness.py``).
  Detail that is only attenuated (e.g. by a Gaussian blur) is partly recovered by sharpening, and then the
  correlation rises a little: that detail is the real one.

The face box is the bounding box of the real frame's face oval (MediaPipe face-mesh landmarks of the subject's face
track), so both images are measured on the same pixels. Over frames the ratio is summarised by its median (ratios
are skewed) and the correlation by its mean.

Only numpy is needed here (no OpenCV, no MediaPipe): a caller with precomputed landmarks or boxes can use it
anywhere.

    boxes = face_boxes(track.landmarks[frames], height, width)
    result = sharpness(rendered, real, boxes)     # [F, H, W, 3] uint8 or float 0..1
    result.laplacian_ratio, result.highpass_correlation
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from synctalk_lib.face.indices import FACE_OVAL
from synctalk_lib.metrics.lipsync import pearson

Box = tuple[int, int, int, int]
"""(x0, y0, x1, y1) pixels, end exclusive."""
HIGHPASS_SIGMA = 2.0
"""Gaussian sigma (pixels at the frames' size) of the low-pass removed to get the high-pass band."""
LUMA = (0.299, 0.587, 0.114)
MIN_BOX_SIDE = 8


@dataclass(frozen=True)
class SharpnessResult:
    """Sharpness of output frames against real frames, in the face box."""

    laplacian_ratio: float
    """Median over frames of var(Laplacian(output)) / var(Laplacian(real)); NaN when no frame could be measured."""
    highpass_correlation: float
    """Mean over frames of the Pearson r of the high-pass bands; NaN when no frame could be measured."""
    per_frame_ratio: tuple[float, ...]
    per_frame_correlation: tuple[float, ...]
    sigma: float


def grey(image: np.ndarray) -> np.ndarray:
    """``[H, W]`` float64 luma in 0..1 of an ``[H, W, 3]`` RGB image (uint8, or float in 0..1) or a grey ``[H, W]``."""
    array = np.asarray(image)
    scale = 1.0 / 255.0 if array.dtype == np.uint8 else 1.0
    array = array.astype(np.float64) * scale
    if array.ndim == 2:
        return array
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"expected an [H, W, 3] RGB or [H, W] grey image, got shape {array.shape}")
    return array @ np.asarray(LUMA)


def laplacian(image: np.ndarray) -> np.ndarray:
    """4-neighbour Laplacian of a grey image over its interior (``[H-2, W-2]``, no padding)."""
    g = np.asarray(image, np.float64)
    return g[:-2, 1:-1] + g[2:, 1:-1] + g[1:-1, :-2] + g[1:-1, 2:] - 4.0 * g[1:-1, 1:-1]


def laplacian_variance(image: np.ndarray) -> float:
    """Variance of the Laplacian of a grey image (the classic focus measure)."""
    return float(laplacian(image).var())


def gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur of a grey image (kernel radius ``ceil(3 sigma)``, edges reflected)."""
    radius = max(1, int(math.ceil(3.0 * sigma)))
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-x * x / (2.0 * sigma * sigma))
    kernel /= kernel.sum()
    out = np.asarray(image, np.float64)
    for axis in (0, 1):
        padded = np.pad(out, [(radius, radius) if a == axis else (0, 0) for a in (0, 1)], mode="reflect")
        size = out.shape[axis]
        out = sum(w * np.take(padded, np.arange(k, k + size), axis=axis) for k, w in enumerate(kernel))
    return out


def high_pass(image: np.ndarray, sigma: float = HIGHPASS_SIGMA) -> np.ndarray:
    """The detail band of a grey image: the image minus its Gaussian blur."""
    g = np.asarray(image, np.float64)
    return g - gaussian_blur(g, sigma)


def face_box(landmarks: np.ndarray, height: int, width: int) -> Box:
    """Bounding box of the face oval of one frame's ``[478, 2+]`` MediaPipe landmarks (pixels), clipped to the frame."""
    points = np.asarray(landmarks, np.float64)[list(FACE_OVAL), :2]
    x0, y0 = np.floor(points.min(axis=0)).astype(int)
    x1, y1 = np.ceil(points.max(axis=0)).astype(int) + 1
    return (int(np.clip(x0, 0, width)), int(np.clip(y0, 0, height)), int(np.clip(x1, 0, width)),
            int(np.clip(y1, 0, height)))


def face_boxes(landmarks: np.ndarray, height: int, width: int) -> list[Box]:
    """:func:`face_box` of each frame of ``[F, 478, 2+]`` landmarks."""
    return [face_box(points, height, width) for points in np.asarray(landmarks)]


def _pair(output: np.ndarray, real: np.ndarray, box: Box | None) -> tuple[np.ndarray, np.ndarray, Box]:
    a, b = grey(output), grey(real)
    if a.shape != b.shape:
        raise ValueError(f"output frame {a.shape} and real frame {b.shape} must have the same size")
    return a, b, box if box is not None else (0, 0, a.shape[1], a.shape[0])


def _ratio(output_grey: np.ndarray, real_grey: np.ndarray) -> float:
    real_var = laplacian_variance(real_grey)
    return laplacian_variance(output_grey) / real_var if real_var > 0 else float("nan")


def laplacian_ratio(output: np.ndarray, real: np.ndarray, box: Box | None = None) -> float:
    """var(Laplacian(output)) / var(Laplacian(real)) of one frame pair inside ``box`` (None: the whole frame);
    NaN where the box is too small or the real frame has no detail there."""
    a, b, (x0, y0, x1, y1) = _pair(output, real, box)
    if min(x1 - x0, y1 - y0) < MIN_BOX_SIDE:
        return float("nan")
    return _ratio(a[y0:y1, x0:x1], b[y0:y1, x0:x1])


def frame_sharpness(output: np.ndarray, real: np.ndarray, box: Box | None = None,
                    sigma: float = HIGHPASS_SIGMA) -> tuple[float, float]:
    """``(laplacian ratio, high-pass correlation)`` of one frame pair inside ``box`` (None: the whole frame).

    NaN where the box is too small or the real frame has no detail there.
    """
    a, b, (x0, y0, x1, y1) = _pair(output, real, box)
    if min(x1 - x0, y1 - y0) < MIN_BOX_SIDE:
        return float("nan"), float("nan")
    ratio = _ratio(a[y0:y1, x0:x1], b[y0:y1, x0:x1])
    # Blur a margin around the box, so pixels near its edge see their real neighbours (as in a whole-frame blur).
    m = max(1, int(math.ceil(3.0 * sigma)))
    top, left = max(0, y0 - m), max(0, x0 - m)
    bottom, right = min(a.shape[0], y1 + m), min(a.shape[1], x1 + m)
    inner = (slice(y0 - top, y1 - top), slice(x0 - left, x1 - left))
    band_a = high_pass(a[top:bottom, left:right], sigma)[inner]
    band_b = high_pass(b[top:bottom, left:right], sigma)[inner]
    return ratio, pearson(band_a, band_b)


def sharpness(output: np.ndarray, real: np.ndarray, boxes: Sequence[Box] | None = None,
              sigma: float = HIGHPASS_SIGMA) -> SharpnessResult:
    """Sharpness of ``[F, H, W, 3]`` output frames against the real frames (see the module docstring).

    Args:
        output, real: frames of the same shape (uint8, or float in 0..1); ``[H, W, 3]`` for one frame.
        boxes: one face box per frame (:func:`face_boxes`); None measures the whole frames.
        sigma: high-pass Gaussian sigma in pixels at the frames' size.
    """
    out_frames, real_frames = np.asarray(output), np.asarray(real)
    if out_frames.ndim == 3:
        out_frames, real_frames = out_frames[None], real_frames[None]
    if out_frames.shape != real_frames.shape:
        raise ValueError(f"output frames {out_frames.shape} and real frames {real_frames.shape} must match")
    if boxes is not None and len(boxes) != len(out_frames):
        raise ValueError(f"{len(boxes)} face boxes for {len(out_frames)} frames")
    pairs = [frame_sharpness(o, r, None if boxes is None else boxes[k], sigma)
             for k, (o, r) in enumerate(zip(out_frames, real_frames))]
    ratios = tuple(p[0] for p in pairs)
    correlations = tuple(p[1] for p in pairs)
    return SharpnessResult(laplacian_ratio=_finite_stat(ratios, np.median),
                           highpass_correlation=_finite_stat(correlations, np.mean),
                           per_frame_ratio=ratios, per_frame_correlation=correlations, sigma=float(sigma))


def _finite_stat(values: Sequence[float], stat) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return float(stat(finite)) if finite else float("nan")


__all__ = ["Box", "SharpnessResult", "face_box", "face_boxes", "frame_sharpness", "gaussian_blur", "grey",
           "high_pass", "laplacian", "laplacian_ratio", "laplacian_variance", "sharpness"]
