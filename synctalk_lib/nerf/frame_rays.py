"""The rays of a subject's frame with their conditioning gates: the one place training, evaluation and inference
get them.

    subject = RaySubject(pose, regions, lip_gate_margin, size=(128, 128))      # once per subject
    rays = frame_rays(subject, index)                          # every pixel at the subject's size, row-major
    rays = frame_rays(subject, index, pose=c2w)                # another camera (the gates stay frame ``index``'s)
    rays = frame_rays(subject, index, size=(512, 512), box=Rect(r0, r1, c0, c1))   # a box, at another resolution
    rays = frame_rays(subject, index, pixels=(rows, cols))     # a pixel subset
    rays.rays_o, rays.rays_d, rays.lip_mask, rays.expr_mask    # [N, 3], [N, 3], [N], [N]

Pixels are ``(row, col)`` of an image of the requested size; the intrinsics scale from the clip's size to it. The
gates of the facial-aware masked attention (which rays the audio and the expression may drive) are computed by
:func:`ray_gates` and nowhere else, and the head region (what the clean background replaces under the head) by
:meth:`RaySubject.head_mask`.

Both come from the camera and the subject's face geometry (``pose.face_geometry``): the mouth region covers the
whole reach of the jaw seen from that camera, whatever the frame's own mouth does, so no mask carries a reference
frame's mouth into a render. Models trained before that (no geometry) keep the rectangles of each frame's
landmarks they were trained with (:func:`_landmark_gates`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from collections import OrderedDict

from synctalk_lib.face.regions import FaceRegions, Rect
from synctalk_lib.nerf.rays import head_pose_to_ngp, pixel_rays
from synctalk_lib.pose.face_geometry import FaceGeometry, PoseRegions, RegionShape
from synctalk_lib.types import HeadPose

GATE_FEATHER = 0.08
"""Width of the gates' soft edges, as a fraction of the face height (hard rectangles leave visible seams in the
density where the audio input switches on)."""


MOUTH_RENDER_MARGIN = 0.1
"""How far a mouth-only render reaches beyond the chin paste region, in face heights (about 23 px at 512 for a face
230 px high): the portrait blend's colour-matching ring (6 px) and soft edge (5 px) read the render there, and the
render's own edge (the resize from the render size, then a ramp into the reference frame) takes up to 10 px."""

MASK_CACHE_ENTRIES = 256
"""Per-frame masks kept (a few MB at 128 px): training revisits frames every epoch."""


