"""Portrait-Sync Generator: paste the rendered face into the original frame it was rendered for.

Per output frame ``k`` with reference frame ``j`` (``synctalk_lib.timeline.reference_indices``)::

    m    = GaussianBlur(face mask of frame j)            soft face region (face oval, chin extended)
    r'   = colour_match(render_k) with neck-gap fill     the render, seams matched, jaw gap filled
    out  = r' * m + original_j * (1 - m)

Hair, ears, neck, torso and background come from the original frame, so the render only has to be right on the
face. The neck gap: when the rendered jaw is higher than the reference frame's (mouth closing while the reference
mouth was open), the region between the two jaw lines shows the renderer's background; it is filled with the
reference frame's average neck colour (the paper's Fig. 5b).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from synctalk_lib.errors import InputError, require
from synctalk_lib.face import indices


@dataclass(frozen=True)
class BlendSettings:
    """How the render is pasted back."""

    blur_kernel: int = 9
    """Gaussian blur kernel (odd, pixels at 512) of the face mask edge; the original uses 9."""
    blur_sigma: float = 4.0
    """Gaussian sigma (pixels at 512); the original ends up with 4."""
    chin_extension: float = 9.0
    """How far (pixels at 512) the mask reaches below the chin in the middle half of the jaw."""
    color_match: bool = True
    """Shift the render's colours to match the original in a ring around the mask edge."""
    max_color_shift: float = 0.08
    """Largest per-channel colour shift (0..1) the seam matching may apply."""
    neck_fill: bool = True
    """Fill the renderer's transparent jaw gap with the average neck colour."""


def _cv2():
    return require("cv2", "Portrait blending (OpenCV)", "opencv-contrib-python")


def _scale(height: int, width: int) -> float:
    """Pixel sizes in BlendSettings are given at 512; scale them to this frame."""
    return max(height, width) / 512.0


def face_mask(landmarks: np.ndarray, height: int, width: int, chin_extension: float = 9.0) -> np.ndarray:
    """Hard face mask ``[H, W]`` float32 in {0, 1}: the face oval, plus the chin pushed down in the jaw's middle half.

    Args:
        landmarks: [478, 2+] MediaPipe landmarks of the reference frame, pixels.
    """
    cv2 = _cv2()
    mask = np.zeros((height, width), np.uint8)
    oval = np.round(landmarks[list(indices.FACE_OVAL), :2]).astype(np.int32)
    cv2.fillPoly(mask, [oval], 1)
    jaw = landmarks[list(indices.JAW), :2].astype(np.float32)
    quarter = len(jaw) // 4
    middle = jaw[quarter:len(jaw) - quarter].copy()
    shifted = middle + np.array([0.0, chin_extension * _scale(height, width)], np.float32)
    cv2.fillPoly(mask, [np.round(np.concatenate([middle, shifted[::-1]])).astype(np.int32)], 1)
    return mask.astype(np.float32)


def soft_mask(mask: np.ndarray, kernel: int, sigma: float) -> np.ndarray:
    """Gaussian-blurred mask (kernel forced odd, scaled from 512 px)."""
    cv2 = _cv2()
    scale = _scale(*mask.shape)
    k = max(1, int(round(kernel * scale)))
    k += 1 - k % 2
    return cv2.GaussianBlur(mask.astype(np.float32), (k, k), sigma * scale)


