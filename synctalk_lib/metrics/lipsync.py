"""Lip-sync proxy for new audio, where no ground-truth video exists.

The loudness of speech and how far the mouth is open go up and down together (vowels are loud and open, closures
and pauses are quiet and closed). So the Pearson correlation between

* the audio envelope: RMS energy of the sound in a window centred on each video frame, and
* the mouth opening: MediaPipe's ``jawOpen`` blendshape measured on each frame,

is a rough, reference-free lip-sync score. It is only meaningful next to the same number computed on the real clip
with its own audio (the reference value): a render that tracks its audio as well as the real person does gets about
the same correlation; one that ignores the audio gets about 0. The best lag within a couple of frames is reported
as well as lag 0, because the mouth tends to open slightly before the sound it makes.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import numpy as np

from synctalk_lib.errors import InputError

JAW_OPEN = "jawOpen"


def audio_envelope(wave: np.ndarray, sample_rate: int, fps: float, num_frames: int) -> np.ndarray:
    """RMS energy of the audio around each video frame.

    Frame ``i`` is shown at ``i / fps`` s; its window is the two frame periods centred on that time
    (``[(i - 1) / fps, (i + 1) / fps)``), clipped to the audio. Frames past the end of the audio get 0.

    Args:
        wave: ``[T]`` or ``[C, T]`` float samples (channels are averaged).
        sample_rate: samples per second of ``wave``.
        fps: video frame rate.
        num_frames: how many frames to measure.

    Returns:
        ``[num_frames]`` float32 RMS values (same unit as the samples).
    """
    if sample_rate <= 0 or fps <= 0:
        raise InputError(f"audio_envelope needs a positive sample rate and fps (got {sample_rate}, {fps})")
    mono = np.asarray(wave, np.float64)
    if mono.ndim == 2:
        mono = mono.mean(axis=0)
    elif mono.ndim != 1:
        raise InputError(f"audio must be [T] or [C, T] samples, got shape {list(np.shape(wave))}")
    # Prefix sums of the squares make every window O(1).
    cumulative = np.concatenate([[0.0], np.cumsum(mono * mono)])
    half = sample_rate / fps
    centres = np.arange(int(num_frames)) * (sample_rate / fps)
    start = np.clip(np.round(centres - half).astype(np.int64), 0, len(mono))
    stop = np.clip(np.round(centres + half).astype(np.int64), 0, len(mono))
    count = stop - start
    energy = np.where(count > 0, (cumulative[stop] - cumulative[start]) / np.maximum(count, 1), 0.0)
    return np.sqrt(energy).astype(np.float32)


class MouthOpeningMeter:
    """MediaPipe ``jawOpen`` of a stream of frames, one frame at a time (video-mode tracking, like face capture).

        with MouthOpeningMeter(models_dirs, fps=25) as meter:
            for chunk in chunks:
                meter.add(chunk)            # [H, W, 3] or [b, H, W, 3], uint8 or float 0..1
        meter.values                        # [N] float32, NaN where no face was found
    """

    def __init__(self, models_dirs: Iterable[Path | str] | None = None, fps: float = 25.0):
        from synctalk_lib.face.landmarker import FaceLandmarker

        self._landmarker = FaceLandmarker.open(models_dirs, mode="video")
        self._step_ms = 1000.0 / fps
        self._values: list[float] = []

    def add(self, frames: np.ndarray) -> None:
        batch = np.asarray(frames)
        for frame in (batch if batch.ndim == 4 else batch[None]):
            if frame.dtype != np.uint8:
                frame = (np.clip(frame, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
            result = self._landmarker.detect(frame, int(round(len(self._values) * self._step_ms)))
            if result is None or JAW_OPEN not in result.blendshape_names:
                self._values.append(float("nan"))
            else:
                self._values.append(float(result.blendshapes[result.blendshape_names.index(JAW_OPEN)]))

    @property
    def values(self) -> np.ndarray:
        return np.asarray(self._values, np.float32)

    def close(self) -> None:
        self._landmarker.close()

    def __enter__(self) -> "MouthOpeningMeter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def mouth_opening(frames: Iterable[np.ndarray], models_dirs: Iterable[Path | str] | None = None,
                  fps: float = 25.0) -> np.ndarray:
    """MediaPipe ``jawOpen`` blendshape score of each frame (video-mode tracking, like the face capture).

    Args:
        frames: iterable of ``[H, W, 3]`` RGB frames (uint8, or float 0..1), or of ``[b, H, W, 3]`` batches.
        models_dirs: folders searched for ``face_landmarker.task``.
        fps: frame rate (gives the tracker its timestamps).

    Returns:
        ``[N]`` float32 in 0..1; NaN where no face was found.
    """
    with MouthOpeningMeter(models_dirs, fps=fps) as meter:
        for item in frames:
            meter.add(item)
    return meter.values


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson r of two equally long signals over the positions where both are finite (NaN: fewer than 3 such
    positions, or a constant signal)."""
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"signals of different lengths: {a.shape[0]} and {b.shape[0]}")
    keep = np.isfinite(a) & np.isfinite(b)
    a, b = a[keep], b[keep]
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:  # (a constant's mean leaves rounding noise, not a signal)
        return float("nan")
    a, b = a - a.mean(), b - b.mean()
    denom = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denom) if denom > 0 else float("nan")


def lagged_correlation(envelope: np.ndarray, opening: np.ndarray, lag: int) -> float:
    """Pearson r between ``envelope[t]`` and ``opening[t + lag]`` over the frames both have (NaNs skipped).

    Positive ``lag``: the mouth follows the sound by ``lag`` frames; negative: it leads.
    """
    n = min(len(envelope), len(opening))
    env, mouth = np.asarray(envelope[:n], np.float64), np.asarray(opening[:n], np.float64)
    if lag >= 0:
        return pearson(env[:n - lag], mouth[lag:])
    return pearson(env[-lag:], mouth[:n + lag])


def lipsync_correlation(envelope: np.ndarray, opening: np.ndarray, max_lag: int = 2) -> dict[str, Any]:
    """Correlation of the audio envelope with the mouth opening, at lag 0 and at the best lag.

    Args:
        envelope: ``[N]`` audio RMS per frame (``audio_envelope``).
        opening: ``[N]`` mouth opening per frame (``mouth_opening``); NaN frames are left out.
        max_lag: lags ``-max_lag .. max_lag`` frames are tried.

    Returns:
        ``{"r": best r, "lag": its lag in frames (positive = mouth after sound), "r_lag0": r at lag 0,
        "frames": frames compared}``; r values are None when they cannot be computed (constant signals, fewer
        than 3 frames).
    """
    n = min(len(envelope), len(opening))
    scores = {lag: lagged_correlation(envelope, opening, lag) for lag in range(-int(max_lag), int(max_lag) + 1)}
    finite = {lag: r for lag, r in scores.items() if r == r}
    best = max(finite, key=lambda lag: (finite[lag], -abs(lag))) if finite else None
    frames = int((np.isfinite(np.asarray(envelope[:n], np.float64))
                  & np.isfinite(np.asarray(opening[:n], np.float64))).sum())
    return {"r": None if best is None else round(finite[best], 4), "lag": best,
            "r_lag0": None if scores[0] != scores[0] else round(scores[0], 4), "frames": frames}
