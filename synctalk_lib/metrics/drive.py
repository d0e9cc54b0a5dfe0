"""Drive metrics: does the rendered mouth follow the audio, and only the audio?

All of them work on per-frame mouth-opening signals (MediaPipe ``jawOpen``, ``lipsync.mouth_opening``):

* **reference leak** — r(rendered jawOpen, jawOpen of the reference frame under each output frame). Each output
  frame is rendered at the pose (and over the background) of a reference frame of the subject's clip
  (``timeline.reference_indices``); a renderer that copies that frame's mouth instead of following the audio scores
  high. Ideally about 0.
* **silence** — mean and spread of the rendered jawOpen for a silent drive, next to the subject's closed-mouth range
  measured on the real clip (:func:`closed_mouth`): with no sound the mouth should stay closed and still.
* **held-out own vs changed audio** — on held-out frames with ground truth, the render's LMD and r(rendered, real
  jawOpen) with the clip's own audio against the same frames driven by the time-reversed (or silenced) stretch of
  that audio (:func:`replace_stretch`): a renderer that uses the audio is much closer to the real mouth with the
  right sound.

    leak = reference_leak(rendered_open, real_open)            # real_open: [N] over the subject's whole clip
    closed = closed_mouth(real_open)                           # ClosedMouth(low, high, mean, ...)
    stats = opening_stats(silent_open); closed.contains(stats.mean)
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from synctalk_lib.errors import InputError
from synctalk_lib.metrics.lipsync import pearson
from synctalk_lib.timeline import reference_indices

CLOSED_QUANTILE = 0.1
"""The subject's mouth counts as closed in its real frames whose jawOpen is at or below this quantile."""


def _none_if_nan(value: float) -> float | None:
    return None if value != value else round(float(value), 4)


def reference_leak(rendered_open: np.ndarray, reference_open: np.ndarray, *, start: int = 0) -> float | None:
    """Pearson r between each output frame's jawOpen and that of the reference frame it was rendered over.

    Args:
        rendered_open: ``[F]`` jawOpen of output frames ``start .. start + F - 1`` (NaN where no face was found).
        reference_open: ``[N]`` jawOpen of every frame of the subject's reference clip.
        start: index of the first output frame (as passed to ``render_frames``).

    Returns:
        r, or None where it cannot be computed (fewer than 3 frames with a face, constant signals).
    """
    rendered = np.asarray(rendered_open, np.float64)
    reference = np.asarray(reference_open, np.float64)
    if reference.ndim != 1 or len(reference) == 0:
        raise InputError(f"reference_open must be [N] jawOpen values of the reference clip, got {reference.shape}")
    refs = reference_indices(len(rendered), len(reference), start=start)
    return _none_if_nan(pearson(rendered, reference[refs]))


@dataclass(frozen=True)
class OpeningStats:
    """Mean and standard deviation of a jawOpen signal over the frames with a face."""

    mean: float | None
    std: float | None
    frames: int
    """Frames where a face was found (NaN values left out)."""


def opening_stats(opening: np.ndarray) -> OpeningStats:
    values = np.asarray(opening, np.float64)
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return OpeningStats(mean=None, std=None, frames=0)
    return OpeningStats(mean=round(float(values.mean()), 4), std=round(float(values.std()), 4), frames=len(values))


@dataclass(frozen=True)
class ClosedMouth:
    """The subject's closed-mouth jawOpen range, from the real clip's frames."""

    quantile: float
    low: float
    """Smallest jawOpen of the real clip."""
    high: float
    """jawOpen at ``quantile``: frames at or below it count as closed."""
    mean: float
    """Mean jawOpen of the closed frames."""
    std: float
    """Their standard deviation (how still a closed mouth is in the real clip)."""
    frames: int
    """How many closed frames."""

    def contains(self, value: float | None) -> bool:
        return value is not None and self.low <= value <= self.high


def closed_mouth(real_open: np.ndarray, quantile: float = CLOSED_QUANTILE) -> ClosedMouth:
    """Closed-mouth range of the subject from the jawOpen of its real frames (NaN frames left out).

    Raises:
        InputError: fewer than 3 frames with a face, or ``quantile`` outside (0, 1).
    """
    if not 0.0 < quantile < 1.0:
        raise InputError(f"quantile must lie in (0, 1), got {quantile}")
    values = np.asarray(real_open, np.float64)
    values = values[np.isfinite(values)]
    if len(values) < 3:
        raise InputError(f"the closed-mouth range needs the jawOpen of at least 3 real frames, got {len(values)}")
    high = float(np.quantile(values, quantile))
    closed = values[values <= high]
    return ClosedMouth(quantile=float(quantile), low=round(float(values.min()), 4), high=round(high, 4),
                       mean=round(float(closed.mean()), 4), std=round(float(closed.std()), 4), frames=len(closed))


def stretch_samples(frames: range, sample_rate: int, fps: float, length: int) -> slice:
    """The samples shown during video frames ``frames`` (frame ``i`` covers ``[i / fps, (i + 1) / fps)``)."""
    if sample_rate <= 0 or fps <= 0:
        raise InputError(f"sample rate and fps must be positive (got {sample_rate}, {fps})")
    start = int(round(frames.start * sample_rate / fps))
    stop = int(round(frames.stop * sample_rate / fps))
    if not 0 <= start < stop <= length:
        raise InputError(f"frames {frames.start}..{frames.stop - 1} lie outside the audio "
                         f"({length / sample_rate:.2f} s at {fps:g} fps)")
    return slice(start, stop)


def replace_stretch(wave: np.ndarray, sample_rate: int, fps: float, frames: range, mode: str) -> np.ndarray:
    """A copy of ``wave`` whose samples under video frames ``frames`` are time-reversed or silenced.

    The rest of the waveform is untouched, so an encoder with context windows sees the same sound up to the stretch.

    Args:
        wave: ``[T]`` or ``[C, T]`` samples.
        mode: ``"own"`` (unchanged copy), ``"reversed"`` or ``"silent"``.
    """
    array = np.array(wave, dtype=np.float32, copy=True)
    if mode == "own":
        return array
    window = stretch_samples(frames, sample_rate, fps, array.shape[-1])
    if mode == "reversed":
        array[..., window] = array[..., window][..., ::-1]
    elif mode == "silent":
        array[..., window] = 0.0
    else:
        raise InputError(f"mode must be 'own', 'reversed' or 'silent', got {mode!r}")
    return array


__all__ = ["CLOSED_QUANTILE", "ClosedMouth", "OpeningStats", "closed_mouth", "opening_stats", "reference_leak",
           "replace_stretch", "stretch_samples"]