def neck_colour(frame: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """Average colour ``[3]`` float32 (0..1) of the neck just below the chin in ``frame`` (uint8 or float).

    Sampled in a band under the chin, between the jaw corners' inner halves, from 5 % to 25 % of the face height
    below the chin; the median of that band resists collars and hair strands.
    """
    img = frame.astype(np.float32) / (255.0 if frame.dtype == np.uint8 else 1.0)
    height, width = img.shape[:2]
    chin = landmarks[indices.CHIN, :2]
    face_height = float(chin[1] - landmarks[indices.FOREHEAD_TOP, 1])
    jaw = landmarks[list(indices.JAW), 0]
    left, right = np.percentile(jaw, [25, 75])
    y0 = int(np.clip(chin[1] + 0.05 * face_height, 0, height - 1))
    y1 = int(np.clip(chin[1] + 0.25 * face_height, y0 + 1, height))
    x0, x1 = int(np.clip(left, 0, width - 1)), int(np.clip(right, left + 1, width))
    band = img[y0:y1, x0:x1].reshape(-1, 3)
    if band.size == 0:  # chin at the bottom edge: no neck visible, fall back to the lowest face row
        band = img[max(0, int(chin[1]) - 2):int(chin[1]) + 1, x0:x1].reshape(-1, 3)
    return np.median(band, axis=0).astype(np.float32)


def _ring(mask: np.ndarray, width_px: int) -> np.ndarray:
    cv2 = _cv2()
    kernel = np.ones((2 * width_px + 1, 2 * width_px + 1), np.uint8)
    hard = (mask > 0.5).astype(np.uint8)
    return (cv2.dilate(hard, kernel) > 0) & ~(cv2.erode(hard, kernel) > 0)


def colour_shift(render: np.ndarray, original: np.ndarray, mask: np.ndarray, valid: np.ndarray,
                 max_shift: float) -> np.ndarray:
    """Per-channel offset ``[3]`` that makes the render match the original around the mask edge."""
    ring = _ring(mask, max(2, int(round(6 * _scale(*mask.shape))))) & valid
    if ring.sum() < 16:
        return np.zeros(3, np.float32)
    shift = original[ring].mean(axis=0) - render[ring].mean(axis=0)
    return np.clip(shift, -max_shift, max_shift).astype(np.float32)


def prepare_render(render: np.ndarray, alpha: np.ndarray | None, original: np.ndarray, landmarks: np.ndarray | None,
                   settings: BlendSettings = BlendSettings()) -> tuple[np.ndarray, np.ndarray]:
    """The corrected render and the soft blend mask for one frame (see ``blend_frame``).

    Returns:
        (render [H, W, 3] float32 0..1 with the neck gap filled and seam colours matched, mask [H, W] float32 0..1).
    """
    height, width = original.shape[:2]
    if render.shape != original.shape:
        raise InputError(f"rendered frame is {render.shape[1]}x{render.shape[0]} but the reference frame is "
                         f"{width}x{height}; render at the reference clip's size")
    opaque = np.ones((height, width), np.float32) if alpha is None else alpha.astype(np.float32)
    if landmarks is not None:
        hard = face_mask(landmarks, height, width, settings.chin_extension)
    else:
        cv2 = _cv2()
        radius = max(1, int(round(settings.blur_kernel * _scale(height, width) / 2)))
        hard = cv2.erode((opaque > 0.5).astype(np.uint8), np.ones((2 * radius + 1,) * 2, np.uint8)).astype(np.float32)
    out = render.astype(np.float32).copy()
    if settings.neck_fill and landmarks is not None and alpha is not None:
        out = fill_neck_gap(out, opaque, hard, original, landmarks)
    if settings.color_match:
        out = np.clip(out + colour_shift(out, original, hard, opaque > 0.5, settings.max_color_shift), 0.0, 1.0)
    return out, soft_mask(hard, settings.blur_kernel, settings.blur_sigma)


def blend_frame(render: np.ndarray, alpha: np.ndarray | None, original: np.ndarray, landmarks: np.ndarray | None,
                settings: BlendSettings = BlendSettings()) -> np.ndarray:
    """Blend one rendered frame into its reference frame.

    Args:
        render: [H, W, 3] float32 0..1 rendered frame (head over the renderer's background).
        alpha: [H, W] float32 0..1 head opacity from the renderer, or None (treated as opaque).
        original: [H, W, 3] float32 0..1 reference frame the render was made for.
        landmarks: [478, 2+] landmarks of the reference frame, or None: then the mask is the renderer's alpha,
            shrunk by the blur radius (it then also covers hair, which the render must get right).
    Returns:
        [H, W, 3] float32 0..1.
    """
    fixed, m = prepare_render(render, alpha, original, landmarks, settings)
    return fixed * m[..., None] + original.astype(np.float32) * (1.0 - m[..., None])


def fill_neck_gap(render: np.ndarray, alpha: np.ndarray, mask: np.ndarray, original: np.ndarray,
                  landmarks: np.ndarray) -> np.ndarray:
    """Where the face mask shows the renderer's background below the mouth, paint the average neck colour."""
    mouth_row = float(landmarks[list(indices.LIPS_OUTER), 1].mean())
    rows = np.arange(render.shape[0], dtype=np.float32)[:, None]
    gap_weight = (1.0 - np.clip(alpha, 0.0, 1.0)) * (mask > 0.5) * (rows > mouth_row)
    if not gap_weight.any():
        return render
    colour = neck_colour(original, landmarks)
    w = gap_weight[..., None].astype(np.float32)
    return render * (1.0 - w) + colour[None, None, :] * w


def paste_full_resolution(full_frame: np.ndarray, render: np.ndarray, crop_box: tuple[int, int, int, int],
                          mask: np.ndarray) -> np.ndarray:
    """Blend a corrected render into the full-resolution source frame through the clip's crop box.

    Args:
        full_frame: [Hs, Ws, 3] float32 0..1 source frame (the reference frame at source resolution).
        render: [H, W, 3] float32 corrected render at clip resolution (``prepare_render``).
        crop_box: (x0, y0, x1, y1) of the crop in source pixels.
        mask: [H, W] soft blend mask (``prepare_render``); only that region is replaced, so every other pixel
            keeps the source's full resolution.
    """
    cv2 = _cv2()
    x0, y0, x1, y1 = crop_box
    if not (0 <= x0 < x1 <= full_frame.shape[1] and 0 <= y0 < y1 <= full_frame.shape[0]):
        raise InputError(f"crop box {crop_box} lies outside the {full_frame.shape[1]}x{full_frame.shape[0]} source "
                         "frame; was the clip prepared from a different video?")
    size = (x1 - x0, y1 - y0)
    up = cv2.resize(render, size, interpolation=cv2.INTER_CUBIC)
    up_mask = cv2.resize(mask.astype(np.float32), size, interpolation=cv2.INTER_LINEAR)[..., None]
    out = full_frame.astype(np.float32).copy()
    region = out[y0:y1, x0:x1]
    out[y0:y1, x0:x1] = np.clip(up, 0.0, 1.0) * up_mask + region * (1.0 - up_mask)
    return out
