"""The workflows users drag into ComfyUI: up to date with the nodes, valid, and the quickstart really runs."""
from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest

from synctalk_lib.workflow import build_registry, load_workflow, run_workflow, validate

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / "workflows"


def _build_module():
    spec = importlib.util.spec_from_file_location("build_workflows", WORKFLOWS / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_workflows_match_the_node_definitions():
    for name, text in _build_module().render_all().items():
        committed = (WORKFLOWS / name).read_text()
        assert committed == text, f"workflows/{name} is stale: run python workflows/build.py"


@pytest.mark.parametrize("name", ["synctalk_train.json", "synctalk_render.json", "synctalk_quickstart.json"])
def test_shipped_workflow_is_valid_and_explained(name):
    registry = build_registry()
    prompt, ui = load_workflow(WORKFLOWS / name, registry)
    assert validate(prompt, registry, check_files=False) == []
    assert any(n["type"] == "Note" for n in ui["nodes"]), "every shipped workflow explains itself in a Note"
    types = {v["class_type"] for v in prompt.values()}
    if name == "synctalk_render.json":
        assert {"LoadSyncTalkModel", "LoadAudio", "SyncTalkEncodeAudioAV", "SyncTalkRenderTriPlane",
                "SyncTalkPortraitSyncBlend", "SaveVideo"} <= types
    else:
        assert {"SyncTalkLoadReferenceVideo", "SyncTalkCaptureBlendshapes", "SyncTalkStabilizeHeadPose",
                "SyncTalkEncodeAudioAV", "TrainSyncTalk"} <= types


def test_quickstart_runs_headless_at_a_tiny_size(may_video, shared_models, tmp_path, monkeypatch):
    """LoadReferenceVideo -> ... -> TrainSyncTalk -> RenderTriPlane -> PortraitSyncBlend -> SaveVideo, for real."""
    from synctalk_lib.media.audio import load_audio
    from synctalk_lib.media.video_writer import video_duration
    from synctalk_lib.subject import write_wav

    inputs, outputs, models = tmp_path / "input", tmp_path / "output", tmp_path / "models"
    inputs.mkdir()
    models.mkdir()
    shutil.copy(may_video, inputs / "reference.mp4")
    for f in shared_models.iterdir():
        (models / f.name).symlink_to(f)
    wave, rate = load_audio(may_video, start=5.0, duration=0.6)  # 0.6 s of real speech: 15 frames
    write_wav(inputs / "speech.wav", wave, rate)
    monkeypatch.setenv("SYNCTALK_INPUT_DIR", str(inputs))
    monkeypatch.setenv("SYNCTALK_OUTPUT_DIR", str(outputs))
    monkeypatch.setenv("SYNCTALK_MODELS_DIR", str(models))
    monkeypatch.setenv("SYNCTALK_CACHE_DIR", str(tmp_path / "cache"))

    registry = build_registry()
    prompt, _ = load_workflow(WORKFLOWS / "synctalk_quickstart.json", registry)
    overrides = {"SyncTalkLoadReferenceVideo.max_duration": 2.0, "SyncTalkLoadReferenceVideo.size": 256,
                 "TrainSyncTalk.iterations": 30, "TrainSyncTalk.resolution": 64,
                 "EncodeAudioAV (training audio).encoder": "mel", "EncodeAudioAV (driving speech).encoder": "mel",
                 "SaveVideo.filename_prefix": "quick/test"}
    results = run_workflow(prompt, registry, overrides=overrides)
    saved = sorted(outputs.glob("quick/test_*.mp4"))
    assert len(saved) == 1
    video_s, audio_s = video_duration(saved[0])
    assert video_s == pytest.approx(0.6, abs=0.05) and audio_s == pytest.approx(0.6, abs=0.05)
    from synctalk_lib.media.video_file import read_frames

    frames, fps = read_frames(saved[0])
    assert frames.shape == (15, 256, 256, 3) and float(fps) == 25.0
    clip = next(r for r in results.values() if r.class_type == "SyncTalkLoadReferenceVideo").result[0]
    from synctalk_lib.timeline import reference_indices

    for k, j in enumerate(reference_indices(15, clip.num_frames)):
        corner = np.abs(frames[k, :40, :40].astype(np.float32) - clip.frame(int(j))[:40, :40]).mean()
        assert corner < 4.0, f"frame {k}: away from the face the output must be reference frame {j}"
