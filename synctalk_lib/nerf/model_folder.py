"""A trained subject as a shareable folder (``models/synctalk/NAME/``), and the ``SyncTalkModel`` object.

Folder layout (everything RenderTriPlane and a portrait blend need; no pickles)::

    NAME/
      model.safetensors      NeRF weights and its occupancy grid
      config.json            hyper-parameters, schema/package version, render intrinsics, audio encoder,
                             training settings and summary
      subject/
        subject.json         clip size, fps, train/held-out split, source video
        face_track.npz       FaceTrack of the reference frames (landmarks, blendshapes, expression)
        head_pose.npz        HeadPose of the reference frames (intrinsics, camera-to-world)
        background.png       the clean background at the clip's size
        reference.mp4        the reference frames (H.264, near-lossless) for per-frame backgrounds and blending

    model = SyncTalkModel.from_pretrained("may")                 # models/synctalk/may, a path, or a Hub repo id
    model.save_pretrained("/somewhere/may_copy")

``from_pretrained`` takes a folder path, the name of a folder in one of the models folders, or a Hugging Face
Hub repo id (``owner/name``, downloaded with ``huggingface_hub.snapshot_download``; offline it says so). Loading
warns, by name, about keys it does not know and keys that fell back to defaults, and leaves the model in eval mode.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch

from synctalk_lib import __version__
from synctalk_lib.errors import InputError, MissingDependencyError, SyncTalkError
from synctalk_lib.face.regions import FaceRegions
from synctalk_lib.nerf.config import NerfConfig
from synctalk_lib.nerf.model import SyncTalkNeRF
from synctalk_lib.pose.face_geometry import RegionShape
from synctalk_lib.paths import atomic_path, default_models_dir, read_json
from synctalk_lib.types import Clip, FaceTrack, HeadPose

log = logging.getLogger("synctalk")

SCHEMA_VERSION = 1
FORMAT = "synctalk-model"
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
SUBJECT_DIR = "subject"
SUBJECT_FILE = "subject.json"
TRACK_FILE = "face_track.npz"
POSE_FILE = "head_pose.npz"
BACKGROUND_FILE = "background.png"
REFERENCE_FILE = "reference.mp4"
REFERENCE_CRF = 12
"""x264 quality of the stored reference frames (near-lossless; they become the backgrounds under the head)."""
IN_MEMORY_FRAMES_BYTES = 512 << 20
"""Decoded reference frames up to this size stay in RAM; longer clips are decoded into a temporary file."""
CONFIG_KEYS = ("schema_version", "format", "class_name", "package_version", "name", "nerf", "render", "audio",
               "training")


# ---------------------------------------------------------------------------------------------- frames
class ReferenceFrames:
    """Random access to the subject's reference frames ``[H, W, 3]`` uint8 at the clip's size.

    Backed by the clip's memory map right after training, or by ``subject/reference.mp4`` after loading (decoded
    once, on first use, into RAM or a temporary memory-mapped file).
    """

    def __init__(self, *, clip: Clip | None = None, video: Path | None = None, num_frames: int, height: int,
                 width: int):
        if clip is None and video is None:
            raise ValueError("ReferenceFrames needs a clip or a video file")
        self.clip, self.video = clip, video
        self.num_frames, self.height, self.width = int(num_frames), int(height), int(width)
        self._frames: np.ndarray | None = None
        self._tmpdir: tempfile.TemporaryDirectory | None = None

    def frame(self, index: int) -> np.ndarray:
        """Reference frame ``index`` ``[H, W, 3]`` uint8."""
        if not 0 <= index < self.num_frames:
            raise IndexError(f"reference frame {index} outside 0..{self.num_frames - 1}")
        if self.clip is not None:
            return self.clip.frame(index)
        return np.asarray(self._decoded()[index])

    def _decoded(self) -> np.ndarray:
        if self._frames is not None:
            return self._frames
        shape = (self.num_frames, self.height, self.width, 3)
        nbytes = int(np.prod(shape))
        if nbytes <= IN_MEMORY_FRAMES_BYTES:
            frames = np.zeros(shape, np.uint8)
        else:
            self._tmpdir = tempfile.TemporaryDirectory(prefix="synctalk_reference_")
            frames = np.memmap(Path(self._tmpdir.name) / "frames.u8", dtype=np.uint8, mode="w+", shape=shape)
        import av

        count = 0
        with av.open(str(self.video)) as container:
            for decoded in container.decode(video=0):
                if count >= self.num_frames:
                    break
                image = decoded.to_ndarray(format="rgb24")
                frames[count] = image[:self.height, :self.width]
                count += 1
        if count < self.num_frames:
            raise InputError(f"{self.video} holds {count} frames but the model folder expects {self.num_frames}; "
                             "the folder is damaged, save the model again")
        self._frames = frames
        return frames

    def write_video(self, path: Path, fps: float) -> None:
        """Encode every frame into ``path`` (H.264, near-lossless), streaming."""
        from synctalk_lib.media.video_writer import VideoWriter

        writer = VideoWriter(path, fps, crf=REFERENCE_CRF, pix_fmt="yuv444p", preset="fast")
        try:
            for start in range(0, self.num_frames, 32):
                writer.write(np.stack([self.frame(i) for i in range(start, min(start + 32, self.num_frames))]))
            writer.close()
        except BaseException:
            writer.abort()
            raise


# --------------------------------------------------------------------------------------------- subject
@dataclass
class SubjectAssets:
    """What rendering and blending need about the training subject (all at the clip's size)."""

    track: FaceTrack
    """The reference frames' face capture (landmarks for regions and blending, expression coefficients)."""
    pose: HeadPose
    """The reference frames' intrinsics and camera-to-world poses."""
    fps: float
    background: np.ndarray
    """[H, W, 3] uint8 clean background."""
    frames: ReferenceFrames
    train_indices: np.ndarray
    val_indices: np.ndarray
    source: dict[str, Any] = field(default_factory=dict)
    """Source video path, its size and the clip's crop box (for a full-resolution paste)."""

    @property
    def num_frames(self) -> int:
        return self.pose.num_frames

    @property
    def height(self) -> int:
        return int(self.pose.height)

    @property
    def width(self) -> int:
        return int(self.pose.width)

    @property
    def focal(self) -> float:
        return float(self.pose.focal)

    @property
    def cx(self) -> float:
        return float(self.pose.cx)

    @property
    def cy(self) -> float:
        return float(self.pose.cy)

    @property
    def c2w(self) -> np.ndarray:
        """[N, 4, 4] float32 OpenGL camera-to-world, metres."""
        return np.asarray(self.pose.c2w, np.float32)

    @property
    def expression(self) -> np.ndarray:
        """[N, E] float32 expression coefficients of the reference frames."""
        return np.asarray(self.track.expression, np.float32)

    @property
    def landmarks(self) -> np.ndarray:
        """[N, 478, 3] float32 landmarks in clip pixels."""
        return np.asarray(self.track.landmarks, np.float32)

    def regions(self, height: int | None = None, width: int | None = None) -> FaceRegions:
        """Face regions of the reference frames, for images of ``height x width`` (default: the clip's size)."""
        regions = FaceRegions(self.track.landmarks, self.height, self.width)
        if height is None or (height == self.height and width == self.width):
            return regions
        return regions.resized(int(height), int(width or self.width))

    def neutral_expression(self) -> np.ndarray:
        """``[E]`` the median expression of the training frames (eyes open, brows at rest)."""
        return np.median(self.expression[self.train_indices], axis=0).astype(np.float32)

    def reference_clip(self, cache_dir: Path | str) -> Clip:
        """The reference frames as a ``Clip`` (the training clip itself, or decoded once into ``cache_dir``)."""
        if self.frames.clip is not None:
            return self.frames.clip
        from synctalk_lib.media.clip_store import ClipWriter, cache_key

        video = Path(self.frames.video)  # type: ignore[arg-type]
        stat = video.stat()
        target = Path(cache_dir) / f"model_reference_{cache_key({'path': str(video.resolve()), 'size': stat.st_size, 'mtime': stat.st_mtime_ns})}"
        if (target / Clip.META_FILE).is_file():
            return Clip.load(target)
        with ClipWriter(target, height=self.height, width=self.width, fps=self.fps) as writer:
            for i in range(self.num_frames):
                writer.append(self.frames.frame(i))
            size = self.source.get("size")
            crop = self.source.get("crop_box")
            return writer.finish(source_path=self.source.get("path"),
                                 source_size=tuple(size) if size else None,
                                 crop_box=tuple(crop) if crop else None,
                                 start_time=float(self.source.get("start_time") or 0.0))


# ------------------------------------------------------------------------------------------------ model
class SyncTalkModel:
    """A trained subject: the NeRF, its render settings, the audio encoder it expects and the subject assets.

    This is the ``SYNCTALK_MODEL`` socket type. ``render_height x render_width`` is the resolution the NeRF was
    trained at (intrinsics ``focal, cx, cy`` at that size); renders are composited at the clip's size.
    """

    def __init__(self, nerf: SyncTalkNeRF, subject: SubjectAssets, *, render_size: tuple[int, int],
                 encoder_id: str, feature_dim: int, name: str = "synctalk", train_config: dict | None = None,
                 summary: dict | None = None, folder: Path | None = None, lip_gate_margin: float = 0.15,
                 region_shape: RegionShape | None = None):
        self.nerf = nerf.eval()
        self.lip_gate_margin = float(lip_gate_margin)
        """Growth of the audio gate of models trained with landmark gates (see ``frame_rays.lip_gate_rect``)."""
        self.region_shape = region_shape
        """Margins of the pose regions the model was trained with; None: trained with each frame's landmark
        rectangles (older models), which it keeps."""
        self.subject = subject
        self.render_height, self.render_width = int(render_size[0]), int(render_size[1])
        self.encoder_id = encoder_id
        self.feature_dim = int(feature_dim)
        self.name = name
        self.train_config = dict(train_config or {})
        self.summary = dict(summary or {})
        self.folder = folder

    @property
    def config(self) -> NerfConfig:
        return self.nerf.config

    @property
    def render_intrinsics(self) -> tuple[float, float, float]:
        """``(focal, cx, cy)`` at the render resolution."""
        sx = self.render_width / self.subject.width
        sy = self.render_height / self.subject.height
        return self.subject.focal * (sx + sy) / 2.0, self.subject.cx * sx, self.subject.cy * sy

    @property
    def device(self) -> torch.device:
        return self.nerf.individual_codes.device

    def to(self, device: torch.device | str) -> "SyncTalkModel":
        self.nerf.to(device)
        return self

    def __repr__(self) -> str:
        where = f", folder={str(self.folder)!r}" if self.folder else ""
        return (f"SyncTalkModel({self.name!r}, {self.subject.num_frames} reference frames "
                f"{self.subject.width}x{self.subject.height}, renders {self.render_width}x{self.render_height}, "
                f"audio {self.encoder_id} D={self.feature_dim}{where})")

    # --- building
    @classmethod
    def from_training(cls, nerf: SyncTalkNeRF, data, *, name: str = "synctalk", train_config: dict | None = None,
                      summary: dict | None = None) -> "SyncTalkModel":
        """Wrap a freshly trained NeRF and its ``SubjectData``."""
        clip = data.clip
        subject = SubjectAssets(
            track=data.track, pose=data.pose, fps=float(clip.fps), background=data.background.image,
            frames=ReferenceFrames(clip=clip, num_frames=clip.num_frames, height=clip.height, width=clip.width),
            train_indices=np.asarray(data.train_indices), val_indices=np.asarray(data.val_indices),
            source={"path": clip.source_path, "size": list(clip.source_size) if clip.source_size else None,
                    "crop_box": list(clip.crop_box) if clip.crop_box else None, "start_time": clip.start_time},
        )
        return cls(nerf, subject, render_size=(data.height, data.width), encoder_id=data.audio.encoder_id,
                   feature_dim=data.audio.dim, name=name, train_config=train_config, summary=summary,
                   lip_gate_margin=data.settings.lip_gate_margin, region_shape=data.settings.region_shape)

    # --- saving
    def save_pretrained(self, folder: Path | str) -> Path:
        """Write the model folder (atomically: the folder appears complete or not at all)."""
        return save_pretrained(self, folder)

    @classmethod
    def from_pretrained(cls, folder_or_repo_id: str | Path, *, revision: str | None = None,
                        local_files_only: bool = False, models_dirs: Iterable[Path | str] | None = None,
                        device: torch.device | str = "cpu") -> "SyncTalkModel":
        """Load a model folder (a path, a folder name in ``models_dirs``, or a Hub repo id ``owner/name``).

        Args:
            folder_or_repo_id: where the model is.
            revision: Hub revision (branch, tag or commit) for a repo id.
            local_files_only: never download; use the Hub cache only.
            models_dirs: folders searched for a plain name (default: the default models folder).
            device: where the NeRF goes.
        """
        folder = resolve_model_folder(folder_or_repo_id, revision=revision, local_files_only=local_files_only,
                                      models_dirs=models_dirs)
        return load_model_folder(folder, device=device)


# ------------------------------------------------------------------------------------------ save / load
def save_pretrained(model: SyncTalkModel, folder: Path | str) -> Path:
    """Write ``model`` as a model folder at ``folder`` (replacing it atomically); returns the folder."""
    from safetensors.torch import save_file

    folder = Path(folder)
    subject = model.subject
    focal, cx, cy = model.render_intrinsics
    config = {
        "schema_version": SCHEMA_VERSION, "format": FORMAT, "class_name": "SyncTalkNeRF",
        "package_version": __version__, "name": model.name, "nerf": model.config.to_dict(),
        "render": {"height": model.render_height, "width": model.render_width, "focal": focal, "cx": cx, "cy": cy,
                   "lip_gate_margin": model.lip_gate_margin,
                   "regions": None if model.region_shape is None else dataclasses.asdict(model.region_shape)},
        "audio": {"encoder_id": model.encoder_id, "feature_dim": model.feature_dim, "fps": subject.fps},
        "training": {"config": model.train_config, "summary": model.summary},
    }
    subject_meta = {
        "num_frames": subject.num_frames, "fps": subject.fps, "height": subject.height, "width": subject.width,
        "train_indices": [int(i) for i in subject.train_indices], "val_indices": [int(i) for i in subject.val_indices],
        "source": subject.source,
    }
    with atomic_path(folder) as tmp:
        tmp.mkdir(parents=True)
        state = {k: v.detach().cpu().contiguous() for k, v in model.nerf.state_dict().items()}
        save_file(state, str(tmp / WEIGHTS_FILE), metadata={"format": FORMAT, "package_version": __version__})
        (tmp / WEIGHTS_FILE).chmod(0o644)  # shareable like the other files
        (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True, default=_json_default) + "\n")
        sub = tmp / SUBJECT_DIR
        sub.mkdir()
        (sub / SUBJECT_FILE).write_text(json.dumps(subject_meta, indent=2, sort_keys=True) + "\n")
        subject.track.save(sub / TRACK_FILE)
        subject.pose.save(sub / POSE_FILE)
        _write_png(sub / BACKGROUND_FILE, subject.background)
        subject.frames.write_video(sub / REFERENCE_FILE, subject.fps)
    model.folder = folder
    log.info("SyncTalk: saved model %r to %s", model.name, folder)
    return folder


