"""The hand-off types between pipeline stages (ComfyUI socket types in brackets).

- ``Clip`` [SYNCTALK_CLIP]: a prepared video clip; frames live on disk as uint8 and are memory-mapped.
- ``FaceTrack`` [SYNCTALK_FACE_TRACK]: per-frame MediaPipe landmarks, blendshapes and expression coefficients.
- ``HeadPose`` [SYNCTALK_HEAD_POSE]: intrinsics and per-frame camera-to-world poses.
- ``AudioFeatures`` [SYNCTALK_AUDIO_FEATURES]: one feature row per video frame.

Conventions shared by all of them: frame ``i`` of every per-frame array is the same moment in time (frame ``i``
of the clip); images are ``[N, H, W, 3]`` RGB; pixel coordinates are ``(x = column, y = row)`` with the origin at
the top-left corner of the top-left pixel. All are frozen dataclasses that save to and load from files, so each
stage can also be run from the CLI on a subject folder.
"""
from __future__ import annotations

import dataclasses
import json
import typing
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar

import numpy as np

from synctalk_lib.errors import InputError
from synctalk_lib.paths import atomic_path, read_json, write_json

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Shape:
    """Annotation of an array field: its dimensions (``"N 478 3"``: a name is a size shared by every field of the
    record that uses it, a number a fixed size), and whether every value must be finite.

        landmarks: Annotated[np.ndarray, Shape("N 478 3")]
    """

    dims: str
    finite: bool = True

    def check(self, owner: str, name: str, value: Any, sizes: dict[str, int]) -> None:
        """Raise InputError unless ``value`` fits; binds named sizes into ``sizes``."""
        if not isinstance(value, np.ndarray):
            raise InputError(f"{owner}.{name} must be a numpy array, got {type(value).__name__}")
        dims = self.dims.split()
        if value.ndim != len(dims):
            raise InputError(f"{owner}.{name} must be [{', '.join(dims)}], got shape {list(value.shape)}")
        for dim, size in zip(dims, value.shape):
            expected = int(dim) if dim.isdigit() else sizes.setdefault(dim, int(size))
            if size != expected:
                where = "" if dim.isdigit() else f" ({dim} = {expected} elsewhere in the {owner})"
                raise InputError(f"{owner}.{name} must be [{', '.join(dims)}], got shape {list(value.shape)}{where}")
        if self.finite and value.dtype.kind in "fc" and value.size and not np.isfinite(value).all():
            bad = np.argwhere(~np.isfinite(value))[0].tolist()
            raise InputError(f"{owner}.{name} holds NaN or infinite values (first at index {bad}); the data is "
                             "damaged: make it again from the video")


def check_fields(record: Any) -> dict[str, int]:
    """Check every ``Shape``-annotated field of a dataclass instance; returns the named sizes (e.g. ``{"N": 331}``)."""
    sizes: dict[str, int] = {}
    hints = typing.get_type_hints(type(record), include_extras=True)
    for f in dataclasses.fields(record):
        for meta in getattr(hints.get(f.name), "__metadata__", ()):
            if isinstance(meta, Shape):
                meta.check(type(record).__name__, f.name, getattr(record, f.name), sizes)
    return sizes


def _positive(owner: str, **values: float) -> None:
    for name, value in values.items():
        if not (np.isfinite(value) and value > 0):
            raise InputError(f"{owner}.{name} must be a positive number, got {value!r}")


class _NpzRecord:
    """Save/load for frozen dataclasses holding numpy arrays and JSON-able scalars, as one ``.npz`` file.

    Records check their own shapes, shared sizes and finiteness when they are made (so loading a damaged file or
    building one from bad arrays fails at once, naming the field) through ``__post_init__`` -> ``validate``.
    """

    KIND: ClassVar[str] = ""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        check_fields(self)

    def save(self, path: Path | str) -> Path:
        path = Path(path)
        arrays: dict[str, np.ndarray] = {}
        meta: dict[str, Any] = {"kind": self.KIND, "schema_version": SCHEMA_VERSION}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if isinstance(value, np.ndarray):
                arrays[f.name] = value
            else:
                meta[f.name] = list(value) if isinstance(value, tuple) else value
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, __meta__=np.array(json.dumps(meta)), **arrays)
        return path

    @classmethod
    def load(cls, path: Path | str):
        path = Path(path)
        if not path.is_file():
            raise InputError(f"{cls.KIND} file not found: {path}")
        try:
            return cls._read(path)
        except InputError as exc:
            raise InputError(f"{path}: {exc}") from exc
        except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as exc:  # truncated, not npz
            raise InputError(f"{path} is not a readable {cls.KIND} file ({type(exc).__name__}: {exc}); it is "
                             "damaged: make it again from the video") from exc

    @classmethod
    def _read(cls, path: Path):
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["__meta__"]))
            if meta.get("kind") != cls.KIND:
                raise InputError(f"{path} holds a {meta.get('kind')!r}, not a {cls.KIND!r}")
            values: dict[str, Any] = {}
            for f in dataclasses.fields(cls):  # type: ignore[arg-type]
                if f.name in data.files:
                    values[f.name] = data[f.name]
                elif f.name in meta:
                    raw = meta[f.name]
                    values[f.name] = tuple(raw) if isinstance(raw, list) else raw
        return cls(**values)


