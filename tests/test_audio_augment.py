"""Speaker variants: the same frames, a different voice (shifted spectrum), rows still on their video frames."""
from __future__ import annotations

import numpy as np
import pytest

from synctalk_lib.audio.augment import speaker_variants
from synctalk_lib.audio.features import encode_audio
from synctalk_lib.errors import InputError

RATE, FPS, FRAMES = 16000, 25.0, 50


def _bursts() -> np.ndarray:
    """2 s of silence with a 1 kHz tone burst at video frames 10-14 and 30-34."""
    t = np.arange(int(FRAMES / FPS * RATE)) / RATE
    wave = np.zeros_like(t)
    for first in (10, 30):
        on = (t >= first / FPS) & (t < (first + 5) / FPS)
        wave[on] = 0.5 * np.sin(2 * np.pi * 1000 * t[on])
    return wave[None].astype(np.float32)


def test_variants_keep_the_frames_and_shift_the_spectrum():
    wave = _bursts()
    base = encode_audio(wave, RATE, fps=FPS, encoder="mel").features
    variants = speaker_variants(wave, RATE, fps=FPS, encoder="mel", num_frames=FRAMES, rates=(0.85, 1.18))
    centre = base.reshape(FRAMES, 80, 16)[:, :, 8]  # the mel frame at each video frame's centre
    loud = np.flatnonzero(centre.max(axis=1) > centre.max() - 2.0)
    for variant, rate in zip(variants, (0.85, 1.18)):
        assert variant.features.shape == (FRAMES, 1280) and variant.fps == FPS
        frames = variant.features.reshape(FRAMES, 80, 16)[:, :, 8]
        on = np.flatnonzero(frames.max(axis=1) > frames.max() - 2.0)
        assert set(on) <= set(range(9, 16)) | set(range(29, 36)) and set(loud) & set(on)
        # the tone moves to another mel band: up for a faster variant, down for a slower one
        band_base = int(np.argmax(centre[12])), int(np.argmax(frames[12]))
        assert (band_base[1] > band_base[0]) == (rate > 1.0)


def test_bad_speed_is_refused():
    with pytest.raises(InputError, match="outside 0.5..2.0"):
        speaker_variants(_bursts(), RATE, fps=FPS, encoder="mel", num_frames=FRAMES, rates=(3.0,))
