"""Per-video-frame mel windows: row count, edge padding, and the original SyncTalk alignment at 25 fps."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from synctalk_lib.audio.mel import num_mel_frames
from synctalk_lib.audio.windows import WINDOW, frame_count, gather_windows, window_starts
from synctalk_lib.errors import InputError


def original_synctalk_starts(t_mel: int, num_frames: int) -> np.ndarray:
    """The original's rule, written out step by step (reference-synctalk.md section 1.2).

    L items, item k starts at int(80 k / 25) and is shifted back to end at T_mel; 2 copies of the first row are
    prepended and 2 of the last appended; video frame i takes row min(i, L + 3).
    """
    items = int((t_mel - 16) / 80 * 25) + 2
    starts = []
    for k in range(items):
        start = int(80.0 * k / 25)
        if start + 16 > t_mel:
            start = t_mel - 16
        starts.append(start)
    rows = [starts[0]] * 2 + starts + [starts[-1]] * 2
    return np.array([rows[min(i, items + 3)] for i in range(num_frames)])


@pytest.mark.parametrize("num_samples", [211840, 211840 + 199, 211840 + 321, 64000, 3000, 3001, 5123, 480000])
def test_25fps_alignment_equals_the_original(num_samples):
    t_mel = num_mel_frames(num_samples)
    n = frame_count(num_samples, 16000, 25.0)
    ours = window_starts(n, t_mel, 25.0)
    original = original_synctalk_starts(t_mel, n)
    np.testing.assert_array_equal(ours, original)


def test_clip_of_f_frames_gives_f_rows():
    for frames in (8, 25, 331, 1000, 7501):
        samples = frames * 640  # exactly frames / 25 s at 16 kHz
        assert frame_count(samples, 16000, 25.0) == frames
        assert frame_count(frames * 1764, 44100, 25.0) == frames
    assert frame_count(211840, 16000, 25.0) == 331  # may_short.mp4: 13.24 s


def test_row_count_rounds_half_up():
    # 30 fps, 16 kHz: one frame = 533.33 samples, 10.5 frames = 5600 samples
    assert frame_count(5599, 16000, 30.0) == 10
    assert frame_count(5601, 16000, 30.0) == 11
    assert frame_count(640 * 5 + 320, 16000, 25.0) == 6    # exactly 5.5 frames -> 6
    assert frame_count(0, 16000, 25.0) == 0


@pytest.mark.parametrize("fps", [25.0, 30.0, 29.97, 50.0, 60.0, 12.5])
def test_windows_are_centred_on_their_frame_at_any_fps(fps):
    seconds = 10.0
    t_mel = num_mel_frames(int(seconds * 16000))
    n = frame_count(int(seconds * 16000), 16000, fps)
    starts = window_starts(n, t_mel, fps)
    assert starts.min() == 0 and starts.max() <= t_mel - WINDOW
    assert np.all(np.diff(starts) >= 0)
    # away from the ends the window centre (mel frame start + 7.5, 80 per second) lies 1.25..13.75 ms after the
    # frame start: 13.75 ms minus the part of a 12.5 ms mel hop lost by flooring the start
    frame_start = np.arange(n) / fps
    centre = (starts + 7.5) / 80.0
    inner = (frame_start > 0.1) & (frame_start < seconds - 0.2)
    offset = centre[inner] - frame_start[inner]
    assert offset.min() > 0.00125 - 1e-9 and offset.max() < 0.01375 + 1e-9, (offset.min(), offset.max())


def test_edge_padding_repeats_the_first_and_last_full_window():
    t_mel = num_mel_frames(16000 * 2)
    starts = window_starts(50, t_mel, 25.0)
    assert list(starts[:3]) == [0, 0, 0]  # frames 0, 1 reuse the first window (2-row front padding)
    assert starts[3] == 3
    assert starts[-1] == t_mel - WINDOW - 1 or starts[-1] == t_mel - WINDOW


def test_gather_windows_layout():
    mel = torch.arange(30 * 80, dtype=torch.float32).reshape(30, 80)
    windows = gather_windows(mel, np.array([0, 5, 14]))
    assert windows.shape == (3, 80, WINDOW)
    assert torch.equal(windows[1, :, 0], mel[5]) and torch.equal(windows[1, :, 15], mel[20])
    assert torch.equal(windows[2, 7, :], mel[14:30, 7])


def test_too_short_for_a_window():
    with pytest.raises(InputError, match="shorter than one window"):
        window_starts(3, 15, 25.0)
