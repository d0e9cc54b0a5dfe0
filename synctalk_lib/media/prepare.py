"""Clip preparation: a video file (or IMAGE frames) becomes a cached ``Clip`` of uint8 frames on disk.

``prepare_clip`` decodes the video once, as a stream, and writes each output frame straight into the clip
cache, so memory stays at a few frames whatever the length. Before that main pass it reads the header (for the
disk budget check) and, for ``crop="face"``, decodes a handful of frames spread over the clip by seeking, to find
the face (see ``synctalk_lib.media.crop``).

Frame-rate rule (works for constant and variable frame rate): output frame ``k`` is shown at
``t_k = t0 + k / fps`` where ``t0`` is the first source frame's time plus ``start_time``. It is the source frame
whose presentation time is nearest to ``t_k`` (a tie goes to the later frame). The clip has one frame for every
``t_k`` before the end of the source (the last frame's time plus its duration) and before
``t0 + max_duration``: a constant-rate source of ``D`` seconds gives ``ceil((D - start_time) * fps)`` frames
(30 fps for 2 s -> 50 frames at 25 fps).

Audio stays in sync: it starts at ``t0`` and lasts exactly ``frame_count / fps`` seconds, at the track's own
sample rate and channel count, zero-padded where the track is shorter.

The cache folder is ``cache_root/<name>-<hash>``; the hash covers the source path, its size and modification
time, and every setting, so a second call with the same inputs returns the cached clip without decoding.
"""
from __future__ import annotations

import errno
import hashlib
import logging
import math
import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterable, Iterator, Literal

import numpy as np

from synctalk_lib.errors import InputError
from synctalk_lib.media.clip_store import ClipWriter, cache_key, free_after_eviction, key_lock, load_cached_clip
from synctalk_lib.media.crop import Box, detect_faces, face_crop_box
from synctalk_lib.media.training_checks import clip_notes
from synctalk_lib.media.video import (SourceFrame, VideoInfo, VideoReader, is_variable_rate,
                                      measure_frame_intervals)
from synctalk_lib.types import Clip
from synctalk_lib.progress import StepCallback

log = logging.getLogger("synctalk")

PREPARE_VERSION = 1
"""Bump when the output of ``prepare_clip`` changes for the same settings, so old cache entries are not reused."""
FACE_SAMPLES = 8
"""Frames (spread over the clip) that MediaPipe looks at to place the crop box."""
DISK_SAFETY_BYTES = 256 * 2**20
"""Free space left on the cache disk after the clip is written."""

WarnCallback = Callable[[str], None]


# ----------------------------------------------------------------------------------------- frame-rate rule
class NearestFrameConverter:
    """Turns source frames (any timing) into output frames at ``t_k = t0 + k / fps``, nearest frame first.

    Feed frames in presentation order with ``push``; each call returns the ``(k, payload)`` pairs that are now
    decided (their nearest source frame is the previous one). ``finish(end)`` flushes the remaining times before
    ``end`` with the last frame. ``max_frames`` caps the output; ``done`` turns True when it is reached.
    """

    def __init__(self, t0: Fraction, fps: Fraction, max_frames: int | None = None):
        self.t0, self.fps, self.max_frames = t0, fps, max_frames
        self.next_index = 0
        self._previous: tuple[Fraction, object] | None = None

    @property
    def done(self) -> bool:
        return self.max_frames is not None and self.next_index >= self.max_frames

    def time_of(self, index: int) -> Fraction:
        return self.t0 + Fraction(index) / self.fps

    def _emit_before(self, limit: Fraction, payload: object, inclusive: bool = False) -> list[tuple[int, object]]:
        out = []
        while not self.done:
            t = self.time_of(self.next_index)
            if t > limit or (t == limit and not inclusive):
                break
            out.append((self.next_index, payload))
            self.next_index += 1
        return out

    def push(self, time: Fraction, payload: object) -> list[tuple[int, object]]:
        """Add the next source frame; frames whose time does not increase are ignored (broken timestamps)."""
        if self._previous is None:
            self._previous = (time, payload)
            return []
        prev_time, prev_payload = self._previous
        if time <= prev_time:
            return []
        midpoint = (prev_time + time) / 2
        out = self._emit_before(midpoint, prev_payload)  # a tie (t == midpoint) goes to the later frame
        self._previous = (time, payload)
        return out

    def finish(self, end: Fraction) -> list[tuple[int, object]]:
        """Output times before ``end`` (exclusive) that are still open all take the last frame."""
        if self._previous is None:
            return []
        return self._emit_before(end, self._previous[1])


