"""Portrait-Sync Generator: paste the rendered face into the original frame it was rendered for.

Per output frame ``k`` with reference frame ``j`` (``synctalk_lib.timeline.reference_indices``), seen from ``j``'s
camera ``c2w``::

    m    = GaussianBlur(face region at c2w)                  the face oval, its chin at the jaw's lowest reach
    r'   = restore_detail(colour_match(render_k), original_j, mouth region at c2w)
    out  = r' * m + original_j * (1 - m)

Every region comes from the camera and the subject's face geometry (``pose.face_geometry``), never from frame
``j``'s own landmarks: a mask cut along the reference jaw would keep the reference chin wherever the rendered jaw
differs (a second jaw line, or a pale band where the render's background shows below a jaw that closes earlier).
The renderer paints the neck down past the lowest chin, so the pasted region holds one jaw line, the render's.
Hair, ears, neck below, torso and background come from the original frame; inside the face, detail the render
lost comes back from the same-pose original wherever the render agrees with it (``portrait.restore``), while the
lips, teeth and jaw keep the render's shape.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

import numpy as np

from synctalk_lib.errors import InputError, require
from synctalk_lib.portrait.restore import DetailSettings, restore_detail


@dataclass(frozen=True)
class BlendSettings:
    """How the render is pasted back."""

    blur_kernel: int = 9
    """Gaussian blur kernel (odd, pixels at 512) of the face mask edge; the original uses 9."""
    blur_sigma: float = 4.0
    """Gaussian sigma (pixels at 512); the original ends up with 4."""
    color_match: bool = True
    """Shift the render's colours to match the original in a ring around the mask edge."""
    max_color_shift: float = 0.08
    """Largest per-channel colour shift (0..1) the seam matching may apply."""
    neck_fill: bool = True
    """Where the render is transparent inside the face region below the mouth (a jaw that closed earlier than any
    training frame's), paint the reference neck colour instead of showing the background."""
    restore_detail: bool = True
    """Bring back real detail from the same-pose original where the render agrees with it (``portrait.restore``)."""
    paste: Literal["mouth", "face"] = "mouth"
    """Which part of the face is the render's. "mouth": lips, chin and the jaw between the cheeks at their widest
    reach; eyes, brows, forehead, cheeks and jaw corners stay the reference frame's own sharp pixels — right whenever the expression
    replays the reference frames (the default "training" expression). "face": the whole face oval, for renders with
    another expression ("neutral") or other head poses."""
    detail: DetailSettings = DetailSettings()


@dataclass(frozen=True)
class BlendMasks:
    """The regions of one frame a blend needs (from its camera and the face geometry; ``pose_masks``)."""

    face: np.ndarray
    """[H, W] bool: where the render is pasted (face oval down to the jaw's lowest reach)."""
    mouth: np.ndarray
    """[H, W] float32 0..1: the region the audio drives (soft edges); its shape stays the render's."""
    mouth_row: float
    """Image row of the mouth (the neck fill acts below it)."""
    neck_band: tuple[int, int, int, int]
    """(r0, r1, c0, c1) of the reference frame's neck just below the lowest chin, for the neck colour."""
    chin: np.ndarray | None = None
    """[H, W] bool: what ``paste="mouth"`` replaces — lips, chin and the jaw between the cheeks at their widest
    reach (None: no face geometry, ``face`` is used)."""


def _cv2():
    return require("cv2", "Portrait blending (OpenCV)", "opencv-contrib-python")


def _scale(height: int, width: int) -> float:
    """Pixel sizes in BlendSettings are given at 512; scale them to this frame."""
    return max(height, width) / 512.0


def pose_masks(regions, c2w: np.ndarray) -> BlendMasks:
    """The blend regions of a frame seen from ``c2w`` (``regions``: a ``PoseRegions`` at the frame's size)."""
    from synctalk_lib.face.indices import CHIN, LIPS_OUTER

    g = regions.geometry
    face = (regions.mask("face", c2w) > 0.5) | (regions.mask("mouth", c2w) > 0.5)
    feather = 0.08 * regions.face_height_px(c2w)
    mouth = regions.mask("mouth", c2w, feather=feather)
    lips = regions.project(g.neutral[list(LIPS_OUTER)], c2w)
    chin = regions.project(g.lower_face_reach(regions.shape.jaw_extra)[[len(g.neutral) + CHIN]], c2w)[0]
    face_h = regions.face_height_px(c2w)
    half = 0.25 * float(lips[:, 0].max() - lips[:, 0].min()) + 1.0
    r0 = int(np.clip(chin[1] + 0.05 * face_h, 0, regions.height - 1))
    band = (r0, int(np.clip(chin[1] + 0.25 * face_h, r0 + 1, regions.height)),
            int(np.clip(chin[0] - half, 0, regions.width - 1)), int(np.clip(chin[0] + half + 1, 1, regions.width)))
    return BlendMasks(face=face, mouth=mouth, mouth_row=float(lips[:, 1].mean()), neck_band=band,
                      chin=(regions.mask("chin", c2w) > 0.5) & face)


