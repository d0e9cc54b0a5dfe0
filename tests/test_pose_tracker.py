"""Rough tracker and bundle adjustment against synthetic ground truth, and the metrics they are judged by.

The scene (``synctalk_lib.pose.synthetic``): a face-like rigid surface in smooth random motion 0.6 m in front of a
1100 px camera; 150 landmarks with 1.5 px Gaussian noise and 1 % gross outliers (8-30 px), and 300 dense keypoint
tracks with 0.3 px noise and 3 % dropped observations (optical flow on real skin is far more precise than landmarks).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from synctalk_lib.pose.bundle_adjust import bundle_adjust
from synctalk_lib.pose.camera import axis_angle_to_matrix, opencv_to_nerf, project, rotation_angle_deg
from synctalk_lib.pose.metrics import jitter_rot_deg, jitter_trans, pose_metrics, reproj_px
from synctalk_lib.pose.rough_tracker import fit_fixed_focal, track_rough
from synctalk_lib.pose.synthetic import make_scene


def mediapipe_like_start(rotation: np.ndarray, seed: int, sigma_deg: float = 3.0) -> np.ndarray:
    """Starting rotations a few degrees off the truth, like MediaPipe's matrices."""
    noise = np.radians(np.random.default_rng(seed).normal(0, sigma_deg, (len(rotation), 3)))
    return axis_angle_to_matrix(torch.from_numpy(noise)).numpy() @ rotation


def metrics_of(scene, rotation, translation, points, focal):
    cam = np.einsum("nij,lj->nli", rotation, points) + translation[:, None]
    return pose_metrics(opencv_to_nerf(rotation, translation), project(cam, focal, 256.0, 256.0), scene.landmarks2d)


@pytest.fixture(scope="module")
def fitted():
    """Scene, rough fit and bundle adjustment for two seeds (shared by the tests below)."""
    torch.set_num_threads(1)
    out = []
    for seed in (0, 1):
        scene = make_scene(seed=seed)
        rough = track_rough(scene.landmarks3d, scene.landmarks2d, mediapipe_like_start(scene.rotation, seed),
                            width=scene.width, height=scene.height)
        ba = bundle_adjust(focal=rough.focal, cx=256.0, cy=256.0, rotation=rough.rotation,
                           translation=rough.translation, landmarks2d=scene.landmarks2d, template=scene.landmarks3d,
                           tracks2d=scene.tracks2d, track_valid=scene.track_valid, ref_index=60)
        out.append((scene, rough, ba))
    return out


def test_focal_length_within_5_percent(fitted):
    for scene, rough, _ in fitted:
        assert abs(rough.focal / scene.focal - 1.0) < 0.05, (rough.focal, scene.focal)
        assert not rough.at_range_edge
        # The search really compares candidates: far-off focals cost clearly more.
        costs = dict(rough.focal_costs)
        assert max(costs.values()) > 2.0 * min(costs.values())


def test_rough_rotation_median_error_below_one_degree_despite_outliers(fitted):
    for scene, rough, _ in fitted:
        err = rotation_angle_deg(rough.rotation, scene.rotation)
        assert np.median(err) < 1.0 and err.max() < 3.0, (np.median(err), err.max())
        depth_err = np.abs(rough.translation[:, 2] / scene.translation[:, 2] - 1.0)
        assert np.median(depth_err) < 0.05


def test_bundle_adjustment_cuts_jitter_3x_without_lag(fitted):
    for scene, rough, ba in fitted:
        raw = metrics_of(scene, rough.rotation, rough.translation, scene.landmarks3d, rough.focal)
        adjusted = metrics_of(scene, ba.rotation, ba.translation, ba.landmarks3d, rough.focal)
        assert raw["jitter_rot_deg"] >= 3.0 * adjusted["jitter_rot_deg"], (raw, adjusted)
        assert raw["jitter_trans"] >= 3.0 * adjusted["jitter_trans"], (raw, adjusted)
        assert adjusted["reproj_px"] <= 1.10 * raw["reproj_px"], (raw, adjusted)
        # Closer to the truth, not just smoother.
        assert np.median(rotation_angle_deg(ba.rotation, scene.rotation)) < 0.5 * np.median(
            rotation_angle_deg(rough.rotation, scene.rotation))
        assert ba.kept_tracks.sum() >= 0.9 * len(ba.kept_tracks)
        assert 0.2 < ba.sigma_track_px < 0.6 and 1.0 < ba.sigma_landmark_px < 2.2


