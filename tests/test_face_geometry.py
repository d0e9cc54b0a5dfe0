"""Face geometry in the head frame and regions at a pose: exact lifting on synthetic cameras, regions that depend
on the pose only (never on a frame's mouth), and the reach of the jaw."""
from __future__ import annotations

import numpy as np
import pytest

from synctalk_lib.face.indices import CHIN, NOSE_TIP
from synctalk_lib.face.regions import _fill_polygon
from synctalk_lib.pose.camera import opencv_to_nerf, project
from synctalk_lib.pose.face_geometry import FaceGeometry, PoseRegions, lift_landmarks, soften
from synctalk_lib.pose.face_model import RIGID_LANDMARKS
from synctalk_lib.types import FaceTrack, HeadPose

FOCAL, SIZE = 900.0, 256


def _face(rng: np.random.Generator) -> np.ndarray:
    """[478, 3] a face-sized point cloud (metres): a half ellipsoid facing +z, chin at -9 cm, nose tip forward."""
    theta = rng.uniform(0, np.pi, 478)
    phi = rng.uniform(0, 2 * np.pi, 478)
    pts = np.stack([0.07 * np.sin(theta) * np.cos(phi), 0.09 * np.cos(theta),
                    0.05 * np.abs(np.sin(theta) * np.sin(phi))], -1)
    pts[CHIN] = (0.0, -0.09, 0.02)
    pts[NOSE_TIP] = (0.0, 0.0, 0.06)
    pts[2] = (0.0, -0.015, 0.05)  # subnasale
    pts[10] = (0.0, 0.085, 0.03)  # forehead top
    return pts


def _scene(num_frames: int = 40, seed: int = 0, jaw_mm: np.ndarray | None = None):
    """Synthetic track and pose: a head turning a few degrees, its chin and lower points dropping by ``jaw_mm``."""
    rng = np.random.default_rng(seed)
    base = _face(rng)
    jaw_mm = np.zeros(num_frames) if jaw_mm is None else jaw_mm
    angles = np.radians(rng.uniform(-6, 6, (num_frames, 3)))
    landmarks, rotations, translations = [], [], []
    lower = base[:, 1] < base[2, 1]
    for n in range(num_frames):
        pts = base.copy()
        pts[lower, 1] -= jaw_mm[n] / 1000.0 * (base[2, 1] - pts[lower, 1]) / 0.075
        rx, ry, rz = angles[n]
        r = _rot(rx, ry, rz) @ np.diag([1.0, -1.0, -1.0])  # head +y up -> OpenCV camera y down
        t = np.array([0.0, 0.0, 1.0]) + rng.normal(0, 0.005, 3)
        cam = pts @ r.T + t
        px = project(cam, FOCAL, SIZE / 2, SIZE / 2)
        s = np.median(cam[RIGID_LANDMARKS, 2]) / FOCAL  # the lifting's metres-per-pixel
        z_px = (cam[:, 2] - 1.0) / s
        landmarks.append(np.concatenate([px, z_px[:, None]], 1))
        rotations.append(r)
        translations.append(t)
    c2w = opencv_to_nerf(np.array(rotations), np.array(translations)).astype(np.float32)
    pose = HeadPose(focal=FOCAL, cx=SIZE / 2, cy=SIZE / 2, width=SIZE, height=SIZE, c2w=c2w,
                    keypoints=np.zeros((0, 3), np.float32), reproj_error=np.zeros(num_frames, np.float32),
                    landmarks3d=base[list(RIGID_LANDMARKS)].astype(np.float32))
    track = FaceTrack(landmarks=np.array(landmarks, np.float32), blendshapes=np.zeros((num_frames, 52), np.float32),
                      blendshape_names=tuple(f"b{i}" for i in range(52)), face_found=np.ones(num_frames, bool),
                      transforms=np.tile(np.eye(4, dtype=np.float32), (num_frames, 1, 1)),
                      expression=np.zeros((num_frames, 7), np.float32), expression_names=tuple("abcdefg"),
                      width=SIZE, height=SIZE, fps=25.0)
    return base, track, pose


def _rot(rx: float, ry: float, rz: float) -> np.ndarray:
    cx, sx, cy, sy, cz, sz = np.cos(rx), np.sin(rx), np.cos(ry), np.sin(ry), np.cos(rz), np.sin(rz)
    return (np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]]) @ np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
            @ np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]]))


