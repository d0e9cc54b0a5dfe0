"""Training data of one subject: frames, per-frame backgrounds, regions, cameras, audio and expression.

``SubjectData`` joins the four hand-off types (``Clip``, ``FaceTrack``, ``HeadPose``, ``AudioFeatures``) after
checking they describe the same frames, and hands out ray batches for the trainer:

- ``random_rays``: random pixels, most of them inside the head region (the part the NeRF must learn), the rest
  anywhere in the frame (so empty space is learned as empty);
- ``patch_rays``: square patches around the head for the perceptual (LPIPS) loss;
- ``lips_rays``: every pixel of the lips square (lip fine-tune steps);
- ``image_rays``: every pixel, row-major (evaluation).

Frames stay uint8: read one at a time from the clip's memory map and, at a reduced resolution, resized and kept in
a bounded cache. The target of a ray is the real frame's pixel; its background is the same frame with the head
region replaced by the clean background (torso, neck and background of that frame stay real). Intrinsics are
scaled with the resolution.
"""
from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from synctalk_lib.errors import InputError
from synctalk_lib.face.regions import FaceRegions, HeadShape
from synctalk_lib.nerf.frame_rays import RaySubject, frame_rays
from synctalk_lib.pose.face_geometry import FaceGeometry, RegionShape
from synctalk_lib.nerf.rays import audio_windows
from synctalk_lib.portrait.background import Background, clean_background, frame_background
from synctalk_lib.types import AudioFeatures, Clip, FaceTrack, HeadPose
from synctalk_lib.progress import StepCallback

log = logging.getLogger("synctalk")


DEFAULT_VAL_FRACTION = 1.0 / 11.0
"""The original holds out the last 1/11 of the frames (frames 300-330 of a 331-frame clip)."""
MAX_AUDIO_EXTRA_ROWS = 4
"""Audio feature rows beyond the last frame that are tolerated (and dropped): encoders pad by a few rows."""


