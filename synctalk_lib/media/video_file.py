"""A video file on disk behaving like ComfyUI's ``VIDEO`` (``VideoInput``), for use outside ComfyUI.

ComfyUI's core video nodes (SaveVideo, GetVideoComponents) only call a handful of methods on a ``VIDEO`` value;
:class:`VideoFile` implements the same ones with PyAV, so library code and the headless workflow runner can hand
file-backed videos around without ComfyUI. Inside ComfyUI the pack uses ComfyUI's own ``VideoFromFile``
(``nodes.bridge.video_from_file``), which has the same methods.

Nothing is decoded until asked: dimensions and duration come from the headers, ``save_to`` copies the encoded
streams (no re-encoding) when the requested format and codec allow it.
"""
from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from synctalk_lib.errors import InputError

# Tags the MP4 muxer writes itself; copying them as custom tags would only duplicate them.
_TECHNICAL_TAGS = {"major_brand", "minor_version", "compatible_brands", "encoder"}


@dataclass
class VideoComponents:
    """What ``get_components()`` returns (same fields as ComfyUI's ``VideoComponents``).

    Attributes:
        images: ``[T, H, W, 3]`` float32 0..1 torch tensor (IMAGE layout).
        frame_rate: frames per second as a ``Fraction``.
        audio: ComfyUI AUDIO dict ``{"waveform": [1, C, S], "sample_rate"}`` or ``None`` without an audio track.
        metadata: the container's tags.
    """

    images: Any
    frame_rate: Fraction
    audio: dict | None = None
    metadata: dict | None = None


def _format_name(value: Any) -> str:
    """``"auto"``/``"mp4"``/``"h264"`` from a string or a ComfyUI str-Enum member."""
    return str(getattr(value, "value", value)).lower()


