"""Pre-training of the audio-visual encoder (AVE) on talking-face clips (SyncTalk paper, Eq. 1-3).

The official repository ships the trained AVE but no training code; this is our own trainer, built from the
paper's description. Two tasks train the AVE together, on the clips' own speech and mouths:

1. **Lip-sync discriminator** (Eq. 1-2). A face-window encoder ``E_F`` sees 5 consecutive mouth crops (200 ms,
   the span of one 16-mel-frame audio window) and the AVE ``E_A`` the audio window of the centre frame. Both end
   in a ReLU, so ``P_sync = cos(E_A(a), E_F(f))`` lies in ``[0, 1]`` and is trained with binary cross-entropy:
   label 1 for synced pairs, 0 for time-shifted pairs (audio of a frame at least ``min_shift`` frames away, near
   shifts included on purpose, or of another clip). A batch holds ``B`` frames and scores all ``B x B`` pairs.
2. **Audio-conditioned reconstruction** (Eq. 3). A decoder rebuilds the mouth crop of the centre frame from
   ``Conv(A)`` (the AVE code, projected to a 4x4 map) concatenated with ``Conv(F)`` (features of a *reference*
   crop taken from another moment of the same clip), L1 against the true crop. The reference gives appearance
   but not the current mouth shape, so the shape has to come from the audio; that is what pushes the AVE to
   encode visible articulation.

Loss = ``L_sync + recon_weight * L_recon``, AdamW with a short warm-up. Checkpoints are written atomically every
``checkpoint_every`` steps beside the output (``<out>.train.pt``) and a run resumes from it. The result is a
``.safetensors`` (or ``.pth``) with exactly the official AVE keys (``0.conv_block.0.weight`` ...), so
``load_ave`` / EncodeAudioAV's ``ave-file`` read it like the official file.

Mouth crops (``mouth_crops``): MediaPipe landmarks (``synctalk_lib.face.capture``, VIDEO mode, One-Euro smoothed)
give the mouth centre (mean of lip landmarks 61, 291, 0, 17) and the roll (the outer eye corners 33 -> 263); a
square of ``crop_scale`` x the clip's median eye-corner distance, rotated upright, is resampled to 64x64 RGB.
The clip must be at 25 fps (prepare it with ``prepare_clip(fps=25)``), so 5 frames = one audio window.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from synctalk_lib.audio.ave import AudioVisualEncoder, load_ave
from synctalk_lib.audio.mel import mel_spectrogram, num_mel_frames, to_mono_16k
from synctalk_lib.audio.windows import WINDOW, frame_count, gather_windows, window_starts
from synctalk_lib.errors import InputError, require
from synctalk_lib.paths import atomic_path
from synctalk_lib.types import Clip, FaceTrack

log = logging.getLogger("synctalk")

StepCallback = Callable[[int, int], None]
FrameRange = tuple[int, int]
"""Inclusive ``(first, last)`` frame numbers."""

CROP_SIZE = 64
FACE_FRAMES = 5
"""Mouth crops per face window: 200 ms at 25 fps, the span of one audio window."""
TRAIN_FPS = 25.0
NEAR_SHIFT_EVAL = 7
"""Largest shift (frames) counted as "near" in the evaluation's ``auc_near``."""
MOUTH_CENTRE = (61, 291, 0, 17)
"""Lip landmarks whose mean is the crop centre: mouth corners, top of the upper lip, bottom of the lower lip."""
EYE_CORNERS = (33, 263)
"""Outer eye corners: their distance sets the crop size, their direction the roll."""


@dataclass(frozen=True)
class AVETrainConfig:
    """Hyper-parameters of ``train_ave`` (the defaults are the ones measured in ``bench/ave_pretrain.py``)."""

    batch_size: int = 32
    """Frames per step; all ``B x B`` audio/face pairs are scored."""
    lr: float = 2e-4
    weight_decay: float = 1e-2
    warmup_steps: int = 20
    recon_weight: float = 1.0
    """Weight of the reconstruction L1 (pixels 0..1) against the sync BCE."""
    min_shift: int = 3
    """Audio at least this many frames (120 ms) away from the face counts as out of sync."""
    near_shift: int = 12
    """Half of each batch are partners 3..12 frames from the other half: hard negatives."""
    crop_scale: float = 0.9
    """Mouth crop side as a multiple of the clip's median outer-eye-corner distance."""
    seed: int = 0
    eval_every: int = 50
    checkpoint_every: int = 100
    grad_clip: float = 5.0


