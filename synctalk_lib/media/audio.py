"""Audio decoding with PyAV (any container/codec FFmpeg reads) into float32 ``[channels, samples]``."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from synctalk_lib.errors import InputError


def _frame_to_float(frame) -> np.ndarray:
    """One decoded AudioFrame as float32 ``[channels, samples]`` whatever its sample format (packed/planar/int)."""
    data = frame.to_ndarray()
    fmt = frame.format
    channels = len(frame.layout.channels)
    if not fmt.is_planar:
        data = data.reshape(-1, channels).T  # packed: samples interleaved
    if data.dtype == np.uint8:
        data = (data.astype(np.float32) - 128.0) / 128.0
    elif np.issubdtype(data.dtype, np.integer):
        data = data.astype(np.float32) / float(np.iinfo(data.dtype).max + 1)
    return data.astype(np.float32, copy=False)


def decode_audio_stream(container, stream, *, start: float = 0.0, duration: float | None = None,
                        time_origin: float = 0.0, errors: list[str] | None = None) -> tuple[np.ndarray, int]:
    """Decode ``stream`` of an open PyAV ``container`` between ``start`` and ``start + duration`` seconds.

    Times are measured from ``time_origin`` (the video's first frame when audio is kept in sync with video), so
    the returned samples start exactly at ``start``: leading samples are dropped, or zeros are prepended when the
    audio track begins later. Decoding stops once ``start + duration`` is reached. Returns
    ``(wave [C, T] float32, sample_rate)``.

    With ``errors`` given, a decoding error (a damaged or truncated file) ends the audio where it happened and a
    sentence is appended to ``errors``; without it the error is raised.
    """
    import av

    rate = int(stream.rate or stream.codec_context.sample_rate)
    chunks: list[np.ndarray] = []
    first_time: float | None = None
    decoded = 0
    stop_at = None if duration is None else start + duration
    frames = container.decode(stream)
    while True:
        try:
            frame = next(frames)
        except StopIteration:
            break
        except av.FFmpegError as exc:
            if errors is None:
                raise
            errors.append(f"audio decoding stopped after {decoded / rate:.2f} s of the track "
                          f"({exc.strerror or exc}); the rest is silence")
            break
        if frame.pts is not None and first_time is None:
            first_time = float(frame.pts * frame.time_base) - time_origin
        elif first_time is None:
            first_time = 0.0
        chunks.append(_frame_to_float(frame))
        decoded += frame.samples
        if stop_at is not None and first_time + decoded / rate >= stop_at:
            break
    if not chunks:
        return np.zeros((max(stream.channels, 1), 0), dtype=np.float32), rate
    wave = np.concatenate(chunks, axis=1)
    offset = int(round(((first_time or 0.0) - start) * rate))
    if offset > 0:
        wave = np.concatenate([np.zeros((wave.shape[0], offset), np.float32), wave], axis=1)
    elif offset < 0:
        wave = wave[:, -offset:]
    if duration is not None:
        n = int(round(duration * rate))
        wave = wave[:, :n] if wave.shape[1] >= n else np.pad(wave, ((0, 0), (0, n - wave.shape[1])))
    return np.ascontiguousarray(wave), rate


def load_audio(path: Path | str, *, start: float = 0.0, duration: float | None = None) -> tuple[np.ndarray, int]:
    """Decode the first audio stream of any file PyAV reads: ``(wave [C, T] float32, sample_rate)``."""
    import av

    path = Path(path)
    if not path.is_file():
        raise InputError(f"audio file not found: {path}")
    try:
        container = av.open(str(path))
    except av.FFmpegError as exc:
        raise InputError(f"{path.name} could not be opened as audio or video ({exc}); is it a media file?") from exc
    with container:
        if not container.streams.audio:
            raise InputError(f"{path.name} has no audio track")
        stream = container.streams.audio[0]
        try:
            return decode_audio_stream(container, stream, start=start, duration=duration)
        except av.FFmpegError as exc:
            raise InputError(f"{path.name}: the audio track is corrupt and could not be decoded ({exc})") from exc


def load_speech(speech: Path | str | tuple[np.ndarray, int]) -> tuple[np.ndarray, int]:
    """``(wave [C, T] float32, sample_rate)`` from a file path (any format PyAV reads) or a ``(wave, rate)`` pair."""
    if isinstance(speech, tuple):
        wave, rate = speech
        return np.atleast_2d(np.asarray(wave, np.float32)), int(rate)
    return load_audio(speech)


def to_comfy_audio(wave: np.ndarray, sample_rate: int) -> dict:
    """ComfyUI ``AUDIO`` dict from ``[C, T]``."""
    import torch

    return {"waveform": torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32)).unsqueeze(0),
            "sample_rate": int(sample_rate)}


def from_comfy_audio(audio: dict, name: str = "audio") -> tuple[np.ndarray, int]:
    """``([C, T] float32, sample_rate)`` from a ComfyUI ``AUDIO`` dict (first batch item), validated."""
    if not isinstance(audio, dict) or "waveform" not in audio or "sample_rate" not in audio:
        raise InputError(f"{name} must be a ComfyUI AUDIO dict with 'waveform' and 'sample_rate'")
    wave = audio["waveform"]
    wave = wave.detach().cpu().float().numpy() if hasattr(wave, "detach") else np.asarray(wave, np.float32)
    if wave.ndim == 3:
        wave = wave[0]
    elif wave.ndim == 1:
        wave = wave[None]
    if wave.ndim != 2:
        raise InputError(f"{name}: waveform must be [batch, channels, samples], got shape {list(wave.shape)}")
    return np.ascontiguousarray(wave, dtype=np.float32), int(audio["sample_rate"])