def load_model_folder(folder: Path | str, *, device: torch.device | str = "cpu") -> SyncTalkModel:
    """Load a model folder written by :func:`save_pretrained`."""
    from safetensors.torch import load_file

    folder = Path(folder)
    for name in (CONFIG_FILE, WEIGHTS_FILE, f"{SUBJECT_DIR}/{SUBJECT_FILE}", f"{SUBJECT_DIR}/{TRACK_FILE}",
                 f"{SUBJECT_DIR}/{POSE_FILE}",
                 f"{SUBJECT_DIR}/{BACKGROUND_FILE}", f"{SUBJECT_DIR}/{REFERENCE_FILE}"):
        if not (folder / name).is_file():
            raise InputError(f"{folder} is not a complete SyncTalk model folder: {name} is missing "
                             "(train the subject again or copy the whole folder)")
    config = read_json(folder / CONFIG_FILE)
    if config.get("format") != FORMAT:
        raise InputError(f"{folder / CONFIG_FILE} is not a SyncTalk model config (format {config.get('format')!r})")
    if int(config.get("schema_version", 0)) > SCHEMA_VERSION:
        raise InputError(f"{folder} was written by a newer synctalk (schema {config['schema_version']}, this one "
                         f"reads {SCHEMA_VERSION}); update the node pack")
    _warn_keys("config.json", config, CONFIG_KEYS)
    nerf_values = dict(config.get("nerf", {}))
    _warn_defaults("config.json 'nerf'", nerf_values, NerfConfig)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        nerf_config = NerfConfig.from_dict(nerf_values)
    for w in caught:
        _warn(f"{folder.name}: {w.message}")
    nerf = SyncTalkNeRF(nerf_config)
    state = load_file(str(folder / WEIGHTS_FILE))
    missing, unexpected = nerf.load_state_dict(state, strict=False)
    if missing:
        raise InputError(f"{folder / WEIGHTS_FILE} lacks weights {sorted(missing)[:8]}; the folder is damaged or "
                         "from an incompatible version")
    if unexpected:
        _warn(f"{folder.name}: ignoring unknown weights {sorted(unexpected)[:8]}")
    nerf.to(device).eval()

    sub = folder / SUBJECT_DIR
    meta = read_json(sub / SUBJECT_FILE)
    track = FaceTrack.load(sub / TRACK_FILE)
    pose = HeadPose.load(sub / POSE_FILE)
    background = _read_png(sub / BACKGROUND_FILE)
    n, height, width = int(meta["num_frames"]), int(meta["height"]), int(meta["width"])
    if background.shape[:2] != (height, width) or pose.num_frames != n or track.num_frames != n:
        raise InputError(f"{sub} is inconsistent (the background, head pose or face track disagree with "
                         f"{SUBJECT_FILE}); save the model again")
    subject = SubjectAssets(
        track=track, pose=pose, fps=float(meta["fps"]), background=background,
        frames=ReferenceFrames(video=sub / REFERENCE_FILE, num_frames=n, height=height, width=width),
        train_indices=np.asarray(meta.get("train_indices", list(range(n))), np.int64),
        val_indices=np.asarray(meta.get("val_indices", []), np.int64), source=dict(meta.get("source") or {}),
    )
    render = config.get("render", {})
    audio = config.get("audio", {})
    if "encoder_id" not in audio or "feature_dim" not in audio:
        raise InputError(f"{folder / CONFIG_FILE} does not say which audio encoder the model was trained with")
    training = config.get("training", {})
    return SyncTalkModel(nerf, subject, render_size=(int(render.get("height", height)), int(render.get("width", width))),
                         encoder_id=str(audio["encoder_id"]), feature_dim=int(audio["feature_dim"]),
                         name=str(config.get("name", folder.name)), train_config=training.get("config"),
                         summary=training.get("summary"), folder=folder,
                         lip_gate_margin=float(render.get("lip_gate_margin", 0.15)),
                         region_shape=_region_shape(render.get("regions")))