# ---------------------------------------------------------------------------------------------- planning
@dataclass(frozen=True)
class _Plan:
    t0: Fraction
    """Container time of output frame 0."""
    fps: Fraction
    max_frames: int | None
    estimated_frames: int
    """From the header: what the disk check and the progress bar count on."""


def _plan(info: VideoInfo, name: str, fps: float, start_time: float, max_duration: float) -> _Plan:
    if info.duration > 0 and start_time >= info.duration:
        raise InputError(f"start_time {start_time:g} s is past the end of {name}, which lasts "
                         f"{info.duration:.2f} s; choose a smaller start_time")
    fps_q = Fraction(fps).limit_denominator(1_001_000)
    t0 = Fraction(info.start_time).limit_denominator(1_000_000) + Fraction(start_time).limit_denominator(1_000_000)
    max_frames = math.ceil(max_duration * fps - 1e-9) if max_duration > 0 else None
    remaining = max(info.duration - start_time, 0.0)
    estimate = math.ceil(remaining * fps - 1e-9) if remaining > 0 else (max_frames or 1)
    if max_frames is not None:
        estimate = min(estimate, max_frames)
    return _Plan(t0=t0, fps=fps_q, max_frames=max_frames, estimated_frames=max(estimate, 1))


def _check_settings(fps: float, start_time: float, max_duration: float, crop: str, size: int) -> None:
    if not (0 < fps <= 240):
        raise InputError(f"fps must be between 0 and 240 (got {fps}); SyncTalk uses 25")
    if start_time < 0:
        raise InputError(f"start_time must be 0 or more seconds (got {start_time})")
    if max_duration < 0:
        raise InputError(f"max_duration must be 0 (whole video) or more seconds (got {max_duration})")
    if crop not in ("face", "none"):
        raise InputError(f"crop must be 'face' or 'none' (got {crop!r})")
    if crop == "face" and (size < 16 or size % 2):
        raise InputError(f"size must be an even number of pixels, 16 or more (got {size}); SyncTalk uses 512")


