"""The clip cache: prepared clips as folders of uint8 frames, written safely by several processes at once.

A clip folder is either complete (``clip.json`` present, sizes consistent) or absent: the writer fills a hidden
temporary folder and renames it into place only in ``finish()``; an exception (a corrupt file, Cancel) removes it.

Several processes (two ComfyUI prompts, a CLI run beside a server) may prepare the same clip:

- ``key_lock(target)`` holds an exclusive ``flock`` on ``.locks/<name>.lock`` in the cache folder, so the second
  preparer waits and then finds the first one's clip instead of decoding it again;
- ``finish()`` keeps the winner: when a complete clip is already at ``target`` it is returned and the new copy is
  dropped (a complete clip is never replaced, so a reader never sees its files vanish);
- a write first sweeps hidden temporaries left by interrupted runs (untouched for ``STALE_SECONDS``);
- after a write, least-recently-used clips are evicted until the cache holds at most ``SYNCTALK_CACHE_MAX_GB``
  (default ``DEFAULT_MAX_GB``); a clip used by this process, or by anyone in the last ``EVICT_GRACE_SECONDS``, is
  never evicted. "Used" = loaded through ``open_clip`` / ``load_cached_clip`` or written here.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
import weakref
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from synctalk_lib.errors import InputError
from synctalk_lib.paths import free_bytes, require_free_space
from synctalk_lib.types import Clip

log = logging.getLogger("synctalk")

LOCK_DIR = ".locks"
STALE_SECONDS = 6 * 3600
"""A hidden temporary untouched this long belongs to an interrupted run (a live writer appends every frame)."""
DEFAULT_MAX_GB = 100.0
"""Clip cache size cap when ``SYNCTALK_CACHE_MAX_GB`` is not set (generous: a 5-minute 512x512 clip is 6 GB)."""
EVICT_GRACE_SECONDS = 3600
"""Clips used this recently are never evicted (another process may be reading them)."""

_in_use: "weakref.WeakSet[Clip]" = weakref.WeakSet()


def cache_key(payload: dict[str, Any]) -> str:
    """A short stable hash of JSON-able settings (source identity + every option that changes the result)."""
    blob = json.dumps(payload, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:20]


def max_cache_bytes() -> int:
    """The clip cache cap in bytes (``SYNCTALK_CACHE_MAX_GB``, default ``DEFAULT_MAX_GB``; 0 = no cap)."""
    raw = os.environ.get("SYNCTALK_CACHE_MAX_GB", "").strip()
    try:
        gigabytes = float(raw) if raw else DEFAULT_MAX_GB
    except ValueError:
        raise InputError(f"SYNCTALK_CACHE_MAX_GB must be a number of gigabytes, got {raw!r}") from None
    return int(max(gigabytes, 0.0) * 1e9)


def check_free_space(folder: Path | str, need: int, what: str, safety: int = 256 << 20,
                     make_room: bool = True) -> None:
    """Raise InputError naming ``folder`` unless ``need`` bytes (plus ``safety``) fit on its disk; with
    ``make_room`` (``folder`` is a clip cache) unused clips are evicted first."""
    free = free_after_eviction(folder, need + safety) if make_room else free_bytes(Path(folder))
    require_free_space(folder, need, what, safety, free)


def free_after_eviction(cache_root: Path | str, want: int) -> int:
    """Free bytes on the clip cache's disk, after evicting unused clips when fewer than ``want`` are free."""
    free = free_bytes(Path(cache_root))
    if want > free:
        evict(cache_root, keep_free=want)
        free = free_bytes(Path(cache_root))
    return free


# ---------------------------------------------------------------------------------------------- locking
@contextlib.contextmanager
def key_lock(target: Path | str) -> Iterator[None]:
    """Hold an exclusive lock on cache entry ``target`` across processes (``flock``; a no-op without fcntl)."""
    target = Path(target)
    try:
        import fcntl
    except ImportError:  # Windows: keep-the-winner renames still keep the cache consistent
        yield
        return
    locks = target.parent / LOCK_DIR
    locks.mkdir(parents=True, exist_ok=True)
    with open(locks / f"{target.name}.lock", "a+b") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _try_lock(target: Path):
    """An open, exclusively locked lock file of ``target`` or None when another process holds it."""
    try:
        import fcntl
    except ImportError:
        return contextlib.nullcontext()
    locks = target.parent / LOCK_DIR
    locks.mkdir(parents=True, exist_ok=True)
    fh = open(locks / f"{target.name}.lock", "a+b")
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        fh.close()
        return None
    return fh


# ------------------------------------------------------------------------------------------ using clips
def _touch(root: Path) -> None:
    with contextlib.suppress(OSError):
        os.utime(root)


def mark_in_use(clip: Clip) -> Clip:
    """Remember that this process uses ``clip`` (never evicted while the object lives) and when it was used."""
    _in_use.add(clip)
    _touch(Path(clip.root))
    return clip


def open_clip(root: Path | str) -> Clip:
    """``Clip.load(root)``, marked as in use (see ``mark_in_use``)."""
    return mark_in_use(Clip.load(root))