def _region_shape(values: dict | None) -> RegionShape | None:
    """The pose-region margins of config.json's "render" (None: a model trained with landmark gates)."""
    if values is None:
        return None
    known = {f.name for f in dataclasses.fields(RegionShape)}
    return RegionShape(**{k: float(v) for k, v in values.items() if k in known})


# ------------------------------------------------------------------------------------------- resolution
def is_model_folder(folder: Path) -> bool:
    return (folder / CONFIG_FILE).is_file() and (folder / WEIGHTS_FILE).is_file()


def list_models(models_dirs: Iterable[Path | str] | None = None) -> list[str]:
    """Names of the model folders found directly inside the models folders."""
    names: list[str] = []
    for root in _dirs(models_dirs):
        if root.is_dir():
            names += [p.name for p in sorted(root.iterdir()) if p.is_dir() and is_model_folder(p)]
    return sorted(set(names))


def resolve_model_folder(folder_or_repo_id: str | Path, *, revision: str | None = None,
                         local_files_only: bool = False,
                         models_dirs: Iterable[Path | str] | None = None) -> Path:
    """A local model folder for a path, a name in the models folders, or a Hub repo id."""
    text = str(folder_or_repo_id).strip()
    if not text:
        raise InputError("no model given: choose a model folder name or a Hub repo id")
    path = Path(text).expanduser()
    if path.is_dir():
        if not is_model_folder(path):
            raise InputError(f"{path} is not a SyncTalk model folder (no {CONFIG_FILE} + {WEIGHTS_FILE})")
        return path
    dirs = _dirs(models_dirs)
    for root in dirs:
        candidate = root / text
        if candidate.is_dir() and is_model_folder(candidate):
            return candidate
    if text.count("/") == 1 and not path.is_absolute() and not text.startswith("."):
        return _download(text, revision=revision, local_files_only=local_files_only)
    searched = ", ".join(str(d) for d in dirs)
    raise InputError(f"no SyncTalk model named {text!r} in {searched}; train one with TrainSyncTalk / `train`, "
                     "or give a folder path or a Hub repo id (owner/name)")


