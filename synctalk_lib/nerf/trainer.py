"""Training loop of the head NeRF: stages, optimiser, schedules, occupancy updates, checkpoints, progress.

    data = SubjectData(clip, track, pose, audio, settings=DataSettings(resolution=128))
    trainer = Trainer(data, get_preset("quick"), work_dir=Path("runs/may"), device="cpu", on_step=progress)
    result = trainer.run(resume=True)        # continues from runs/may/checkpoint.pt when it exists
    result.model, result.summary

One step = one training frame (frames shuffled per epoch with a seed derived from the step, so a resumed run
draws the same frames). AdamW with the original's parameter groups (hash grids 1e-2, networks 1e-3), betas
(0, 0.99); the LR decays exponentially to ``lr_coarse_end`` over the coarse stage and on to ``lr_fine_end`` over
the fine stage. The occupancy grid is updated every ``occupancy_interval`` steps with a random training frame's
audio and expression; cells no training camera sees are marked empty at the start.

Checkpoints (``work_dir/checkpoint.pt``, written atomically) hold the model (occupancy grid included), the
optimiser, the scheduler, the step, the random generator, the configs and a fingerprint of the subject (clip,
face track, head pose, audio features and their encoder), so ``run(resume=True)`` continues bit-for-bit — and only
on the same subject: a checkpoint of another subject (same name, same frame count) is not resumed, training starts
over and says why. An exception raised by ``on_step`` (ComfyUI's Cancel) stops training after the current step; the state
of that step is checkpointed first and the exception is re-raised.
"""
from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from synctalk_lib.errors import InputError
from synctalk_lib.metrics.psnr import MAX_PSNR_DB, psnr_from_mse
from synctalk_lib.nerf.config import NerfConfig
from synctalk_lib.nerf.dataset import RayBatch, SubjectData
from synctalk_lib.nerf.losses import LossWeights, load_perceptual, total_loss
from synctalk_lib.nerf.model import SyncTalkNeRF
from synctalk_lib.nerf.presets import TrainConfig
from synctalk_lib.paths import atomic_path, set_aside
from synctalk_lib.progress import StepCallback, StatusCallback

log = logging.getLogger("synctalk")


CHECKPOINT_NAME = "checkpoint.pt"
CHECKPOINT_FORMAT = "synctalk-nerf-train"
CHECKPOINT_VERSION = 1
ADAM_BETAS = (0.0, 0.99)


class CheckpointMismatch(InputError):
    """The checkpoint cannot be resumed: another subject, other model settings, another version, or damaged."""


def subject_fingerprint(data: SubjectData, samples: int = 16) -> dict[str, str]:
    """Short hashes of what a run learns from: the clip (size, rate and ``samples`` evenly spaced frames), the face
    track (landmarks, expression), the head pose (intrinsics, poses) and the audio features (encoder, values)."""

    def digest(*parts) -> str:
        h = hashlib.sha256()
        for part in parts:
            h.update(np.ascontiguousarray(part).tobytes() if isinstance(part, np.ndarray) else repr(part).encode())
        return h.hexdigest()[:16]

    clip = data.clip
    picks = np.unique(np.linspace(0, clip.num_frames - 1, min(samples, clip.num_frames)).round().astype(int))
    frames = clip.frames()
    return {
        "clip": digest(clip.num_frames, clip.height, clip.width, float(clip.fps), *(frames[i] for i in picks)),
        "face_track": digest(np.asarray(data.track.landmarks, np.float32), np.asarray(data.track.expression,
                                                                                      np.float32)),
        "head_pose": digest(float(data.pose.focal), float(data.pose.cx), float(data.pose.cy),
                            np.asarray(data.pose.c2w, np.float32)),
        "audio_features": digest(data.audio.encoder_id, np.asarray(data.audio.features, np.float32)),
    }


@dataclass
class TrainResult:
    """A finished (or resumed-and-finished) training run."""

    model: SyncTalkNeRF
    summary: dict[str, Any] = field(default_factory=dict)
    """steps, seconds, final losses per stage, held-out PSNR, settings (JSON-ready)."""


def lr_factor(step: int, config: TrainConfig) -> float:
    """Multiplier of the base learning rates at ``step`` (exponential decay per stage)."""
    coarse, fine = config.coarse_steps, config.fine_steps
    if step <= coarse or fine == 0:
        return config.lr_coarse_end ** (min(step, coarse) / max(coarse, 1))
    start = config.lr_coarse_end if coarse > 0 else 1.0
    return start * (config.lr_fine_end / start) ** (min(step - coarse, fine) / fine)


