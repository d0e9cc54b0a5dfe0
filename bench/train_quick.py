"""Benchmark: the ``quick`` preset on the reference clip, on CPU.

Prepares the subject folder (``preprocess`` steps + head pose) if it is missing, trains with the quick preset,
then measures on the held-out frames (300-330): PSNR / SSIM / LPIPS (null without its weights) / LMD at the clip's
size, and the render speed (frames per second, head rendered at the preset's resolution and composited at 512).
Prints one JSON object and writes it to ``--json``.

    python bench/train_quick.py --shared ../shared --work /tmp/quick --threads 2 [--photometric mse]
        [--set nerf.mask_mode=loss] [--iterations 2500]

Wall time depends on what else runs on the machine: the load average before and after, and the process's CPU
time, are reported next to the wall time (on an otherwise idle machine wall time ~ CPU time / threads).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def prepare_subject(video: Path, subject_dir: Path, models_dir: Path, cache_dir: Path) -> float:
    """Run preprocess (+ head pose when preprocess has no pose step yet); returns seconds."""
    from synctalk_lib.cli import main
    from synctalk_lib.subject import SubjectDir

    started = time.perf_counter()
    subject = SubjectDir(subject_dir)
    if not subject.path(SubjectDir.FACE_TRACK).is_file() or not subject.path(SubjectDir.AUDIO_FEATURES).is_file():
        code = main(["preprocess", str(video), "--out", str(subject_dir), "--models-dir", str(models_dir),
                     "--cache-dir", str(cache_dir)])
        if code != 0:
            raise SystemExit(f"preprocess failed ({code})")
    if not subject.path(SubjectDir.HEAD_POSE).is_file():
        from synctalk_lib.pose.stabilize import stabilize_head_pose

        pose = stabilize_head_pose(subject.load_clip(), subject.load_face_track(), models_dirs=[models_dir])
        pose.save(subject.path(SubjectDir.HEAD_POSE))
    return time.perf_counter() - started


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=Path(os.environ.get("SYNCTALK_SHARED", "../shared")))
    parser.add_argument("--work", type=Path, default=Path("/tmp/synctalk_bench_quick"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--iterations", type=int, default=0)
    parser.add_argument("--resolution", type=int, default=0)
    parser.add_argument("--photometric", choices=["l1", "mse"], default=None)
    parser.add_argument("--perceptual-loss", choices=["lpips", "none"], default="none",
                        help="lpips needs its weights (not available offline here)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--render-frames", type=int, default=50, help="frames rendered for the fps measurement")
    parser.add_argument("--tag", default="", help="name of this run in the output")
    parser.add_argument("--json", type=Path, default=None)
    return parser.parse_args()


def main() -> int:
    args = parse_arguments()
    import torch

    from synctalk_lib.commands.train import parse_overrides
    from synctalk_lib.pipeline.evaluation import evaluate_model
    from synctalk_lib.nerf.inference import render_frames
    from synctalk_lib.nerf.trainer import train_subject
    from synctalk_lib.subject import SubjectDir

    torch.set_num_threads(args.threads)
    video = args.shared / "data" / "may_short.mp4"
    models_dir = args.shared / "models"
    subject_dir = args.work / "subject"
    prep_seconds = prepare_subject(video, subject_dir, models_dir, args.work / "cache")
    subject = SubjectDir(subject_dir).load_subject()
    clip, track, pose, audio = subject.clip, subject.track, subject.pose, subject.features
    overrides = parse_overrides(args.set)
    if args.photometric:
        overrides["photometric"] = args.photometric
    device = torch.device(args.device)

    load_before = os.getloadavg()
    cpu0, wall0 = cpu_seconds(), time.perf_counter()
    lines: list[str] = []

    def status(line: str) -> None:
        lines.append(line)
        print(line, file=sys.stderr, flush=True)

    model, summary = train_subject(clip, track, pose, audio, preset=args.preset, name=args.tag or "bench",
                                   device=device, iterations=args.iterations, resolution=args.resolution,
                                   perceptual_loss=args.perceptual_loss, on_status=status, **overrides)
    train_wall, train_cpu = time.perf_counter() - wall0, cpu_seconds() - cpu0
    load_after = os.getloadavg()
    model.save_pretrained(args.work / f"model{('_' + args.tag) if args.tag else ''}")

    evaluation = evaluate_model(model, subject, device=device,
                                models_dirs=[models_dir]).to_dict(per_frame=False)
    count = min(args.render_frames, audio.num_frames)
    started = time.perf_counter()
    for _ in render_frames(model, audio, count=count, device=device, as_uint8=True):
        pass
    render_seconds = time.perf_counter() - started

    result = {
        "tag": args.tag, "preset": args.preset, "device": str(device), "threads": args.threads,
        "train_wall_seconds": round(train_wall, 1), "train_cpu_seconds": round(train_cpu, 1),
        "load_average_before": [round(v, 2) for v in load_before],
        "load_average_after": [round(v, 2) for v in load_after],
        "prepare_seconds": round(prep_seconds, 1), "steps": summary["steps"],
        "seconds_per_step": summary["seconds_per_step"], "occupancy_seconds": summary["occupancy_seconds"],
        "resolution": summary["resolution"], "photometric": summary["photometric"],
        "mask_mode": summary["mask_mode"], "final_losses": summary["final_losses"],
        "heldout_psnr_train_resolution": summary.get("heldout_psnr"),
        "heldout_512": evaluation["heldout"]["own"]["head"],
        "heldout_frames": len(evaluation["heldout"]["own"]["frames"]),
        "notes": evaluation["notes"],
        "render_fps": round(count / render_seconds, 3), "render_frames": count,
        "render_resolution": [model.render_height, model.render_width],
        "output_resolution": [clip.height, clip.width], "audio_encoder": audio.encoder_id,
        "torch": torch.__version__,
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
