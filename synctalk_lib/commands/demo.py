"""``demo --video VIDEO [--audio AUDIO] --out OUT.mp4``: the whole pipeline in one command.

preprocess (clip, audio features, face track, head pose) -> train (``quick`` on a CPU, ``standard`` on a GPU) ->
encode the driving audio -> render -> portrait blend -> an MP4 whose video and audio last as long as the driving
audio. Work goes to ``--work`` (a subject folder and a model folder); running it again reuses the finished stages
unless ``--force`` says otherwise. Ends with a summary of where the time went (also written next to the MP4 as JSON).
"""
from __future__ import annotations

import argparse
from pathlib import Path

NAME = "demo"
HELP = "train a subject from a video and make it speak an audio file, end to end (preprocess, train, render, blend)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--video", type=Path, required=True, help="reference video of one person talking")
    parser.add_argument("--audio", type=Path, default=None,
                        help="driving speech (any audio or video file; default: the reference video's own sound)")
    parser.add_argument("--out", type=Path, required=True, help="MP4 to write")
    parser.add_argument("--work", type=Path, default=None,
                        help="folder for the subject and model (default: synctalk_work/<video name>)")
    parser.add_argument("--preset", choices=["auto", "quick", "standard", "paper"], default="auto",
                        help="training preset (auto: standard with a CUDA GPU, quick on a CPU)")
    parser.add_argument("--iterations", type=int, default=0, help="training steps (0 = the preset's)")
    parser.add_argument("--resolution", type=int, default=0, help="training resolution (0 = the preset's)")
    parser.add_argument("--audio-encoder", default="auto",
                        help="auto (default: the official ave when its weights are here, else own), own (trained "
                             "on the clip, about 90 s), ave, ave-file:PATH or mel")
    parser.add_argument("--perceptual-loss", choices=["auto", "lpips", "none"], default="auto",
                        help="fine-stage loss: lpips needs its weights; auto uses them when present, else none")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--max-duration", type=float, default=0.0, help="use only this many seconds of the video")
    parser.add_argument("--max-frames", type=int, default=0, help="render at most this many frames (0 = all)")
    parser.add_argument("--full-resolution", action="store_true",
                        help="paste into the full-resolution source video through the crop box")
    parser.add_argument("--force", action="store_true", help="redo every stage instead of reusing finished ones")
    parser.add_argument("--models-dir", action="append", default=None, help="models folder(s) for weights")
    parser.add_argument("--cache-dir", type=Path, default=None, help="clip cache folder")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")


def run(args: argparse.Namespace) -> int:
    import torch

    from synctalk_lib import pipeline
    from synctalk_lib.media.video_writer import video_duration
    from synctalk_lib.paths import write_json

    if args.threads:
        torch.set_num_threads(int(args.threads))
    result = pipeline.demo(args.video, args.out, audio=args.audio, work=args.work, preset=args.preset,
                           iterations=args.iterations, resolution=args.resolution, audio_encoder=args.audio_encoder,
                           perceptual_loss=args.perceptual_loss, device=args.device, max_duration=args.max_duration,
                           max_frames=args.max_frames, full_resolution=args.full_resolution, force=args.force,
                           models_dirs=args.models_dir, cache_dir=args.cache_dir)
    drive = result.drive
    video_s, audio_s = video_duration(args.out)
    summary = {"out": str(args.out), "preset": result.preset, "trained": result.trained, "video_seconds": video_s,
               "audio_seconds": audio_s, "seconds": result.seconds, "frames": drive.frames, "width": drive.width,
               "height": drive.height, "fps": drive.fps, "render_fps": drive.render_fps,
               "render_seconds": drive.seconds}
    write_json(args.out.with_suffix(".json"), summary)
    print(f"wrote {args.out}: {drive.frames} frames {drive.width}x{drive.height} @ {drive.fps:g} fps, "
          f"video {video_s:.2f} s, audio {audio_s:.2f} s")
    print("time: " + ", ".join(f"{k} {v:.1f} s" for k, v in result.seconds.items())
          + ("" if result.trained else " (model reused)"))
    return 0
