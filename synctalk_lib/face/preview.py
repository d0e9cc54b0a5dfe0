"""A preview of a face track for people: a few evenly spaced frames with the landmarks drawn and, beside each, the
7 expression coefficients as labelled bars, so a user can see at a glance that the mesh sits on the face and that
brows and blinks move."""
from __future__ import annotations

import numpy as np

from synctalk_lib.errors import require
from synctalk_lib.types import Clip, FaceTrack

FOUND_COLOR = (0, 255, 0)
"""RGB of landmarks MediaPipe found."""
FILLED_COLOR = (255, 64, 0)
"""RGB of landmarks filled in by gap interpolation."""
BAR_COLOR = (80, 170, 255)
PANEL_COLOR = (24, 24, 24)
TEXT_COLOR = (235, 235, 235)


def preview_indices(num_frames: int, count: int) -> list[int]:
    """``count`` frame indices spread evenly from the first to the last frame (fewer if the clip is shorter)."""
    count = max(1, min(int(count), num_frames))
    return sorted({int(round(i)) for i in np.linspace(0, num_frames - 1, count)})


def _scale_for(height: int, width: int, max_side: int) -> float:
    return min(1.0, max_side / max(height, width))


def draw_landmarks(image: np.ndarray, landmarks: np.ndarray, color: tuple[int, int, int]) -> None:
    """Draw points [P, 2+] (pixels, origin at the top-left pixel's corner) into ``image`` [H, W, 3] uint8 in place.

    Each point marks the pixel that contains it (``floor``) plus its 4 neighbours, so it stays visible at 1:1.
    """
    h, w = image.shape[:2]
    cols = np.floor(landmarks[:, 0]).astype(np.int64)
    rows = np.floor(landmarks[:, 1]).astype(np.int64)
    for dr, dc in ((0, 0), (-1, 0), (1, 0), (0, -1), (0, 1)):
        r, c = rows + dr, cols + dc
        keep = (r >= 0) & (r < h) & (c >= 0) & (c < w)
        image[r[keep], c[keep]] = color


def draw_coefficient_panel(height: int, values: np.ndarray, names: tuple[str, ...], title: str) -> np.ndarray:
    """A [height, panel_width, 3] uint8 panel: ``title`` then one labelled bar per coefficient (0..1 full width)."""
    cv2 = require("cv2", "Face track preview", "opencv-contrib-python")
    width = max(220, int(round(height * 0.5)))
    panel = np.empty((height, width, 3), np.uint8)
    panel[:] = PANEL_COLOR
    row = height / (len(names) + 1.5)
    font_scale = max(0.3, min(0.6, row / 60.0))
    thickness = 1
    pad = max(4, int(width * 0.03))
    cv2.putText(panel, title, (pad, int(row * 0.7)), cv2.FONT_HERSHEY_SIMPLEX, font_scale, TEXT_COLOR, thickness,
                cv2.LINE_AA)
    bar_h = max(3, int(row * 0.28))
    for k, (name, value) in enumerate(zip(names, values)):
        top = int(row * (k + 1.2))
        cv2.putText(panel, f"{name} {value:.2f}", (pad, top + int(row * 0.35)), cv2.FONT_HERSHEY_SIMPLEX,
                    font_scale * 0.85, TEXT_COLOR, thickness, cv2.LINE_AA)
        y0 = top + int(row * 0.5)
        full = width - 2 * pad
        cv2.rectangle(panel, (pad, y0), (pad + full, y0 + bar_h), (70, 70, 70), -1)
        length = int(round(float(np.clip(value, 0.0, 1.0)) * full))
        if length > 0:
            cv2.rectangle(panel, (pad, y0), (pad + length, y0 + bar_h), BAR_COLOR, -1)
    return panel


def draw_face_preview(clip: Clip, track: FaceTrack, num_frames: int = 8, *, max_side: int = 768) -> np.ndarray:
    """Preview images of ``track`` on ``clip``.

    Args:
        clip: the clip the track was captured from (same frame count and size).
        track: its face track.
        num_frames: how many evenly spaced frames to show.
        max_side: frames larger than this are scaled down (landmarks with them).

    Returns:
        [K, H', W' + panel, 3] float32 0..1 (a ComfyUI ``IMAGE`` batch), K <= ``num_frames``.
    """
    cv2 = require("cv2", "Face track preview", "opencv-contrib-python")
    if track.num_frames != clip.num_frames:
        raise ValueError(f"the face track has {track.num_frames} frames but the clip has {clip.num_frames}")
    scale = _scale_for(clip.height, clip.width, max_side)
    out_h, out_w = int(round(clip.height * scale)), int(round(clip.width * scale))
    images = []
    for i in preview_indices(clip.num_frames, num_frames):
        frame = clip.frame(i)
        if scale < 1.0:
            frame = cv2.resize(frame, (out_w, out_h), interpolation=cv2.INTER_AREA)
        found = bool(track.face_found[i])
        draw_landmarks(frame, track.landmarks[i, :, :2] * scale, FOUND_COLOR if found else FILLED_COLOR)
        title = f"frame {i}" + ("" if found else " (filled)")
        panel = draw_coefficient_panel(out_h, track.expression[i], tuple(track.expression_names), title)
        images.append(np.concatenate([frame, panel], axis=1))
    return np.stack(images).astype(np.float32) / 255.0
