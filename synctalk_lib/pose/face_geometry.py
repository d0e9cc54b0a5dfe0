"""The subject's whole face in head space, with the range its jaw moves through, and its regions at any pose.

Why: everything that decides where the audio may act, what the clean background replaces and what a portrait
blend pastes must not come from the reference frame's own lip or jaw landmarks. Those landmarks carry the
reference video's mouth state, so a mask built from them drags the reference mouth into the output (a second jaw
line, a pale band under the chin, lips that follow the reference instead of the new speech). Here the regions come
from the head pose and the subject's own face geometry only: a template of all 478 landmarks in the head frame,
plus where the lower face goes when the mouth is closed and when it is open, projected with the camera.

Lifting: every frame's landmarks are back-projected along their camera rays to a depth from MediaPipe's relative
depth (``z``, pixels scaled like ``x``), anchored on the rigid landmarks whose head-frame positions the bundle
adjustment found (``HeadPose.landmarks3d``), then moved into the head frame with the frame's pose. On the
reference clip this puts the rigid landmarks within 0.4 / 0.9 mm (x / y) and 4 mm (depth) of their adjusted
positions, far below the margins the regions use.

    geometry = FaceGeometry.from_track(track, pose, frames=train_indices)
    regions = PoseRegions(geometry, pose.focal, pose.cx, pose.cy, height=512, width=512)
    gate = regions.mask("mouth", c2w, feather=8.0)      # [H, W] float32, soft edges
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from synctalk_lib.errors import InputError
from synctalk_lib.face.indices import CHIN, FACE_OVAL, JAW, LEFT_EYE, LIPS_OUTER, NOSE_TIP, RIGHT_EYE
from synctalk_lib.face.regions import _convex_hull, _fill_polygon
from synctalk_lib.pose.camera import nerf_to_opencv, project
from synctalk_lib.pose.face_model import NUM_MESH_POINTS, RIGID_LANDMARKS

SUBNASALE = 2
"""Landmark under the nose where the upper lip starts: the top of the region the mouth can move."""
CLOSED_QUANTILE = 0.2
OPEN_QUANTILE = 0.95
"""Frames whose jaw drop is below / above these quantiles define the closed and the open lower face."""


@dataclass(frozen=True)
class FaceGeometry:
    """A subject's 468 face-mesh points in the head frame (metres; +x right, +y up, +z toward the camera).

    ``neutral`` is the per-point median over the frames used; ``closed`` and ``open`` are the medians over the
    frames with the least and the most jaw drop. Points above the mouth barely differ between the three.
    """

    neutral: np.ndarray
    """[468, 3] float64."""
    closed: np.ndarray
    """[468, 3] float64."""
    open: np.ndarray
    """[468, 3] float64."""
    lift_error_mm: float = 0.0
    """Mean distance of the lifted rigid landmarks to their bundle-adjusted positions (quality of the lift)."""
    frames_used: int = 0

    @classmethod
    def from_track(cls, track, pose, *, frames: Sequence[int] | None = None) -> "FaceGeometry":
        """Lift the landmarks of ``frames`` (default: all) of ``track`` into ``pose``'s head frame."""
        use = np.arange(track.num_frames) if frames is None else np.asarray(list(frames), np.int64)
        found = np.asarray(track.face_found, bool)[use]
        use = use[found] if found.any() else use
        if len(use) == 0:
            raise InputError("no frame with a face to build the face geometry from")
        head, error = lift_landmarks(track.landmarks[use], pose.c2w[use], pose.focal, pose.cx, pose.cy,
                                     pose.landmarks3d)
        drop = _jaw_drop(head)
        closed = drop <= np.quantile(drop, CLOSED_QUANTILE)
        opened = drop >= np.quantile(drop, OPEN_QUANTILE)
        return cls(neutral=np.median(head, axis=0), closed=np.median(head[closed], axis=0),
                   open=np.median(head[opened], axis=0), lift_error_mm=error, frames_used=int(len(use)))

    @property
    def face_height(self) -> float:
        """Forehead top (landmark 10) to chin, metres."""
        return float(np.linalg.norm(self.neutral[10] - self.neutral[CHIN]))

    def jaw_range(self) -> float:
        """How far the chin travels between the closed and the open mouth, metres."""
        return float(np.linalg.norm(self.open[CHIN] - self.closed[CHIN]))

    def lower_face_reach(self, extra: float = 0.5) -> np.ndarray:
        """[2 * 468, 3] every point at its closed position and at its open position pushed ``extra`` of the
        range further (speech of another voice can open the mouth a little wider than the reference did)."""
        reach = self.open + extra * (self.open - self.closed)
        return np.concatenate([self.closed, reach])


