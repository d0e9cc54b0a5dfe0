"""Video probing, streaming decoding, rotation, the frame-rate rule, crop-box geometry and the preview budget."""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from synctalk_lib.errors import InputError
from synctalk_lib.media.crop import face_crop_box, square_box
from synctalk_lib.media.prepare import NearestFrameConverter
from synctalk_lib.media.preview import preview_indices
from synctalk_lib.media.video import VideoReader, apply_rotation, normalize_rotation, probe_video
from tests.media_fixtures import frame_number_of, truncate_file, write_video


# ------------------------------------------------------------------------------------------------- probing
def test_probe_reference_clip(may_video):
    info = probe_video(may_video)
    assert (info.frames, info.fps, info.width, info.height) == (331, 25.0, 512, 512)
    assert info.frames_exact and info.rotation == 0 and not info.variable_frame_rate
    assert info.duration == pytest.approx(13.24, abs=1e-3)
    assert (info.has_audio, info.sample_rate, info.audio_channels, info.codec) == (True, 16000, 1, "h264")


def test_probe_generated_clip(tmp_path):
    path = write_video(tmp_path / "a.mkv", frames=20, fps=30, width=65, height=47, codec="ffv1", audio="pcm",
                       channels=2, sample_rate=22050)
    info = probe_video(path)
    assert (info.width, info.height, info.fps, info.codec) == (65, 47, 30.0, "ffv1")
    assert info.frames == 20 and info.duration == pytest.approx(20 / 30, abs=2e-3)
    assert (info.has_audio, info.sample_rate, info.audio_channels) == (True, 22050, 2)


def test_probe_without_audio(tmp_path):
    info = probe_video(write_video(tmp_path / "silent.mp4", frames=5))
    assert (info.has_audio, info.sample_rate, info.audio_channels) == (False, 0, 0)


def test_probe_rotation_metadata_swaps_width_and_height(tmp_path):
    info = probe_video(write_video(tmp_path / "r.mp4", frames=3, width=64, height=32, rotation=90))
    assert info.rotation == 90 and (info.width, info.height) == (32, 64)
    assert (info.coded_width, info.coded_height) == (64, 32)


@pytest.mark.parametrize("name, content, message", [
    ("notes.mp4", b"hello, this is not a video\n", "looks like a text file"),
    ("noise.mp4", bytes(range(256)) * 40, "could not be opened as a video"),
    ("empty.mp4", b"", "empty"),
])
def test_probe_refuses_non_videos(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(InputError, match=message) as err:
        probe_video(path)
    assert name in str(err.value)


def test_probe_missing_file_names_it(tmp_path):
    with pytest.raises(InputError, match="not found.*missing.mp4"):
        probe_video(tmp_path / "missing.mp4")


def test_audio_only_file_is_refused(tmp_path):
    import av

    path = tmp_path / "speech.mkv"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=16000, layout="mono")
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1600), np.int16), format="s16", layout="mono")
        frame.sample_rate = 16000
        frame.pts = 0
        for packet in [*stream.encode(frame), *stream.encode()]:
            container.mux(packet)
    with pytest.raises(InputError, match="no video track"):
        probe_video(path)


# ------------------------------------------------------------------------------------------------ decoding
def test_reader_streams_every_frame_in_order(tmp_path):
    path = write_video(tmp_path / "a.mp4", frames=40, fps=30)
    with VideoReader(path) as reader:
        seen = [(src.time, frame_number_of(src.image())) for src in reader.frames()]
        assert reader.stopped_early is None
    assert [n for _, n in seen] == list(range(40))
    assert [t for t, _ in seen] == [Fraction(i, 30) for i in range(40)]


def test_reader_seek_starts_at_or_before_the_requested_time(tmp_path):
    path = write_video(tmp_path / "a.mp4", frames=40, fps=30)
    with VideoReader(path) as reader:
        first = next(iter(reader.frames(start=1.0)))
        assert first.time <= 1
        near = reader.frames_near([0.5, 1.0, 1.25])
    assert [frame_number_of(src.image()) for src in near] == [15, 30, 38]  # 1.25 s * 30 = 37.5 -> tie, later


def test_reader_keeps_frames_before_a_truncation(tmp_path):
    path = write_video(tmp_path / "long.mp4", frames=60, fps=25, width=96, height=64, faststart=True)
    cut = truncate_file(path, 0.5)
    with VideoReader(cut) as reader:
        numbers = [frame_number_of(src.image()) for src in reader.frames()]
    assert 5 < len(numbers) < 60
    assert numbers == list(range(len(numbers)))


def test_truncated_mp4_without_index_is_refused(tmp_path):
    path = write_video(tmp_path / "long.mp4", frames=60, fps=25, faststart=False)
    with pytest.raises(InputError, match="long_cut.mp4 could not be opened"):
        probe_video(truncate_file(path, 0.5))


# ------------------------------------------------------------------------------------------------ rotation
def test_rotation_turns_counter_clockwise():
    image = np.zeros((2, 3, 1), np.uint8)
    image[0, 0] = 1  # top-left marker
    turned = apply_rotation(image, 90)
    assert turned.shape == (3, 2, 1)
    assert turned[2, 0, 0] == 1  # counter-clockwise: top-left goes to bottom-left
    assert apply_rotation(image, -90)[0, 1, 0] == 1  # clockwise: top-left goes to top-right
    assert apply_rotation(image, 180)[1, 2, 0] == 1
    assert apply_rotation(image, 0) is image


@pytest.mark.parametrize("degrees, expected", [(0, 0), (90, 90), (-90, 270), (180, 180), (-180, 180),
                                               (270, 270), (89.6, 90), (360, 0)])
