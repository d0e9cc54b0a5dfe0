"""The stabilizer on the first 2 s of the reference clip: the library call, the node, the CLI and RAFT tracks.

The full-clip numbers (331 frames: focal, jitter, reprojection, runtime) are printed by ``bench/pose.py``.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from synctalk_lib.cli import main
from synctalk_lib.face.capture import capture_face_track
from synctalk_lib.media.clip_store import clip_from_arrays
from synctalk_lib.pose.camera import nerf_to_opencv, project
from synctalk_lib.pose.face_model import RIGID_LANDMARKS
from synctalk_lib.pose.stabilize import format_pose_report, stabilize_head_pose
from synctalk_lib.subject import SubjectDir
from synctalk_lib.types import HeadPose

FRAMES = 50


def decode_frames(video: Path, count: int) -> np.ndarray:
    import av

    frames = []
    with av.open(str(video)) as container:
        for frame in container.decode(video=0):
            frames.append(frame.to_ndarray(format="rgb24"))
            if len(frames) == count:
                break
    return np.stack(frames)


@pytest.fixture(scope="module")
def clip(may_video: Path, tmp_path_factory):
    return clip_from_arrays(tmp_path_factory.mktemp("pose") / "clip", decode_frames(may_video, FRAMES), 25.0)


@pytest.fixture(scope="module")
def track(clip, shared_models: Path):
    return capture_face_track(clip, models_dirs=[shared_models])


@pytest.fixture(scope="module")
def pose(clip, track, shared_models: Path) -> HeadPose:
    return stabilize_head_pose(clip, track, models_dirs=[shared_models], device="cpu")


def test_poses_fit_the_face(pose: HeadPose, track, clip):
    report = pose.report()
    assert pose.num_frames == FRAMES and (pose.width, pose.height, pose.cx, pose.cy) == (512, 512, 256.0, 256.0)
    # A plausible camera: not at the edge of the searched range, head between 0.3 and 3 m away.
    assert not report["focal_search"]["at_range_edge"] and 400 < pose.focal < 2600
    rotation, translation = nerf_to_opencv(pose.c2w)
    assert np.allclose(rotation @ rotation.transpose(0, 2, 1), np.eye(3), atol=1e-5)
    assert 0.3 < translation[:, 2].min() and translation[:, 2].max() < 3.0
    # The adjusted rigid landmarks land on the observed ones (MediaPipe's own noise is ~0.5 px).
    observed = track.landmarks[:, list(RIGID_LANDMARKS), :2]
    projected = project(np.einsum("nij,lj->nli", rotation, pose.landmarks3d) + translation[:, None], pose.focal,
                        pose.cx, pose.cy)
    dist = np.linalg.norm(projected - observed, axis=-1)
    assert np.median(dist) < 1.0 and dist.mean(axis=1).max() < 2.5
    assert np.allclose(pose.reproj_error, dist.mean(axis=1), atol=1e-3)
    # Keypoints lie on the head (within 15 cm of its centre) and many tracks survived.
    assert report["keypoints"]["kept"] >= 40 and np.linalg.norm(pose.keypoints, axis=1).max() < 0.15
    # Stabilising does not cost fit (the guard against lag).
    assert report["adjusted"]["reproj_px"] <= 1.10 * report["raw"]["reproj_px"]
    assert set(report) >= {"focal", "raw", "adjusted", "seconds"}
    for key in ("raw", "adjusted"):
        assert set(report[key]) == {"jitter_rot_deg", "jitter_trans", "reproj_px"}


def test_smoothness_prior_lowers_jitter_at_equal_fit(clip, track, pose: HeadPose, shared_models: Path):
    smooth = stabilize_head_pose(clip, track, models_dirs=[shared_models], smoothness=10.0, device="cpu").report()
    raw, plain = pose.report()["raw"], pose.report()["adjusted"]
    assert smooth["adjusted"]["jitter_rot_deg"] < 0.8 * min(raw["jitter_rot_deg"], plain["jitter_rot_deg"])
    assert smooth["adjusted"]["jitter_trans"] < 0.75 * min(raw["jitter_trans"], plain["jitter_trans"])
    assert smooth["adjusted"]["reproj_px"] <= 1.10 * raw["reproj_px"]


def test_pose_saves_and_loads(pose: HeadPose, tmp_path: Path):
    pose.save(tmp_path / "p.npz")
    back = HeadPose.load(tmp_path / "p.npz")
    assert np.array_equal(back.c2w, pose.c2w) and np.array_equal(back.landmarks3d, pose.landmarks3d)
    assert back.report() == pose.report() and "rotation jitter" in format_pose_report(back)


def test_node(clip, track, monkeypatch: pytest.MonkeyPatch, shared_models: Path):
    from pack_loader import load_pack

    monkeypatch.setenv("SYNCTALK_MODELS_DIR", str(shared_models))
    node = load_pack().NODE_CLASS_MAPPINGS["SyncTalkStabilizeHeadPose"]()
    with torch.inference_mode():  # as ComfyUI runs nodes
        pose, preview, report = node.run(clip, track, "opencv", 0.0, "cpu")
    assert isinstance(pose, HeadPose) and pose.num_frames == FRAMES
    assert preview.dtype == torch.float32 and tuple(preview.shape) == (4, 512, 512, 3)
    assert 0.0 <= float(preview.min()) and float(preview.max()) <= 1.0
    # The template dots (cyan) are drawn on the face, near the nose.
    nose = track.landmarks[0, 1, :2].round().astype(int)
    patch = preview[0, nose[1] - 30:nose[1] + 30, nose[0] - 30:nose[0] + 30].numpy()
    cyan = (patch[..., 0] < 0.1) & (patch[..., 1] > 0.8) & (patch[..., 2] > 0.9)
    assert cyan.sum() > 20
    assert "focal" in report and "landmark reprojection" in report


def test_cli_pose_then_export(clip, track, shared_models: Path, tmp_path: Path, capsys):
    subject = SubjectDir(tmp_path / "subject")
    subject.root.mkdir()
    subject.save_clip_ref(clip, {})
    track.save(subject.path(SubjectDir.FACE_TRACK))
    subject.write_report({"frames": FRAMES, "steps": {"face_track": {"settings": {"smoothing": "one_euro"}}}})
    preview = tmp_path / "preview.png"
    assert main(["pose", str(subject.root), "--models-dir", str(shared_models), "--device", "cpu",
                 "--preview", str(preview)]) == 0
    assert "rotation jitter" in capsys.readouterr().out
    report = subject.read_report()
    assert report["frames"] == FRAMES  # the rest of the report is kept
    # preprocess's bookkeeping follows, so its pose step is reused only with these settings.
    assert report["steps"]["pose"]["settings"]["smoothness"] == 0.0
    assert report["steps"]["pose"]["settings"]["face_track"] == {"smoothing": "one_euro"}
    assert set(report["pose"]) >= {"focal", "raw", "adjusted", "seconds"}
    assert subject.load_head_pose().num_frames == FRAMES
    assert preview.stat().st_size > 10_000 and preview.read_bytes()[:4] == b"\x89PNG"
    assert main(["export-transforms", str(subject.root)]) == 0
    train = json.loads(subject.path("transforms_train.json").read_text())
    assert len(train["frames"]) == int(FRAMES * 10 / 11)
    assert train["focal_len"] == pytest.approx(report["pose"]["focal"], rel=1e-3)


def test_raft_tracks_agree_with_lucas_kanade(clip, track, tmp_path: Path, shared_models: Path):
    from synctalk_lib.pose.keypoints import _OpenCVFlow, _track_points, find_keypoint_tracks

    (tmp_path / "raft-small.pth").symlink_to(shared_models / "raft-small.pth")
    torch.set_num_threads(1)
    n, ref = 6, 2
    raft = find_keypoint_tracks(clip.frame, n, track.landmarks, ref, flow="raft-small", models_dirs=[tmp_path],
                                max_points=60, score_frames=n)
    assert raft.flow == "raft-small" and len(raft.points) >= 20
    assert np.allclose(raft.tracks[ref], raft.points, atol=0.05)  # the reference frame maps to itself
    # The same points tracked by Lucas-Kanade: where both trust their track they agree to a fraction of a pixel.
    lk_tracks, lk_valid, _ = _track_points(_OpenCVFlow(scale=1.0), clip.frame, n, ref, raft.points, fb_max=1.0)
    both = lk_valid & raft.valid
    diff = np.linalg.norm(lk_tracks - raft.tracks, axis=-1)[both]
    assert both.mean() > 0.5 and np.median(diff) < 0.5, (both.mean(), np.median(diff))
