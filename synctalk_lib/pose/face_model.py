"""The rigid 3D face model the head tracker fits: MediaPipe's canonical face, then the subject's own template.

**Canonical face.** The Face Landmarker bundle (``face_landmarker.task``, already needed for the face track) holds
MediaPipe's geometry pipeline metadata: a metric mean face mesh of 468 vertices in centimetres (x right, y up,
z toward the viewer), the shape MediaPipe aligns landmarks to. It plays the part of the original's 3DMM mean shape:
a face with real human depth proportions, so the perspective seen in the landmarks can tell the focal length.

**Subject template.** At the chosen focal length, every frame's landmarks are back-projected along their camera
rays to the depth the canonical face has there under that frame's fitted pose, mapped into the head frame, and
the per-point median over frames is taken: the subject's own face outline and proportions (as the camera saw
them), with the canonical face's depth. The landmark depth MediaPipe predicts was tried instead and agreed less
across frames on the reference clip.

(A template built through MediaPipe's own virtual camera -- its matrices and 63-degree field of view -- is not
used: it carries that camera's perspective, and the focal search then just returns MediaPipe's assumed focal.)

The head frame of the whole pack (see ``synctalk_lib.pose``) is the canonical face's frame with its origin moved
to the centroid of the 468 mesh vertices; units are metres.
"""
from __future__ import annotations

import functools
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from synctalk_lib.errors import InputError

NUM_MESH_POINTS = 468
"""Face mesh vertices; landmarks 468-477 are the two irises (they follow the gaze, so they are never rigid)."""

GEOMETRY_METADATA = "geometry_pipeline_metadata_landmarks.binarypb"
"""The member of ``face_landmarker.task`` that holds the canonical face mesh."""

#: Rigid landmarks: the mesh points that move with the skull, not with speech, blinks or brows.
#: Rule (applied to MediaPipe's canonical face, which is exactly left/right symmetric, and frozen here so every
#: subject uses the same set): keep mesh points (not irises) that are above the subnasale (landmark 2) -- mouth,
#: lips, jaw and chin move with speech -- not on MediaPipe's lip or face-oval contours -- oval points sit on the
#: silhouette and slide along it as the head turns -- at least 1.0 cm (in the frontal image plane) from any eye
#: contour point -- eyelids and the skin around them move with blinks -- and at least 0.6 cm from any eyebrow
#: point -- brows and the skin right above them move with expression; and only if the mirror partner is kept too,
#: so the set is symmetric and does not tilt the fit. What remains: nose, cheekbones, temples, lower forehead.
RIGID_LANDMARKS: tuple[int, ...] = (
    1, 3, 4, 5, 6, 8, 9, 19, 20, 34, 35, 36, 44, 45, 47, 48, 49, 50, 51, 59, 60, 64, 68, 69, 71, 75, 79, 94, 97,
    98, 99, 100, 101, 102, 104, 108, 111, 114, 115, 116, 117, 118, 119, 120, 121, 122, 123, 124, 125, 126, 129,
    131, 134, 137, 139, 141, 142, 143, 147, 151, 156, 166, 168, 174, 188, 193, 195, 196, 197, 198, 203, 205, 209,
    217, 218, 219, 220, 227, 228, 235, 236, 237, 238, 239, 240, 241, 242, 248, 250, 264, 265, 266, 274, 275, 277,
    278, 279, 280, 281, 289, 290, 294, 298, 299, 301, 305, 309, 326, 327, 328, 329, 330, 331, 333, 337, 340, 343,
    344, 345, 346, 347, 348, 349, 350, 351, 352, 353, 354, 355, 358, 360, 363, 366, 368, 370, 371, 372, 376, 383,
    392, 399, 412, 417, 419, 420, 423, 425, 429, 437, 438, 439, 440, 447, 448, 455, 456, 457, 458, 459, 460, 461,
    462,
)
RIGID_RULE = {"above_landmark": 2, "eye_margin_cm": 1.0, "brow_margin_cm": 0.6}
"""The numbers of the rule above (a test re-derives ``RIGID_LANDMARKS`` from them)."""

# ------------------------------------------------------------------------------------------ canonical face
def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, pos


