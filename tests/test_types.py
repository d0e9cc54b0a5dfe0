"""The hand-off types check themselves when made: shapes, sizes shared between fields, finiteness; damaged files
are refused with the file's name."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from synctalk_lib.errors import InputError
from synctalk_lib.types import AudioFeatures, FaceTrack, HeadPose


def _track(n: int = 5, **changes) -> FaceTrack:
    values = dict(landmarks=np.zeros((n, 478, 3), np.float32), blendshapes=np.zeros((n, 52), np.float32),
                  blendshape_names=tuple(f"b{i}" for i in range(52)), face_found=np.ones(n, bool),
                  transforms=np.tile(np.eye(4, dtype=np.float32), (n, 1, 1)), expression=np.zeros((n, 7), np.float32),
                  expression_names=tuple("abcdefg"), width=64, height=64, fps=25.0)
    values.update(changes)
    return FaceTrack(**values)


def _pose(n: int = 5, **changes) -> HeadPose:
    values = dict(focal=500.0, cx=32.0, cy=32.0, width=64, height=64, c2w=np.tile(np.eye(4, dtype=np.float32), (n, 1, 1)),
                  keypoints=np.zeros((3, 3), np.float32), reproj_error=np.zeros(n, np.float32))
    values.update(changes)
    return HeadPose(**values)


def test_valid_records_pass_and_round_trip(tmp_path):
    track, pose = _track(), _pose()
    assert FaceTrack.load(track.save(tmp_path / "t.npz")).num_frames == 5
    assert HeadPose.load(pose.save(tmp_path / "p.npz")).num_frames == 5
    features = AudioFeatures(features=np.ones((5, 8), np.float32), fps=25.0, encoder_id="mel-v1")
    assert AudioFeatures.load(features.save(tmp_path / "a.npz")).dim == 8


@pytest.mark.parametrize("changes, message", [
    ({"landmarks": np.zeros((5, 468, 3), np.float32)}, r"landmarks must be \[N, 478, 3\], got shape \[5, 468, 3\]"),
    ({"blendshapes": np.zeros((4, 52), np.float32)}, r"blendshapes must be \[N, B\].*N = 5 elsewhere"),
    ({"expression": np.zeros((5, 6), np.float32)}, "7 expression names for 6 columns"),
    ({"fps": 0.0}, "FaceTrack.fps must be a positive number"),
])
def test_face_track_shapes(changes, message):
    with pytest.raises(InputError, match=message):
        _track(**changes)


def test_non_finite_values_are_refused_at_creation_and_at_load(tmp_path):
    bad = np.zeros((5, 4, 4), np.float32)
    bad[3, 0, 1] = np.nan
    with pytest.raises(InputError, match=r"HeadPose.c2w holds NaN.*index \[3, 0, 1\]"):
        _pose(c2w=bad)
    with pytest.raises(InputError, match="focal must be a positive number"):
        _pose(focal=float("nan"))
    features = np.ones((5, 8), np.float32)
    features[2, 2] = np.inf
    with pytest.raises(InputError, match="AudioFeatures.features holds NaN or infinite"):
        AudioFeatures(features=features, fps=25.0, encoder_id="x")
    # a file written by something else (no validation on the way in) is refused on the way out, by name
    path = tmp_path / "bad.npz"
    meta = {"kind": "audio_features", "schema_version": 1, "fps": 25.0, "encoder_id": "x", "notes": []}
    np.savez(path, __meta__=np.array(json.dumps(meta)), features=features)
    with pytest.raises(InputError, match=r"bad.npz: AudioFeatures.features holds NaN"):
        AudioFeatures.load(path)


def test_damaged_files_name_the_file(tmp_path):
    path = _track().save(tmp_path / "track.npz")
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(InputError, match=r"track.npz is not a readable face_track file"):
        FaceTrack.load(path)


def test_replace_is_validated_too():
    pose = _pose()
    with pytest.raises(InputError, match="reproj_error"):
        dataclasses.replace(pose, c2w=pose.c2w[:4])
