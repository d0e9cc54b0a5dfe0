"""Streaming H.264/AAC MP4 writing with PyAV.

Frames are encoded as they arrive (never all held in memory), so a render of any length costs one batch of RAM.
The audio, known up front, is encoded alongside the video (interleaved, so players can stream the file) and by
default is cut or padded with silence to the video's duration, which keeps lips and sound in sync whatever the
caller hands over. The file appears at its final name only when it is complete: the writer fills a hidden
temporary file next to it and renames it on ``close()``; an exception removes the temporary.

Typical use::

    with VideoWriter("out.mp4", fps=25, audio=wave, sample_rate=16000) as writer:
        for batch in render_batches():        # uint8 [B, H, W, 3] or float 0..1
            writer.write(batch)
    print(video_duration("out.mp4"))          # (video_seconds, audio_seconds)

Odd widths or heights cannot be stored in 4:2:0 H.264, so such frames are padded to the next even size by
repeating their last column / row (edge pixels, no black border); the padding is at most one pixel.
"""
from __future__ import annotations

import os
import uuid
from fractions import Fraction
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from synctalk_lib.errors import InputError

# Sample rates FFmpeg's native AAC encoder accepts; other rates are resampled to the next one up.
AAC_SAMPLE_RATES = (7350, 8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 64000, 88200, 96000)
_CONTAINER_FORMATS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov"}


def as_fraction(fps: float | int | Fraction) -> Fraction:
    """Frame rate as an exact fraction (29.97... becomes 30000/1001, 25.0 becomes 25)."""
    try:
        rate = Fraction(fps).limit_denominator(1001)
    except (TypeError, ValueError) as exc:
        raise InputError(f"fps must be a number, got {fps!r}") from exc
    if rate <= 0:
        raise InputError(f"fps must be positive, got {fps!r}")
    return rate


