"""AVE pre-training: mouth crops, metrics, a short real run on the reference clip, resume, and the CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from synctalk_lib.audio.ave import load_ave
from synctalk_lib.audio.ave_train import AVETrainConfig, train_ave
from synctalk_lib.audio.ave_train_data import mouth_crops, parse_range, resolve_ranges
from synctalk_lib.audio.ave_train_metrics import pair_masks, roc_auc
from synctalk_lib.audio.features import encode_audio
from synctalk_lib.errors import InputError
from synctalk_lib.media.clip_store import clip_from_arrays


@pytest.fixture(scope="module")
def reference(may_video, shared_models, tmp_path_factory):
    """The reference clip (frames as they are: 512x512, 25 fps) and its face track, computed once."""
    from synctalk_lib.face.capture import capture_face_track
    from synctalk_lib.media.prepare import prepare_clip

    cache = tmp_path_factory.mktemp("ave_clips")
    clip = prepare_clip(may_video, cache, fps=25.0, crop="none", models_dirs=[shared_models])
    track = capture_face_track(clip, models_dirs=[shared_models])
    return clip, track


# ------------------------------------------------------------------------------------------------ unit parts
def test_roc_auc_values():
    assert roc_auc([3, 4], [1, 2]) == 1.0
    assert roc_auc([1, 2], [3, 4]) == 0.0
    assert roc_auc([1, 1], [1, 1]) == 0.5  # ties count half
    assert roc_auc([1, 3], [2]) == 0.5
    rng = np.random.default_rng(0)
    pos, neg = rng.normal(1, 1, 400), rng.normal(0, 1, 500)
    brute = np.mean([(p > n) + 0.5 * (p == n) for p in pos for n in neg])
    assert abs(roc_auc(pos, neg) - brute) < 1e-12
    assert np.isnan(roc_auc([], [1.0]))


def test_pair_masks():
    ids = np.array([0, 0, 0, 1])
    times = np.array([10, 12, 20, 10])
    synced, shifted = pair_masks(ids, times, 3)
    assert synced.tolist() == np.eye(4, dtype=bool).tolist()
    assert not shifted[0, 1] and not shifted[1, 0]  # 2 frames apart: neither synced nor clearly shifted
    assert shifted[0, 2] and shifted[0, 3] and shifted[3, 0]  # 10 frames apart / another clip
    assert not (synced & shifted).any()


def test_frame_ranges():
    assert parse_range("0-299") == (0, 299) and parse_range("7") == (7, 7) and parse_range("") is None
    for bad in ("a-b", "5-2", "-3"):
        with pytest.raises(InputError):
            parse_range(bad)
    assert resolve_ranges("c", 331, None, None) == ((0, 297), (298, 330))  # last 10 % (33 frames) held out
    assert resolve_ranges("c", 331, (0, 299), (300, 400)) == ((0, 299), (300, 330))
    assert resolve_ranges("c", 331, None, (300, 330)) == ((0, 299), (300, 330))
    with pytest.raises(InputError, match="overlap"):
        resolve_ranges("c", 331, (0, 310), (300, 330))
    with pytest.raises(InputError, match="outside"):
        resolve_ranges("c", 100, (200, 299), None)


def test_mouth_crop_geometry():
    """A synthetic frame with a marked mouth centre: the crop puts it in the middle, upright, at the right scale."""
    frame = np.zeros((200, 300, 3), np.uint8)
    frame[118:123, 148:153] = (255, 0, 0)  # a red dot at (150, 120): the mouth centre
    frame[118:123, 178:183] = (0, 255, 0)  # a green dot 30 px to the right
    landmarks = np.zeros((1, 478, 3), np.float32)
    for idx in (61, 291, 0, 17):
        landmarks[0, idx, :2] = (150, 120)
    landmarks[0, 33, :2] = (100, 80)
    landmarks[0, 263, :2] = (200, 80)  # eye span 100 px, no roll
    crops = mouth_crops([(0, frame[None])], landmarks, size=64, scale=1.0)  # 100 px -> 64 px
    red = np.argwhere(crops[0, :, :, 0] > 100).mean(0)
    green = np.argwhere(crops[0, :, :, 1] > 100).mean(0)
    np.testing.assert_allclose(red, [31.5, 31.5], atol=0.6)
    np.testing.assert_allclose(green, [31.5, 31.5 + 30 * 0.64], atol=0.8)
    # roll the head by 90 degrees: the eye line points down, the crop turns it back upright
    rolled = np.zeros((300, 300, 3), np.uint8)
    rolled[148:153, 118:123] = (255, 0, 0)
    rolled[178:183, 118:123] = (0, 255, 0)  # "to the right of the mouth" in face coordinates = below in the image
    lm = np.zeros((1, 478, 3), np.float32)
    for idx in (61, 291, 0, 17):
        lm[0, idx, :2] = (120, 150)
    lm[0, 33, :2], lm[0, 263, :2] = (160, 100), (160, 200)
    crop = mouth_crops([(0, rolled[None])], lm, size=64, scale=1.0)[0]
    np.testing.assert_allclose(np.argwhere(crop[:, :, 1] > 100).mean(0), [31.5, 31.5 + 19.2], atol=0.8)


def test_clip_at_another_fps_or_without_audio_is_refused(tmp_path):
    frames = np.zeros((40, 64, 64, 3), np.uint8)
    clip30 = clip_from_arrays(tmp_path / "c30", frames, 30.0, audio=np.zeros((1, 16000), np.float32),
                              sample_rate=16000)
    with pytest.raises(InputError, match="25 fps"):
        train_ave([clip30], tmp_path / "a.safetensors", steps=1, face_tracks=[None])
    silent = clip_from_arrays(tmp_path / "c25", frames, 25.0)
    with pytest.raises(InputError, match="no audio"):
        train_ave([silent], tmp_path / "a.safetensors", steps=1, face_tracks=[None])
    with pytest.raises(InputError, match="safetensors or .pth"):
        train_ave([silent], tmp_path / "a.bin", steps=1)


# ------------------------------------------------------------------------------------- on the reference clip
def test_mouth_crops_of_the_reference_clip_show_the_mouth(reference):
    clip, track = reference
    crops = mouth_crops(clip.iter_batches(64, 0, 40), track.landmarks[:40])
    assert crops.shape == (40, 64, 64, 3)
    # lips are redder than the skin around them: the centre of the crop has a higher red/green ratio than its border
    ratio = crops[..., 0].astype(float) / (crops[..., 1].astype(float) + 1)
    centre = ratio[:, 26:38, 16:48].mean()
    border = np.concatenate([ratio[:, :6].ravel(), ratio[:, -6:].ravel()]).mean()
    assert centre > border + 0.1, (centre, border)
    # and the mouth opens and closes while she talks: the crops change over time
    assert np.abs(np.diff(crops.astype(float), axis=0)).mean() > 2.0


def test_short_training_run_lowers_both_losses_and_loads_as_an_ave(reference, tmp_path):
    torch.set_num_threads(1)
    clip, track = reference
    out = tmp_path / "ave.safetensors"
    config = AVETrainConfig(batch_size=16, eval_every=0, checkpoint_every=0, warmup_steps=5, lr=3e-4)
    steps = []
    report = train_ave([clip], out, steps=40, train_frames=(0, 299), val_frames=(300, 330), face_tracks=[track],
                       config=config, on_step=lambda d, t: steps.append((d, t)), resume=False)
    assert steps[-1] == (40, 40) and all(done <= total == 40 for done, total in steps)
    losses = report["losses"]
    assert losses["sync"]["end"] < losses["sync"]["start"] - 0.02, losses
    assert losses["recon"]["end"] < losses["recon"]["start"] - 0.01, losses
    assert report["clips"][0]["train_used"] == 300 and report["clips"][0]["val_used"] == 31
    assert 0.0 <= report["val_auc"] <= 1.0 and report["val"]["frames"] == 31
    # the file is the official layout: it loads strictly and drives encode_audio like the official weights
    model = load_ave(out)
    assert model.weights_id == report["encoder_id"]
    from safetensors import safe_open

    with safe_open(str(out), "pt") as fh:
        assert set(fh.keys()) == set(model.official_state_dict())
        assert fh.metadata()["format"] == "synctalk-ave"
    feats = encode_audio(clip.audio_waveform(), clip.sample_rate, encoder=f"ave-file:{out}")
    assert feats.features.shape == (331, 512) and feats.encoder_id == report["encoder_id"]
    assert (feats.features >= 0).all() and feats.features.std(axis=0).mean() > 0


def test_training_resumes_from_its_checkpoint(reference, tmp_path):
    torch.set_num_threads(1)
    clip, track = reference
    out = tmp_path / "ave.safetensors"
    config = AVETrainConfig(batch_size=8, eval_every=0, checkpoint_every=2)
    first = train_ave([clip], out, steps=3, train_frames=(0, 99), val_frames=(300, 330), face_tracks=[track],
                      config=config)
    assert first["resumed_from_step"] == 0 and (tmp_path / "ave.safetensors.train.pt").is_file()
    second = train_ave([clip], out, steps=5, train_frames=(0, 99), val_frames=(300, 330), face_tracks=[track],
                       config=config)
    assert second["resumed_from_step"] == 3 and second["steps"] == 5
    # a straight 5-step run gives the same weights as 3 + 2 resumed steps (seeded, deterministic on CPU)
    straight = tmp_path / "straight.safetensors"
    train_ave([clip], straight, steps=5, train_frames=(0, 99), val_frames=(300, 330), face_tracks=[track],
              config=config)
    a, b = load_ave(out).official_state_dict(), load_ave(straight).official_state_dict()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5)
    # other settings do not resume from it
    third = train_ave([clip], out, steps=4, train_frames=(0, 120), val_frames=(300, 330), face_tracks=[track],
                      config=config)
    assert third["resumed_from_step"] == 0


def test_ave_train_command(reference, tmp_path, shared_models):
    from synctalk_lib.cli import main

    clip, _ = reference
    out = tmp_path / "cli_ave.safetensors"
    code = main(["ave-train", str(clip.root), "--out", str(out), "--steps", "2", "--batch-size", "8",
                 "--train-frames", "0-99", "--val-frames", "300-330", "--models-dir", str(shared_models),
                 "--device", "cpu"])
    assert code == 0 and out.is_file()
    report = json.loads((tmp_path / "cli_ave.safetensors.json").read_text())
    assert report["steps"] == 2 and report["encoder_id"].startswith("ave-file:")
    load_ave(out)
