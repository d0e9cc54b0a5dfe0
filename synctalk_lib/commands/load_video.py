"""``load-video``: prepare a video like the LoadReferenceVideo node and print a JSON report."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

NAME = "load-video"
HELP = "decode a video into the clip cache (fps, crop, audio in sync) like LoadReferenceVideo; print a JSON report"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("video", help="video file")
    parser.add_argument("--fps", type=float, default=25.0, help="output frame rate (default 25)")
    parser.add_argument("--start", type=float, default=0.0, help="seconds to skip at the beginning")
    parser.add_argument("--max-duration", type=float, default=0.0, help="seconds to keep; 0 = whole video")
    parser.add_argument("--crop", choices=("face", "none"), default="face",
                        help="face: square face crop resized to --size; none: full frame at native size")
    parser.add_argument("--size", type=int, default=512, help="side of the face crop in pixels (default 512)")
    parser.add_argument("--models-dir", action="append", default=None,
                        help="folder with face_landmarker.task (repeatable); default $SYNCTALK_MODELS_DIR")
    parser.add_argument("--cache-dir", default=None, help="clip cache folder; default $SYNCTALK_CACHE_DIR")
    parser.add_argument("--max-cache-gb", type=float, default=None,
                        help="refuse clips that would take more than this many GB in the cache")
    parser.add_argument("--preview-mb", type=int, default=0,
                        help="also build the node's IMAGE preview within this many MB and report its size")


def _audio_samples(clip) -> int:
    import numpy as np

    return int(np.load(clip.root / clip.AUDIO_FILE, mmap_mode="r").shape[1])  # header only, no samples read


def run(args: argparse.Namespace) -> int:
    from synctalk_lib import paths
    from synctalk_lib.media.prepare import clip_cache_path, load_cached_clip, prepare_clip

    cache_dir = Path(args.cache_dir) if args.cache_dir else paths.default_cache_dir()
    models_dirs = args.models_dir or [paths.default_models_dir()]
    settings = dict(fps=args.fps, start_time=args.start, max_duration=args.max_duration, crop=args.crop,
                    size=args.size)
    started = time.perf_counter()
    was_cached = load_cached_clip(clip_cache_path(args.video, cache_dir, **settings)) is not None
    max_bytes = None if args.max_cache_gb is None else int(args.max_cache_gb * 1e9)

    def warn(message: str) -> None:
        print(f"note: {message}", file=sys.stderr)

    clip = prepare_clip(args.video, cache_dir, models_dirs=models_dirs, max_cache_bytes=max_bytes, warn=warn,
                        **settings)
    report = {
        "frames": clip.num_frames, "fps": clip.fps, "width": clip.width, "height": clip.height,
        "sample_rate": clip.sample_rate, "audio_channels": clip.audio_channels,
        "audio_seconds": _audio_samples(clip) / clip.sample_rate if clip.has_audio else 0.0,
        "crop_box": list(clip.crop_box) if clip.crop_box else None,
        "source": clip.source_path, "source_size": list(clip.source_size) if clip.source_size else None,
        "start_time": clip.start_time, "notes": list(clip.notes), "cache_path": str(clip.root),
        "cached": was_cached,
    }
    if args.preview_mb:
        from synctalk_lib.media.preview import image_preview

        images, warning = image_preview(clip, args.preview_mb * 2**20)
        report["preview"] = {"shape": list(images.shape), "warning": warning}
        del images
    report["seconds"] = round(time.perf_counter() - started, 3)
    print(json.dumps(report, indent=2))
    return 0