# ------------------------------------------------------------------------------------------------------- Clip
@dataclass(frozen=True, eq=False)
class Clip:
    """A prepared clip: ``num_frames`` RGB frames of ``height x width`` at ``fps``, with its audio.

    Frames are stored uncompressed as uint8 in ``root/frames.u8`` (row-major ``[N, H, W, 3]``) and read through a
    memory map, so a 5-minute clip costs disk, not RAM. Audio (if any) is ``root/audio.npy``, float32
    ``[channels, samples]`` at ``sample_rate``, starting at frame 0's time.
    """

    root: Path
    num_frames: int
    height: int
    width: int
    fps: float
    sample_rate: int = 0
    audio_channels: int = 0
    source_path: str | None = None
    source_size: tuple[int, int] | None = None
    """(width, height) of the source video's frames, after its rotation metadata was applied."""
    crop_box: tuple[int, int, int, int] | None = None
    """(x0, y0, x1, y1) in source pixels that was resized to (width, height); None when the whole frame was used."""
    start_time: float = 0.0
    """Time of frame 0 in the source, in seconds."""
    notes: tuple[str, ...] = field(default=())
    """Warnings raised while preparing the clip (no audio track, variable frame rate, ...)."""

    FRAMES_FILE: ClassVar[str] = "frames.u8"
    AUDIO_FILE: ClassVar[str] = "audio.npy"
    META_FILE: ClassVar[str] = "clip.json"

    # --- frames
    def frames(self) -> np.ndarray:
        """All frames as a read-only memory map ``[N, H, W, 3]`` uint8 (nothing is read until indexed)."""
        return np.memmap(self.root / self.FRAMES_FILE, dtype=np.uint8, mode="r",
                         shape=(self.num_frames, self.height, self.width, 3))

    def frame(self, index: int) -> np.ndarray:
        """One frame ``[H, W, 3]`` uint8 (a copy)."""
        if not 0 <= index < self.num_frames:
            raise IndexError(f"frame {index} is outside the clip (0..{self.num_frames - 1})")
        return np.array(self.frames()[index])

    def iter_batches(self, batch_size: int = 64, start: int = 0, stop: int | None = None):
        """Yield ``(first_index, frames[b, H, W, 3] uint8)`` chunks, reading the file sequentially.

        Each chunk is read through its own short-lived memory map: pages of a map stay in the process's resident
        memory until it is closed, so one map held over a 5-minute clip grew the reader to 5.9 GB.
        """
        stop = self.num_frames if stop is None else min(stop, self.num_frames)
        for i in range(start, stop, batch_size):
            yield i, np.array(self.frames()[i:min(i + batch_size, stop)])

    # --- audio
    @property
    def has_audio(self) -> bool:
        return self.sample_rate > 0 and (self.root / self.AUDIO_FILE).is_file()

    @property
    def duration(self) -> float:
        return self.num_frames / self.fps

    def audio_waveform(self) -> np.ndarray:
        """``[channels, samples]`` float32; empty ``[1, 0]`` when the clip has no audio."""
        if not self.has_audio:
            return np.zeros((1, 0), dtype=np.float32)
        return np.load(self.root / self.AUDIO_FILE)

    def audio(self) -> dict:
        """The clip's audio as a ComfyUI ``AUDIO`` dict ``{"waveform": [1, C, T], "sample_rate"}``."""
        import torch

        wave = torch.from_numpy(self.audio_waveform()).unsqueeze(0)
        return {"waveform": wave, "sample_rate": int(self.sample_rate or 16000)}

    # --- persistence
    def save(self) -> None:
        """Write ``clip.json`` next to the frames (the frames and audio files are written by the producer)."""
        meta = {k: v for k, v in dataclasses.asdict(self).items() if k != "root"}
        meta["schema_version"] = SCHEMA_VERSION
        write_json(self.root / self.META_FILE, meta)

    @classmethod
    def load(cls, root: Path | str) -> "Clip":
        root = Path(root)
        meta_path = root / cls.META_FILE
        if not meta_path.is_file():
            raise InputError(f"{root} is not a prepared SyncTalk clip (no {cls.META_FILE}); load the video again.")
        meta = read_json(meta_path)
        meta.pop("schema_version", None)
        for key in ("source_size", "crop_box", "notes"):
            if meta.get(key) is not None:
                meta[key] = tuple(meta[key])
        clip = cls(root=root, **meta)
        expected = clip.num_frames * clip.height * clip.width * 3
        actual = (root / cls.FRAMES_FILE).stat().st_size if (root / cls.FRAMES_FILE).exists() else -1
        if actual != expected:
            raise InputError(f"clip cache {root} is incomplete ({actual} of {expected} bytes); delete it and reload.")
        return clip

    def __repr__(self) -> str:  # shown by ComfyUI in error reports
        return (f"Clip({self.num_frames} frames {self.width}x{self.height} @ {self.fps:g} fps, "
                f"audio {self.sample_rate} Hz x{self.audio_channels}, source={self.source_path})")


