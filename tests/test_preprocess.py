"""``python -m synctalk_lib preprocess`` on the first 2 s of the reference clip: every file, the report, step reuse,
redo, resuming after a failure, and adding a step."""
from __future__ import annotations

import dataclasses
import json
import shutil
import wave
from pathlib import Path

import numpy as np
import pytest

from synctalk_lib.cli import main
from synctalk_lib.errors import InputError
from synctalk_lib.pipeline import PreprocessSettings
from synctalk_lib.pipeline import preprocessing as pipeline_preprocess
from synctalk_lib.pipeline.preprocessing import STAGES, PreprocessRun, Stage
from synctalk_lib.face.expression import EXPRESSION_NAMES
from synctalk_lib.subject import SubjectDir, write_wav

REQUIRED_KEYS = ("frames", "fps", "face_frames", "audio_seconds", "audio_features_shape", "blendshape_names",
                 "seconds")


def preprocess_args(video: Path, out: Path, cache: Path, models: Path, *extra: str) -> list[str]:
    return ["preprocess", str(video), "--out", str(out), "--max-duration", "2", "--audio-encoder", "mel",
            "--cache-dir", str(cache), "--models-dir", str(models), *extra]


@pytest.fixture(scope="module")
def prepared(may_video: Path, shared_models: Path, tmp_path_factory):
    root = tmp_path_factory.mktemp("preprocess")
    out, cache = root / "subject", root / "cache"
    assert main(preprocess_args(may_video, out, cache, shared_models)) == 0
    return out, cache


def test_writes_every_file_and_the_report(prepared, capsys):
    out, _ = prepared
    subject = SubjectDir(out)
    for name in (SubjectDir.CLIP_REF, SubjectDir.AUDIO_WAV, SubjectDir.AUDIO_FEATURES, SubjectDir.FACE_TRACK,
                 SubjectDir.HEAD_POSE, SubjectDir.REPORT):
        assert subject.path(name).is_file(), name
    report = subject.read_report()
    for key in REQUIRED_KEYS:
        assert key in report, key
    assert report["frames"] == 50 and report["fps"] == 25.0  # 2 s at 25 fps
    assert report["face_frames"] == 50 and report["audio_seconds"] == pytest.approx(2.0)
    assert report["audio_features_shape"] == [50, 1280]  # mel: 80 bins x 16 frames per video frame
    assert len(report["blendshape_names"]) == 52 and report["blendshape_names"][:2] == ["_neutral", "browDownLeft"]
    assert report["expression_names"] == list(EXPRESSION_NAMES)
    assert set(report["seconds"]) == {"load_video", "audio_features", "face_track", "pose"}
    assert set(report["pose"]) >= {"focal", "raw", "adjusted", "seconds"}
    assert subject.load_head_pose().num_frames == 50
    assert all(v > 0 for v in report["seconds"].values())
    assert report["face"]["blink_frames"] == [7] and report["reused"] == []
    assert any("50 frames (2.0 s)" in note and "3-5 minutes" in note for note in report["clip_notes"])

    clip = subject.load_clip()
    assert clip.num_frames == 50 and (clip.width, clip.height) == (512, 512)
    track = subject.load_face_track()
    assert track.num_frames == 50 and track.face_found.all() and track.expression.shape == (50, 7)
    features = subject.load_audio_features()
    assert features.features.shape == (50, 1280) and features.encoder_id == "mel-v1" and features.fps == 25.0
    # The wav holds the clip's audio (16-bit PCM).
    with wave.open(str(subject.path(SubjectDir.AUDIO_WAV))) as wav:
        assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (clip.sample_rate, 1, 2)
        pcm = np.frombuffer(wav.readframes(wav.getnframes()), "<i2").astype(np.float32) / 32767.0
    expected = clip.audio_waveform()[0]
    assert pcm.shape == expected.shape and np.abs(pcm - np.clip(expected, -1, 1)).max() <= 1.0 / 32767.0
    assert np.abs(expected).max() > 0.01  # real speech, not silence