def _human_bytes(count: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if count >= scale:
            return f"{count / scale:.2f} {unit}"
    return f"{int(count)} bytes"


def _check_disk(name: str, frames: int, width: int, height: int, audio_bytes: int, cache_root: Path,
                max_cache_bytes: int | None, crop: str) -> None:
    need = frames * width * height * 3 + audio_bytes
    what = f"{frames} frames of {width}x{height} as uint8 plus audio, about {_human_bytes(need)}"
    smaller = "use crop='face' (a smaller square)" if crop == "none" else "lower size"
    advice = f"Shorten it with max_duration (or a later start_time), or {smaller}"
    if max_cache_bytes is not None and need > max_cache_bytes:
        raise InputError(f"{name} is too long for the clip cache budget: it needs {what}, the budget is "
                         f"{_human_bytes(max_cache_bytes)}. {advice}, or raise the budget.")
    free = free_after_eviction(cache_root, need + DISK_SAFETY_BYTES)  # unused clips make room first
    if need + DISK_SAFETY_BYTES > free:
        raise InputError(f"not enough disk space for {name} in the clip cache {cache_root}: it needs {what}, "
                         f"{_human_bytes(free)} are free. {advice}, free some space, or set SYNCTALK_CACHE_DIR "
                         "to a bigger disk.")


# ------------------------------------------------------------------------------------------------ cache
def _stat_source(source: Path):
    if not source.exists():
        raise InputError(f"video file not found: {source}")
    if not source.is_file():
        raise InputError(f"{source} is a folder, not a video file")
    return source.stat()


def _safe_stem(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(name).stem)[:40] or "clip"


def clip_cache_path(source: Path | str, cache_root: Path | str, *, fps: float = 25.0, start_time: float = 0.0,
                    max_duration: float = 0.0, crop: Literal["face", "none"] = "face", size: int = 512) -> Path:
    """The cache folder ``prepare_clip`` uses for these inputs (it may not exist yet)."""
    source = Path(source).expanduser().resolve()
    stat = _stat_source(source)
    payload = {"version": PREPARE_VERSION, "source": str(source), "bytes": stat.st_size,
               "mtime_ns": stat.st_mtime_ns, "fps": float(fps), "start_time": float(start_time),
               "max_duration": float(max_duration), "crop": crop, "size": int(size) if crop == "face" else None}
    return Path(cache_root) / f"{_safe_stem(source.name)}-{cache_key(payload)}"


def _report(notes: Iterable[str], warn: WarnCallback | None) -> None:
    """Hand each note to ``warn`` (or the log)."""
    for note in notes:
        (warn or (lambda m: log.warning("SyncTalk: %s", m)))(note)


# ------------------------------------------------------------------------------------------ video -> clip
def prepare_clip(source: Path | str, cache_root: Path | str, *, fps: float = 25.0, start_time: float = 0.0,
                 max_duration: float = 0.0, crop: Literal["face", "none"] = "face", size: int = 512,
                 models_dirs: Iterable[Path | str] | None = None, max_cache_bytes: int | None = None,
                 on_step: StepCallback | None = None, warn: WarnCallback | None = None) -> Clip:
    """Decode ``source`` into a cached clip: target fps, start/duration, face-centred square crop, audio in sync.

    Args:
        source: video file (any container/codec FFmpeg reads; rotation metadata is applied).
        cache_root: folder holding prepared clips; the clip goes to ``clip_cache_path(...)`` inside it.
        fps: output frame rate (nearest source frame per output time, see the module docstring).
        start_time: seconds from the video's first frame to output frame 0.
        max_duration: seconds to keep from ``start_time``; 0 keeps everything.
        crop: ``"face"``: one square box around the head (found by MediaPipe on ``FACE_SAMPLES`` frames)
            resized to ``size`` x ``size``; ``"none"``: the full frame at its native size (an odd width or
            height loses its last column/row, because H.264 and the renderer need even sizes).
        size: output side in pixels for ``crop="face"`` (even); ignored for ``"none"``.
        models_dirs: folders searched for ``face_landmarker.task`` (downloaded there when missing).
        max_cache_bytes: refuse clips whose frames and audio would take more than this on disk.
        on_step: ``on_step(frames_written, frames_expected)`` progress callback (may raise to cancel).
        warn: receives each note (no audio, variable frame rate, truncated file, ...); default: logged.

    Returns:
        The ``Clip`` (``notes`` lists what the user should know about the result).

    Raises:
        InputError: missing/unreadable/undecodable file, no face for ``crop="face"``, or not enough disk.
    """
    _check_settings(fps, start_time, max_duration, crop, size)
    source = Path(source).expanduser().resolve()
    cache_root = Path(cache_root)
    target = clip_cache_path(source, cache_root, fps=fps, start_time=start_time, max_duration=max_duration,
                             crop=crop, size=size)
    with key_lock(target):  # a second prompt preparing the same clip waits, then reuses it
        clip = load_cached_clip(target) or _prepare_uncached(source, cache_root, target, fps, start_time,
                                                             max_duration, crop, size, models_dirs,
                                                             max_cache_bytes, on_step)
    _report(clip_notes(clip), warn)
    return clip


def _prepare_uncached(source: Path, cache_root: Path, target: Path, fps: float, start_time: float,
                      max_duration: float, crop: str, size: int, models_dirs, max_cache_bytes: int | None,
                      on_step: StepCallback | None) -> Clip:
    """The body of ``prepare_clip`` once the cache missed (long: header, face box, main pass, audio)."""
    with VideoReader(source) as reader:
        info = reader.info
        name = source.name
        plan = _plan(info, name, fps, start_time, max_duration)
        notes: list[str] = []
        if crop == "none":
            out_w, out_h = info.width - info.width % 2, info.height - info.height % 2
            if (out_w, out_h) != (info.width, info.height):
                notes.append(f"{name} is {info.width}x{info.height}; odd sizes cannot be encoded as H.264, so the "
                             f"clip is {out_w}x{out_h} (the last column/row was dropped)")
            box: Box | None = None if (out_w, out_h) == (info.width, info.height) else (0, 0, out_w, out_h)
        else:
            out_w = out_h = int(size)
        seconds = plan.estimated_frames / fps
        audio_bytes = int(seconds * info.sample_rate * max(info.audio_channels, 1) * 4) if info.has_audio else 0
        _check_disk(name, plan.estimated_frames, out_w, out_h, audio_bytes, cache_root, max_cache_bytes, crop)
        if crop == "face":
            box = _find_face_box(reader, plan, models_dirs, name, notes)
            side = box[2] - box[0]
            if side < size:
                notes.append(f"the face box in {name} is {side} px, smaller than size {size}: frames are enlarged "
                             "and will look soft; use a smaller size or a higher-resolution video")
        if info.rotation:
            notes.append(f"{name} carries rotation metadata ({info.rotation} degrees); frames were turned upright "
                         f"({info.coded_width}x{info.coded_height} stored -> {info.width}x{info.height} shown)")

        max_bytes = None if max_cache_bytes is None else max(max_cache_bytes - audio_bytes, 0)
        try:
            with ClipWriter(target, height=out_h, width=out_w, fps=fps, max_bytes=max_bytes) as writer:
                count = _decode_frames(reader, writer, plan, box, (out_w, out_h), crop, on_step, notes)
                audio, rate = _read_audio(reader, plan, count, notes)
                clip = writer.finish(audio=audio, sample_rate=rate, source_path=str(source),
                                     source_size=(info.width, info.height), crop_box=box,
                                     start_time=float(start_time), notes=tuple(notes))
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise InputError(f"the disk of the clip cache {cache_root} filled up while preparing {name}; free "
                                 "space, shorten the clip (max_duration) or set SYNCTALK_CACHE_DIR elsewhere") from exc
            raise
    return clip


def _sample_indices(count: int, samples: int = FACE_SAMPLES) -> list[int]:
    """``samples`` output frame numbers spread evenly over ``count`` frames (centres of equal parts)."""
    samples = max(1, min(samples, count))
    return sorted({int((i + 0.5) * count / samples) for i in range(samples)})


def _find_face_box(reader: VideoReader, plan: _Plan, models_dirs, name: str, notes: list[str]) -> Box:
    info = reader.info
    indices = _sample_indices(plan.estimated_frames)
    times = [float(plan.t0 + Fraction(k) / plan.fps) for k in indices]
    decoded = reader.frames_near(times)
    images = [(k, float(src.time), src.image()) for k, src in zip(indices, decoded) if src is not None]
    if not images:
        raise InputError(f"no frame of {name} could be decoded near the sampled times; the file is damaged")
    samples = detect_faces(images, models_dirs)
    found = [s for s in samples if s.box is not None]
    missing = [s for s in samples if s.box is None]
    if not found:
        where = ", ".join(f"{s.frame_index} ({s.time:.2f} s)" for s in samples)
        raise InputError(
            f"no face was found in {name}: MediaPipe looked at output frames {where} and saw none. crop='face' "
            "needs a clearly visible face; use crop='none' to keep the whole frame, or choose a start_time / "
            "max_duration where the face is visible.")
    if missing:
        where = ", ".join(f"{s.frame_index} ({s.time:.2f} s)" for s in missing)
        notes.append(f"no face in sampled frames {where} of {name}; the crop box was placed from the other "
                     f"{len(found)} samples. SyncTalk needs the face in every frame, so check those parts.")
    return face_crop_box([s.box for s in found], (info.width, info.height))


def _frame_maker(box: Box | None, out_size: tuple[int, int], crop: str) -> Callable[[np.ndarray], np.ndarray]:
    """source RGB ``[H, W, 3]`` -> output RGB ``[out_h, out_w, 3]`` uint8 (contiguous)."""
    out_w, out_h = out_size
    if crop == "none":
        return lambda image: np.ascontiguousarray(image[:out_h, :out_w])
    import cv2

    assert box is not None
    x0, y0, x1, y1 = box
    side = x1 - x0
    interpolation = cv2.INTER_AREA if side >= out_w else cv2.INTER_LINEAR  # AREA is blocky when enlarging

    def make(image: np.ndarray) -> np.ndarray:
        patch = np.ascontiguousarray(image[y0:y1, x0:x1])
        if side == out_w:
            return patch
        return cv2.resize(patch, (out_w, out_h), interpolation=interpolation)

    return make


def _decode_frames(reader: VideoReader, writer: ClipWriter, plan: _Plan, box: Box | None,
                   out_size: tuple[int, int], crop: str, on_step: StepCallback | None, notes: list[str]) -> int:
    """The main pass: decode, pick frames by time, crop/resize, append to ``writer``. Returns frames written."""
    info, name = reader.info, reader.path.name
    make = _frame_maker(box, out_size, crop)
    converter = NearestFrameConverter(plan.t0, plan.fps, plan.max_frames)
    times: list[Fraction] = []
    last: SourceFrame | None = None
    made: tuple[int, np.ndarray] | None = None  # the last converted source frame, reused when it repeats
    size_changed = False
    expected = plan.estimated_frames
    report_every = max(1, expected // 200)

    def write(pairs: list[tuple[int, object]]) -> None:
        nonlocal made, expected
        for k, chosen in pairs:
            assert isinstance(chosen, SourceFrame)
            if made is None or made[0] != chosen.number:
                made = (chosen.number, make(chosen.image()))
            writer.append(made[1])
            done = k + 1
            expected = max(expected, done)
            if on_step is not None and (done % report_every == 0 or done == expected):
                on_step(done, expected)

    for source in reader.frames(start=float(plan.t0)):
        if source.coded_size is not None and not size_changed:
            size_changed = True
            notes.append(f"the frame size of {name} changes at {float(source.time):.2f} s; later frames were "
                         "rescaled to the first frame's size")
        write(converter.push(source.time, source))
        if converter.done:
            break
        if source.time >= plan.t0 - 1:  # only the kept part matters for the frame-rate statistics
            times.append(source.time)
        last = source

    if reader.stopped_early:
        notes.append(f"{name}: {reader.stopped_early}")
    if not converter.done and last is not None:
        low, median, high = measure_frame_intervals(times)
        step = last.duration or (Fraction(median).limit_denominator(1_000_000) if median else 1 / plan.fps)
        end = last.time + step
        write(converter.finish(end))
        header_end = info.start_time + info.duration
        if not reader.stopped_early and info.duration and float(end) < header_end - max(2 * float(step), 0.1):
            notes.append(f"{name} ends at {float(end) - info.start_time:.2f} s, earlier than the "
                         f"{info.duration:.2f} s its header states; the file may be truncated")
    low, median, high = measure_frame_intervals(times)
    if is_variable_rate((low, median, high)):
        notes.append(f"{name} has a variable frame rate (frame intervals {low * 1000:.1f} to {high * 1000:.1f} ms); "
                     f"it was resampled to a constant {float(plan.fps):g} fps by taking the source frame nearest "
                     "to each output time, so some frames are repeated or dropped")
    elif median and len(times) > 1:
        source_fps = (len(times) - 1) / float(times[-1] - times[0])  # mean rate: robust to rounded timestamps
        if abs(source_fps - float(plan.fps)) > 0.01 * float(plan.fps):
            notes.append(f"{name} is {source_fps:.4g} fps; it was resampled to {float(plan.fps):g} fps by taking "
                         "the source frame nearest to each output time")
    count = converter.next_index
    if count == 0:
        detail = f" ({reader.stopped_early})" if reader.stopped_early else ""
        raise InputError(f"no frame of {name} could be decoded after start_time{detail}; the file is damaged or "
                         "start_time is past its end")
    if on_step is not None:
        on_step(count, count)
    return count


def _read_audio(reader: VideoReader, plan: _Plan, count: int, notes: list[str]) -> tuple[np.ndarray | None, int]:
    name = reader.path.name
    if not reader.info.has_audio:
        notes.append(f"{name} has no audio track: the frames were loaded and the clip's audio is empty. SyncTalk "
                     "learns lip sync from the speech in the video, so use a video with sound for training.")
        return None, 0
    errors: list[str] = []
    wave, rate = reader.read_audio(float(plan.t0), count / float(plan.fps), errors=errors)
    notes.extend(f"{name}: {e}" for e in errors)
    return wave, rate


# ------------------------------------------------------------------------------------------ images -> clip
def _image_chunks(images, chunk: int = 64) -> Iterator[np.ndarray]:
    """``IMAGE`` (torch or numpy ``[N, H, W, 3]`` float 0..1, or uint8) in uint8 chunks ``[b, H, W, 3]``."""
    for start in range(0, int(images.shape[0]), chunk):
        part = images[start:start + chunk]
        if hasattr(part, "detach"):
            part = part.detach().to("cpu").numpy()
        part = np.asarray(part)
        if part.dtype != np.uint8:
            part = (np.clip(part.astype(np.float32), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
        yield part


def clip_from_images(images, audio: dict | None, fps: float, cache_root: Path | str, *,
                     warn: WarnCallback | None = None, on_step: StepCallback | None = None) -> Clip:
    """A clip from frames made elsewhere (``IMAGE`` ``[N, H, W, 3]`` float 0..1) and an optional ``AUDIO`` dict.

    Audio is taken as starting at frame 0 and fitted to ``N / fps`` seconds (trimmed or zero-padded, with a note
    when that changes its length by more than a frame). Odd widths/heights lose their last column/row. The clip
    is cached under a hash of the uint8 frames, the audio and fps, so the same inputs are written once.
    """
    from synctalk_lib.media.audio import from_comfy_audio

    shape = tuple(getattr(images, "shape", ()))
    if len(shape) == 3 and shape[-1] == 3:
        images, shape = images[None], (1, *shape)
    if len(shape) != 4 or shape[-1] != 3 or shape[0] == 0:
        raise InputError(f"images must be an IMAGE batch [N, H, W, 3] with at least one frame, got shape "
                         f"{list(shape)}")
    if not (0 < fps <= 240):
        raise InputError(f"fps must be between 0 and 240 (got {fps})")
    count, height, width = int(shape[0]), int(shape[1]), int(shape[2])
    out_h, out_w = height - height % 2, width - width % 2
    if out_h == 0 or out_w == 0:
        raise InputError(f"images of {width}x{height} are too small for a clip")
    notes: list[str] = []
    if (out_w, out_h) != (width, height):
        notes.append(f"images are {width}x{height}; odd sizes cannot be encoded as H.264, so the clip is "
                     f"{out_w}x{out_h} (the last column/row was dropped)")

    wave, rate = None, 0
    if audio is not None:
        wave, rate = from_comfy_audio(audio, "audio")
        wanted = int(round(count / fps * rate))
        if abs(wave.shape[1] - wanted) > rate / fps:
            change = "trimmed" if wave.shape[1] > wanted else "padded with silence"
            notes.append(f"the audio lasts {wave.shape[1] / rate:.2f} s but {count} frames at {fps:g} fps last "
                         f"{count / fps:.2f} s; the audio was {change} to match")
        wave = wave[:, :wanted] if wave.shape[1] >= wanted else np.pad(wave, ((0, 0), (0, wanted - wave.shape[1])))
    else:
        notes.append("no audio was connected: the clip's audio is empty")

    digest = hashlib.sha256()
    digest.update(f"v{PREPARE_VERSION} {count}x{out_h}x{out_w} fps={float(fps)!r} rate={rate}".encode())
    for part in _image_chunks(images):
        digest.update(np.ascontiguousarray(part[:, :out_h, :out_w]).tobytes())
    if wave is not None:
        digest.update(np.ascontiguousarray(wave, dtype=np.float32).tobytes())
    target = Path(cache_root) / f"images-{digest.hexdigest()[:20]}"
    with key_lock(target):
        clip = load_cached_clip(target)
        if clip is None:
            with ClipWriter(target, height=out_h, width=out_w, fps=fps) as writer:
                for part in _image_chunks(images):
                    writer.append(np.ascontiguousarray(part[:, :out_h, :out_w]))
                    if on_step is not None:
                        on_step(writer.count, count)
                clip = writer.finish(audio=wave, sample_rate=rate, source_path=None, source_size=(width, height),
                                     crop_box=None if (out_w, out_h) == (width, height) else (0, 0, out_w, out_h),
                                     notes=tuple(notes))
    _report(clip_notes(clip), warn)
    return clip
