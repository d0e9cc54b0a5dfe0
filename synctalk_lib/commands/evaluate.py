"""``evaluate MODEL_DIR --subject SUBJECT_DIR --json OUT.json``: image and lip metrics on the held-out frames.

Renders the held-out frames (by default those the model was not trained on) with their own audio rows,
expression coefficients and poses (per-frame code row 0, like the original), composites them over each real
frame's background at the clip's size, and compares them with the real frames:

    {"head": {"psnr": dB, "ssim": 0..1, "lpips": AlexNet LPIPS or null when its weights are missing,
              "lmd": mouth landmark distance in pixels at 512}, "frames": [...], ...}

``score_frames`` computes the same four numbers for any rendered/real frame pairs (the portrait evaluation uses it).
"""
from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Any, Iterable

import numpy as np

NAME = "evaluate"
HELP = "held-out PSNR / SSIM / LPIPS / LMD of a trained model on its subject's frames"

log = logging.getLogger("synctalk")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="model folder, a name in the models folder, or a Hub repo id")
    parser.add_argument("--subject", type=Path, required=True, help="subject folder written by `preprocess`")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--frames", default=None,
                        help="frames to evaluate: 'start:stop' (default: the model's held-out frames)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or a torch device")
    parser.add_argument("--no-lpips", action="store_true", help="skip LPIPS (reported as null)")
    parser.add_argument("--no-lmd", action="store_true", help="skip the mouth landmark distance (null)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    parser.add_argument("--models-dir", action="append", default=None, help="models folder(s)")


def score_frames(pred: np.ndarray, real: np.ndarray, *, models_dirs: Iterable[Path | str] | None = None,
                 device="cpu", with_lpips: bool = True, with_lmd: bool = True,
                 notes: list[str] | None = None) -> dict[str, Any]:
    """PSNR, SSIM, LPIPS and LMD of frame pairs.

    Args:
        pred, real: [F, H, W, 3] float32 in [0, 1] (same shape).
        models_dirs: folders searched for the LPIPS weights and the face landmarker.
        with_lpips, with_lmd: compute those (else null).
        notes: receives a sentence for each metric that could not be computed.

    Returns:
        {"psnr", "ssim", "lpips", "lmd"} (floats; lpips / lmd None when unavailable) and "per_frame" lists.
    """
    from synctalk_lib.errors import MissingWeightsError
    from synctalk_lib.metrics import psnr_per_frame, ssim_per_frame

    notes = notes if notes is not None else []
    out: dict[str, Any] = {}
    per_frame: dict[str, list] = {"psnr": psnr_per_frame(pred, real), "ssim": ssim_per_frame(pred, real)}
    out["psnr"] = float(np.mean(per_frame["psnr"]))
    out["ssim"] = float(np.mean(per_frame["ssim"]))
    out["lpips"] = None
    if with_lpips:
        from synctalk_lib.metrics.lpips import load_lpips, lpips_distance

        try:
            model = load_lpips("alex", models_dirs, device=device)
            per_frame["lpips"] = lpips_distance(pred, real, model)
            out["lpips"] = float(np.mean(per_frame["lpips"]))
        except MissingWeightsError as exc:
            notes.append(f"LPIPS not computed: {exc}")
    out["lmd"] = None
    if with_lmd:
        from synctalk_lib.metrics.lmd import mouth_landmark_distance

        result = mouth_landmark_distance(pred, real, models_dirs=models_dirs)
        per_frame["lmd"] = [None if v != v else v for v in result.per_frame]
        out["lmd"] = None if result.lmd != result.lmd else float(result.lmd)
        if result.skipped:
            notes.append(f"LMD skipped frames {list(result.skipped)} (no face found in the render or the frame)")
    out["per_frame"] = per_frame
    return out


def evaluate_model(model, clip, features, frames: Iterable[int], *, device="cpu",
                   models_dirs: Iterable[Path | str] | None = None, with_lpips: bool = True,
                   with_lmd: bool = True, on_step=None) -> dict[str, Any]:
    """Render ``frames`` of the subject and score them against the real frames of ``clip``.

    The real clip's frames are used as the reference frames (backgrounds), so the only differences are the
    rendered head's.

    Returns:
        {"head": {"psnr", "ssim", "lpips", "lmd"}, "frames", "num_frames", "resolution", "render_resolution",
        "render_seconds", "render_fps", "per_frame", "notes"}.
    """
    from synctalk_lib.errors import InputError
    from synctalk_lib.nerf.inference import render_frames
    from synctalk_lib.nerf.model_folder import ReferenceFrames

    frames = [int(i) for i in frames]
    if not frames:
        raise InputError("there are no frames to evaluate (the model has no held-out frames; pass --frames)")
    subject = model.subject
    if (clip.num_frames, clip.height, clip.width) != (subject.num_frames, subject.height, subject.width):
        raise InputError(f"the subject clip ({clip.num_frames} frames {clip.width}x{clip.height}) is not the one "
                         f"the model was trained on ({subject.num_frames} frames {subject.width}x{subject.height})")
    subject.frames = ReferenceFrames(clip=clip, num_frames=clip.num_frames, height=clip.height, width=clip.width)
    started = time.perf_counter()
    pred = np.concatenate([c.rgb for c in render_frames(model, features, frames=frames, device=device,
                                                        on_step=on_step)])
    seconds = time.perf_counter() - started
    real = np.stack([clip.frame(i) for i in frames]).astype(np.float32) / 255.0
    notes: list[str] = []
    scores = score_frames(pred, real, models_dirs=models_dirs, device=device, with_lpips=with_lpips,
                          with_lmd=with_lmd, notes=notes)
    per_frame = scores.pop("per_frame")
    return {"head": scores, "frames": frames, "num_frames": len(frames), "resolution": [clip.height, clip.width],
            "render_resolution": [model.render_height, model.render_width], "render_seconds": round(seconds, 2),
            "render_fps": round(len(frames) / max(seconds, 1e-9), 3), "per_frame": per_frame, "notes": notes}


def run(args: argparse.Namespace) -> int:
    import torch

    from synctalk_lib.commands.train import cli_progress, resolve_device
    from synctalk_lib.nerf.dataset import split_frames
    from synctalk_lib.nerf.model_folder import SyncTalkModel
    from synctalk_lib.paths import write_json
    from synctalk_lib.subject import SubjectDir

    if args.threads:
        torch.set_num_threads(int(args.threads))
    device = resolve_device(args.device)
    model = SyncTalkModel.from_pretrained(args.model, models_dirs=args.models_dir, device=device)
    subject = SubjectDir(args.subject)
    clip = subject.load_clip()
    features = subject.load_audio_features()
    if args.frames:
        frames = split_frames(clip.num_frames, args.frames)[1].tolist()
    else:
        frames = model.subject.val_indices.tolist()
    with cli_progress("Rendering held-out frames") as on_step:
        result = evaluate_model(model, clip, features, frames, device=device, models_dirs=args.models_dir,
                                with_lpips=not args.no_lpips, with_lmd=not args.no_lmd, on_step=on_step)
    result["model"] = str(model.folder) if model.folder else model.name
    result["subject"] = str(subject.root)
    if args.json:
        write_json(args.json, result)
    head = result["head"]

    def fmt(value, unit=""):
        return "null" if value is None else f"{value:.4f}{unit}"

    print(f"{result['num_frames']} frames: PSNR {fmt(head['psnr'], ' dB')}  SSIM {fmt(head['ssim'])}  "
          f"LPIPS {fmt(head['lpips'])}  LMD {fmt(head['lmd'], ' px')}  (render {result['render_fps']} fps)")
    for note in result["notes"]:
        print(f"note: {note}")
    return 0