def lift_landmarks(landmarks: np.ndarray, c2w: np.ndarray, focal: float, cx: float, cy: float,
                   rigid_head: np.ndarray) -> tuple[np.ndarray, float]:
    """Landmarks ``[N, 478, 3]`` (pixels, MediaPipe depth in pixels) -> head-frame points ``[N, 468, 3]``.

    Depth of each point = ``a_n + z * s_n``: ``s_n`` metres per pixel at the head's distance, ``a_n`` chosen so
    the rigid landmarks sit at their bundle-adjusted depth (``rigid_head``, ``[L, 3]``), or, for poses without
    them (imported ``transforms_*.json``), so the mesh's centroid sits at the head origin. Returns the points and
    the mean rigid-point error in mm (0 when unknown).
    """
    lm = np.asarray(landmarks, np.float64)[:, :NUM_MESH_POINTS]
    rotation, translation = nerf_to_opencv(c2w)
    rigid = np.asarray(RIGID_LANDMARKS, np.int64)
    rigid_head = np.asarray(rigid_head, np.float64)
    known = rigid_head.shape == (len(rigid), 3)
    if known:
        anchor_cam = np.einsum("nij,lj->nli", rotation, rigid_head) + translation[:, None, :]
        anchor_z, ids = anchor_cam[..., 2], rigid
    else:  # the head origin is the mesh centroid: its depth is the translation's
        anchor_z, ids = translation[:, 2:3], np.arange(NUM_MESH_POINTS)
    scale = np.median(anchor_z, axis=1) / focal
    offset = np.mean(anchor_z, axis=1) - np.mean(lm[:, ids, 2], axis=1) * scale
    depth = offset[:, None] + lm[..., 2] * scale[:, None]
    rays = np.stack([(lm[..., 0] - cx) / focal, (lm[..., 1] - cy) / focal, np.ones(lm.shape[:2])], -1)
    head = np.einsum("nji,nlj->nli", rotation, rays * depth[..., None] - translation[:, None, :])
    if not known:
        return head, 0.0
    return head, float(np.linalg.norm(head[:, rigid] - rigid_head[None], axis=-1).mean()) * 1000.0


def _jaw_drop(head: np.ndarray) -> np.ndarray:
    """[N] how far below the nose tip the chin is, per frame (metres)."""
    return head[:, NOSE_TIP, 1] - head[:, CHIN, 1]


@dataclass(frozen=True)
class RegionShape:
    """Margins of the pose regions, as fractions of the face height (forehead top to chin)."""

    mouth_margin: float = 0.05
    """Growth of the mouth region around the reach of the lower face (lips, chin, jaw, lower cheeks)."""
    jaw_extra: float = 0.5
    """How much further than the widest opening seen the mouth region reaches (fraction of the jaw range)."""
    neck: float = 0.08
    """Band below the lowest chin that belongs to the head region (the renderer paints the neck there, so a
    jaw that closes earlier than the reference never uncovers the clean background)."""
    hair_top: float = 0.5
    hair_side: float = 0.32
    """Head region beyond the face oval: above the forehead top and on each side (hair, ears)."""
    face_chin: float = 0.03
    """Portrait paste region: the face oval grown below the lowest chin."""
    chin_side: float = 0.6
    """The ``chin`` region's reach beyond the mouth corners, as a fraction of half the mouth's width."""