def format_seconds(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


class Trainer:
    """Trains a :class:`SyncTalkNeRF` on one subject.

    Args:
        data: the subject's training data.
        config: training settings (a preset, possibly changed).
        work_dir: where checkpoints go (None: no checkpoints, no resume).
        device: torch device for the model and the rays.
        on_step: ``on_step(done, total)`` after every step; may raise to stop (checkpointed first).
        on_status: receives a status line (step, stage, loss, PSNR, ETA) every ``log_every`` steps.
        models_dirs: folders searched for the LPIPS weights.
    """

    def __init__(self, data: SubjectData, config: TrainConfig, *, work_dir: Path | str | None = None,
                 device: torch.device | str = "cpu", on_step: StepCallback | None = None,
                 on_status: StatusCallback | None = None, models_dirs=None):
        config.validate()
        self.data = data
        self.config = config
        self.device = torch.device(device)
        self.work_dir = Path(work_dir) if work_dir is not None else None
        self.on_step = on_step
        self.on_status = on_status
        self.models_dirs = models_dirs
        self.nerf_config = NerfConfig.from_dict({"audio_in_dim": data.audio.dim, "num_codes": data.num_frames,
                                                 **config.nerf})
        with torch.random.fork_rng(devices=[]):  # seeded initialisation without touching the global RNG
            torch.manual_seed(config.seed)
            self.model = SyncTalkNeRF(self.nerf_config).to(self.device)
        self.data.window = self.nerf_config.audio_window
        self.optimizer = torch.optim.AdamW(self.model.param_groups(config.lr_grid, config.lr_net),
                                           betas=ADAM_BETAS, eps=1e-8)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda s: lr_factor(s, self.config))
        self.generator = torch.Generator().manual_seed(config.seed)
        self.weights = LossWeights(photometric=config.photometric, uncertainty=config.uncertainty_weight,
                                   entropy=config.entropy_weight, attention_mask=config.attention_mask_weight,
                                   lpips_patch=config.lpips_patch_weight, lpips_lips=config.lpips_lips_weight)
        self.step = 0
        self.elapsed = 0.0
        self.history: list[dict[str, float]] = []
        self._perm_epoch = -1
        self._perm: np.ndarray | None = None
        self._perceptual = None
        self._last_saved = -1
        self.occupancy_seconds = 0.0
        self.fingerprint = subject_fingerprint(data)

    # ------------------------------------------------------------------------------------------- schedule
    @property
    def total_steps(self) -> int:
        return self.config.total_steps

    def stage_of(self, step: int) -> tuple[str, int, int]:
        """``(stage name, step within the stage, steps of the stage)``."""
        if step < self.config.coarse_steps:
            return "coarse", step, self.config.coarse_steps
        return "fine", step - self.config.coarse_steps, self.config.fine_steps

    def frame_for_step(self, step: int) -> int:
        """The training frame of ``step``: epochs of a seeded shuffle of the training frames."""
        train = self.data.train_indices
        epoch, pos = divmod(step, len(train))
        if epoch != self._perm_epoch:
            g = torch.Generator().manual_seed(self.config.seed * 1_000_003 + epoch)
            self._perm = train[torch.randperm(len(train), generator=g).numpy()]
            self._perm_epoch = epoch
        return int(self._perm[pos])  # type: ignore[index]

    def variant_for_step(self, step: int) -> int:
        """Which audio the step hears: 0 the subject's own, k > 0 its k-th speaker variant (a function of the
        seed and the step, so a resumed run hears what the uninterrupted one would)."""
        count = len(self.data.variant_features)
        if count == 0 or self.config.speaker_variants <= 0:
            return 0
        g = torch.Generator().manual_seed(self.config.seed * 7_000_003 + step + 1)
        if float(torch.rand((), generator=g)) >= self.config.speaker_variants:
            return 0
        return 1 + int(torch.randint(count, (), generator=g))

    # ----------------------------------------------------------------------------------------------- steps
    def _batch(self, step: int, frame: int) -> tuple[RayBatch, str]:
        stage, stage_step, _ = self.stage_of(step)
        cfg = self.config
        if stage == "coarse":
            return self.data.random_rays(frame, cfg.rays_per_step, self.generator), "rays"
        if cfg.lips_every > 0 and stage_step % cfg.lips_every == 0:
            return self.data.lips_rays(frame), "lips"
        return self.data.patch_rays(frame, cfg.patch_size, cfg.patches_per_step, self.generator), "patches"

    def _update_occupancy(self) -> None:
        started = time.perf_counter()
        train = self.data.train_indices
        frame = int(train[int(torch.randint(len(train), (1,), generator=self.generator))])
        window, expression = self.data.conditioning(frame, self.device)
        with torch.no_grad():
            code = self.model.encode_audio(window[None])[0]
        self.model.update_occupancy(code, expression, decay=self.config.occupancy_decay, generator=self.generator,
                                    fraction=self.config.occupancy_fraction)
        self.occupancy_seconds += time.perf_counter() - started

    def train_step(self, step: int) -> dict[str, float]:
        """One optimisation step; returns its loss parts."""
        cfg = self.config
        if cfg.occupancy_interval > 0 and step % cfg.occupancy_interval == 0:
            self._update_occupancy()
        stage, stage_step, stage_len = self.stage_of(step)
        frame = self.frame_for_step(step)
        batch, kind = self._batch(step, frame)
        batch = batch.to(self.device)
        window, expression = self.data.conditioning(frame, self.device, self.variant_for_step(step))
        self.model.train()
        audio_code = self.model.encode_audio(window[None])[0]
        out = self.model.render(batch.rays_o, batch.rays_d, audio_code=audio_code, expression=expression,
                                code_index=frame, bg=batch.bg, lip_mask=batch.lip_mask, expr_mask=batch.expr_mask,
                                perturb=True, generator=self.generator)
        progress = stage_step / max(stage_len, 1)
        perceptual_weight = {"patches": self.weights.lpips_patch, "lips": self.weights.lpips_lips}.get(kind, 0.0)
        loss, parts = total_loss(out, batch, weights=self.weights, progress=progress,
                                 mask_mode=self.nerf_config.mask_mode,
                                 use_uncertainty=(stage == "coarse" and self.nerf_config.use_uncertainty),
                                 perceptual=self._perceptual if kind != "rays" else None,
                                 perceptual_weight=perceptual_weight)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"the loss became {float(loss)} at step {step} (frame {frame}); lower the "
                                     "learning rates or resume from the last checkpoint")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        parts["stage"] = 0.0 if stage == "coarse" else 1.0
        parts["kind"] = {"rays": 0.0, "patches": 1.0, "lips": 2.0}[kind]
        return parts

    # ------------------------------------------------------------------------------------------------ run
    def run(self, *, resume: bool = True, evaluate: bool = True) -> TrainResult:
        """Train to ``config.total_steps``; with ``resume`` continue from the checkpoint in ``work_dir``.

        With ``evaluate`` the summary gets ``heldout_psnr``: the mean PSNR of renders of the held-out frames.
        """
        checkpoint = self.checkpoint_path
        resumed = False
        if resume and checkpoint is not None and checkpoint.is_file():
            try:
                self.load_checkpoint(checkpoint)
                resumed = True
                self._status(f"resuming from step {self.step} ({checkpoint})")
            except CheckpointMismatch as exc:
                self._status(f"warning: {exc}; it is kept as {set_aside(checkpoint)} and training starts over")
        if not resumed and self.step == 0:
            self.model.mark_untrained_cells(self.data.poses_ngp[self.data.train_indices].to(self.device),
                                            self.data.focal, self.data.cx, self.data.cy)
        if self.config.fine_steps > 0 and self.step < self.total_steps:
            self._perceptual = load_perceptual(self.config.perceptual_loss, self.device, self.models_dirs)
        total = self.total_steps
        started = time.perf_counter() - self.elapsed
        while self.step < total:
            parts = self.train_step(self.step)
            self.step += 1
            self.elapsed = time.perf_counter() - started
            self.history.append({"step": float(self.step), **parts})
            if (self.config.checkpoint_every and self.work_dir is not None
                    and self.step % self.config.checkpoint_every == 0):
                self.save_checkpoint()
            if self.step % max(self.config.log_every, 1) == 0 or self.step == total:
                self._status(self.status_line(total))
            if self.on_step is not None:
                try:
                    self.on_step(self.step, total)
                except BaseException:
                    if self.work_dir is not None and self._last_saved != self.step:
                        self.save_checkpoint()
                        log.info("SyncTalk: training stopped at step %d; checkpoint kept at %s", self.step,
                                 self.checkpoint_path)
                    raise
        if self.work_dir is not None and self._last_saved != self.step:
            self.save_checkpoint()
        self.check_finite_weights()
        self.model.eval()
        summary = self.summary()
        if evaluate:
            started_eval = time.perf_counter()
            summary["heldout_psnr"] = heldout_psnr(self.model, self.data, device=self.device,
                                                   max_frames=self.config.max_eval_frames)
            summary["eval_seconds"] = round(time.perf_counter() - started_eval, 2)
            if summary["heldout_psnr"] is not None:
                scored = len(eval_frames(self.data.val_indices, self.config.max_eval_frames))
                summary["eval_frames"] = scored
                self._status(f"held-out PSNR {summary['heldout_psnr']:.2f} dB over {scored} of "
                             f"{len(self.data.val_indices)} held-out frames")
        return TrainResult(model=self.model, summary=summary)

    # --------------------------------------------------------------------------------------------- reports
    def _status(self, line: str) -> None:
        log.info("SyncTalk train: %s", line)
        if self.on_status is not None:
            self.on_status(line)

    def recent(self, key: str, stage: float | None = None, count: int = 50) -> float | None:
        rows = [h[key] for h in self.history if key in h and (stage is None or h.get("stage") == stage)]
        return float(np.mean(rows[-count:])) if rows else None

    def status_line(self, total: int) -> str:
        stage, _, _ = self.stage_of(max(self.step - 1, 0))
        done = self.step
        rate = self.elapsed / max(done, 1)
        loss = self.recent("total", count=self.config.log_every)
        psnr = self.recent("psnr", count=self.config.log_every)
        return (f"step {done}/{total} [{stage}] loss {loss:.4f} psnr {psnr:.2f} dB, "
                f"{format_seconds(self.elapsed)} elapsed, ETA {format_seconds(rate * (total - done))}")

    def summary(self) -> dict[str, Any]:
        """JSON-ready summary of the run (final losses are means over the last 50 steps of each stage)."""
        losses = {}
        for name, stage in (("coarse", 0.0), ("fine", 1.0)):
            entry = {k: self.recent(k, stage) for k in ("total", "photometric", "lpips", "psnr")}
            entry = {k: v for k, v in entry.items() if v is not None}
            if entry:
                losses[name] = entry
        occupied = float(self.model.occupancy.occupied.float().mean())
        return {
            "steps": self.step, "coarse_steps": self.config.coarse_steps, "fine_steps": self.config.fine_steps,
            "seconds": round(self.elapsed, 2), "occupancy_seconds": round(self.occupancy_seconds, 2),
            "seconds_per_step": round(self.elapsed / max(self.step, 1), 4),
            "final_losses": losses, "occupied_fraction": occupied, "device": str(self.device),
            "threads": torch.get_num_threads(), "resolution": [self.data.height, self.data.width],
            "train_frames": int(len(self.data.train_indices)), "val_frames": int(len(self.data.val_indices)),
            "preset": self.config.preset, "photometric": self.config.photometric,
            "perceptual_loss": self.config.perceptual_loss if self.config.fine_steps else "unused",
            "mask_mode": self.nerf_config.mask_mode,
        }

    # ------------------------------------------------------------------------------------------ checkpoints
    @property
    def checkpoint_path(self) -> Path | None:
        return None if self.work_dir is None else self.work_dir / CHECKPOINT_NAME

    def state(self) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "step": self.step, "elapsed": self.elapsed,
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "generator": self.generator.get_state(),
            "nerf_config": self.nerf_config.to_dict(), "train_config": self.config.to_dict(),
            "history": self.history[-2000:], "occupancy_seconds": self.occupancy_seconds,
            "subject": self.fingerprint,
        }

    def save_checkpoint(self, path: Path | str | None = None) -> Path:
        """Write the full training state atomically (default ``work_dir/checkpoint.pt``)."""
        target = Path(path) if path is not None else self.checkpoint_path
        if target is None:
            raise ValueError("no work_dir was given, so there is nowhere to write checkpoints")
        self.check_finite_weights()
        with atomic_path(target) as tmp:
            torch.save(self.state(), tmp)
        self._last_saved = self.step
        return target

    def check_finite_weights(self) -> None:
        """Refuse to keep weights with NaN or infinite values (they would render NaN images)."""
        for name, value in self.model.state_dict().items():
            if value.is_floating_point() and not bool(torch.isfinite(value).all()):
                raise FloatingPointError(f"the weight {name!r} became NaN or infinite by step {self.step}; nothing "
                                         "was saved: lower the learning rates, or resume from the last checkpoint")

    def load_checkpoint(self, path: Path | str) -> None:
        """Restore the full training state written by :meth:`save_checkpoint`."""
        path = Path(path)
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise CheckpointMismatch(f"cannot read the training checkpoint {path} ({exc})") from exc
        if state.get("format") != CHECKPOINT_FORMAT:
            raise CheckpointMismatch(f"{path} is not a training checkpoint of this version")
        saved_subject = state.get("subject") or {}
        differ = [k for k, v in self.fingerprint.items() if saved_subject.get(k) != v]
        if differ:
            raise CheckpointMismatch(f"the checkpoint {path} was trained on another subject (its "
                                     f"{', '.join(k.replace('_', ' ') for k in differ)} differ), so it is not "
                                     "resumed (give each subject its own name)")
        saved = NerfConfig.from_dict(state["nerf_config"])
        if saved != self.nerf_config:
            changed = [k for k, v in saved.to_dict().items() if self.nerf_config.to_dict().get(k) != v]
            raise CheckpointMismatch(f"the checkpoint {path} was trained with other model settings "
                                     f"({', '.join(changed)}), so it is not resumed")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.generator.set_state(state["generator"])
        self.step = int(state["step"])
        self.elapsed = float(state.get("elapsed", 0.0))
        self.history = list(state.get("history", []))
        self.occupancy_seconds = float(state.get("occupancy_seconds", 0.0))
        self._last_saved = self.step


