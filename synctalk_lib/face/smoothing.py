"""Temporal smoothing of face tracks (One-Euro filter) and the two numbers that judge it: jitter and lag.

The One-Euro filter (Casiez, Roussel & Vogel, CHI 2012) is an exponential low-pass whose cutoff rises with the
signal's speed: still moments get a low cutoff (MediaPipe's frame-to-frame jitter is removed), fast moves (a blink,
a head turn) a high one (less lag). Here it runs over all channels at once, one numpy step per frame.

A causal filter always trails the signal (on the reference clip ~0.5 frame at useful settings). Capture is
offline, so by default the filter runs forward and then backward over the result ("zero phase", like
``scipy.signal.filtfilt``): the two delays cancel, so smoothing costs no lag at all, and blink peaks stay on their
frames. ``zero_phase=False`` gives the classic causal filter.

Speeds are in "units per second", so ``beta`` depends on the units. Landmarks are therefore filtered in units of
the face size (see ``smooth_landmarks``), which makes one setting work for a 512 px crop and a 4K frame alike;
blendshape scores are already unit-free (0..1).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

RIGID_LANDMARKS: tuple[int, ...] = (1, 4, 6, 9, 10, 33, 133, 151, 168, 195, 197, 263, 362)
"""MediaPipe mesh points that barely move with expression (nose ridge, eye corners, forehead): their jitter is
tracking noise plus head motion, never lips or lids, so they measure landmark jitter."""


@dataclass(frozen=True)
class OneEuroParams:
    """Settings of one One-Euro filter.

    Attributes:
        min_cutoff: cutoff frequency (Hz) when the signal is still; lower = smoother, more lag on slow drifts.
        beta: how fast the cutoff rises with speed (Hz per unit/s); higher = less lag on fast moves.
        d_cutoff: cutoff (Hz) of the low-pass on the speed estimate itself.
    """

    min_cutoff: float
    beta: float
    d_cutoff: float = 1.0


# Tuned on the reference clip (may_short.mp4, 25 fps, zero phase) with bench/face_capture.py, which prints the
# sweep. Landmarks: jitter of the rigid points -40 %, lag 0.03 frames, 0.55 px RMS from the raw points (the raw
# noise alone is up to ~0.4 px). Scores: jitter of the 7 coefficients -45 %, blink peaks keep their frames and 95 %
# of their height. Lower min_cutoff / beta smooth more but start flattening blinks and real head motion.
LANDMARK_FILTER = OneEuroParams(min_cutoff=3.0, beta=10.0, d_cutoff=1.0)
"""For landmarks in face-size units (1.0 = the median face box diagonal)."""
SCORE_FILTER = OneEuroParams(min_cutoff=3.0, beta=10.0, d_cutoff=1.0)
"""For blendshape scores (0..1)."""


def _alpha(cutoff: np.ndarray | float, fps: float) -> np.ndarray | float:
    """Smoothing factor of an exponential low-pass with ``cutoff`` Hz sampled at ``fps``."""
    tau = 1.0 / (2.0 * math.pi * np.asarray(cutoff, dtype=np.float64))
    return 1.0 / (1.0 + tau * fps)


def one_euro(signal: np.ndarray, fps: float, params: OneEuroParams, *, zero_phase: bool = True) -> np.ndarray:
    """Filter every channel of a time series with the One-Euro filter.

    Args:
        signal: [N, ...] values over N frames; every trailing element is an independent channel.
        fps: frames per second of the series (sets the time step).
        params: filter settings (units of ``beta`` follow the signal's units).
        zero_phase: run forward then backward so the result does not trail the signal (offline use).

    Returns:
        Array of the same shape as ``signal``, float32.
    """
    out = _one_euro_causal(signal, fps, params)
    if zero_phase:
        out = _one_euro_causal(out[::-1], fps, params)[::-1]
    return np.ascontiguousarray(out, dtype=np.float32)


def _one_euro_causal(signal: np.ndarray, fps: float, params: OneEuroParams) -> np.ndarray:
    """The classic causal One-Euro filter over [N, ...] (frame 0 passes through), float64."""
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    x = np.asarray(signal, dtype=np.float64)
    n = x.shape[0]
    if n == 0 or x.size == 0:
        return x.copy()
    flat = x.reshape(n, -1)
    out = np.empty_like(flat)
    value = flat[0].copy()
    speed = np.zeros_like(value)
    out[0] = value
    alpha_speed = float(_alpha(params.d_cutoff, fps))
    for t in range(1, n):
        raw_speed = (flat[t] - value) * fps
        speed += alpha_speed * (raw_speed - speed)
        alpha = _alpha(params.min_cutoff + params.beta * np.abs(speed), fps)
        value += alpha * (flat[t] - value)
        out[t] = value
    return out.reshape(x.shape)


def face_scale(landmarks: np.ndarray) -> float:
    """Median diagonal (pixels) of the per-frame landmark box of ``landmarks`` [N, P, 2+]: the face size."""
    xy = np.asarray(landmarks)[..., :2]
    diag = np.linalg.norm(xy.max(axis=1) - xy.min(axis=1), axis=-1)
    return float(max(np.median(diag), 1e-6)) if diag.size else 1.0


def smooth_landmarks(landmarks: np.ndarray, fps: float, params: OneEuroParams = LANDMARK_FILTER, *,
                     zero_phase: bool = True) -> np.ndarray:
    """One-Euro over landmarks [N, P, 3] (pixels), filtered in face-size units so ``params`` fit any resolution."""
    scale = face_scale(landmarks)
    smoothed = one_euro(np.asarray(landmarks, np.float64) / scale, fps, params, zero_phase=zero_phase)
    return (smoothed.astype(np.float64) * scale).astype(np.float32)


def smooth_scores(scores: np.ndarray, fps: float, params: OneEuroParams = SCORE_FILTER, *,
                  zero_phase: bool = True) -> np.ndarray:
    """One-Euro over blendshape scores [N, K], clipped back to [0, 1]."""
    return np.clip(one_euro(scores, fps, params, zero_phase=zero_phase), 0.0, 1.0).astype(np.float32)


# ------------------------------------------------------------------------------------------------- measures
def jitter(signal: np.ndarray) -> float:
    """Mean absolute second difference over time, ``mean |x[t+1] - 2 x[t] + x[t-1]|``, of [N, ...] values.

    Zero for constant-velocity motion, so it measures shake rather than movement (units of the signal per frame^2).
    """
    x = np.asarray(signal, dtype=np.float64)
    if x.shape[0] < 3:
        return 0.0
    return float(np.abs(x[2:] - 2.0 * x[1:-1] + x[:-2]).mean())


def lag_frames(raw: np.ndarray, smoothed: np.ndarray, max_lag: int = 5) -> float:
    """How many frames ``smoothed`` trails ``raw``: the peak of their cross-correlation, sub-frame refined.

    Both are [N, ...]; channels are compared on their first differences (so slow drifts and offsets don't
    dominate) and their correlations summed. Positive = ``smoothed`` is late.
    """
    a = np.diff(np.asarray(raw, np.float64).reshape(len(raw), -1), axis=0)
    b = np.diff(np.asarray(smoothed, np.float64).reshape(len(smoothed), -1), axis=0)
    a -= a.mean(axis=0)
    b -= b.mean(axis=0)
    n = a.shape[0]
    max_lag = min(max_lag, n - 2)
    if max_lag < 1:
        return 0.0
    lags = np.arange(-max_lag, max_lag + 1)
    # Mean (not sum) of the products, so lags with fewer overlapping frames are not penalised.
    score = np.array([(a[: n - k] * b[k:]).mean() if k >= 0 else (a[-k:] * b[: n + k]).mean() for k in lags])
    best = int(np.argmax(score))
    offset = 0.0
    if 0 < best < len(lags) - 1:  # parabola through the peak and its neighbours
        left, mid, right = score[best - 1], score[best], score[best + 1]
        denom = left - 2.0 * mid + right
        if denom < 0:
            offset = 0.5 * (left - right) / denom
    return float(lags[best] + offset)
