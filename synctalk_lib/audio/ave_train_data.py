"""Data of AVE pre-training: upright mouth crops, the audio windows of every frame, train/validation frame ranges
and random training batches (anchors and near-shifted partners, augmented).

Mouth crops (``mouth_crops``): MediaPipe landmarks (``synctalk_lib.face.capture``, VIDEO mode, One-Euro smoothed)
give the mouth centre (mean of lip landmarks 61, 291, 0, 17) and the roll (the outer eye corners 33 -> 263); a
square of ``crop_scale`` x the clip's median eye-corner distance, rotated upright, is resampled to 64x64 RGB.
The clip must be at 25 fps (prepare it with ``prepare_clip(fps=25)``), so 5 frames = one audio window.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch

from synctalk_lib.audio.ave_train_nets import FACE_FRAMES
from synctalk_lib.audio.mel import mel_spectrogram, num_mel_frames, to_mono_16k
from synctalk_lib.audio.windows import WINDOW, frame_count, gather_windows, window_starts
from synctalk_lib.errors import InputError, require
from synctalk_lib.types import Clip, FaceTrack
from synctalk_lib.progress import StepCallback

FrameRange = tuple[int, int]
"""Inclusive ``(first, last)`` frame numbers."""

CROP_SIZE = 64
CROP_SCALE = 0.9
"""Mouth crop side as a multiple of the clip's median outer-eye-corner distance."""
TRAIN_FPS = 25.0
MOUTH_CENTRE = (61, 291, 0, 17)
"""Lip landmarks whose mean is the crop centre: mouth corners, top of the upper lip, bottom of the lower lip."""
EYE_CORNERS = (33, 263)
"""Outer eye corners: their distance sets the crop size, their direction the roll."""


# ------------------------------------------------------------------------------------------------ mouth crops
def mouth_crops(frames: Iterable[tuple[int, np.ndarray]], landmarks: np.ndarray, *, size: int = CROP_SIZE,
                scale: float = CROP_SCALE, face_found: np.ndarray | None = None) -> np.ndarray:
    """Upright square mouth crops of every frame.

    Args:
        frames: ``(first_index, frames[b, H, W, 3] uint8)`` chunks covering the clip in order
            (``Clip.iter_batches``).
        landmarks: ``[N, 478, 3]`` MediaPipe landmarks in pixels.
        size: output side in pixels.
        scale: crop side / median outer-eye-corner distance.
        face_found: ``[N]`` bool; frames without a face take the median side (their crop is not used anyway).

    Returns:
        ``[N, size, size, 3]`` uint8 RGB.
    """
    cv2 = require("cv2", "AVE training (mouth crops)", "opencv-contrib-python")

    n = landmarks.shape[0]
    found = np.ones(n, bool) if face_found is None else np.asarray(face_found, bool)
    eye = landmarks[:, EYE_CORNERS[1], :2] - landmarks[:, EYE_CORNERS[0], :2]
    span = np.linalg.norm(eye, axis=1)
    side = scale * float(np.median(span[found])) if found.any() else 1.0
    out = np.zeros((n, size, size, 3), np.uint8)
    half = size / 2.0 - 0.5
    for first, batch in frames:
        for offset, frame in enumerate(batch):
            i = first + offset
            if i >= n:
                break
            centre = landmarks[i, list(MOUTH_CENTRE), :2].astype(np.float64).mean(0)
            angle = math.atan2(float(eye[i, 1]), float(eye[i, 0]))
            step = side / size
            cos, sin = math.cos(angle) * step, math.sin(angle) * step
            # maps output pixel (u, v) to the source pixel (x, y): rotate by the roll, scale, centre on the mouth
            matrix = np.array([[cos, -sin, 0.0], [sin, cos, 0.0]])
            matrix[:, 2] = centre - matrix[:, :2] @ np.array([half, half])
            out[i] = cv2.warpAffine(np.ascontiguousarray(frame), matrix, (size, size),
                                    flags=cv2.INTER_AREA | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE)
    return out


# ------------------------------------------------------------------------------------------------------ data
@dataclass
class ClipSamples:
    """What training needs from one clip (``N`` frames)."""

    name: str
    crops: torch.Tensor
    """[N, 3, 64, 64] uint8."""
    audio: torch.Tensor
    """[N, 80, 16] float32 mel windows (rows past the audio's end repeat the last window; not usable)."""
    usable: np.ndarray
    """[N] bool: face found and covered by the audio."""
    train_range: FrameRange | None
    val_range: FrameRange | None

    def frames_in(self, rng: FrameRange | None) -> np.ndarray:
        if rng is None:
            return np.zeros(0, np.int64)
        idx = np.arange(rng[0], rng[1] + 1)
        return idx[self.usable[idx]]

    def face_window(self, centre: np.ndarray, rng: FrameRange) -> np.ndarray:
        """``[B, 5]`` frame numbers around each centre, clamped into ``rng`` (never crossing train/val)."""
        offsets = np.arange(FACE_FRAMES) - FACE_FRAMES // 2
        return np.clip(centre[:, None] + offsets[None, :], rng[0], rng[1])