def _download(repo_id: str, *, revision: str | None, local_files_only: bool) -> Path:
    try:
        from huggingface_hub import snapshot_download
    except ImportError as exc:
        raise MissingDependencyError("huggingface_hub", "Loading a SyncTalk model from the Hub") from exc
    try:
        folder = Path(snapshot_download(repo_id, revision=revision, local_files_only=local_files_only))
    except Exception as exc:  # offline, not found, no access: all become one sentence with the fix
        kind = type(exc).__name__
        offline = "offline" in str(exc).lower() or "LocalEntryNotFound" in kind or local_files_only
        hint = ("the Hub cannot be reached (offline mode or no network) and the repo is not in the local Hub "
                "cache; download the folder on a connected machine and copy it into models/synctalk/"
                if offline else "check the repo id, the revision and your access token (huggingface-cli login)")
        raise SyncTalkError(f"could not get the SyncTalk model {repo_id!r}"
                            f"{f' at revision {revision!r}' if revision else ''} from the Hugging Face Hub: "
                            f"{kind}: {str(exc).splitlines()[0] if str(exc) else ''} -- {hint}") from exc
    if not is_model_folder(folder):
        raise InputError(f"the Hub repo {repo_id!r} is not a SyncTalk model folder (no {CONFIG_FILE} + "
                         f"{WEIGHTS_FILE} at its root)")
    return folder


