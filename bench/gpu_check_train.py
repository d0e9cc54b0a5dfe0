"""Step e of the GPU check: a time-boxed ``standard``-preset training on the reference clip at 512 x 512, then the
held-out evaluation (frames 300-330).

1. The subject comes from the bundle (``bench/gpu_bundle.sh``): its folder is copied, the clip cache is rebuilt
   from the carried video with PyAV, and every decoded frame is checked against the sha256 the bundle recorded.
2. Calibration: a few steps of each stage through the real ``Trainer`` give the seconds per coarse and fine step,
   hence the projected wall time of the full preset (30k + 10k steps).
3. The run: the standard preset with its step count scaled to the time left (both stages in the preset's ratio,
   so the learning-rate schedule and the fine stage happen as in a full run), stopped early only if it overruns.
4. ``evaluate`` on the held-out frames: PSNR / SSIM (head over the real background, and portrait), LPIPS when its
   weights are present, sharpness (``metrics.sharpness``); LMD needs MediaPipe, which the GPU machine lacks: the renders go back
   as ``heldout_renders.npz`` and ``bench/gpu_check_finish.py`` computes LMD from them on a CPU machine.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # gpu_bundle, also when imported from elsewhere

RETURN_LIMIT = 15 * 2**20
"""Largest file the check puts in $OUT (the device tool returns files of at most 16 MiB)."""


class TimeUp(Exception):
    """Raised from the trainer's step callback when the run overruns its time box."""


# ------------------------------------------------------------------------------------------------ subject
def rebuild_subject(bundle: Path, work: Path) -> tuple[Path, dict[str, Any]]:
    """Copy the bundle's subject folder into ``work`` and rebuild its clip cache from the carried video.

    Returns:
        (subject folder, check) where check counts frames whose sha256 differs from the bundle's manifest.
    """
    from gpu_bundle import audio_digest, frame_digests

    from synctalk_lib.media.prepare import prepare_clip
    from synctalk_lib.subject import SubjectDir

    manifest_path = bundle / "manifest.json"
    if not manifest_path.is_file():
        raise SystemExit(f"no bundle at {bundle} (manifest.json missing): run `bash bench/gpu_bundle.sh` first and "
                         "carry bench/.gpu_bundle")
    manifest = json.loads(manifest_path.read_text())
    subject_dir = work / "subject"
    shutil.rmtree(subject_dir, ignore_errors=True)
    shutil.copytree(bundle / manifest["subject"], subject_dir)
    started = time.perf_counter()
    clip = prepare_clip(bundle / manifest["video"], work / "clip_cache", **manifest["clip_settings"])
    SubjectDir(subject_dir).save_clip_ref(clip, manifest["clip_settings"])
    digests = frame_digests(clip)
    differing = [i for i, (a, b) in enumerate(zip(digests, manifest["frame_sha256"])) if a != b]
    check = {"frames": clip.num_frames, "expected_frames": manifest["frames"], "frames_differing": len(differing),
             "first_differing": differing[:5], "audio_identical": audio_digest(clip) == manifest["audio_sha256"],
             "decode_seconds": round(time.perf_counter() - started, 2)}
    return subject_dir, check


def lpips_status(models_dirs: list[Path]) -> tuple[bool, str | None]:
    """Whether the LPIPS weights load here, and why not."""
    from synctalk_lib.errors import SyncTalkError
    from synctalk_lib.metrics.lpips import load_lpips

    try:
        load_lpips("alex", models_dirs)
    except SyncTalkError as exc:
        return False, str(exc).split("\n")[0][:300]
    return True, None


# ----------------------------------------------------------------------------------------------- training
def _trainer(data, config, device, on_step=None):
    from synctalk_lib.nerf.trainer import Trainer

    return Trainer(data, config, device=device, on_step=on_step)


def calibrate(data, config, device, warmup: int, coarse: int, fine: int) -> dict[str, float]:
    """Seconds per coarse and per fine step of ``config``'s kind of run, from a short run of the real trainer
    (the first ``warmup`` steps, and the first two fine steps, are compilation and caches: not counted)."""
    stamps: list[float] = []
    cal = config.replace(coarse_steps=warmup + coarse, fine_steps=2 + fine if config.fine_steps else 0)
    trainer = _trainer(data, cal, device, on_step=lambda done, total: stamps.append(time.perf_counter()))
    trainer.run(evaluate=False)
    durations = np.diff(np.asarray(stamps))  # duration of step k + 1
    coarse_s = float(durations[warmup - 1:warmup - 1 + coarse].mean())
    fine_part = durations[warmup - 1 + coarse + 2:]
    fine_s = float(fine_part.mean()) if len(fine_part) else coarse_s
    return {"coarse_s_per_step": coarse_s, "fine_s_per_step": fine_s, "steps": int(trainer.step),
            "occupancy_interval": config.occupancy_interval}