def test_lifting_recovers_head_frame_points():
    base, track, pose = _scene()
    head, error = lift_landmarks(track.landmarks, pose.c2w, pose.focal, pose.cx, pose.cy, pose.landmarks3d)
    # float32 landmarks and poses: sub-millimetre
    assert error < 0.5
    assert np.abs(head - base[None, :468]).max() < 2e-3


def test_jaw_range_and_reach_follow_the_frames():
    jaw = np.concatenate([np.zeros(20), np.linspace(0, 10, 20)])  # chin drops up to 10 mm
    _, track, pose = _scene(jaw_mm=jaw)
    geometry = FaceGeometry.from_track(track, pose)
    assert 6.0 < geometry.jaw_range() * 1000 < 11.0
    reach = geometry.lower_face_reach(extra=0.5)
    assert reach[468 + CHIN, 1] < geometry.open[CHIN, 1] < geometry.closed[CHIN, 1]


def test_regions_depend_on_the_pose_only():
    """Two tracks with the same poses and different mouths give the same regions at a pose (no mouth leak)."""
    _, track_a, pose = _scene(jaw_mm=np.linspace(0, 8, 40), seed=1)
    _, track_b, _ = _scene(jaw_mm=np.linspace(8, 0, 40), seed=1)
    ga = FaceGeometry.from_track(track_a, pose)
    gb = FaceGeometry.from_track(track_b, pose)
    for name in ("mouth", "upper", "head", "face"):
        ma = PoseRegions.for_size(ga, pose, SIZE, SIZE).mask(name, pose.c2w[0])
        mb = PoseRegions.for_size(gb, pose, SIZE, SIZE).mask(name, pose.c2w[0])
        assert np.abs(ma - mb).mean() < 0.01, name


def test_mouth_region_covers_the_jaw_reach_and_lies_in_the_head():
    _, track, pose = _scene(jaw_mm=np.linspace(0, 8, 40))
    geometry = FaceGeometry.from_track(track, pose)
    regions = PoseRegions.for_size(geometry, pose, SIZE, SIZE)
    for n in (0, 17, 39):
        mouth = regions.mask("mouth", pose.c2w[n]) > 0.5
        head = regions.mask("head", pose.c2w[n]) > 0.5
        chin = regions.project(geometry.lower_face_reach()[[468 + CHIN]], pose.c2w[n])[0]
        assert mouth[int(chin[1]), int(chin[0])]
        nose = regions.project(geometry.neutral[[NOSE_TIP]], pose.c2w[n])[0]
        assert not mouth[int(nose[1]) - 3, int(nose[0])]  # the audio never acts above the nose tip
        assert (mouth & ~head).sum() == 0


def test_soften_ramps_over_the_feather_and_keeps_the_edge():
    hard = np.zeros((40, 40), bool)
    hard[10:30, 10:30] = True
    soft = soften(hard, 4.0)
    assert soft[20, 20] == 1.0 and soft[0, 0] == 0.0
    assert 0.3 < soft[20, 10] < 0.7  # the edge sits at one half
    assert np.array_equal(soften(hard, 0.0) > 0.5, hard)


def test_poses_without_rigid_landmarks_still_lift():
    """Imported poses have no bundle-adjusted landmarks: the mesh centroid anchors the depth instead."""
    base, track, pose = _scene(num_frames=8)
    bare = HeadPose(focal=pose.focal, cx=pose.cx, cy=pose.cy, width=pose.width, height=pose.height, c2w=pose.c2w,
                    keypoints=pose.keypoints, reproj_error=pose.reproj_error)
    geometry = FaceGeometry.from_track(track, bare)
    aligned = base[:468] - base[:468].mean(axis=0)
    lifted = geometry.neutral - geometry.neutral.mean(axis=0)
    assert np.abs(lifted - aligned).max() < 5e-3 and geometry.lift_error_mm == 0.0


def test_fill_polygon_of_projected_region_matches_mask():
    _, track, pose = _scene(num_frames=6)
    regions = PoseRegions.for_size(FaceGeometry.from_track(track, pose), pose, SIZE, SIZE)
    poly = regions.polygon("face", pose.c2w[2])
    assert np.array_equal(_fill_polygon(poly, SIZE, SIZE), regions.mask("face", pose.c2w[2]) > 0.5)
