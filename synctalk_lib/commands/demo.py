"""``demo --video VIDEO [--audio AUDIO] --out OUT.mp4``: the whole pipeline in one command.

preprocess (clip, audio features, face track, head pose) -> train (``quick`` on a CPU, ``standard`` on a GPU) ->
encode the driving audio -> render -> portrait blend -> an MP4 whose video and audio last as long as the driving
audio. Work goes to ``--work`` (a subject folder and a model folder); running it again reuses the finished stages
unless ``--force`` says otherwise. Ends with a summary of where the time went (also written next to the MP4 as JSON).
"""
from __future__ import annotations

import argparse
import json
import time
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
    parser.add_argument("--audio-encoder", default="auto", help="auto, ave, ave-file:PATH or mel")
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


def _perceptual_loss(choice: str, models_dirs) -> str:
    """``auto``: LPIPS when its weights load here, else train without it (and say so)."""
    if choice != "auto":
        return choice
    from synctalk_lib.errors import SyncTalkError
    from synctalk_lib.metrics.lpips import load_lpips

    try:
        load_lpips("alex", models_dirs)
    except SyncTalkError as exc:
        print(f"warning: training without the LPIPS perceptual loss ({str(exc).split(':')[0]}); "
              "put its weights in the models folder to use it")
        return "none"
    return "lpips"


def _run_command(argv: list[str]) -> None:
    from synctalk_lib.cli import build_parser
    from synctalk_lib.errors import SyncTalkError

    args = build_parser().parse_args(argv)
    code = int(args._run(args) or 0)
    if code != 0:
        raise SyncTalkError(f"stage '{argv[0]}' failed (exit code {code}); see the messages above")


def _common(args: argparse.Namespace) -> list[str]:
    extra: list[str] = []
    for folder in args.models_dir or []:
        extra += ["--models-dir", str(folder)]
    return extra


def preprocess(args: argparse.Namespace, subject: Path) -> None:
    argv = ["preprocess", str(args.video), "--out", str(subject), "--audio-encoder", args.audio_encoder,
            "--device", args.device, *_common(args)]
    if args.max_duration:
        argv += ["--max-duration", str(args.max_duration)]
    if args.cache_dir:
        argv += ["--cache-dir", str(args.cache_dir)]
    if args.force:
        argv.append("--force")
    _run_command(argv)


def _trained_already(model_dir: Path, settings: dict) -> bool:
    report = model_dir / "train_report.json"
    if not (model_dir / "config.json").is_file() or not report.is_file():
        return False
    try:
        return json.loads(report.read_text()).get("demo_settings") == settings
    except ValueError:
        return False


def train(args: argparse.Namespace, subject: Path, model_dir: Path, preset: str) -> bool:
    """Train unless an identical finished model is there; returns whether it trained."""
    settings = {"preset": preset, "iterations": args.iterations, "resolution": args.resolution,
                "perceptual_loss": args.perceptual_loss,
                "subject_report_mtime": (subject / "report.json").stat().st_mtime_ns}
    if not args.force and _trained_already(model_dir, settings):
        print(f"reusing the trained model in {model_dir}")
        return False
    argv = ["train", str(subject), "--out", str(model_dir), "--preset", preset, "--device", args.device,
            "--perceptual-loss", _perceptual_loss(args.perceptual_loss, args.models_dir), *_common(args)]
    if args.iterations:
        argv += ["--iterations", str(args.iterations)]
    if args.resolution:
        argv += ["--resolution", str(args.resolution)]
    if args.threads:
        argv += ["--threads", str(args.threads)]
    if (model_dir.with_name(model_dir.name + ".training")).is_dir() and not args.force:
        argv.append("--resume")
    _run_command(argv)
    report_path = model_dir / "train_report.json"
    report = json.loads(report_path.read_text())
    report["demo_settings"] = settings
    from synctalk_lib.paths import write_json

    write_json(report_path, report)
    return True


