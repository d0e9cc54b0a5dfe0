"""Regenerate the shipped workflows from the node definitions: ``python tools/build_workflows.py``.

The JSON files in ``workflows/`` are what users open from ComfyUI's template browser (Workflow -> Browse
Templates; the file name is the card's title, the ``.jpg`` beside it its thumbnail) or drag onto the canvas. They
are written from code so that widget order and socket types follow the nodes; ``tests/test_shipped_workflows.py``
fails when a committed file differs from what this script makes, and ``tests/test_browser_workflows.py`` loads
each file into the real ComfyUI frontend and reads every widget back.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from workflow_builder import REPO, NodeRef, WorkflowBuilder, core_node_defs, pack_node_defs  # noqa: E402

OUT_DIR = REPO / "workflows"
REFERENCE_VIDEO = "reference.mp4"
DRIVING_AUDIO = "speech.wav"
QUICKSTART = "SyncTalk quickstart - train and talk on a CPU"
TRAIN = "SyncTalk train - learn a subject from a video"
RENDER = "SyncTalk render - make a subject say new speech"

NOTE_QUICKSTART = f"""## SyncTalk quickstart

Trains a talking head of one person, then makes it say new speech, all on a CPU.

**Before you run**, put two files in ComfyUI's `input` folder (or pick others in the loaders):

- `{REFERENCE_VIDEO}`: the person talking to the camera (1-5 minutes, one face)
- `{DRIVING_AUDIO}`: the speech to say

**Group 1** prepares the video and trains the *quick* preset (minutes on a CPU, low resolution).

**Group 2** renders the head for the new speech and pastes it into the real video; SaveVideo writes the MP4 to \
`output/synctalk`.

Running again reuses every step whose inputs did not change. For a real model use the *SyncTalk train* template \
(preset *standard*, on a GPU)."""

NOTE_TRAIN = f"""## Train a subject

SyncTalk (CVPR 2024) learns one person from a video of them talking.

1. Put the video in ComfyUI's `input` folder as `{REFERENCE_VIDEO}`, or pick it in **LoadReferenceVideo** \
(3-5 minutes, 25 fps, one face, steady camera).
2. Run. The graph crops the face, tracks landmarks and blinks, stabilises the head pose, encodes the audio and \
trains the model.
3. The model is saved as `models/synctalk/my_subject`; change the name in **TrainSyncTalk** and \
**SaveSyncTalkModel**.

Preset *auto* trains *standard* on a GPU (about an hour at 512 px) and *quick* on a CPU (minutes, low \
resolution). Weights are downloaded into `models/synctalk` on first use."""

NOTE_RENDER = f"""## Make a subject talk

1. Pick a trained model in **LoadSyncTalkModel** (press R to refresh the list after training).
2. Put the speech in ComfyUI's `input` folder as `{DRIVING_AUDIO}`, or pick any audio in **LoadAudio** (a TTS \
node's output works too).
3. Run. The head is rendered for every video frame of the speech and pasted into the subject's real video; \
SaveVideo writes the MP4 with the sound to `output/synctalk`.

