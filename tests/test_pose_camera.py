"""Camera conventions, rotations and the original SyncTalk transforms files."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from synctalk_lib.cli import main
from synctalk_lib.errors import InputError
from synctalk_lib.pose.camera import (
    axis_angle_to_matrix,
    export_transforms,
    import_transforms,
    matrix_to_axis_angle,
    nerf_to_opencv,
    opencv_to_nerf,
    project,
    rotation_angle_deg,
    split_frames,
)
from synctalk_lib.types import HeadPose


def random_rotations(n: int, seed: int = 0, max_angle: float = np.pi) -> np.ndarray:
    rng = np.random.default_rng(seed)
    axes = rng.normal(size=(n, 3))
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    angles = rng.uniform(0, max_angle, size=(n, 1))
    return axis_angle_to_matrix(torch.from_numpy(axes * angles)).numpy()


def make_pose(n: int = 22, width: int = 512, height: int = 512, seed: int = 0) -> HeadPose:
    rotation = random_rotations(n, seed, max_angle=0.4) @ np.diag([1.0, -1.0, -1.0])
    translation = np.tile([0.01, -0.02, 0.6], (n, 1)) + np.random.default_rng(seed).normal(0, 0.01, (n, 3))
    return HeadPose(focal=1234.5, cx=width / 2, cy=height / 2, width=width, height=height,
                    c2w=opencv_to_nerf(rotation, translation).astype(np.float32),
                    keypoints=np.zeros((3, 3), np.float32), reproj_error=np.zeros(n, np.float32))


# ------------------------------------------------------------------------------------------------- rotations
def test_axis_angle_round_trip_including_zero_and_near_pi():
    rng = np.random.default_rng(1)
    axes = rng.normal(size=(200, 3))
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    angles = np.concatenate([[0.0, 1e-9, 1e-4, np.pi - 1e-6], rng.uniform(0, np.pi - 1e-3, 196)])[:, None]
    rotvec = torch.from_numpy(axes * angles)
    matrix = axis_angle_to_matrix(rotvec)
    # Proper rotations.
    eye = torch.eye(3, dtype=torch.float64).expand_as(matrix)
    assert torch.allclose(matrix @ matrix.transpose(-1, -2), eye, atol=1e-12)
    assert torch.allclose(torch.linalg.det(matrix), torch.ones(200, dtype=torch.float64), atol=1e-12)
    back = matrix_to_axis_angle(matrix)
    # Near pi the axis sign is ambiguous: compare the rotations, not the vectors there.
    err = rotation_angle_deg(axis_angle_to_matrix(back).numpy(), matrix.numpy())
    assert err.max() < 1e-6, err.max()
    away_from_pi = torch.from_numpy(angles[:, 0] < 3.0)
    assert torch.allclose(back[away_from_pi], rotvec[away_from_pi], atol=1e-9)


def test_rodrigues_matches_a_hand_worked_rotation_and_has_finite_gradients_at_zero():
    r = axis_angle_to_matrix(torch.tensor([[0.0, 0.0, np.pi / 2]], dtype=torch.float64))[0]
    # 90 degrees about z takes x to y.
    assert torch.allclose(r @ torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64),
                          torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64), atol=1e-12)
    v = torch.zeros(1, 3, dtype=torch.float64, requires_grad=True)
    axis_angle_to_matrix(v).sum().backward()
    assert torch.isfinite(v.grad).all()


# --------------------------------------------------------------------------------------- frame conventions
def test_opencv_nerf_round_trip():
    rotation = random_rotations(50, 3)
    translation = np.random.default_rng(3).normal(0, 1, (50, 3))
    c2w = opencv_to_nerf(rotation, translation)
    r2, t2 = nerf_to_opencv(c2w)
    assert np.abs(r2 - rotation).max() < 1e-12 and np.abs(t2 - translation).max() < 1e-12
    assert np.allclose(c2w[:, 3], [0, 0, 0, 1])


def test_nerf_camera_looks_down_minus_z_with_y_up():
    """A frontal head 0.6 m in front: the camera sits at +z in head space, looks along -z, its +y is head up."""
    rotation = np.diag([1.0, -1.0, -1.0])[None]  # OpenCV camera facing a frontal head
    c2w = opencv_to_nerf(rotation, np.array([[0.0, 0.0, 0.6]]))[0]
    assert np.allclose(c2w[:3, 3], [0.0, 0.0, 0.6])  # camera centre in head space
    assert np.allclose(c2w[:3, 2], [0.0, 0.0, 1.0])  # camera +z points away from the head: it looks down -z
    assert np.allclose(c2w[:3, 1], [0.0, 1.0, 0.0])  # camera up = head up
    assert np.allclose(c2w[:3, 0], [1.0, 0.0, 0.0])  # camera right = head right
    # A point to the head's right and above projects right of and above the image centre.
    r, t = nerf_to_opencv(c2w[None])
    uv = project(np.array([0.05, 0.05, 0.0]) @ r[0].T + t[0], 1000.0, 256.0, 256.0)
    assert uv[0] > 256 and uv[1] < 256


def test_project_pinhole():
    pts = torch.tensor([[0.1, -0.2, 2.0]], dtype=torch.float64)
    uv = project(pts, 500.0, 100.0, 50.0)
    assert torch.allclose(uv, torch.tensor([[125.0, 0.0]], dtype=torch.float64))


# ------------------------------------------------------------------------------------------ transforms files
def test_split_frames_default_is_the_originals():
    train, val = split_frames(331)
    assert train == list(range(300)) and val == list(range(300, 331))  # int(331 * 10 / 11) = 300
    assert split_frames(10, 3) == (list(range(7)), [7, 8, 9])
    assert split_frames(5, [4, 1]) == ([0, 2, 3], [1, 4])
    with pytest.raises(InputError, match="outside the clip"):
        split_frames(5, [7])


def test_export_import_round_trip(tmp_path: Path):
    pose = make_pose()
    train_path, val_path = export_transforms(pose, tmp_path)
    doc = json.loads(train_path.read_text())
    # The original's schema.
    assert set(doc) >= {"focal_len", "cx", "cy", "frames"}
    assert doc["focal_len"] == pytest.approx(1234.5) and doc["cx"] == 256.0 and doc["cy"] == 256.0
    first = doc["frames"][0]
    assert set(first) == {"img_id", "aud_id", "transform_matrix"} and first["img_id"] == first["aud_id"] == 0
    assert len(doc["frames"]) == 20 and len(json.loads(val_path.read_text())["frames"]) == 2
    assert np.allclose(first["transform_matrix"], pose.c2w[0], atol=1e-7)

    back = import_transforms(tmp_path)
    assert back.num_frames == pose.num_frames and back.focal == pytest.approx(pose.focal)
    assert (back.width, back.height, back.cx, back.cy) == (512, 512, 256.0, 256.0)
    assert np.abs(back.c2w - pose.c2w).max() < 1e-7
    assert np.isnan(back.reproj_error).all() and back.keypoints.shape == (0, 3)


def test_import_original_files_without_size_keys_and_with_odd_sizes(tmp_path: Path):
    pose = make_pose(n=5, width=511, height=300)
    export_transforms(pose, tmp_path, val_frames=[1, 3])
    for name in ("transforms_train.json", "transforms_val.json"):
        doc = json.loads((tmp_path / name).read_text())
        assert doc["w"] == 511 and doc["h"] == 300
    assert import_transforms(tmp_path).width == 511  # the extra keys keep odd sizes
    # The original's files have no w/h: the size is 2 * int(cx), 2 * int(cy).
    for name in ("transforms_train.json", "transforms_val.json"):
        doc = json.loads((tmp_path / name).read_text())
        del doc["w"], doc["h"]
        (tmp_path / name).write_text(json.dumps(doc))
    back = import_transforms(tmp_path / "transforms_train.json", tmp_path / "transforms_val.json")
    assert (back.width, back.height) == (510, 300) and back.num_frames == 5


def test_import_refuses_gaps_and_bad_files(tmp_path: Path):
    export_transforms(make_pose(n=6), tmp_path, val_frames=[1, 3])
    with pytest.raises(InputError, match=r"missing img_id \[1, 3\]"):
        import_transforms(tmp_path / "transforms_train.json")  # without the val file frames 1 and 3 are missing
    with pytest.raises(InputError, match="not a readable transforms JSON file"):
        import_transforms(tmp_path / "transforms_train.json", tmp_path / "nope.json")
    with pytest.raises(InputError, match=r"lacks the keys \['focal_len'"):
        (tmp_path / "bad.json").write_text(json.dumps({"frames": []}))
        import_transforms(tmp_path / "bad.json")


def test_cli_export_import(tmp_path: Path, capsys):
    pose = make_pose(n=12)
    pose.save(tmp_path / "head_pose.npz")
    assert main(["export-transforms", str(tmp_path), "--val-frames", "2"]) == 0
    assert len(json.loads((tmp_path / "transforms_val.json").read_text())["frames"]) == 2
    assert main(["import-transforms", str(tmp_path), "--out", str(tmp_path / "again.npz")]) == 0
    back = HeadPose.load(tmp_path / "again.npz")
    assert np.abs(back.c2w - pose.c2w).max() < 1e-7
    assert "12 frames" in capsys.readouterr().out