def scaled_config(config, seconds: float, timing: dict[str, float], full: tuple[int, int]):
    """``config`` with as many steps as fit in ``seconds`` (at most the full preset's), split like the preset."""
    share = full[0] / sum(full)
    per_step = share * timing["coarse_s_per_step"] + (1 - share) * timing["fine_s_per_step"]
    steps = int(min(sum(full), max(4, seconds / max(per_step, 1e-9))))
    coarse = max(1, int(round(steps * share)))
    return config.replace(coarse_steps=coarse, fine_steps=steps - coarse)


def train_timeboxed(data, config, device, seconds: float):
    """Train ``config``; stop after the step that overruns ``seconds`` (then the model is as far as it got).

    Returns:
        (trainer, stopped_early).
    """
    deadline = time.perf_counter() + seconds

    def guard(done: int, total: int) -> None:
        if time.perf_counter() > deadline:
            raise TimeUp(f"stopped at step {done} of {total}")

    trainer = _trainer(data, config, device, on_step=guard)
    try:
        trainer.run(evaluate=False)
        return trainer, False
    except TimeUp:
        trainer.model.eval()
        return trainer, True


# ------------------------------------------------------------------------------------------ returned files
def _to_uint8(images: np.ndarray) -> np.ndarray:
    return (np.clip(np.asarray(images, np.float32), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def save_renders(path: Path, head: np.ndarray, alpha: np.ndarray, frames: list[int]) -> dict[str, Any]:
    """``heldout_renders.npz`` (uint8 head renders and alpha); frames are dropped from the end until the file fits
    the size that comes back from the GPU machine."""
    keep = len(frames)
    while keep > 0:
        np.savez_compressed(path, head=_to_uint8(head[:keep]), alpha=_to_uint8(alpha[:keep]),
                            frames=np.asarray(frames[:keep], np.int64))
        if path.stat().st_size <= RETURN_LIMIT:
            break
        keep = keep * 3 // 4
    return {"file": path.name, "frames": keep, "mib": round(path.stat().st_size / 2**20, 2)}


def save_preview(path: Path, real: np.ndarray, head: np.ndarray, portrait: np.ndarray | None) -> str | None:
    """A PNG to look at: rows of (real | head render | portrait) for three held-out frames (needs OpenCV)."""
    try:
        import cv2
    except ImportError:
        return None
    picks = sorted({0, len(real) // 2, len(real) - 1})
    rows = []
    for k in picks:
        tiles = [real[k], _to_uint8(head[k])] + ([_to_uint8(portrait[k])] if portrait is not None else [])
        rows.append(np.concatenate(tiles, axis=1))
    cv2.imwrite(str(path), np.concatenate(rows, axis=0)[..., ::-1])
    return path.name


# ------------------------------------------------------------------------------------------------- the step
def _device(kind: str):
    import torch

    return torch.device("cuda" if kind == "cuda" else "cpu")


def _peak_mib(device) -> float | None:
    import torch

    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None


def _train(args: argparse.Namespace, sizes, data, base, device) -> tuple[Any, dict[str, Any]]:
    """Calibrate, then train the scaled standard preset in the time left before the evaluation's reserve."""
    warmup, coarse, fine = sizes.calibration
    timing = calibrate(data, base, device, warmup, coarse, fine)
    full = (base.coarse_steps, base.fine_steps)  # the standard preset's own schedule
    deadline = args.started + args.budget - 5.0
    seconds = max(1.0, deadline - time.perf_counter() - sizes.eval_reserve_s)
    if sizes.max_train_s is not None:
        seconds = min(seconds, sizes.max_train_s)
    config = scaled_config(base, seconds, timing, full)
    started = time.perf_counter()
    trainer, stopped = train_timeboxed(data, config, device, seconds * 1.15 + 5.0)
    summary = trainer.summary()
    projected = full[0] * timing["coarse_s_per_step"] + full[1] * timing["fine_s_per_step"]
    info = {"calibration": timing, "planned_steps": config.total_steps, "steps_reached": int(trainer.step),
            "coarse_steps": config.coarse_steps, "fine_steps": config.fine_steps, "stopped_early": stopped,
            "train_seconds": round(time.perf_counter() - started, 2), "time_box_seconds": round(seconds, 1),
            "projected_full_standard_seconds": round(projected, 1), "final_losses": summary["final_losses"],
            "occupied_fraction": summary["occupied_fraction"], "resolution": summary["resolution"],
            "peak_gpu_mib_training": _peak_mib(device)}
    return trainer, info


def render_path(nerf) -> dict[str, Any]:
    """What renders this model here: its backend setting, its hash grids' implementation, and whether the renderer
    runs the cuda_ext kernels for CUDA rays (what ``auto`` picks on a GPU)."""
    from synctalk_lib.nerf import backends

    grids = {getattr(m, "backend", None) for m in nerf.modules() if type(m).__name__ == "HashGrid2D"}
    return {"config_backend": nerf.config.backend, "hash_grids": sorted(g for g in grids if g),
            "fast_render_path_available": backends.kernels_for("cuda", nerf.config.backend).name == "cuda_ext"}


def _evaluate(args, data, trainer, config, subject, device, lpips_ok: bool) -> dict[str, Any]:
    """Held-out scores (sharpness included) and the files that go back."""
    from synctalk_lib.nerf.model_folder import SyncTalkModel
    from synctalk_lib.pipeline.evaluation import evaluate_model

    model = SyncTalkModel.from_training(trainer.model, data, name="gpu_check", train_config=config.to_dict(),
                                        summary=trainer.summary())
    frames = [int(i) for i in data.val_indices]
    report = evaluate_model(model, subject, frames=frames, device=device, models_dirs=args.models_dirs,
                            with_lpips=lpips_ok, with_lmd=False, return_images=True)
    own, images = report.heldout["own"], report.images["own"]
    scores = report.to_dict(per_frame=False)["heldout"]["own"]
    result: dict[str, Any] = {
        "head": scores["head"], "portrait": scores["portrait"], "frames": frames,
        "render_seconds": own.render_seconds, "render_fps": round(own.render_fps, 3), "notes": report.notes,
        "sharpness": {mode: {"laplacian_ratio": scores[mode]["laplacian_ratio"],
                             "highpass_corr": scores[mode]["highpass_correlation"]} for mode in ("head", "portrait")},
        "render_path": render_path(model.nerf)}
    real = np.stack([subject.clip.frame(i) for i in frames])
    out = args.out or args.work
    result["returned"] = {
        "renders": save_renders(out / "heldout_renders.npz", images["head"], images["alpha"], frames),
        "preview": save_preview(out / "heldout_preview.png", real, images["head"],
                                images["portrait"].astype(np.float32) / 255.0)}
    return result


def train_and_evaluate(args: argparse.Namespace, sizes) -> dict[str, Any]:
    """The whole step: subject, calibration, time-boxed standard run, evaluation."""
    import torch

    from synctalk_lib.nerf.dataset import DataSettings, SubjectData
    from synctalk_lib.nerf.presets import get_preset
    from synctalk_lib.subject import Subject, SubjectDir

    device = _device(sizes.device)
    subject_dir, clip_check = rebuild_subject(args.bundle, args.work)
    subject = SubjectDir(subject_dir)
    clip, track, pose, audio = (subject.load_clip(), subject.load_face_track(), subject.load_head_pose(),
                                subject.load_audio_features())
    args.models_dirs = [p for p in (args.bundle / "models",) if p.is_dir()] or None
    lpips_ok, lpips_note = lpips_status(args.models_dirs or [])
    base = get_preset("standard", **sizes.train_overrides, val_frames=sizes.val_frames, checkpoint_every=0,
                      log_every=10**9, perceptual_loss="lpips" if lpips_ok else "none")
    started = time.perf_counter()
    data = SubjectData(clip, track, pose, audio, settings=DataSettings(
        resolution=base.resolution, val_frames=base.val_frames, face_fraction=base.face_fraction,
        lip_weight=base.lip_weight))
    data_seconds = time.perf_counter() - started
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    trainer, info = _train(args, sizes, data, base, device)
    config = trainer.config
    args.save_partial({"clip_check": clip_check, "training": info})  # kept if the evaluation overruns
    started = time.perf_counter()
    evaluation = _evaluate(args, data, trainer, config, Subject(clip=clip, track=track, pose=pose, features=audio),
                           device, lpips_ok)
    notes = list(evaluation.pop("notes"))
    notes.append("LMD is not computed by the check (the GPU machine has no MediaPipe): run `python "
                 "bench/gpu_check_finish.py RESULTS_DIR` on a CPU machine with the returned heldout_renders.npz")
    if not lpips_ok:
        notes.append(f"LPIPS not computed: {lpips_note}")
    if config.fine_steps and config.perceptual_loss == "none":
        notes.append("fine stage trained without LPIPS (weights absent): fine steps are slightly cheaper than "
                     "with it, so the projected preset time is a little low")
    return {"clip_check": clip_check, "data_seconds": round(data_seconds, 2), "training": info,
            "evaluation": evaluation, "eval_seconds": round(time.perf_counter() - started, 2),
            "perceptual_loss": config.perceptual_loss, "preset": "standard",
            "preset_changes": sizes.train_overrides, "peak_gpu_mib": _peak_mib(device), "notes": notes}
