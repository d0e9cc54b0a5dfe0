"""Video probing and streaming decoding with PyAV.

``probe_video(path)`` reads a file's header (and its first frame, for the rotation) into a ``VideoInfo``.
``VideoReader`` decodes frames one at a time, in presentation order, with the rotation metadata applied, so a
long video never sits in memory. Decoding errors in the middle of a file (a truncated download, a damaged
sector) end the stream early instead of failing, and ``VideoReader.stopped_early`` says where and why; a file
where not a single frame decodes raises ``InputError``.

Rotation: phones store portrait video as landscape pixels plus a display matrix. FFmpeg reports the matrix as a
counter-clockwise angle (``VideoFrame.rotation``); ``apply_rotation`` turns the pixels by that angle, so frames
come out the way players show them and every size in this module is the displayed size.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import numpy as np

from synctalk_lib.errors import InputError, require

log = logging.getLogger("synctalk")

# Source frame intervals that differ by more than this fraction of the median interval mark variable frame rate.
VFR_TOLERANCE = 0.25


@dataclass(frozen=True)
class VideoInfo:
    """What a video file holds, as players show it (sizes after rotation)."""

    frames: int
    """Number of video frames: from the container header when it states it, else estimated as duration x fps."""
    fps: float
    """Average frame rate (frames / duration); for variable frame rate the mean."""
    width: int
    height: int
    rotation: int
    """Counter-clockwise display rotation in degrees (0, 90, 180 or 270) that was applied to width/height."""
    variable_frame_rate: bool
    """True when the container's average and nominal frame rates disagree (a hint, decoding measures it)."""
    duration: float
    """Seconds of video from the first frame to the end of the last one."""
    has_audio: bool
    sample_rate: int
    """Audio sample rate in Hz (0 without audio)."""
    audio_channels: int
    codec: str
    """Video codec name as FFmpeg calls it (``h264``, ``hevc``, ``vp9``, ...)."""
    frames_exact: bool = False
    """True when ``frames`` comes from the container header rather than an estimate."""
    start_time: float = 0.0
    """Presentation time of the first video frame in the container, in seconds (usually 0)."""
    coded_width: int = 0
    """Width of the stored pixels before rotation."""
    coded_height: int = 0


def _av():
    return require("av", "Video decoding (PyAV)")


def open_container(path: Path | str):
    """Open ``path`` with PyAV, translating failures into ``InputError`` that name the file and the fix."""
    av = _av()
    path = Path(path)
    if not path.exists():
        raise InputError(f"video file not found: {path}")
    if not path.is_file():
        raise InputError(f"{path} is a folder, not a video file")
    if path.stat().st_size == 0:
        raise InputError(f"{path.name} is empty (0 bytes); copy the video again")
    try:
        container = av.open(str(path))
    except av.FFmpegError as exc:
        kind = "It looks like a text file, not a video" if _looks_like_text(path) else \
            "It is not a video file FFmpeg can read, or it is damaged (an MP4 cut off before its index was " \
            "written cannot be opened)"
        raise InputError(f"{path.name} could not be opened as a video ({exc.strerror or exc}). {kind}. Choose a "
                         "video file, or re-export / re-download it as MP4 (H.264).") from exc
    if not container.streams.video:
        container.close()
        raise InputError(f"{path.name} has no video track (is it an audio file?); choose a video file")
    return container


def _looks_like_text(path: Path) -> bool:
    with path.open("rb") as fh:
        head = fh.read(512)
    if b"\0" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def normalize_rotation(degrees: float) -> int:
    """The nearest multiple of 90 in ``0, 90, 180, 270`` (display matrices can hold any angle; we turn only by
    quarter turns)."""
    return int(round(float(degrees) / 90.0)) % 4 * 90


def apply_rotation(image: np.ndarray, degrees: int) -> np.ndarray:
    """Turn ``image`` ``[H, W, C]`` counter-clockwise by ``degrees`` (a multiple of 90), as FFmpeg's display matrix
    asks. Returns a view, not a copy."""
    quarter_turns = normalize_rotation(degrees) // 90
    return np.rot90(image, k=quarter_turns) if quarter_turns else image


def _frame_rotation(frame) -> int:
    return normalize_rotation(getattr(frame, "rotation", 0) or 0)


def _seconds(value, time_base) -> float | None:
    return None if value is None or time_base is None else float(value * time_base)


def probe_video(path: Path | str) -> VideoInfo:
    """Read the container header of ``path`` (and decode its first frame for the rotation).

    Raises:
        InputError: missing file, not a video, no video track, or a video whose first frame does not decode.
    """
    path = Path(path)
    container = open_container(path)
    with container:
        return _probe_open(container, path)


