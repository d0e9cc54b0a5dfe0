"""``import-transforms``: original SyncTalk ``transforms_*.json`` files -> a HeadPose (``head_pose.npz``)."""
from __future__ import annotations

import argparse
from pathlib import Path

NAME = "import-transforms"
HELP = "read transforms_train.json / transforms_val.json (original SyncTalk layout) into head_pose.npz"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", metavar="DIR|transforms_train.json",
                        help="a folder holding transforms_train.json (and transforms_val.json), or one file")
    parser.add_argument("--val", default=None, metavar="transforms_val.json",
                        help="the second file when SOURCE is a file")
    parser.add_argument("--out", required=True, metavar="SUBJECT_DIR|HEAD_POSE.npz",
                        help="a subject folder (writes its head_pose.npz) or a .npz path")


def run(args: argparse.Namespace) -> int:
    from synctalk_lib.pose.camera import import_transforms
    from synctalk_lib.subject import SubjectDir

    pose = import_transforms(args.source, args.val)
    out = Path(args.out)
    path = out if out.suffix == ".npz" else SubjectDir(out).path(SubjectDir.HEAD_POSE)
    pose.save(path)
    print(f"{path}: {pose.num_frames} frames, {pose.width}x{pose.height}, focal {pose.focal:.2f} px")
    return 0
