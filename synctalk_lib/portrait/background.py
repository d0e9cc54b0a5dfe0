"""The clean background of a clip, and the per-frame background the head is rendered over.

``clean_background``: for every pixel, the temporal median over sampled frames of the frames in which that pixel
lies OUTSIDE the (dilated) head region. Pixels the head covers in every sampled frame were never seen: they are
filled from the nearest observed background (OpenCV's Telea inpainting, or a nearest-pixel copy without OpenCV).
A median of head pixels therefore never leaks into the background, and the NeRF has to render the whole head.

``frame_background``: the frame itself with its head region replaced by the clean background, so the torso, neck
and background under the rendered head are that frame's own (like the original's torso images over ``bc.jpg``).
"""
from __future__ import annotations

from dataclasses import dataclass


import numpy as np

from synctalk_lib.face.regions import FaceRegions
from synctalk_lib.types import Clip
from synctalk_lib.progress import StepCallback


@dataclass(frozen=True)
class Background:
    """A clean background image and how it was obtained."""

    image: np.ndarray
    """[H, W, 3] uint8 RGB."""
    observed: np.ndarray
    """[H, W] bool: True where the median of real background pixels was used, False where it was filled."""
    samples: int
    """Number of frames the median was taken over."""

    @property
    def filled_fraction(self) -> float:
        return float(1.0 - self.observed.mean())


def sample_indices(num_frames: int, max_samples: int) -> np.ndarray:
    """Up to ``max_samples`` frame indices spread evenly over the clip (first and last included)."""
    count = max(1, min(int(max_samples), int(num_frames)))
    return np.unique(np.round(np.linspace(0, num_frames - 1, count)).astype(np.int64))


def clean_background(clip: Clip, regions: FaceRegions, *, max_samples: int = 64, margin: float = 0.02,
                     min_count: int = 1, on_step: StepCallback | None = None) -> Background:
    """Temporal median of the non-head pixels of sampled frames, unseen pixels filled from their surroundings.

    Args:
        clip: the reference clip (frames read one at a time from its memory map).
        regions: face regions of the clip at the clip's resolution.
        max_samples: frames sampled evenly over the clip for the median.
        margin: the head region is grown by this fraction of the image size before a pixel counts as background
            (keeps hair strands and soft edges out of the median).
        min_count: a pixel needs at least this many background observations to be kept.
        on_step: progress callback ``(done, total)``.

    Returns:
        The background at the clip's resolution.
    """
    if regions.height != clip.height or regions.width != clip.width:
        regions = regions.resized(clip.height, clip.width)
    indices = sample_indices(clip.num_frames, max_samples)
    dilate = int(round(margin * max(clip.height, clip.width)))
    frames = np.empty((len(indices), clip.height, clip.width, 3), np.uint8)
    valid = np.empty((len(indices), clip.height, clip.width), bool)
    memmap = clip.frames()
    for k, index in enumerate(indices):
        frames[k] = memmap[index]
        valid[k] = ~regions.head_mask(int(index), dilate=dilate)
        if on_step is not None:
            on_step(k + 1, len(indices) + 1)
    image, count = masked_median(frames, valid)
    observed = count >= max(1, int(min_count))
    image = fill_unobserved(image, observed)
    if on_step is not None:
        on_step(len(indices) + 1, len(indices) + 1)
    return Background(image=image, observed=observed, samples=len(indices))


def masked_median(frames: np.ndarray, valid: np.ndarray, *, rows_per_block: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel median over the valid samples.

    Args:
        frames: [S, H, W, 3] uint8.
        valid: [S, H, W] bool, which samples count at each pixel.

    Returns:
        (median [H, W, 3] uint8 (the lower median; 0 where nothing was valid), count [H, W] int number of valid
        samples).
    """
    samples, height, width, _ = frames.shape
    out = np.zeros((height, width, 3), np.uint8)
    count = valid.sum(axis=0)
    for r0 in range(0, height, rows_per_block):
        r1 = min(height, r0 + rows_per_block)
        block = frames[:, r0:r1].astype(np.int16)
        block[~valid[:, r0:r1]] = 1000  # invalid samples sort after every real value
        block.sort(axis=0)
        n = count[r0:r1]
        pick = np.clip((n - 1) // 2, 0, samples - 1)
        med = np.take_along_axis(block, pick[None, :, :, None].repeat(3, axis=3), axis=0)[0]
        med[n == 0] = 0
        out[r0:r1] = med.astype(np.uint8)
    return out, count


def fill_unobserved(image: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """Fill pixels where ``observed`` is False from the observed ones around them.

    Uses OpenCV's Telea inpainting when OpenCV is installed (smooth), else copies the nearest observed pixel.
    """
    if observed.all():
        return image.copy()
    if not observed.any():
        return image.copy()  # nothing to fill from: a clip where the head covers everything
    try:
        import cv2
    except ImportError:
        cv2 = None
    if cv2 is not None:
        hole = (~observed).astype(np.uint8)
        radius = max(3, int(0.01 * max(image.shape[:2])))
        filled = cv2.inpaint(np.ascontiguousarray(image), hole, radius, cv2.INPAINT_TELEA)
        filled[observed] = image[observed]
        return filled
    from scipy import ndimage

    _, (rows, cols) = ndimage.distance_transform_edt(~observed, return_indices=True)
    return image[rows, cols]


def frame_background(frame: np.ndarray, head_mask: np.ndarray, clean: np.ndarray) -> np.ndarray:
    """The frame with its head region replaced by the clean background.

    Args:
        frame: [H, W, 3] uint8.
        head_mask: [H, W] bool head region of this frame.
        clean: [H, W, 3] uint8 clean background.

    Returns:
        [H, W, 3] uint8 (a new array).
    """
    return np.where(head_mask[..., None], clean, frame)