def _probe_open(container, path: Path) -> VideoInfo:
    av = _av()
    stream = container.streams.video[0]
    average = stream.average_rate
    nominal = stream.guessed_rate or stream.base_rate
    fps = float(average or nominal or 0.0)
    start = _seconds(stream.start_time, stream.time_base) or 0.0
    duration = _seconds(stream.duration, stream.time_base)
    if not duration and container.duration:
        duration = container.duration / 1_000_000 - max(start, 0.0)
    frames_exact = bool(stream.frames)
    frames = int(stream.frames) if stream.frames else 0
    if not fps and frames and duration:
        fps = frames / duration
    if not fps:
        fps = 25.0
    if not duration:
        duration = frames / fps if frames else 0.0
    if not frames:
        frames = int(round(duration * fps)) if duration else 0
    variable = bool(average and nominal and abs(float(average) / float(nominal) - 1.0) > 0.01)

    # The display rotation lives in frame side data; decoding one frame is the reliable way to read it.
    rotation = 0
    try:
        first = next(container.decode(stream), None)
    except av.FFmpegError as exc:
        raise InputError(f"{path.name}: the first video frame could not be decoded ({exc.strerror or exc}); the "
                         "file is damaged or uses a codec this FFmpeg build lacks. Re-export it as MP4 (H.264)."
                         ) from exc
    if first is None:
        raise InputError(f"{path.name} holds a video track without any decodable frame; re-export the video")
    rotation = _frame_rotation(first)
    if first.time is not None:
        start = float(first.time)
    coded_w, coded_h = int(first.width), int(first.height)
    width, height = (coded_h, coded_w) if rotation in (90, 270) else (coded_w, coded_h)

    audio = container.streams.audio[0] if container.streams.audio else None
    return VideoInfo(
        frames=frames, fps=fps, width=width, height=height, rotation=rotation, variable_frame_rate=variable,
        duration=float(duration), has_audio=audio is not None,
        sample_rate=int(audio.rate or audio.codec_context.sample_rate or 0) if audio else 0,
        audio_channels=int(audio.channels or 0) if audio else 0, codec=stream.codec_context.name,
        frames_exact=frames_exact, start_time=start, coded_width=coded_w, coded_height=coded_h)


@dataclass(frozen=True)
class SourceFrame:
    """One decoded source frame, still in FFmpeg's pixel format until ``image()`` is called (so frames that the
    frame-rate conversion drops cost no colour conversion)."""

    time: Fraction
    """Presentation time in container seconds (exact)."""
    duration: Fraction | None
    """How long the frame is shown, when the container says so."""
    number: int
    """Position among the frames this reader decoded (0 = first decoded, after any seek)."""
    frame: object
    """The ``av.VideoFrame``."""
    coded_size: tuple[int, int] | None = None
    """(width, height) to rescale to when the stream changed size mid-way (None: keep the frame's size)."""

    def image(self) -> np.ndarray:
        """RGB uint8 ``[H, W, 3]`` as displayed (rotation applied); a read-only view may be returned."""
        kwargs = {} if self.coded_size is None else {"width": self.coded_size[0], "height": self.coded_size[1]}
        pixels = self.frame.to_ndarray(format="rgb24", **kwargs)
        return apply_rotation(pixels, _frame_rotation(self.frame))


