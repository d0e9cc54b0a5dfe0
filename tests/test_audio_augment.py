"""Speaker variants: the same frames, a different voice (shifted spectrum), rows still on their video frames."""
from __future__ import annotations

import numpy as np
import pytest

from synctalk_lib.audio.augment import gated_pauses, paused_frames, speaker_variants
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
    variants = speaker_variants(wave, RATE, fps=FPS, encoder="mel", num_frames=FRAMES, rates=(0.85, 1.18),
                                gate_pauses=False)
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


def test_pauses_become_digital_silence_and_speech_stays():
    """Room noise between the bursts is zeroed; the bursts and short dips inside them are kept."""
    rng = np.random.default_rng(0)
    wave = _bursts() + 0.001 * rng.standard_normal(_bursts().shape).astype(np.float32)  # -54 dB noise floor
    wave[:, int(12.2 / FPS * RATE):int(12.4 / FPS * RATE)] *= 0.01  # an 8 ms dip inside a burst
    gated = gated_pauses(wave, RATE)
    t = np.arange(wave.shape[1]) / RATE * FPS  # in video frames
    burst = ((t >= 10) & (t < 15)) | ((t >= 30) & (t < 35))
    pause = ((t >= 16) & (t < 29)) | (t < 9) | (t >= 36)
    assert np.array_equal(gated[:, burst], wave[:, burst])
    assert not gated[:, pause].any()
    rows = speaker_variants(wave, RATE, fps=FPS, encoder="mel", num_frames=FRAMES, rates=())
    assert len(rows) == 1 and rows[0].features.shape == (FRAMES, 1280)
    silence = encode_audio(np.zeros_like(wave), RATE, fps=FPS, encoder="mel").features
    assert np.allclose(rows[0].features[20], silence[20]) and not np.allclose(rows[0].features[12], silence[12])


def test_paused_frames_are_the_frames_of_the_pauses():
    rate, fps = 16000, 25.0
    rng = np.random.default_rng(0)
    wave = rng.normal(0, 0.3, rate * 2).astype(np.float32)  # 2 s of loud noise = 50 frames
    wave[int(0.6 * rate):int(1.0 * rate)] *= 1e-3  # frames 15..24 are a pause (room noise, -60 dB)
    paused = paused_frames(wave[None], rate, fps, 50)
    assert paused.shape == (50,) and np.flatnonzero(paused).tolist() == list(range(15, 25))
    assert not paused_frames(wave[None, :int(0.3 * rate)], rate, fps, 7).any(), "too short to judge: no pause"
