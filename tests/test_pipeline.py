"""The typed pipeline API: the whole job in a few lines of Python on 2 s of the reference clip, stage reuse, and the
one reuse rule (StageLog) on its own."""
from __future__ import annotations

from pathlib import Path

import pytest

from synctalk_lib import pipeline
from synctalk_lib.errors import InputError
from synctalk_lib.media.video_writer import video_duration
from synctalk_lib.pipeline.stages import StageLog, fingerprint

TINY = {"resolution": 48, "iterations": 6, "perceptual_loss": "none",
        "overrides": {"nerf": {"grid_resolution": 16, "max_steps": 4}, "rays_per_step": 256, "val_frames": "45:50"}}


@pytest.fixture(scope="module")
def subject(may_video: Path, shared_models: Path, tmp_path_factory):
    work = tmp_path_factory.mktemp("pipeline")
    return pipeline.preprocess(may_video, work / "subject",
                               pipeline.PreprocessSettings(max_duration=2, audio_encoder="mel"),
                               models_dirs=[shared_models], cache_dir=work / "cache")


def test_whole_job_in_a_few_lines(subject, tmp_path: Path, shared_models: Path):
    model = pipeline.train(subject, tmp_path / "model", preset="quick", **TINY)
    result = pipeline.drive(model, subject.folder.path("audio.wav"), tmp_path / "talk.mp4",
                            reference=subject.clip, max_frames=12, models_dirs=[shared_models])
    assert (result.frames, result.width, result.height) == (12, 512, 512)
    video_s, audio_s = video_duration(tmp_path / "talk.mp4")
    assert video_s == pytest.approx(12 / 25, abs=0.01) and audio_s == pytest.approx(12 / 25, abs=0.03)
    assert pipeline.load_subject(subject.folder.root).num_frames == subject.num_frames == 50


def test_train_reuses_a_finished_model_and_retrains_on_a_change(subject, tmp_path: Path):
    lines: list[str] = []
    pipeline.train(subject, tmp_path / "model", preset="quick", on_status=lines.append, **TINY)
    assert not any(line.startswith("reusing") for line in lines)
    lines.clear()
    again = pipeline.train(subject, tmp_path / "model", preset="quick", on_status=lines.append, **TINY)
    assert any(line.startswith("reusing the trained model") for line in lines)
    assert again.summary["steps"] == 6
    lines.clear()
    pipeline.train(subject, tmp_path / "model", preset="quick", on_status=lines.append,
                   **{**TINY, "iterations": 8})
    assert not any(line.startswith("reusing") for line in lines)


def test_preprocess_reuses_every_stage(subject, may_video: Path, shared_models: Path):
    again = pipeline.preprocess(may_video, subject.folder.root,
                                pipeline.PreprocessSettings(max_duration=2, audio_encoder="mel"),
                                models_dirs=[shared_models], cache_dir=subject.clip.root.parent)
    assert again.folder.read_report()["reused"] == ["load_video", "face_track", "audio_features", "pose"]
    with pytest.raises(InputError, match="unknown preprocess stage"):
        pipeline.preprocess(may_video, subject.folder.root, redo=["posee"])


def test_the_subjects_own_audio_encoder_goes_from_preprocess_to_the_driving_speech(
        may_video: Path, shared_models: Path, tmp_path: Path, monkeypatch):
    """audio_encoder "own": an AVE trained on the clip (a few steps here) makes the features, the speaker variants
    and, carried in the model folder, the features of any driving speech, with no encoder named again."""
    import numpy as np

    from synctalk_lib.audio import ave_train
    from synctalk_lib.audio.ave import file_id

    monkeypatch.setattr(ave_train, "OWN_ENCODER_STEPS", 2)
    subject = pipeline.preprocess(may_video, tmp_path / "subject",
                                  pipeline.PreprocessSettings(max_duration=2, audio_encoder="own"),
                                  models_dirs=[shared_models], cache_dir=tmp_path / "cache")
    weights = subject.folder.path(subject.folder.AUDIO_ENCODER)
    assert subject.features.encoder_id == file_id(weights) and subject.features.dim == 512
    assert subject.audio_encoder() == f"ave-file:{weights}"
    assert not list(tmp_path.glob("subject/*.train.pt")), "the optimiser state is not kept"
    pipeline.train(subject, tmp_path / "model", preset="quick", **TINY)
    model = pipeline.load_model(tmp_path / "model", device="cpu", reference=subject.clip)
    assert not any("speaker variants" in note for note in model.summary.get("notes", []))
    assert model.audio_encoder() == f"ave-file:{tmp_path / 'model' / 'audio_encoder.safetensors'}"
    again = pipeline.encode(model, subject.folder.path("audio.wav"))
    assert again.encoder_id == subject.features.encoder_id
    np.testing.assert_allclose(again.features, subject.features.features, atol=1e-3)  # audio.wav is 16-bit
    weights.unlink()  # features without their encoder are made again
    pipeline.preprocess(may_video, tmp_path / "subject",
                        pipeline.PreprocessSettings(max_duration=2, audio_encoder="own"),
                        models_dirs=[shared_models], cache_dir=tmp_path / "cache")
    assert weights.is_file()


def test_stage_log_reuses_only_identical_settings_with_outputs(tmp_path: Path):
    out = tmp_path / "a.txt"
    log = StageLog(tmp_path / "log.json")
    assert not log.is_done("a", {"x": 1}, [out])
    out.write_text("done")
    log.mark_done("a", {"x": (1, 2)}, [out], {"numbers": {"n": 3}}, 1.23456)
    reread = StageLog(tmp_path / "log.json")
    assert reread.is_done("a", {"x": [1, 2]}, [out])  # tuples and lists are the same JSON
    assert not reread.is_done("a", {"x": [1, 3]}, [out])
    assert reread.data["numbers"] == {"n": 3} and reread.data["seconds"]["a"] == 1.235
    out.unlink()
    assert not reread.is_done("a", {"x": [1, 2]}, [out])
    assert fingerprint({"b": 1, "a": (2,)}) == fingerprint({"a": [2], "b": 1})