# --------------------------------------------------------------------------------------------------- networks
def _conv(cin: int, cout: int, kernel: int = 3, stride: int = 1, padding: int | None = None) -> nn.Sequential:
    padding = kernel // 2 if padding is None else padding
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, padding, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


class _Residual(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(channels, channels, 3, 1, 1, bias=False), nn.BatchNorm2d(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.body(x))


class FaceWindowEncoder(nn.Module):
    """``[B, 3 * 5, 64, 64]`` stacked mouth crops (normalised) -> ``[B, 512]`` non-negative code."""

    def __init__(self, frames: int = FACE_FRAMES):
        super().__init__()
        self.net = nn.Sequential(
            _conv(3 * frames, 32, 5, 2),                   # 32 x 32
            _conv(32, 64, 3, 2), _Residual(64),            # 16 x 16
            _conv(64, 128, 3, 2), _Residual(128),          # 8 x 8
            _conv(128, 256, 3, 2), _Residual(256),         # 4 x 4
            _conv(256, 512, 4, 1, 0),                      # 1 x 1
            nn.Conv2d(512, 512, 1), nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten(1)


class ReferenceEncoder(nn.Module):
    """``[B, 3, 64, 64]`` reference crop -> skip features at 32, 16, 8 and 4 pixels (``Conv(F)``)."""

    def __init__(self):
        super().__init__()
        self.stages = nn.ModuleList([_conv(3, 16, 5, 2), _conv(16, 32, 3, 2), _conv(32, 64, 3, 2),
                                     _conv(64, 128, 3, 2)])

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return feats


class MouthDecoder(nn.Module):
    """``Conv(A)`` (AVE code ``[B, 512]`` -> ``[B, 128, 4, 4]``) + reference features -> ``[B, 3, 64, 64]`` in 0..1."""

    def __init__(self):
        super().__init__()
        self.audio = nn.Sequential(nn.Linear(512, 128 * 16), nn.ReLU(inplace=True))
        self.fuse = _conv(256, 128)
        self.up = nn.ModuleList([_conv(128 + 64, 64), _conv(64 + 32, 32), _conv(32 + 16, 16), _conv(16, 16)])
        self.out = nn.Conv2d(16, 3, 1)

    def forward(self, audio_code: torch.Tensor, ref: list[torch.Tensor]) -> torch.Tensor:
        x = self.audio(audio_code).view(-1, 128, 4, 4)
        x = self.fuse(torch.cat([x, ref[3]], 1))
        for stage, skip in zip(self.up, (ref[2], ref[1], ref[0], None)):
            x = F.interpolate(x, scale_factor=2, mode="nearest")
            x = stage(x if skip is None else torch.cat([x, skip], 1))
        return torch.sigmoid(self.out(x))


def sync_probability(audio_code: torch.Tensor, face_code: torch.Tensor) -> torch.Tensor:
    """``[B, 512]``, ``[B', 512]`` -> ``[B, B']`` cosine similarities (in [0, 1] for non-negative codes)."""
    a = F.normalize(audio_code, dim=1, eps=1e-6)
    v = F.normalize(face_code, dim=1, eps=1e-6)
    return (a @ v.T).clamp(1e-6, 1 - 1e-6)


# ------------------------------------------------------------------------------------------------ mouth crops
def mouth_crops(frames: Iterable[tuple[int, np.ndarray]], landmarks: np.ndarray, *, size: int = CROP_SIZE,
                scale: float = AVETrainConfig.crop_scale, face_found: np.ndarray | None = None) -> np.ndarray:
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


def _resolve_ranges(name: str, num_frames: int, train: FrameRange | None, val: FrameRange | None
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
                    models_dirs: Iterable[Path | str] | None = None, crop_scale: float = AVETrainConfig.crop_scale,
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
        train, val = _resolve_ranges(name, clip.num_frames, train_frames, val_frames)
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
class _Batch:
    audio: torch.Tensor     # [B, 1, 80, 16]
    face: torch.Tensor      # [B, 15, 64, 64] normalised
    reference: torch.Tensor  # [B, 3, 64, 64] 0..1
    target: torch.Tensor    # [B, 3, 64, 64] 0..1
    clip_ids: np.ndarray    # [B]
    times: np.ndarray       # [B]


def _to_unit(crops: torch.Tensor) -> torch.Tensor:
    return crops.float() / 255.0


def _normalise_face(window: torch.Tensor) -> torch.Tensor:
    """``[B, 5, 3, S, S]`` uint8 -> ``[B, 15, S, S]`` roughly zero-mean unit-range."""
    b = window.shape[0]
    return ((_to_unit(window) - 0.5) / 0.25).reshape(b, -1, *window.shape[-2:])


class _Sampler:
    """Random training batches: half random anchors, half their partners ``min_shift..near_shift`` frames away."""

    def __init__(self, data: list[ClipSamples], config: AVETrainConfig, rng: np.random.Generator):
        self.data, self.config, self.rng = data, config, rng
        self.frames = [d.frames_in(d.train_range) for d in data]
        self.weights = np.array([len(f) for f in self.frames], np.float64)
        self.weights /= self.weights.sum()

    def anchors(self, count: int) -> tuple[np.ndarray, np.ndarray]:
        clips = self.rng.choice(len(self.data), size=count, p=self.weights)
        times = np.array([self.rng.choice(self.frames[c]) for c in clips])
        return clips, times

    def sample(self, device: torch.device) -> _Batch:
        cfg = self.config
        half = cfg.batch_size // 2
        clips, times = self.anchors(cfg.batch_size - half)
        p_clips, p_times = clips[:half].copy(), times[:half].copy()
        for k in range(half):
            frames = self.frames[p_clips[k]]
            shift = self.rng.integers(cfg.min_shift, cfg.near_shift + 1) * self.rng.choice([-1, 1])
            candidate = times[k] + shift
            if candidate in frames:
                p_times[k] = candidate
            else:
                p_times[k] = self.rng.choice(frames)
        clips, times = np.concatenate([clips, p_clips]), np.concatenate([times, p_times])
        return self.build(clips, times, device, augment=True)

    def build(self, clips: np.ndarray, times: np.ndarray, device: torch.device, *, augment: bool) -> _Batch:
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
        return _Batch(audio=audio_t.to(device), face=_normalise_face(face_t).to(device),
                      reference=_to_unit(ref_t).to(device), target=_to_unit(target_t).to(device),
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


# ----------------------------------------------------------------------------------------------- metrics
def roc_auc(positives: np.ndarray, negatives: np.ndarray) -> float:
    """Probability that a random positive scores above a random negative (ties count half): the ROC AUC."""
    pos, neg = np.asarray(positives, np.float64).ravel(), np.asarray(negatives, np.float64).ravel()
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    scores = np.concatenate([pos, neg])
    values, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    first_rank = np.cumsum(counts) - counts + 1  # 1-based rank of the first member of each tie group
    ranks = (first_rank + (counts - 1) / 2.0)[inverse]  # tied scores share their average rank
    return float((ranks[:len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def pair_masks(clip_ids: np.ndarray, times: np.ndarray, min_shift: int) -> tuple[np.ndarray, np.ndarray]:
    """``[B, B]`` masks over (audio i, face j): synced pairs (same frame) and out-of-sync pairs."""
    same_clip = clip_ids[:, None] == clip_ids[None, :]
    shift = np.abs(times[:, None] - times[None, :])
    synced = same_clip & (shift == 0)
    shifted = ~same_clip | (shift >= min_shift)
    return synced, shifted


@torch.no_grad()
def sync_scores(ave: AudioVisualEncoder, face_encoder: FaceWindowEncoder, data: list[ClipSamples], split: str,
                device: torch.device, min_shift: int = 3, batch_size: int = 64) -> dict:
    """Synced vs shifted scores on every usable frame of ``split`` (``"train"`` or ``"val"``), eval mode.

    Returns:
        ``{"auc", "auc_near", "synced_mean", "shifted_mean", "frames", "pairs"}``: ``auc`` over every shifted pair
        (at least ``min_shift`` frames apart), ``auc_near`` over shifts of ``min_shift``..7 frames only (the hard
        part: same speaker, same head pose, audio 120-280 ms off); NaN without frames.
    """
    was_training = ave.training, face_encoder.training
    ave.eval()
    face_encoder.eval()
    audio_codes, face_codes, ids, times = [], [], [], []
    for c, d in enumerate(data):
        rng = d.train_range if split == "train" else d.val_range
        frames = d.frames_in(rng)
        for start in range(0, len(frames), batch_size):
            chunk = frames[start:start + batch_size]
            window = torch.from_numpy(d.face_window(chunk, rng))
            audio_codes.append(ave(d.audio[chunk][:, None].to(device)).float().cpu())
            face_codes.append(face_encoder(_normalise_face(d.crops[window]).to(device)).float().cpu())
            ids.append(np.full(len(chunk), c))
            times.append(chunk)
    ave.train(was_training[0])
    face_encoder.train(was_training[1])
    if not audio_codes:
        nan = float("nan")
        return {"auc": nan, "auc_near": nan, "synced_mean": nan, "shifted_mean": nan, "frames": 0, "pairs": 0}
    prob = sync_probability(torch.cat(audio_codes), torch.cat(face_codes)).numpy()
    ids_all, times_all = np.concatenate(ids), np.concatenate(times)
    synced, shifted = pair_masks(ids_all, times_all, min_shift)
    shift = np.abs(times_all[:, None] - times_all[None, :])
    near = shifted & (ids_all[:, None] == ids_all[None, :]) & (shift <= NEAR_SHIFT_EVAL)
    pos, neg = prob[synced], prob[shifted]
    return {"auc": roc_auc(pos, neg), "auc_near": roc_auc(pos, prob[near]), "synced_mean": float(pos.mean()),
            "shifted_mean": float(neg.mean()), "frames": int(len(pos)), "pairs": int(len(neg))}


# -------------------------------------------------------------------------------------------------- training
class _Models(nn.Module):
    def __init__(self, ave: AudioVisualEncoder):
        super().__init__()
        self.ave = ave
        self.face = FaceWindowEncoder()
        self.reference = ReferenceEncoder()
        self.decoder = MouthDecoder()


def _losses(models: _Models, batch: _Batch, min_shift: int) -> tuple[torch.Tensor, torch.Tensor]:
    audio_code = models.ave(batch.audio)
    face_code = models.face(batch.face)
    prob = sync_probability(audio_code, face_code)
    synced, shifted = pair_masks(batch.clip_ids, batch.times, min_shift)
    synced_t = torch.from_numpy(synced).to(prob.device)
    shifted_t = torch.from_numpy(shifted).to(prob.device)
    sync_loss = 0.5 * (F.binary_cross_entropy(prob[synced_t], torch.ones_like(prob[synced_t])) +
                       F.binary_cross_entropy(prob[shifted_t], torch.zeros_like(prob[shifted_t])))
    recon = models.decoder(audio_code, models.reference(batch.reference))
    recon_loss = (recon - batch.target).abs().mean()
    return sync_loss, recon_loss


def _checkpoint_path(out_path: Path) -> Path:
    return out_path.with_name(out_path.name + ".train.pt")


def _fingerprint(data: list[ClipSamples], config: AVETrainConfig, init_id: str) -> str:
    facts = {"clips": [(d.name, int(d.crops.shape[0]), d.train_range, d.val_range) for d in data],
             "config": dataclasses.asdict(config), "init": init_id}
    return json.dumps(facts, sort_keys=True, default=list)


def _save_checkpoint(path: Path, models: _Models, optimizer: torch.optim.Optimizer, step: int, fingerprint: str,
                     history: list[dict], rng: np.random.Generator) -> None:
    state = {"step": step, "fingerprint": fingerprint, "models": models.state_dict(),
             "optimizer": optimizer.state_dict(), "history": json.dumps(history),
             "numpy_rng": json.dumps(rng.bit_generator.state), "torch_rng": torch.get_rng_state()}
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def _load_checkpoint(path: Path, models: _Models, optimizer: torch.optim.Optimizer, fingerprint: str,
                     rng: np.random.Generator) -> tuple[int, list[dict]] | None:
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a checkpoint from another version or a damaged file: start over, say so
        log.warning("SyncTalk: ignoring the AVE training checkpoint %s (%s)", path, exc)
        return None
    if state.get("fingerprint") != fingerprint:
        log.warning("SyncTalk: %s belongs to other clips or settings; training starts from scratch", path)
        return None
    models.load_state_dict(state["models"])
    optimizer.load_state_dict(state["optimizer"])
    rng.bit_generator.state = json.loads(state["numpy_rng"])
    torch.set_rng_state(state["torch_rng"])
    return int(state["step"]), json.loads(state["history"])


def save_ave_weights(ave: AudioVisualEncoder, path: Path | str, metadata: dict | None = None) -> Path:
    """Write the AVE in the official key layout (``.safetensors`` with metadata, or ``.pth``), atomically."""
    path = Path(path)
    state = ave.official_state_dict()
    with atomic_path(path) as tmp:
        if path.suffix == ".safetensors":
            from safetensors.torch import save_file

            meta = {"format": "synctalk-ave", "layout": "official SyncTalk audio_visual_encoder keys"}
            meta.update({k: str(v) for k, v in (metadata or {}).items()})
            save_file(state, str(tmp), metadata=meta)
        elif path.suffix in (".pth", ".pt"):
            torch.save(state, tmp)
        else:
            raise InputError(f"{path.name}: the AVE is saved as .safetensors or .pth")
        _readable_by_all(tmp)
    return path


def _readable_by_all(path: Path) -> None:
    """rw-r--r--: safetensors creates files owner-only, which breaks a models folder shared with ComfyUI's user."""
    os.chmod(path, 0o644)


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")


def train_ave(clips: Sequence[Clip], out_path: Path | str, *, steps: int = 300,
              train_frames: FrameRange | None = None, val_frames: FrameRange | None = None,
              models_dirs: Iterable[Path | str] | None = None, device: torch.device | str = "cpu",
              on_step: StepCallback | None = None, config: AVETrainConfig | None = None,
              face_tracks: Sequence[FaceTrack] | None = None, init: str | None = None,
              resume: bool = True) -> dict:
    """Pre-train the AVE on talking-face clips and save it in the official layout.

    Args:
        clips: prepared clips at 25 fps with audio (e.g. ``prepare_clip(video, cache, fps=25)``).
        out_path: ``.safetensors`` (or ``.pth``) to write; ``<out_path>.train.pt`` holds the resumable checkpoint.
        steps: optimisation steps in total (a resumed run continues up to this number).
        train_frames: inclusive frame range used for training in every clip (default: all but the held-out part).
        val_frames: inclusive held-out range in every clip for the AUC (default: the last 10 %, >= 16 frames,
            when ``train_frames`` is not given either; none otherwise).
        models_dirs: where ``face_landmarker.task`` (and, for ``init="ave"``, the official AVE) live.
        device: torch device (``"cpu"``, ``"cuda"``, ``"auto"``).
        on_step: ``on_step(done, total)``: landmark frames first, then training steps.
        config: hyper-parameters (``AVETrainConfig``).
        face_tracks: landmarks per clip if already captured (skips MediaPipe).
        init: ``None``: random weights; ``"ave"``: the official weights (fine-tuning); a path: an AVE file.
        resume: continue from a matching ``<out_path>.train.pt``.

    Returns:
        A JSON-able report: losses at the start and end (means over the first/last 10 % of the steps), held-out
        AUC before and after, train AUC, timings, ranges, the output path and its encoder id.
    """
    config = config or AVETrainConfig()
    if steps < 1:
        raise InputError(f"steps must be at least 1, got {steps}")
    if config.batch_size < 4:
        raise InputError(f"batch_size must be at least 4, got {config.batch_size}")
    out_path = Path(out_path)
    if out_path.suffix not in (".safetensors", ".pth", ".pt"):
        raise InputError(f"--out {out_path.name}: the AVE is saved as .safetensors or .pth")
    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                       ("cpu" if device == "auto" else device))
    started = time.perf_counter()
    with torch.inference_mode(False), torch.enable_grad():
        torch.manual_seed(config.seed)
        rng = np.random.default_rng(config.seed)
        landmark_frames = 0 if face_tracks is not None else sum(c.num_frames for c in clips)
        total = landmark_frames + steps
        relay = None if on_step is None or face_tracks is not None else (lambda done, _n: on_step(done, total))
        data = prepare_samples(clips, face_tracks=face_tracks, train_frames=train_frames, val_frames=val_frames,
                               models_dirs=models_dirs, crop_scale=config.crop_scale, on_step=relay)
        prep_seconds = time.perf_counter() - started

        ave = AudioVisualEncoder() if init is None else load_ave(None if init == "ave" else init, models_dirs)
        init_id = "random" if init is None else ave.weights_id
        models = _Models(ave).to(dev).train()
        optimizer = torch.optim.AdamW(models.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        fingerprint = _fingerprint(data, config, init_id)
        checkpoint = _checkpoint_path(out_path)
        start_step, history = 0, []
        resumed = _load_checkpoint(checkpoint, models, optimizer, fingerprint, rng) if resume else None
        if resumed is not None:
            start_step, history = resumed
            log.info("SyncTalk: resuming AVE training from step %d (%s)", start_step, checkpoint)
        has_val = any(d.val_range is not None and len(d.frames_in(d.val_range)) for d in data)
        val_start = sync_scores(models.ave, models.face, data, "val", dev, config.min_shift) if has_val else None

        sampler = _Sampler(data, config, rng)
        train_started = time.perf_counter()
        for step in range(start_step, steps):
            lr = config.lr * min(1.0, (step + 1) / max(config.warmup_steps, 1))
            for group in optimizer.param_groups:
                group["lr"] = lr
            batch = sampler.sample(dev)
            sync_loss, recon_loss = _losses(models, batch, config.min_shift)
            loss = sync_loss + config.recon_weight * recon_loss
            if not torch.isfinite(loss):
                raise InputError(f"AVE training diverged at step {step + 1} (loss {float(loss)}); lower the learning "
                                 "rate")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(models.parameters(), config.grad_clip)
            optimizer.step()
            entry = {"step": step + 1, "sync": sync_loss.item(), "recon": recon_loss.item()}
            if has_val and config.eval_every and ((step + 1) % config.eval_every == 0 or step + 1 == steps):
                entry["val_auc"] = sync_scores(models.ave, models.face, data, "val", dev, config.min_shift)["auc"]
            history.append(entry)
            if config.checkpoint_every and (step + 1) % config.checkpoint_every == 0 and step + 1 < steps:
                _save_checkpoint(checkpoint, models, optimizer, step + 1, fingerprint, history, rng)
            if on_step is not None:
                on_step(landmark_frames + step + 1, total)
        train_seconds = time.perf_counter() - train_started
        trained_steps = steps - start_step

        val_end = sync_scores(models.ave, models.face, data, "val", dev, config.min_shift) if has_val else None
        train_end = sync_scores(models.ave, models.face, data, "train", dev, config.min_shift)
        window = max(5, len(history) // 10)
        report = {
            "out": str(out_path), "steps": steps, "resumed_from_step": start_step, "device": str(dev),
            "init": init_id, "config": dataclasses.asdict(config),
            "clips": [{"name": d.name, "frames": int(d.crops.shape[0]), "train_frames": list(d.train_range or ()),
                       "val_frames": list(d.val_range or ()), "train_used": int(len(d.frames_in(d.train_range))),
                       "val_used": int(len(d.frames_in(d.val_range)))} for d in data],
            "losses": {name: {"start": _mean([h[name] for h in history[:window]]),
                              "end": _mean([h[name] for h in history[-window:]])} for name in ("sync", "recon")},
            "val_auc_start": None if val_start is None else val_start["auc"],
            "val_auc": None if val_end is None else val_end["auc"],
            "val_auc_near": None if val_end is None else val_end["auc_near"],
            "val": val_end, "train": train_end,
            "seconds": {"prepare": round(prep_seconds, 2), "train": round(train_seconds, 2),
                        "per_step": round(train_seconds / max(trained_steps, 1), 4)},
            "history": [h for h in history if "val_auc" in h or h["step"] % 10 == 0],
        }
        models.ave.eval()
        save_ave_weights(models.ave, out_path, {"steps": steps, "val_auc": report["val_auc"],
                                                "clips": ",".join(d.name for d in data)})
        _save_checkpoint(checkpoint, models, optimizer, steps, fingerprint, history, rng)
    from synctalk_lib.audio.ave import file_id

    report["encoder_id"] = file_id(out_path)
    return report


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
