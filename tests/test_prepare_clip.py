"""Clip preparation end to end: the reference clip, generated clips for every kind of awkward input, the disk
budget, the cache, clips from IMAGE tensors and the IMAGE preview."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from synctalk_lib.errors import InputError
from synctalk_lib.media import prepare as prepare_module
from synctalk_lib.media.prepare import clip_cache_path, clip_from_images, prepare_clip
from synctalk_lib.media.preview import image_preview
from synctalk_lib.media.video import VideoReader
from synctalk_lib.types import Clip
from tests.media_fixtures import (frame_number_of, paste_face_canvas, ramp_time, read_frames, truncate_file,
                                  write_video)

REPO = Path(__file__).resolve().parents[1]
MAY_FLOAT32_BYTES = 331 * 512 * 512 * 3 * 4


def _face_box(image: np.ndarray, models_dir: Path) -> tuple[float, float, float, float]:
    from synctalk_lib.face.landmarker import FaceLandmarker

    with FaceLandmarker.open([models_dir], mode="image") as landmarker:
        result = landmarker.detect(np.ascontiguousarray(image))
    assert result is not None, "no face in the prepared frame"
    return result.box()


# ------------------------------------------------------------------------------------------- reference clip
@pytest.fixture(scope="module")
def may_clip(may_video, shared_models, session_cache) -> Clip:
    return prepare_clip(may_video, session_cache, models_dirs=[shared_models])


def test_may_clip_frames_fps_and_audio(may_clip, may_video):
    assert (may_clip.num_frames, may_clip.fps, may_clip.width, may_clip.height) == (331, 25.0, 512, 512)
    assert (may_clip.sample_rate, may_clip.audio_channels) == (16000, 1)
    wave = may_clip.audio_waveform()
    assert wave.shape == (1, 331 * 16000 // 25)  # 13.24 s, exactly frame_count / fps
    assert wave.shape[1] / 16000 == pytest.approx(13.24)
    assert 0.01 < float(np.abs(wave).mean()) < 0.5  # speech, not silence
    assert may_clip.notes == ()
    assert may_clip.source_size == (512, 512) and may_clip.source_path == str(may_video)


def test_may_crop_is_identity_and_face_centred(may_clip, may_video, shared_models):
    x0, y0, x1, y1 = may_clip.crop_box
    assert (x1 - x0, y1 - y0) == (512, 512)  # the face already fills a SyncTalk-style frame: nothing to crop
    source = read_frames(may_video, 1)[0]
    assert np.array_equal(may_clip.frame(0), source)  # and nothing was resampled
    fx0, fy0, fx1, fy1 = _face_box(may_clip.frame(165), shared_models)
    assert abs((fx0 + fx1) / 2 / 512 - 0.5) < 0.08
    assert abs((fy0 + fy1) / 2 / 512 - 0.5) < 0.1
    assert 0.4 < (fx1 - fx0) / 512 < 0.55  # about 45 % of the width, like SyncTalk's data


def test_may_second_call_uses_the_cache(may_clip, may_video, shared_models, session_cache, monkeypatch):
    def no_decoding(*args, **kwargs):
        raise AssertionError("a cached clip must not be decoded again")

    monkeypatch.setattr(prepare_module, "VideoReader", no_decoding)
    started = time.perf_counter()
    again = prepare_clip(may_video, session_cache, models_dirs=[shared_models])
    assert time.perf_counter() - started < 1.0
    assert again.root == may_clip.root
    assert again.num_frames == 331
    assert clip_cache_path(may_video, session_cache) == may_clip.root
    assert clip_cache_path(may_video, session_cache, fps=30.0) != may_clip.root  # every setting is in the key


def test_may_peak_memory_stays_far_below_float32_frames(may_video, shared_models, tmp_path):
    """Run the CLI (decode + crop + cache + a 64 MB preview) in a fresh process and read its peak RSS.

    The child reports VmHWM (peak RSS of its own address space) rather than ru_maxrss: Linux carries the
    parent's high-water mark into ru_maxrss across fork/exec, so a big pytest process would inflate it.
    """
    script = (
        "import resource, sys\n"
        "from synctalk_lib.cli import main\n"
        "code = main(sys.argv[1:])\n"
        "try:\n"
        "    status = open('/proc/self/status').read()\n"
        "    peak_kb = int(status.split('VmHWM:')[1].split()[0])\n"
        "except OSError:\n"
        "    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "print('PEAK_RSS_KB', peak_kb)\n"
        "sys.exit(code)\n")
    result = subprocess.run(
        [sys.executable, "-c", script, "load-video", str(may_video), "--models-dir", str(shared_models),
         "--cache-dir", str(tmp_path / "cache"), "--preview-mb", "64"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    peak = int(out.rsplit("PEAK_RSS_KB", 1)[1].split()[0]) * 1024
    report = json.loads(out.rsplit("PEAK_RSS_KB", 1)[0])
    assert report["frames"] == 331 and report["cached"] is False
    assert report["preview"]["shape"] == [21, 512, 512, 3]
    assert "21 evenly spaced frames of 331" in report["preview"]["warning"]
    print(f"peak RSS {peak / 2**20:.0f} MiB vs all frames as float32 {MAY_FLOAT32_BYTES / 2**20:.0f} MiB")
    assert peak < 0.6 * MAY_FLOAT32_BYTES


# ------------------------------------------------------------------------------------ frame rate and audio
def test_30fps_to_25fps_picks_nearest_frames_and_keeps_audio_length(tmp_path):
    path = write_video(tmp_path / "thirty.mp4", frames=60, fps=30, audio="aac")
    clip = prepare_clip(path, tmp_path / "cache", crop="none")
    assert clip.num_frames == 50  # ceil((2.0 s) * 25)
    picked = [frame_number_of(f) for f in clip.frames()]
    assert picked == [int(np.floor(k * 30 / 25 + 0.5)) for k in range(50)]  # nearest source frame
    assert clip.audio_waveform().shape == (1, 50 * 16000 // 25)
    assert any("30 fps" in note and "25 fps" in note for note in clip.notes)


def test_start_time_and_max_duration_keep_audio_in_sync(tmp_path):
    path = write_video(tmp_path / "ramp.mkv", frames=60, fps=30, codec="ffv1", audio="pcm", channels=2)
    clip = prepare_clip(path, tmp_path / "cache", crop="none", start_time=0.5, max_duration=0.8)
    assert clip.num_frames == 20 and clip.start_time == 0.5
    assert [frame_number_of(f) for f in clip.frames()] == [int(np.floor((0.5 + k / 25) * 30 + 0.5))
                                                           for k in range(20)]
    wave = clip.audio_waveform()
    assert wave.shape == (2, 12800)  # 20 frames / 25 fps at 16 kHz, both channels
    times = [ramp_time(v, 2.0) for v in wave[0, [0, 6400, 12799]]]
    assert times == pytest.approx([0.5, 0.9, 0.5 + 12799 / 16000], abs=2e-3)  # audio starts at frame 0's time
    assert np.allclose(wave[1] - wave[0], 0.01, atol=2e-4)  # channel order kept


def test_short_audio_track_is_padded_with_silence(tmp_path):
    path = write_video(tmp_path / "short.mkv", frames=50, fps=25, codec="ffv1", audio="pcm", audio_seconds=1.0,
                       audio_signal=np.full((1, 16000), 0.25, np.float32))
    clip = prepare_clip(path, tmp_path / "cache", crop="none")
    wave = clip.audio_waveform()
    assert wave.shape == (1, 32000)
    assert np.allclose(wave[0, :15900], 0.25, atol=1e-3) and np.all(wave[0, 16100:] == 0)


def test_variable_frame_rate_is_resampled_by_time(tmp_path):
    times = [0, 0.03, 0.05, 0.1, 0.2, 0.21, 0.3, 0.33, 0.4, 0.5]
    path = write_video(tmp_path / "vfr.mp4", frames=10, times=times)
    clip = prepare_clip(path, tmp_path / "cache", crop="none")
    picked = [frame_number_of(f) for f in clip.frames()]
    for k, number in enumerate(picked):
        t = k / 25
        distances = [abs(s - t) for s in times]
        assert distances[number] == pytest.approx(min(distances), abs=1e-9), (k, number)
    assert 13 <= len(picked) <= 15
    assert any("variable frame rate" in note for note in clip.notes)


# ------------------------------------------------------------------------------------------- awkward input
def test_no_audio_track_loads_frames_and_says_so(tmp_path):
    clip = prepare_clip(write_video(tmp_path / "silent.mp4", frames=25, fps=25), tmp_path / "cache", crop="none")
    assert clip.num_frames == 25 and not clip.has_audio
    assert clip.audio()["waveform"].shape == (1, 1, 0)
    assert any("no audio track" in note for note in clip.notes)


def test_1280x720_without_crop_keeps_native_frames(tmp_path):
    rng = np.random.default_rng(1)
    noise = rng.integers(0, 255, (720, 1280, 3), dtype=np.uint8)
    path = write_video(tmp_path / "hd.mkv", frames=3, fps=25, width=1280, height=720, codec="ffv1",
                       pix_fmt="bgr0", frame_fn=lambda i: noise)
    clip = prepare_clip(path, tmp_path / "cache", crop="none")
    assert (clip.width, clip.height, clip.crop_box, clip.source_size) == (1280, 720, None, (1280, 720))
    assert np.array_equal(clip.frame(2), noise)  # lossless source: bit-exact


@pytest.mark.parametrize("x, y", [(600, 120), (768, 208)], ids=["middle", "right-edge"])
def test_1280x720_face_crop_contains_and_centres_the_face(tmp_path, may_video, shared_models, x, y):
    face = read_frames(may_video, 1)[0]
    canvas = paste_face_canvas(face, 1280, 720, x, y)
    path = write_video(tmp_path / "hd.mp4", frames=8, fps=25, width=1280, height=720,
                       frame_fn=lambda i: canvas)
    clip = prepare_clip(path, tmp_path / "cache", models_dirs=[shared_models])
    assert (clip.width, clip.height) == (512, 512)
    bx0, by0, bx1, by1 = clip.crop_box
    assert bx1 - bx0 == by1 - by0 and 0 <= bx0 and bx1 <= 1280 and 0 <= by0 and by1 <= 720
    fx0, fy0, fx1, fy1 = _face_box(canvas, shared_models)
    assert bx0 <= fx0 and fx1 <= bx1 and by0 <= fy0 and fy1 <= by1  # the whole face is in the box
    ox0, oy0, ox1, oy1 = _face_box(clip.frame(0), shared_models)
    if x + 512 < 1280:  # room on both sides: centred
        assert abs((ox0 + ox1) / 2 - 256) < 0.08 * 512
    assert 0.35 < (ox1 - ox0) / 512 < 0.6


def test_no_face_is_an_error_naming_frames_and_the_fix(tmp_path, shared_models):
    path = write_video(tmp_path / "wall.mp4", frames=20, fps=25)
    with pytest.raises(InputError, match=r"no face was found in wall\.mp4.*frames 1 \(0\.04 s\).*crop='none'"):
        prepare_clip(path, tmp_path / "cache", models_dirs=[shared_models])
    assert not any((tmp_path / "cache").glob("wall-*"))


def test_truncated_file_keeps_the_decodable_part(tmp_path):
    path = write_video(tmp_path / "long.mp4", frames=70, fps=25, width=160, height=96, audio="aac",
                       faststart=True)
    clip = prepare_clip(truncate_file(path, 0.5), tmp_path / "cache", crop="none")
    assert 5 < clip.num_frames < 70
    assert [frame_number_of(f) for f in clip.frames()] == list(range(clip.num_frames))
    assert clip.audio_waveform().shape[1] == clip.num_frames * 16000 // 25
    assert any("truncated" in note or "stopped" in note for note in clip.notes), clip.notes


def _text_renamed_mp4(folder: Path) -> Path:
    (folder / "notes.mp4").write_text("not a video\n")
    return folder / "notes.mp4"


@pytest.mark.parametrize("make, message", [
    (_text_renamed_mp4, "looks like a text file"),
    (lambda d: truncate_file(write_video(d / "cut.mp4", frames=60), 0.5), "cut_cut.mp4 could not be opened"),
    (lambda d: d / "missing.mp4", "not found"),
])
def test_unreadable_files_are_refused_clearly(tmp_path, make, message):
    with pytest.raises(InputError, match=message):
        prepare_clip(make(tmp_path), tmp_path / "cache", crop="none")


def test_rotation_metadata_is_applied(tmp_path):
    upright = np.zeros((96, 64, 3), np.uint8)
    upright[:16, :16] = 250  # marker top-left of the portrait picture
    path = write_video(tmp_path / "phone.mp4", frames=5, fps=25, width=96, height=64, rotation=90,
                       frame_fn=lambda i: np.rot90(upright, k=-1).copy())
    clip = prepare_clip(path, tmp_path / "cache", crop="none")
    assert (clip.width, clip.height, clip.source_size) == (64, 96, (64, 96))
    assert np.abs(clip.frame(0).astype(int) - upright).mean() < 3
    assert any("rotation" in note for note in clip.notes)


def test_odd_sizes_are_trimmed_to_even(tmp_path):
    path = write_video(tmp_path / "odd.mkv", frames=5, fps=25, width=65, height=47, codec="ffv1")
    clip = prepare_clip(path, tmp_path / "cache", crop="none")
    assert (clip.width, clip.height, clip.crop_box, clip.source_size) == (64, 46, (0, 0, 64, 46), (65, 47))
    source = read_frames(path, 1)[0]
    assert np.abs(clip.frame(0).astype(int) - source[:46, :64]).max() <= 2
    assert any("65x47" in note and "64x46" in note for note in clip.notes)


def test_start_time_past_the_end_is_refused(tmp_path):
    path = write_video(tmp_path / "a.mp4", frames=25, fps=25)
    with pytest.raises(InputError, match="past the end"):
        prepare_clip(path, tmp_path / "cache", crop="none", start_time=5.0)


@pytest.mark.parametrize("kwargs, message", [({"fps": 0}, "fps"), ({"size": 511}, "even"),
                                             ({"crop": "head"}, "crop"), ({"max_duration": -1}, "max_duration")])
def test_bad_settings_are_refused(tmp_path, kwargs, message):
    path = write_video(tmp_path / "a.mp4", frames=5, fps=25)
    with pytest.raises(InputError, match=message):
        prepare_clip(path, tmp_path / "cache", **kwargs)


# ---------------------------------------------------------------------------------------------- disk budget
def test_disk_budget_is_checked_before_decoding(tmp_path, monkeypatch):
    path = write_video(tmp_path / "a.mp4", frames=50, fps=25, width=160, height=96, audio="aac")

    def no_decoding(self, start=0.0):
        raise AssertionError("the budget must be checked before decoding")

    monkeypatch.setattr(VideoReader, "frames", no_decoding)
    need = 50 * 160 * 96 * 3
    with pytest.raises(InputError, match=r"too long for the clip cache budget.*50 frames of 160x96.*max_duration"):
        prepare_clip(path, tmp_path / "cache", crop="none", max_cache_bytes=need // 2)
    from synctalk_lib.media import clip_store

    monkeypatch.setattr(clip_store, "free_bytes", lambda folder: 10**6)
    with pytest.raises(InputError, match="not enough disk space"):
        prepare_clip(path, tmp_path / "cache", crop="none")
    cache = tmp_path / "cache"
    assert not cache.exists() or not [p for p in cache.iterdir() if p.name != ".locks"], "no partial clip is left"


def test_disk_budget_allows_a_clip_that_fits(tmp_path):
    path = write_video(tmp_path / "a.mp4", frames=50, fps=25, width=160, height=96)
    clip = prepare_clip(path, tmp_path / "cache", crop="none", max_cache_bytes=50 * 160 * 96 * 3 + 1000)
    assert clip.num_frames == 50


# --------------------------------------------------------------------------------------------- from images
def test_clip_from_images_roundtrip_and_cache(tmp_path):
    import torch

    rng = np.random.default_rng(2)
    frames_u8 = rng.integers(0, 256, (7, 31, 40, 3), dtype=np.uint8)
    images = torch.from_numpy(frames_u8.astype(np.float32) / 255.0)
    before = images.clone()
    audio = {"waveform": torch.linspace(-0.5, 0.5, 6000).reshape(1, 1, 6000), "sample_rate": 16000}
    clip = clip_from_images(images, audio, 25.0, tmp_path / "cache")
    assert torch.equal(images, before)  # input untouched
    assert (clip.num_frames, clip.height, clip.width, clip.fps) == (7, 30, 40, 25.0)
    assert np.array_equal(np.asarray(clip.frames()), frames_u8[:, :30])
    wave = clip.audio_waveform()
    assert wave.shape == (1, 7 * 16000 // 25)  # trimmed to 0.28 s
    assert np.allclose(wave[0], audio["waveform"][0, 0, :4480].numpy())
    assert any("trimmed" in n for n in clip.notes) and any("31" in n for n in clip.notes)
    again = clip_from_images(images.clone(), audio, 25.0, tmp_path / "cache")
    assert again.root == clip.root
    other = clip_from_images(images, audio, 30.0, tmp_path / "cache")
    assert other.root != clip.root


def test_clip_from_images_without_audio_and_bad_shapes(tmp_path):
    import torch

    clip = clip_from_images(torch.full((2, 8, 8, 3), 0.5), None, 25.0, tmp_path / "cache")
    assert not clip.has_audio and int(clip.frame(1)[0, 0, 0]) == 128
    with pytest.raises(InputError, match=r"\[N, H, W, 3\]"):
        clip_from_images(torch.zeros(2, 8, 8, 4), None, 25.0, tmp_path / "cache")
    with pytest.raises(InputError, match=r"\[N, H, W, 3\]"):
        clip_from_images(torch.zeros(0, 8, 8, 3), None, 25.0, tmp_path / "cache")


# ------------------------------------------------------------------------------------------------- preview
def test_image_preview_all_frames_or_evenly_spaced(tmp_path):
    clip = prepare_clip(write_video(tmp_path / "a.mkv", frames=40, fps=25, codec="ffv1"), tmp_path / "cache",
                        crop="none")
    frames = np.asarray(clip.frames())
    full, warning = image_preview(clip, 10**9)
    assert warning is None and full.dtype.__str__() == "torch.float32"
    assert tuple(full.shape) == (40, 48, 64, 3)
    assert np.allclose(full.numpy(), frames / 255.0, atol=1e-7)
    frame_bytes = 48 * 64 * 3 * 4
    small, warning = image_preview(clip, 5 * frame_bytes)
    assert tuple(small.shape) == (5, 48, 64, 3)
    assert "5 evenly spaced frames of 40" in warning
    picked = [frame_number_of((small[i].numpy() * 255).round()) for i in range(5)]
    assert picked == [0, 10, 20, 29, 39]


def test_unseekable_raw_stream_still_honours_start_time(tmp_path):
    path = write_video(tmp_path / "raw.h264", frames=30, fps=25)  # raw H.264: no container, no seeking
    clip = prepare_clip(path, tmp_path / "cache", crop="none", start_time=0.4)
    assert [frame_number_of(f) for f in clip.frames()] == list(range(10, 30))
