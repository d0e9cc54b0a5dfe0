"""The lip-sync proxy: audio envelope per frame and its lagged correlation with the mouth opening."""
from __future__ import annotations

import numpy as np
import pytest

from synctalk_lib.metrics.lipsync import audio_envelope, lagged_correlation, lipsync_correlation


def test_identical_signals_correlate_perfectly():
    x = np.random.default_rng(0).normal(size=200)
    result = lipsync_correlation(x, x.copy(), max_lag=2)
    assert result["r"] == pytest.approx(1.0) and result["r_lag0"] == pytest.approx(1.0)
    assert result["lag"] == 0 and result["frames"] == 200


def test_independent_noise_is_about_zero():
    rng = np.random.default_rng(1)
    result = lipsync_correlation(rng.normal(size=4000), rng.normal(size=4000), max_lag=2)
    assert abs(result["r_lag0"]) < 0.05 and abs(result["r"]) < 0.06


def test_known_lag_is_found():
    rng = np.random.default_rng(2)
    sound = np.convolve(rng.normal(size=300), np.ones(3) / 3, mode="same")
    mouth = np.roll(sound, 2)  # the mouth opens two frames after the sound
    mouth[:2] = np.nan
    result = lipsync_correlation(sound, mouth, max_lag=3)
    assert result["lag"] == 2 and result["r"] == pytest.approx(1.0)
    assert result["r_lag0"] < 0.5
    assert lagged_correlation(sound, mouth, 2) == pytest.approx(1.0)
    # The other direction: the mouth leads.
    assert lipsync_correlation(sound, np.roll(sound, -1)[:-1], max_lag=2)["lag"] == -1


def test_constant_signal_gives_none():
    result = lipsync_correlation(np.ones(50), np.arange(50.0))
    assert result["r"] is None and result["r_lag0"] is None and result["lag"] is None


def test_envelope_counts_frames_and_peaks_at_a_tone_burst():
    rate, fps = 16000, 25.0
    t = np.arange(2 * rate) / rate  # 2 s -> 50 frames
    wave = 0.001 * np.sin(2 * np.pi * 220 * t)
    burst = (t >= 0.8) & (t < 1.0)  # frames 20..24 shown inside it
    wave[burst] = 0.5 * np.sin(2 * np.pi * 440 * t[burst])
    env = audio_envelope(np.stack([wave, wave]).astype(np.float32), rate, fps, 60)
    assert env.shape == (60,) and env.dtype == np.float32
    assert np.all(env[50:] == 0) or env[50] < 0.01  # past the audio's end
    # Windows span two frame periods centred on the frame: 21..24 lie fully inside the burst, 20 and 25 half.
    assert set(np.flatnonzero(env > 0.3)) == {21, 22, 23, 24}
    assert env[20] == pytest.approx(0.25, rel=0.03) and env[25] == pytest.approx(0.25, rel=0.03)
    assert 20 <= int(np.argmax(env)) <= 24
    assert env[21] == pytest.approx(0.5 / np.sqrt(2), rel=0.02)  # RMS of a full-window sine
    assert env[10] == pytest.approx(0.001 / np.sqrt(2), rel=0.05)