# -------------------------------------------------------------------------------------------------- FaceTrack
@dataclass(frozen=True, eq=False)
class FaceTrack(_NpzRecord):
    """Per-frame MediaPipe face capture of a clip (``N`` frames)."""

    KIND: ClassVar[str] = "face_track"

    landmarks: Annotated[np.ndarray, Shape("N 478 3")]
    """[N, 478, 3] float32: x, y in clip pixels; z MediaPipe's relative depth scaled like x (pixels)."""
    blendshapes: Annotated[np.ndarray, Shape("N B")]
    """[N, 52] float32 scores in MediaPipe's category order (``blendshape_names``)."""
    blendshape_names: tuple[str, ...]
    face_found: Annotated[np.ndarray, Shape("N")]
    """[N] bool: False where no face was detected and the values were interpolated."""
    transforms: Annotated[np.ndarray, Shape("N 4 4")]
    """[N, 4, 4] float32 MediaPipe facial transformation matrices (canonical face -> camera, cm)."""
    expression: Annotated[np.ndarray, Shape("N E")]
    """[N, E] float32 upper-face expression coefficients that drive the renderer (E = 7)."""
    expression_names: tuple[str, ...]
    width: int
    height: int
    fps: float
    report_json: str = "{}"
    """How the track was made, as JSON (frames with a face, interpolated frames, smoothing, capture speed)."""

    def validate(self) -> None:
        sizes = check_fields(self)
        if len(self.blendshape_names) != sizes["B"] or len(self.expression_names) != sizes["E"]:
            raise InputError(f"FaceTrack: {len(self.blendshape_names)} blendshape names for {sizes['B']} columns, "
                             f"{len(self.expression_names)} expression names for {sizes['E']} columns")
        _positive("FaceTrack", width=self.width, height=self.height, fps=self.fps)

    @property
    def num_frames(self) -> int:
        return int(self.landmarks.shape[0])

    def report(self) -> dict:
        return json.loads(self.report_json)


# --------------------------------------------------------------------------------------------------- HeadPose
@dataclass(frozen=True, eq=False)
class HeadPose(_NpzRecord):
    """Camera intrinsics and per-frame camera-to-world poses of a clip (``N`` frames).

    Convention (see ``synctalk_lib.pose``): 4x4 camera-to-world, right-handed, camera looking down -z with +y up
    (NeRF / original SyncTalk ``transforms_*.json``), head fixed in world space, metres.
    """

    KIND: ClassVar[str] = "head_pose"

    focal: float
    cx: float
    cy: float
    width: int
    height: int
    c2w: Annotated[np.ndarray, Shape("N 4 4")]
    """[N, 4, 4] float32 camera-to-world."""
    keypoints: Annotated[np.ndarray, Shape("P 3")]
    """[P, 3] float32 head-space 3D keypoints found by bundle adjustment (metres)."""
    reproj_error: Annotated[np.ndarray, Shape("N", finite=False)]
    """[N] float32 mean reprojection error per frame (pixels)."""
    report_json: str = "{}"
    """Metrics of the fit as JSON (see ``synctalk_lib.pose.metrics``)."""
    landmarks3d: Annotated[np.ndarray, Shape("L 3")] = field(default_factory=lambda: np.zeros((0, 3), np.float32))
    """[L, 3] float32 head-space positions of the rigid face landmarks after bundle adjustment (metres), in the
    order of ``synctalk_lib.pose.face_model.RIGID_LANDMARKS``; empty when unknown (e.g. imported poses)."""

    def validate(self) -> None:
        check_fields(self)
        _positive("HeadPose", focal=self.focal, width=self.width, height=self.height)
        if not (np.isfinite(self.cx) and np.isfinite(self.cy)):
            raise InputError(f"HeadPose principal point must be finite, got ({self.cx}, {self.cy})")

    @property
    def num_frames(self) -> int:
        return int(self.c2w.shape[0])

    def report(self) -> dict:
        return json.loads(self.report_json)


# ---------------------------------------------------------------------------------------------- AudioFeatures
@dataclass(frozen=True, eq=False)
class AudioFeatures(_NpzRecord):
    """One feature row per video frame at ``fps`` (row ``i`` belongs to video frame ``i``)."""

    KIND: ClassVar[str] = "audio_features"

    features: Annotated[np.ndarray, Shape("N D")]
    """[N, D] float32."""
    fps: float
    encoder_id: str
    """Which encoder made them (``ave:<sha256 prefix>``, ``mel``, ...); the renderer checks it matches training."""
    notes: tuple[str, ...] = field(default=())
    """Warnings raised while encoding (fallback from AVE to mel, silent audio, ...)."""

    def validate(self) -> None:
        check_fields(self)
        _positive("AudioFeatures", fps=self.fps)

    @property
    def num_frames(self) -> int:
        return int(self.features.shape[0])

    @property
    def dim(self) -> int:
        return int(self.features.shape[1])
