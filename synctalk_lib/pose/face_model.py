"""The rigid 3D face template the head tracker fits: subject-specific, built from the MediaPipe track itself.

MediaPipe's wheel does not ship its canonical face geometry, but every frame of a ``FaceTrack`` carries what its
geometry pipeline computed: the 478 landmarks (pixels, with a relative depth ``z`` in pixel units) and the facial
transformation matrix that maps the canonical face (centimetres, x right, y up, z toward the viewer) into
MediaPipe's virtual camera (OpenGL axes, vertical field of view 63 degrees, principal point at the image centre).
Back-projecting the landmarks with that camera and mapping them through the inverse matrix gives, per frame, the
subject's face in the canonical head frame; the per-point median over frames is a metric, subject-specific
template. The relative depth ``z`` is measured from a reference that sits a few centimetres from the canonical
origin; that one offset is found by a 1-D search as the value that makes the frames agree best.

The template's frame is the head frame of the whole pack (see ``synctalk_lib.pose``): canonical axes, origin moved
to the centroid of the 468 mesh points (the irises are left out), metres.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from synctalk_lib.errors import InputError

#: MediaPipe's face geometry environment (the Face Landmarker task's default virtual camera).
MEDIAPIPE_VERTICAL_FOV_DEG = 63.0

NUM_MESH_POINTS = 468
"""Face mesh vertices; indices 468-477 are the two irises (they follow the gaze, so they are never rigid)."""

#: Rigid landmarks: the mesh points that move with the skull, not with speech, blinks or brows.
#: Rule (applied once to a frontal template made symmetric, then frozen here so every subject uses the same set):
#: keep mesh points (not irises) that are above the subnasale (landmark 2) -- mouth, lips, jaw and chin move with
#: speech -- not on MediaPipe's lip or face-oval contours -- oval points sit on the silhouette and slide along it
#: as the head turns -- at least 1.0 cm (in the image plane of a frontal face) from any eye contour point --
#: eyelids and the skin around them move with blinks -- and at least 0.6 cm from any eyebrow point -- brows and
#: the skin right above them move with expression. A point is kept only if its left/right mirror partner is too,
#: so the set is symmetric and does not tilt the fit. What remains: nose, cheekbones, temples, lower forehead.
RIGID_LANDMARKS: tuple[int, ...] = (
    1, 3, 4, 5, 6, 8, 9, 19, 20, 34, 35, 36, 44, 45, 47, 48, 49, 50, 51, 59, 60, 64, 68, 69, 71, 75, 79, 94, 98, 99,
    100, 101, 102, 104, 108, 111, 114, 115, 116, 117, 118, 119, 120, 121, 122, 123, 124, 125, 126, 129, 131, 134,
    137, 139, 141, 142, 143, 151, 156, 166, 168, 174, 188, 193, 195, 196, 197, 198, 203, 205, 209, 217, 218, 219,
    220, 226, 227, 235, 236, 237, 238, 239, 240, 241, 242, 248, 250, 264, 265, 266, 274, 275, 277, 278, 279, 280,
    281, 289, 290, 294, 298, 299, 301, 305, 309, 326, 327, 328, 329, 330, 331, 333, 337, 340, 343, 344, 345, 346,
    347, 348, 349, 350, 351, 352, 354, 355, 358, 360, 363, 366, 368, 370, 371, 372, 383, 392, 399, 412, 417, 419,
    420, 423, 425, 429, 437, 438, 439, 440, 447, 455, 456, 457, 458, 459, 460, 461, 462,
)

#: MediaPipe's face-oval contour in drawing order (used to outline the head region and in previews).
FACE_OVAL: tuple[int, ...] = (
    10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377, 152, 148, 176, 149,
    150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109,
)
#: Outer lip contour and the two eye contours (regions the keypoint tracker never samples).
LIPS_OUTER: tuple[int, ...] = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39, 40,
                               185)
RIGHT_EYE: tuple[int, ...] = (33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246)
LEFT_EYE: tuple[int, ...] = (362, 382, 381, 380, 374, 373, 390, 249, 263, 466, 388, 387, 386, 385, 384, 398)


@dataclass(frozen=True)
class FaceTemplate:
    """A subject's rigid face template in the head frame."""

    points: np.ndarray
    """[478, 3] float64 landmark positions in metres (head frame)."""
    rigid: np.ndarray
    """[L] int64 indices of the rigid landmarks (``RIGID_LANDMARKS``)."""
    init_rotation: np.ndarray
    """[N, 3, 3] float64 per-frame head-to-camera rotation in OpenCV axes from MediaPipe's matrices (a starting
    point for the tracker); identity-facing where the track has no matrix."""
    depth_offset_cm: float
    """The offset of MediaPipe's relative-depth reference found by the consistency search."""
    spread_mm: float
    """Mean distance of the per-frame reconstructions to the template (rigid points), in millimetres."""
    frames_used: int

    @property
    def rigid_points(self) -> np.ndarray:
        """[L, 3] metres."""
        return self.points[self.rigid]


