"""EncodeAudioAV node and the encode-audio command, end to end on the reference clip's speech."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from synctalk_lib.audio.ave import AudioVisualEncoder
from synctalk_lib.cli import main
from synctalk_lib.errors import InputError
from synctalk_lib.media.audio import load_audio, to_comfy_audio
from synctalk_lib.types import AudioFeatures


@pytest.fixture()
def node(models_dir):
    from nodes.audio import SyncTalkEncodeAudioAV

    return SyncTalkEncodeAudioAV()


def test_node_mel_on_real_speech(node, may_video):
    wave, rate = load_audio(may_video, duration=331 / 25)
    features, frames, report = node.run(to_comfy_audio(wave, rate), 25.0, "mel", "none", "cpu")
    assert isinstance(features, AudioFeatures) and frames == 331 and features.features.shape == (331, 1280)
    assert "mel-v1" in report and json.loads(report.splitlines()[-1])["shape"] == [331, 1280]


def test_node_lists_and_uses_ave_files_from_the_models_folder(node, models_dir, may_video):
    from nodes.audio import SyncTalkEncodeAudioAV
    from safetensors.torch import save_file

    torch.manual_seed(0)
    save_file(AudioVisualEncoder().official_state_dict(), str(models_dir / "my_ave.safetensors"))
    torch.save(AudioVisualEncoder().official_state_dict(), models_dir / "my_ave_too.pth")
    (models_dir / "some_model").mkdir()
    (models_dir / "some_model" / "model.safetensors").write_bytes(b"")
    # other weights in the same folder are not audio encoders and are not offered
    torch.save({"fnet.conv1.weight": torch.zeros(3, 3)}, models_dir / "raft-small.pth")
    save_file({"weight": torch.zeros(2)}, str(models_dir / "other.safetensors"))
    (models_dir / "broken.pth").write_bytes(b"not weights")
    # a model trained on the subject's own encoder carries it
    from synctalk_lib.nerf.model_folder import AUDIO_ENCODER_FILE
    from nodes.audio import MODEL_ENCODER_FILE

    assert MODEL_ENCODER_FILE == AUDIO_ENCODER_FILE
    (models_dir / "own_model").mkdir()
    save_file(AudioVisualEncoder().official_state_dict(), str(models_dir / "own_model" / AUDIO_ENCODER_FILE))
    choices = SyncTalkEncodeAudioAV.INPUT_TYPES()["required"]["ave_file"][0]
    assert choices == ["none", "my_ave.safetensors", "my_ave_too.pth", "own_model/audio_encoder.safetensors"]
    wave, rate = load_audio(may_video, duration=2.0)
    features, frames, report = node.run(to_comfy_audio(wave, rate), 25.0, "ave-file", "my_ave.safetensors", "cpu")
    assert features.features.shape == (50, 512) and features.encoder_id.startswith("ave-file:")
    carried, _, _ = node.run(to_comfy_audio(wave, rate), 25.0, "ave-file", "own_model/audio_encoder.safetensors", "cpu")
    assert carried.encoder_id.startswith("ave-file:") and carried.features.shape == (50, 512)
    with pytest.raises(InputError, match="no ave_file"):
        node.run(to_comfy_audio(wave, rate), 25.0, "ave-file", "none", "cpu")


def test_node_auto_offline_reports_the_fallback(node, may_video, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    wave, rate = load_audio(may_video, duration=1.0)
    features, frames, report = node.run(to_comfy_audio(wave, rate), 25.0, "auto", "none", "cpu")
    assert features.encoder_id == "mel-v1" and "warning:" in report and "audio_visual_encoder.pth" in report


def test_encode_audio_command(tmp_path, may_video, models_dir):
    out = tmp_path / "feats.npy"
    assert main(["encode-audio", str(may_video), "--out", str(out), "--audio-encoder", "mel", "--fps", "25"]) == 0
    data = np.load(out)
    # the whole AAC track (13.312 s) is encoded: 333 rows of 1280
    assert data.shape == (333, 1280) and data.dtype == np.float32
    facts = json.loads(out.with_suffix(".json").read_text())
    assert facts["encoder_id"] == "mel-v1" and facts["shape"] == [333, 1280]
    # a stereo 44.1 kHz wav written with PyAV gives the same rows
    wav = tmp_path / "stereo.wav"
    _write_wav(wav, load_audio(may_video, duration=13.24)[0], 16000)
    assert main(["encode-audio", str(wav), "--out", str(tmp_path / "b.npy"), "--audio-encoder", "mel"]) == 0
    assert np.load(tmp_path / "b.npy").shape == (331, 1280)
    assert main(["encode-audio", str(tmp_path / "missing.wav"), "--out", str(tmp_path / "c.npy")]) == 1


def _write_wav(path, mono, rate):
    """Stereo 44.1 kHz 16-bit wav of ``mono`` (resampled with our resampler)."""
    import av

    from synctalk_lib.audio.resample import resample

    up = resample(torch.from_numpy(mono[0]), rate, 44100).numpy()
    pcm = (np.clip(np.stack([up, up]), -1, 1) * 32767).astype(np.int16)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=44100, layout="stereo")
        frame = av.AudioFrame.from_ndarray(pcm.T.reshape(1, -1).copy(), format="s16", layout="stereo")
        frame.sample_rate = 44100
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def test_node_encodes_for_a_connected_model_with_its_encoder_and_fps(node, tmp_path):
    """With a model connected the node encodes like the model's training audio, whatever the widgets say."""
    from tests.nerf_fixtures import make_subject, train_tiny_model

    subject = make_subject(tmp_path / "fixture", num_frames=14, size=40, audio="mel")
    model = train_tiny_model(subject, steps=2)
    wave = subject.clip.audio_waveform()
    features, frames, _ = node.run(to_comfy_audio(wave, subject.clip.sample_rate), 30.0, "ave-file", "none", "cpu",
                                   model=model)
    assert features.encoder_id == model.encoder_id == "mel-v1" and features.fps == model.subject.fps == 25.0
    np.testing.assert_allclose(features.features, subject.audio.features, atol=1e-4)


def test_own_encoder_is_trained_once_per_clip_and_travels_with_the_model(node, models_dir, tmp_path, monkeypatch):
    """encoder 'own': an AVE trained on the connected clip (a few steps here) makes the features; TrainSyncTalk's
    model carries it, and features for that model are made with it again."""
    from synctalk_lib.audio import ave_train
    from synctalk_lib.errors import InputError
    from nodes.audio import encoder_file
    from nodes.nerf import _audio_encoder
    from tests.nerf_fixtures import make_subject

    monkeypatch.setattr(ave_train, "OWN_ENCODER_STEPS", 2)
    subject = make_subject(tmp_path / "fixture", num_frames=40, size=64, audio="mel")
    audio = to_comfy_audio(subject.clip.audio_waveform(), subject.clip.sample_rate)
    with pytest.raises(InputError, match="connect LoadReferenceVideo's clip"):
        node.run(audio, 25.0, "own", "none", "cpu")
    features, _, _ = node.run(audio, 25.0, "own", "none", "cpu", clip=subject.clip, face_track=subject.track)
    path = encoder_file(features.encoder_id)
    assert path is not None and path.parent.name == "audio_encoders" and features.dim == 512
    mtime = path.stat().st_mtime_ns
    again, _, _ = node.run(audio, 25.0, "own", "none", "cpu", clip=subject.clip, face_track=subject.track)
    assert path.stat().st_mtime_ns == mtime and again.encoder_id == features.encoder_id, "trained once per clip"
    assert _audio_encoder(features) == f"ave-file:{path}" and _audio_encoder(subject.audio) is None