class VideoFile:
    """A video file used as a ComfyUI ``VIDEO`` value (duck-typed ``VideoInput``)."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        if not self.path.is_file():
            raise InputError(f"video file not found: {self.path}")

    def __repr__(self) -> str:
        return f"VideoFile({str(self.path)!r})"

    def _open(self):
        import av

        try:
            return av.open(str(self.path))
        except av.FFmpegError as exc:
            raise InputError(f"{self.path.name} could not be opened as a video ({exc})") from exc

    # ------------------------------------------------------------------------------------------ header queries
    def get_stream_source(self) -> str:
        """The file path (what PyAV / FFmpeg should open)."""
        return str(self.path)

    def get_dimensions(self) -> tuple[int, int]:
        """``(width, height)`` of the first video stream."""
        with self._open() as container:
            if not container.streams.video:
                raise InputError(f"{self.path.name} has no video stream")
            stream = container.streams.video[0]
            return int(stream.width), int(stream.height)

    def get_duration(self) -> float:
        """Duration in seconds (the container's, else the video stream's)."""
        with self._open() as container:
            if container.duration is not None:
                return float(container.duration / 1_000_000)
            stream = container.streams.video[0] if container.streams.video else None
            if stream is not None and stream.duration is not None:
                return float(stream.duration * stream.time_base)
        raise InputError(f"could not determine the duration of {self.path.name}")

    def get_container_format(self) -> str:
        """FFmpeg's name for the container, e.g. ``"mov,mp4,m4a,3gp,3g2,mj2"``."""
        with self._open() as container:
            return container.format.name

    def get_frame_rate(self) -> Fraction:
        with self._open() as container:
            if not container.streams.video:
                raise InputError(f"{self.path.name} has no video stream")
            stream = container.streams.video[0]
            return Fraction(stream.average_rate or stream.guessed_rate or 1)

    # ---------------------------------------------------------------------------------------------- decoding
    def get_components(self) -> VideoComponents:
        """Decode every frame (float32 IMAGE ``[T, H, W, 3]``) and the first audio track.

        Peak memory is the float32 result plus the frames as uint8 (1.25x the result), not 2x. The audio starts
        at the first video frame's time, so audio sample ``round(i / fps * rate)`` plays with frame ``i``.
        """
        import torch

        from synctalk_lib.media.audio import decode_audio_stream, to_comfy_audio

        with self._open() as container:
            if not container.streams.video:
                raise InputError(f"{self.path.name} has no video stream")
            stream = container.streams.video[0]
            rate = Fraction(stream.average_rate or stream.guessed_rate or 1)
            start = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
            frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
            metadata = dict(container.metadata)
        if not frames:
            raise InputError(f"{self.path.name}: the video stream has no decodable frames")
        images = torch.empty((len(frames), *frames[0].shape), dtype=torch.float32)
        for i, frame in enumerate(frames):
            images[i] = torch.from_numpy(frame).to(torch.float32).div_(255.0)
            frames[i] = None  # release the uint8 copy as we go
        audio = None
        with self._open() as container:
            if container.streams.audio:
                wave, sample_rate = decode_audio_stream(container, container.streams.audio[0], time_origin=start)
                if wave.shape[1] > 0:
                    audio = to_comfy_audio(wave, sample_rate)
        return VideoComponents(images=images, frame_rate=rate, audio=audio, metadata=metadata)

    # ------------------------------------------------------------------------------------------------ saving
    def save_to(self, path: Any, format: Any = "auto", codec: Any = "auto", metadata: dict | None = None) -> None:
        """Write the video to ``path`` (a path or a writable binary file object).

        The result is always MP4. When the source is an MP4/MOV file and ``codec`` is ``auto`` or the source's
        codec, the encoded streams are copied (no quality loss, fast); otherwise the video is re-encoded as
        H.264/AAC. ``metadata`` keys
        are added as container tags (non-string values JSON-encoded), over the source's own tags.
        """
        fmt, want_codec = _format_name(format), _format_name(codec)
        if fmt not in ("auto", "mp4"):
            raise InputError(f"format {fmt!r} is not supported; use 'auto' or 'mp4'")
        if want_codec not in ("auto", "h264"):
            raise InputError(f"codec {want_codec!r} is not supported; use 'auto' or 'h264'")
        if not isinstance(path, (str, os.PathLike)):  # file object: write a temporary file, then copy its bytes
            tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"synctalk_{uuid.uuid4().hex}.mp4"
            try:
                self.save_to(tmp, format, codec, metadata)
                with open(tmp, "rb") as fh:
                    shutil.copyfileobj(fh, path)
            finally:
                tmp.unlink(missing_ok=True)
            return
        target = Path(path)
        with self._open() as container:
            source_format = container.format.name.split(",")
            source_codec = container.streams.video[0].codec_context.name if container.streams.video else None
        # Stream copy only between MP4-family files: other containers (WebM, MKV, AVI) store codec headers and
        # timestamps differently and are re-encoded instead.
        can_copy = "mp4" in source_format and want_codec in ("auto", source_codec)
        if can_copy:
            self._remux(target, metadata)
        else:
            self._reencode(target, metadata)

    def _tags(self, source_tags: dict, metadata: dict | None) -> dict[str, str]:
        tags = {k: v for k, v in source_tags.items() if k not in _TECHNICAL_TAGS}
        for key, value in (metadata or {}).items():
            tags[str(key)] = value if isinstance(value, str) else json.dumps(value)
        return tags

    def _remux(self, target: Path, metadata: dict | None) -> None:
        """Copy the encoded video/audio packets into a new MP4 with merged tags (atomic)."""
        import av

        from synctalk_lib.paths import atomic_path

        with self._open() as source, atomic_path(target) as tmp:
            with av.open(str(tmp), mode="w", format="mp4",
                         options={"movflags": "+use_metadata_tags+faststart"}) as out:
                for key, value in self._tags(dict(source.metadata), metadata).items():
                    out.metadata[key] = value
                mapping = {}
                for stream in list(source.streams.video[:1]) + list(source.streams.audio[:1]):
                    mapping[stream.index] = out.add_stream_from_template(template=stream)
                for packet in source.demux(*[s for s in source.streams if s.index in mapping]):
                    if packet.dts is None:  # demuxer flush packets carry no data
                        continue
                    packet.stream = mapping[packet.stream.index]
                    out.mux(packet)

    def _reencode(self, target: Path, metadata: dict | None) -> None:
        """Decode and encode again as H.264/AAC MP4, streaming frame by frame."""
        from synctalk_lib.media.audio import decode_audio_stream
        from synctalk_lib.media.video_writer import VideoWriter

        with self._open() as container:
            tags = self._tags(dict(container.metadata), metadata)
            wave, sample_rate = None, 0
            if container.streams.audio:
                wave, sample_rate = decode_audio_stream(container, container.streams.audio[0])
        with self._open() as container:
            stream = container.streams.video[0]
            fps = Fraction(stream.average_rate or stream.guessed_rate or 25)
            with VideoWriter(target, fps, audio=wave, sample_rate=sample_rate, metadata=tags, full_audio=True) as w:
                for frame in container.decode(stream):
                    w.write(frame.to_ndarray(format="rgb24"))


def read_frames(path: Path | str) -> tuple[np.ndarray, Fraction]:
    """All frames of a (small) video as uint8 ``[T, H, W, 3]`` and its frame rate (for tests and previews)."""
    video = VideoFile(path)
    with video._open() as container:
        stream = container.streams.video[0]
        rate = Fraction(stream.average_rate or stream.guessed_rate or 1)
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
    return np.stack(frames), rate