def audio_windows_for_clip(clip: Clip) -> tuple[torch.Tensor, int]:
    """The mel windows encode_audio would use: ``([N, 80, 16], rows covered by the audio)``."""
    if not clip.has_audio:
        raise InputError(f"{clip.source_path or clip.root}: the clip has no audio; the AVE learns from speech")
    wave = torch.from_numpy(clip.audio_waveform())
    mono = to_mono_16k(wave, clip.sample_rate)
    if num_mel_frames(mono.numel()) < WINDOW:
        raise InputError(f"{clip.source_path or clip.root}: the audio is shorter than one 200 ms window")
    mel = mel_spectrogram(mono)
    rows = frame_count(mono.numel(), 16000, clip.fps)
    starts = window_starts(clip.num_frames, mel.shape[0], clip.fps)  # frames past `rows` reuse the last window
    return gather_windows(mel, starts), min(rows, clip.num_frames)


def resolve_ranges(name: str, num_frames: int, train: FrameRange | None, val: FrameRange | None
                    ) -> tuple[FrameRange | None, FrameRange | None]:
    """Clip the ranges to the clip; default: the last 10 % (>= 16 frames) held out, the rest trains."""
    last = num_frames - 1

    def clip_range(rng: FrameRange, label: str) -> FrameRange:
        a, b = int(rng[0]), min(int(rng[1]), last)
        if a < 0 or a > b:
            raise InputError(f"{name}: {label} frames {rng[0]}-{rng[1]} are outside the clip's frames 0-{last}")
        return a, b

    if train is None and val is None:
        held = max(16, num_frames // 10)
        if num_frames - held < 2 * FACE_FRAMES:
            raise InputError(f"{name}: {num_frames} frames are too few to train and validate the AVE")
        return (0, last - held), (last - held + 1, last)
    t = clip_range(train, "train") if train is not None else None
    v = clip_range(val, "validation") if val is not None else None
    if t is None:
        assert v is not None
        t = (0, v[0] - 1) if v[0] > 0 else (v[1] + 1, last)
        t = clip_range(t, "train")
    if v is not None and not (t[1] < v[0] or v[1] < t[0]):
        raise InputError(f"{name}: train frames {t[0]}-{t[1]} and validation frames {v[0]}-{v[1]} overlap")
    return t, v


def prepare_samples(clips: Sequence[Clip], *, face_tracks: Sequence[FaceTrack] | None = None,
                    train_frames: FrameRange | None = None, val_frames: FrameRange | None = None,
                    models_dirs: Iterable[Path | str] | None = None, crop_scale: float = CROP_SCALE,
                    on_step: StepCallback | None = None) -> list[ClipSamples]:
    """Mouth crops, audio windows and frame ranges of every clip (landmarks via MediaPipe unless given)."""
    from synctalk_lib.face.capture import capture_face_track

    if not clips:
        raise InputError("no clips given: the AVE needs at least one talking-face clip with its audio")
    if face_tracks is not None and len(face_tracks) != len(clips):
        raise InputError(f"{len(face_tracks)} face tracks for {len(clips)} clips")
    total = sum(c.num_frames for c in clips)
    done = 0
    out = []
    for k, clip in enumerate(clips):
        name = Path(clip.source_path).name if clip.source_path else Path(clip.root).name
        if abs(clip.fps - TRAIN_FPS) > 1e-3:
            raise InputError(f"{name} is at {clip.fps:g} fps; AVE training pairs 5 video frames with one 200 ms "
                             "audio window, so prepare the clip at 25 fps")
        train, val = resolve_ranges(name, clip.num_frames, train_frames, val_frames)
        audio, covered = audio_windows_for_clip(clip)
        if face_tracks is not None:
            track = face_tracks[k]
        else:
            base = done

            def relay(i: int, n: int, base: int = base) -> None:
                if on_step is not None:
                    on_step(base + i, total)

            track = capture_face_track(clip, models_dirs=models_dirs, max_gap=clip.num_frames, on_step=relay)
        if track.num_frames != clip.num_frames:
            raise InputError(f"{name}: the face track has {track.num_frames} frames, the clip {clip.num_frames}")
        crops = mouth_crops(clip.iter_batches(64), track.landmarks, scale=crop_scale, face_found=track.face_found)
        usable = np.asarray(track.face_found, bool).copy()
        usable[covered:] = False
        sample = ClipSamples(name=name, crops=torch.from_numpy(crops).permute(0, 3, 1, 2).contiguous(),
                             audio=audio, usable=usable, train_range=train, val_range=val)
        if len(sample.frames_in(train)) < 2 * FACE_FRAMES:
            raise InputError(f"{name}: only {len(sample.frames_in(train))} training frames have a face and audio")
        out.append(sample)
        done += clip.num_frames
        if on_step is not None:
            on_step(done, total)
    return out


@dataclass
class Batch:
    """One training batch (``B`` frames), on the training device."""

    audio: torch.Tensor     # [B, 1, 80, 16]
    face: torch.Tensor      # [B, 15, 64, 64] normalised
    reference: torch.Tensor  # [B, 3, 64, 64] 0..1
    target: torch.Tensor    # [B, 3, 64, 64] 0..1
    clip_ids: np.ndarray    # [B]
    times: np.ndarray       # [B]


def to_unit(crops: torch.Tensor) -> torch.Tensor:
    return crops.float() / 255.0


def normalise_face(window: torch.Tensor) -> torch.Tensor:
    """``[B, 5, 3, S, S]`` uint8 -> ``[B, 15, S, S]`` roughly zero-mean unit-range."""
    b = window.shape[0]
    return ((to_unit(window) - 0.5) / 0.25).reshape(b, -1, *window.shape[-2:])


class Sampler:
    """Random training batches: half random anchors, half their partners ``min_shift..near_shift`` frames away."""

    def __init__(self, data: list[ClipSamples], rng: np.random.Generator, *, batch_size: int, min_shift: int,
                 near_shift: int):
        self.data, self.rng = data, rng
        self.batch_size, self.min_shift, self.near_shift = batch_size, min_shift, near_shift
        self.frames = [d.frames_in(d.train_range) for d in data]
        self.weights = np.array([len(f) for f in self.frames], np.float64)
        self.weights /= self.weights.sum()

    def anchors(self, count: int) -> tuple[np.ndarray, np.ndarray]:
        clips = self.rng.choice(len(self.data), size=count, p=self.weights)
        times = np.array([self.rng.choice(self.frames[c]) for c in clips])
        return clips, times

    def sample(self, device: torch.device) -> Batch:
        half = self.batch_size // 2
        clips, times = self.anchors(self.batch_size - half)
        p_clips, p_times = clips[:half].copy(), times[:half].copy()
        for k in range(half):
            frames = self.frames[p_clips[k]]
            shift = self.rng.integers(self.min_shift, self.near_shift + 1) * self.rng.choice([-1, 1])
            candidate = times[k] + shift
            if candidate in frames:
                p_times[k] = candidate
            else:
                p_times[k] = self.rng.choice(frames)
        clips, times = np.concatenate([clips, p_clips]), np.concatenate([times, p_times])
        return self.build(clips, times, device, augment=True)

    def build(self, clips: np.ndarray, times: np.ndarray, device: torch.device, *, augment: bool) -> Batch:
        """Tensors for training frames ``times`` of ``clips``; the reference crop is another training frame."""
        audio, face, ref, target = [], [], [], []
        for c, t in zip(clips, times):
            d = self.data[c]
            window = torch.from_numpy(d.face_window(np.array([t]), d.train_range)[0])
            own = self.frames[c]
            far = own[np.abs(own - t) > FACE_FRAMES]
            r = self.rng.choice(far if len(far) else own)
            audio.append(d.audio[t])
            face.append(d.crops[window])
            ref.append(d.crops[r])
            target.append(d.crops[t])
        audio_t = torch.stack(audio)[:, None]
        face_t, ref_t, target_t = torch.stack(face), torch.stack(ref), torch.stack(target)
        if augment:
            audio_t, face_t, ref_t, target_t = self._augment(audio_t, face_t, ref_t, target_t)
        return Batch(audio=audio_t.to(device), face=normalise_face(face_t).to(device),
                      reference=to_unit(ref_t).to(device), target=to_unit(target_t).to(device),
                      clip_ids=clips, times=times)

    def _augment(self, audio, face, ref, target):
        """Loudness (+-3 dB on the mel scale), mirror and brightness/contrast per sample, same for its crops."""
        b = audio.shape[0]
        gain = torch.from_numpy(self.rng.uniform(-0.25, 0.25, size=(b, 1, 1, 1)).astype(np.float32))
        audio = torch.where(audio > -4.0, (audio + gain).clamp(-4.0, 4.0), audio)
        flip = self.rng.random(b) < 0.5
        contrast = self.rng.uniform(0.8, 1.2, size=b)
        bright = self.rng.uniform(-20, 20, size=b)

        def jitter(x: torch.Tensor) -> torch.Tensor:
            x = x.float()
            shape = (b,) + (1,) * (x.ndim - 1)
            x = (x - 128) * torch.from_numpy(contrast.astype(np.float32)).view(shape) + 128 + \
                torch.from_numpy(bright.astype(np.float32)).view(shape)
            x = torch.where(torch.from_numpy(flip).view(shape), x.flip(-1), x)
            return x.clamp(0, 255).to(torch.uint8)

        return audio, jitter(face), jitter(ref), jitter(target)


def parse_range(text: str | None) -> FrameRange | None:
    """``"0-299"`` -> ``(0, 299)`` (inclusive); ``"7"`` -> ``(7, 7)``; empty/None -> None."""
    if text is None or not str(text).strip():
        return None
    first, sep, last = str(text).strip().partition("-")
    try:
        a = int(first)
        b = int(last) if sep else a
    except ValueError:
        raise InputError(f"frame range {text!r} must look like FIRST-LAST, e.g. 0-299") from None
    if a < 0 or b < a:
        raise InputError(f"frame range {text!r}: need 0 <= FIRST <= LAST")
    return a, b
