"""NaN and infinite values never reach training or an image: damaged subject files are refused before training,
and rendering refuses NaN features, expressions, poses or weights instead of returning NaN frames."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from synctalk_lib.errors import InputError
from synctalk_lib.nerf.inference import render_frames
from synctalk_lib.subject import SubjectDir
from synctalk_lib.types import AudioFeatures
from tests.nerf_fixtures import make_subject, train_tiny_model, write_subject_dir


@pytest.fixture(scope="module")
def subject(tmp_path_factory):
    return make_subject(tmp_path_factory.mktemp("nan"), num_frames=12, size=32)


@pytest.fixture(scope="module")
def model(subject):
    return train_tiny_model(subject, steps=2)


def _poison_npz(path, field: str, row: int = 3) -> None:
    """Write NaN into one array of a saved record, bypassing the type's own checks (a damaged file)."""
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    arrays[field] = arrays[field].astype(np.float32)
    arrays[field].reshape(len(arrays[field]), -1)[row, 0] = np.nan
    np.savez(path, **arrays)


@pytest.mark.parametrize("file, field", [("audio_features.npz", "features"), ("face_track.npz", "expression"),
                                         ("head_pose.npz", "c2w")])
def test_a_nan_subject_file_is_refused_before_training(subject, tmp_path, file, field, capsys):
    from synctalk_lib.cli import main

    folder = write_subject_dir(subject, tmp_path / "subject")
    _poison_npz(folder / file, field)
    with pytest.raises(InputError, match=rf"{file}.*{field} holds NaN or infinite values"):
        SubjectDir(folder).load_subject()
    code = main(["train", str(folder), "--out", str(tmp_path / "model"), "--preset", "quick", "--iterations", "2",
                 "--perceptual-loss", "none"])
    assert code == 1 and file in capsys.readouterr().err
    assert not (tmp_path / "model").exists() and not (tmp_path / "model.training").exists()


def test_features_changed_in_place_are_refused_at_render(model, subject):
    features = AudioFeatures(features=subject.audio.features.copy(), fps=25.0, encoder_id=subject.audio.encoder_id)
    features.features[4, 1] = np.inf  # frozen dataclass, mutable array
    with pytest.raises(InputError, match="audio features hold NaN or infinite values .*row 4"):
        next(render_frames(model, features))


def test_render_refuses_nan_expressions_and_poses(model, subject):
    expression = np.zeros((subject.audio.num_frames, 7), np.float32)
    expression[2, 0] = np.nan
    with pytest.raises(InputError, match="expression coefficients hold NaN"):
        next(render_frames(model, subject.audio, expression=expression))
    poses = subject.pose.c2w.copy()
    poses[1, 0, 3] = np.nan
    with pytest.raises(InputError, match="head poses hold NaN"):
        next(render_frames(model, subject.audio, poses=poses))


def test_a_model_with_nan_weights_never_returns_nan_images(model, subject):
    from synctalk_lib.nerf.model_folder import SyncTalkModel

    nerf = type(model.nerf)(model.nerf.config)
    nerf.load_state_dict(model.nerf.state_dict())
    with torch.no_grad():
        nerf.field.sigma_net.net[0].weight.fill_(float("nan"))
    broken = SyncTalkModel(nerf, model.subject, render_size=(model.render_height, model.render_width),
                           encoder_id=model.encoder_id, feature_dim=model.feature_dim, name="broken")
    with pytest.raises(InputError, match="rendered NaN values.*train the subject again"):
        for _ in render_frames(broken, subject.audio, count=2):
            pass
    with pytest.raises(InputError, match="NaN or infinite"):
        broken.save_pretrained(subject.clip.root.parent / "broken_model")


def test_training_never_checkpoints_nan_weights(subject, tmp_path):
    from synctalk_lib.nerf.dataset import DataSettings, SubjectData
    from synctalk_lib.nerf.presets import get_preset
    from synctalk_lib.nerf.trainer import Trainer

    data = SubjectData(subject.clip, subject.track, subject.pose, subject.audio, settings=DataSettings())
    trainer = Trainer(data, get_preset("quick", nerf={"grid_resolution": 16}), work_dir=tmp_path / "work")
    with torch.no_grad():
        trainer.model.individual_codes[0, 0] = float("nan")
    with pytest.raises(FloatingPointError, match="individual_codes.*nothing was saved"):
        trainer.save_checkpoint()
    assert not (tmp_path / "work" / "checkpoint.pt").exists()
