"""A trained subject as a shareable folder (``models/synctalk/NAME/``), and the ``SyncTalkModel`` object.

Folder layout (everything RenderTriPlane and a portrait blend need; no pickles, no local paths)::

    NAME/
      model.safetensors      NeRF weights and its occupancy grid
      config.json            hyper-parameters, schema/package version, render intrinsics, audio encoder,
                             training settings and summary
      subject/
        subject.json         clip size, fps, train/held-out split, the source video's name, size and crop box
        face_track.npz       FaceTrack of the reference frames (landmarks, blendshapes, expression)
        head_pose.npz        HeadPose of the reference frames (intrinsics, camera-to-world)
        background.png       the clean background at the clip's size
        reference.mp4        the reference frames (H.264, near-lossless) for per-frame backgrounds and blending
      audio_encoder.safetensors   only for models trained on the subject's own audio encoder (``preprocess
                             --audio-encoder own``): driving speech is encoded with it

    model = SyncTalkModel.from_pretrained("may")                 # models/synctalk/may, or a folder path
    model = SyncTalkModel.from_pretrained(repo_id="owner/may")   # a Hugging Face Hub repo (see hub.py)
    model.save_pretrained("/somewhere/may_copy")

A plain name is looked up only in the models folders (a folder of that name in the current directory never
shadows it); anything else is a path (``allow_paths=False``, as the nodes use it, refuses paths). Loading checks
the folder first (``folder_checks``: JSON, types, ranges, weight shapes against the config, finite weights) and
decodes ``subject/reference.mp4`` once into the clip cache (``cache_dir``), so ``subject.frames`` is a ``Clip``.
It warns, by name, about keys it does not know and keys that fell back to defaults, and leaves the model in eval
mode.
"""
from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import logging
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch

from synctalk_lib import __version__
from synctalk_lib.errors import InputError
from synctalk_lib.face.regions import FaceRegions
from synctalk_lib.nerf import folder_checks as checks
from synctalk_lib.nerf.config import NerfConfig
from synctalk_lib.nerf.model import SyncTalkNeRF
from synctalk_lib.pose.face_geometry import RegionShape
from synctalk_lib.paths import atomic_path, confined_name, default_cache_dir, default_models_dir
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
FOLDER_FILES = (CONFIG_FILE, WEIGHTS_FILE, f"{SUBJECT_DIR}/{SUBJECT_FILE}", f"{SUBJECT_DIR}/{TRACK_FILE}",
                f"{SUBJECT_DIR}/{POSE_FILE}", f"{SUBJECT_DIR}/{BACKGROUND_FILE}", f"{SUBJECT_DIR}/{REFERENCE_FILE}")
"""Every file of a model folder (also what a Hub download may fetch, with the optional extras below)."""
AUDIO_ENCODER_FILE = "audio_encoder.safetensors"
"""The subject's own audio-visual encoder, for models trained on its features (the driving speech needs it)."""
OPTIONAL_FILES = ("train_report.json", "README.md", AUDIO_ENCODER_FILE)
REFERENCE_CRF = 12
"""x264 quality of the stored reference frames (near-lossless; they become the backgrounds under the head)."""
REFERENCE_BYTES_PER_PIXEL = 3 / 8
"""Disk estimate of the stored reference video per frame pixel, for the free-space check before saving (raw
frames are 3 bytes a pixel; near-lossless H.264 of a talking head takes well under an eighth of that)."""
CONFIG_KEYS = ("schema_version", "format", "class_name", "package_version", "name", "nerf", "render", "audio",
               "training")