class RaySubject:
    """What the rays and gates of a subject's frames are made from.

    Args:
        pose: the frames' intrinsics and OpenGL camera-to-world poses, at the clip's size.
        regions: the frames' face regions (any size; they are resized as needed).
        lip_gate_margin: growth of the audio gate of landmark-gated models (see :func:`lip_gate_rect`).
        size: ``(height, width)`` of the images rendered by default (the training resolution).
        geometry: the subject's face geometry; None only for models trained with landmark gates.
        shape: margins of the pose regions.
    """

    def __init__(self, pose: HeadPose, regions: FaceRegions, lip_gate_margin: float, size: tuple[int, int],
                 geometry: FaceGeometry | None = None, shape: RegionShape | None = None):
        self.pose = pose
        self.regions = regions
        self.lip_gate_margin = float(lip_gate_margin)
        self.size = (int(size[0]), int(size[1]))
        self.geometry = geometry
        self.shape = shape or RegionShape()
        self.poses_ngp = head_pose_to_ngp(pose.c2w)
        """[F, 4, 4] NGP-space camera-to-world of the frames."""
        self._masks: OrderedDict[tuple, tuple[np.ndarray, ...]] = OrderedDict()

    def pose_regions(self, height: int, width: int) -> PoseRegions:
        """The subject's regions for images of ``height x width`` (needs the geometry)."""
        if self.geometry is None:
            raise ValueError("this subject has no face geometry (a model trained with landmark gates)")
        return PoseRegions.for_size(self.geometry, self.pose, height, width, self.shape)

    def _pose_masks(self, index: int, pose: np.ndarray | None, size: tuple[int, int]) -> tuple[np.ndarray, ...]:
        """``(lip gate, expression gate, head mask)`` images for frame ``index`` (or ``pose``) at ``size``."""
        key = (int(index), size) if pose is None else None
        if key is not None and key in self._masks:
            self._masks.move_to_end(key)
            return self._masks[key]
        c2w = np.asarray(self.pose.c2w[index] if pose is None else _numpy(pose), np.float64)
        regions = self.pose_regions(*size)
        feather = GATE_FEATHER * regions.face_height_px(c2w)
        lip = regions.mask("mouth", c2w, feather=feather)
        upper = regions.mask("upper", c2w, feather=feather)
        masks = (lip, (upper * (1.0 - lip)).astype(np.float32), regions.mask("head", c2w) > 0.5)
        if key is not None:
            self._masks[key] = masks
            if len(self._masks) > MASK_CACHE_ENTRIES:
                self._masks.popitem(last=False)
        return masks

    def head_mask(self, index: int, size: tuple[int, int], pose: np.ndarray | None = None) -> np.ndarray:
        """``[h, w]`` bool: the head region of frame ``index`` (seen from ``pose`` when given) at ``size``: what the
        renderer paints, and what the clean background replaces under it."""
        if self.geometry is None:
            return self.regions_at(*size).head_mask(index)
        return self._pose_masks(index, pose, (int(size[0]), int(size[1])))[2]

    def mouth_mask(self, index: int, size: tuple[int, int], pose: np.ndarray | None = None) -> np.ndarray:
        """``[h, w]`` bool: what a portrait with the mouth-only paste takes from the render — the ``chin`` region
        (lips, chin and the jaw between the cheeks at their widest reach) grown by :data:`MOUTH_RENDER_MARGIN`,
        inside the head region. Subjects without a face geometry have no chin region: their whole head region."""
        head = self.head_mask(index, size, pose)
        if self.geometry is None:
            return head
        import cv2

        c2w = np.asarray(self.pose.c2w[index] if pose is None else _numpy(pose), np.float64)
        regions = self.pose_regions(int(size[0]), int(size[1]))
        chin = regions.mask("chin", c2w) > 0.5
        grow = max(1, int(np.ceil(MOUTH_RENDER_MARGIN * regions.face_height_px(c2w))))
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1))
        return (cv2.dilate(chin.astype(np.uint8), kernel) > 0) & head

    def intrinsics(self, height: int, width: int) -> tuple[float, float, float]:
        """``(focal, cx, cy)`` in pixels of an image of ``height x width`` (scaled from the clip's)."""
        sx, sy = width / self.pose.width, height / self.pose.height
        return float(self.pose.focal) * (sx + sy) / 2.0, float(self.pose.cx) * sx, float(self.pose.cy) * sy

    def regions_at(self, height: int, width: int) -> FaceRegions:
        """The face regions for images of ``height x width``."""
        if (self.regions.height, self.regions.width) == (height, width):
            return self.regions
        return self.regions.resized(height, width)


@dataclass
class FrameRays:
    """Rays through pixels of a frame (N rays), with their gates."""

    rows: Tensor
    """[N] int64 pixel rows."""
    cols: Tensor
    """[N] int64 pixel columns."""
    rays_o: Tensor
    """[N, 3] NGP-space origins."""
    rays_d: Tensor
    """[N, 3] NGP-space unit directions."""
    lip_mask: Tensor
    """[N] float32 gate of the audio attention."""
    expr_mask: Tensor
    """[N] float32 gate of the expression attention."""


def frame_rays(subject: RaySubject, index: int, pose: np.ndarray | Tensor | None = None, *,
               size: tuple[int, int] | None = None, pixels: tuple[np.ndarray, np.ndarray] | None = None,
               box: Rect | None = None, device: torch.device | str = "cpu") -> FrameRays:
    """The rays of frame ``index`` through pixels of an image of ``size``, with their gates.

    Args:
        subject: the subject's cameras and face regions.
        index: the frame (its camera, unless ``pose`` is given, and its face regions for the gates).
        pose: [4, 4] OpenGL camera-to-world (``HeadPose`` convention) to use instead of the frame's camera.
        size: ``(height, width)`` of the image (default: ``subject.size``).
        pixels: ``(rows, cols)`` integer arrays of the pixels; box: every pixel of a rectangle, row-major; neither:
            every pixel of the image, row-major.
        device: where the tensors go.

    Returns:
        FrameRays with one ray per pixel.
    """
    height, width = size if size is not None else subject.size
    rows, cols = _pixels(height, width, pixels, box)
    c2w_ngp = subject.poses_ngp[index] if pose is None else head_pose_to_ngp(pose)
    focal, cx, cy = subject.intrinsics(height, width)
    rows_t, cols_t = torch.from_numpy(rows).to(device), torch.from_numpy(cols).to(device)
    rays_o, rays_d = pixel_rays(c2w_ngp.to(device), focal, cx, cy, rows_t, cols_t)
    lip, expr = ray_gates(subject, index, rows, cols, (height, width), pose=pose)
    return FrameRays(rows=rows_t, cols=cols_t, rays_o=rays_o, rays_d=rays_d, lip_mask=torch.from_numpy(lip).to(device),
                     expr_mask=torch.from_numpy(expr).to(device))


