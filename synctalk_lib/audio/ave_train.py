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

The parts: ``ave_train_nets`` (the networks besides the AVE), ``ave_train_data`` (mouth crops, audio windows,
frame ranges, batches), ``ave_train_metrics`` (AUC of synced vs shifted pairs), ``ave_train_checkpoint``
(resumable state and the export in the official layout); this module holds the configuration and the loop.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from synctalk_lib.audio.ave import AudioVisualEncoder, file_id, load_ave
from synctalk_lib.audio.ave_train_checkpoint import (checkpoint_path, fingerprint, load_checkpoint, save_ave_weights,
                                                     save_checkpoint)
from synctalk_lib.audio.ave_train_data import (CROP_SCALE, Batch, ClipSamples, FrameRange, Sampler,
                                               prepare_samples)
from synctalk_lib.audio.ave_train_metrics import pair_masks, sync_scores
from synctalk_lib.audio.ave_train_nets import FaceWindowEncoder, MouthDecoder, ReferenceEncoder, sync_probability
from synctalk_lib.errors import InputError
from synctalk_lib.types import Clip, FaceTrack
from synctalk_lib.progress import StepCallback

log = logging.getLogger("synctalk")


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
    crop_scale: float = CROP_SCALE
    """Mouth crop side as a multiple of the clip's median outer-eye-corner distance."""
    seed: int = 0
    eval_every: int = 50
    checkpoint_every: int = 100
    grad_clip: float = 5.0


# -------------------------------------------------------------------------------------------------- training
class _Models(nn.Module):
    def __init__(self, ave: AudioVisualEncoder):
        super().__init__()
        self.ave = ave
        self.face = FaceWindowEncoder()
        self.reference = ReferenceEncoder()
        self.decoder = MouthDecoder()


def _losses(models: _Models, batch: Batch, min_shift: int) -> tuple[torch.Tensor, torch.Tensor]:
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
    out_path, dev = _check_arguments(steps, config, out_path, device)
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
        run = _start(data, config, rng, dev, out_path, init=init, models_dirs=models_dirs, resume=resume)
        val_start = run.scores("val") if run.has_val else None
        train_started = time.perf_counter()
        _train(run, steps, None if on_step is None else (lambda step: on_step(landmark_frames + step, total)))
        seconds = {"prepare": round(prep_seconds, 2), "train": round(time.perf_counter() - train_started, 2)}
        report = _report(run, out_path, steps, val_start, seconds)
        run.models.ave.eval()
        save_ave_weights(run.models.ave, out_path, {"steps": steps, "val_auc": report["val_auc"],
                                                    "clips": ",".join(d.name for d in data)})
        save_checkpoint(run.checkpoint, run.models, run.optimizer, steps, run.fingerprint, run.history, rng)
    report["encoder_id"] = file_id(out_path)
    return report


OWN_ENCODER_STEPS = 300
"""Steps of a subject's own encoder: ~100 s on 2 CPU cores for a 13 s clip, held-out sync AUC 0.5 -> 0.91."""


def train_own_encoder(clip: Clip, track: FaceTrack, out_path: Path | str, *,
                      models_dirs: Iterable[Path | str] | None = None, device: torch.device | str = "cpu",
                      on_step: StepCallback | None = None) -> dict:
    """The subject's own audio-visual encoder, trained on its clip (:data:`OWN_ENCODER_STEPS` steps, the last 10 %
    of the frames held out for the sync AUC) and saved at ``out_path``; returns :func:`train_ave`'s report. The
    optimiser state is not kept (nobody resumes a 100 s run; it is 95 MB)."""
    if not clip.has_audio:
        raise InputError("the subject's own audio encoder learns from the clip's speech, but the clip has no audio "
                         "track")
    report = train_ave([clip], out_path, steps=OWN_ENCODER_STEPS, face_tracks=[track], models_dirs=models_dirs,
                       device=device, on_step=on_step, resume=False)
    Path(str(out_path) + ".train.pt").unlink(missing_ok=True)
    return report


def _check_arguments(steps: int, config: AVETrainConfig, out_path: Path | str, device) -> tuple[Path, torch.device]:
    if steps < 1:
        raise InputError(f"steps must be at least 1, got {steps}")
    if config.batch_size < 4:
        raise InputError(f"batch_size must be at least 4, got {config.batch_size}")
    out_path = Path(out_path)
    if out_path.suffix not in (".safetensors", ".pth", ".pt"):
        raise InputError(f"--out {out_path.name}: the AVE is saved as .safetensors or .pth")
    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                       ("cpu" if device == "auto" else device))
    return out_path, dev