@dataclass
class PoseRegions:
    """Regions of the subject seen from a camera ``c2w`` (HeadPose convention) in images of ``height x width``.

    Nothing here depends on a frame's landmarks: only on the geometry, the intrinsics and the pose.
    """

    geometry: FaceGeometry
    focal: float
    cx: float
    cy: float
    height: int
    width: int
    shape: RegionShape = field(default_factory=RegionShape)

    @classmethod
    def for_size(cls, geometry: FaceGeometry, pose, height: int, width: int,
                 shape: RegionShape | None = None) -> "PoseRegions":
        """Regions for images of ``height x width`` (intrinsics of ``pose`` scaled to that size)."""
        sx, sy = width / pose.width, height / pose.height
        return cls(geometry, float(pose.focal) * (sx + sy) / 2.0, float(pose.cx) * sx, float(pose.cy) * sy,
                   int(height), int(width), shape or RegionShape())

    # ----------------------------------------------------------------------------------------- projection
    def project(self, points: np.ndarray, c2w: np.ndarray) -> np.ndarray:
        """Head-frame points ``[K, 3]`` -> pixels ``[K, 2]`` (x, y) seen from ``c2w`` ``[4, 4]``."""
        rotation, translation = nerf_to_opencv(np.asarray(c2w, np.float64)[None])
        cam = points @ rotation[0].T + translation[0]
        return project(cam, self.focal, self.cx, self.cy)

    def face_height_px(self, c2w: np.ndarray) -> float:
        """The face's height (forehead top to chin) in pixels, seen from ``c2w``."""
        g = self.geometry
        ends = self.project(np.stack([g.neutral[10], g.neutral[CHIN]]), c2w)
        return float(np.linalg.norm(ends[0] - ends[1]))

    # ------------------------------------------------------------------------------------------- polygons
    def polygon(self, name: str, c2w: np.ndarray) -> np.ndarray:
        """Convex polygon ``[K, 2]`` (x, y) of region ``name``: ``mouth``, ``upper``, ``head``, ``face`` or
        ``chin``."""
        builders = {"mouth": self._mouth, "upper": self._upper, "head": self._head, "face": self._face,
                    "chin": self._chin}
        if name not in builders:
            raise ValueError(f"unknown region {name!r}; choose one of {', '.join(builders)}")
        return builders[name](np.asarray(c2w, np.float64))

    def _lower_points(self) -> np.ndarray:
        g = self.geometry
        below = g.neutral[:, 1] <= g.neutral[SUBNASALE, 1]
        reach = g.lower_face_reach(self.shape.jaw_extra)
        return reach[np.concatenate([below, below])]

    def _chin(self, c2w: np.ndarray) -> np.ndarray:
        """The part of the mouth region between the cheeks: lips, chin and the jaw below them at their widest reach
        (the jaw corners and outer cheeks barely move with speech, so the video's own pixels serve there)."""
        g = self.geometry
        lips_x = g.neutral[list(LIPS_OUTER), 0]
        centre, half = (lips_x.max() + lips_x.min()) / 2.0, (lips_x.max() - lips_x.min()) / 2.0
        keep = ((g.neutral[:, 1] <= g.neutral[SUBNASALE, 1])
                & (np.abs(g.neutral[:, 0] - centre) <= half * (1.0 + self.shape.chin_side)))
        reach = g.lower_face_reach(self.shape.jaw_extra)[np.concatenate([keep, keep])]
        top = self.project(g.neutral[[NOSE_TIP]], c2w)[0]
        hull = _grow(_convex_hull(self.project(reach, c2w)), self.shape.mouth_margin * self.face_height_px(c2w))
        return _clip_above(hull, top, self._down(c2w))

    def _mouth(self, c2w: np.ndarray) -> np.ndarray:
        pts = self.project(self._lower_points(), c2w)
        top = self.project(self.geometry.neutral[[NOSE_TIP]], c2w)[0]
        hull = _grow(_convex_hull(pts), self.shape.mouth_margin * self.face_height_px(c2w))
        return _clip_above(hull, top, self._down(c2w))

    def _upper(self, c2w: np.ndarray) -> np.ndarray:
        g = self.geometry
        above = g.neutral[:, 1] >= g.neutral[NOSE_TIP, 1]
        return _convex_hull(self.project(g.neutral[above], c2w))

    def _oval(self, c2w: np.ndarray, chin_grow: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Face-oval outline with the jaw at its lowest reach, the eye-line origin and the down axis."""
        g = self.geometry
        oval_ids = list(FACE_OVAL)
        reach = g.open + self.shape.jaw_extra * (g.open - g.closed)
        jaw = np.isin(oval_ids, JAW)
        lowest = np.where((reach[:, 1] < g.closed[:, 1])[:, None], reach, g.closed)[oval_ids]
        pts = self.project(np.where(jaw[:, None], lowest, g.neutral[oval_ids]), c2w)
        origin = self.project(g.neutral[[LEFT_EYE[0], RIGHT_EYE[0]]], c2w).mean(axis=0)
        down = self._down(c2w)
        w = (pts - origin) @ down
        grow = np.clip(w / max(float(w.max()), 1e-6), 0.0, 1.0) * chin_grow * self.face_height_px(c2w)
        return pts + grow[:, None] * down, origin, down

    def _face(self, c2w: np.ndarray) -> np.ndarray:
        pts, _, _ = self._oval(c2w, self.shape.face_chin)
        return _convex_hull(pts)

    def _head(self, c2w: np.ndarray) -> np.ndarray:
        pts, origin, down = self._oval(c2w, self.shape.neck)
        across = np.array([down[1], -down[0]])
        u, w = (pts - origin) @ across, (pts - origin) @ down
        face_h = self.face_height_px(c2w)
        centre = (u.max() + u.min()) / 2.0
        below = np.clip(w / max(float(w.max()), 1e-6), 0.0, 1.0)
        above = np.clip(w / min(float(w.min()), -1e-6), 0.0, 1.0)
        u_new = centre + (u - centre) * (1.0 + 2.0 * self.shape.hair_side * (1.0 - below ** 2))
        w_new = w - above * self.shape.hair_top * face_h
        # the mouth region is inside the head: a jaw swinging sideways stays rendered, not baked into the background
        head = origin + u_new[:, None] * across + w_new[:, None] * down
        return _convex_hull(np.concatenate([head, self._mouth(c2w)]))

    def _down(self, c2w: np.ndarray) -> np.ndarray:
        """Unit image direction from the eye line towards the chin."""
        g = self.geometry
        a, b = self.project(np.stack([(g.neutral[LEFT_EYE[0]] + g.neutral[RIGHT_EYE[0]]) / 2.0,
                                      g.neutral[CHIN]]), c2w)
        d = b - a
        return d / max(float(np.linalg.norm(d)), 1e-9)

    # ---------------------------------------------------------------------------------------------- masks
    def mask(self, name: str, c2w: np.ndarray, *, feather: float = 0.0) -> np.ndarray:
        """``[H, W]`` float32 mask of region ``name``: 1 inside, 0 outside, ramped over ``feather`` pixels
        centred on the edge (hard when ``feather <= 0``)."""
        hard = _fill_polygon(self.polygon(name, c2w), self.height, self.width)
        return soften(hard, feather)


def soften(hard: np.ndarray, feather: float) -> np.ndarray:
    """A hard mask with its edge ramped linearly over ``feather`` pixels (signed distance, centred on the edge)."""
    if feather <= 0:
        return hard.astype(np.float32)
    import cv2

    inside = cv2.distanceTransform(hard.astype(np.uint8), cv2.DIST_L2, 5)
    outside = cv2.distanceTransform((~hard).astype(np.uint8), cv2.DIST_L2, 5)
    signed = np.where(hard, inside - 0.5, 0.5 - outside)
    return np.clip(signed / feather + 0.5, 0.0, 1.0).astype(np.float32)


def _grow(polygon: np.ndarray, pixels: float) -> np.ndarray:
    """A convex polygon pushed outward from its centroid by ``pixels`` (good enough for round, convex shapes)."""
    centre = polygon.mean(axis=0)
    offset = polygon - centre
    norm = np.maximum(np.linalg.norm(offset, axis=1, keepdims=True), 1e-6)
    return (polygon + offset / norm * pixels).astype(np.float32)


def _clip_above(polygon: np.ndarray, point: np.ndarray, down: np.ndarray) -> np.ndarray:
    """The part of a convex polygon on the ``down`` side of the line through ``point`` across ``down``."""
    side = (polygon - point) @ down
    out: list[np.ndarray] = []
    for i in range(len(polygon)):
        a, b = polygon[i], polygon[(i + 1) % len(polygon)]
        sa, sb = side[i], side[(i + 1) % len(polygon)]
        if sa >= 0:
            out.append(a)
        if (sa >= 0) != (sb >= 0):
            out.append(a + (b - a) * (sa / (sa - sb)))
    return np.asarray(out, np.float32) if out else polygon[:0]
