"""Blink events from the eyeBlink blendshape scores.

A blink is a short rise of both eyeBlink scores well above the subject's resting level (MediaPipe rarely reports 0
for open eyes: ~0.1-0.2 is typical). Detection uses hysteresis on the mean of the two scores: an event starts when
the signal climbs ``rise`` above the resting level (its median) and ends when it falls back below ``release`` above
it; the event's frame of maximum closure is the blink's peak. Events closer than ``min_separation_s`` are one blink.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from synctalk_lib.face.expression import BLINK_NAMES, name_indices


def blink_signal(blendshapes: np.ndarray, names: Sequence[str]) -> np.ndarray:
    """[N] float32 mean of eyeBlinkLeft and eyeBlinkRight from blendshape scores [N, K] named ``names``."""
    idx = name_indices(names, BLINK_NAMES)
    return np.asarray(blendshapes, np.float32)[:, idx].mean(axis=1)


def detect_blinks(signal: np.ndarray, fps: float, *, rise: float = 0.2, release: float = 0.1,
                  min_separation_s: float = 0.2) -> list[int]:
    """Frames where blinks peak.

    Args:
        signal: [N] blink score per frame (``blink_signal``), or [N, C] scores that are averaged over C.
        fps: frame rate, for ``min_separation_s``.
        rise: an event starts above ``median + rise``.
        release: it ends below ``median + release`` (must be <= rise).
        min_separation_s: peaks closer than this are merged, keeping the stronger one.

    Returns:
        Sorted peak frame indices.
    """
    x = np.asarray(signal, np.float64)
    if x.ndim == 2:
        x = x.mean(axis=1)
    if x.size == 0:
        return []
    if release > rise:
        raise ValueError(f"release ({release}) must not exceed rise ({rise})")
    rest = float(np.median(x))
    high, low = rest + rise, rest + release
    peaks: list[int] = []
    start: int | None = None
    for i, v in enumerate(x):
        if start is None and v > high:
            start = i
        elif start is not None and v < low:
            peaks.append(start + int(np.argmax(x[start:i])))
            start = None
    if start is not None:
        peaks.append(start + int(np.argmax(x[start:])))
    min_gap = max(1, int(round(min_separation_s * fps)))
    merged: list[int] = []
    for p in peaks:
        if merged and p - merged[-1] < min_gap:
            if x[p] > x[merged[-1]]:
                merged[-1] = p
        else:
            merged.append(p)
    return merged