def to_uint8_frames(frames: Any) -> np.ndarray:
    """Frames as uint8 RGB ``[B, H, W, 3]``.

    Args:
        frames: one frame ``[H, W, C]`` or a batch ``[B, H, W, C]`` with C = 3 (RGB) or 4 (RGBA, alpha dropped);
            uint8, or float 0..1 (values outside are clipped); a numpy array or a torch tensor.
    """
    if hasattr(frames, "detach"):  # torch tensor, without importing torch here
        frames = frames.detach().cpu().numpy()
    frames = np.asarray(frames)
    if frames.ndim == 3:
        frames = frames[None]
    if frames.ndim != 4 or frames.shape[-1] not in (3, 4):
        raise InputError(f"frames must be [B, H, W, 3] or [H, W, 3] RGB, got shape {list(frames.shape)}")
    frames = frames[..., :3]
    if frames.dtype == np.uint8:
        return frames
    if frames.dtype == np.bool_ or np.issubdtype(frames.dtype, np.integer):
        raise InputError(f"integer frames must be uint8 (0..255), got {frames.dtype}; floats must be 0..1")
    return (np.clip(frames.astype(np.float32, copy=False), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _audio_array(audio: Any, sample_rate: int) -> tuple[np.ndarray | None, int]:
    """``(wave [C, T] float32 with C in {1, 2}, sample_rate)`` from an array, a tensor or a ComfyUI AUDIO dict."""
    if audio is None:
        return None, 0
    if isinstance(audio, dict):
        from synctalk_lib.media.audio import from_comfy_audio

        return _audio_array(*from_comfy_audio(audio))
    if hasattr(audio, "detach"):
        audio = audio.detach().cpu().float().numpy()
    wave = np.asarray(audio, dtype=np.float32)
    if wave.ndim == 1:
        wave = wave[None]
    if wave.ndim != 2:
        raise InputError(f"audio must be [channels, samples], got shape {list(wave.shape)}")
    if wave.shape[1] == 0:
        return None, 0
    if int(sample_rate) <= 0:
        raise InputError("audio was given without a sample_rate; pass sample_rate=<Hz>")
    if wave.shape[0] > 2:  # AAC layouts beyond stereo are rarely played back right; mix down
        wave = np.stack([wave[0::2].mean(axis=0), wave[1::2].mean(axis=0)])
    return np.ascontiguousarray(wave), int(sample_rate)


def _aac_rate(sample_rate: int) -> int:
    return next((r for r in AAC_SAMPLE_RATES if r >= sample_rate), AAC_SAMPLE_RATES[-1])


class VideoWriter:
    """Stream RGB frames into an H.264 video (MP4 by default) with optional AAC audio.

    Args:
        path: the file to write (``.mp4``, ``.m4v`` or ``.mov``); folders are created.
        fps: frames per second (float or Fraction).
        audio: optional sound, ``[C, T]`` float32 (numpy or torch, ``[T]`` = mono) or a ComfyUI AUDIO dict.
            More than two channels are mixed down to stereo.
        sample_rate: the audio's sample rate in Hz (ignored for an AUDIO dict, which carries its own).
        crf: x264 constant rate factor, 0 (lossless-ish, large) .. 51 (tiny, ugly); 18 is visually transparent.
        pix_fmt: encoder pixel format; ``yuv420p`` plays everywhere, ``yuv444p`` keeps full colour resolution.
        preset: x264 speed/size trade-off (``ultrafast`` .. ``veryslow``).
        full_audio: keep the whole audio even when it is longer than the video (default: cut to the video's
            duration; audio shorter than the video is always padded with silence).
        metadata: container tags (``str`` values, others JSON-encoded), e.g. ComfyUI's ``prompt``/``workflow``.
        faststart: move the index to the front at close so browsers can play while downloading.
    """

    def __init__(self, path: Path | str, fps: float | Fraction, *, audio: Any = None, sample_rate: int = 0,
                 crf: int = 18, pix_fmt: str = "yuv420p", preset: str = "medium", full_audio: bool = False,
                 metadata: dict[str, Any] | None = None, faststart: bool = True):
        self.path = Path(path)
        fmt = _CONTAINER_FORMATS.get(self.path.suffix.lower())
        if fmt is None:
            raise InputError(f"{self.path.name}: unsupported video file type; use one of "
                             f"{', '.join(sorted(_CONTAINER_FORMATS))}")
        if not 0 <= int(crf) <= 51:
            raise InputError(f"crf must be between 0 and 51, got {crf}")
        self.fps = as_fraction(fps)
        self.crf, self.pix_fmt, self.preset, self.full_audio = int(crf), pix_fmt, preset, bool(full_audio)
        self.wave, self.sample_rate = _audio_array(audio, sample_rate)
        self.frame_count = 0
        self.width = self.height = 0  # of the frames given (before padding to even)
        self._audio_done = 0  # samples of self.wave already sent to the encoder
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # A unique hidden name beside the target (same file system, so the final rename is atomic); PyAV creates
        # it, so it gets the usual permissions rather than mkstemp's owner-only ones.
        self._tmp = self.path.with_name(f".{self.path.stem}.{uuid.uuid4().hex[:12]}.tmp{self.path.suffix}")
        import av

        movflags = "+use_metadata_tags" + ("+faststart" if faststart else "")
        options = {"movflags": movflags}
        try:
            self._container = av.open(str(self._tmp), mode="w", format=fmt, options=options)
        except Exception:
            self._tmp.unlink(missing_ok=True)
            raise
        for key, value in (metadata or {}).items():
            self._container.metadata[str(key)] = value if isinstance(value, str) else _json(value)
        self._video = None
        self._audio = None
        self._closed = False

    # ------------------------------------------------------------------------------------------------ writing
    def write(self, frames: Any) -> None:
        """Append one frame ``[H, W, 3]`` or a batch ``[B, H, W, 3]`` (uint8, or float 0..1; numpy or torch)."""
        if self._closed:
            raise RuntimeError("write() after close()")
        import av

        batch = to_uint8_frames(frames)
        if len(batch) == 0:
            return
        if self._video is None:
            self._open_streams(batch.shape[1], batch.shape[2])
        if batch.shape[1:3] != (self.height, self.width):
            raise InputError(f"frame {self.frame_count}: size {batch.shape[2]}x{batch.shape[1]} differs from the "
                             f"first frame's {self.width}x{self.height}; all frames of a video must match")
        pad_h, pad_w = self.height % 2, self.width % 2
        if pad_h or pad_w:
            batch = np.pad(batch, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
        for image in batch:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            frame.pts = self.frame_count
            frame.time_base = self._video.codec_context.time_base
            self._container.mux(self._video.encode(frame))
            self.frame_count += 1
        self._encode_audio_until(self._video_samples())

    def _open_streams(self, height: int, width: int) -> None:
        from av.video.reformatter import ColorRange, Colorspace

        self.height, self.width = int(height), int(width)
        video = self._container.add_stream("libx264", rate=self.fps)
        video.width, video.height = width + width % 2, height + height % 2
        video.pix_fmt = self.pix_fmt
        video.codec_context.time_base = 1 / self.fps
        # Tag the matrix swscale uses for RGB -> YUV (BT.601, limited range) so players convert back the same way.
        video.codec_context.colorspace = Colorspace.SMPTE170M
        video.codec_context.color_range = ColorRange.MPEG
        video.options = {"crf": str(self.crf), "preset": self.preset}
        self._video = video
        if self.wave is not None:
            layout = "mono" if self.wave.shape[0] == 1 else "stereo"
            self._audio = self._container.add_stream("aac", rate=_aac_rate(self.sample_rate), layout=layout)
            self._audio.bit_rate = 64000 * self.wave.shape[0]

    def _video_samples(self) -> int:
        """Audio samples covering the frames written so far."""
        return int(round(self.frame_count * self.sample_rate / self.fps)) if self.wave is not None else 0

    def _encode_audio_until(self, end: int) -> None:
        """Send audio samples ``[done, end)`` to the encoder, zeros where the given audio has ended."""
        if self._audio is None or end <= self._audio_done:
            return
        import av

        start = self._audio_done
        chunk = self.wave[:, start:end]
        if chunk.shape[1] < end - start:
            chunk = np.pad(chunk, ((0, 0), (0, end - start - chunk.shape[1])))
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk, dtype=np.float32), format="fltp",
                                           layout=self._audio.layout.name)
        frame.sample_rate = self.sample_rate
        frame.pts = start
        frame.time_base = Fraction(1, self.sample_rate)
        self._container.mux(self._audio.encode(frame))
        self._audio_done = end

    # ---------------------------------------------------------------------------------------------- finishing
    def close(self) -> Path:
        """Flush the encoders, finish the file and move it to ``path``; returns ``path``."""
        if self._closed:
            return self.path
        try:
            if self.frame_count == 0:
                raise InputError(f"{self.path.name}: no frames were written, so there is no video to save")
            end = self._video_samples()
            if self.full_audio and self.wave is not None:
                end = max(end, self.wave.shape[1])
            self._encode_audio_until(end)
            self._container.mux(self._video.encode(None))
            if self._audio is not None:
                self._container.mux(self._audio.encode(None))
            self._container.close()
            self._closed = True
            os.replace(self._tmp, self.path)
        except BaseException:
            self.abort()
            raise
        return self.path

    def abort(self) -> None:
        """Stop writing and remove the temporary file; ``path`` is left untouched."""
        if not self._closed:
            self._closed = True
            try:
                self._container.close()
            except Exception:  # the container may be half-initialised; the file is discarded anyway
                pass
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _json(value: Any) -> str:
    import json

    return json.dumps(value)


def write_video(path: Path | str, frames: Iterable[Any], fps: float | Fraction, audio: Any = None,
                sample_rate: int = 0, **options: Any) -> Path:
    """Write every frame (or batch) of ``frames`` to ``path``; ``options`` go to :class:`VideoWriter`."""
    with VideoWriter(path, fps, audio=audio, sample_rate=sample_rate, **options) as writer:
        if hasattr(frames, "shape"):  # a whole array or tensor [N, H, W, 3]: write in batches
            for start in range(0, frames.shape[0], 32):
                writer.write(frames[start:start + 32])
        else:
            for item in frames:
                writer.write(item)
    return Path(path)


def video_duration(path: Path | str) -> tuple[float, float]:
    """``(video_seconds, audio_seconds)`` of a media file from its stream headers; audio is 0.0 when absent."""
    import av

    path = Path(path)
    try:
        container = av.open(str(path))
    except (av.FFmpegError, FileNotFoundError) as exc:
        raise InputError(f"{path.name} could not be opened as a video ({exc})") from exc
    with container:
        return _stream_seconds(container, "video"), _stream_seconds(container, "audio")


def _stream_seconds(container, kind: str) -> float:
    streams = getattr(container.streams, kind)
    if not streams:
        return 0.0
    stream = streams[0]
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if kind == "video" and stream.frames and stream.average_rate:
        return float(stream.frames / stream.average_rate)
    return float(container.duration / 1_000_000) if container.duration else 0.0