# ---------------------------------------------------------------------------------------------- frames
def decode_reference(video: Path, cache_dir: Path | str, *, num_frames: int, height: int, width: int, fps: float,
                     source: dict[str, Any]) -> Clip:
    """``subject/reference.mp4`` decoded once into the clip cache (keyed by the file's path, size and mtime), with
    a free-disk check that names the cache folder; a later load of the same file reuses it."""
    from synctalk_lib.media.clip_store import ClipWriter, cache_key, check_free_space, key_lock, load_cached_clip

    video = Path(video)
    cache_dir = Path(cache_dir)
    stat = video.stat()
    key = cache_key({"model_reference": str(video.resolve()), "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns,
                     "frames": num_frames, "size": [height, width], "fps": fps})
    target = cache_dir / f"model-reference-{key}"
    with key_lock(target):
        cached = load_cached_clip(target)
        if cached is not None:
            return cached
        check_free_space(cache_dir, num_frames * height * width * 3,
                         f"the {num_frames} reference frames of {video.parent.parent.name}")
        try:
            with ClipWriter(target, height=height, width=width, fps=fps) as writer:
                _decode_into(video, writer, num_frames, height, width)
                return writer.finish(source_path=None, source_size=_tuple(source.get("size")),
                                     crop_box=_tuple(source.get("crop_box")),
                                     start_time=float(source.get("start_time") or 0.0))
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise InputError(f"the disk of the clip cache {cache_dir} filled up while decoding {video}; free "
                                 "space there or set SYNCTALK_CACHE_DIR to a bigger disk") from exc
            raise


def _decode_into(video: Path, writer, num_frames: int, height: int, width: int) -> None:
    import av

    count = 0
    try:
        with av.open(str(video)) as container:
            for decoded in container.decode(video=0):
                if count >= num_frames:
                    break
                image = decoded.to_ndarray(format="rgb24")
                if image.shape[0] < height or image.shape[1] < width:
                    raise checks.damaged(video, f"its frames are {image.shape[1]}x{image.shape[0]}, "
                                                f"smaller than the {width}x{height} the folder declares")
                writer.append(np.ascontiguousarray(image[:height, :width]))
                count += 1
    except (av.FFmpegError, ValueError, IndexError) as exc:  # truncated or not a video
        if not (isinstance(exc, InputError)):
            raise checks.damaged(video, f"the video cannot be decoded after frame {count} "
                                        f"({type(exc).__name__}: {exc})") from None
        raise
    if count < num_frames:
        raise checks.damaged(video, f"it holds {count} frames but the folder expects {num_frames}")


def write_reference_video(clip: Clip, path: Path, fps: float) -> None:
    """Encode every frame of ``clip`` into ``path`` (H.264, near-lossless), streaming."""
    from synctalk_lib.media.video_writer import VideoWriter

    writer = VideoWriter(path, fps, crf=REFERENCE_CRF, pix_fmt="yuv444p", preset="fast")
    try:
        for start in range(0, clip.num_frames, 32):
            # a fresh memory map per batch: one kept open would keep every frame read in the resident set (6 GB
            # for a 5-minute clip), although the kernel could drop those pages
            writer.write(np.array(clip.frames()[start:start + 32]))
        writer.close()
    except BaseException:
        writer.abort()
        raise