# -------------------------------------------------------------------------------------------------- eval
@torch.no_grad()
def render_frame(model: SyncTalkNeRF, data: SubjectData, index: int, *, device: torch.device | str = "cpu",
                 code_index: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Render training-data frame ``index`` (its pose, audio and expression) at the data's resolution.

    Returns:
        (rgb [h, w, 3] float32 0..1, alpha [h, w] float32).
    """
    model.eval()
    batch = data.image_rays(index).to(device)
    window, expression = data.conditioning(index, device)
    code = model.encode_audio(window[None])[0]
    out = model.render(batch.rays_o, batch.rays_d, audio_code=code, expression=expression, code_index=code_index,
                       bg=batch.bg, lip_mask=batch.lip_mask, expr_mask=batch.expr_mask)
    h, w = data.height, data.width
    return (out.rgb.reshape(h, w, 3).float().cpu().numpy(), out.alpha.reshape(h, w).float().cpu().numpy())


def eval_frames(val_indices: np.ndarray, max_frames: int) -> np.ndarray:
    """At most ``max_frames`` (0: all) of the held-out frames, evenly spaced, first and last included."""
    if not max_frames or len(val_indices) <= max_frames:
        return np.asarray(val_indices)
    return np.asarray(val_indices)[np.linspace(0, len(val_indices) - 1, max_frames).round().astype(int)]


def heldout_psnr(model: SyncTalkNeRF, data: SubjectData, *, device: torch.device | str = "cpu",
                 max_frames: int = 0, on_step: StepCallback | None = None) -> float | None:
    """Mean PSNR (dB) of renders of the held-out frames against the real frames at the data's resolution
    (``max_frames``: at most that many, evenly spaced over the held-out frames)."""
    frames = eval_frames(data.val_indices, max_frames)
    if len(frames) == 0:
        return None
    values = []
    for k, index in enumerate(frames):
        rgb, _ = render_frame(model, data, int(index), device=device)
        target = data.frame(int(index)).astype(np.float32) / 255.0
        values.append(psnr_from_mse(np.mean((rgb - target) ** 2), max_db=MAX_PSNR_DB))
        if on_step is not None:
            on_step(k + 1, len(frames))
    return float(np.mean(values))


# ------------------------------------------------------------------------------------------- one call
def train_subject(clip, track, pose, audio, *, preset: str = "auto", name: str = "synctalk",
                  work_dir: Path | str | None = None, device: torch.device | str = "cpu", resume: bool = True,
                  iterations: int = 0, resolution: int = 0, perceptual_loss: str | None = None,
                  on_step: StepCallback | None = None, on_status: StatusCallback | None = None,
                  models_dirs=None, audio_encoder: str | None = None, **overrides: Any):
    """Train a subject from the four hand-off types; returns ``(SyncTalkModel, summary)``.

    Args:
        clip, track, pose, audio: the subject's ``Clip``, ``FaceTrack``, ``HeadPose`` and ``AudioFeatures``.
        preset: "quick", "standard", "paper", or "auto" (standard on a CUDA device, else quick).
        name: the model's name (its folder name when saved).
        work_dir: checkpoint folder (None: no checkpoints).
        device: torch device.
        resume: continue from ``work_dir/checkpoint.pt`` when it exists.
        iterations: total steps (0 = the preset's); split between the stages like the preset's.
        resolution: longer training side in pixels (0 = the preset's).
        perceptual_loss: "lpips" or "none" (None = the preset's).
        on_step, on_status: progress callbacks (see :class:`Trainer`).
        models_dirs: folders searched for the LPIPS weights.
        audio_encoder: the ``encode_audio`` encoder that made ``audio`` when the features alone do not say it
            (``ave-file:<path>``); the speaker variants are encoded with it, and the model keeps it.
        overrides: any other :class:`TrainConfig` field.
    """
    from synctalk_lib.media.training_checks import training_notes
    from synctalk_lib.nerf.dataset import DataSettings
    from synctalk_lib.nerf.model_folder import SyncTalkModel
    from synctalk_lib.nerf.presets import get_preset, resolve_preset

    config = get_preset(resolve_preset(preset, device), **overrides)
    if iterations and iterations > 0:
        share = config.coarse_steps / max(config.total_steps, 1)
        coarse = int(round(iterations * share))
        config = config.replace(coarse_steps=coarse, fine_steps=int(iterations) - coarse)
    if resolution and resolution > 0:
        config = config.replace(resolution=int(resolution))
    if perceptual_loss is not None:
        config = config.replace(perceptual_loss=perceptual_loss)
    config.validate()
    if config.fine_steps > 0:  # fail before hours of training, not at the fine stage
        load_perceptual(config.perceptual_loss, "cpu", models_dirs)
    settings = DataSettings(resolution=config.resolution, val_frames=config.val_frames,
                            face_fraction=config.face_fraction, lip_weight=config.lip_weight)
    notes = training_notes(clip)
    for note in notes:
        log.warning("SyncTalk: %s", note)
    if on_status is not None:
        for note in notes:
            on_status(f"note: {note}")
        on_status("preparing the training data (clean background, regions)")
    variants = _speaker_variants(clip, audio, config, models_dirs, device, notes, on_status, audio_encoder)
    data = SubjectData(clip, track, pose, audio, settings=settings, audio_variants=variants)
    trainer = Trainer(data, config, work_dir=work_dir, device=device, on_step=on_step, on_status=on_status,
                      models_dirs=models_dirs)
    result = trainer.run(resume=resume)
    summary = dict(result.summary)
    summary["background_filled_fraction"] = round(data.background.filled_fraction, 4)
    if notes:
        summary["notes"] = notes
    model = SyncTalkModel.from_training(result.model, data, name=name, train_config=config.to_dict(),
                                        summary=summary)
    if audio_encoder is not None:
        from synctalk_lib.audio.features import parse_encoder

        kind, path = parse_encoder(audio_encoder)
        if kind == "ave-file":
            model.audio_encoder_file = Path(path)
    return model, summary


def _speaker_variants(clip, audio, config: TrainConfig, models_dirs, device, notes: list[str],
                      on_status: StatusCallback | None, audio_encoder: str | None = None) -> list:
    """The subject's speech as other voices (``audio.augment``), encoded like its features; none when the
    config asks for none, the clip has no audio, or the features' encoder cannot be run again here (a note)."""
    from synctalk_lib.audio.augment import speaker_variants
    from synctalk_lib.audio.features import encoder_for

    if config.speaker_variants <= 0 or not clip.has_audio:
        return []
    try:
        encoder = encoder_for(audio.encoder_id, audio_encoder)
    except InputError as exc:
        notes.append(f"trained without speaker variants: {exc}")
        return []
    if on_status is not None:
        on_status("encoding the subject's speech as other voices (speaker variants)")
    return speaker_variants(clip.audio_waveform(), clip.sample_rate, fps=clip.fps, encoder=encoder,
                            num_frames=min(clip.num_frames, audio.num_frames), models_dirs=models_dirs,
                            device=device)
