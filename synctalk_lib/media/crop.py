"""One fixed square crop box per clip, centred on the face, framed like SyncTalk's training data.

The original SyncTalk subjects are 512 x 512 videos in which MediaPipe's landmark box (face oval, forehead to
chin) is about 45 % of the frame width, with the hair above it and some neck below. ``face_crop_box`` reproduces
that framing from the landmark boxes of a handful of frames:

- side = the larger of ``median face width / FACE_WIDTH_FRACTION`` and ``median face height /
  FACE_HEIGHT_FRACTION``, plus how far the face centre wanders between the sampled frames (so the head stays in
  the box when the speaker moves);
- centre = the median landmark-box centre, raised by ``HEAD_RAISE`` x side (the landmarks stop at the hairline;
  the hair needs more room than the neck);
- the box never leaves the frame: the side is capped at the shorter frame side, and a box that would cross an
  edge is shifted back inside (never padded), so the face is off-centre only when it is near the frame edge.

The box is one for the whole clip (no per-frame jitter), which is what the NeRF needs: the head moves inside a
fixed camera frame.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

FACE_WIDTH_FRACTION = 0.45
FACE_HEIGHT_FRACTION = 0.52
HEAD_RAISE = 0.05

Box = tuple[int, int, int, int]
"""(x0, y0, x1, y1) in pixels, x1/y1 exclusive."""


@dataclass(frozen=True)
class FaceSample:
    """Where the face was in one sampled frame."""

    frame_index: int
    """Output frame number the sample stands for."""
    time: float
    """Source time of the sampled frame, in seconds."""
    box: tuple[float, float, float, float] | None
    """Tight landmark box (x0, y0, x1, y1) in source pixels; None when no face was found."""


def face_crop_box(face_boxes: Sequence[tuple[float, float, float, float]], frame_size: tuple[int, int]) -> Box:
    """The square crop box for a clip from its sampled landmark boxes.

    Args:
        face_boxes: at least one tight landmark box (x0, y0, x1, y1) in source pixels.
        frame_size: (width, height) of the source frames (after rotation).

    Returns:
        (x0, y0, x1, y1) integer box with x1 - x0 == y1 - y0, an even side, inside the frame.
    """
    if not face_boxes:
        raise ValueError("face_crop_box needs at least one face box")
    boxes = np.asarray(face_boxes, dtype=np.float64)
    widths = boxes[:, 2] - boxes[:, 0]
    heights = boxes[:, 3] - boxes[:, 1]
    centres_x = (boxes[:, 0] + boxes[:, 2]) / 2
    centres_y = (boxes[:, 1] + boxes[:, 3]) / 2
    wander = max(float(np.ptp(centres_x)), float(np.ptp(centres_y)))
    side = max(float(np.median(widths)) / FACE_WIDTH_FRACTION,
               float(np.median(heights)) / FACE_HEIGHT_FRACTION) + wander
    cx = float(np.median(centres_x))
    cy = float(np.median(centres_y)) - HEAD_RAISE * side
    return square_box(cx, cy, side, frame_size)


def square_box(cx: float, cy: float, side: float, frame_size: tuple[int, int]) -> Box:
    """A square of ``side`` pixels centred on (cx, cy), shrunk to fit and shifted inside the frame.

    The side is rounded to an even number of pixels (H.264 and the renderer need even sizes).
    """
    width, height = int(frame_size[0]), int(frame_size[1])
    limit = min(width, height)
    side_px = int(round(min(side, limit) / 2.0)) * 2
    side_px = max(2, min(side_px, limit - limit % 2))
    x0 = int(round(cx - side_px / 2.0))
    y0 = int(round(cy - side_px / 2.0))
    x0 = min(max(x0, 0), width - side_px)
    y0 = min(max(y0, 0), height - side_px)
    return x0, y0, x0 + side_px, y0 + side_px


def detect_faces(images: Iterable[tuple[int, float, np.ndarray]], models_dirs: Iterable[Path | str] | None = None,
                 ) -> list[FaceSample]:
    """Run MediaPipe's FaceLandmarker (image mode) on ``(frame_index, time, rgb [H, W, 3] uint8)`` samples."""
    from synctalk_lib.face.landmarker import FaceLandmarker

    samples: list[FaceSample] = []
    with FaceLandmarker.open(models_dirs, mode="image") as landmarker:
        for index, time, image in images:
            result = landmarker.detect(np.ascontiguousarray(image))
            samples.append(FaceSample(frame_index=index, time=time, box=None if result is None else result.box()))
    return samples
