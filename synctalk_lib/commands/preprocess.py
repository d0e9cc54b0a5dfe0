"""``preprocess VIDEO --out SUBJECT_DIR``: a reference video -> a subject folder (``pipeline.preprocess``).

Stages: load_video, audio_features, face_track, pose. A stage is reused when its files exist and the settings
recorded in report.json match (``--force`` redoes every stage, ``--redo STAGE`` one).
"""
from __future__ import annotations

import argparse
import json

NAME = "preprocess"
HELP = "prepare a subject folder from a reference video: clip, audio, audio features, face track, head pose"


def add_video_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--fps", type=float, default=25.0, help="frame rate of the clip (default 25)")
    parser.add_argument("--crop", choices=("face", "none"), default="face",
                        help="face: square crop around the head resized to --size (default); none: full frames")
    parser.add_argument("--size", type=int, default=512, help="side of the face crop in pixels (default 512)")
    parser.add_argument("--start", type=float, default=0.0, help="seconds to skip at the start of the video")
    parser.add_argument("--max-duration", type=float, default=0.0, help="seconds to keep; 0 = the whole video")


def add_audio_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--audio-encoder", default="auto", metavar="auto|own|ave|ave-file:PATH|mel",
                        help="audio features: the official audio-visual encoder (ave), one trained here on this "
                             "clip's own speech and lips (own, about 90 s on a CPU), your own AVE weights "
                             "(ave-file:PATH), the plain mel windows (mel, no weights), or auto (ave when its "
                             "weights are available, else mel with a warning). Default auto")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="where the audio encoder and the pose fit run (default auto)")


def add_face_arguments(parser: argparse.ArgumentParser) -> None:
    from synctalk_lib.face.capture import DEFAULT_SMOOTHING, SMOOTHING_CHOICES

    parser.add_argument("--max-gap", type=int, default=5,
                        help="longest run of frames without a face that is interpolated (default 5)")
    parser.add_argument("--smoothing", choices=SMOOTHING_CHOICES, default=DEFAULT_SMOOTHING,
                        help=f"temporal smoothing of landmarks and blendshapes (default {DEFAULT_SMOOTHING})")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from synctalk_lib.commands.pose import add_pose_arguments
    from synctalk_lib.pipeline.preprocessing import STAGES

    parser.add_argument("video", help="reference video of one person talking (3-5 minutes is best)")
    parser.add_argument("--out", required=True, help="subject folder to write (created if missing)")
    parser.add_argument("--models-dir", action="append", default=None,
                        help="folder with weights (face_landmarker.task, AVE); repeatable; "
                             "default $SYNCTALK_MODELS_DIR")
    parser.add_argument("--cache-dir", default=None, help="clip cache folder; default $SYNCTALK_CACHE_DIR")
    parser.add_argument("--force", action="store_true",
                        help="redo every stage even if its results exist (a decoded clip in the clip cache is "
                             "still reused while the video and the clip settings are unchanged)")
    names = [stage.name for stage in STAGES]
    parser.add_argument("--redo", action="append", default=[], choices=names, metavar="STAGE",
                        help=f"redo this stage (repeatable): {', '.join(names)}")
    add_video_arguments(parser)
    add_audio_arguments(parser)
    add_face_arguments(parser)
    add_pose_arguments(parser)


def settings_from(args: argparse.Namespace):
    """The ``PreprocessSettings`` the parsed options describe."""
    from synctalk_lib.pipeline import PreprocessSettings

    return PreprocessSettings(
        fps=args.fps, crop=args.crop, size=args.size, start_time=args.start, max_duration=args.max_duration,
        audio_encoder=args.audio_encoder, max_gap=args.max_gap, smoothing=args.smoothing, flow=args.flow,
        pose_smoothness=args.pose_smoothness, focal_range=tuple(args.focal_range) if args.focal_range else None,
        device=args.device)


def run(args: argparse.Namespace) -> int:
    from synctalk_lib import pipeline

    subject = pipeline.preprocess(args.video, args.out, settings_from(args), models_dirs=args.models_dir,
                                  cache_dir=args.cache_dir, force=args.force, redo=args.redo)
    report = subject.folder.read_report()
    summary = {key: report.get(key) for key in ("frames", "fps", "face_frames", "audio_seconds",
                                                 "audio_features_shape", "seconds", "run_seconds", "reused")}
    summary["blink_frames"] = report.get("face", {}).get("blink_frames")
    summary["encoder_id"] = report.get("audio_features", {}).get("encoder_id")
    summary["report"] = str(subject.folder.path(subject.folder.REPORT))
    print(json.dumps(summary, indent=2))
    return 0