def test_normalize_rotation(degrees, expected):
    assert normalize_rotation(degrees) == expected


def test_decoded_frames_are_upright(tmp_path):
    upright = np.zeros((64, 32, 3), np.uint8)  # portrait as shown: marker top-left
    upright[:8, :8] = 255
    stored = np.rot90(upright, k=-1).copy()  # what a phone stores for a 90-degree display matrix
    path = write_video(tmp_path / "phone.mp4", frames=3, width=64, height=32, rotation=90,
                       frame_fn=lambda i: stored)
    with VideoReader(path) as reader:
        image = next(iter(reader.frames())).image()
    assert image.shape == (64, 32, 3)
    assert np.abs(image.astype(int) - upright).mean() < 3


# ------------------------------------------------------------------------------------------ frame-rate rule
def _run_converter(source_times, t0, fps, end, max_frames=None):
    converter = NearestFrameConverter(Fraction(t0), Fraction(fps), max_frames)
    out = []
    for index, t in enumerate(source_times):
        out += converter.push(Fraction(t), index)
        if converter.done:
            return out
    return out + converter.finish(Fraction(end))


def _nearest_reference(source_times, t0, fps, end, max_frames=None):
    """Brute force: for each output time before the end, the nearest source frame (ties to the later)."""
    out, k = [], 0
    times = [Fraction(t) for t in source_times]
    while Fraction(t0) + Fraction(k) / Fraction(fps) < Fraction(end) and (max_frames is None or k < max_frames):
        t = Fraction(t0) + Fraction(k) / Fraction(fps)
        best = min(range(len(times)), key=lambda j: (abs(times[j] - t), -j))
        out.append((k, best))
        k += 1
    return out


@pytest.mark.parametrize("src_fps, dst_fps", [(30, 25), (25, 25), (24, 25), (60, 25), (25, 30), (29.97, 25)])
def test_converter_picks_nearest_frames_for_constant_rates(src_fps, dst_fps):
    src = Fraction(src_fps).limit_denominator(1001)
    times = [Fraction(i) / src for i in range(90)]
    end = Fraction(90) / src
    got = _run_converter(times, 0, dst_fps, end)
    assert got == _nearest_reference(times, 0, dst_fps, end)
    assert len(got) == int(np.ceil(float(end) * dst_fps - 1e-9))


def test_converter_with_variable_times_start_offset_and_cap():
    rng = np.random.default_rng(0)
    times = np.cumsum(rng.uniform(0.01, 0.09, 80)).round(3)
    times = [Fraction(str(t)) for t in times]
    end = times[-1] + Fraction(1, 25)
    assert _run_converter(times, times[0] + Fraction(1, 2), 25, end) == \
        _nearest_reference(times, times[0] + Fraction(1, 2), 25, end)
    capped = _run_converter(times, times[0], 25, end, max_frames=7)
    assert capped == _nearest_reference(times, times[0], 25, end, max_frames=7)
    assert len(capped) == 7


def test_converter_ignores_non_increasing_timestamps():
    got = _run_converter([0, Fraction(1, 25), Fraction(1, 25), Fraction(2, 25)], 0, 25, Fraction(3, 25))
    assert got == [(0, 0), (1, 1), (2, 3)]


# --------------------------------------------------------------------------------------------- crop box
def test_crop_box_is_square_even_inside_and_centred():
    box = face_crop_box([(500, 300, 700, 530)], (1280, 720))
    x0, y0, x1, y1 = box
    side = x1 - x0
    assert side == y1 - y0 and side % 2 == 0
    assert side == pytest.approx(max(200 / 0.45, 230 / 0.52), abs=2)
    assert (x0 + x1) / 2 == pytest.approx(600, abs=1)
    assert (y0 + y1) / 2 == pytest.approx(415 - 0.05 * side, abs=1)  # raised a little for the hair
    assert 0 <= x0 and x1 <= 1280 and 0 <= y0 and y1 <= 720


def test_crop_box_near_an_edge_is_shifted_not_padded():
    x0, y0, x1, y1 = face_crop_box([(1150, 20, 1270, 160)], (1280, 720))
    assert x1 == 1280 and y0 == 0  # pushed back inside
    assert x0 <= 1150 and y1 >= 160  # the face is still in it


def test_crop_box_is_capped_at_the_short_side():
    assert square_box(256, 256, 900, (512, 512)) == (0, 0, 512, 512)
    x0, y0, x1, y1 = square_box(640, 360, 2000, (1281, 721))
    assert (x1 - x0, y1 - y0) == (720, 720) and x1 <= 1281 and y1 <= 721


def test_crop_box_grows_with_head_motion():
    still = face_crop_box([(100, 100, 200, 220)] * 3, (1920, 1080))
    moving = face_crop_box([(100, 100, 200, 220), (160, 100, 260, 220), (220, 100, 320, 220)], (1920, 1080))
    assert (moving[2] - moving[0]) - (still[2] - still[0]) == pytest.approx(120, abs=2)
    assert (moving[0] + moving[2]) / 2 == pytest.approx(210, abs=1)


# ---------------------------------------------------------------------------------------------- preview
def test_preview_indices_fit_the_budget():
    frame = 512 * 512 * 3 * 4
    assert preview_indices(331, frame, 331 * frame).tolist() == list(range(331))
    picked = preview_indices(331, frame, 64 * 2**20)
    assert len(picked) == 21 and picked[0] == 0 and picked[-1] == 330
    assert np.all(np.diff(picked) >= 15) and np.all(np.diff(picked) <= 17)  # evenly spaced
    assert preview_indices(331, frame, 1).tolist() == [0]
    assert preview_indices(0, frame, 10**9).tolist() == []