**EncodeAudioAV** must use the encoder the model was trained with: *auto* picks the same one on the same \
machine."""


def _defs() -> dict[str, dict]:
    return {**core_node_defs(), **pack_node_defs()}


def _training_row(b: WorkflowBuilder, *, preset: str, name: str, perceptual_loss: str, row: int = 0):
    load = b.node("SyncTalkLoadReferenceVideo", column=1, row=row, video=REFERENCE_VIDEO)
    face = b.node("SyncTalkCaptureBlendshapes", column=2, row=row)
    audio = b.node("SyncTalkEncodeAudioAV", column=2, row=row, title="EncodeAudioAV (training audio)", encoder="own")
    pose = b.node("SyncTalkStabilizeHeadPose", column=3, row=row)
    preview_face = b.node("PreviewImage", column=3, row=row, title="Landmarks and expression", height=250)
    train = b.node("TrainSyncTalk", column=4, row=row, preset=preset, name=name, perceptual_loss=perceptual_loss)
    preview_pose = b.node("PreviewImage", column=4, row=row, title="Head pose", height=250)
    b.connect(load, "clip", face, "clip")
    b.connect(load, "audio", audio, "audio")
    b.connect(load, "clip", audio, "clip")
    b.connect(face, "face_track", audio, "face_track")
    b.connect(load, "clip", pose, "clip")
    b.connect(face, "face_track", pose, "face_track")
    b.connect(face, "preview", preview_face, "images")
    b.connect(pose, "preview", preview_pose, "images")
    for source, output, socket in ((load, "clip", "clip"), (face, "face_track", "face_track"),
                                   (pose, "head_pose", "head_pose"), (audio, "features", "audio_features")):
        b.connect(source, output, train, socket)
    return load, face, pose, train


def _render_row(b: WorkflowBuilder, model: tuple[NodeRef, str], clip: tuple[NodeRef, str],
                head_pose: tuple[NodeRef, str], face_track: tuple[NodeRef, str], *, row: int,
                speech_column: int = 1) -> None:
    speech = b.node("LoadAudio", column=speech_column, row=row, height=150, audio=DRIVING_AUDIO)
    features = b.node("SyncTalkEncodeAudioAV", column=2, row=row, title="EncodeAudioAV (new speech)")
    render = b.node("SyncTalkRenderTriPlane", column=3, row=row, region="mouth")
    blend = b.node("SyncTalkPortraitSyncBlend", column=4, row=row)
    save = b.node("SaveVideo", column=5, row=row, height=330, filename_prefix="synctalk/talking_head")
    b.connect(speech, "AUDIO", features, "audio")
    b.connect(*model, features, "model")
    b.connect(*model, render, "model")
    b.connect(features, "features", render, "audio_features")
    b.connect(render, "images", blend, "images")
    b.connect(render, "alpha", blend, "alpha")
    b.connect(*clip, blend, "clip")
    b.connect(*head_pose, blend, "head_pose")
    b.connect(*face_track, blend, "face_track")
    b.connect(speech, "AUDIO", blend, "audio")
    b.connect(blend, "video", save, "video")


def quickstart(defs: dict) -> WorkflowBuilder:
    b = WorkflowBuilder(defs)
    b.note(NOTE_QUICKSTART, column=0, height=300, title="Read me: SyncTalk quickstart")
    b.group("1. Train a subject (quick preset)", row=0)
    load, face, pose, train = _training_row(b, preset="quick", name="quickstart", perceptual_loss="none")
    b.group("2. Make it say new speech", row=1)
    _render_row(b, (train, "model"), (load, "clip"), (pose, "head_pose"), (face, "face_track"), row=1)
    return b


def train(defs: dict) -> WorkflowBuilder:
    b = WorkflowBuilder(defs)
    b.note(NOTE_TRAIN, column=0, height=260, title="Read me: train a subject")
    b.group("Train a subject", row=0)
    *_, model = _training_row(b, preset="auto", name="my_subject", perceptual_loss="lpips")
    save = b.node("SaveSyncTalkModel", column=5, row=0, name="my_subject")
    b.connect(model, "model", save, "model")
    return b


def render(defs: dict) -> WorkflowBuilder:
    b = WorkflowBuilder(defs)
    b.note(NOTE_RENDER, column=0, height=220, title="Read me: make a subject talk")
    b.group("Make a trained subject say new speech", row=0)
    model = b.node("LoadSyncTalkModel", column=1, row=0, name="my_subject")
    _render_row(b, (model, "model"), (model, "clip"), (model, "head_pose"), (model, "face_track"), row=0)
    return b


WORKFLOWS = {QUICKSTART: quickstart, TRAIN: train, RENDER: render}


def build_all() -> dict[str, WorkflowBuilder]:
    """File stem -> the builder holding that workflow (``to_ui`` gives the JSON, ``intended_values`` the widgets)."""
    defs = _defs()
    return {stem: make(defs) for stem, make in WORKFLOWS.items()}


def render_all() -> dict[str, str]:
    """File name -> the JSON text to ship."""
    return {f"{stem}.json": json.dumps(b.to_ui(title=stem), indent=1) + "\n" for stem, b in build_all().items()}


def main() -> int:
    OUT_DIR.mkdir(exist_ok=True)
    for name, text in render_all().items():
        (OUT_DIR / name).write_text(text, encoding="utf-8")
        print(f"wrote workflows/{name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
