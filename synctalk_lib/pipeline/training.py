"""``train``: a ``Subject`` -> a trained ``SyncTalkModel`` (saved as a model folder when ``out`` is given).

    model = train(subject, "work/talk/model", preset="auto")   # standard on a CUDA GPU, quick on a CPU

With ``out`` the run is a stage (``stages.StageLog`` in the checkpoint folder ``out.training``): training again
with the same subject and settings reuses the saved model instead of training twice.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Iterable

from synctalk_lib.pipeline.stages import StageLog
from synctalk_lib.progress import StatusCallback, StepCallback
from synctalk_lib.subject import Subject

STAGE_LOG = "stages.json"


def choose_perceptual_loss(choice: str | None, models_dirs: Iterable[Path | str] | None,
                           on_status: StatusCallback | None = None) -> str | None:
    """``auto``: LPIPS when its weights load here, else train without it (and say so once)."""
    if choice != "auto":
        return choice
    from synctalk_lib.errors import SyncTalkError
    from synctalk_lib.metrics.lpips import load_lpips

    try:
        load_lpips("alex", models_dirs)
    except SyncTalkError as exc:
        if on_status is not None:
            on_status(f"warning: training without the LPIPS perceptual loss ({str(exc).split(':')[0]}); put its "
                      "weights in the models folder to use it")
        return "none"
    return "lpips"


def train(subject: Subject, out: Path | str | None = None, *, preset: str = "auto", iterations: int = 0,
          resolution: int = 0, perceptual_loss: str | None = "auto", device: Any = "auto", name: str | None = None,
          work_dir: Path | str | None = None, resume: bool = True, reuse: bool = True,
          models_dirs: Iterable[Path | str] | None = None, overrides: dict[str, Any] | None = None,
          on_step: StepCallback | None = None, on_status: StatusCallback | None = None):
    """Train the subject's head NeRF; returns the ``SyncTalkModel`` (saved to ``out`` when given).

    Args:
        subject: the prepared subject (``pipeline.preprocess``).
        out: model folder to write (replaced atomically); None keeps the model in memory only.
        preset: ``auto | quick | standard | paper``.
        iterations, resolution: total steps and longer training side (0 = the preset's).
        perceptual_loss: ``lpips | none | auto`` (auto: lpips when its weights are here); None = the preset's.
        device: ``auto | cpu | cuda`` or a torch device.
        name: the model's name (default: ``out``'s folder name, else "synctalk").
        work_dir: checkpoints (default ``out.training`` beside ``out``; None without ``out``: no checkpoints).
        resume: continue from a matching checkpoint in ``work_dir`` (one of another subject or other settings is
            set aside as ``checkpoint.old<k>.pt`` and training starts over).
        reuse: with ``out``, return the saved model when it was trained from this subject with these settings.
        overrides: any other ``TrainConfig`` field (e.g. ``{"photometric": "l1", "nerf": {"max_steps": 32}}``).
    """
    from synctalk_lib.devices import resolve_device
    from synctalk_lib.nerf.presets import resolve_preset
    from synctalk_lib.nerf.trainer import train_subject

    device = resolve_device(device)
    preset = resolve_preset(preset, device)
    out = Path(out) if out is not None else None
    work = Path(work_dir) if work_dir is not None else (out.with_name(out.name + ".training") if out else None)
    settings = {"subject": subject.identity(), "preset": preset, "iterations": int(iterations),
                "resolution": int(resolution), "perceptual_loss": perceptual_loss, "overrides": overrides or {}}
    log = StageLog(work / STAGE_LOG) if out is not None and work is not None else None
    outputs = [out / "config.json", out / "model.safetensors"] if out is not None else []
    if log is not None and reuse and log.is_done("train", settings, outputs):
        if on_status is not None:
            on_status(f"reusing the trained model in {out}")
        return load_model(out, device=device, reference=subject.clip)
    loss = choose_perceptual_loss(perceptual_loss, models_dirs, on_status)
    started = time.perf_counter()
    model, summary = train_subject(
        subject.clip, subject.track, subject.pose, subject.features, preset=preset,
        name=name or (out.name if out is not None else "synctalk"), work_dir=work, device=device, resume=resume,
        iterations=iterations, resolution=resolution, perceptual_loss=loss, on_step=on_step, on_status=on_status,
        models_dirs=models_dirs, audio_encoder=subject.audio_encoder(), **(overrides or {}))
    if out is not None:
        model = save_model(model, out, summary, preset)
        if log is not None:
            log.mark_done("train", settings, outputs, {"preset": preset}, time.perf_counter() - started)
    return model


def save_model(model, out: Path, summary: dict[str, Any], preset: str):
    """Write the model folder and its ``train_report.json`` (steps, seconds, losses, held-out PSNR)."""
    from synctalk_lib.paths import write_json

    model.save_pretrained(out)
    write_json(out / "train_report.json", {
        "preset": preset, "steps": summary["steps"], "seconds": summary["seconds"],
        "final_losses": summary["final_losses"], "heldout_psnr": summary.get("heldout_psnr"), "summary": summary})
    return model


def load_model(source: Path | str | None = None, *, repo_id: str | None = None, device: Any = "auto",
               models_dirs: Iterable[Path | str] | None = None, revision: str | None = None,
               cache_dir: Path | str | None = None, reference=None):
    """A trained model from a folder, a name in the models folders, or a Hub repo (``repo_id``); ``reference``:
    the subject's clip, used instead of decoding the folder's reference video."""
    from synctalk_lib.devices import resolve_device
    from synctalk_lib.nerf.model_folder import SyncTalkModel

    return SyncTalkModel.from_pretrained(source, repo_id=repo_id, revision=revision, models_dirs=models_dirs,
                                         device=resolve_device(device), cache_dir=cache_dir, reference=reference)
