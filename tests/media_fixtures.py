"""Small synthetic test videos written with PyAV (no external files, a few KB each).

By default every frame is a flat grey whose level encodes its frame number (``index_level``), so a test can read
back which source frame landed in which output frame (``frame_number_of``). Other tests pass ``frame_fn`` to draw
their own content (e.g. a May frame pasted into a 1280x720 canvas).

Usage::

    from tests.media_fixtures import write_video, frame_number_of
    path = write_video(tmp_path / "a.mp4", frames=60, fps=30, audio="aac")
"""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Callable, Literal, Sequence

import numpy as np

LEVEL_BASE = 16
LEVEL_STEP = 3
MAX_INDEXED_FRAMES = (235 - LEVEL_BASE) // LEVEL_STEP + 1  # 74: grey levels stay inside video range


def index_level(index: int) -> int:
    """The grey level that encodes frame ``index`` (0 .. MAX_INDEXED_FRAMES - 1)."""
    if not 0 <= index < MAX_INDEXED_FRAMES:
        raise ValueError(f"frame {index} cannot be encoded as a grey level (max {MAX_INDEXED_FRAMES - 1})")
    return LEVEL_BASE + LEVEL_STEP * index


def index_frame(index: int, width: int, height: int) -> np.ndarray:
    """A flat ``[H, W, 3]`` uint8 frame whose grey level encodes ``index``."""
    return np.full((height, width, 3), index_level(index), dtype=np.uint8)


def frame_number_of(image: np.ndarray) -> int:
    """Decode the frame number from a (possibly lossy-compressed, resized or cropped) ``index_frame``."""
    level = float(np.median(np.asarray(image, dtype=np.float32)))
    return int(round((level - LEVEL_BASE) / LEVEL_STEP))


def audio_ramp(seconds: float, sample_rate: int, channels: int = 1) -> np.ndarray:
    """``[C, T]`` float32 rising linearly from -0.5 to 0.5 over ``seconds``: the value tells the time
    (``ramp_time``). Channel c is offset by ``0.01 * c`` so channel order is checkable."""
    count = int(round(seconds * sample_rate))
    ramp = np.linspace(-0.5, 0.5, count, endpoint=False, dtype=np.float64)
    return np.stack([ramp + 0.01 * c for c in range(channels)]).astype(np.float32)


def ramp_time(value: float, seconds: float) -> float:
    """Inverse of ``audio_ramp`` on channel 0: the source time of a sample value."""
    return (float(value) + 0.5) * seconds


def write_video(path: Path, *, frames: int = 30, fps: float = 30.0, width: int = 64, height: int = 48,
                codec: str = "libx264", pix_fmt: str | None = None,
                audio: Literal["aac", "pcm", None] = None, audio_seconds: float | None = None,
                sample_rate: int = 16000, channels: int = 1, audio_signal: np.ndarray | None = None,
                rotation: int = 0, times: Sequence[float] | None = None, faststart: bool = False,
                frame_fn: Callable[[int], np.ndarray] | None = None) -> Path:
    """Encode a test video.

    Args:
        path: output file; the container follows the suffix (.mp4, .mkv, .mov).
        frames: number of frames.
        fps: nominal rate; frame ``i`` is shown at ``i / fps`` unless ``times`` is given.
        width, height: frame size as stored (before rotation).
        codec: ``libx264`` (lossless, qp 0), ``ffv1`` (lossless, any size), ``mpeg4``, ...
        audio: ``"aac"`` (mp4/mov), ``"pcm"`` (16-bit, mkv/mov: exact samples), or None for no audio track.
        audio_seconds: audio length; default ``frames / fps``.
        audio_signal: ``[C, T]`` float32 to encode; default ``audio_ramp``.
        rotation: display rotation in degrees (counter-clockwise, like FFmpeg's display matrix).
        times: presentation time of every frame in seconds (variable frame rate), millisecond precision.
        faststart: put the MP4 index first (a truncated copy then still opens and decodes partly).
        frame_fn: ``frame_fn(i) -> [height, width, 3] uint8``; default ``index_frame``.
    """
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    options = {"movflags": "faststart"} if faststart else {}
    container = av.open(str(path), mode="w", options=options)
    rate = Fraction(fps).limit_denominator(1001000)
    stream = container.add_stream(codec, rate=rate)
    stream.width, stream.height = width, height
    stream.pix_fmt = pix_fmt or ("yuv420p" if codec in ("libx264", "mpeg4") else "yuv444p" if codec == "ffv1"
                                 else "yuv420p")
    if codec == "libx264":
        stream.options = {"qp": "0", "preset": "ultrafast"}
    time_base = Fraction(1, 1000) if times is not None else 1 / rate
    stream.time_base = time_base
    stream.codec_context.time_base = time_base
    if rotation:
        stream.set_display_rotation(rotation)

    audio_stream = None
    if audio is not None:
        layout = {1: "mono", 2: "stereo"}[channels]
        if audio == "aac":
            audio_stream = container.add_stream("aac", rate=sample_rate, layout=layout)
        else:
            audio_stream = container.add_stream("pcm_s16le", rate=sample_rate, layout=layout)
        seconds = audio_seconds if audio_seconds is not None else frames / fps
        signal = audio_signal if audio_signal is not None else audio_ramp(seconds, sample_rate, channels)

    draw = frame_fn or (lambda i: index_frame(i, width, height))
    for i in range(frames):
        image = draw(i)
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
        frame.pts = int(round(times[i] * 1000)) if times is not None else i
        frame.time_base = time_base
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)

    if audio_stream is not None:
        _encode_audio(container, audio_stream, signal, sample_rate, audio)
    container.close()
    return path


def _encode_audio(container, stream, signal: np.ndarray, sample_rate: int, kind: str) -> None:
    import av

    layout = {1: "mono", 2: "stereo"}[signal.shape[0]]
    chunk = 1024
    for start in range(0, signal.shape[1], chunk):
        part = signal[:, start:start + chunk]
        if kind == "aac":
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(part, dtype=np.float32), format="fltp",
                                               layout=layout)
        else:
            packed = np.round(np.clip(part, -1, 1) * 32767).astype(np.int16).T.reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(packed), format="s16", layout=layout)
        frame.sample_rate = sample_rate
        frame.pts = start
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)


def truncate_file(path: Path, fraction: float, target: Path | None = None) -> Path:
    """Copy the first ``fraction`` of ``path``'s bytes to ``target`` (default: ``<stem>_cut<suffix>``)."""
    data = Path(path).read_bytes()
    target = target or path.with_name(f"{path.stem}_cut{path.suffix}")
    target.write_bytes(data[:int(len(data) * fraction)])
    return target


def paste_face_canvas(face: np.ndarray, width: int, height: int, x: int, y: int, background: int = 90
                      ) -> np.ndarray:
    """``face`` ``[h, w, 3]`` pasted at (x, y) into a flat ``height x width`` canvas."""
    canvas = np.full((height, width, 3), background, dtype=np.uint8)
    h, w = face.shape[:2]
    canvas[y:y + h, x:x + w] = face
    return canvas


def read_frames(path: Path, count: int | None = None) -> list[np.ndarray]:
    """The first ``count`` frames of a video as RGB uint8 (no rotation applied)."""
    import av

    out = []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            out.append(frame.to_ndarray(format="rgb24"))
            if count is not None and len(out) >= count:
                break
    return out
