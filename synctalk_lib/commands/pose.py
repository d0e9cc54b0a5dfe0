"""``pose``: stabilised head poses for a subject folder (``head_pose.npz`` + ``"pose"`` in report.json).

The same work is the ``pose`` stage of ``preprocess`` (``pipeline.preprocess.stabilize``); running it here keeps
the folder's stage log true, so a later ``preprocess`` reuses these poses.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

NAME = "pose"
HELP = "stabilise the head poses of a preprocessed subject folder (focal length, per-frame poses, bundle adjustment)"


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
    from synctalk_lib.pipeline import PreprocessSettings
    from synctalk_lib.pipeline.preprocessing import record_pose, stabilize
    from synctalk_lib.pose.stabilize import format_pose_report
    from synctalk_lib.subject import SubjectDir

    subject = SubjectDir(args.subject)
    settings = PreprocessSettings(flow=args.flow, pose_smoothness=args.pose_smoothness, device=args.device,
                                  focal_range=tuple(args.focal_range) if args.focal_range else None)
    pose = stabilize(subject, settings, args.models_dir)
    record_pose(subject, settings, pose)
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