def _dirs(models_dirs: Iterable[Path | str] | None) -> list[Path]:
    return [Path(d) for d in models_dirs] if models_dirs else [default_models_dir()]


# ---------------------------------------------------------------------------------------------- helpers
def _warn(message: str) -> None:
    log.warning("SyncTalk: %s", message)
    warnings.warn(message, stacklevel=3)


def _warn_keys(where: str, data: dict, known: Iterable[str]) -> None:
    unknown = sorted(set(data) - set(known))
    if unknown:
        _warn(f"{where}: ignoring unknown keys {unknown} (written by another version?)")


def _warn_defaults(where: str, data: dict, cls) -> None:
    import dataclasses

    defaulted = [f.name for f in dataclasses.fields(cls) if f.name not in data]
    if defaulted:
        _warn(f"{where}: no value for {defaulted}; using the defaults")


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")


def _write_png(path: Path, image: np.ndarray) -> None:
    import cv2

    if not cv2.imwrite(str(path), np.ascontiguousarray(image[..., ::-1])):
        raise OSError(f"could not write {path}")


def _read_png(path: Path) -> np.ndarray:
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise InputError(f"cannot read {path} (damaged image)")
    return np.ascontiguousarray(image[..., ::-1])


def copy_model_folder(src: Path, dst: Path) -> Path:
    """Copy a model folder atomically (SaveSyncTalkModel of a model that already has a folder)."""
    with atomic_path(dst) as tmp:
        shutil.copytree(src, tmp)
    return dst