def render_and_blend(args: argparse.Namespace, subject_dir: Path, model_dir: Path) -> dict:
    """Encode the driving audio, render every frame and blend it into the reference frames, streaming to the MP4."""
    from synctalk_lib.audio.features import encode_audio
    from synctalk_lib.commands.render import encoder_for
    from synctalk_lib.commands.train import cli_progress, resolve_device
    from synctalk_lib.media.audio import load_audio
    from synctalk_lib.nerf.inference import render_frames
    from synctalk_lib.nerf.model_folder import SyncTalkModel
    from synctalk_lib.portrait.generate import generate_portrait_video
    from synctalk_lib.subject import SubjectDir

    subject = SubjectDir(subject_dir)
    device = resolve_device(args.device)
    model = SyncTalkModel.from_pretrained(str(model_dir), device=device)
    source = args.audio if args.audio is not None else subject.path(SubjectDir.AUDIO_WAV)
    wave, rate = load_audio(source)
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    with cli_progress("Encoding the driving audio") as on_step:
        features = encode_audio(wave, rate, fps=model.subject.fps, encoder=encoder_for(model, None),
                                models_dirs=args.models_dir, device=device, on_step=on_step)
    seconds["encode_audio"] = time.perf_counter() - started
    total = features.num_frames if not args.max_frames else min(args.max_frames, features.num_frames)
    if args.max_frames:  # keep the sound as long as the frames that are rendered
        wave = wave[:, :int(round(total / model.subject.fps * rate))]
    clip = subject.load_clip()
    full = None
    if args.full_resolution:
        from synctalk_lib.media.prepare import prepare_clip

        full = prepare_clip(clip.source_path, Path(args.cache_dir) if args.cache_dir else clip.root.parent,
                            fps=clip.fps, start_time=clip.start_time, max_duration=clip.duration, crop="none")
    started = time.perf_counter()
    with cli_progress("Rendering and blending") as on_step:
        chunks = render_frames(model, features, count=total, batch_size=4, device=device)
        result = generate_portrait_video(chunks, total, clip, subject.load_head_pose(), args.out,
                                         track=subject.load_face_track(), full_resolution=full, audio=wave,
                                         sample_rate=rate, preview_budget_bytes=0, on_step=on_step)
    seconds["render_and_blend"] = time.perf_counter() - started
    return {"frames": result.frames, "width": result.width, "height": result.height, "fps": result.fps,
            "seconds": seconds, "render_fps": result.frames / max(seconds["render_and_blend"], 1e-9)}


def run(args: argparse.Namespace) -> int:
    import torch

    from synctalk_lib.commands.train import resolve_device
    from synctalk_lib.errors import InputError
    from synctalk_lib.media.video_writer import video_duration
    from synctalk_lib.nerf.presets import resolve_preset
    from synctalk_lib.paths import write_json

    if not args.video.is_file():
        raise InputError(f"reference video not found: {args.video}")
    if args.audio is not None and not args.audio.is_file():
        raise InputError(f"driving audio not found: {args.audio}")
    if args.threads:
        torch.set_num_threads(int(args.threads))
    work = args.work or Path("synctalk_work") / args.video.stem
    subject, model_dir = work / "subject", work / "model"
    preset = resolve_preset(args.preset, resolve_device(args.device))
    timings: dict[str, float] = {}
    started = time.perf_counter()

    t = time.perf_counter()
    print(f"[1/3] preprocess {args.video} -> {subject}")
    preprocess(args, subject)
    timings["preprocess"] = time.perf_counter() - t

    t = time.perf_counter()
    print(f"[2/3] train ({preset} preset) -> {model_dir}")
    trained = train(args, subject, model_dir, preset)
    timings["train"] = time.perf_counter() - t

    t = time.perf_counter()
    print(f"[3/3] render + portrait blend -> {args.out}")
    result = render_and_blend(args, subject, model_dir)
    timings["render_and_blend"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - started

    video_s, audio_s = video_duration(args.out)
    summary = {"out": str(args.out), "preset": preset, "trained": trained, "video_seconds": video_s,
               "audio_seconds": audio_s, "seconds": timings, **{k: v for k, v in result.items() if k != "seconds"},
               "render_seconds": result["seconds"]}
    write_json(args.out.with_suffix(".json"), summary)
    print(f"wrote {args.out}: {result['frames']} frames {result['width']}x{result['height']} @ {result['fps']:g} fps, "
          f"video {video_s:.2f} s, audio {audio_s:.2f} s")
    print("time: " + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items())
          + ("" if trained else " (model reused)"))
    return 0