def load_cached_clip(folder: Path) -> Clip | None:
    """The complete clip in ``folder``, or None (absent or unusable: it will be prepared again)."""
    if not (folder / Clip.META_FILE).is_file():
        return None
    try:
        return open_clip(folder)
    except (InputError, OSError, ValueError, TypeError, KeyError) as exc:
        log.info("SyncTalk: clip cache %s is unusable (%s); preparing it again", folder, exc)
        return None


# ----------------------------------------------------------------------------------------- housekeeping
def _newest_mtime(path: Path) -> float:
    newest = path.lstat().st_mtime
    if path.is_dir() and not path.is_symlink():
        for child in path.iterdir():
            with contextlib.suppress(OSError):
                newest = max(newest, child.lstat().st_mtime)
    return newest


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            path.unlink()


def sweep_temporaries(cache_root: Path | str, older_than: float = STALE_SECONDS) -> list[Path]:
    """Remove hidden ``.*.tmp`` leftovers of interrupted writes in ``cache_root`` untouched for ``older_than`` s."""
    root = Path(cache_root)
    removed: list[Path] = []
    if not root.is_dir():
        return removed
    now = time.time()
    for entry in root.iterdir():
        if not (entry.name.startswith(".") and entry.name.endswith(".tmp")):
            continue
        try:
            if now - _newest_mtime(entry) < older_than:
                continue
        except OSError:
            continue
        _remove(entry)
        removed.append(entry)
    if removed:
        log.info("SyncTalk: removed %d leftover temporary folder(s) of interrupted runs from %s", len(removed), root)
    return removed


def _folder_bytes(folder: Path) -> int:
    total = 0
    for child in folder.iterdir():
        with contextlib.suppress(OSError):
            total += child.lstat().st_size
    return total


def cache_entries(cache_root: Path | str) -> list[tuple[float, int, Path]]:
    """``(last used, bytes, folder)`` of every complete clip in ``cache_root``, least recently used first."""
    root = Path(cache_root)
    entries = []
    if not root.is_dir():
        return entries
    for entry in root.iterdir():
        if entry.name.startswith(".") or not (entry / Clip.META_FILE).is_file():
            continue
        with contextlib.suppress(OSError):
            entries.append((entry.stat().st_mtime, _folder_bytes(entry), entry))
    return sorted(entries)


def evict(cache_root: Path | str, *, max_bytes: int | None = None, keep_free: int = 0,
          keep: Path | None = None) -> list[Path]:
    """Delete least-recently-used clips until the cache holds at most ``max_bytes`` (default: the cap) and, with
    ``keep_free``, the disk has that many bytes free. Clips in use here, used in the last
    ``EVICT_GRACE_SECONDS``, being written (locked) or ``keep`` stay."""
    root = Path(cache_root)
    cap = max_cache_bytes() if max_bytes is None else max_bytes
    entries = cache_entries(root)
    total = sum(size for _, size, _ in entries)
    in_use = {Path(c.root).resolve() for c in list(_in_use)}
    protected = in_use | ({Path(keep).resolve()} if keep is not None else set())
    now = time.time()
    removed: list[Path] = []
    for used, size, folder in entries:
        over_cap = cap > 0 and total > cap
        short = keep_free > 0 and free_bytes(root) < keep_free
        if not (over_cap or short):
            break
        if folder.resolve() in protected or now - used < EVICT_GRACE_SECONDS:
            continue
        lock = _try_lock(folder)
        if lock is None:
            continue
        with lock:
            gone = folder.with_name(f".{folder.name}.evicted.tmp")
            try:
                os.rename(folder, gone)  # readers see a complete clip or none
            except OSError:
                continue
            shutil.rmtree(gone, ignore_errors=True)
        total -= size
        removed.append(folder)
        log.info("SyncTalk: evicted the least recently used clip %s (%.2f GB) from the cache", folder, size / 1e9)
    return removed


# ---------------------------------------------------------------------------------------------- writing
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
        sweep_temporaries(self.target.parent)
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
        winner = self._publish()
        evict(self.target.parent, keep=self.target)
        return winner

    def _publish(self) -> Clip:
        """Rename the temporary folder to ``target``, keeping a complete clip another process put there first."""
        for _ in range(3):
            try:
                os.rename(self._tmp, self.target)  # fails when a non-empty target exists
                return open_clip(self.target)
            except OSError as exc:
                if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.EACCES, errno.EPERM):
                    raise
            existing = load_cached_clip(self.target)
            if existing is not None:  # the other writer won: readers may already use its files
                shutil.rmtree(self._tmp, ignore_errors=True)
                return existing
            # an incomplete folder (an old version, a crash): move it aside, then try again
            aside = Path(tempfile.mkdtemp(prefix=f".{self.target.name}.", suffix=".old.tmp", dir=self.target.parent))
            with contextlib.suppress(OSError):
                os.replace(self.target, aside / "old")
            shutil.rmtree(aside, ignore_errors=True)
        raise OSError(f"could not move the prepared clip into {self.target}; another process keeps replacing it")

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
