"""The person's silhouette against a static background, without face-parsing weights.

A pixel that differs clearly from the clean background image is probably the person; the face (landmark hull) is
certainly the person. GrabCut refines that seed with colour models of both sides, at a reduced resolution for speed.
"""
from __future__ import annotations

import numpy as np

from synctalk_lib.errors import require
from synctalk_lib.face import indices


def _cv2():
    return require("cv2", "Silhouette masks (OpenCV GrabCut)", "opencv-contrib-python")


def difference_map(frame: np.ndarray, background: np.ndarray, blur: int = 5) -> np.ndarray:
    """``[H, W]`` float32 0..1: per-pixel largest channel difference to the background, lightly blurred."""
    cv2 = _cv2()
    a = frame.astype(np.float32) / (255.0 if frame.dtype == np.uint8 else 1.0)
    b = background.astype(np.float32) / (255.0 if background.dtype == np.uint8 else 1.0)
    diff = np.abs(a - b).max(axis=2)
    return cv2.GaussianBlur(diff, (blur | 1, blur | 1), 0)


def person_silhouette(frame: np.ndarray, background: np.ndarray, landmarks: np.ndarray | None = None, *,
                      threshold: float = 0.08, work_size: int = 256, iterations: int = 3) -> np.ndarray:
    """Silhouette mask ``[H, W]`` float32 in {0, 1} of the person in ``frame``.

    Args:
        frame: [H, W, 3] RGB (uint8 or float 0..1).
        background: [H, W, 3] clean background of the same view.
        landmarks: [478, 2+] face landmarks of this frame (pixels) or None; the face oval is marked as certainly
            foreground, which anchors GrabCut when the face colour is close to the background.
        threshold: background difference above which a pixel probably belongs to the person.
        work_size: longest side GrabCut runs at (the result is resized back).
    """
    cv2 = _cv2()
    height, width = frame.shape[:2]
    scale = min(1.0, work_size / max(height, width))
    size = (max(8, int(round(width * scale))), max(8, int(round(height * scale))))
    small = cv2.resize(np.ascontiguousarray(_as_uint8(frame)), size, interpolation=cv2.INTER_AREA)
    diff = cv2.resize(difference_map(frame, background), size, interpolation=cv2.INTER_AREA)

    seed = np.where(diff > threshold, cv2.GC_PR_FGD, cv2.GC_PR_BGD).astype(np.uint8)
    seed[diff < threshold / 3] = cv2.GC_BGD
    if landmarks is not None:
        oval = np.round(landmarks[list(indices.FACE_OVAL), :2] * scale).astype(np.int32)
        cv2.fillPoly(seed, [oval], int(cv2.GC_FGD))
    fg_seed = (seed == cv2.GC_FGD) | (seed == cv2.GC_PR_FGD)
    if fg_seed.all() or not fg_seed.any():
        return np.asarray(cv2.resize(fg_seed.astype(np.float32), (width, height)) > 0.5, np.float32)

    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.grabCut(small, seed, None, bgd, fgd, iterations, cv2.GC_INIT_WITH_MASK)
    person = ((seed == cv2.GC_FGD) | (seed == cv2.GC_PR_FGD)).astype(np.uint8)
    person = _largest_component(person)
    full = cv2.resize(person.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
    return (full > 0.5).astype(np.float32)


def _as_uint8(frame: np.ndarray) -> np.ndarray:
    if frame.dtype == np.uint8:
        return frame
    return (np.clip(frame, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _largest_component(mask: np.ndarray) -> np.ndarray:
    """Keep the biggest connected blob: specks where the background flickers are not the person."""
    cv2 = _cv2()
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if count <= 2:
        return mask
    biggest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    return (labels == biggest).astype(np.uint8)