def _valid_matrices(transforms: np.ndarray, face_found: np.ndarray) -> np.ndarray:
    """[N] bool: frames whose matrix is a real MediaPipe pose (not the identity stand-in of a missed face)."""
    t = np.asarray(transforms, np.float64)
    not_identity = np.abs(t - np.eye(4)).reshape(len(t), -1).max(axis=1) > 1e-6
    in_front = t[:, 2, 3] < -1.0  # the canonical face is at least 1 cm in front of the virtual camera
    return np.asarray(face_found, bool) & not_identity & in_front


def _canonical_points(landmarks: np.ndarray, transforms: np.ndarray, width: int, height: int,
                      offset_cm: float) -> np.ndarray:
    """Per-frame landmarks back-projected through MediaPipe's camera into the canonical frame, [F, 478, 3] cm."""
    focal_px = (height / 2.0) / np.tan(np.radians(MEDIAPIPE_VERTICAL_FOV_DEG) / 2.0)
    depth0 = -transforms[:, 2, 3][:, None] + offset_cm  # [F, 1] distance of the depth reference, cm
    depth = depth0 + landmarks[..., 2] * depth0 / focal_px  # z is in pixel units, like x
    cam = np.stack([(landmarks[..., 0] - width / 2.0) * depth / focal_px,
                    -(landmarks[..., 1] - height / 2.0) * depth / focal_px,
                    -depth], axis=-1)  # OpenGL camera, cm
    rotation, translation = transforms[:, :3, :3], transforms[:, :3, 3]
    # Canonical = R^T (cam - t); MediaPipe's matrices are rotations (scale 1) in this task.
    return np.einsum("fji,flj->fli", rotation, cam - translation[:, None, :])


def _spread(points: np.ndarray, rigid: np.ndarray) -> tuple[float, np.ndarray]:
    template = np.median(points, axis=0)
    dist = np.linalg.norm(points[:, rigid] - template[None, rigid], axis=-1)
    return float(dist.mean()), template


def estimate_template(track, *, max_frames: int = 300) -> FaceTemplate:
    """The subject's rigid face template from a ``FaceTrack`` (landmarks + MediaPipe matrices).

    Args:
        track: the clip's face track.
        max_frames: at most this many evenly spaced frames are used (enough for a stable median).

    Returns:
        A ``FaceTemplate`` in metres, origin at the mesh centroid.
    """
    landmarks = np.asarray(track.landmarks, np.float64)
    transforms = np.asarray(track.transforms, np.float64)
    if landmarks.ndim != 3 or landmarks.shape[1:] != (478, 3):
        raise InputError(f"the face track's landmarks must be [N, 478, 3] (MediaPipe), got {list(landmarks.shape)}")
    valid = _valid_matrices(transforms, track.face_found)
    if valid.sum() < 1:
        raise InputError("the face track has no MediaPipe facial transformation matrices (all frames are missing "
                         "or identity), so no face template can be built; capture the track again with "
                         "CaptureBlendshapes")
    use = np.flatnonzero(valid)
    if len(use) > max_frames:
        use = use[np.linspace(0, len(use) - 1, max_frames).round().astype(int)]
    rigid = np.asarray(RIGID_LANDMARKS, np.int64)

    def cost(offset: float) -> float:
        pts = _canonical_points(landmarks[use], transforms[use], track.width, track.height, offset)
        return _spread(pts, rigid)[0]

    offset = _golden_section(cost, -12.0, 6.0, iterations=24)
    pts = _canonical_points(landmarks[use], transforms[use], track.width, track.height, offset)
    spread_cm, template = _spread(pts, rigid)
    template = template - template[:NUM_MESH_POINTS].mean(axis=0)

    init = np.tile(np.diag([1.0, -1.0, -1.0]), (len(landmarks), 1, 1))  # frontal head, OpenCV camera axes
    init[valid] = np.diag([1.0, -1.0, -1.0]) @ transforms[valid, :3, :3]
    return FaceTemplate(points=template / 100.0, rigid=rigid, init_rotation=init, depth_offset_cm=float(offset),
                        spread_mm=spread_cm * 10.0, frames_used=int(len(use)))


def _golden_section(fn, lo: float, hi: float, iterations: int) -> float:
    """Minimiser of a unimodal 1-D function on [lo, hi]."""
    ratio = (np.sqrt(5.0) - 1.0) / 2.0
    a, b = lo, hi
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc, fd = fn(c), fn(d)
    for _ in range(iterations):
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - ratio * (b - a)
            fc = fn(c)
        else:
            a, c, fc = c, d, fd
            d = a + ratio * (b - a)
            fd = fn(d)
    return (a + b) / 2.0