# ---------------------------------------------------------------------------------------------- frame split
def split_frames(num_frames: int, val_frames: str | float | range | Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Training and held-out frame indices.

    Args:
        num_frames: frames in the clip.
        val_frames: the held-out frames: ``None`` = the last 1/11 (the original's split); a fraction in (0, 1) =
            that share of the frames at the end; ``0`` = none; a ``range`` or a sequence of indices; or a string
            ``"300:331"`` (Python slice syntax, end exclusive) / ``"0.1"``.

    Returns:
        (train [T] int64, val [V] int64), disjoint, sorted.
    """
    if isinstance(val_frames, str):
        text = val_frames.strip()
        if ":" in text:
            start, _, stop = text.partition(":")
            val_frames = range(int(start or 0), int(stop) if stop.strip() else num_frames)
        elif text in ("", "none", "None"):
            val_frames = 0.0
        else:
            val_frames = float(text)
    if val_frames is None:
        val_frames = DEFAULT_VAL_FRACTION
    if isinstance(val_frames, (float, int)) and not isinstance(val_frames, bool):
        fraction = float(val_frames)
        if not 0.0 <= fraction < 1.0:
            raise InputError(f"val_frames as a fraction must be in [0, 1), got {fraction}")
        # like the original: n_train = int(N * (1 - fraction)), at least one held-out frame when asked for
        n_train = num_frames if fraction == 0.0 else min(int(num_frames * (1.0 - fraction)), num_frames - 1)
        val = np.arange(n_train, num_frames)
    else:
        val = np.unique(np.asarray(list(val_frames), dtype=np.int64))
        if val.size and (val.min() < 0 or val.max() >= num_frames):
            raise InputError(f"val_frames {val.min()}..{val.max()} lie outside the clip's {num_frames} frames")
    train = np.setdiff1d(np.arange(num_frames), val)
    if train.size == 0:
        raise InputError(f"val_frames leaves no training frames out of {num_frames}")
    return train.astype(np.int64), val.astype(np.int64)


# --------------------------------------------------------------------------------------------------- checks
def check_inputs(clip: Clip, track: FaceTrack, pose: HeadPose, audio: AudioFeatures) -> int:
    """Check the four inputs describe the same frames; returns the number of frames.

    Raises:
        InputError naming the disagreeing counts, sizes or frame rates, and what to re-run.
    """
    n = clip.num_frames
    counts = {"clip": n, "face track": track.num_frames, "head pose": pose.num_frames}
    if len(set(counts.values())) != 1:
        listed = ", ".join(f"{k} {v}" for k, v in counts.items())
        raise InputError(f"the inputs disagree on the number of frames ({listed}); run face capture and head "
                         "pose on this same clip")
    if not n <= audio.num_frames <= n + MAX_AUDIO_EXTRA_ROWS:
        raise InputError(f"the audio features have {audio.num_frames} rows but the clip has {n} frames; encode the "
                         "audio of this same clip (EncodeAudioAV on the clip's own audio)")
    sizes = {"clip": (clip.width, clip.height), "face track": (track.width, track.height),
             "head pose": (pose.width, pose.height)}
    if len(set(sizes.values())) != 1:
        listed = ", ".join(f"{k} {w}x{h}" for k, (w, h) in sizes.items())
        raise InputError(f"the inputs disagree on the frame size ({listed}); run every stage on the same clip")
    if abs(audio.fps - clip.fps) > 1e-3:
        raise InputError(f"the audio features are at {audio.fps:g} fps but the clip is at {clip.fps:g} fps; "
                         "encode the audio at the clip's frame rate")
    if n < 2:
        raise InputError(f"the clip has {n} frame(s); training needs a video of at least a few seconds")
    return n


# ------------------------------------------------------------------------------------------------ ray batch
@dataclass
class RayBatch:
    """Rays of one frame with their targets (N rays)."""

    frame: int
    rows: Tensor
    """[N] int64 pixel rows."""
    cols: Tensor
    """[N] int64 pixel columns."""
    rays_o: Tensor
    """[N, 3] NGP-space origins."""
    rays_d: Tensor
    """[N, 3] NGP-space unit directions."""
    target: Tensor
    """[N, 3] float32 0..1 ground-truth colour."""
    bg: Tensor
    """[N, 3] float32 0..1 background the head is composited over."""
    weight: Tensor
    """[N] float32 loss weight (higher on the lips)."""
    face: Tensor
    """[N] bool inside the face rectangle (uncertainty loss)."""
    lower_face: Tensor
    """[N] bool inside the lower-face rectangle (attention-mask losses)."""
    lip_mask: Tensor
    """[N] float32 gate of the audio attention ("ray" mask mode)."""
    expr_mask: Tensor
    """[N] float32 gate of the expression attention ("ray" mask mode)."""
    shape: tuple[int, ...] | None = None
    """Image layout of the rays when they form patches: (num_patches, P, P) or (1, h, w); None for scattered."""

    def to(self, device: torch.device | str) -> "RayBatch":
        values = {k: (v.to(device) if isinstance(v, Tensor) else v) for k, v in self.__dict__.items()}
        return RayBatch(**values)

    def __len__(self) -> int:
        return int(self.rows.shape[0])


# ------------------------------------------------------------------------------------------------- dataset
@dataclass(frozen=True)
class DataSettings:
    """How frames are prepared and rays drawn."""

    resolution: int = 0
    """Longer image side used for training, in pixels (0 = the clip's own size). Intrinsics scale with it."""
    val_frames: str | float | None = None
    """Held-out frames (see ``split_frames``); None = the last 1/11."""
    face_fraction: float = 0.75
    """Share of random rays drawn inside the head region (the rest anywhere in the frame)."""
    lip_weight: float = 1.0
    """Extra loss weight of rays inside the lips square (weight = 1 + lip_weight)."""
    lip_gate_margin: float = 0.15
    """The audio gate covers the lower face grown downwards and sideways by this fraction of the face height, so
    a jaw opening wider than in the reference frame is still driven by the audio."""
    background_samples: int = 64
    """Frames sampled for the clean background median."""
    cache_bytes: int = 1 << 30
    """Memory for resized frames and backgrounds (uint8); frames beyond it are re-read from the clip."""
    head_shape: HeadShape = field(default_factory=HeadShape)
    """Head region of the clean-background estimate (each frame's landmarks: it only has to cover the head)."""
    region_shape: RegionShape = field(default_factory=RegionShape)
    """Margins of the pose regions: the mouth region the audio drives and the head region the renderer paints."""


class SubjectData:
    """One subject's frames, backgrounds, regions, cameras, audio and expression, ready for training.

    Args:
        clip, track, pose, audio: the hand-off types of one clip (checked to agree).
        settings: resolution, split and sampling settings.
        background: a clean background computed before (at the clip's resolution); computed here if None.
        on_step: progress of the background computation.
    """

    def __init__(self, clip: Clip, track: FaceTrack, pose: HeadPose, audio: AudioFeatures, *,
                 settings: DataSettings | None = None, background: Background | None = None,
                 audio_variants: Sequence[AudioFeatures] = (), on_step: StepCallback | None = None):
        self.settings = settings or DataSettings()
        self.num_frames = check_inputs(clip, track, pose, audio)
        self.clip, self.track, self.pose, self.audio = clip, track, pose, audio
        self.height, self.width = _scaled_size(clip.height, clip.width, self.settings.resolution)
        self.train_indices, self.val_indices = split_frames(self.num_frames, self.settings.val_frames)
        self.clip_regions = FaceRegions.from_track(track, shape=self.settings.head_shape)
        self.geometry = FaceGeometry.from_track(track, pose, frames=self.train_indices)
        """The subject's face in the head frame: where every mask comes from (never a frame's own mouth)."""
        self.ray_subject = RaySubject(pose, self.clip_regions, self.settings.lip_gate_margin,
                                      size=(self.height, self.width), geometry=self.geometry,
                                      shape=self.settings.region_shape)
        """Cameras and face regions the rays and their gates are made from (:func:`frame_rays`)."""
        self.focal, self.cx, self.cy = self.ray_subject.intrinsics(self.height, self.width)
        self.regions = self.ray_subject.regions_at(self.height, self.width)
        self.poses_ngp = self.ray_subject.poses_ngp
        self.background = background or clean_background(clip, self.clip_regions,
                                                         max_samples=self.settings.background_samples,
                                                         on_step=on_step)
        self.background_image = self._resize(self.background.image)
        self.features = torch.from_numpy(np.ascontiguousarray(audio.features[:self.num_frames], np.float32))
        self.variant_features = [self._variant_rows(variant) for variant in audio_variants]
        """Other voices' features of the same frames (:func:`audio.augment.speaker_variants`)."""
        self.expression = torch.from_numpy(np.ascontiguousarray(track.expression, np.float32))
        self._cache: OrderedDict[tuple[str, int], np.ndarray] = OrderedDict()
        self._cache_bytes = 0
        self._head_pixels: OrderedDict[int, np.ndarray] = OrderedDict()
        self.window = 8
        """Audio rows per window (the trainer sets it from the model's config)."""

    # ------------------------------------------------------------------------------------------------ images
    def _resize(self, image: np.ndarray) -> np.ndarray:
        if image.shape[0] == self.height and image.shape[1] == self.width:
            return np.ascontiguousarray(image)
        import cv2

        return cv2.resize(image, (self.width, self.height), interpolation=cv2.INTER_AREA)

    def _cached(self, kind: str, index: int, make: Callable[[], np.ndarray]) -> np.ndarray:
        key = (kind, index)
        hit = self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
            return hit
        value = make()
        self._cache[key] = value
        self._cache_bytes += value.nbytes
        while self._cache_bytes > self.settings.cache_bytes and len(self._cache) > 1:
            _, old = self._cache.popitem(last=False)
            self._cache_bytes -= old.nbytes
        return value

    def frame(self, index: int) -> np.ndarray:
        """Frame ``index`` at the training resolution, ``[h, w, 3]`` uint8."""
        return self._cached("frame", index, lambda: self._resize(self.clip.frame(index)))

    def head_mask(self, index: int) -> np.ndarray:
        """``[h, w]`` bool head region of frame ``index`` at the training resolution (from its camera and the
        face geometry: it reaches below the widest-open chin, so the renderer learns the neck there)."""
        return self.ray_subject.head_mask(index, (self.height, self.width))

    def frame_background(self, index: int) -> np.ndarray:
        """The frame with its head region replaced by the clean background, ``[h, w, 3]`` uint8."""
        return self._cached("background", index, lambda: frame_background(
            self.frame(index), self.head_mask(index), self.background_image))

    def head_pixels(self, index: int) -> np.ndarray:
        """Flat pixel indices ``[K]`` of the head region (cached for a few frames)."""
        hit = self._head_pixels.get(index)
        if hit is None:
            hit = np.flatnonzero(self.head_mask(index).reshape(-1))
            self._head_pixels[index] = hit
            if len(self._head_pixels) > 64:
                self._head_pixels.popitem(last=False)
        return hit

    # ------------------------------------------------------------------------------------------------ inputs
    def _variant_rows(self, variant: AudioFeatures) -> Tensor:
        rows = np.asarray(variant.features, np.float32)
        if rows.shape != tuple(self.features.shape) or variant.encoder_id != self.audio.encoder_id:
            raise InputError(f"a speaker variant's features ({variant.encoder_id}, {rows.shape}) do not match the "
                             f"subject's ({self.audio.encoder_id}, {tuple(self.features.shape)})")
        return torch.from_numpy(np.ascontiguousarray(rows))

    def conditioning(self, index: int, device: torch.device | str = "cpu",
                     variant: int = 0) -> tuple[Tensor, Tensor]:
        """Audio window ``[W, D]`` and expression ``[E]`` of frame ``index``; ``variant`` k > 0 takes the audio
        from ``variant_features[k - 1]``."""
        features = self.features if variant == 0 else self.variant_features[variant - 1]
        return (audio_windows(features, [index], self.window)[0].to(device),
                self.expression[index].to(device))

    # ------------------------------------------------------------------------------------------------ rays
    def rays_for_pixels(self, index: int, rows: np.ndarray, cols: np.ndarray,
                        shape: tuple[int, ...] | None = None) -> RayBatch:
        """The ray batch of pixels ``(rows, cols)`` of frame ``index``."""
        rows = np.asarray(rows, dtype=np.int64)
        cols = np.asarray(cols, dtype=np.int64)
        rays = frame_rays(self.ray_subject, index, pixels=(rows, cols))
        frame = self.frame(index)
        bg = self.frame_background(index)
        regions = self.regions
        lips = regions.lips_rect(index).contains(rows, cols)
        weight = 1.0 + self.settings.lip_weight * lips.astype(np.float32)
        return RayBatch(
            frame=int(index), rows=rays.rows, cols=rays.cols, rays_o=rays.rays_o, rays_d=rays.rays_d,
            target=torch.from_numpy(frame[rows, cols].astype(np.float32) / 255.0),
            bg=torch.from_numpy(bg[rows, cols].astype(np.float32) / 255.0),
            weight=torch.from_numpy(weight.astype(np.float32)),
            face=torch.from_numpy(regions.face_rect(index).contains(rows, cols)),
            lower_face=torch.from_numpy(regions.lower_face_rect(index).contains(rows, cols)),
            lip_mask=rays.lip_mask,
            expr_mask=rays.expr_mask,
            shape=shape,
        )

    def random_rays(self, index: int, count: int, generator: torch.Generator) -> RayBatch:
        """``count`` random pixels of frame ``index``: ``face_fraction`` of them in the head region."""
        head = self.head_pixels(index)
        n_head = int(round(count * self.settings.face_fraction)) if head.size else 0
        picks = []
        if n_head:
            picks.append(head[torch.randint(len(head), (n_head,), generator=generator).numpy()])
        picks.append(torch.randint(self.height * self.width, (count - n_head,), generator=generator).numpy())
        flat = np.concatenate(picks)
        return self.rays_for_pixels(index, flat // self.width, flat % self.width)

    def patch_rays(self, index: int, patch_size: int, num_patches: int, generator: torch.Generator) -> RayBatch:
        """``num_patches`` square patches of side ``patch_size`` centred on random head pixels (clamped to the
        image); rays are patch-major then row-major, ``shape = (num_patches, P, P)``."""
        p = min(patch_size, self.height, self.width)
        head = self.head_pixels(index)
        if head.size:
            centres = head[torch.randint(len(head), (num_patches,), generator=generator).numpy()]
            r0 = np.clip(centres // self.width - p // 2, 0, self.height - p)
            c0 = np.clip(centres % self.width - p // 2, 0, self.width - p)
        else:
            r0 = torch.randint(self.height - p + 1, (num_patches,), generator=generator).numpy()
            c0 = torch.randint(self.width - p + 1, (num_patches,), generator=generator).numpy()
        dr, dc = np.mgrid[0:p, 0:p]
        rows = (r0[:, None, None] + dr[None]).reshape(-1)
        cols = (c0[:, None, None] + dc[None]).reshape(-1)
        return self.rays_for_pixels(index, rows, cols, shape=(num_patches, p, p))

    def lips_rays(self, index: int) -> RayBatch:
        """Every pixel of the lips square of frame ``index``, row-major, ``shape = (1, h, w)``."""
        rect = self.regions.lips_rect(index)
        if rect.empty:
            raise InputError(f"frame {index}: the lips square is empty (lips outside the image?)")
        rr, cc = np.mgrid[rect.r0:rect.r1, rect.c0:rect.c1]
        return self.rays_for_pixels(index, rr.reshape(-1), cc.reshape(-1), shape=(1, rect.height, rect.width))

    def image_rays(self, index: int) -> RayBatch:
        """Every pixel of frame ``index``, row-major, ``shape = (1, h, w)``."""
        rr, cc = np.mgrid[0:self.height, 0:self.width]
        return self.rays_for_pixels(index, rr.reshape(-1), cc.reshape(-1), shape=(1, self.height, self.width))


def _scaled_size(height: int, width: int, resolution: int) -> tuple[int, int]:
    """``(h, w)`` with the longer side = ``resolution`` (0 or larger than the clip: unchanged)."""
    longer = max(height, width)
    if resolution <= 0 or resolution >= longer:
        return height, width
    scale = resolution / longer
    return max(8, int(round(height * scale))), max(8, int(round(width * scale)))
