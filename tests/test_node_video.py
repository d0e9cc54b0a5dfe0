"""LoadReferenceVideo and SyncTalkClipFromImages, run as ComfyUI would call them (outside ComfyUI)."""
from __future__ import annotations

import inspect
import logging
import os

import numpy as np
import pytest
import torch

from nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS
from nodes.video import SyncTalkClipFromImages, SyncTalkLoadReferenceVideo
from synctalk_lib.types import Clip
from tests.media_fixtures import frame_number_of, write_video


@pytest.fixture()
def input_dir(tmp_path, monkeypatch):
    folder = tmp_path / "input"
    folder.mkdir()
    monkeypatch.setenv("SYNCTALK_INPUT_DIR", str(folder))
    return folder


@pytest.fixture()
def cache_dir(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("SYNCTALK_CACHE_DIR", str(folder))
    return folder


# ------------------------------------------------------------------------------------------------- contract
def test_nodes_are_registered_with_plain_display_names():
    assert NODE_CLASS_MAPPINGS["SyncTalkLoadReferenceVideo"] is SyncTalkLoadReferenceVideo
    assert NODE_CLASS_MAPPINGS["SyncTalkClipFromImages"] is SyncTalkClipFromImages
    assert NODE_DISPLAY_NAME_MAPPINGS["SyncTalkLoadReferenceVideo"] == "LoadReferenceVideo"
    assert NODE_DISPLAY_NAME_MAPPINGS["SyncTalkClipFromImages"] == "SyncTalkClipFromImages"


def test_load_reference_video_inputs_and_outputs(input_dir):
    (input_dir / "talk.mp4").write_bytes(b"x")
    (input_dir / "readme.txt").write_text("x")
    required = SyncTalkLoadReferenceVideo.INPUT_TYPES()["required"]
    assert list(required) == ["video", "fps", "start_time", "max_duration", "crop", "size", "preview_memory_mb"]
    choices, options = required["video"]
    assert choices == ["talk.mp4"] and options["video_upload"] is True
    assert {k: required["fps"][1][k] for k in ("default", "min", "max")} == {"default": 25.0, "min": 1.0,
                                                                          "max": 120.0}
    assert required["start_time"][1]["default"] == 0.0 and required["max_duration"][1]["default"] == 0.0
    assert required["crop"][0] == ["face", "none"] and required["crop"][1]["default"] == "face"
    assert {k: required["size"][1][k] for k in ("default", "min", "max", "step")} == \
        {"default": 512, "min": 64, "max": 2048, "step": 16}
    assert required["preview_memory_mb"][1]["default"] == 2048
    assert all(spec[1].get("tooltip") for spec in required.values())
    node = SyncTalkLoadReferenceVideo
    assert node.RETURN_TYPES == ("SYNCTALK_CLIP", "IMAGE", "AUDIO", "FLOAT", "INT")
    assert node.RETURN_NAMES == ("clip", "frames", "audio", "fps", "frame_count")
    assert len(node.OUTPUT_TOOLTIPS) == len(node.RETURN_TYPES)
    assert node.CATEGORY == "SyncTalk/Input" and callable(getattr(node, node.FUNCTION))
    assert list(inspect.signature(getattr(node(), node.FUNCTION)).parameters) == list(required)
    # ComfyUI calls these on the class and passes only the inputs named in the signature
    assert isinstance(inspect.getattr_static(node, "VALIDATE_INPUTS"), classmethod)
    assert isinstance(inspect.getattr_static(node, "IS_CHANGED"), classmethod)
    assert list(inspect.signature(node.VALIDATE_INPUTS).parameters) == ["video"]


def test_validate_inputs_accepts_listed_names_and_opted_in_absolute_paths(input_dir, tmp_path, monkeypatch):
    (input_dir / "talk.mp4").write_bytes(b"x")
    elsewhere = tmp_path / "elsewhere.mp4"
    elsewhere.write_bytes(b"x")
    node = SyncTalkLoadReferenceVideo
    assert node.VALIDATE_INPUTS(video="talk.mp4") is True
    assert "outside the allowed folders" in node.VALIDATE_INPUTS(video=str(elsewhere))
    monkeypatch.setenv("SYNCTALK_ALLOW_ABSOLUTE_PATHS", "1")
    assert node.VALIDATE_INPUTS(video=str(elsewhere)) is True
    assert node.VALIDATE_INPUTS(video=None) is True  # linked input: checked when it runs
    message = node.VALIDATE_INPUTS(video="gone.mp4")
    assert isinstance(message, str) and "gone.mp4" in message and "not found" in message


def test_is_changed_follows_size_and_mtime(input_dir):
    path = input_dir / "talk.mp4"
    path.write_bytes(b"abc")
    first = SyncTalkLoadReferenceVideo.IS_CHANGED(video="talk.mp4", fps=25.0, crop="face")
    assert SyncTalkLoadReferenceVideo.IS_CHANGED(video="talk.mp4", fps=25.0, crop="face") == first
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    assert SyncTalkLoadReferenceVideo.IS_CHANGED(video="talk.mp4") != first
    assert SyncTalkLoadReferenceVideo.IS_CHANGED(video="gone.mp4").startswith("missing")


def test_clip_from_images_contract():
    spec = SyncTalkClipFromImages.INPUT_TYPES()
    assert list(spec["required"]) == ["images", "fps"] and list(spec["optional"]) == ["audio"]
    assert SyncTalkClipFromImages.RETURN_TYPES == ("SYNCTALK_CLIP",)
    assert SyncTalkClipFromImages.RETURN_NAMES == ("clip",)
    assert SyncTalkClipFromImages.CATEGORY == "SyncTalk/Input"
    assert all(s[1].get("tooltip") for group in spec.values() for s in group.values())


# ------------------------------------------------------------------------------------------------ behaviour
def test_load_reference_video_on_may(may_video, shared_models, session_cache, monkeypatch, caplog):
    monkeypatch.setenv("SYNCTALK_MODELS_DIR", str(shared_models))
    monkeypatch.setenv("SYNCTALK_CACHE_DIR", str(session_cache))
    monkeypatch.setenv("SYNCTALK_INPUT_DIR", str(may_video.parent))
    node = SyncTalkLoadReferenceVideo()
    with caplog.at_level(logging.WARNING, logger="synctalk"):
        clip, frames, audio, fps, count = node.load(may_video.name, 25.0, 0.0, 0.0, "face", 512, 256)
    assert isinstance(clip, Clip) and clip.root.parent == session_cache
    assert (count, fps) == (331, 25.0) and isinstance(count, int) and isinstance(fps, float)
    # 256 MB holds 85 float32 frames of 512x512: an evenly spaced preview, with a warning that says so
    assert frames.dtype == torch.float32 and tuple(frames.shape) == (85, 512, 512, 3)
    assert "85 evenly spaced frames of 331" in caplog.text
    source = clip.frames()
    for i, index in ((0, 0), (42, round(42 * 330 / 84)), (84, 330)):
        assert torch.equal(frames[i], torch.from_numpy(np.asarray(source[index], np.float32)) / 255.0)
    assert set(audio) == {"waveform", "sample_rate"} and audio["sample_rate"] == 16000
    assert tuple(audio["waveform"].shape) == (1, 1, 211840) and audio["waveform"].dtype == torch.float32
    assert float(audio["waveform"].abs().mean()) > 0.01


def test_load_reference_video_by_input_name_without_crop(input_dir, cache_dir):
    write_video(input_dir / "clip30.mp4", frames=30, fps=30, audio="aac")
    clip, frames, audio, fps, count = SyncTalkLoadReferenceVideo().load("clip30.mp4", 25.0, 0.2, 0.4, "none",
                                                                       512, 2048)
    assert count == 10 and tuple(frames.shape) == (10, 48, 64, 3)  # 0.4 s at 25 fps, native size
    assert [frame_number_of(f.numpy() * 255) for f in frames] == [round((0.2 + k / 25) * 30 + 1e-9)
                                                                 for k in range(10)]
    assert tuple(audio["waveform"].shape) == (1, 1, 6400)
    assert clip.root.parent == cache_dir


def test_load_reference_video_reports_a_missing_file(input_dir, cache_dir):
    from synctalk_lib.errors import InputError

    with pytest.raises(InputError, match="not found"):
        SyncTalkLoadReferenceVideo().load("gone.mp4", 25.0, 0.0, 0.0, "none", 512, 64)


def test_clip_from_images_node(cache_dir):
    images = torch.rand(6, 32, 48, 3, generator=torch.Generator().manual_seed(0))
    audio = {"waveform": torch.zeros(1, 2, 3840), "sample_rate": 16000}
    (clip,) = SyncTalkClipFromImages().build(images, 25.0, audio)
    assert (clip.num_frames, clip.height, clip.width, clip.fps) == (6, 32, 48, 25.0)
    assert (clip.sample_rate, clip.audio_channels) == (16000, 2)
    expected = (images.clamp(0, 1) * 255 + 0.5).to(torch.uint8).numpy()
    assert np.array_equal(np.asarray(clip.frames()), expected)
    (without_audio,) = SyncTalkClipFromImages().build(images, 25.0)
    assert not without_audio.has_audio and without_audio.root != clip.root