def test_rerun_reuses_and_redoes_what_changed(prepared, may_video: Path, shared_models: Path, tmp_path: Path):
    out = tmp_path / "subject"
    shutil.copytree(prepared[0], out)
    cache = prepared[1]
    subject = SubjectDir(out)
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}

    assert main(preprocess_args(may_video, out, cache, shared_models)) == 0
    report = subject.read_report()
    assert report["reused"] == ["load_video", "face_track", "audio_features", "pose"]
    for name in (SubjectDir.AUDIO_FEATURES, SubjectDir.FACE_TRACK, SubjectDir.AUDIO_WAV):
        assert subject.path(name).stat().st_mtime_ns == mtimes[name]

    # A face-track option changed: only that step runs again.
    assert main(preprocess_args(may_video, out, cache, shared_models, "--smoothing", "none")) == 0
    report = subject.read_report()
    assert report["reused"] == ["load_video", "audio_features"]  # the pose depends on the face track: redone
    assert report["steps"]["face_track"]["settings"]["smoothing"] == "none"
    assert subject.load_face_track().report()["smoothing"]["method"] == "none"

    # --redo one step; --force all.
    assert main(preprocess_args(may_video, out, cache, shared_models, "--smoothing", "none",
                                "--redo", "audio_features")) == 0
    assert subject.read_report()["reused"] == ["load_video", "face_track", "pose"]
    assert main(preprocess_args(may_video, out, cache, shared_models, "--smoothing", "none", "--force")) == 0
    assert subject.read_report()["reused"] == []


def test_failed_step_resumes(prepared, may_video: Path, shared_models: Path, tmp_path: Path,
                             monkeypatch: pytest.MonkeyPatch):
    out = tmp_path / "subject"
    argv = preprocess_args(may_video, out, prepared[1], shared_models)

    def broken(ctx):
        raise InputError("simulated failure in the pose step")

    monkeypatch.setattr(pipeline_preprocess, "STAGES", tuple(dataclasses.replace(s, run=broken)
                                                             if s.name == "pose" else s for s in STAGES))
    assert main(argv) == 1  # an InputError becomes exit code 1 with the message on stderr
    report = SubjectDir(out).read_report()
    assert set(report["steps"]) == {"load_video", "face_track", "audio_features"}  # written after each step
    assert not SubjectDir(out).path(SubjectDir.HEAD_POSE).exists()

    monkeypatch.setattr(pipeline_preprocess, "STAGES", STAGES)
    assert main(argv) == 0
    assert SubjectDir(out).read_report()["reused"] == ["load_video", "face_track", "audio_features"]


def test_a_new_stage_is_one_line(prepared, tmp_path: Path):
    """A later stage appends a Stage; it sees the clip and the report of the stages before it."""
    out = tmp_path / "subject"
    shutil.copytree(prepared[0], out)

    def run_extra(run: PreprocessRun) -> dict:
        run.folder.path("extra.txt").write_text(str(run.load_clip().num_frames))
        return {"extra": {"frames_seen": run.load_clip().num_frames}}

    extra = Stage("extra", ("extra.txt",), lambda run: {"clip": run.clip_key()}, run_extra)
    subject = SubjectDir(out)
    video = subject.read_report()["steps"]["load_video"]["settings"]["video"]
    pipeline_preprocess.preprocess(video, out, PreprocessSettings(max_duration=2, audio_encoder="mel"),
                                   cache_dir=prepared[1], stages=STAGES + (extra,))
    report = subject.read_report()
    assert report["reused"] == ["load_video", "face_track", "audio_features", "pose"]
    assert report["extra"] == {"frames_seen": 50} and "extra" in report["seconds"]
    assert json.loads(subject.path(SubjectDir.REPORT).read_text())["steps"]["extra"]["outputs"] == ["extra.txt"]


def test_video_without_audio_is_refused(tmp_path: Path, shared_models: Path, capsys):
    from tests.media_fixtures import write_video

    video = write_video(tmp_path / "mute.mp4", frames=10, fps=25.0, width=64, height=64, audio=None)
    code = main(["preprocess", str(video), "--out", str(tmp_path / "s"), "--crop", "none", "--audio-encoder", "mel",
                 "--cache-dir", str(tmp_path / "cache"), "--models-dir", str(shared_models)])
    assert code == 1
    assert "mute.mp4 has no audio track" in capsys.readouterr().err


def test_subject_dir_errors_and_wav_writer(tmp_path: Path):
    subject = SubjectDir(tmp_path / "empty")
    with pytest.raises(InputError, match="run `python -m synctalk_lib preprocess"):
        subject.load_face_track()
    assert subject.read_report() == {}
    stereo = np.stack([np.linspace(-1.5, 1.5, 100), np.zeros(100)]).astype(np.float32)
    path = write_wav(tmp_path / "a.wav", stereo, 8000)
    with wave.open(str(path)) as wav:
        assert (wav.getnchannels(), wav.getframerate(), wav.getnframes()) == (2, 8000, 100)
        pcm = np.frombuffer(wav.readframes(100), "<i2").reshape(100, 2)
    assert pcm[0, 0] == -32767 and pcm[-1, 0] == 32767 and not pcm[:, 1].any()  # clipped, interleaved
