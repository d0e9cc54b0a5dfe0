"""A clip's frames as a ComfyUI ``IMAGE`` within a memory budget.

``IMAGE`` is float32, four times the size of the cached uint8 frames: a 5-minute 512 x 512 clip would need
24 GB. ``image_preview`` returns every frame when they fit the budget, otherwise evenly spaced frames that do, and
says so. Frames are converted in small chunks straight into the preallocated result, so the peak is the result
plus one chunk.
"""
from __future__ import annotations

import numpy as np

from synctalk_lib.types import Clip

CHUNK_FRAMES = 32


def preview_indices(num_frames: int, frame_bytes: int, budget_bytes: int) -> np.ndarray:
    """Frame numbers to show: all of them if ``num_frames * frame_bytes`` fits ``budget_bytes``, else the most
    evenly spaced frames (first and last included) that fit, at least one. ``[n]`` int64, increasing."""
    if num_frames <= 0:
        return np.zeros(0, dtype=np.int64)
    fit = max(1, int(budget_bytes // max(frame_bytes, 1)))
    if fit >= num_frames:
        return np.arange(num_frames, dtype=np.int64)
    if fit == 1:
        return np.zeros(1, dtype=np.int64)
    return np.unique(np.round(np.linspace(0, num_frames - 1, fit)).astype(np.int64))


def image_preview(clip: Clip, budget_bytes: int):
    """The clip as ``IMAGE`` ``[n, H, W, 3]`` float32 0..1 within ``budget_bytes``, and a warning or None.

    Returns:
        (images, warning): ``images`` holds all frames when they fit, else evenly spaced ones; ``warning`` says
        how many of how many were kept and how to get all of them.
    """
    import torch

    frame_bytes = clip.height * clip.width * 3 * 4
    indices = preview_indices(clip.num_frames, frame_bytes, budget_bytes)
    images = torch.empty((len(indices), clip.height, clip.width, 3), dtype=torch.float32)
    for start in range(0, len(indices), CHUNK_FRAMES):
        chosen = indices[start:start + CHUNK_FRAMES]
        frames = clip.frames()  # a map per chunk: a map's pages stay resident until it is closed
        if len(chosen) and chosen[-1] - chosen[0] == len(chosen) - 1:
            chunk = np.array(frames[chosen[0]:chosen[-1] + 1])  # contiguous: one sequential read
        else:
            chunk = np.stack([frames[i] for i in chosen])
        out = images[start:start + len(chosen)]
        out.copy_(torch.from_numpy(chunk))
        out.div_(255.0)
    warning = None
    if len(indices) < clip.num_frames:
        need_mb = clip.num_frames * frame_bytes / 2**20
        warning = (f"frames preview: {len(indices)} evenly spaced frames of {clip.num_frames} (all of them would "
                   f"need {need_mb:,.0f} MB as float32 IMAGE, the budget is {budget_bytes / 2**20:,.0f} MB). "
                   "The clip itself keeps every frame; raise preview_memory_mb to get all frames.")
    return images, warning
