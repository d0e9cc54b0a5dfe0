"""Other voices from the subject's own speech, so the lips learn to follow speech, not one voice.

A subject is trained on minutes of one person's voice; it is then driven by other voices, pitches, speaking rates
and languages. Played ``r`` times faster, the same recording has its pitch and formants (vocal-tract length) scaled
by ``r`` and its syllables ``r`` times shorter: a different-sounding speaker saying the same thing, the classic
vocal-tract-length perturbation. The features are computed at ``r`` times the frame rate, so row ``i`` still
belongs to video frame ``i`` (the mouth in that frame is what the shifted voice is saying there).

    variants = speaker_variants(wave, 16000, fps=25.0, encoder="mel", rates=(0.88, 1.12))
    # [AudioFeatures with the same rows as the original: the pauses gated, then one per rate]
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from synctalk_lib.errors import InputError
from synctalk_lib.types import AudioFeatures

DEFAULT_RATES: tuple[float, ...] = (0.84, 0.92, 1.09, 1.19)
"""Speed factors of the variants: about -3 to +3 semitones, formants -16 % to +19 %, rate -16 % to +19 %."""


def speaker_variants(wave: np.ndarray, sample_rate: int, *, fps: float, encoder: str, num_frames: int,
                     rates: Sequence[float] = DEFAULT_RATES, gate_pauses: bool = True,
                     models_dirs: Iterable[Path | str] | None = None, device="cpu") -> list[AudioFeatures]:
    """Features of ``wave`` played at each speed in ``rates``, aligned to the same ``num_frames`` video frames;
    with ``gate_pauses`` first the same speech with its pauses as digital silence (:func:`gated_pauses`).

    Args:
        wave: [C, T] float audio of the subject's clip (frame 0 at sample 0).
        sample_rate: its rate in Hz.
        fps: the clip's frame rate.
        encoder: the ``encode_audio`` encoder the subject's features came from (the variants must match it).
        num_frames: rows to return (the clip's frames; a faster variant covers them exactly too).
    """
    from synctalk_lib.audio.features import encode_audio

    out: list[AudioFeatures] = []
    if gate_pauses:
        gated = encode_audio(gated_pauses(wave, sample_rate), sample_rate, fps=fps, encoder=encoder,
                             models_dirs=models_dirs, device=device)
        out.append(_fit_rows(gated, num_frames, fps))
    for rate in rates:
        if not 0.5 <= float(rate) <= 2.0:
            raise InputError(f"speaker variant speed {rate} is outside 0.5..2.0")
        # The same samples declared at r * sample_rate play r times faster; rows at r * fps stay on the frames.
        features = encode_audio(wave, int(round(sample_rate * rate)), fps=fps * rate, encoder=encoder,
                                models_dirs=models_dirs, device=device)
        out.append(_fit_rows(features, num_frames, fps))
    return out


def gated_pauses(wave: np.ndarray, sample_rate: int, *, floor_db: float = -35.0, window_s: float = 0.02,
                 min_pause_s: float = 0.12) -> np.ndarray:
    """``wave`` with its pauses set to digital silence: every stretch of at least ``min_pause_s`` whose short-time
    RMS stays ``floor_db`` below the loud (95th percentile) level.

    A driving recording's pauses are often digital silence, a training clip's are room noise: gated, the clip shows
    the network what silence sounds like next to the subject's own resting mouth in those frames.
    """
    keep = (~pause_samples(wave, sample_rate, floor_db=floor_db, window_s=window_s,
                           min_pause_s=min_pause_s)).astype(np.float32)
    return (np.asarray(wave, np.float32) * keep).astype(np.float32)


def pause_samples(wave: np.ndarray, sample_rate: int, *, floor_db: float = -35.0, window_s: float = 0.02,
                  min_pause_s: float = 0.12) -> np.ndarray:
    """``[T]`` bool: the samples inside pauses (see :func:`gated_pauses`)."""
    mono = np.asarray(wave, np.float32).reshape(-1, np.shape(wave)[-1]).mean(axis=0)
    hop = max(1, int(round(window_s * sample_rate)))
    count = len(mono) // hop
    if count == 0:
        return np.zeros(len(mono), bool)
    rms = np.sqrt(np.mean(mono[:count * hop].reshape(count, hop) ** 2, axis=1) + 1e-12)
    quiet = 20 * np.log10(rms / max(np.percentile(rms, 95), 1e-9)) < floor_db
    quiet = _long_runs(quiet, max(1, int(round(min_pause_s / window_s))))
    return np.concatenate([np.repeat(quiet, hop), np.zeros(len(mono) - count * hop, bool)])


def paused_frames(wave: np.ndarray, sample_rate: int, fps: float, num_frames: int) -> np.ndarray:
    """``[num_frames]`` bool: video frames at least half of whose sound lies in a pause (the subject is silent)."""
    paused = pause_samples(wave, sample_rate)
    edges = np.round(np.arange(num_frames + 1) * sample_rate / fps).astype(np.int64)
    out = np.zeros(num_frames, bool)
    for i in range(num_frames):
        part = paused[edges[i]:edges[i + 1]]
        out[i] = part.size > 0 and part.mean() >= 0.5
    return out


def _long_runs(mask: np.ndarray, length: int) -> np.ndarray:
    """``mask`` with its True runs shorter than ``length`` cleared."""
    out = np.zeros_like(mask)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
    for start, stop in zip(edges[::2], edges[1::2]):
        if stop - start >= length:
            out[start:stop] = True
    return out


def _fit_rows(features: AudioFeatures, num_frames: int, fps: float) -> AudioFeatures:
    """Exactly ``num_frames`` rows (rounding can add or drop the last one; the last row is repeated if short)."""
    rows = features.features[:num_frames]
    if len(rows) < num_frames:
        pad = np.repeat(rows[-1:], num_frames - len(rows), axis=0)
        rows = np.concatenate([rows, pad])
    return AudioFeatures(features=np.ascontiguousarray(rows, np.float32), fps=float(fps),
                         encoder_id=features.encoder_id, notes=features.notes)