class VideoReader:
    """Streaming access to one video file. Use as a context manager::

        with VideoReader(path) as reader:
            for source in reader.frames(start=2.0):
                rgb = source.image()

    ``info`` is the probe result. After ``frames()`` ends, ``stopped_early`` holds a sentence when a decoding
    error cut the stream short (``None`` when the file decoded to its end) and ``decoded`` the number of frames
    it yielded. Streams that cannot seek (raw ``.h264``) are reopened and decoded from the start instead.
    """

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self._container = open_container(self.path)
        self._container.streams.video[0].thread_type = "AUTO"  # must be set before the decoder opens
        try:
            self.info = _probe_open(self._container, self.path)
        except BaseException:
            self._container.close()
            raise
        self.stopped_early: str | None = None
        self.decoded = 0

    # --- sequential decoding
    def frames(self, start: float = 0.0) -> Iterator[SourceFrame]:
        """Decode frames in presentation order, beginning at the last keyframe at or before ``start`` seconds
        (container time). Frames before ``start`` are yielded too; the caller decides what to keep."""
        av = _av()
        self.stopped_early = None
        self.decoded = 0
        self._seek(start)
        container = self._container
        stream = container.streams.video[0]
        coded_size: tuple[int, int] | None = None
        decoder = container.decode(stream)
        number = 0
        last_time: Fraction | None = None
        while True:
            try:
                frame = next(decoder)
            except StopIteration:
                break
            except av.FFmpegError as exc:
                where = f"{float(last_time):.2f} s (after {number} decoded frames)" if last_time is not None \
                    else "the first frame"
                self.stopped_early = (f"decoding stopped at {where}: {exc.strerror or exc}. The file is "
                                      "damaged or truncated; the frames before that point were kept.")
                break
            if frame.pts is None:  # raw streams without timestamps: count at the nominal rate
                time = Fraction(number) / Fraction(self.info.fps).limit_denominator(1001000)
            else:
                time = frame.pts * frame.time_base
            size = (frame.width, frame.height)
            if coded_size is None:
                coded_size = size
            duration = frame.duration * frame.time_base if frame.duration else None
            last_time = time
            yield SourceFrame(time=time, duration=duration, number=number, frame=frame,
                              coded_size=None if size == coded_size else coded_size)
            number += 1
            self.decoded = number

    def _seek(self, start: float) -> None:
        """Position the demuxer at the last keyframe at or before ``start`` (container seconds)."""
        av = _av()
        stream = self._container.streams.video[0]
        if start > self.info.start_time + 1e-6 and stream.time_base:
            try:
                self._container.seek(int(math.floor(start / stream.time_base)), stream=stream, backward=True,
                                     any_frame=False)
                return
            except av.FFmpegError:
                pass  # not seekable: decode from the beginning, the caller skips what comes before start
        self._rewind()

    def _rewind(self) -> None:
        av = _av()
        try:
            self._container.seek(0)
            return
        except av.FFmpegError:  # raw streams (.h264, some .ts) cannot seek: open the file again
            pass
        self._container.close()
        self._container = open_container(self.path)
        self._container.streams.video[0].thread_type = "AUTO"

    # --- a few frames by time, for face detection before the main pass
    def frames_near(self, times: list[float]) -> list[SourceFrame | None]:
        """The decoded frame nearest to each time (container seconds), by seeking to each one.

        Costs at most one keyframe interval of decoding per time. ``None`` where nothing could be decoded.
        """
        av = _av()
        found: list[SourceFrame | None] = []
        for t in times:
            target = Fraction(t).limit_denominator(10**9)
            best: SourceFrame | None = None
            try:
                for source in self.frames(start=t):
                    if best is None or abs(source.time - target) <= abs(best.time - target):  # tie: later
                        best = source
                    if source.time >= target:
                        break
            except av.FFmpegError:
                pass
            found.append(best)
        self.stopped_early = None
        return found

    # --- audio
    def read_audio(self, start: float, duration: float, errors: list[str] | None = None) -> tuple[np.ndarray, int]:
        """Audio from ``start`` (container seconds) for ``duration`` seconds, zero-padded where the track is
        shorter, at its native rate and channel count: ``([C, T] float32, sample_rate)``; ``[1, 0]`` and 0
        without an audio track. A decoding error ends the audio there (message appended to ``errors``)."""
        from synctalk_lib.media.audio import decode_audio_stream

        av = _av()
        if not self.info.has_audio:
            return np.zeros((1, 0), np.float32), 0
        with av.open(str(self.path)) as container:
            stream = container.streams.audio[0]
            if start > 1.0 and stream.time_base:
                try:  # audio frames are all keyframes; land a second early and let the decoder trim
                    container.seek(int((start - 1.0) / stream.time_base), stream=stream, backward=True)
                except av.FFmpegError:
                    container.seek(0)
            return decode_audio_stream(container, stream, start=start, duration=duration, errors=errors)

    def close(self) -> None:
        self._container.close()

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def measure_frame_intervals(times: list[Fraction]) -> tuple[float, float, float]:
    """(min, median, max) interval in seconds between consecutive presentation times; zeros if fewer than 2."""
    if len(times) < 2:
        return 0.0, 0.0, 0.0
    deltas = np.diff(np.array([float(t) for t in times], dtype=np.float64))
    deltas = deltas[deltas > 0]
    if deltas.size == 0:
        return 0.0, 0.0, 0.0
    return float(deltas.min()), float(np.median(deltas)), float(deltas.max())


def is_variable_rate(intervals: tuple[float, float, float]) -> bool:
    low, median, high = intervals
    return median > 0 and (high - low) > VFR_TOLERANCE * median
