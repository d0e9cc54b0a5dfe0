"""One window of 16 mel frames (200 ms) per video frame, at any frame rate.

Row count
    ``N = floor(num_samples * fps / sample_rate + 1/2)``: the video frames the audio covers, a frame counting as
    covered when at least half of it has audio. For a clip of ``F`` frames whose audio lasts exactly ``F / fps``
    seconds this is ``F``, so feature row ``i`` belongs to video frame ``i`` and training data lines up exactly.

Alignment (the original's rule at 25 fps, generalised)
    Mel frame ``j`` is centred at ``j / 80`` s. The window of video frame ``i`` starts at mel frame
    ``floor(80 * i / fps - 6.4)``: 80 ms (6.4 mel frames) before the frame's start time, so its 200 ms span is
    centred 13.75 ms after the frame starts, minus up to one 12.5 ms mel hop lost by the floor. At 25 fps this is
    ``floor(3.2 * (i - 2))``, exactly the original SyncTalk: its window ``k`` starts at ``int(80 * k / 25)`` and
    its 2-row front padding gives frame ``i`` window ``k = i - 2`` (``reference-synctalk.md`` §1.2).

Edge padding
    Starts are clamped to ``[0, T_mel - 16]``: frames near the start reuse the first full window and frames near
    the end the last one (a window is never cut or zero-filled). This equals the original's 2 copied rows at the
    front and its "shift the last window back" rule at the end.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from synctalk_lib.audio.mel import MEL_FPS
from synctalk_lib.errors import InputError

WINDOW = 16
"""Mel frames per video frame window (200 ms)."""
LEAD_SECONDS = 0.08
"""How far a frame's window starts before the frame itself (2 frames at 25 fps)."""
_EPS = 1e-7  # keeps exact integers such as 3.2 * 5 = 16 from rounding down to 15.999...


def frame_count(num_samples: int, sample_rate: int, fps: float) -> int:
    """Video frames covered by ``num_samples`` of audio at ``sample_rate``: ``floor(duration * fps + 1/2)``."""
    if sample_rate <= 0 or fps <= 0:
        raise InputError(f"sample rate and fps must be positive (got {sample_rate} Hz, {fps} fps)")
    return int(math.floor(num_samples * float(fps) / sample_rate + 0.5 + _EPS))


def window_starts(num_frames: int, num_mel_frames: int, fps: float) -> np.ndarray:
    """First mel frame of each video frame's window.

    Args:
        num_frames: video frames ``N``.
        num_mel_frames: ``T_mel`` of the spectrogram (at least ``WINDOW``).
        fps: video frame rate.

    Returns:
        ``[N]`` int64 starts in ``[0, T_mel - 16]``.
    """
    if num_mel_frames < WINDOW:
        raise InputError(f"the audio is shorter than one window ({num_mel_frames} mel frames, need {WINDOW}: "
                         f"{WINDOW / MEL_FPS * 1000:.0f} ms)")
    i = np.arange(num_frames, dtype=np.float64)
    starts = np.floor(MEL_FPS * i / float(fps) - MEL_FPS * LEAD_SECONDS + _EPS).astype(np.int64)
    return np.clip(starts, 0, num_mel_frames - WINDOW)


def gather_windows(mel: torch.Tensor, starts: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Cut the windows out of a spectrogram.

    Args:
        mel: ``[T_mel, 80]``.
        starts: ``[N]`` first mel frame of each window.

    Returns:
        ``[N, 80, 16]`` (mel bin, time): the AVE's input layout without its channel axis.
    """
    starts_t = torch.as_tensor(np.asarray(starts), dtype=torch.int64, device=mel.device)
    index = starts_t[:, None] + torch.arange(WINDOW, device=mel.device)[None, :]  # [N, 16]
    return mel[index].transpose(1, 2).contiguous()