def _pixels(height: int, width: int, pixels: tuple[np.ndarray, np.ndarray] | None,
            box: Rect | None) -> tuple[np.ndarray, np.ndarray]:
    """``(rows, cols)`` int64 of the requested pixels."""
    if pixels is not None and box is not None:
        raise ValueError("give pixels or a box, not both")
    if pixels is not None:
        return np.asarray(pixels[0], dtype=np.int64), np.asarray(pixels[1], dtype=np.int64)
    r0, r1, c0, c1 = (box.r0, box.r1, box.c0, box.c1) if box is not None else (0, height, 0, width)
    rows, cols = np.mgrid[r0:r1, c0:c1]
    return rows.reshape(-1).astype(np.int64), cols.reshape(-1).astype(np.int64)


# --------------------------------------------------------------------------------------------------- gates
def ray_gates(subject: RaySubject, index: int, rows: np.ndarray, cols: np.ndarray, size: tuple[int, int],
              pose: np.ndarray | Tensor | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-ray gates of the facial-aware masked attention for pixels ``(rows, cols)`` of frame ``index``.

    Args:
        subject: the subject (its face geometry, or for older models its face regions and lip-gate margin).
        index: the frame whose camera places the gates (``pose`` instead when given).
        rows, cols: [N] integer pixels of an image of ``size = (height, width)``.

    Returns:
        (lip gate [N] float32: 1 in the mouth region, the reach of the lips, chin and jaw below the nose tip;
        expression gate [N] float32: 1 in the upper face (eyes, brows, forehead) where the lip gate is 0). Both fall
        to 0 outside the face, over soft edges :data:`GATE_FEATHER` face heights wide.
    """
    rows = np.asarray(rows, np.int64)
    cols = np.asarray(cols, np.int64)
    if subject.geometry is None:
        return _landmark_gates(subject, index, rows, cols, size)
    lip, expr, _ = subject._pose_masks(index, None if pose is None else pose, (int(size[0]), int(size[1])))
    return lip[rows, cols], expr[rows, cols]


def _landmark_gates(subject: RaySubject, index: int, rows: np.ndarray, cols: np.ndarray,
                    size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The gates of models trained before the face geometry: rectangles of frame ``index``'s own landmarks."""
    regions = subject.regions_at(*size)
    width = GATE_FEATHER * regions.face_rect(index).height
    lip = soft_rect(lip_gate_rect(regions, index, subject.lip_gate_margin), rows, cols, width)
    upper = soft_rect(regions.upper_face_rect(index), rows, cols, width)
    return lip, (upper * (1.0 - lip)).astype(np.float32)


def _numpy(pose: np.ndarray | Tensor) -> np.ndarray:
    return pose.detach().cpu().numpy() if isinstance(pose, Tensor) else np.asarray(pose)


def lip_gate_rect(regions: FaceRegions, index: int, margin: float) -> Rect:
    """Where the audio attention may act: the lower face (nose tip to chin) grown downwards by ``margin`` face
    heights and sideways by half that, so a jaw opening wider than in the reference frame is still driven."""
    lower = regions.lower_face_rect(index)
    face = regions.face_rect(index)
    grow = int(round(margin * face.height))
    return Rect(lower.r0, lower.r1 + grow, lower.c0 - grow // 2, lower.c1 + grow // 2).clamped(
        regions.height, regions.width)


def soft_rect(rect: Rect, rows: np.ndarray, cols: np.ndarray, feather: float) -> np.ndarray:
    """Membership of pixel centres in ``rect`` with edges ramped linearly over ``feather`` pixels (centred on
    the edge): 1 inside, 0 outside, in between near the border; hard membership when ``feather <= 0``."""
    if feather <= 0:
        return rect.contains(rows, cols).astype(np.float32)
    r = np.asarray(rows, np.float32) + 0.5
    c = np.asarray(cols, np.float32) + 0.5
    inside = np.minimum(np.minimum(r - rect.r0, rect.r1 - r), np.minimum(c - rect.c0, rect.c1 - c))
    return np.clip(inside / feather + 0.5, 0.0, 1.0).astype(np.float32)
