"""Renderer nodes as ComfyUI runs them (under torch.inference_mode), on the synthetic subject."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from synctalk_lib.errors import InputError
from synctalk_lib.types import AudioFeatures
from tests.nerf_fixtures import make_subject


@pytest.fixture(scope="module")
def subject(tmp_path_factory):
    return make_subject(tmp_path_factory.mktemp("nodes"), num_frames=14, size=40)


def test_train_save_load_render(subject, models_dir, tmp_path, monkeypatch):
    from nodes.nerf import LoadSyncTalkModel, SaveSyncTalkModel, SyncTalkRenderTriPlane, TrainSyncTalk

    monkeypatch.setenv("SYNCTALK_CACHE_DIR", str(tmp_path / "cache"))
    with torch.inference_mode():  # how ComfyUI calls every node
        model, report = TrainSyncTalk().train(subject.clip, subject.track, subject.pose, subject.audio,
                                              preset="auto", iterations=6, resolution=0, device="cpu",
                                              name="fixture", resume=True, perceptual_loss="none")
    assert (models_dir / "fixture" / "model.safetensors").is_file(), "TrainSyncTalk saves the model folder"
    assert "held-out PSNR" in report or "heldout_psnr" in report
    assert "warning: the clip has 14 frames (0.6 s)" in report  # too short to train well, and the report says so
    assert (tmp_path / "cache" / "training" / "fixture" / "checkpoint.pt").is_file()
    assert model.summary["steps"] == 6 and model.summary["preset"] == "quick", "auto is quick on a CPU"
    choices, options = TrainSyncTalk.INPUT_TYPES()["required"]["preset"]
    assert options["default"] == "auto" and {"quick", "standard", "paper"} <= set(choices), "old values stay valid"

    # Load lists it and returns what PortraitSyncBlend needs
    assert "fixture" in LoadSyncTalkModel.INPUT_TYPES()["required"]["name"][0]
    with torch.inference_mode():
        loaded, clip, pose, track = LoadSyncTalkModel().load("fixture", device="cpu")
    assert clip.num_frames == pose.num_frames == track.num_frames == 14
    assert (clip.width, clip.height) == (40, 40)
    assert np.abs(clip.frame(3).astype(int) - subject.clip.frame(3).astype(int)).mean() < 3

    with torch.inference_mode():
        out = SaveSyncTalkModel().save(loaded, name="copy")
    assert (models_dir / "copy" / "config.json").is_file() and out["result"][0].endswith("copy")

    features = AudioFeatures(features=subject.audio.features[:9], fps=25.0, encoder_id=subject.audio.encoder_id)
    with torch.inference_mode():
        images, masks = SyncTalkRenderTriPlane().render(loaded, features, expression="neutral", device="cpu",
                                                        batch_size=4)
    assert images.shape == (9, 40, 40, 3) and masks.shape == (9, 40, 40)
    assert images.dtype == torch.float32 and 0.0 <= float(images.min()) and float(images.max()) <= 1.0
    # a pose override with the reference poses themselves changes nothing (frames 0..8 < 14 reference frames)
    with torch.inference_mode():
        same, same_masks = SyncTalkRenderTriPlane().render(loaded, features, expression="neutral", head_pose=pose,
                                                           device="cpu", batch_size=4)
    assert torch.equal(same, images) and torch.equal(same_masks, masks)


def test_render_memory_budget_and_bad_names(subject, models_dir):
    from nodes.nerf import SyncTalkRenderTriPlane, TrainSyncTalk

    class FakeModel:  # only what the budget check reads
        feature_dim, encoder_id = 8, "synthetic:test"

        class subject:
            height = width = 512
            fps = 25.0

        name = "fake"

    long = AudioFeatures(features=np.zeros((20000, 8), np.float32), fps=25.0, encoder_id="synthetic:test")
    with pytest.raises(InputError, match="max_frames"):
        SyncTalkRenderTriPlane().render(FakeModel(), long, memory_mb=1024)
    with pytest.raises(InputError, match="model name"):
        TrainSyncTalk().train(subject.clip, subject.track, subject.pose, subject.audio, name="../escape")
