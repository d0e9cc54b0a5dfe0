"""``pose``: stabilised head poses for a subject folder (``head_pose.npz`` + ``"pose"`` in report.json).

The same work is the ``pose`` step of ``preprocess``; ``run_pose_step`` / ``pose_settings`` /
``add_pose_arguments`` below are what that step list uses.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

NAME = "pose"
HELP = "stabilise the head poses of a preprocessed subject folder (focal length, per-frame poses, bundle adjustment)"

REPORT_KEYS = ("focal", "raw", "adjusted", "seconds")


# ------------------------------------------------------------------------------------------- shared options
def add_pose_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the pose stage (also added to ``preprocess``)."""
    parser.add_argument("--flow", choices=("opencv", "raft-small"), default="opencv",
                        help="optical flow for the dense keypoints: opencv (no weights, default) or raft-small "
                             "(raft-small.pth; slow on a CPU)")
    parser.add_argument("--pose-smoothness", type=float, default=0.0, metavar="S",
                        help="temporal smoothness prior of the bundle adjustment (0 = off, default; 1-3 removes "
                             "jitter the images cannot; high values lag behind fast head turns)")
    parser.add_argument("--focal-range", type=float, nargs=2, default=None, metavar=("MIN", "MAX"),
                        help="focal lengths in pixels to search (default 0.8 to 5 times the frame's longer side)")


def pose_settings(args: argparse.Namespace) -> dict[str, Any]:
    return {"flow": args.flow, "smoothness": float(args.pose_smoothness),
            "focal_range": list(args.focal_range) if args.focal_range else None}


def compute_pose(subject, args: argparse.Namespace, models_dirs, *, clip=None, on_step=None):
    """Stabilise the poses of ``subject`` (a ``SubjectDir``), save ``head_pose.npz``; returns the ``HeadPose``."""
    from synctalk_lib.pose.stabilize import stabilize_head_pose

    clip = clip if clip is not None else subject.load_clip()
    track = subject.load_face_track()
    pose = stabilize_head_pose(clip, track, flow=args.flow, models_dirs=models_dirs,
                               focal_range=tuple(args.focal_range) if args.focal_range else None,
                               smoothness=float(args.pose_smoothness), device=getattr(args, "device", "auto"),
                               on_step=on_step)
    pose.save(subject.path(subject.HEAD_POSE))
    return pose


def report_entry(pose) -> dict[str, Any]:
    """``{"pose": {"focal", "raw", "adjusted", "seconds", ...}}`` for report.json."""
    return {"pose": pose.report()}


# --------------------------------------------------------------------------------------- the preprocess step
def run_pose_step(ctx) -> dict[str, Any]:
    """``preprocess`` step: writes head_pose.npz and returns the report.json entries."""
    with ctx.progress("Stabilizing head pose") as on_step:
        pose = compute_pose(ctx.subject, ctx.args, ctx.models_dirs, clip=ctx.clip(), on_step=on_step)
    return report_entry(pose)


def pose_step_settings(ctx) -> dict[str, Any]:
    """What the pose step's result depends on: the clip, the face track's capture settings and the options."""
    return _step_settings(ctx.clip_key(), ctx.report, ctx.args)


def _step_settings(clip_key: str, report: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    face = report.get("steps", {}).get("face_track", {}).get("settings")
    return {"clip": clip_key, "face_track": face, **pose_settings(args)}


# ------------------------------------------------------------------------------------------------------ CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("subject", metavar="SUBJECT_DIR",
                        help="subject folder written by preprocess (needs its clip and face_track.npz)")
    add_pose_arguments(parser)
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="default auto")
    parser.add_argument("--models-dir", action="append", default=None, metavar="DIR",
                        help="models folder(s) with face_landmarker.task and raft-small.pth (repeatable)")
    parser.add_argument("--preview", default=None, metavar="PNG",
                        help="also write a preview image (4 frames with pose axes and the projected template)")
    parser.add_argument("--json", action="store_true", help="print the pose report as JSON")


def run(args: argparse.Namespace) -> int:
    from synctalk_lib.paths import default_models_dir
    from synctalk_lib.pose.stabilize import format_pose_report
    from synctalk_lib.subject import SubjectDir

    subject = SubjectDir(args.subject)
    models_dirs = [Path(p) for p in (args.models_dir or [default_models_dir()])]
    pose = compute_pose(subject, args, models_dirs)
    report = subject.read_report()
    report.update(report_entry(pose))
    if "steps" in report:  # keep preprocess's bookkeeping true: its pose step now has these settings
        clip_key = Path(subject.clip_ref()["clip_root"]).name
        report["steps"]["pose"] = {"settings": _step_settings(clip_key, report, args),
                                   "outputs": [subject.HEAD_POSE]}
        report.setdefault("seconds", {})["pose"] = pose.report()["seconds"]
    subject.write_report(report)
    if args.preview:
        _write_preview(subject.load_clip(), pose, Path(args.preview))
    print(json.dumps(pose.report(), indent=2) if args.json else format_pose_report(pose))
    return 0


def _write_preview(clip, pose, path: Path) -> None:
    import numpy as np

    from synctalk_lib.errors import require
    from synctalk_lib.paths import atomic_path
    from synctalk_lib.pose.preview import draw_pose_preview

    cv2 = require("cv2", "Head pose preview", "opencv-contrib-python")
    images = (draw_pose_preview(clip, pose) * 255.0 + 0.5).astype(np.uint8)
    sheet = np.concatenate(list(images), axis=1)
    ok, encoded = cv2.imencode(path.suffix or ".png", cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    if not ok:
        raise OSError(f"could not encode the preview as {path.suffix or '.png'}")
    with atomic_path(path) as tmp:
        tmp.write_bytes(encoded.tobytes())