def alpha_masks(alpha: np.ndarray, settings: BlendSettings = BlendSettings()) -> BlendMasks:
    """Blend regions without a face geometry: the renderer's opacity shrunk by the blur radius (it then also covers
    hair, which the render must get right); no mouth region, no neck fill."""
    cv2 = _cv2()
    height, width = alpha.shape
    radius = max(1, int(round(settings.blur_kernel * _scale(height, width) / 2)))
    face = cv2.erode((alpha > 0.5).astype(np.uint8), np.ones((2 * radius + 1,) * 2, np.uint8)).astype(bool)
    return BlendMasks(face=face, mouth=np.zeros((height, width), np.float32), mouth_row=float(height),
                      neck_band=(0, 0, 0, 0))


def soft_mask(mask: np.ndarray, kernel: int, sigma: float, scale: float | None = None) -> np.ndarray:
    """Gaussian-blurred mask (kernel forced odd, scaled from 512 px by ``scale``, default the mask's own size: give
    the frame's for a crop)."""
    cv2 = _cv2()
    scale = _scale(*mask.shape) if scale is None else scale
    k = max(1, int(round(kernel * scale)))
    k += 1 - k % 2
    return cv2.GaussianBlur(mask.astype(np.float32), (k, k), sigma * scale)


def neck_colour(frame: np.ndarray, band: tuple[int, int, int, int]) -> np.ndarray:
    """Median colour ``[3]`` float32 (0..1) of ``frame`` (uint8 or float) in the neck band (it resists collars and
    hair strands); the band's top row when the chin sits at the bottom edge."""
    img = frame.astype(np.float32) / (255.0 if frame.dtype == np.uint8 else 1.0)
    r0, r1, c0, c1 = band
    pixels = img[r0:r1, c0:c1].reshape(-1, 3)
    if pixels.size == 0:
        pixels = img[max(0, r0 - 2):r0 + 1, c0:max(c1, c0 + 1)].reshape(-1, 3)
    return np.median(pixels, axis=0).astype(np.float32) if pixels.size else np.zeros(3, np.float32)


RING_PX = 6
"""Width (pixels at 512) of the ring on each side of the paste edge whose colours the seam matching compares."""


def _ring(mask: np.ndarray, width_px: int) -> np.ndarray:
    cv2 = _cv2()
    kernel = np.ones((2 * width_px + 1, 2 * width_px + 1), np.uint8)
    hard = (mask > 0.5).astype(np.uint8)
    return (cv2.dilate(hard, kernel) > 0) & ~(cv2.erode(hard, kernel) > 0)


def colour_shift(render: np.ndarray, original: np.ndarray, mask: np.ndarray, valid: np.ndarray,
                 max_shift: float, scale: float | None = None) -> np.ndarray:
    """Per-channel offset ``[3]`` that makes the render match the original around the mask edge (``scale``: see
    :func:`soft_mask`)."""
    scale = _scale(*mask.shape) if scale is None else scale
    ring = _ring(mask, max(2, int(round(RING_PX * scale)))) & valid
    if ring.sum() < 16:
        return np.zeros(3, np.float32)
    shift = original[ring].mean(axis=0) - render[ring].mean(axis=0)
    return np.clip(shift, -max_shift, max_shift).astype(np.float32)


def fill_neck_gap(render: np.ndarray, alpha: np.ndarray, masks: BlendMasks, original: np.ndarray,
                  colour: np.ndarray | None = None) -> np.ndarray:
    """Where the face region shows the renderer's background below the mouth, paint the reference neck colour
    (``colour``, else :func:`neck_colour` of ``original``)."""
    rows = np.arange(render.shape[0], dtype=np.float32)[:, None]
    gap = (1.0 - np.clip(alpha, 0.0, 1.0)) * masks.face * (rows > masks.mouth_row)
    if not gap.any():
        return render
    colour = neck_colour(original, masks.neck_band) if colour is None else colour
    w = gap[..., None].astype(np.float32)
    return render * (1.0 - w) + colour[None, None, :] * w


def work_box(face: np.ndarray, settings: BlendSettings = BlendSettings()) -> tuple[slice, slice]:
    """The rows and columns a blend of the paste region ``face`` reads and changes: its bounding box grown by what
    the seam ring, the mask blur and the detail low-pass reach (whole frame when ``face`` is empty). Blending in
    this box gives the whole-frame result (the Gaussians are cut beyond four sigmas) for a fraction of the work."""
    height, width = face.shape
    rows, cols = np.nonzero(face)
    if rows.size == 0:
        return slice(0, height), slice(0, width)
    scale = _scale(height, width)
    reach = int(np.ceil(scale * (RING_PX + settings.blur_kernel + 4 * max(settings.blur_sigma, settings.detail.sigma)))) + 2
    return (slice(max(0, rows.min() - reach), min(height, rows.max() + 1 + reach)),
            slice(max(0, cols.min() - reach), min(width, cols.max() + 1 + reach)))