def _tuple(value) -> tuple | None:
    return tuple(int(v) for v in value) if value else None


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
    frames: Clip
    """The reference frames at the clip's size: the training clip itself, or ``subject/reference.mp4`` decoded
    once into the clip cache when the model was loaded."""
    train_indices: np.ndarray
    val_indices: np.ndarray
    source: dict[str, Any] = field(default_factory=dict)
    """The source video's file name, its size and the clip's crop box (never a local path: folders are shared)."""

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

    def reference_clip(self) -> Clip:
        """The reference frames as a ``Clip`` (for PortraitSyncBlend). After loading it has no source path: a
        full-resolution paste needs the clip LoadReferenceVideo makes from the original video."""
        return self.frames


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
        self.audio_encoder_file: Path | None = None
        """The weights of the subject's own audio encoder when the model was trained on its features."""

    def audio_encoder(self) -> str | None:
        """``ave-file:<path>`` of the model's own audio encoder (None: a built-in encoder makes its features)."""
        path = self.audio_encoder_file
        return f"ave-file:{path}" if path is not None and Path(path).is_file() else None

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
            track=data.track, pose=data.pose, fps=float(clip.fps), background=data.background.image, frames=clip,
            train_indices=np.asarray(data.train_indices), val_indices=np.asarray(data.val_indices),
            source={"name": Path(clip.source_path).name if clip.source_path else None,
                    "size": list(clip.source_size) if clip.source_size else None,
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
    def from_pretrained(cls, name_or_path: str | Path | None = None, *, repo_id: str | None = None,
                        revision: str | None = None, local_files_only: bool = False,
                        models_dirs: Iterable[Path | str] | None = None, device: torch.device | str = "cpu",
                        cache_dir: Path | str | None = None, allow_paths: bool = True,
                        reference: Clip | None = None) -> "SyncTalkModel":
        """Load a model folder: a folder name in ``models_dirs``, a folder path, or a Hub repo (``repo_id``).

        Args:
            name_or_path: a plain name (looked up only in ``models_dirs``) or a path to a model folder.
            repo_id: a Hugging Face Hub repo ``owner/name`` instead (only the model folder's files are fetched).
            revision: Hub revision (branch, tag or commit) for ``repo_id``.
            local_files_only: never download; use the Hub cache only.
            models_dirs: folders searched for a plain name (default: the default models folder).
            device: where the NeRF goes.
            cache_dir: the clip cache the reference frames are decoded into (default ``paths.default_cache_dir()``).
            allow_paths: accept folder paths (False: names in ``models_dirs`` only, as on a shared server).
            reference: the subject's own clip when the caller has it (the model was trained on it): used as the
                reference frames instead of decoding ``reference.mp4``.
        """
        if repo_id:
            from synctalk_lib.hub import download_model_folder

            folder = download_model_folder(repo_id, revision=revision, local_files_only=local_files_only,
                                           files=FOLDER_FILES + OPTIONAL_FILES)
        else:
            folder = resolve_model_folder(name_or_path, models_dirs=models_dirs, allow_paths=allow_paths)
        return load_model_folder(folder, device=device, cache_dir=cache_dir, reference=reference)


# ------------------------------------------------------------------------------------------ save / load
def save_pretrained(model: SyncTalkModel, folder: Path | str) -> Path:
    """Write ``model`` as a model folder at ``folder`` (replacing it atomically); returns the folder."""
    from safetensors.torch import save_file

    folder = Path(folder)
    subject = model.subject
    state = {k: v.detach().cpu().contiguous() for k, v in model.nerf.state_dict().items()}
    checks.check_finite_weights(folder / WEIGHTS_FILE, state)
    pixels = subject.num_frames * subject.height * subject.width
    _check_disk(folder, sum(v.numel() * v.element_size() for v in state.values())
                + int(pixels * REFERENCE_BYTES_PER_PIXEL) + subject.num_frames * 8192, f"the model {model.name!r}")
    with _disk_errors(folder), atomic_path(folder) as tmp:
        tmp.mkdir(parents=True)
        save_file(state, str(tmp / WEIGHTS_FILE), metadata={"format": FORMAT, "package_version": __version__})
        (tmp / WEIGHTS_FILE).chmod(0o644)  # shareable like the other files
        (tmp / CONFIG_FILE).write_text(json.dumps(_config_json(model), indent=2, sort_keys=True,
                                                  default=_json_default) + "\n")
        sub = tmp / SUBJECT_DIR
        sub.mkdir()
        (sub / SUBJECT_FILE).write_text(json.dumps(_subject_json(subject), indent=2, sort_keys=True) + "\n")
        subject.track.save(sub / TRACK_FILE)
        subject.pose.save(sub / POSE_FILE)
        _write_png(sub / BACKGROUND_FILE, subject.background)
        write_reference_video(subject.frames, sub / REFERENCE_FILE, subject.fps)
        if model.audio_encoder() is not None:
            shutil.copyfile(model.audio_encoder_file, tmp / AUDIO_ENCODER_FILE)
    model.folder = folder
    if model.audio_encoder() is not None:
        model.audio_encoder_file = folder / AUDIO_ENCODER_FILE
    log.info("SyncTalk: saved model %r to %s", model.name, folder)
    return folder


def _config_json(model: SyncTalkModel) -> dict[str, Any]:
    focal, cx, cy = model.render_intrinsics
    return {
        "schema_version": SCHEMA_VERSION, "format": FORMAT, "class_name": "SyncTalkNeRF",
        "package_version": __version__, "name": model.name, "nerf": model.config.to_dict(),
        "render": {"height": model.render_height, "width": model.render_width, "focal": focal, "cx": cx, "cy": cy,
                   "lip_gate_margin": model.lip_gate_margin,
                   "regions": None if model.region_shape is None else dataclasses.asdict(model.region_shape)},
        "audio": {"encoder_id": model.encoder_id, "feature_dim": model.feature_dim, "fps": model.subject.fps},
        "training": {"config": model.train_config, "summary": model.summary},
    }


def _subject_json(subject: SubjectAssets) -> dict[str, Any]:
    source = dict(subject.source)
    if source.get("path"):  # a model made by an older version: keep the name, never the local path
        source["name"] = Path(str(source.pop("path"))).name
    source.pop("path", None)
    return {
        "num_frames": subject.num_frames, "fps": subject.fps, "height": subject.height, "width": subject.width,
        "train_indices": [int(i) for i in subject.train_indices], "val_indices": [int(i) for i in subject.val_indices],
        "source": source,
    }


def load_model_folder(folder: Path | str, *, device: torch.device | str = "cpu",
                      cache_dir: Path | str | None = None, reference: Clip | None = None) -> SyncTalkModel:
    """Load a model folder written by :func:`save_pretrained`, checking it first (see ``folder_checks``)."""
    folder = Path(folder)
    for name in FOLDER_FILES:
        if not (folder / name).is_file():
            raise InputError(f"{folder} is not a complete SyncTalk model folder: {name} is missing "
                             "(train the subject again or copy the whole folder)")
    config, nerf_config = _read_config(folder)
    sub = folder / SUBJECT_DIR
    meta = checks.subject_meta(sub / SUBJECT_FILE, checks.read_json_object(sub / SUBJECT_FILE))
    render_size = checks.render_size(folder / CONFIG_FILE, config.get("render", {}), meta["height"], meta["width"])
    audio = config.get("audio")
    if not isinstance(audio, dict):
        raise checks.damaged(folder / CONFIG_FILE, "it does not say which audio encoder the model was trained with")
    encoder_id = checks.need(folder / CONFIG_FILE, audio, "encoder_id", str)
    feature_dim = checks.need(folder / CONFIG_FILE, audio, "feature_dim", int, low=1)
    if feature_dim != nerf_config.audio_in_dim:
        raise checks.damaged(folder / CONFIG_FILE, f"audio feature_dim {feature_dim} differs from nerf "
                                                   f"audio_in_dim {nerf_config.audio_in_dim}")
    nerf = _read_weights(folder / WEIGHTS_FILE, nerf_config).to(device).eval()
    subject = _read_subject(sub, meta, cache_dir, reference)
    training = config.get("training") if isinstance(config.get("training"), dict) else {}
    margin = checks.need(folder / CONFIG_FILE, config.get("render") or {}, "lip_gate_margin", float, low=0.0,
                         high=1.0, optional=True, default=0.15)
    model = SyncTalkModel(nerf, subject, render_size=render_size, encoder_id=encoder_id, feature_dim=feature_dim,
                          name=str(config.get("name", folder.name)), train_config=training.get("config"),
                          summary=training.get("summary"), folder=folder, lip_gate_margin=float(margin),
                          region_shape=_region_shape(folder / CONFIG_FILE, (config.get("render") or {}).get("regions")))
    if (folder / AUDIO_ENCODER_FILE).is_file():
        model.audio_encoder_file = folder / AUDIO_ENCODER_FILE
    return model


def _region_shape(path: Path, values: Any) -> RegionShape | None:
    """The pose-region margins of config.json's "render" (None: a model trained with landmark gates)."""
    if values is None:
        return None
    if not isinstance(values, dict):
        raise checks.damaged(path, "'render.regions' must be a JSON object")
    fields = [f.name for f in dataclasses.fields(RegionShape)]
    return RegionShape(**{name: checks.need(path, values, name, float, low=0.0, high=2.0, optional=True,
                                            default=getattr(RegionShape(), name), section="render.regions")
                          for name in fields})


def _read_config(folder: Path) -> tuple[dict[str, Any], NerfConfig]:
    """``config.json`` checked (format, schema, the ``nerf`` section's types), and its NerfConfig."""
    path = folder / CONFIG_FILE
    config = checks.read_json_object(path)
    if config.get("format") != FORMAT:
        raise InputError(f"{path} is not a SyncTalk model config (format {config.get('format')!r}); choose a "
                         "folder written by TrainSyncTalk / SaveSyncTalkModel / `train`")
    schema = checks.need(path, config, "schema_version", int, low=0)
    if schema > SCHEMA_VERSION:
        raise InputError(f"{folder} was written by a newer synctalk (schema {schema}, this one reads "
                         f"{SCHEMA_VERSION}); update the node pack")
    _warn_keys("config.json", config, CONFIG_KEYS)
    nerf_values = config.get("nerf", {})
    if isinstance(nerf_values, dict):
        _warn_defaults("config.json 'nerf'", nerf_values, NerfConfig)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        nerf_config = checks.nerf_config(path, nerf_values)
    for w in caught:
        _warn(f"{folder.name}: {w.message}")
    return config, nerf_config


def _read_weights(path: Path, config: NerfConfig) -> SyncTalkNeRF:
    """The NeRF of ``config`` with the weights of ``path`` (shapes checked before allocating, values finite)."""
    from safetensors.torch import load_file

    checks.check_weight_shapes(path, config)
    try:
        state = load_file(str(path))
    except Exception as exc:  # SafetensorError: truncated data after a valid header
        raise checks.damaged(path, f"not a readable safetensors file ({type(exc).__name__}: {exc})") from None
    checks.check_finite_weights(path, state)
    nerf = SyncTalkNeRF(config)
    missing, unexpected = nerf.load_state_dict(state, strict=False)
    if missing:
        raise checks.damaged(path, f"weights {sorted(missing)[:8]} are missing")
    if unexpected:
        _warn(f"{path.parent.name}: ignoring unknown weights {sorted(unexpected)[:8]}")
    return nerf


def _read_subject(sub: Path, meta: dict[str, Any], cache_dir: Path | str | None,
                  reference: Clip | None) -> SubjectAssets:
    """The subject assets of a folder: track, pose, background checked against ``subject.json``, and the
    reference frames (``reference`` when it has the same frames, else decoded into the clip cache)."""
    try:
        track = FaceTrack.load(sub / TRACK_FILE)
        pose = HeadPose.load(sub / POSE_FILE)
    except InputError as exc:  # the record's own message says "make it again from the video": not here
        raise InputError(f"{str(exc).split('; ')[0]}; {checks.DAMAGED}") from exc
    background = _read_png(sub / BACKGROUND_FILE)
    n, height, width = meta["num_frames"], meta["height"], meta["width"]
    parts = {TRACK_FILE: (track.num_frames, track.height, track.width),
             POSE_FILE: (pose.num_frames, pose.height, pose.width),
             BACKGROUND_FILE: (n, *background.shape[:2])}
    for name, (frames, h, w) in parts.items():
        if (frames, h, w) != (n, height, width):
            raise checks.damaged(sub / name, f"it describes {frames} frames of {w}x{h}, but {SUBJECT_FILE} says "
                                             f"{n} frames of {width}x{height}")
    if reference is not None and (reference.num_frames, reference.height, reference.width) == (n, height, width):
        frames = reference
    else:
        frames = decode_reference(sub / REFERENCE_FILE, cache_dir or default_cache_dir(), num_frames=n,
                                  height=height, width=width, fps=meta["fps"], source=meta["source"])
    return SubjectAssets(track=track, pose=pose, fps=meta["fps"], background=background, frames=frames,
                         train_indices=meta["train_indices"], val_indices=meta["val_indices"], source=meta["source"])


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


def resolve_model_folder(name_or_path: str | Path | None, *, models_dirs: Iterable[Path | str] | None = None,
                         allow_paths: bool = True) -> Path:
    """The local model folder of a plain name (searched in the models folders only) or, with ``allow_paths``, of
    a folder path. Hub repos go through ``from_pretrained(repo_id=...)``, never through this name."""
    text = str(name_or_path or "").strip()
    if not text:
        raise InputError("no model given: choose a model folder name (or give a Hub repo_id)")
    dirs = _dirs(models_dirs)
    if confined_name(text):
        for root in dirs:
            candidate = root / text
            if candidate.is_dir() and is_model_folder(candidate):
                return candidate
        searched = ", ".join(str(d) for d in dirs)
        raise InputError(f"no SyncTalk model named {text!r} in {searched}; train one with TrainSyncTalk / `train`, "
                         "or give a Hub repo id as repo_id")
    if not allow_paths:
        raise InputError(f"the model {text!r} is a path, which is not accepted here: choose a model folder by name "
                         "from models/synctalk, give a Hub repo id as repo_id, or set "
                         "SYNCTALK_ALLOW_ABSOLUTE_PATHS=1 on the server to allow paths")
    path = Path(text).expanduser()
    if not path.is_dir():
        hint = " (for a Hugging Face Hub repo use repo_id / --repo-id)" if text.count("/") == 1 else ""
        raise InputError(f"there is no model folder at {text!r}{hint}")
    if not is_model_folder(path):
        raise InputError(f"{path} is not a SyncTalk model folder (no {CONFIG_FILE} + {WEIGHTS_FILE})")
    return path


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
        raise checks.damaged(path, "not a readable image")
    return np.ascontiguousarray(image[..., ::-1])


def copy_model_folder(src: Path, dst: Path) -> Path:
    """Copy a model folder atomically (SaveSyncTalkModel of a model that already has a folder)."""
    size = sum(p.stat().st_size for p in Path(src).rglob("*") if p.is_file())
    _check_disk(dst, size, f"a copy of {Path(src).name}")
    with _disk_errors(dst), atomic_path(dst) as tmp:
        shutil.copytree(src, tmp)
    return dst


def _check_disk(folder: Path, need: int, what: str) -> None:
    from synctalk_lib.media.clip_store import free_bytes

    parent = Path(folder).parent
    free = free_bytes(parent)
    if need + (64 << 20) > free:
        raise InputError(f"not enough disk space in {parent} for {what}: it needs about {need / 1e9:.2f} GB, "
                         f"{free / 1e9:.2f} GB are free; free some space there or save to another folder")


@contextlib.contextmanager
def _disk_errors(folder: Path):
    """A disk that fills up while writing ``folder`` becomes one InputError naming it (the partial copy is
    removed by ``atomic_path``)."""
    try:
        yield
    except (OSError, shutil.Error) as exc:
        full = getattr(exc, "errno", None) == errno.ENOSPC or "No space left" in str(exc)
        if not full:
            raise
        raise InputError(f"the disk filled up while writing the model folder {folder}; free some space in "
                         f"{Path(folder).parent} (or save elsewhere) and save again") from exc
