"""Regenerate the shipped workflows from the node definitions: ``python workflows/build.py``.

The JSON files beside this script are what users drag into ComfyUI (UI format, schema 0.4). They are written
from code so that widget order and socket types always match the nodes; ``tests/test_shipped_workflows.py``
fails when a committed file differs from what this script makes.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from synctalk_lib.workflow.layout import WorkflowBuilder  # noqa: E402
from synctalk_lib.workflow.pack import build_registry  # noqa: E402

REFERENCE_VIDEO = "reference.mp4"
DRIVING_AUDIO = "speech.wav"

NOTE_TRAIN = """**1. Train a subject** (SyncTalk, CVPR 2024)

Put 3-5 minutes of one person talking to the camera (25 fps is ideal, one face, steady background) in ComfyUI's
input folder and pick it in LoadReferenceVideo. The graph then:
- decodes it once to a disk cache (face-centred 512x512 crop),
- captures MediaPipe landmarks + 52 blendshapes (7 upper-face coefficients drive brows and blinks),
- stabilises the head pose (focal search, optical-flow keypoints, bundle adjustment),
- encodes the audio into per-frame lip features (AVE if its weights are present, else mel),
- trains the tri-plane hash NeRF (quick preset: minutes on a CPU at low resolution; standard: a GPU at 512),
- saves the model to models/synctalk/<name>.
Weights (face_landmarker.task, the AVE) are fetched from the Hugging Face Hub into models/synctalk on first use."""

NOTE_RENDER = """**2. Drive the subject with new speech**

LoadSyncTalkModel loads a trained subject from models/synctalk (or a Hub repo id) with its reference frames, head
poses and face track. LoadAudio takes any speech (a TTS node's AUDIO works too). EncodeAudioAV must use the same
encoder the model was trained with. RenderTriPlane renders one head frame per audio frame, playing the reference
poses forwards and backwards. PortraitSyncBlend pastes the rendered face into the real frames (hair, neck, torso and
background stay real), adds the audio and writes an MP4 that SaveVideo stores in the output folder."""

NOTE_QUICK = """**Quickstart: train and drive in one graph**

Top row: the training half (quick preset). Bottom row: new speech -> lip features -> render -> portrait blend ->
SaveVideo. Run it once with your reference video and a speech file in the input folder. Re-running reuses the clip
cache; training reruns only when its inputs change. The quick preset trains without the LPIPS loss so it runs
offline; for a real model use preset 'standard' (with LPIPS weights in models/synctalk) on a GPU."""


def _training_half(b: WorkflowBuilder, *, preset: str, name: str, perceptual_loss: str = "lpips"):
    load = b.node("SyncTalkLoadReferenceVideo", column=0, video=REFERENCE_VIDEO, fps=25.0)
    face = b.node("SyncTalkCaptureBlendshapes", column=1)
    pose = b.node("SyncTalkStabilizeHeadPose", column=2)
    audio = b.node("SyncTalkEncodeAudioAV", column=1, title="EncodeAudioAV (training audio)", encoder="auto")
    train = b.node("TrainSyncTalk", column=3, preset=preset, name=name, perceptual_loss=perceptual_loss)
    b.connect(load, "clip", face, "clip")
    b.connect(load, "clip", pose, "clip")
    b.connect(face, "face_track", pose, "face_track")
    b.connect(load, "audio", audio, "audio")
    for src, out, inp in ((load, "clip", "clip"), (face, "face_track", "face_track"), (pose, "head_pose", "head_pose"),
                          (audio, "features", "audio_features")):
        b.connect(src, out, train, inp)
    preview_face = b.node("PreviewImage", column=2, title="Landmarks and expression")
    b.connect(face, "preview", preview_face, "images")
    preview_pose = b.node("PreviewImage", column=3, title="Head pose")
    b.connect(pose, "preview", preview_pose, "images")
    return load, face, pose, train


def _render_half(b: WorkflowBuilder, model, clip, head_pose, face_track, *, column: int):
    speech = b.node("LoadAudio", column=column, audio=DRIVING_AUDIO)
    features = b.node("SyncTalkEncodeAudioAV", column=column + 1, title="EncodeAudioAV (driving speech)",
                      encoder="auto")
    render = b.node("SyncTalkRenderTriPlane", column=column + 2)
    blend = b.node("SyncTalkPortraitSyncBlend", column=column + 3)
    save = b.node("SaveVideo", column=column + 4, filename_prefix="synctalk/talking_head")
    b.connect(speech, "AUDIO", features, "audio")
    b.connect(model[0], model[1], render, "model")
    b.connect(features, "features", render, "audio_features")
    b.connect(render, "images", blend, "images")
    b.connect(render, "alpha", blend, "alpha")
    b.connect(clip[0], clip[1], blend, "clip")
    b.connect(head_pose[0], head_pose[1], blend, "head_pose")
    b.connect(face_track[0], face_track[1], blend, "face_track")
    b.connect(speech, "AUDIO", blend, "audio")
    b.connect(blend, "video", save, "video")
    return render, blend, save


def train_workflow(registry) -> dict:
    b = WorkflowBuilder(registry)
    b.note(NOTE_TRAIN, column=0, title="SyncTalk: train a subject", height=330)
    _, _, _, train = _training_half(b, preset="standard", name="my_subject")
    save = b.node("SaveSyncTalkModel", column=4, name="my_subject")
    b.connect(train, "model", save, "model")
    return b.to_ui(title="SyncTalk: train a subject")


def render_workflow(registry) -> dict:
    b = WorkflowBuilder(registry)
    b.note(NOTE_RENDER, column=0, title="SyncTalk: drive a subject", height=300)
    model = b.node("LoadSyncTalkModel", column=0, name="my_subject")
    _render_half(b, (model, "model"), (model, "clip"), (model, "head_pose"), (model, "face_track"), column=1)
    return b.to_ui(title="SyncTalk: drive a subject with new speech")


def quickstart_workflow(registry) -> dict:
    b = WorkflowBuilder(registry)
    b.note(NOTE_QUICK, column=0, title="SyncTalk quickstart", height=220)
    load, face, pose, train = _training_half(b, preset="quick", name="quickstart", perceptual_loss="none")
    _render_half(b, (train, "model"), (load, "clip"), (pose, "head_pose"), (face, "face_track"), column=4)
    return b.to_ui(title="SyncTalk quickstart")


WORKFLOWS = {
    "synctalk_train.json": train_workflow,
    "synctalk_render.json": render_workflow,
    "synctalk_quickstart.json": quickstart_workflow,
}


def render_all() -> dict[str, str]:
    registry = build_registry()
    return {name: json.dumps(make(registry), indent=2) + "\n" for name, make in WORKFLOWS.items()}


def main() -> int:
    for name, text in render_all().items():
        (HERE / name).write_text(text)
        print(f"wrote workflows/{name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
