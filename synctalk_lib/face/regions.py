"""Subject regions from MediaPipe face landmarks: head, face, lips, eyes, lower face and neck.

Everything is computed on demand for one frame from its ``[478, 2]`` landmarks (never all frames as float masks at
once), as rectangles (``Rect``) or boolean masks ``[H, W]``.

Regions and who uses them:

- ``head_mask``: the whole head including hair and ears, the pixels the NeRF renders. The landmark face oval is
  widened sideways and raised over the forehead and hair (MediaPipe's mesh stops at the hairline); generous on
  purpose, because pixels of static background inside it are still reproduced exactly (the clean background is
  composited under the head), while hair outside it would be baked into the per-frame background.
- ``face_mask``: the landmark face oval with a small chin extension (skin, brows, eyes, nose, mouth; no hair, ears
  or neck), the region a portrait blend pastes.
- ``lips_rect``: the square around the outer lip landmarks used by the lip fine-tune stage (like the original's
  lips rectangle: centre = mid-point, side = the larger of width and height, clamped to the image).
- ``lower_face_rect`` / ``upper_face_rect``: split at the nose tip; the audio attention acts below it and the
  expression attention above it.
- ``eye_rect``: eyes and brows.
- ``neck_mask``: the region below the jaw, for filling the gap a lower rendered jaw leaves.

Coordinates follow ``synctalk_lib.types``: ``x = column``, ``y = row``, origin at the top-left corner of the
top-left pixel, so pixel ``(r, c)`` has its centre at ``(c + 0.5, r + 0.5)``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from synctalk_lib.face.indices import (CHIN, FACE_OVAL, FOREHEAD_TOP, LEFT_BROW, LEFT_EYE, LIPS_INNER,  # noqa: F401
                                      LIPS_OUTER, NOSE_TIP, RIGHT_BROW, RIGHT_EYE)

LIPS: tuple[int, ...] = LIPS_OUTER + LIPS_INNER
EYES_AND_BROWS: tuple[int, ...] = LEFT_EYE + RIGHT_EYE + LEFT_BROW + RIGHT_BROW


@dataclass(frozen=True)
class Rect:
    """A pixel rectangle: rows ``[r0, r1)`` and columns ``[c0, c1)`` (the original's ``(row, row, col, col)``).

    A pixel belongs to it when its centre does, which for integer bounds is ``r0 <= row < r1`` and
    ``c0 <= col < c1``.
    """

    r0: int
    r1: int
    c0: int
    c1: int

    @property
    def height(self) -> int:
        return max(0, self.r1 - self.r0)

    @property
    def width(self) -> int:
        return max(0, self.c1 - self.c0)

    @property
    def empty(self) -> bool:
        return self.height == 0 or self.width == 0

    def contains(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Whether pixels ``(rows, cols)`` (integer arrays of one shape) lie inside; bool, same shape."""
        rows = np.asarray(rows)
        cols = np.asarray(cols)
        return (rows >= self.r0) & (rows < self.r1) & (cols >= self.c0) & (cols < self.c1)

    def mask(self, height: int, width: int) -> np.ndarray:
        """``[height, width]`` bool mask of the rectangle."""
        out = np.zeros((height, width), dtype=bool)
        out[max(self.r0, 0):max(self.r1, 0), max(self.c0, 0):max(self.c1, 0)] = True
        return out

    def clamped(self, height: int, width: int) -> "Rect":
        return Rect(int(np.clip(self.r0, 0, height)), int(np.clip(self.r1, 0, height)),
                    int(np.clip(self.c0, 0, width)), int(np.clip(self.c1, 0, width)))

    def as_tuple(self) -> tuple[int, int, int, int]:
        return (self.r0, self.r1, self.c0, self.c1)


def bounding_rect(points: np.ndarray, height: int, width: int) -> Rect:
    """The smallest pixel rectangle holding every point ``[K, 2]`` (x, y), clamped to the image."""
    x0, y0 = np.floor(points.min(axis=0)).astype(int)
    x1, y1 = np.floor(points.max(axis=0)).astype(int) + 1
    return Rect(int(y0), int(y1), int(x0), int(x1)).clamped(height, width)


def square_rect(points: np.ndarray, height: int, width: int, *, margin: float = 0.0) -> Rect:
    """A square around points ``[K, 2]`` that contains every one of them (like the original's lips rectangle:
    centred on the points' box, side = the larger box side), grown by ``margin`` of the side and clamped to the
    image (so it may end up non-square at a border)."""
    x0, y0 = points.min(axis=0)
    x1, y1 = points.max(axis=0)
    cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0
    half = max(x1 - x0, y1 - y0) * (1.0 + margin) / 2.0
    side = int(np.ceil(2.0 * half)) + 2  # +2: the pixels holding the extreme points are inside
    c0 = int(np.floor(cx - side / 2.0))
    r0 = int(np.floor(cy - side / 2.0))
    return Rect(r0, r0 + side, c0, c0 + side).clamped(height, width)


@dataclass(frozen=True)
class HeadShape:
    """How far the head region reaches beyond the landmark face oval, as fractions of the face size.

    Face width is the oval's extent along the eye line, face height its extent across it (forehead top to chin).
    The defaults cover voluminous hair (the reference subject's reaches about 0.3 face widths past each cheek and
    0.45 face heights above landmark 10).
    """

    side: float = 0.32
    """Extra width on each side (ears, hair), fraction of the face width."""
    top: float = 0.5
    """Extra height above the top of the forehead landmark (hair), fraction of the face height."""
    chin: float = 0.04
    """Extra height below the chin (a jaw that opens wider than in the frame), fraction of the face height."""
    neck: float = 0.45
    """Height of the neck region below the jaw, fraction of the face height."""


class FaceRegions:
    """Regions of every frame of a clip, computed on demand from its landmarks.

    Args:
        landmarks: ``[N, 478, 2 or 3]`` landmark pixels (x, y, [z]) at the clip's resolution.
        height, width: size of the images the regions are for.
        scale: multiplies landmark coordinates first (``new_size / clip_size`` when working at a reduced
            resolution); a pair ``(sx, sy)`` scales columns and rows separately.
        shape: extents of the head and neck regions beyond the landmarks.
    """

    def __init__(self, landmarks: np.ndarray, height: int, width: int, *, scale: float | tuple[float, float] = 1.0,
                 shape: HeadShape | None = None):
        landmarks = np.asarray(landmarks)
        if landmarks.ndim != 3 or landmarks.shape[1] < 478 or landmarks.shape[2] < 2:
            raise ValueError(f"landmarks must be [N, 478, 2+], got shape {list(landmarks.shape)}")
        self._landmarks = landmarks
        self.height = int(height)
        self.width = int(width)
        sx, sy = (scale, scale) if np.isscalar(scale) else scale  # type: ignore[misc]
        self._scale = np.array([sx, sy], dtype=np.float32)
        self.shape = shape or HeadShape()

    @classmethod
    def from_track(cls, track, *, height: int | None = None, width: int | None = None,
                   shape: HeadShape | None = None) -> "FaceRegions":
        """Regions of a ``FaceTrack``, optionally for images resized to ``height x width``."""
        height = track.height if height is None else height
        width = track.width if width is None else width
        return cls(track.landmarks, height, width, scale=(width / track.width, height / track.height), shape=shape)

    def resized(self, height: int, width: int) -> "FaceRegions":
        """The same regions for images resized to ``height x width``."""
        sx = float(self._scale[0]) * width / self.width
        sy = float(self._scale[1]) * height / self.height
        return FaceRegions(self._landmarks, height, width, scale=(sx, sy), shape=self.shape)

    @property
    def num_frames(self) -> int:
        return int(self._landmarks.shape[0])

    def points(self, index: int, ids: Sequence[int] | None = None) -> np.ndarray:
        """Landmarks of frame ``index`` in image pixels, ``[478, 2]`` (or ``[len(ids), 2]``) float32 (x, y)."""
        if not 0 <= index < self.num_frames:
            raise IndexError(f"frame {index} has no landmarks (0..{self.num_frames - 1})")
        pts = self._landmarks[index, :, :2].astype(np.float32) * self._scale
        return pts if ids is None else pts[list(ids)]

    # ------------------------------------------------------------------------------------------- rectangles
    def face_rect(self, index: int) -> Rect:
        """Box of all 478 landmarks (the uncertainty loss's face rectangle)."""
        return bounding_rect(self.points(index), self.height, self.width)

    def lips_rect(self, index: int, *, margin: float = 0.1) -> Rect:
        """Square around the outer lips (lip fine-tune stage)."""
        return square_rect(self.points(index, LIPS_OUTER), self.height, self.width, margin=margin)

    def eye_rect(self, index: int) -> Rect:
        """Box of the eye and brow landmarks."""
        return bounding_rect(self.points(index, EYES_AND_BROWS), self.height, self.width)

    def lower_face_rect(self, index: int) -> Rect:
        """Rows from the nose tip to the lowest landmark, columns of all landmarks (original ``lowface``)."""
        pts = self.points(index)
        box = bounding_rect(pts, self.height, self.width)
        nose_row = int(pts[NOSE_TIP, 1])
        return Rect(nose_row, box.r1, box.c0, box.c1).clamped(self.height, self.width)

    def upper_face_rect(self, index: int) -> Rect:
        """Rows from the top landmark down to the nose tip, columns of all landmarks."""
        pts = self.points(index)
        box = bounding_rect(pts, self.height, self.width)
        nose_row = int(pts[NOSE_TIP, 1])
        return Rect(box.r0, nose_row, box.c0, box.c1).clamped(self.height, self.width)

    # ------------------------------------------------------------------------------------------------ masks
    def _face_frame(self, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Origin (between the eyes), unit axis along the eye line and unit axis pointing down the face."""
        left = pts[list(LEFT_EYE)].mean(axis=0)
        right = pts[list(RIGHT_EYE)].mean(axis=0)
        across = left - right
        norm = float(np.linalg.norm(across))
        across = across / norm if norm > 1e-6 else np.array([1.0, 0.0], dtype=np.float32)
        down = np.array([-across[1], across[0]], dtype=np.float32)
        return (left + right) / 2.0, across, down

    def head_polygon(self, index: int) -> np.ndarray:
        """Convex polygon ``[K, 2]`` float32 (x, y) of the head region of frame ``index``."""
        pts = self.points(index)
        origin, across, down = self._face_frame(pts)
        oval = pts[list(FACE_OVAL)] - origin
        u = oval @ across  # along the eye line
        w = oval @ down  # down the face
        face_h = float(w.max() - w.min())
        centre_u = float(u.max() + u.min()) / 2.0
        # Widen about the face's centre line (side * face_w on each side) and raise everything above the eye
        # line (the forehead top by top * face_h); below the eye line the widening fades out towards the chin,
        # so the region hugs the jaw instead of reaching over the shoulders, and the chin drops a little.
        u_wide = centre_u + (u - centre_u) * (1.0 + 2.0 * self.shape.side)
        below = np.clip(w / max(float(w.max()), 1e-6), 0.0, 1.0)
        u_new = u_wide * (1.0 - below ** 2) + u * below ** 2
        above = np.clip(w / min(float(w.min()), -1e-6), 0.0, 1.0)
        w_new = w - above * self.shape.top * face_h + below * self.shape.chin * face_h
        poly = origin + u_new[:, None] * across + w_new[:, None] * down
        return _convex_hull(poly.astype(np.float32))

    def head_mask(self, index: int, *, dilate: int = 0) -> np.ndarray:
        """``[H, W]`` bool: the head incl. hair and ears (generous), optionally grown by ``dilate`` pixels."""
        mask = _fill_polygon(self.head_polygon(index), self.height, self.width)
        return _dilate(mask, dilate) if dilate > 0 else mask

    def face_mask(self, index: int, *, chin: float = 0.03) -> np.ndarray:
        """``[H, W]`` bool: the landmark face oval (skin, brows, eyes, nose, mouth), chin extended by ``chin``
        of the face height (like the original's portrait mask)."""
        pts = self.points(index)
        origin, _, down = self._face_frame(pts)
        oval = pts[list(FACE_OVAL)]
        w = (oval - origin) @ down
        face_h = float(w.max() - w.min())
        grow = np.clip(w / max(float(w.max()), 1e-6), 0.0, 1.0) * chin * face_h
        poly = oval + grow[:, None] * down
        return _fill_polygon(_convex_hull(poly.astype(np.float32)), self.height, self.width)

    def lower_face_mask(self, index: int) -> np.ndarray:
        """``[H, W]`` bool: the face mask below the nose tip's row."""
        mask = self.face_mask(index)
        nose_row = int(self.points(index)[NOSE_TIP, 1])
        mask[:max(0, min(nose_row, self.height))] = False
        return mask

    def lips_mask(self, index: int) -> np.ndarray:
        """``[H, W]`` bool: inside the outer lip contour."""
        return _fill_polygon(self.points(index, LIPS_OUTER), self.height, self.width, convex=False)

    def neck_mask(self, index: int) -> np.ndarray:
        """``[H, W]`` bool: below the jaw, as wide as the jaw's lower half, ``shape.neck`` face heights tall."""
        pts = self.points(index)
        origin, across, down = self._face_frame(pts)
        oval = pts[list(FACE_OVAL)]
        w = (oval - origin) @ down
        face_h = float(w.max() - w.min())
        nose_w = float((pts[NOSE_TIP] - origin) @ down)
        jaw = oval[w > nose_w + 0.25 * (float(w.max()) - nose_w)]
        if len(jaw) < 3:
            return np.zeros((self.height, self.width), dtype=bool)
        ju = (jaw - origin) @ across
        centre = origin + float((ju.max() + ju.min()) / 2.0) * across
        half_w = 0.8 * float(ju.max() - ju.min()) / 2.0
        bottom = centre + (float(w.max()) + self.shape.neck * face_h) * down
        extra = np.stack([bottom - half_w * across, bottom + half_w * across]).astype(np.float32)
        poly = _convex_hull(np.concatenate([jaw, extra]).astype(np.float32))
        neck = _fill_polygon(poly, self.height, self.width)
        return neck & ~self.face_mask(index)

    def rect_masks(self, index: int, rows: np.ndarray, cols: np.ndarray) -> dict[str, np.ndarray]:
        """Membership of pixels ``(rows, cols)`` in the rectangles used by training, as bool arrays:
        ``face``, ``lower_face``, ``upper_face``, ``lips``."""
        return {
            "face": self.face_rect(index).contains(rows, cols),
            "lower_face": self.lower_face_rect(index).contains(rows, cols),
            "upper_face": self.upper_face_rect(index).contains(rows, cols),
            "lips": self.lips_rect(index).contains(rows, cols),
        }


# ---------------------------------------------------------------------------------------------------- helpers
def _convex_hull(points: np.ndarray) -> np.ndarray:
    """Convex hull ``[K, 2]`` (float32) of points ``[M, 2]``; fewer than 3 distinct points come back as they are."""
    import cv2

    pts = np.unique(np.asarray(points, np.float32).reshape(-1, 2), axis=0)
    if len(pts) < 3:
        return pts
    return cv2.convexHull(pts).reshape(-1, 2).astype(np.float32)


def _fill_polygon(polygon: np.ndarray, height: int, width: int, *, convex: bool = True) -> np.ndarray:
    """``[H, W]`` bool mask of the pixels whose centres lie inside ``polygon`` ``[K, 2]`` (x, y)."""
    import cv2

    canvas = np.zeros((height, width), dtype=np.uint8)
    if len(polygon) < 3:
        return canvas.astype(bool)
    # OpenCV puts integer vertices on pixel centres; shift by half a pixel and use 8 fractional bits.
    shift = 8
    verts = np.round((polygon - 0.5) * (1 << shift)).astype(np.int32).reshape(-1, 1, 2)
    if convex:
        cv2.fillConvexPoly(canvas, verts, 1, lineType=cv2.LINE_8, shift=shift)
    else:
        cv2.fillPoly(canvas, [verts], 1, lineType=cv2.LINE_8, shift=shift)
    return canvas.astype(bool)


def _dilate(mask: np.ndarray, pixels: int) -> np.ndarray:
    import cv2

    size = 2 * int(pixels) + 1
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
    return cv2.dilate(mask.astype(np.uint8), kernel).astype(bool)
