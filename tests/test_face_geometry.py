"""Face geometry in the head frame and regions at a pose: exact lifting on synthetic cameras, regions that depend
on the pose only (never on a frame's mouth), and the reach of the jaw."""
from __future__ import annotations

import numpy as np
import pytest

from geometry_fixtures import SIZE, head_scene
from synctalk_lib.face.indices import CHIN, NOSE_TIP
from synctalk_lib.face.regions import _fill_polygon
from synctalk_lib.pose.face_geometry import FaceGeometry, PoseRegions, lift_landmarks, soften
from synctalk_lib.types import HeadPose

def test_lifting_recovers_head_frame_points():
    base, track, pose = head_scene()
    head, error = lift_landmarks(track.landmarks, pose.c2w, pose.focal, pose.cx, pose.cy, pose.landmarks3d)
    # float32 landmarks and poses: sub-millimetre
    assert error < 0.5
    assert np.abs(head - base[None, :468]).max() < 2e-3


def test_jaw_range_and_reach_follow_the_frames():
    jaw = np.concatenate([np.zeros(20), np.linspace(0, 10, 20)])  # chin drops up to 10 mm
    _, track, pose = head_scene(jaw_mm=jaw)
    geometry = FaceGeometry.from_track(track, pose)
    assert 6.0 < geometry.jaw_range() * 1000 < 11.0
    reach = geometry.lower_face_reach(extra=0.5)
    assert reach[468 + CHIN, 1] < geometry.open[CHIN, 1] < geometry.closed[CHIN, 1]


def test_regions_depend_on_the_pose_only():
    """Two tracks with the same poses and different mouths give the same regions at a pose (no mouth leak)."""
    _, track_a, pose = head_scene(jaw_mm=np.linspace(0, 8, 40), seed=1)
    _, track_b, _ = head_scene(jaw_mm=np.linspace(8, 0, 40), seed=1)
    ga = FaceGeometry.from_track(track_a, pose)
    gb = FaceGeometry.from_track(track_b, pose)
    for name in ("mouth", "upper", "head", "face"):
        ma = PoseRegions.for_size(ga, pose, SIZE, SIZE).mask(name, pose.c2w[0])
        mb = PoseRegions.for_size(gb, pose, SIZE, SIZE).mask(name, pose.c2w[0])
        assert np.abs(ma - mb).mean() < 0.01, name


def test_mouth_region_covers_the_jaw_reach_and_lies_in_the_head():
    _, track, pose = head_scene(jaw_mm=np.linspace(0, 8, 40))
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
    base, track, pose = head_scene(num_frames=8)
    bare = HeadPose(focal=pose.focal, cx=pose.cx, cy=pose.cy, width=pose.width, height=pose.height, c2w=pose.c2w,
                    keypoints=pose.keypoints, reproj_error=pose.reproj_error)
    geometry = FaceGeometry.from_track(track, bare)
    aligned = base[:468] - base[:468].mean(axis=0)
    lifted = geometry.neutral - geometry.neutral.mean(axis=0)
    assert np.abs(lifted - aligned).max() < 5e-3 and geometry.lift_error_mm == 0.0


def test_fill_polygon_of_projected_region_matches_mask():
    _, track, pose = head_scene(num_frames=6)
    regions = PoseRegions.for_size(FaceGeometry.from_track(track, pose), pose, SIZE, SIZE)
    poly = regions.polygon("face", pose.c2w[2])
    assert np.array_equal(_fill_polygon(poly, SIZE, SIZE), regions.mask("face", pose.c2w[2]) > 0.5)
