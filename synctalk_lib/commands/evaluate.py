"""``evaluate MODEL_DIR --subject SUBJECT_DIR --json OUT.json``: image and lip metrics on the held-out frames.

Renders the held-out frames (by default those the model was not trained on) with their own audio rows,
expression coefficients and poses (per-frame code row 0, like the original), composites them over each real
frame's background at the clip's size, and compares them with the real frames:

    {"head": {"psnr": dB, "ssim": 0..1, "lpips": AlexNet LPIPS or null when its weights are missing,
              "lmd": mouth landmark distance in pixels at 512}, "frames": [...], ...}

Portrait mode (on unless ``--no-portrait``) also blends each render into its ORIGINAL frame with the Portrait-Sync
blend (face-oval mask from the subject's face track, blurred, seam colour matched, neck gap filled) and scores that
against the same frame, like the original SyncTalk's ``--portrait`` evaluation: ``"portrait": {same keys}``.

``--audio SPEECH`` adds the lip-sync proxy for audio without ground-truth video (``synctalk_lib.metrics.lipsync``):
the frames rendered from SPEECH are measured for mouth opening (MediaPipe jawOpen) and correlated with SPEECH's
envelope; the real clip with its own audio gives the reference value::

    "lipsync": {"rendered": r, "reference": r_ref, "rendered_detail": {...}, "reference_detail": {...}, ...}

``score_frames`` computes the same four numbers for any rendered/real frame pairs.
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
    parser.add_argument("--no-portrait", action="store_true",
                        help="skip the portrait entry (renders blended into their original frames)")
    parser.add_argument("--audio", type=Path, default=None,
                        help="speech file: also compute the lip-sync proxy (audio envelope vs rendered mouth opening)"
                             " and its reference value on the real clip")
    parser.add_argument("--max-lag", type=int, default=2, help="lip-sync proxy: best lag searched within +-frames")
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


def portrait_frames(pred: np.ndarray, alpha: np.ndarray, real: np.ndarray, frames: list[int], clip, pose,
                    track=None, settings=None) -> np.ndarray:
    """Blend renders of ``frames`` into their own original frames (the Portrait-Sync blend ``drive`` uses).

    Args:
        pred: [F, H, W, 3] float32 0..1 renders. alpha: [F, H, W] their head opacity.
        real: [F, H, W, 3] float32 0..1 original frames the renders were made for.
        frames: their frame numbers in ``clip``; pose: the clip's HeadPose; track: its FaceTrack (None: the
            renderer's alpha is the mask).

    Returns:
        [F, H, W, 3] float32 0..1.
    """
    from synctalk_lib.portrait.blend import BlendSettings, blend_frame
    from synctalk_lib.portrait.generate import frame_masks

    settings = settings or BlendSettings()
    masks_of = frame_masks(clip, pose, track)
    return np.stack([blend_frame(pred[k], alpha[k], real[k], masks_of(j, alpha[k]), settings)
                     for k, j in enumerate(frames)]).astype(np.float32)


def evaluate_model(model, clip, features, frames: Iterable[int], *, device="cpu",
                   models_dirs: Iterable[Path | str] | None = None, with_lpips: bool = True,
                   with_lmd: bool = True, track=None, portrait: bool | None = None, on_step=None,
                   return_frames: bool = False) -> dict[str, Any]:
    """Render ``frames`` of the subject and score them against the real frames of ``clip``.

    The real clip's frames are used as the reference frames (backgrounds), so the only differences are the
    rendered head's. With ``portrait`` (default: when ``track`` is given) the renders are also blended into their
    original frames (face mask from ``track``'s landmarks, a ``FaceTrack`` of the clip; without a track the
    renderer's alpha is the mask) and scored the same way.

    Returns:
        {"head": {"psnr", "ssim", "lpips", "lmd"}, "portrait": {same} (with ``portrait``), "frames", "num_frames",
        "resolution", "render_resolution", "render_seconds", "render_fps", "per_frame" (head),
        "per_frame_portrait", "notes"}; with ``return_frames`` also "images": {"head": [F, H, W, 3] float32 renders
        over the backgrounds, "alpha": [F, H, W], "portrait": the blended frames (with ``portrait``)} (NumPy arrays,
        not JSON: pop it before writing the result).
    """
    from synctalk_lib.errors import InputError
    from synctalk_lib.nerf.inference import render_frames

    frames = [int(i) for i in frames]
    if not frames:
        raise InputError("there are no frames to evaluate (the model has no held-out frames; pass --frames)")
    subject = model.subject
    if (clip.num_frames, clip.height, clip.width) != (subject.num_frames, subject.height, subject.width):
        raise InputError(f"the subject clip ({clip.num_frames} frames {clip.width}x{clip.height}) is not the one "
                         f"the model was trained on ({subject.num_frames} frames {subject.width}x{subject.height})")
    subject.frames = clip  # the real frames as backgrounds, not the folder's re-encoded copy
    started = time.perf_counter()
    chunks = list(render_frames(model, features, frames=frames, device=device, on_step=on_step))
    pred = np.concatenate([c.rgb for c in chunks])
    seconds = time.perf_counter() - started
    real = np.stack([clip.frame(i) for i in frames]).astype(np.float32) / 255.0
    notes: list[str] = []
    scores = score_frames(pred, real, models_dirs=models_dirs, device=device, with_lpips=with_lpips,
                          with_lmd=with_lmd, notes=notes)
    per_frame = scores.pop("per_frame")
    result: dict[str, Any] = {"head": scores}
    if portrait or (portrait is None and track is not None):
        if track is not None and track.num_frames != clip.num_frames:
            raise InputError(f"the face track has {track.num_frames} frames but the clip has {clip.num_frames}; "
                             "use the subject's own face track")
        if track is None:
            notes.append("portrait: no face track given, the renderer's alpha was used as the blend mask")
        blended = portrait_frames(pred, np.concatenate([c.alpha for c in chunks]), real, frames, clip,
                                  subject.pose, track)
        portrait_notes: list[str] = []
        result["portrait"] = score_frames(blended, real, models_dirs=models_dirs, device=device,
                                          with_lpips=with_lpips, with_lmd=with_lmd, notes=portrait_notes)
        result["per_frame_portrait"] = result["portrait"].pop("per_frame")
        notes.extend(f"portrait: {note}" for note in portrait_notes)
        if return_frames:
            result["images"] = {"portrait": blended}
    result.update({"frames": frames, "num_frames": len(frames), "resolution": [clip.height, clip.width],
                   "render_resolution": [model.render_height, model.render_width],
                   "render_seconds": round(seconds, 2), "render_fps": round(len(frames) / max(seconds, 1e-9), 3),
                   "per_frame": per_frame, "notes": notes})
    if return_frames:
        result.setdefault("images", {}).update(head=pred, alpha=np.concatenate([c.alpha for c in chunks]))
    return result


def reference_lipsync(clip, *, models_dirs: Iterable[Path | str] | None = None, max_lag: int = 2,
                      max_frames: int = 0) -> dict[str, Any]:
    """The lip-sync proxy on the real clip with its own audio (what a perfect render would score).

    Returns:
        ``lipsync_correlation``'s dict (``r``, ``lag``, ``r_lag0``, ``frames``).
    """
    from synctalk_lib.errors import InputError
    from synctalk_lib.metrics.lipsync import audio_envelope, lipsync_correlation, mouth_opening

    if not clip.has_audio:
        raise InputError("the subject clip has no audio, so the lip-sync reference value cannot be measured")
    count = clip.num_frames if not max_frames else min(max_frames, clip.num_frames)
    envelope = audio_envelope(clip.audio_waveform(), clip.sample_rate, clip.fps, count)
    opening = mouth_opening((clip.frame(i) for i in range(count)), models_dirs, fps=clip.fps)
    return lipsync_correlation(envelope, opening, max_lag=max_lag)


def rendered_lipsync(model, wave: np.ndarray, sample_rate: int, *, encoder: str | None = None, device="cpu",
                     models_dirs: Iterable[Path | str] | None = None, max_lag: int = 2, max_frames: int = 0,
                     on_step=None) -> dict[str, Any]:
    """The lip-sync proxy on frames rendered from new speech.

    The speech is encoded with the model's own encoder, every frame is rendered (head over the reference frames,
    ping-pong poses, the training expressions), its mouth opening measured and correlated with the envelope.

    Args:
        wave: [C, T] (or [T]) float samples of the speech. sample_rate: its rate.
        encoder: ``encode_audio`` encoder override (needed for models trained on an AVE weights file).
        max_frames: render at most this many frames (0 = the whole speech).

    Returns:
        ``lipsync_correlation``'s dict plus "render_seconds".
    """
    from synctalk_lib.audio.features import encode_audio, encoder_for
    from synctalk_lib.metrics.lipsync import audio_envelope, lipsync_correlation, mouth_opening
    from synctalk_lib.nerf.inference import render_frames

    wave = np.asarray(wave, np.float32)
    wave = wave[None] if wave.ndim == 1 else wave
    fps = model.subject.fps
    features = encode_audio(wave, sample_rate, fps=fps, encoder=encoder_for(model.encoder_id, encoder),
                            models_dirs=models_dirs, device=device)
    count = features.num_frames if not max_frames else min(max_frames, features.num_frames)
    started = time.perf_counter()
    chunks = (chunk.rgb for chunk in render_frames(model, features, count=count, device=device, as_uint8=True,
                                                   on_step=on_step))
    opening = mouth_opening(chunks, models_dirs, fps=fps)
    seconds = time.perf_counter() - started
    envelope = audio_envelope(wave, sample_rate, fps, count)
    result = lipsync_correlation(envelope, opening, max_lag=max_lag)
    result["render_seconds"] = round(seconds, 2)
    return result


def run(args: argparse.Namespace) -> int:
    import torch

    from synctalk_lib.devices import resolve_device
    from synctalk_lib.progress import cli_progress
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
    track = None if args.no_portrait else subject.load_face_track()
    with cli_progress("Rendering held-out frames") as on_step:
        result = evaluate_model(model, clip, features, frames, device=device, models_dirs=args.models_dir,
                                with_lpips=not args.no_lpips, with_lmd=not args.no_lmd, track=track,
                                portrait=not args.no_portrait, on_step=on_step)
    if args.audio is not None:
        from synctalk_lib.media.audio import load_audio

        wave, rate = load_audio(args.audio)
        with cli_progress("Rendering the speech for the lip-sync proxy") as on_step:
            rendered = rendered_lipsync(model, wave, rate, device=device, models_dirs=args.models_dir,
                                        max_lag=args.max_lag, on_step=on_step)
        reference = reference_lipsync(clip, models_dirs=args.models_dir, max_lag=args.max_lag)
        result["lipsync"] = {"rendered": rendered["r"], "reference": reference["r"], "audio": str(args.audio),
                             "rendered_detail": rendered, "reference_detail": reference,
                             "measure": "Pearson r of audio RMS envelope vs MediaPipe jawOpen per frame, best lag "
                                        f"within +-{args.max_lag} frames"}
    result["model"] = str(model.folder) if model.folder else model.name
    result["subject"] = str(subject.root)
    if args.json:
        write_json(args.json, result)

    def fmt(value, unit=""):
        return "null" if value is None else f"{value:.4f}{unit}"

    for mode in ("head", "portrait"):
        if mode in result:
            scores = result[mode]
            print(f"{mode:8s} {result['num_frames']} frames: PSNR {fmt(scores['psnr'], ' dB')}  "
                  f"SSIM {fmt(scores['ssim'])}  LPIPS {fmt(scores['lpips'])}  LMD {fmt(scores['lmd'], ' px')}")
    print(f"render {result['render_fps']} fps")
    if "lipsync" in result:
        lip = result["lipsync"]
        print(f"lip-sync proxy (audio envelope vs jawOpen, r): rendered {fmt(lip['rendered'])}  "
              f"reference (real clip) {fmt(lip['reference'])}")
    for note in result["notes"]:
        print(f"note: {note}")
    return 0
