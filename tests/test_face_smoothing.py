"""One-Euro smoothing and its measures (jitter, lag) on synthetic signals with known answers."""
from __future__ import annotations

import numpy as np
import pytest

from synctalk_lib.face.smoothing import (
    LANDMARK_FILTER, SCORE_FILTER, OneEuroParams, face_scale, jitter, lag_frames, one_euro, smooth_landmarks,
    smooth_scores)

FPS = 25.0


def noisy_sine(n: int = 250, freq: float = 0.4, noise: float = 0.02, channels: int = 6, seed: int = 0):
    """Blendshape-like channels: 0.3 +- up to 0.25 at ``freq`` Hz, plus Gaussian noise."""
    t = np.arange(n) / FPS
    clean = 0.3 + 0.25 * np.sin(2 * np.pi * freq * t)[:, None] * np.linspace(0.5, 1.0, channels)[None]
    rng = np.random.default_rng(seed)
    return clean, clean + rng.normal(0.0, noise, clean.shape)


def test_jitter_and_lag_measures_on_known_signals():
    ramp = np.arange(50, dtype=np.float64)[:, None] * [1.0, -3.0]
    assert jitter(ramp) == pytest.approx(0.0)  # constant velocity is not jitter
    alternating = np.tile([0.0, 1.0], 25)[:, None]
    assert jitter(alternating) == pytest.approx(2.0)
    clean, _ = noisy_sine()
    for shift in (0, 1, 2, 3):
        late = np.concatenate([np.repeat(clean[:1], shift, axis=0), clean[: len(clean) - shift]])
        assert lag_frames(clean, late) == pytest.approx(shift, abs=0.05)
    early = np.concatenate([clean[2:], np.repeat(clean[-1:], 2, axis=0)])
    assert lag_frames(clean, early) == pytest.approx(-2, abs=0.05)


def test_one_euro_basics():
    const = np.full((30, 4), 0.7)
    np.testing.assert_allclose(one_euro(const, FPS, SCORE_FILTER), const, atol=1e-6)
    # Channels are independent: filtering them together equals filtering each alone.
    _, noisy = noisy_sine(channels=3)
    together = one_euro(noisy, FPS, SCORE_FILTER)
    for c in range(3):
        np.testing.assert_allclose(together[:, c], one_euro(noisy[:, c], FPS, SCORE_FILTER), atol=1e-6)
    # The causal filter never looks ahead: changing the future leaves the past unchanged.
    changed = noisy.copy()
    changed[100:] += 5.0
    causal_a = one_euro(noisy, FPS, SCORE_FILTER, zero_phase=False)
    causal_b = one_euro(changed, FPS, SCORE_FILTER, zero_phase=False)
    np.testing.assert_array_equal(causal_a[:100], causal_b[:100])
    assert one_euro(np.zeros((0, 3)), FPS, SCORE_FILTER).shape == (0, 3)
    with pytest.raises(ValueError):
        one_euro(noisy, 0.0, SCORE_FILTER)


@pytest.mark.parametrize("zero_phase,max_jitter,lag_range", [(True, 0.4, (-0.25, 0.25)), (False, 0.7, (0.1, 1.0))])
def test_noisy_sine_jitter_falls_and_lag_stays_bounded(zero_phase: bool, max_jitter: float, lag_range):
    clean, noisy = noisy_sine()
    smooth = one_euro(noisy, FPS, SCORE_FILTER, zero_phase=zero_phase)
    assert jitter(smooth) < max_jitter * jitter(noisy), (jitter(smooth), jitter(noisy))
    lag = lag_frames(clean, smooth)  # the causal filter trails a little; zero phase does not
    assert lag_range[0] <= lag <= lag_range[1], lag
    # Closer to the truth than the noisy input.
    assert np.sqrt(((smooth - clean) ** 2).mean()) < np.sqrt(((noisy - clean) ** 2).mean())


@pytest.mark.parametrize("zero_phase", [True, False])
def test_noisy_step_is_followed_quickly(zero_phase: bool):
    rng = np.random.default_rng(1)
    clean = np.where(np.arange(100) >= 50, 1.0, 0.0)[:, None].repeat(4, axis=1)
    noisy = clean + rng.normal(0.0, 0.02, clean.shape)
    smooth = one_euro(noisy, FPS, SCORE_FILTER, zero_phase=zero_phase)
    assert jitter(smooth[:45]) < 0.5 * jitter(noisy[:45]) and jitter(smooth[55:]) < 0.5 * jitter(noisy[55:])
    # Half-way crossing of the step: within a frame of the true step for the zero-phase filter (it is symmetric,
    # so it starts rising just before 50), within 2 frames (late) for the causal one.
    crossing = np.argmax(smooth.mean(axis=1) > 0.5)
    if zero_phase:
        assert 49 <= crossing <= 51, crossing
    else:
        assert 50 <= crossing <= 52, crossing
    assert np.abs(smooth[60:] - 1.0).max() < 0.1  # settled 10 frames after the step


def test_stronger_settings_smooth_more():
    _, noisy = noisy_sine(noise=0.05)
    gentle = one_euro(noisy, FPS, OneEuroParams(min_cutoff=5.0, beta=20.0))
    strong = one_euro(noisy, FPS, OneEuroParams(min_cutoff=1.0, beta=2.0))
    assert jitter(strong) < jitter(gentle) < jitter(noisy)


def test_landmark_smoothing_is_resolution_independent():
    rng = np.random.default_rng(2)
    base = rng.uniform(100, 300, size=(1, 478, 3))
    drift = np.linspace(0, 20, 60)[:, None, None]
    lm = (base + drift + rng.normal(0, 0.5, (60, 478, 3))).astype(np.float32)
    assert face_scale(lm) == pytest.approx(face_scale(4 * lm) / 4, rel=1e-5)
    small = smooth_landmarks(lm, FPS, LANDMARK_FILTER)
    large = smooth_landmarks(4 * lm, FPS, LANDMARK_FILTER)
    np.testing.assert_allclose(large, 4 * small, rtol=1e-4, atol=1e-3)
    assert jitter(small) < 0.6 * jitter(lm)
    scores = np.clip(rng.normal(0.5, 0.6, (40, 52)), 0, 1)
    out = smooth_scores(scores, FPS)
    assert out.min() >= 0.0 and out.max() <= 1.0 and out.dtype == np.float32