@dataclass
class _Run:
    """One training run: models, optimiser, data and RNG, where its checkpoint goes, and the history so far."""

    models: _Models
    optimizer: torch.optim.Optimizer
    data: list[ClipSamples]
    config: AVETrainConfig
    rng: np.random.Generator
    device: torch.device
    checkpoint: Path
    fingerprint: str
    init_id: str
    start_step: int = 0
    history: list[dict] = field(default_factory=list)

    @property
    def has_val(self) -> bool:
        return any(d.val_range is not None and len(d.frames_in(d.val_range)) for d in self.data)

    def scores(self, split: str) -> dict:
        return sync_scores(self.models.ave, self.models.face, self.data, split, self.device, self.config.min_shift)


def _start(data: list[ClipSamples], config: AVETrainConfig, rng: np.random.Generator, dev: torch.device,
           out_path: Path, *, init: str | None, models_dirs, resume: bool) -> _Run:
    """Fresh models and optimiser, or the state of a matching checkpoint beside ``out_path``."""
    ave = AudioVisualEncoder() if init is None else load_ave(None if init == "ave" else init, models_dirs)
    init_id = "random" if init is None else ave.weights_id
    models = _Models(ave).to(dev).train()
    optimizer = torch.optim.AdamW(models.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    run = _Run(models=models, optimizer=optimizer, data=data, config=config, rng=rng, device=dev,
               checkpoint=checkpoint_path(out_path), fingerprint=fingerprint(data, config, init_id), init_id=init_id)
    resumed = load_checkpoint(run.checkpoint, models, optimizer, run.fingerprint, rng) if resume else None
    if resumed is not None:
        run.start_step, run.history = resumed
        log.info("SyncTalk: resuming AVE training from step %d (%s)", run.start_step, run.checkpoint)
    return run


def _train(run: _Run, steps: int, on_step: Callable[[int], None] | None) -> None:
    """Steps ``run.start_step + 1 .. steps``: warm-up, loss, clipped AdamW step, evaluation and checkpoints."""
    config, models, optimizer = run.config, run.models, run.optimizer
    sampler = Sampler(run.data, run.rng, batch_size=config.batch_size, min_shift=config.min_shift,
                      near_shift=config.near_shift)
    for step in range(run.start_step, steps):
        lr = config.lr * min(1.0, (step + 1) / max(config.warmup_steps, 1))
        for group in optimizer.param_groups:
            group["lr"] = lr
        batch = sampler.sample(run.device)
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
        if run.has_val and config.eval_every and ((step + 1) % config.eval_every == 0 or step + 1 == steps):
            entry["val_auc"] = run.scores("val")["auc"]
        run.history.append(entry)
        if config.checkpoint_every and (step + 1) % config.checkpoint_every == 0 and step + 1 < steps:
            save_checkpoint(run.checkpoint, models, optimizer, step + 1, run.fingerprint, run.history, run.rng)
        if on_step is not None:
            on_step(step + 1)


def _report(run: _Run, out_path: Path, steps: int, val_start: dict | None, seconds: dict) -> dict:
    """The JSON-able report of ``train_ave`` (without the encoder id, known once the file is written)."""
    history, data = run.history, run.data
    val_end = run.scores("val") if run.has_val else None
    train_end = run.scores("train")
    window = max(5, len(history) // 10)
    seconds["per_step"] = round(seconds["train"] / max(steps - run.start_step, 1), 4)
    return {
        "out": str(out_path), "steps": steps, "resumed_from_step": run.start_step, "device": str(run.device),
        "init": run.init_id, "config": dataclasses.asdict(run.config),
        "clips": [{"name": d.name, "frames": int(d.crops.shape[0]), "train_frames": list(d.train_range or ()),
                   "val_frames": list(d.val_range or ()), "train_used": int(len(d.frames_in(d.train_range))),
                   "val_used": int(len(d.frames_in(d.val_range)))} for d in data],
        "losses": {name: {"start": _mean([h[name] for h in history[:window]]),
                          "end": _mean([h[name] for h in history[-window:]])} for name in ("sync", "recon")},
        "val_auc_start": None if val_start is None else val_start["auc"],
        "val_auc": None if val_end is None else val_end["auc"],
        "val_auc_near": None if val_end is None else val_end["auc_near"],
        "val": val_end, "train": train_end, "seconds": seconds,
        "history": [h for h in history if "val_auc" in h or h["step"] % 10 == 0],
    }
