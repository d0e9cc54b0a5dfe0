"""The canonical face from the Face Landmarker bundle, the rigid landmark set, and the subject template."""
from __future__ import annotations

import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from synctalk_lib.errors import InputError
from synctalk_lib.face import indices
from synctalk_lib.pose.camera import axis_angle_to_matrix, project
from synctalk_lib.pose.face_model import (
    GEOMETRY_METADATA,
    RIGID_LANDMARKS,
    RIGID_RULE,
    canonical_face,
    mediapipe_rotations,
    parse_canonical_mesh,
    subject_template,
)


@pytest.fixture(scope="module")
def canonical(shared_models: Path) -> np.ndarray:
    return canonical_face([shared_models])


def test_canonical_face_is_a_metric_symmetric_face(canonical: np.ndarray):
    assert canonical.shape == (468, 3)
    assert np.abs(canonical.mean(axis=0)).max() < 1e-12  # origin at the vertex centroid
    width, height, depth = canonical.max(axis=0) - canonical.min(axis=0)
    assert 0.13 < width < 0.18 and 0.15 < height < 0.20 and 0.08 < depth < 0.12  # an adult face in metres
    # Nose tip in front (+z), forehead above the chin (+y up), the subject's right eye on the image's left (-x).
    assert canonical[:, 2].max() - canonical[indices.NOSE_TIP, 2] < 0.002
    assert canonical[indices.FOREHEAD_TOP, 1] > canonical[indices.CHIN, 1]
    assert canonical[33, 0] < 0 < canonical[263, 0]
    # Exactly left/right symmetric.
    mirrored = canonical * np.array([-1.0, 1.0, 1.0])
    assert np.linalg.norm(mirrored[:, None] - canonical[None], axis=-1).min(axis=1).max() < 1e-6


def test_parser_reads_packed_and_unpacked_vertex_buffers():
    vertices = np.arange(468 * 5, dtype=np.float32)

    def varint(value: int) -> bytes:
        out = b""
        while True:
            byte, value = value & 0x7F, value >> 7
            out += bytes([byte | (0x80 if value else 0)])
            if not value:
                return out

    unpacked = b"".join(b"\x1d" + struct.pack("<f", v) for v in vertices)  # field 3, wire type 5
    packed = b"\x1a" + varint(vertices.nbytes) + vertices.tobytes()  # field 3, wire type 2
    for body in (unpacked, packed):
        mesh = b"\x08\x00\x10\x00" + body
        message = b"\x0a" + varint(len(mesh)) + mesh + b"\x18\x01"
        assert np.array_equal(parse_canonical_mesh(message), vertices.reshape(468, 5)[:, :3])
    with pytest.raises(InputError, match="no canonical mesh"):
        parse_canonical_mesh(b"\x18\x01")


def test_bundle_without_geometry_is_a_clear_error(tmp_path: Path, shared_models: Path):
    bad = tmp_path / "face_landmarker.task"
    with zipfile.ZipFile(shared_models / "face_landmarker.task") as src, zipfile.ZipFile(bad, "w") as dst:
        for name in src.namelist():
            if name != GEOMETRY_METADATA:
                dst.writestr(name, src.read(name))
    from synctalk_lib.pose.face_model import _canonical_from_bundle

    with pytest.raises(InputError, match="geometry_pipeline_metadata"):
        _canonical_from_bundle(str(bad))


def test_rigid_landmarks_follow_their_rule(canonical: np.ndarray):
    """Re-derive the frozen set from the rule written beside it."""
    points = canonical * 100.0  # cm

    def distance_to(group) -> np.ndarray:
        return np.linalg.norm(points[:, None, :2] - points[None, list(group), :2], axis=-1).min(axis=1)

    eyes = distance_to(indices.LEFT_EYE + indices.RIGHT_EYE)
    brows = distance_to(indices.LEFT_BROW + indices.RIGHT_BROW)
    excluded = set(indices.LIPS_OUTER) | set(indices.LIPS_INNER) | set(indices.FACE_OVAL)
    ok = np.array([i not in excluded and points[i, 1] > points[RIGID_RULE["above_landmark"], 1]
                   and eyes[i] > RIGID_RULE["eye_margin_cm"] and brows[i] > RIGID_RULE["brow_margin_cm"]
                   for i in range(468)])
    mirror = np.linalg.norm((points * [-1, 1, 1])[:, None] - points[None], axis=-1).argmin(axis=1)
    derived = tuple(i for i in range(468) if ok[i] and ok[mirror[i]])
    assert derived == RIGID_LANDMARKS
    assert not set(RIGID_LANDMARKS) & (excluded | set(indices.LEFT_EYE) | set(indices.LEFT_BROW))
    assert max(RIGID_LANDMARKS) < 468 and len(RIGID_LANDMARKS) > 120


def test_subject_template_recovers_the_face_that_was_filmed(canonical: np.ndarray):
    """Landmarks of a face wider than the canonical one, seen from known poses: the template is that face."""
    rng = np.random.default_rng(0)
    subject = canonical * np.array([1.08, 0.97, 1.0])  # the subject's proportions differ from the mean face
    n = 40
    rotation = axis_angle_to_matrix(torch.from_numpy(np.radians(rng.normal(0, 6, (n, 3))))).numpy()
    rotation = np.diag([1.0, -1.0, -1.0]) @ rotation
    translation = np.tile([0.0, 0.0, 0.8], (n, 1)) + rng.normal(0, 0.01, (n, 3))
    focal = 1400.0
    pixels = project(np.einsum("nij,lj->nli", rotation, subject) + translation[:, None], focal, 256.0, 256.0)
    landmarks = np.concatenate([pixels, np.zeros((n, 468, 1))], axis=-1)
    template = subject_template(landmarks, rotation, translation, focal, 256.0, 256.0, canonical)
    # Lateral shape comes from the images; depth from the canonical face (the subject's is the same here).
    assert np.abs(template.points - subject).max() < 1e-3  # under 1 mm
    assert template.spread_mm < 0.5 and template.frames_used == n
    assert template.rigid_points.shape == (len(RIGID_LANDMARKS), 3)


def test_mediapipe_rotations_drop_scale_and_fill_missing_frames():
    class Track:
        transforms = np.stack([np.diag([2.0, 2.0, 2.0, 1.0]), np.eye(4)])
        face_found = np.array([True, True])

    out = mediapipe_rotations(Track())
    frontal = np.diag([1.0, -1.0, -1.0])
    assert np.allclose(out[0], frontal) and np.allclose(out[1], frontal)  # identity = no matrix -> frontal