def _proto_fields(buf: bytes) -> list[tuple[int, int, object]]:
    """(field number, wire type, value) of a protobuf message, without its schema."""
    out, pos = [], 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = buf[pos:pos + 8], pos + 8
        elif wire == 2:
            size, pos = _varint(buf, pos)
            value, pos = buf[pos:pos + size], pos + size
        elif wire == 5:
            value, pos = buf[pos:pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        out.append((number, wire, value))
    return out


def parse_canonical_mesh(metadata: bytes) -> np.ndarray:
    """Vertex positions [468, 3] float64 (cm) from MediaPipe's ``GeometryPipelineMetadata`` protobuf.

    Layout: field 1 = ``canonical_mesh`` (Mesh3d: 1 vertex_type, 2 primitive_type, 3 vertex_buffer floats,
    4 index_buffer); vertex type 0 (``VERTEX_PT``) stores 5 floats per vertex: x, y, z, u, v.
    """
    meshes = [value for number, wire, value in _proto_fields(metadata) if number == 1 and wire == 2]
    if len(meshes) != 1:
        raise InputError("the Face Landmarker bundle's geometry metadata has no canonical mesh")
    floats: list[float] = []
    vertex_type = 0
    for number, wire, value in _proto_fields(meshes[0]):
        if number == 1 and wire == 0:
            vertex_type = int(value)
        elif number == 3 and wire == 5:
            floats.append(struct.unpack("<f", value)[0])
        elif number == 3 and wire == 2:  # packed encoding
            floats.extend(np.frombuffer(value, "<f4").tolist())
    if vertex_type != 0 or len(floats) != NUM_MESH_POINTS * 5:
        raise InputError(f"unexpected canonical mesh layout (vertex type {vertex_type}, {len(floats)} floats)")
    return np.asarray(floats, np.float64).reshape(NUM_MESH_POINTS, 5)[:, :3]


@functools.lru_cache(maxsize=4)
def _canonical_from_bundle(path: str) -> np.ndarray:
    try:
        with zipfile.ZipFile(path) as bundle:
            metadata = bundle.read(GEOMETRY_METADATA)
    except (OSError, KeyError, zipfile.BadZipFile) as exc:
        raise InputError(f"{path} does not contain MediaPipe's {GEOMETRY_METADATA} ({exc}); use the official "
                         "face_landmarker.task") from exc
    return parse_canonical_mesh(metadata)


def canonical_face(models_dirs: Iterable[Path | str] | None = None) -> np.ndarray:
    """MediaPipe's canonical face, [468, 3] float64 metres in the head frame (origin at the vertex centroid)."""
    from synctalk_lib import hub

    points = _canonical_from_bundle(str(hub.fetch("face_landmarker", models_dirs))) / 100.0
    return points - points.mean(axis=0)


# ------------------------------------------------------------------------------------------ subject template
@dataclass(frozen=True)
class FaceTemplate:
    """A subject's rigid face template in the head frame."""

    points: np.ndarray
    """[468, 3] float64 mesh point positions in metres (head frame)."""
    rigid: np.ndarray
    """[L] int64 indices of the rigid landmarks (``RIGID_LANDMARKS``)."""
    spread_mm: float
    """Mean distance of the per-frame reconstructions to the template (rigid points), in millimetres."""
    frames_used: int

    @property
    def rigid_points(self) -> np.ndarray:
        """[L, 3] metres."""
        return self.points[self.rigid]


def mediapipe_rotations(track) -> np.ndarray:
    """Per-frame head-to-camera rotations [N, 3, 3] (OpenCV axes) from MediaPipe's matrices, a tracker start.

    Frames without a usable matrix (no face, identity stand-in) get the frontal rotation.
    """
    transforms = np.asarray(track.transforms, np.float64)
    frontal = np.diag([1.0, -1.0, -1.0])
    not_identity = np.abs(transforms - np.eye(4)).reshape(len(transforms), -1).max(axis=1) > 1e-6
    valid = np.asarray(track.face_found, bool) & not_identity
    out = np.tile(frontal, (len(transforms), 1, 1))
    if valid.any():
        block = transforms[valid, :3, :3]
        u, _, vt = np.linalg.svd(block)  # drop any scale MediaPipe's matrix carries
        fix = np.ones((len(block), 3))
        fix[:, 2] = np.sign(np.linalg.det(u @ vt))
        out[valid] = frontal @ ((u * fix[:, None, :]) @ vt)
    return out


def subject_template(landmarks: np.ndarray, rotation: np.ndarray, translation: np.ndarray, focal: float,
                     cx: float, cy: float, canonical: np.ndarray, *, weights: np.ndarray | None = None,
                     rigid: Iterable[int] = RIGID_LANDMARKS, max_frames: int = 300) -> FaceTemplate:
    """The subject's own face template from its landmarks and poses fitted with the canonical face.

    Args:
        landmarks: [N, 468+, 2+] landmark pixels.
        rotation: [N, 3, 3] OpenCV head-to-camera rotations (fitted with ``canonical``).
        translation: [N, 3] translations (metres).
        focal, cx, cy: intrinsics in pixels.
        canonical: [468, 3] canonical face (metres, head frame).
        weights: optional [N]; frames with weight 0 are not used.
        max_frames: at most this many evenly spaced frames are used.

    Returns:
        A ``FaceTemplate`` (the median over frames; see the module docstring).
    """
    n = len(landmarks)
    use = np.arange(n) if weights is None else np.flatnonzero(np.asarray(weights) > 0)
    if len(use) == 0:
        raise InputError("no frame of the face track can be used to build the face template")
    if len(use) > max_frames:
        use = use[np.linspace(0, len(use) - 1, max_frames).round().astype(int)]
    pix = np.asarray(landmarks)[use, :NUM_MESH_POINTS, :2].astype(np.float64)
    r, t = np.asarray(rotation, np.float64)[use], np.asarray(translation, np.float64)[use]
    depth = (np.einsum("nij,lj->nli", r, canonical) + t[:, None, :])[..., 2]  # canonical depth per point
    rays = np.stack([(pix[..., 0] - cx) / focal, (pix[..., 1] - cy) / focal, np.ones(pix.shape[:2])], -1)
    head = np.einsum("nji,nlj->nli", r, rays * depth[..., None] - t[:, None, :])  # R^T (p - t)
    template = np.median(head, axis=0)
    rigid = np.asarray(tuple(rigid), np.int64)
    spread = float(np.linalg.norm(head[:, rigid] - template[rigid], axis=-1).mean())
    return FaceTemplate(points=template, rigid=rigid, spread_mm=spread * 1000.0, frames_used=int(len(use)))
