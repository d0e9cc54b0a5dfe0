"""Writing prepared clips into the cache: frames streamed to disk as uint8, finished with one atomic rename.

A clip folder is either complete (``clip.json`` present, sizes consistent) or absent: the writer fills a hidden
temporary folder and renames it into place only in ``finish()``; an exception (a corrupt file, Cancel) removes it.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from synctalk_lib.errors import InputError
from synctalk_lib.types import Clip


def cache_key(payload: dict[str, Any]) -> str:
    """A short stable hash of JSON-able settings (source identity + every option that changes the result)."""
    blob = json.dumps(payload, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:20]


def free_bytes(folder: Path) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    return shutil.disk_usage(folder).free


class ClipWriter:
    """Append frames of one size, set the audio, then ``finish()`` to get a ``Clip`` at ``target``.

    Use as a context manager so a failure cleans up::

        with ClipWriter(target, height=512, width=512, fps=25.0) as writer:
            for frame in frames:
                writer.append(frame)
            clip = writer.finish(audio=wave, sample_rate=16000)
    """

    def __init__(self, target: Path, *, height: int, width: int, fps: float, max_bytes: int | None = None):
        self.target = Path(target)
        self.height, self.width, self.fps = int(height), int(width), float(fps)
        self.max_bytes = max_bytes
        self.count = 0
        self.target.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = Path(tempfile.mkdtemp(prefix=f".{self.target.name}.", suffix=".tmp", dir=self.target.parent))
        self._fh = open(self._tmp / Clip.FRAMES_FILE, "wb")

    @property
    def frame_bytes(self) -> int:
        return self.height * self.width * 3

    def append(self, frames: np.ndarray) -> None:
        """Add one frame ``[H, W, 3]`` or a batch ``[B, H, W, 3]`` of uint8 RGB."""
        frames = np.asarray(frames)
        if frames.ndim == 3:
            frames = frames[None]
        if frames.dtype != np.uint8 or frames.shape[1:] != (self.height, self.width, 3):
            raise InputError(f"frame {self.count}: expected uint8 [{self.height}, {self.width}, 3], "
                             f"got {frames.dtype} {list(frames.shape[1:])}")
        if self.max_bytes is not None and (self.count + len(frames)) * self.frame_bytes > self.max_bytes:
            raise InputError(
                f"the clip needs more than the disk budget of {self.max_bytes / 1e9:.2f} GB for its frames "
                f"(stopped at frame {self.count + len(frames)}); shorten it with max_duration, lower the size, "
                "or raise the budget")
        self._fh.write(np.ascontiguousarray(frames).tobytes())
        self.count += len(frames)

    def finish(self, *, audio: np.ndarray | None = None, sample_rate: int = 0, **meta: Any) -> Clip:
        """Close the frame file, write audio and ``clip.json``, and move the folder to ``target``."""
        self._fh.close()
        if self.count == 0:
            raise InputError("no frames were decoded, so there is no clip to prepare")
        channels = 0
        if audio is not None and audio.size > 0:
            audio = np.ascontiguousarray(audio, dtype=np.float32)
            if audio.ndim != 2:
                raise InputError(f"audio must be [channels, samples], got shape {list(audio.shape)}")
            np.save(self._tmp / Clip.AUDIO_FILE, audio)
            channels = int(audio.shape[0])
        else:
            sample_rate = 0
        clip = Clip(root=self._tmp, num_frames=self.count, height=self.height, width=self.width, fps=self.fps,
                    sample_rate=int(sample_rate), audio_channels=channels, **meta)
        clip.save()
        if self.target.exists():
            shutil.rmtree(self.target)
        self._tmp.rename(self.target)
        return Clip.load(self.target)

    def abort(self) -> None:
        if not self._fh.closed:
            self._fh.close()
        shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> "ClipWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None or self._tmp.exists():
            self.abort()


def clip_from_arrays(target: Path, frames: np.ndarray, fps: float, *, audio: np.ndarray | None = None,
                     sample_rate: int = 0, **meta: Any) -> Clip:
    """A clip from in-memory frames ``[N, H, W, 3]`` (uint8, or float 0..1) and optional audio ``[C, T]``."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise InputError(f"frames must be [N, H, W, 3] RGB, got shape {list(frames.shape)}")
    with ClipWriter(target, height=frames.shape[1], width=frames.shape[2], fps=fps) as writer:
        for start in range(0, len(frames), 64):
            chunk = frames[start:start + 64]
            if chunk.dtype != np.uint8:
                chunk = (np.clip(chunk.astype(np.float32), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
            writer.append(chunk)
        return writer.finish(audio=audio, sample_rate=sample_rate, **meta)