def _cropped(masks: BlendMasks, box: tuple[slice, slice]) -> BlendMasks:
    r0, c0 = box[0].start, box[1].start
    return dataclasses.replace(masks, face=masks.face[box], mouth=masks.mouth[box], mouth_row=masks.mouth_row - r0,
                               chin=None if masks.chin is None else masks.chin[box])


def prepare_render(render: np.ndarray, alpha: np.ndarray | None, original: np.ndarray, masks: BlendMasks,
                   settings: BlendSettings = BlendSettings()) -> tuple[np.ndarray, np.ndarray, tuple[slice, slice]]:
    """The corrected render and the soft blend mask for one frame (see ``blend_frame``), inside the frame's
    :func:`work_box` (the mask is 0 outside it).

    Returns:
        (render [h, w, 3] float32 0..1 with the neck gap filled, seam colours matched and detail restored,
        mask [h, w] float32 0..1, box: the rows and columns of the frame they cover).
    """
    height, width = original.shape[:2]
    if render.shape != original.shape:
        raise InputError(f"rendered frame is {render.shape[1]}x{render.shape[0]} but the reference frame is "
                         f"{width}x{height}; render at the reference clip's size")
    if settings.paste not in ("mouth", "face"):
        raise InputError(f"paste must be 'mouth' or 'face', got {settings.paste!r}")
    if settings.paste == "mouth" and masks.chin is not None:  # alpha_masks has no geometry: the face it is
        masks = dataclasses.replace(masks, face=masks.chin)
    box = work_box(masks.face, settings)
    scale = _scale(height, width)
    neck = neck_colour(original, masks.neck_band) if settings.neck_fill and alpha is not None else None
    masks, original = _cropped(masks, box), original[box].astype(np.float32)
    opaque = np.ones(original.shape[:2], np.float32) if alpha is None else alpha[box].astype(np.float32)
    out = render[box].astype(np.float32)
    if neck is not None:
        out = fill_neck_gap(out, opaque, masks, original, neck)
    if settings.color_match:
        shift = colour_shift(out, original, masks.face, opaque > 0.5, settings.max_color_shift, scale)
        out = np.clip(out + shift, 0, 1)
    if settings.restore_detail:
        out = restore_detail(out, original, masks.mouth, settings.detail, scale)
    return out, soft_mask(masks.face, settings.blur_kernel, settings.blur_sigma, scale), box


def blend_frame(render: np.ndarray, alpha: np.ndarray | None, original: np.ndarray, masks: BlendMasks,
                settings: BlendSettings = BlendSettings()) -> np.ndarray:
    """Blend one rendered frame into its reference frame.

    Args:
        render: [H, W, 3] float32 0..1 rendered frame (head over the renderer's background).
        alpha: [H, W] float32 0..1 head opacity from the renderer, or None (treated as opaque).
        original: [H, W, 3] float32 0..1 reference frame the render was made for.
        masks: the frame's regions (``pose_masks``, or ``alpha_masks`` without a face geometry).
    Returns:
        [H, W, 3] float32 0..1.
    """
    fixed, m, box = prepare_render(render, alpha, original, masks, settings)
    out = original.astype(np.float32, copy=True)
    out[box] = fixed * m[..., None] + out[box] * (1.0 - m[..., None])
    return out


def paste_full_resolution(full_frame: np.ndarray, render: np.ndarray, crop_box: tuple[int, int, int, int],
                          mask: np.ndarray, *, mouth: np.ndarray | None = None,
                          detail: DetailSettings | None = None) -> np.ndarray:
    """Blend a corrected render into the full-resolution source frame through the clip's crop box.

    Args:
        full_frame: [Hs, Ws, 3] float32 0..1 source frame (the reference frame at source resolution).
        render: [H, W, 3] float32 corrected render at clip resolution (``prepare_render``).
        crop_box: (x0, y0, x1, y1) of the crop in source pixels.
        mask: [H, W] soft blend mask (``prepare_render``); only that region is replaced, so every other pixel
            keeps the source's full resolution.
        mouth, detail: with both, detail is restored after upscaling, from the source's full-resolution pixels.
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
    if mouth is not None and detail is not None:
        up_mouth = cv2.resize(mouth.astype(np.float32), size, interpolation=cv2.INTER_LINEAR)
        up = restore_detail(np.clip(up, 0.0, 1.0), region, up_mouth, detail)
    out[y0:y1, x0:x1] = np.clip(up, 0.0, 1.0) * up_mask + region * (1.0 - up_mask)
    return out
