"""A thin, typed wrapper around MediaPipe Tasks' FaceLandmarker (model ``face_landmarker.task`` from the Hub).

One place knows MediaPipe's API; the rest of the library gets numpy arrays. Use it as a context manager so the
native graph is closed deterministically::

    with FaceLandmarker.open(models_dirs, mode="video") as landmarker:
        result = landmarker.detect(frame_rgb_uint8, timestamp_ms=40 * i)
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Literal

import numpy as np

from synctalk_lib import hub
from synctalk_lib.errors import require

NUM_LANDMARKS = 478
NUM_BLENDSHAPES = 52


@dataclass(frozen=True)
class FaceResult:
    """Detection for one frame (pixels of that frame)."""

    landmarks: np.ndarray
    """[478, 3] float32: x, y in pixels; z MediaPipe's relative depth multiplied by the frame width."""
    blendshapes: np.ndarray
    """[52] float32 scores in MediaPipe's category order."""
    blendshape_names: tuple[str, ...]
    transform: np.ndarray
    """[4, 4] float32 facial transformation matrix."""

    def box(self) -> tuple[float, float, float, float]:
        """Tight landmark box (x0, y0, x1, y1) in pixels."""
        xy = self.landmarks[:, :2]
        return float(xy[:, 0].min()), float(xy[:, 1].min()), float(xy[:, 0].max()), float(xy[:, 1].max())


class FaceLandmarker:
    """MediaPipe FaceLandmarker for one face, with blendshapes and transformation matrices."""

    def __init__(self, task_path: Path, mode: Literal["image", "video"] = "video", min_confidence: float = 0.5):
        mp = require("mediapipe", "Face capture (MediaPipe FaceLandmarker)")
        from mediapipe.tasks.python import BaseOptions, vision

        self._mp = mp
        self.mode = mode
        running_mode = vision.RunningMode.VIDEO if mode == "video" else vision.RunningMode.IMAGE
        options = vision.FaceLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=str(task_path)),
            running_mode=running_mode,
            num_faces=1,
            min_face_detection_confidence=min_confidence,
            min_face_presence_confidence=min_confidence,
            min_tracking_confidence=min_confidence,
            output_face_blendshapes=True,
            output_facial_transformation_matrixes=True,
        )
        self._landmarker = vision.FaceLandmarker.create_from_options(options)

    @classmethod
    def open(cls, models_dirs: Iterable[Path | str] | None = None, mode: Literal["image", "video"] = "video",
             min_confidence: float = 0.5) -> "FaceLandmarker":
        """Find (or download) ``face_landmarker.task`` through the Hub registry and load it."""
        return cls(hub.fetch("face_landmarker", models_dirs), mode=mode, min_confidence=min_confidence)

    def detect(self, frame: np.ndarray, timestamp_ms: int | None = None) -> FaceResult | None:
        """Landmarks of the most prominent face in an RGB uint8 frame ``[H, W, 3]``, or None if no face.

        In video mode ``timestamp_ms`` must increase from call to call.
        """
        height, width = frame.shape[:2]
        image = self._mp.Image(image_format=self._mp.ImageFormat.SRGB, data=np.ascontiguousarray(frame))
        if self.mode == "video":
            if timestamp_ms is None:
                raise ValueError("video mode needs increasing timestamps")
            result = self._landmarker.detect_for_video(image, int(timestamp_ms))
        else:
            result = self._landmarker.detect(image)
        if not result.face_landmarks:
            return None
        points = result.face_landmarks[0]
        landmarks = np.array([(p.x * width, p.y * height, p.z * width) for p in points], dtype=np.float32)
        categories = result.face_blendshapes[0] if result.face_blendshapes else []
        scores = np.array([c.score for c in categories], dtype=np.float32)
        names = tuple(c.category_name for c in categories)
        matrix = (np.asarray(result.facial_transformation_matrixes[0], dtype=np.float32)
                  if result.facial_transformation_matrixes else np.eye(4, dtype=np.float32))
        return FaceResult(landmarks=landmarks, blendshapes=scores, blendshape_names=names, transform=matrix)

    def close(self) -> None:
        if self._landmarker is not None:
            self._landmarker.close()
            self._landmarker = None

    def __enter__(self) -> "FaceLandmarker":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
