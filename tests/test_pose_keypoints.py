"""Dense keypoints: rigidity score, selection, and tracking on synthetic frames with known motion."""
from __future__ import annotations

import numpy as np
import pytest

from face_fixtures import synthetic_landmarks
from synctalk_lib.errors import InputError
from synctalk_lib.pose.keypoints import (
    SCORE_THRESHOLD,
    find_keypoint_tracks,
    head_region,
    rigidity_score,
    select_keypoints,
)

cv2 = pytest.importorskip("cv2")

SIZE = 160


def texture(seed: int = 0, size: int = 2 * SIZE) -> np.ndarray:
    """Smooth random RGB texture (blobs a few pixels wide, like skin pores and freckles at 512 px)."""
    rng = np.random.default_rng(seed)
    noise = rng.random((size, size, 3)).astype(np.float32)
    return cv2.GaussianBlur(noise, (0, 0), 1.5)


def shifted_frames(shifts: np.ndarray, occlude: range = range(0)) -> list[np.ndarray]:
    """Frames showing the texture moved by ``shifts`` [N, 2] pixels (sub-pixel, bilinear)."""
    base = texture()
    frames = []
    for i, (dx, dy) in enumerate(shifts):
        m = np.float32([[1, 0, dx - SIZE / 2], [0, 1, dy - SIZE / 2]])
        frame = cv2.warpAffine(base, m, (SIZE, SIZE), flags=cv2.INTER_CUBIC)
        frame = np.clip(frame * 255 * 1.6 - 80, 0, 255).astype(np.uint8)
        if i in occlude:
            frame[20:80, 40:120] = 0  # something passes in front of the upper face
        frames.append(frame)
    return frames


def test_rigidity_score_ranks_steady_trajectories_first():
    t = np.arange(30, dtype=np.float32)
    rng = np.random.default_rng(0)
    steady = np.stack([0.5 * t, 0.1 * t], 1)  # constant velocity: zero Laplacian
    wobbly = steady + rng.normal(0, 0.5, steady.shape)
    smooth_turn = np.stack([0.02 * t ** 2, 0 * t], 1)  # constant acceleration: small constant Laplacian
    traj = np.stack([steady, wobbly, smooth_turn], 1)  # [T, P, 2]
    score = rigidity_score(traj)
    assert score[0] == 0.0 and score[1] == 1.0 and 0.0 < score[2] < 0.2
    # A time step where everything jumps (a blink, a cut) is ignored: the ranking by the rest stays.
    many = np.repeat(traj, 10, axis=1)
    many[15] += 40.0
    score = rigidity_score(many)
    assert score[:10].max() < 1e-6 and score[10:20].min() > 0.9
    with pytest.raises(InputError, match="at least 3"):
        rigidity_score(traj[:2])


def test_selection_respects_region_texture_score_and_spacing():
    rng = np.random.default_rng(1)
    score = rng.random((100, 120)).astype(np.float32) * 0.3
    region = np.zeros((100, 120), bool)
    region[10:90, 20:100] = True
    textured = rng.random((100, 120)) > 0.3
    points = select_keypoints(score, region, textured, cell=5, spacing=5, max_points=1000)
    xs, ys = points[:, 0].astype(int), points[:, 1].astype(int)
    assert region[ys, xs].all() and textured[ys, xs].all() and (score[ys, xs] < SCORE_THRESHOLD).all()
    gaps = np.abs(points[:, None] - points[None]).max(-1) + np.eye(len(points)) * 99
    assert gaps.min() > 5  # Chebyshev distance: no other point within the 11 x 11 box
    assert np.all(np.diff(score[ys, xs]) >= 0)  # most rigid first
    few = select_keypoints(score, region, textured, cell=5, spacing=5, max_points=20)
    assert 0 < len(few) <= 20


def test_head_region_leaves_out_eyes_and_lower_face():
    lm = synthetic_landmarks(cx=80, cy=80, rx=40, ry=55)
    region = head_region(lm, SIZE, SIZE)
    assert region[70, 80]  # between the eyes / nose
    assert not region[int(lm[61, 1]) + 5, 80]  # below the mouth corners
    eye = lm[[33, 133], :2].mean(0).round().astype(int)
    assert not region[eye[1], eye[0]]
    assert not region[80, 2] and not region[5, 80]  # outside the face


@pytest.mark.parametrize("flow", ["opencv"])
def test_tracks_follow_known_motion_and_drop_occluded_points(flow: str):
    n = 30
    t = np.arange(n)
    shifts = np.stack([4.0 * np.sin(t / 5.0), 2.5 * np.cos(t / 7.0) - 2.5], 1)  # sub-pixel, up to 4 px
    frames = shifted_frames(shifts, occlude=range(20, 24))
    landmarks = np.repeat(synthetic_landmarks(cx=80, cy=80, rx=50, ry=65)[None], n, axis=0)
    tracks = find_keypoint_tracks(lambda i: frames[i], n, landmarks, ref_index=0, flow=flow, max_points=80)
    assert 20 <= len(tracks.points) <= 80
    expected = tracks.points[None] + (shifts - shifts[0])[:, None, :]
    err = np.linalg.norm(tracks.tracks - expected, axis=-1)
    clear = [i for i in range(n) if i not in range(20, 24)]
    assert np.median(err[clear][tracks.valid[clear]]) < 0.1
    assert tracks.valid[clear].mean() > 0.9
    # Points under the occluder fail the forward-backward check in those frames.
    hidden = (tracks.points[:, 1] > 25) & (tracks.points[:, 1] < 75) & (tracks.points[:, 0] > 45) & (
        tracks.points[:, 0] < 115)
    assert hidden.any() and tracks.valid[20:24][:, hidden].mean() < 0.2
    assert tracks.score_map.shape == (SIZE, SIZE) and tracks.region.sum() > 100


def test_unknown_flow_is_refused():
    with pytest.raises(InputError, match="flow must be one of"):
        find_keypoint_tracks(lambda i: np.zeros((8, 8, 3), np.uint8), 3, np.zeros((3, 478, 3)), 0, flow="magic")
