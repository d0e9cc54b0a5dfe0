"""Synthetic MediaPipe-style landmarks: a face oval on an ellipse, lips and eyes placed consistently."""
from __future__ import annotations

import numpy as np

from synctalk_lib.face import indices


def synthetic_landmarks(cx: float = 64.0, cy: float = 64.0, rx: float = 30.0, ry: float = 40.0,
                        mouth_open: float = 4.0) -> np.ndarray:
    """[478, 3] float32 landmarks of an upright face centred at (cx, cy) with the given oval radii."""
    pts = np.zeros((478, 3), np.float32)
    pts[:, 0], pts[:, 1] = cx, cy
    oval = list(indices.FACE_OVAL)
    for i, idx in enumerate(oval):
        angle = np.deg2rad(-90.0 + 360.0 * i / len(oval))
        pts[idx, :2] = cx + rx * np.cos(angle), cy + ry * np.sin(angle)
    mouth_y = cy + 0.5 * ry
    for group, half_height in ((indices.LIPS_OUTER, mouth_open + 3.0), (indices.LIPS_INNER, mouth_open)):
        for i, idx in enumerate(group):
            angle = 2 * np.pi * i / len(group)
            pts[idx, :2] = cx + 0.35 * rx * np.cos(angle), mouth_y + half_height * np.sin(angle)
    for group, ex in ((indices.LEFT_EYE, cx + 0.4 * rx), (indices.RIGHT_EYE, cx - 0.4 * rx)):
        for i, idx in enumerate(group):
            angle = 2 * np.pi * i / len(group)
            pts[idx, :2] = ex + 0.15 * rx * np.cos(angle), cy - 0.2 * ry + 0.05 * ry * np.sin(angle)
    pts[indices.NOSE_TIP, :2] = cx, cy + 0.15 * ry
    return pts
