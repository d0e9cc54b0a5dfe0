"""``render MODEL_DIR --audio WAV --out OUT.mp4``: drive a trained subject with new speech, streamed to an MP4.

The audio is encoded with the encoder the model was trained with (``--encoder`` when it was a weights file), the
frames are rendered in chunks and written as they come (memory stays at one chunk), and the audio is muxed in.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from synctalk_lib.progress import cli_progress

NAME = "render"
HELP = "render a trained subject speaking an audio file into an MP4 (head over the reference frames)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", nargs="?", default=None,
                        help="model folder, or a name in the models folder (a Hub repo goes with --repo-id)")
    parser.add_argument("--repo-id", default=None, help="Hugging Face Hub repo (owner/name) of a shared model folder")
    parser.add_argument("--revision", default=None, help="Hub branch, tag or commit for --repo-id")
    parser.add_argument("--audio", type=Path, required=True, help="driving speech (any audio or video file)")
    parser.add_argument("--out", type=Path, required=True, help="MP4 to write")
    parser.add_argument("--encoder", default=None,
                        help="audio encoder (default: the one the model was trained with; ave-file:<path> models "
                             "need the path)")
    parser.add_argument("--expression", choices=["training", "neutral"], default="training",
                        help="replay the reference blinks/brows, or the subject's median expression")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or a torch device")
    parser.add_argument("--batch-size", type=int, default=4, help="frames per render call")
    parser.add_argument("--max-frames", type=int, default=0, help="render at most this many frames (0 = all)")
    parser.add_argument("--crf", type=int, default=18, help="x264 quality (lower = better, larger)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    parser.add_argument("--models-dir", action="append", default=None, help="models folder(s)")


def run(args: argparse.Namespace) -> int:
    import torch

    from synctalk_lib import pipeline
    from synctalk_lib.devices import resolve_device
    from synctalk_lib.media.video_writer import VideoWriter

    if args.threads:
        torch.set_num_threads(int(args.threads))
    device = resolve_device(args.device)
    if bool(args.model) == bool(args.repo_id):
        from synctalk_lib.errors import InputError

        raise InputError("give either a model folder / name or --repo-id (one of them)")
    model = pipeline.load_model(args.model, repo_id=args.repo_id, revision=args.revision,
                                models_dirs=args.models_dir, device=device)
    wave, rate = pipeline.load_speech(args.audio)
    started = time.perf_counter()
    with cli_progress("Encoding audio") as on_step:
        features = pipeline.encode(model, (wave, rate), encoder=args.encoder, device=device,
                                   models_dirs=args.models_dir, on_step=on_step)
    count = features.num_frames if not args.max_frames else min(args.max_frames, features.num_frames)
    encode_seconds = time.perf_counter() - started
    started = time.perf_counter()
    writer = VideoWriter(args.out, model.subject.fps, audio=wave, sample_rate=rate, crf=args.crf)
    try:
        with cli_progress("Rendering") as on_step:
            for chunk in pipeline.render(model, features, expression=args.expression, count=count,
                                         batch_size=args.batch_size, device=device, as_uint8=True, on_step=on_step):
                writer.write(chunk.rgb)
        writer.close()
    except BaseException:
        writer.abort()
        raise
    seconds = time.perf_counter() - started
    print(f"rendered {count} frames ({count / model.subject.fps:.2f} s) in {seconds:.1f} s "
          f"({count / max(seconds, 1e-9):.2f} fps; audio encoding {encode_seconds:.1f} s) -> {args.out}")
    return 0
