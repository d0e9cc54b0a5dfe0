"""Streaming MP4 writer and the file-backed VIDEO: decoded values, frame counts, durations, audio sync, atomicity."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from synctalk_lib.errors import InputError
from synctalk_lib.media.video_file import read_frames
from synctalk_lib.media.video_writer import VideoWriter, video_duration, write_video

FPS = 25
SR = 16000
# Saturated and mid-tone colours: H.264 4:2:0 at crf 18 must bring each back within a few levels.
COLOURS = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [30, 60, 200], [128, 128, 128], [250, 240, 230],
                    [10, 10, 10], [200, 120, 40]], dtype=np.uint8)


def _colour_frames(height: int = 48, width: int = 64) -> np.ndarray:
    """One solid colour per frame ``[8, H, W, 3]`` uint8."""
    return np.ascontiguousarray(np.broadcast_to(COLOURS[:, None, None, :], (len(COLOURS), height, width, 3)))


def _decode_audio(path: Path) -> tuple[np.ndarray, int]:
    from synctalk_lib.media.audio import load_audio

    return load_audio(path)


def test_round_trip_colours_and_frame_count(tmp_path: Path) -> None:
    path = write_video(tmp_path / "colours.mp4", _colour_frames(), FPS)
    frames, rate = read_frames(path)
    assert rate == FPS
    assert frames.shape == (len(COLOURS), 48, 64, 3)
    centre = frames[:, 8:40, 8:56].reshape(len(COLOURS), -1, 3).astype(int)
    error = np.abs(centre - COLOURS[:, None, :].astype(int)).max()
    assert error <= 6, f"decoded colours differ from the written ones by up to {error} levels"
    assert video_duration(path) == (pytest.approx(len(COLOURS) / FPS, abs=1e-6), 0.0)


def test_streaming_batches_float_and_torch_inputs_match_uint8(tmp_path: Path) -> None:
    frames = _colour_frames()
    with VideoWriter(tmp_path / "mixed.mp4", FPS) as writer:
        writer.write(frames[0])  # one [H, W, 3] frame
        writer.write(frames[1:3].astype(np.float32) / 255.0)  # float numpy batch
        writer.write(torch.from_numpy(frames[3:6]).float() / 255.0)  # float torch batch
        writer.write(torch.from_numpy(frames[6:]))  # uint8 torch batch
    assert writer.frame_count == len(COLOURS)
    decoded, _ = read_frames(tmp_path / "mixed.mp4")
    reference, _ = read_frames(write_video(tmp_path / "ref.mp4", frames, FPS))
    # Same pixels in, same encoder settings: the two files decode identically.
    assert np.array_equal(decoded, reference)


def test_audio_is_trimmed_or_padded_to_the_video(tmp_path: Path) -> None:
    frames = np.zeros((50, 32, 32, 3), np.uint8)  # 2.0 s at 25 fps
    long_audio = np.full((1, SR * 3), 0.1, np.float32)
    short_audio = np.full((2, SR // 2), 0.1, np.float32)
    trimmed = write_video(tmp_path / "trim.mp4", frames, FPS, audio=long_audio, sample_rate=SR)
    padded = write_video(tmp_path / "pad.mp4", frames, FPS, audio=short_audio, sample_rate=SR)
    kept = write_video(tmp_path / "full.mp4", frames, FPS, audio=long_audio, sample_rate=SR, full_audio=True)
    assert video_duration(trimmed) == (pytest.approx(2.0), pytest.approx(2.0, abs=0.01))
    assert video_duration(padded) == (pytest.approx(2.0), pytest.approx(2.0, abs=0.01))
    assert video_duration(kept)[1] == pytest.approx(3.0, abs=0.01)
    wave, rate = _decode_audio(padded)
    assert rate == SR and wave.shape[0] == 2
    # The given half second is there; the padding after it is silence.
    assert abs(np.median(wave[:, 2000:7000]) - 0.1) < 0.02
    assert np.abs(wave[:, int(0.7 * SR):int(1.9 * SR)]).max() < 0.01


@pytest.mark.parametrize("rate", [16000, 22000, 44100])
def test_audio_stays_in_sync_with_the_frames(tmp_path: Path, rate: int) -> None:
    """A click on the audio at frame 20's time and a white frame 20 decode at the same moment."""
    frames = np.zeros((40, 32, 32, 3), np.uint8)
    frames[20] = 255
    wave = np.zeros((1, int(rate * 1.6)), np.float32)
    start = int(20 / FPS * rate)
    wave[0, start:start + rate // 50] = 0.8 * np.sin(np.arange(rate // 50) * 2 * np.pi * 1000 / rate)
    path = write_video(tmp_path / "sync.mp4", frames, FPS, audio=wave, sample_rate=rate)
    decoded_wave, decoded_rate = _decode_audio(path)
    onset = int(np.argmax(np.abs(decoded_wave[0]) > 0.2)) / decoded_rate
    bright = int(read_frames(path)[0].mean(axis=(1, 2, 3)).argmax())
    assert bright == 20
    assert onset == pytest.approx(20 / FPS, abs=0.5 / FPS), f"audio click at {onset:.4f} s, frame at {20 / FPS} s"


def test_odd_sizes_are_padded_with_edge_pixels(tmp_path: Path) -> None:
    frame = np.zeros((17, 33, 3), np.uint8)
    frame[:, :, 0] = 200  # red everywhere ...
    frame[-1, :, 1] = 200  # ... the last row yellow, so the padded row must be yellow too
    path = write_video(tmp_path / "odd.mp4", [frame] * 3, FPS, crf=0)
    decoded, _ = read_frames(path)
    assert decoded.shape[1:] == (18, 34, 3)
    assert np.abs(decoded[0, -1, 4:-4].astype(int) - [200, 200, 0]).max() <= 12
    assert np.abs(decoded[0, 4:12, -1].astype(int) - [200, 0, 0]).max() <= 12


def test_failure_leaves_no_file_and_keeps_the_old_one(tmp_path: Path) -> None:
    target = tmp_path / "out.mp4"
    target.write_bytes(b"previous")
    with pytest.raises(RuntimeError):
        with VideoWriter(target, FPS) as writer:
            writer.write(np.zeros((4, 16, 16, 3), np.uint8))
            raise RuntimeError("render failed")
    assert target.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["out.mp4"]
    with pytest.raises(InputError, match="differs from the first frame"):
        with VideoWriter(tmp_path / "sizes.mp4", FPS) as writer:
            writer.write(np.zeros((16, 16, 3), np.uint8))
            writer.write(np.zeros((16, 18, 3), np.uint8))
    with pytest.raises(InputError, match="no frames"):
        with VideoWriter(tmp_path / "empty.mp4", FPS):
            pass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4"]


def test_bad_arguments_are_explained(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="unsupported video file type"):
        VideoWriter(tmp_path / "x.gif", FPS)
    with pytest.raises(InputError, match="fps must be positive"):
        VideoWriter(tmp_path / "x.mp4", 0)
    with pytest.raises(InputError, match="sample_rate"):
        VideoWriter(tmp_path / "x.mp4", FPS, audio=np.zeros((1, 10), np.float32))
    with pytest.raises(InputError, match=r"\[B, H, W, 3\]"):
        with VideoWriter(tmp_path / "x.mp4", FPS) as writer:
            writer.write(np.zeros((4, 16, 16), np.uint8))


def test_metadata_tags_and_ntsc_rate(tmp_path: Path) -> None:
    path = write_video(tmp_path / "tags.mp4", np.zeros((3, 16, 16, 3), np.uint8), 30000 / 1001,
                       metadata={"prompt": {"1": {"class_type": "X"}}, "title": "hello"})
    with av.open(str(path)) as container:
        assert container.metadata["prompt"] == '{"1": {"class_type": "X"}}'
        assert container.metadata["title"] == "hello"
        assert container.streams.video[0].average_rate == Fraction(30000, 1001)


def test_bridge_video_from_file_outside_comfyui(tmp_path: Path) -> None:
    from nodes import bridge

    path = write_video(tmp_path / "clip.mp4", _colour_frames(), FPS)
    video = bridge.video_from_file(path)
    assert video == path and read_frames(video)[0].shape == (len(COLOURS), 48, 64, 3)
