"""Model folders: save/load round trip, key warnings, damaged folders, Hub ids offline; streaming render."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from synctalk_lib.errors import InputError, SyncTalkError
from synctalk_lib.metrics.psnr import psnr_from_mse
from synctalk_lib.nerf.inference import render_frames
from synctalk_lib.nerf.model_folder import SyncTalkModel, list_models
from synctalk_lib.portrait.background import frame_background
from synctalk_lib.timeline import reference_indices
from synctalk_lib.types import AudioFeatures
from tests.nerf_fixtures import make_subject, train_tiny_model


@pytest.fixture(scope="module")
def subject(tmp_path_factory):
    return make_subject(tmp_path_factory.mktemp("folder"), num_frames=16, size=48)


@pytest.fixture(scope="module")
def model(subject):
    return train_tiny_model(subject, steps=10)


@pytest.fixture(scope="module")
def saved(model, tmp_path_factory):
    return model.save_pretrained(tmp_path_factory.mktemp("models") / "tiny")


def _render(model, features, **kwargs):
    chunks = list(render_frames(model, features, **kwargs))
    return (np.concatenate([c.rgb for c in chunks]), np.concatenate([c.alpha for c in chunks]),
            [c.first_index for c in chunks])


def test_folder_layout(saved):
    names = {p.relative_to(saved).as_posix() for p in saved.rglob("*") if p.is_file()}
    assert names == {"model.safetensors", "config.json", "subject/subject.json", "subject/face_track.npz",
                     "subject/head_pose.npz", "subject/background.png", "subject/reference.mp4"}
    config = json.loads((saved / "config.json").read_text())
    assert config["format"] == "synctalk-model" and config["schema_version"] == 1
    assert config["audio"]["encoder_id"] == "synthetic:test" and config["audio"]["feature_dim"] == 8
    assert config["nerf"]["grid_resolution"] == 32 and "package_version" in config
    assert config["training"]["summary"]["steps"] == 10
    from safetensors.torch import load_file

    weights = load_file(str(saved / "model.safetensors"))
    assert "occupancy.density" in weights and "occupancy.occupied" in weights


def test_round_trip_renders_identical_images(model, saved, subject, tmp_path):
    loaded = SyncTalkModel.from_pretrained(saved, cache_dir=tmp_path / "cache")
    for key, value in model.nerf.state_dict().items():
        assert torch.equal(value.cpu(), loaded.nerf.state_dict()[key]), key
    assert np.array_equal(loaded.subject.background, model.subject.background)
    assert np.array_equal(loaded.subject.landmarks, model.subject.landmarks)
    assert loaded.render_intrinsics == pytest.approx(model.render_intrinsics)
    # the stored reference video is near-lossless ...
    assert loaded.subject.frames.root.parent == tmp_path / "cache", "decoded once, into the clip cache"
    video = np.stack([loaded.subject.frames.frame(i) for i in range(16)]).astype(np.float32)
    clip = np.stack([subject.clip.frame(i) for i in range(16)]).astype(np.float32)
    assert psnr_from_mse(np.mean(((video - clip) / 255.0) ** 2)) > 35.0
    # ... and with the same reference frames every rendered pixel is identical
    loaded = SyncTalkModel.from_pretrained(saved, reference=subject.clip)
    a_rgb, a_alpha, _ = _render(model, subject.audio, count=6)
    b_rgb, b_alpha, _ = _render(loaded, subject.audio, count=6)
    assert np.array_equal(a_alpha, b_alpha) and np.array_equal(a_rgb, b_rgb)
    assert a_alpha.max() > 0.1, "the tiny model renders something"


def test_loading_warns_about_unknown_and_defaulted_keys(saved, tmp_path):
    copy = tmp_path / "edited"
    shutil.copytree(saved, copy)
    config = json.loads((copy / "config.json").read_text())
    config["future_setting"] = 1
    del config["nerf"]["min_near"]  # takes the default (the saved value was the default too)
    (copy / "config.json").write_text(json.dumps(config))
    with pytest.warns(UserWarning) as record:
        SyncTalkModel.from_pretrained(copy)
    text = " ".join(str(w.message) for w in record)
    assert "future_setting" in text and "min_near" in text


def test_damaged_folder_and_unknown_names(saved, tmp_path):
    copy = tmp_path / "damaged"
    shutil.copytree(saved, copy)
    (copy / "subject" / "reference.mp4").unlink()
    with pytest.raises(InputError, match="reference.mp4 is missing"):
        SyncTalkModel.from_pretrained(copy)
    with pytest.raises(InputError, match="no SyncTalk model named 'nobody'"):
        SyncTalkModel.from_pretrained("nobody", models_dirs=[tmp_path])


def test_names_in_models_folders_and_hub_ids_offline(saved, monkeypatch):
    root = saved.parent
    assert list_models([root]) == ["tiny"]
    assert SyncTalkModel.from_pretrained("tiny", models_dirs=[root]).name == "tiny"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(SyncTalkError, match="someone/synctalk-may"):
        SyncTalkModel.from_pretrained(repo_id="someone/synctalk-may", models_dirs=[root])
    with pytest.raises(InputError, match="repo_id"):  # a Hub id is never taken from the name
        SyncTalkModel.from_pretrained("someone/synctalk-may", models_dirs=[root])


def test_render_streams_chunks_and_ping_pongs(model, subject):
    """Output frame k is composited over reference frame reference_indices(k) (forwards, then backwards)."""
    n = subject.clip.num_frames
    long = AudioFeatures(features=np.tile(subject.audio.features, (3, 1))[: 2 * n + 5], fps=25.0,
                         encoder_id=subject.audio.encoder_id)
    empty = SyncTalkModel(model.nerf, model.subject, render_size=(model.render_height, model.render_width),
                          encoder_id=model.encoder_id, feature_dim=model.feature_dim)
    empty.nerf = type(model.nerf)(model.nerf.config)
    empty.nerf.load_state_dict(model.nerf.state_dict())
    empty.nerf.occupancy.occupied.zero_()  # nothing rendered: every pixel is the reference frame's background
    seen = []
    rgb, alpha, firsts = _render(empty, long, batch_size=7, on_step=lambda d, t: seen.append((d, t)))
    assert firsts == list(range(0, 2 * n + 5, 7)) and len(rgb) == 2 * n + 5
    assert seen[-1] == (2 * n + 5, 2 * n + 5)
    assert np.all(alpha == 0)
    regions = model.subject.regions()
    refs = reference_indices(2 * n + 5, n)
    assert refs[n] == n - 1 and refs[2 * n] == 0
    for k in (0, 5, n - 1, n, n + 3, 2 * n, 2 * n + 4):
        j = int(refs[k])
        bg = frame_background(subject.clip.frame(j), regions.head_mask(j), model.subject.background)
        assert np.abs(rgb[k] * 255.0 - bg).max() < 0.51, k


def test_render_checks_the_audio_encoder(model, subject):
    other = AudioFeatures(features=np.zeros((4, 8), np.float32), fps=25.0, encoder_id="mel-v1")
    with pytest.raises(InputError, match="synthetic:test"):
        next(render_frames(model, other))
    wrong_dim = AudioFeatures(features=np.zeros((4, 5), np.float32), fps=25.0, encoder_id="synthetic:test")
    with pytest.raises(InputError, match="D = 5"):
        next(render_frames(model, wrong_dim))


def test_expression_choices(model, subject):
    neutral = model.subject.neutral_expression()
    assert neutral.shape == (7,) and neutral[0] == 0.0  # the synthetic subject blinks rarely
    a, _, _ = _render(model, subject.audio, count=2, expression="neutral")
    b, _, _ = _render(model, subject.audio, count=2, expression=np.ones(7, np.float32))
    assert a.shape == b.shape == (2, 48, 48, 3)
    with pytest.raises(InputError, match="expression"):
        _render(model, subject.audio, count=2, expression="happy")


def test_mouth_region_renders_the_mouth_over_the_reference_frame(model, subject):
    """region="mouth": the head render's own pixels inside the mouth region (the same rays), the reference frame
    itself with opacity 1 outside it, for a third of the rays or fewer."""
    import cv2

    from synctalk_lib.nerf.inference import model_ray_subject

    head_rgb, head_alpha, _ = _render(model, subject.audio, count=4)
    rgb, alpha, _ = _render(model, subject.audio, count=4, region="mouth")
    rays = model_ray_subject(model)
    size = (model.subject.height, model.subject.width)
    assert size == (model.render_height, model.render_width), "one render pixel per output pixel"
    for k, j in enumerate(reference_indices(4, model.subject.num_frames)):
        inside = rays.mouth_mask(int(j), size)
        assert 0 < inside.sum() <= 0.5 * rays.head_mask(int(j), size).sum()
        original = subject.clip.frame(int(j)).astype(np.float32) / 255.0
        assert np.array_equal(rgb[k][~inside], original[~inside]) and np.all(alpha[k][~inside] == 1.0)
        core = cv2.distanceTransform(inside.astype(np.uint8), cv2.DIST_L2, 5) >= 2.0  # past the ramp
        assert core.sum() > 20
        assert np.abs(rgb[k][core] - head_rgb[k][core]).max() < 1e-4
        assert np.abs(alpha[k][core] - head_alpha[k][core]).max() < 1e-4


def test_mouth_region_refuses_what_it_cannot_show(model, subject):
    with pytest.raises(InputError, match="region must be one of head, mouth"):
        _render(model, subject.audio, count=1, region="face")
    with pytest.raises(InputError, match="expression"):
        _render(model, subject.audio, count=1, region="mouth", expression="neutral")
    with pytest.raises(InputError, match="head poses"):
        _render(model, subject.audio, count=1, region="mouth", poses=model.subject.c2w[:2])


def test_train_render_evaluate_commands(tmp_path):
    """The CLI on a preprocess-style subject folder: train -> model folder + report, render -> MP4 with audio,
    evaluate -> the JSON keys the README promises."""
    import av

    from synctalk_lib.cli import main
    from synctalk_lib.subject import write_wav
    from tests.nerf_fixtures import speech_like_audio, write_subject_dir

    subject = make_subject(tmp_path / "fixture", num_frames=14, size=40, audio="mel")
    subject_dir = write_subject_dir(subject, tmp_path / "subject")
    out = tmp_path / "model"
    code = main(["train", str(subject_dir), "--out", str(out), "--iterations", "6",  # preset auto: quick on a CPU
                 "--perceptual-loss", "none", "--val-frames", "11:14", "--threads", "1",
                 "--set", "rays_per_step=256", "--set", "patch_size=16", "--set", "patches_per_step=1",
                 "--set", "nerf.grid_resolution=32"])
    assert code == 0
    report = json.loads((out / "train_report.json").read_text())
    assert report["steps"] == 6 and report["heldout_psnr"] > 5 and "coarse" in report["final_losses"]
    assert report["preset"] == "quick" and report["summary"]["preset"] == "quick"
    assert (tmp_path / "model.training" / "checkpoint.pt").is_file()

    wav = tmp_path / "speech.wav"
    write_wav(wav, speech_like_audio(np.linspace(0, 1, 20, dtype=np.float32)), 16000)  # 0.8 s
    video = tmp_path / "out.mp4"
    assert main(["render", str(out), "--audio", str(wav), "--out", str(video), "--device", "cpu"]) == 0
    with av.open(str(video)) as container:
        frames = sum(1 for _ in container.decode(video=0))
        assert container.streams.audio, "the speech is muxed in"
        assert (container.streams.video[0].width, container.streams.video[0].height) == (40, 40)
    assert frames == 20

    result_path = tmp_path / "eval.json"
    assert main(["evaluate", str(out), "--subject", str(subject_dir), "--json", str(result_path), "--no-lmd",
                 "--no-lpips", "--device", "cpu"]) == 0
    own = json.loads(result_path.read_text())["heldout"]["own"]
    assert {"psnr", "ssim", "lpips", "lmd", "laplacian_ratio", "highpass_correlation"} <= set(own["head"])
    assert own["frames"] == [11, 12, 13] and own["head"]["lpips"] is None and own["head"]["lmd"] is None
    assert 5 < own["head"]["psnr"] < 60 and 0 < own["head"]["ssim"] <= 1
