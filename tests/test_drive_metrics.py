"""Drive metrics on synthetic signals: reference leak through the ping-pong timeline, the subject's closed-mouth
range, jawOpen statistics, and the held-out audio variants (time-reversed / silenced stretch)."""
from __future__ import annotations

import numpy as np
import pytest

from synctalk_lib.errors import InputError
from synctalk_lib.metrics.drive import (closed_mouth, opening_stats, reference_leak, replace_stretch,
                                        stretch_samples)
from synctalk_lib.metrics.lipsync import pearson
from synctalk_lib.timeline import reference_indices


def test_pearson_skips_nans_and_rejects_length_mismatch():
    a = np.array([1.0, 2.0, np.nan, 4.0, 5.0])
    assert pearson(a, 2 * a + 1) == pytest.approx(1.0)
    assert pearson(a, -a) == pytest.approx(-1.0)
    assert np.isnan(pearson(np.ones(5), a))
    assert np.isnan(pearson(a[:2], a[:2]))
    with pytest.raises(ValueError, match="lengths"):
        pearson(a, a[:3])


def test_a_render_that_copies_the_reference_mouth_leaks_fully():
    """Output frame k shows reference frame reference_indices(k): copying that frame's jawOpen gives r = 1, also
    past the end of the clip (ping-pong) and for a render that starts later in the timeline."""
    rng = np.random.default_rng(0)
    reference = rng.random(40)
    for start, count in ((0, 100), (13, 57)):
        copied = reference[reference_indices(count, len(reference), start=start)]
        assert reference_leak(copied, reference, start=start) == pytest.approx(1.0)
        assert reference_leak(0.3 * copied + 0.1, reference, start=start) == pytest.approx(1.0)


def test_a_render_that_follows_only_the_audio_does_not_leak():
    rng = np.random.default_rng(1)
    reference = rng.random(331)
    audio_driven = rng.random(2000)
    assert abs(reference_leak(audio_driven, reference)) < 0.06
    # half copied, half audio: in between
    mixed = audio_driven + reference[reference_indices(2000, 331)]
    assert 0.6 < reference_leak(mixed, reference) < 0.8  # r = 1/sqrt(2) for equal variances


def test_reference_leak_handles_missing_faces_and_constant_signals():
    reference = np.linspace(0, 1, 20)
    rendered = reference[reference_indices(30, 20)].copy()
    rendered[[3, 7]] = np.nan  # no face found in those output frames
    assert reference_leak(rendered, reference) == pytest.approx(1.0)
    assert reference_leak(np.full(30, 0.2), reference) is None
    with pytest.raises(InputError, match="reference_open"):
        reference_leak(rendered, np.zeros((0,)))


def test_closed_mouth_range_from_the_real_clip():
    rng = np.random.default_rng(2)
    closed = np.sort(rng.uniform(0.00, 0.05, 40))  # mouth closed in 40 of 300 frames
    talking = rng.uniform(0.15, 0.6, 260)
    values = np.concatenate([talking[:100], closed, talking[100:], [np.nan]])
    c = closed_mouth(values, quantile=0.1)  # the 10th percentile lies among the closed frames
    assert c.quantile == 0.1 and c.frames == 30
    assert c.low == pytest.approx(closed[0], abs=1e-4)
    assert closed[29] - 1e-4 <= c.high <= closed[30] + 1e-4
    assert c.mean == pytest.approx(closed[:30].mean(), abs=1e-4)
    assert c.std == pytest.approx(closed[:30].std(), abs=1e-4)
    assert c.contains(closed[5]) and not c.contains(0.3) and not c.contains(None)
    with pytest.raises(InputError, match="at least 3"):
        closed_mouth(np.array([0.1, np.nan]))
    with pytest.raises(InputError, match="quantile"):
        closed_mouth(values, quantile=1.5)


def test_opening_stats_of_a_still_and_a_moving_mouth():
    still = opening_stats(np.full(50, 0.03))
    assert still.mean == pytest.approx(0.03) and still.std == 0.0 and still.frames == 50
    moving = opening_stats(np.array([0.0, 0.4, np.nan, 0.0, 0.4]))
    assert moving.mean == pytest.approx(0.2) and moving.std == pytest.approx(0.2) and moving.frames == 4
    empty = opening_stats(np.array([np.nan]))
    assert empty.mean is None and empty.std is None and empty.frames == 0


def test_held_out_stretch_is_reversed_or_silenced_in_place():
    rate, fps = 16000, 25.0
    wave = np.arange(2 * rate, dtype=np.float32)[None] / rate  # 2 s ramp = 50 frames
    window = stretch_samples(range(30, 40), rate, fps, wave.shape[-1])
    assert (window.start, window.stop) == (19200, 25600)  # 640 samples per frame
    reversed_ = replace_stretch(wave, rate, fps, range(30, 40), "reversed")
    assert np.array_equal(reversed_[0, window], wave[0, window][::-1])
    assert np.array_equal(reversed_[0, :window.start], wave[0, :window.start])
    assert np.array_equal(reversed_[0, window.stop:], wave[0, window.stop:])
    silent = replace_stretch(wave[0], rate, fps, range(30, 40), "silent")
    assert not silent[window].any() and np.array_equal(silent[window.stop:], wave[0, window.stop:])
    own = replace_stretch(wave, rate, fps, range(30, 40), "own")
    assert np.array_equal(own, wave) and own is not wave
    with pytest.raises(InputError, match="outside the audio"):
        replace_stretch(wave, rate, fps, range(45, 60), "reversed")
    with pytest.raises(InputError, match="mode"):
        replace_stretch(wave, rate, fps, range(30, 40), "backwards")
