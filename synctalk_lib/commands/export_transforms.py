"""``export-transforms``: a HeadPose -> the original SyncTalk ``transforms_train.json`` / ``transforms_val.json``."""
from __future__ import annotations

import argparse
from pathlib import Path

NAME = "export-transforms"
HELP = "write transforms_train.json / transforms_val.json (original SyncTalk layout) from head poses"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", metavar="SUBJECT_DIR|HEAD_POSE.npz",
                        help="a subject folder (its head_pose.npz) or a head pose file")
    parser.add_argument("--out", default=None, metavar="DIR",
                        help="folder for the two files (default: the subject folder / the file's folder)")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--val-frames", type=int, default=None, metavar="K",
                       help="the last K frames form the validation file (default: the original split, "
                            "train = first int(N * 10 / 11) frames)")
    group.add_argument("--val-list", default=None, metavar="I,J,...",
                       help="explicit validation frame numbers, comma separated")


def run(args: argparse.Namespace) -> int:
    from synctalk_lib.errors import InputError
    from synctalk_lib.pose.camera import export_transforms, split_frames
    from synctalk_lib.subject import SubjectDir
    from synctalk_lib.types import HeadPose

    source = Path(args.source)
    if source.is_dir():
        pose = SubjectDir(source).load_head_pose()
        folder = source
    else:
        pose = HeadPose.load(source)
        folder = source.parent
    val = args.val_frames
    if args.val_list:
        try:
            val = [int(v) for v in args.val_list.replace(" ", "").split(",") if v]
        except ValueError as exc:
            raise InputError(f"--val-list must be comma-separated frame numbers, got {args.val_list!r}") from exc
    train_path, val_path = export_transforms(pose, Path(args.out) if args.out else folder, val_frames=val)
    train, valid = split_frames(pose.num_frames, val)
    print(f"{train_path}: {len(train)} frames\n{val_path}: {len(valid)} frames\n"
          f"focal {pose.focal:.2f} px, cx {pose.cx:g}, cy {pose.cy:g}")
    return 0
