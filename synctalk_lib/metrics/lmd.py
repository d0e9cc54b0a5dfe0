"""Mouth landmark distance (LMD): how far the lip shape of rendered frames is from the real frames.

For each frame pair the 40 MediaPipe lip landmarks (outer and inner contour) are detected on both 8-bit images,
expressed in pixels of a 512 x 512 frame, and each set is centred on its own mean (so head translation does not
count); LMD is the mean Euclidean distance between corresponding points, averaged over frames. The original
evaluation uses the 20 FAN mouth points (48-67) instead of MediaPipe's 40, so values are comparable in scale but
not identical (reference-synctalk.md 11).

    result = mouth_landmark_distance(rendered_uint8, real_uint8, models_dirs)
    result.lmd, result.per_frame, result.skipped
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np

from synctalk_lib.metrics.lipsync import JAW_OPEN

LIP_LANDMARKS: tuple[int, ...] = (0, 13, 14, 17, 37, 39, 40, 61, 78, 80, 81, 82, 84, 87, 88, 91, 95, 146, 178, 181,
                                  185, 191, 267, 269, 270, 291, 308, 310, 311, 312, 314, 317, 318, 321, 324, 375, 402,
                                  405, 409, 415)
"""MediaPipe face-mesh indices of the lips (the points of ``FACE_LANDMARKS_LIPS``)."""
REFERENCE_SIZE = 512


def lmd_from_landmarks(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Per-frame LMD of landmark sets.

    Args:
        pred, target: [F, P, 2] (or [P, 2]) point coordinates in pixels.

    Returns:
        [F] mean distance between the mean-centred point sets.
    """
    a = np.asarray(pred, dtype=np.float64)
    b = np.asarray(target, dtype=np.float64)
    if a.ndim == 2:
        a, b = a[None], b[None]
    if a.shape != b.shape:
        raise ValueError(f"landmark sets differ in shape: {a.shape} vs {b.shape}")
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    return np.linalg.norm(a - b, axis=-1).mean(axis=1)


@dataclass(frozen=True)
class LmdResult:
    """LMD over a set of frame pairs."""

    lmd: float
    """Mean over the frames where both faces were found (NaN if none)."""
    per_frame: tuple[float, ...]
    """LMD of each frame (NaN where a face was missing)."""
    skipped: tuple[int, ...] = field(default=())
    """Frame numbers where no face was found in the rendered or the real frame."""
    pred_jaw_open: tuple[float, ...] = field(default=())
    """MediaPipe ``jawOpen`` of each rendered frame, from the same detection (NaN where no face was found)."""
    target_jaw_open: tuple[float, ...] = field(default=())
    """``jawOpen`` of each real frame."""


def _to_uint8(frames) -> np.ndarray:
    array = np.asarray(frames.detach().cpu() if hasattr(frames, "detach") else frames)
    if array.dtype != np.uint8:
        array = (np.clip(array, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return array[None] if array.ndim == 3 else array


def lip_landmarks(frames, landmarker, size: int = REFERENCE_SIZE) -> list[np.ndarray | None]:
    """Lip landmarks of each frame, in pixels of a ``size x size`` frame.

    Args:
        frames: [F, H, W, 3] uint8 (or float in [0, 1]).
        landmarker: an open :class:`synctalk_lib.face.landmarker.FaceLandmarker` in image mode.

    Returns:
        One [40, 2] array per frame, or None where no face was found.
    """
    return [lips for lips, _ in mouth_measures(frames, landmarker, size)]


def mouth_measures(frames, landmarker, size: int = REFERENCE_SIZE) -> list[tuple[np.ndarray | None, float]]:
    """Lip landmarks (as :func:`lip_landmarks`) and the ``jawOpen`` blendshape of each frame, from one detection.

    Returns:
        One ``([40, 2] or None, jawOpen or NaN)`` per frame.
    """
    array = _to_uint8(frames)
    height, width = array.shape[1:3]
    scale = np.array([size / width, size / height])
    out: list[tuple[np.ndarray | None, float]] = []
    for frame in array:
        result = landmarker.detect(frame)
        if result is None:
            out.append((None, float("nan")))
            continue
        lips = result.landmarks[list(LIP_LANDMARKS), :2].astype(np.float64) * scale
        names = result.blendshape_names
        out.append((lips, float(result.blendshapes[names.index(JAW_OPEN)]) if JAW_OPEN in names else float("nan")))
    return out


def mouth_landmark_distance(pred, target, models_dirs: Iterable[Path | str] | None = None,
                            size: int = REFERENCE_SIZE, landmarker=None) -> LmdResult:
    """LMD between rendered and real frames with MediaPipe lip landmarks.

    Args:
        pred, target: [F, H, W, 3] uint8 or float in [0, 1] (same shape).
        models_dirs: folders searched for ``face_landmarker.task``.
        size: frame size the distances are expressed in (512 like the paper).
        landmarker: an already open image-mode FaceLandmarker (else one is opened and closed here).

    Returns:
        LmdResult.
    """
    a, b = _to_uint8(pred), _to_uint8(target)
    if a.shape != b.shape:
        raise ValueError(f"rendered frames {a.shape} and real frames {b.shape} must have the same shape")
    if landmarker is None:
        from synctalk_lib.face.landmarker import FaceLandmarker

        with FaceLandmarker.open(models_dirs, mode="image") as opened:
            return mouth_landmark_distance(a, b, size=size, landmarker=opened)
    ma = mouth_measures(a, landmarker, size)
    mb = mouth_measures(b, landmarker, size)
    per_frame, skipped = [], []
    for i, ((x, _), (y, _)) in enumerate(zip(ma, mb)):
        if x is None or y is None:
            per_frame.append(float("nan"))
            skipped.append(i)
        else:
            per_frame.append(float(lmd_from_landmarks(x, y)[0]))
    valid = [v for v in per_frame if v == v]
    return LmdResult(lmd=float(np.mean(valid)) if valid else float("nan"), per_frame=tuple(per_frame),
                     skipped=tuple(skipped), pred_jaw_open=tuple(j for _, j in ma),
                     target_jaw_open=tuple(j for _, j in mb))
