"""Portrait generation over a render: ping-pong reference frames, streamed MP4, preview budget, the node."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from geometry_fixtures import SIZE, head_scene
from pack_loader import load_pack
from synctalk_lib.errors import InputError
from synctalk_lib.media.clip_store import clip_from_arrays
from synctalk_lib.media.video_file import read_frames
from synctalk_lib.media.video_writer import video_duration
from synctalk_lib.portrait.blend import BlendSettings
from synctalk_lib.portrait.generate import blend_stream, generate_portrait_video
from synctalk_lib.types import HeadPose

H = W = SIZE
N_REF = 4
CENTRE = (H // 2, W // 2)
"""Inside the face of the synthetic head in every frame."""


def _subject(tmp_path):
    """Reference frames with a distinct flat colour each, a face track and head poses of the same frames."""
    colours = np.array([[40, 40, 40], [80, 80, 80], [120, 120, 120], [160, 160, 160]], np.uint8)
    frames = np.broadcast_to(colours[:, None, None, :], (N_REF, H, W, 3)).copy()
    clip = clip_from_arrays(tmp_path / "ref", frames, 25.0)
    _, track, pose = head_scene(num_frames=N_REF)
    return clip, track, pose


def _render(n):
    rgb = np.zeros((n, H, W, 3), np.float32)
    rgb[..., 0] = 1.0  # pure red heads
    return rgb, np.ones((n, H, W), np.float32)


def test_blend_stream_uses_ping_pong_reference_frames(tmp_path):
    clip, track, pose = _subject(tmp_path)
    rgb, alpha = _render(10)
    frames = list(blend_stream([(0, rgb[:6], alpha[:6]), (6, rgb[6:], alpha[6:])], clip, pose, track=track,
                               settings=BlendSettings(color_match=False, paste="face")))
    assert len(frames) == 10
    corners = [int(f[2, 2, 1]) for f in frames]  # background corner shows the reference frame's colour
    assert corners == [40, 80, 120, 160, 160, 120, 80, 40, 40, 80]
    assert all(f[CENTRE][0] == 255 and f[CENTRE][1] == 0 for f in frames)  # face centre is the render


def test_generate_writes_a_video_with_audio_and_a_bounded_preview(tmp_path):
    clip, track, pose = _subject(tmp_path)
    rgb, alpha = _render(25)
    sr = 16000
    audio = np.sin(np.linspace(0, 2000, sr)).astype(np.float32)[None]  # 1.0 s
    result = generate_portrait_video([(0, rgb, alpha)], 25, clip, pose, tmp_path / "out.mp4", track=track,
                                     audio=audio, sample_rate=sr, preview_budget_bytes=5 * H * W * 3 * 4)
    assert result.frames == 25 and result.preview.shape == (5, H, W, 3) and result.preview_is_partial
    video_s, audio_s = video_duration(result.path)
    assert video_s == pytest.approx(1.0, abs=0.05) and audio_s == pytest.approx(1.0, abs=0.05)
    decoded, _ = read_frames(result.path)
    assert decoded.shape[0] == 25
    assert abs(float(decoded[0, 2, 2, 1]) - 40) < 0.03 * 255  # background of reference frame 0 survives encoding


def test_mismatched_inputs_are_clear_errors(tmp_path):
    clip, track, pose = _subject(tmp_path)
    short_pose = HeadPose(focal=1.0, cx=1.0, cy=1.0, width=W, height=H, c2w=np.tile(np.eye(4), (2, 1, 1)),
                          keypoints=np.zeros((0, 3)), reproj_error=np.zeros(2))
    rgb, alpha = _render(2)
    with pytest.raises(InputError, match="head_pose has 2 frames"):
        generate_portrait_video([(0, rgb, alpha)], 2, clip, short_pose, tmp_path / "x.mp4")


def test_node_outputs_video_and_images(tmp_path, monkeypatch):
    monkeypatch.setenv("SYNCTALK_OUTPUT_DIR", str(tmp_path / "output"))
    clip, track, pose = _subject(tmp_path)
    pack = load_pack()
    node = pack.NODE_CLASS_MAPPINGS["SyncTalkPortraitSyncBlend"]()
    rgb, alpha = _render(6)
    audio = {"waveform": torch.zeros(1, 1, 16000 * 6 // 25), "sample_rate": 16000}
    video, images = node.blend(torch.from_numpy(rgb), torch.from_numpy(alpha), clip, pose, face_track=track, paste="face",
                               audio=audio, color_match=False)
    assert images.shape == (6, H, W, 3) and images.dtype == torch.float32
    assert float(images[0][CENTRE][0]) == pytest.approx(1.0, abs=1e-6)
    frames, fps = read_frames(video)  # outside ComfyUI the VIDEO output is the MP4's path
    assert frames.shape == (6, H, W, 3) and fps == 25
    assert video_duration(video)[0] == pytest.approx(6 / 25, abs=0.05)
