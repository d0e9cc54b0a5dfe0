"""encode_audio: rows per video frame, encoder choices, fallbacks and input errors, on the real speech."""
from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pytest
import torch

from synctalk_lib import hub
from synctalk_lib.audio.ave import AudioVisualEncoder
from synctalk_lib.audio.features import MEL_ENCODER_ID, encode_audio, parse_encoder
from synctalk_lib.audio.mel import mel_from_wave
from synctalk_lib.audio.resample import resample
from synctalk_lib.audio.windows import window_starts
from synctalk_lib.errors import InputError, MissingWeightsError
from synctalk_lib.media.audio import load_audio
from synctalk_lib.types import AudioFeatures


@pytest.fixture(scope="module")
def speech(may_video):
    """The 13.24 s track of the reference clip (cut to the video's 331 frames)."""
    return load_audio(may_video, duration=331 / 25)


@pytest.fixture()
def ave_file(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "my_ave.safetensors"
    from safetensors.torch import save_file

    save_file(AudioVisualEncoder().official_state_dict(), str(path))
    return path


def test_mel_features_are_the_flattened_frame_windows(speech):
    wave, rate = speech
    feats = encode_audio(wave, rate, encoder="mel")
    assert feats.features.shape == (331, 1280) and feats.features.dtype == np.float32
    assert feats.encoder_id == MEL_ENCODER_ID and feats.fps == 25.0 and feats.notes == ()
    mel = mel_from_wave(wave, rate).numpy()
    starts = window_starts(331, mel.shape[0], 25.0)
    for i in (0, 1, 2, 100, 330):
        expected = mel[starts[i]:starts[i] + 16].T.reshape(-1)  # [80 bins x 16 frames], bin-major
        np.testing.assert_array_equal(feats.features[i], expected)
    assert np.abs(feats.features).max() <= 4.0
    # talking: the rows change from frame to frame
    assert np.abs(np.diff(feats.features, axis=0)).mean() > 0.1


def test_ave_file_features_on_real_speech(speech, ave_file):
    wave, rate = speech
    steps = []
    feats = encode_audio(wave, rate, encoder=f"ave-file:{ave_file}", on_step=lambda d, t: steps.append((d, t)))
    assert feats.features.shape == (331, 512)
    assert (feats.features >= 0).all()
    assert feats.encoder_id == f"ave-file:{hub.sha256_of(ave_file)[:8]}"
    assert steps and steps[-1][0] == steps[-1][1]
    again = encode_audio(wave, rate, encoder=f"ave-file:{ave_file}")
    np.testing.assert_array_equal(feats.features, again.features)


def test_auto_uses_the_official_weights_when_present(speech, tmp_path, monkeypatch):
    wave, rate = speech
    folder = tmp_path / "models"
    folder.mkdir()
    torch.manual_seed(1)
    torch.save(AudioVisualEncoder().official_state_dict(), folder / "audio_visual_encoder.pth")
    path = folder / "audio_visual_encoder.pth"
    monkeypatch.setitem(hub.ASSETS, "ave", dataclasses.replace(hub.get_asset("ave"), sha256=hub.sha256_of(path),
                                                               size=path.stat().st_size))
    feats = encode_audio(wave[:, :32000], rate, encoder="auto", models_dirs=[folder])
    assert feats.features.shape == (50, 512) and feats.encoder_id == f"ave:{hub.sha256_of(path)[:8]}"
    assert feats.notes == ()


def test_auto_falls_back_to_mel_with_a_visible_warning(speech, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    wave, rate = speech
    with caplog.at_level(logging.WARNING, logger="synctalk"):
        feats = encode_audio(wave, rate, encoder="auto", models_dirs=[tmp_path / "none"])
    assert feats.encoder_id == MEL_ENCODER_ID and feats.features.shape == (331, 1280)
    assert len(feats.notes) == 1 and "mel" in feats.notes[0] and "audio_visual_encoder.pth" in feats.notes[0]
    assert any("mel" in r.getMessage() for r in caplog.records)
    with pytest.raises(MissingWeightsError, match="audio_visual_encoder.pth"):
        encode_audio(wave, rate, encoder="ave", models_dirs=[tmp_path / "none"])


def test_any_rate_and_channel_count_gives_the_same_rows(speech):
    wave, rate = speech
    mono = encode_audio(wave, rate, encoder="mel").features
    up = resample(torch.from_numpy(wave), rate, 48000).numpy()
    stereo = np.concatenate([up, up])
    other = encode_audio(stereo, 48000, encoder="mel").features
    assert other.shape == mono.shape == (331, 1280)
    # identical except the top bands (>7.5 kHz), which the 16k->48k->16k round trip filters
    per_bin = np.abs(other - mono).reshape(331, 80, 16)
    assert per_bin[:, :76].max() < 0.01


def test_other_fps_row_count_and_torch_input(speech):
    wave, rate = speech
    feats = encode_audio(torch.from_numpy(wave), rate, fps=30.0, encoder="mel")
    assert feats.features.shape == (round(13.24 * 30), 1280) and feats.fps == 30.0


def test_silent_audio_warns(tmp_path):
    feats = encode_audio(np.zeros((1, 16000), np.float32), 16000, encoder="mel")
    assert feats.features.shape == (25, 1280)
    assert any("silent" in n for n in feats.notes)
    assert np.all(feats.features == -4.0)


@pytest.mark.parametrize("wave,rate,match", [
    (np.zeros((1, 0), np.float32), 16000, "empty"),
    (np.zeros((2, 0), np.float32), 44100, "empty"),
    (np.random.default_rng(0).standard_normal((1, 2999)).astype(np.float32) * 0.1, 16000, "shorter than one"),
    (np.random.default_rng(0).standard_normal((1, 8000)).astype(np.float32) * 0.1, 44100, "shorter than one"),
    (np.full((1, 16000), np.nan, np.float32), 16000, "NaN"),
    (np.zeros((16000, 2), np.float32), 16000, "samples, channels"),
    (np.zeros((1, 16000), np.int16), 16000, "float"),
])
def test_bad_audio_is_a_clear_error(wave, rate, match):
    with pytest.raises(InputError, match=match):
        encode_audio(wave, rate, encoder="mel")


def test_shortest_accepted_audio_is_one_window():
    rng = np.random.default_rng(0)
    feats = encode_audio(rng.standard_normal((1, 3000)).astype(np.float32) * 0.1, 16000, encoder="mel")
    assert feats.features.shape == (5, 1280)  # 187.5 ms at 25 fps -> 4.69 -> 5 frames


def test_encoder_names():
    assert parse_encoder("auto") == ("auto", None)
    assert parse_encoder("ave-file:/a/b.safetensors") == ("ave-file", "/a/b.safetensors")
    for bad in ("wav2vec", "ave-file", "ave-file:", "mel:x"):
        with pytest.raises(InputError):
            parse_encoder(bad)


def test_features_round_trip_through_a_file(tmp_path, speech):
    wave, rate = speech
    feats = encode_audio(np.zeros((1, 8000), np.float32), 16000, encoder="mel")
    path = feats.save(tmp_path / "f.npz")
    back = AudioFeatures.load(path)
    np.testing.assert_array_equal(back.features, feats.features)
    assert back.encoder_id == feats.encoder_id and back.notes == feats.notes and back.fps == 25.0