def test_smoothness_prior_trades_jitter_for_fit():
    scene = make_scene(num_frames=80, seed=2)
    rough = fit_fixed_focal(scene.landmarks3d, scene.landmarks2d, mediapipe_like_start(scene.rotation, 2),
                            scene.focal, width=512, height=512, huber_px=4.0)
    results = {}
    for smoothness in (0.0, 30.0):
        ba = bundle_adjust(focal=scene.focal, cx=256.0, cy=256.0, rotation=rough.rotation,
                           translation=rough.translation, landmarks2d=scene.landmarks2d,
                           template=scene.landmarks3d, tracks2d=scene.tracks2d, track_valid=scene.track_valid,
                           ref_index=40, smoothness=smoothness, stage2_iterations=300)
        results[smoothness] = metrics_of(scene, ba.rotation, ba.translation, ba.landmarks3d, scene.focal)
    assert results[30.0]["jitter_rot_deg"] < 0.7 * results[0.0]["jitter_rot_deg"]
    assert results[30.0]["jitter_trans"] < 0.7 * results[0.0]["jitter_trans"]


# ---------------------------------------------------------------------------------------------------- metrics
def c2w_from_head_in_camera(rotation: np.ndarray, translation: np.ndarray) -> np.ndarray:
    """Camera-to-world [N, 4, 4] whose world-to-camera part is (rotation, translation)."""
    w2c = np.tile(np.eye(4), (len(rotation), 1, 1))
    w2c[:, :3, :3], w2c[:, :3, 3] = rotation, translation
    return np.linalg.inv(w2c)


def test_metrics_on_hand_made_tracks():
    n = 10
    # Constant angular velocity about y and constant velocity: second differences vanish.
    angles = np.radians(np.linspace(0.0, 9.0, n))
    rotation = axis_angle_to_matrix(torch.from_numpy(np.stack([0 * angles, angles, 0 * angles], 1))).numpy()
    translation = np.stack([np.linspace(0, 0.01, n), np.zeros(n), np.full(n, -0.5)], 1)
    c2w = c2w_from_head_in_camera(rotation, translation)
    assert jitter_rot_deg(c2w) == pytest.approx(0.0, abs=1e-9)
    assert jitter_trans(c2w) == pytest.approx(0.0, abs=1e-12)
    # One frame rotated 1 degree further: second differences of 1, 2 and 1 degrees around it.
    extra = axis_angle_to_matrix(torch.tensor([[0.0, np.radians(1.0), 0.0]], dtype=torch.float64)).numpy()[0]
    kicked = rotation.copy()
    kicked[5] = extra @ rotation[5]
    assert jitter_rot_deg(c2w_from_head_in_camera(kicked, translation)) == pytest.approx(4.0 / (n - 2), rel=1e-6)
    # One frame 1 mm further away: 1, 2, 1 mm, relative to the mean depth.
    moved = translation.copy()
    moved[5, 2] -= 0.001
    expected = 0.004 / (n - 2) / np.abs(moved[:, 2]).mean()
    assert jitter_trans(c2w_from_head_in_camera(rotation, moved)) == pytest.approx(expected, rel=1e-6)
    assert jitter_rot_deg(c2w[:2]) == 0.0


def test_reproj_px_is_the_mean_distance():
    observed = np.zeros((2, 2, 2))
    projected = np.array([[[3.0, 4.0], [0.0, 0.0]], [[0.0, 1.0], [0.0, 0.0]]])
    assert reproj_px(projected, observed) == pytest.approx((5 + 0 + 1 + 0) / 4)
    assert reproj_px(projected, observed, valid=np.array([[True, False], [False, False]])) == 5.0
