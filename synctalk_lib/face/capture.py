"""Capture a clip's face track: MediaPipe landmarks, 52 blendshapes and head matrices for every frame.

Frames are streamed from the clip's uint8 cache in small batches (a long clip never sits in RAM), fed to
MediaPipe's FaceLandmarker in VIDEO mode (it tracks between frames, which is faster and steadier than detecting
each frame alone) with timestamps from the frame index and fps. Short runs of frames without a face (a hand in
front of the face, motion blur) are filled in and listed in the report; longer ones stop with an error naming the
frames, because a renderer trained on invented faces would learn them.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Literal

import numpy as np

from synctalk_lib.errors import InputError
from synctalk_lib.face.expression import EXPRESSION_NAMES, expression_coefficients
from synctalk_lib.face.landmarker import NUM_BLENDSHAPES, NUM_LANDMARKS, FaceLandmarker
from synctalk_lib.face.smoothing import LANDMARK_FILTER, SCORE_FILTER, smooth_landmarks, smooth_scores
from synctalk_lib.types import Clip, FaceTrack
from synctalk_lib.progress import StepCallback

Smoothing = Literal["none", "one_euro"]
SMOOTHING_CHOICES: tuple[str, ...] = ("none", "one_euro")
DEFAULT_SMOOTHING: Smoothing = "one_euro"
"""Zero-phase One-Euro: on the reference clip it cuts jitter ~40 % at no lag (see ``smoothing``); the original
smooths its blendshapes too (Savitzky-Golay, window 5), which removes less jitter."""


@dataclass(frozen=True)
class RawCapture:
    """What MediaPipe saw, before gaps are filled (``N`` frames)."""

    landmarks: np.ndarray
    """[N, 478, 3] float32 pixels (zeros where no face)."""
    blendshapes: np.ndarray
    """[N, 52] float32 (zeros where no face)."""
    blendshape_names: tuple[str, ...]
    transforms: np.ndarray
    """[N, 4, 4] float32 (identity where no face)."""
    face_found: np.ndarray
    """[N] bool."""
    seconds: float
    """Wall time of reading and detecting (the model load excluded)."""


def _timestamps_ms(num_frames: int, fps: float) -> np.ndarray:
    """Strictly increasing integer milliseconds of each frame (VIDEO mode rejects repeats)."""
    if fps <= 0:
        raise InputError(f"the clip's fps must be positive, got {fps}")
    steps = np.arange(num_frames)
    ts = np.round(steps * 1000.0 / fps).astype(np.int64)
    return np.maximum.accumulate(ts - steps) + steps  # only matters above 1000 fps


def detect_clip(clip: Clip, *, models_dirs: Iterable[Path | str] | None = None, min_confidence: float = 0.5,
                batch_size: int = 32, on_step: StepCallback | None = None) -> RawCapture:
    """Run FaceLandmarker (VIDEO mode) over every frame of ``clip``, streaming frames from its cache."""
    n = clip.num_frames
    if n <= 0:
        raise InputError("the clip has no frames, so there is no face to capture")
    landmarks = np.zeros((n, NUM_LANDMARKS, 3), np.float32)
    blendshapes = np.zeros((n, NUM_BLENDSHAPES), np.float32)
    transforms = np.tile(np.eye(4, dtype=np.float32), (n, 1, 1))
    found = np.zeros(n, bool)
    names: tuple[str, ...] | None = None
    timestamps = _timestamps_ms(n, clip.fps)
    with FaceLandmarker.open(models_dirs, mode="video", min_confidence=min_confidence) as landmarker:
        started = time.perf_counter()
        for first, batch in clip.iter_batches(batch_size):
            for offset, frame in enumerate(batch):
                i = first + offset
                result = landmarker.detect(frame, timestamp_ms=int(timestamps[i]))
                if result is None:
                    continue
                if names is None:
                    names = result.blendshape_names
                if result.blendshape_names != names or result.landmarks.shape != (NUM_LANDMARKS, 3):
                    raise InputError(f"frame {i}: the face model returned an unexpected layout "
                                     f"({len(result.blendshape_names)} blendshapes, {len(result.landmarks)} points)")
                landmarks[i], blendshapes[i], transforms[i] = result.landmarks, result.blendshapes, result.transform
                found[i] = True
            if on_step is not None:
                on_step(first + len(batch), n)
    return RawCapture(landmarks=landmarks, blendshapes=blendshapes, blendshape_names=names or (),
                      transforms=transforms, face_found=found, seconds=time.perf_counter() - started)


# ----------------------------------------------------------------------------------------------------- gaps
def find_gaps(face_found: np.ndarray) -> list[tuple[int, int]]:
    """Runs of frames without a face as inclusive ``(first, last)`` frame pairs, in order."""
    missing = ~np.asarray(face_found, bool)
    edges = np.diff(np.concatenate([[0], missing.astype(np.int8), [0]]))
    starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return [(int(a), int(b) - 1) for a, b in zip(starts, stops)]


def _describe(gaps: list[tuple[int, int]]) -> str:
    parts = [f"{a}-{b} ({b - a + 1} frames)" if b > a else f"{a} (1 frame)" for a, b in gaps[:10]]
    more = f" and {len(gaps) - 10} more runs" if len(gaps) > 10 else ""
    return ", ".join(parts) + more


def check_gaps(face_found: np.ndarray, max_gap: int) -> list[tuple[int, int]]:
    """The gaps to fill; InputError naming the frames if any run is longer than ``max_gap`` or no face exists."""
    n = len(face_found)
    gaps = find_gaps(face_found)
    if not np.any(face_found):
        raise InputError(f"no face was found in any of the {n} frames; use a video where one face is clearly "
                         "visible (LoadReferenceVideo's face crop helps when the face is small)")
    too_long = [(a, b) for a, b in gaps if b - a + 1 > max_gap]
    if too_long:
        raise InputError(
            f"no face was found in frames {_describe(too_long)}, longer than max_gap = {max_gap} frames. "
            "Trim the video to a part where the face is always visible, or raise max_gap to fill these frames "
            "by interpolation (only sensible for short occlusions)")
    return gaps


def fill_gaps(values: np.ndarray, face_found: np.ndarray) -> np.ndarray:
    """Fill frames without a face: linear between the neighbouring found frames, the nearest one at the ends.

    (For head matrices use ``fill_transform_gaps``.)

    Args:
        values: [N, ...] per-frame values (only found frames are read).
        face_found: [N] bool.

    Returns:
        A float32 copy of ``values`` with the missing frames filled.
    """
    found = np.flatnonzero(face_found)
    missing = np.flatnonzero(~np.asarray(face_found, bool))
    out = np.array(values, dtype=np.float32, copy=True)
    if missing.size == 0 or found.size == 0:
        return out
    flat = out.reshape(len(out), -1)
    if found.size == 1:
        flat[missing] = flat[found[0]]
        return out
    # Neighbours on each side; before the first / after the last found frame the weight clamps to that frame.
    right_pos = np.searchsorted(found, missing).clip(1, found.size - 1)
    left, right = found[right_pos - 1], found[right_pos]
    weight = np.clip((missing - left) / (right - left), 0.0, 1.0)[:, None]
    flat[missing] = (1.0 - weight) * flat[left] + weight * flat[right]
    return out


def orthonormalize(transforms: np.ndarray, scales: np.ndarray | None = None) -> np.ndarray:
    """Project the 3x3 block of each [..., 4, 4] matrix onto the nearest rotation (SVD), times ``scales`` [...]
    (default: the block's mean singular value); translations are kept."""
    out = np.array(transforms, dtype=np.float32, copy=True)
    u, s, vt = np.linalg.svd(out[..., :3, :3].astype(np.float64))
    det = np.sign(np.linalg.det(u @ vt))
    u[..., :, 2] *= det[..., None]
    scale = s.mean(axis=-1) if scales is None else np.asarray(scales, np.float64)
    out[..., :3, :3] = (u @ vt) * scale[..., None, None]
    return out


def fill_transform_gaps(transforms: np.ndarray, face_found: np.ndarray) -> np.ndarray:
    """Fill [N, 4, 4] matrices of frames without a face: blended like ``fill_gaps``, then made rigid again with
    the scale interpolated from the neighbours (a plain blend of two rotations shrinks)."""
    missing = ~np.asarray(face_found, bool)
    out = np.array(transforms, dtype=np.float32, copy=True)
    if not missing.any():
        return out
    scales = np.linalg.svd(out[:, :3, :3].astype(np.float64), compute_uv=False).mean(axis=-1)
    blended = fill_gaps(out, face_found)
    out[missing] = orthonormalize(blended[missing], fill_gaps(scales, face_found)[missing])
    return out


# ---------------------------------------------------------------------------------------------------- capture
def capture_face_track(clip: Clip, *, models_dirs: Iterable[Path | str] | None = None, max_gap: int = 5,
                       smoothing: Smoothing = DEFAULT_SMOOTHING, min_confidence: float = 0.5,
                       on_step: StepCallback | None = None) -> FaceTrack:
    """Landmarks, blendshapes, head matrices and expression coefficients for every frame of ``clip``.

    Args:
        clip: the prepared clip (frames are streamed from its cache).
        models_dirs: folders searched for ``face_landmarker.task`` (downloaded into the first one if absent).
        max_gap: longest run of frames without a face that is filled by interpolation (0 = none allowed).
        smoothing: ``"none"`` or ``"one_euro"`` (landmarks and scores; the matrices stay raw).
        min_confidence: MediaPipe's detection / presence / tracking confidence.
        on_step: progress callback ``(frames_done, total)``.

    Returns:
        A ``FaceTrack``; its ``report()`` lists the interpolated frames, the smoothing and the capture speed.
    """
    if smoothing not in SMOOTHING_CHOICES:
        raise InputError(f"smoothing must be one of {', '.join(SMOOTHING_CHOICES)}, got {smoothing!r}")
    if max_gap < 0:
        raise InputError(f"max_gap must be >= 0, got {max_gap}")
    raw = detect_clip(clip, models_dirs=models_dirs, min_confidence=min_confidence, on_step=on_step)
    gaps = check_gaps(raw.face_found, max_gap)
    landmarks = fill_gaps(raw.landmarks, raw.face_found)
    blendshapes = fill_gaps(raw.blendshapes, raw.face_found)
    transforms = fill_transform_gaps(raw.transforms, raw.face_found)
    settings: dict = {"method": smoothing}
    if smoothing == "one_euro":
        landmarks = smooth_landmarks(landmarks, clip.fps, LANDMARK_FILTER)
        blendshapes = smooth_scores(blendshapes, clip.fps, SCORE_FILTER)
        settings.update(zero_phase=True, landmarks=vars(LANDMARK_FILTER), scores=vars(SCORE_FILTER))
    n = clip.num_frames
    report = {
        "frames": n,
        "face_frames": int(raw.face_found.sum()),
        "interpolated_frames": [int(i) for i in np.flatnonzero(~raw.face_found)],
        "gaps": [list(g) for g in gaps],
        "max_gap": int(max_gap),
        "smoothing": settings,
        "capture_seconds": round(raw.seconds, 3),
        "capture_fps": round(n / max(raw.seconds, 1e-9), 1),
    }
    return FaceTrack(
        landmarks=landmarks, blendshapes=blendshapes, blendshape_names=raw.blendshape_names,
        face_found=raw.face_found.copy(), transforms=transforms,
        expression=expression_coefficients(blendshapes, raw.blendshape_names), expression_names=EXPRESSION_NAMES,
        width=clip.width, height=clip.height, fps=float(clip.fps), report_json=json.dumps(report),
    )
