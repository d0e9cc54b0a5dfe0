"""Benchmark: training, loading and rendering at real length (0.5-, 2- and 5-minute subjects) in bounded memory.

A long subject is the preprocessed reference clip repeated (frames, audio features, face track and head pose
tiled; the clip is written once into the clip cache), like a user's 3-5 minute video. For each length, each stage
runs in its own process so its peak memory (max RSS) is its own:

- ``train``: the quick preset for ``--steps`` steps (set-up = start until the first step is done, minus that
  step; seconds per step over the steps after ``--warmup``), saved as a model folder, with the final held-out
  evaluation (bounded: ``max_eval_frames`` sampled frames);
- ``load_render``: load the model folder (reference frames decoded once into the clip cache) and render
  ``--render-frames`` frames.

    python bench/scale_train.py --subject /tmp/may_subject --work /tmp/scale --minutes 0.5 2 5 --threads 2 \
        [--steps 60] [--write]

``--subject``: a subject folder of the reference clip (``python -m synctalk_lib preprocess
../shared/data/may_short.mp4 --out /tmp/may_subject --audio-encoder mel``). Prints one JSON object; ``--write``
puts the table in BENCHMARKS.md. The functions (``make_long_subject``, ``run_stage``, ``table``) are meant to be
folded into ``bench/scale.py`` beside the preprocess stages.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

FPS = 25.0


# ------------------------------------------------------------------------------------------ long subjects
def make_long_subject(short_dir: Path, minutes: float, out_dir: Path, cache_dir: Path) -> Path:
    """A subject folder of ``minutes`` of video: the short subject repeated (kept when it already exists)."""
    from synctalk_lib.media.clip_store import ClipWriter
    from synctalk_lib.subject import SubjectDir

    target = SubjectDir(out_dir)
    if target.path(SubjectDir.HEAD_POSE).is_file():
        return out_dir
    short = SubjectDir(short_dir).load_subject()
    n = int(round(minutes * 60 * FPS))
    rows = np.arange(n) % short.num_frames
    clip = short.clip
    with ClipWriter(cache_dir / f"long-{n}", height=clip.height, width=clip.width, fps=clip.fps) as writer:
        for start in range(0, n, 64):
            writer.append(clip.frames()[rows[start:start + 64]])
        long_clip = writer.finish(source_path=clip.source_path, source_size=clip.source_size, crop_box=clip.crop_box)
    track, pose, features = short.track, short.pose, short.features
    track = dataclasses.replace(track, landmarks=track.landmarks[rows], blendshapes=track.blendshapes[rows],
                                face_found=track.face_found[rows], transforms=track.transforms[rows],
                                expression=track.expression[rows])
    pose = dataclasses.replace(pose, c2w=pose.c2w[rows], reproj_error=pose.reproj_error[rows])
    features = dataclasses.replace(features, features=features.features[rows])
    target.root.mkdir(parents=True, exist_ok=True)
    target.save_clip_ref(long_clip, {"repeated_from": str(short_dir), "frames": n})
    track.save(target.path(SubjectDir.FACE_TRACK))
    target.save_audio_features(features)
    pose.save(target.path(SubjectDir.HEAD_POSE))
    return out_dir


# ------------------------------------------------------------------------------------------------- stages
def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: kilobytes


def stage_train(subject_dir: Path, model_dir: Path, steps: int, warmup: int, max_eval_frames: int = -1) -> dict:
    """Train the quick preset for ``steps`` steps; set-up and seconds per step from the step callback
    (``max_eval_frames`` >= 0 overrides the preset's held-out sample, e.g. to time a version without one)."""
    from synctalk_lib.pipeline.training import save_model
    from synctalk_lib.nerf.trainer import train_subject
    from synctalk_lib.subject import SubjectDir

    started = time.perf_counter()
    subject = SubjectDir(subject_dir).load_subject()
    stamps: list[float] = []
    overrides = {"max_eval_frames": max_eval_frames} if max_eval_frames >= 0 else {}
    model, summary = train_subject(subject.clip, subject.track, subject.pose, subject.features, preset="quick",
                                   iterations=steps, perceptual_loss="none", checkpoint_every=0,
                                   log_every=10**6, work_dir=None, on_step=lambda d, t: stamps.append(
                                       time.perf_counter()), **overrides)
    total = time.perf_counter() - started
    save_model(model, model_dir, summary, "quick")
    per_step = np.diff(stamps[warmup:])
    first_step = stamps[1] - stamps[0] if len(stamps) > 1 else 0.0
    scored = summary.get("eval_frames", max_eval_frames if max_eval_frames > 0 else None)
    return {"frames": subject.num_frames, "setup_s": round(stamps[0] - started - first_step, 2),
            "s_per_step": round(float(np.median(per_step)), 4), "s_per_step_mean": round(float(per_step.mean()), 4),
            "eval_s": summary.get("eval_seconds"), "eval_frames": scored,
            "heldout_psnr": summary.get("heldout_psnr"), "total_s": round(total, 1), "peak_mb": round(_peak_mb())}


def stage_load_render(model_dir: Path, cache_dir: Path, frames: int) -> dict:
    """Load the model folder (decoding its reference frames into the clip cache) and render ``frames`` frames."""
    from synctalk_lib.nerf.inference import render_frames
    from synctalk_lib.nerf.model_folder import SyncTalkModel
    from synctalk_lib.types import AudioFeatures

    started = time.perf_counter()
    model = SyncTalkModel.from_pretrained(model_dir, cache_dir=cache_dir)
    loaded = time.perf_counter()
    rng = np.random.default_rng(0)
    features = AudioFeatures(features=rng.normal(size=(frames, model.feature_dim)).astype(np.float32) * 0.1,
                             fps=model.subject.fps, encoder_id=model.encoder_id)
    count = 0
    for chunk in render_frames(model, features, batch_size=4, as_uint8=True):
        count += len(chunk.rgb)
    done = time.perf_counter()
    return {"frames": model.subject.num_frames, "load_s": round(loaded - started, 2),
            "render_s_per_frame": round((done - loaded) / max(count, 1), 3), "peak_mb": round(_peak_mb())}


def run_stage(args: list[str], threads: int) -> dict:
    """Run one stage of this script in its own process (its own peak memory) and return its JSON."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "SYNCTALK_QUIET": "1"}
    out = subprocess.run([sys.executable, __file__, "--stage", *args, "--threads", str(threads)], env=env,
                         capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"stage {args[0]} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------------------- report
def table(results: list[dict], machine: str, command: str) -> str:
    """The BENCHMARKS.md section."""
    short = results[0]["train"]["s_per_step"]
    lines = [
        "## Scale: training, loading and rendering 0.5- to 5-minute subjects",
        "",
        f"`{command}` — {machine}, {time.strftime('%Y-%m-%d')}. The reference clip repeated to each length "
        "(subject folder written once); each stage in its own process (peak = its max RSS).",
        "",
        "| length | frames | train set-up s | s/step (median) | vs shortest | eval s (frames) | train peak MB "
        "| load s | render s/frame | load+render peak MB |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        t, lr = r["train"], r["load_render"]
        lines.append(f"| {r['minutes']:g} min | {t['frames']} | {t['setup_s']} | {t['s_per_step']} | "
                     f"{t['s_per_step'] / short:.2f}x | {t['eval_s']} ({t['eval_frames']}) | {t['peak_mb']} | "
                     f"{lr['load_s']} | {lr['render_s_per_frame']} | {lr['peak_mb']} |")
    return "\n".join(lines) + "\n"


def write_benchmarks(section: str) -> None:
    path = REPO / "BENCHMARKS.md"
    text = path.read_text()
    title = section.splitlines()[0]
    if title in text:
        start = text.index(title)
        end = text.find("\n## ", start + len(title))
        text = text[:start] + section + (text[end + 1:] if end >= 0 else "")
    else:
        text = text.rstrip() + "\n\n" + section
    path.write_text(text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subject", type=Path, help="subject folder of the reference clip")
    parser.add_argument("--work", type=Path, default=Path("/tmp/synctalk_scale"))
    parser.add_argument("--minutes", type=float, nargs="+", default=[0.5, 2.0, 5.0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--render-frames", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-eval-frames", type=int, default=-1,
                        help="held-out frames of the final evaluation (default: the preset's)")
    parser.add_argument("--train-only", action="store_true", help="skip loading and rendering")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--write", action="store_true")
    parser.add_argument("--stage", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    if args.stage:
        kind, *rest = args.stage
        if kind == "train":
            result = stage_train(Path(rest[0]), Path(rest[1]), int(rest[2]), int(rest[3]), int(rest[4]))
        else:
            result = stage_load_render(Path(rest[0]), Path(rest[1]), int(rest[2]))
        print(json.dumps(result))
        return 0
    cache = args.work / "cache"
    results = []
    for minutes in args.minutes:
        subject = make_long_subject(args.subject, minutes, args.work / f"subject_{minutes:g}min", cache)
        model = args.work / f"model_{minutes:g}min"
        train = run_stage(["train", str(subject), str(model), str(args.steps), str(args.warmup),
                           str(args.max_eval_frames)], args.threads)
        if args.train_only:
            results.append({"minutes": minutes, "train": train})
            print(json.dumps(results[-1]), file=sys.stderr, flush=True)
            continue
        render = run_stage(["load_render", str(model), str(args.work / "render_cache"), str(args.render_frames)],
                           args.threads)
        results.append({"minutes": minutes, "train": train, "load_render": render})
        print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    machine = f"{platform.processor() or platform.machine()}, {args.threads} threads, load {os.getloadavg()[0]:.1f}"
    command = ("python bench/scale_train.py --subject SUBJECT --minutes "
               f"{' '.join(f'{m:g}' for m in args.minutes)} --steps {args.steps} --threads {args.threads}")
    print(json.dumps({"results": results, "machine": machine}))
    if args.json:
        args.json.write_text(json.dumps({"results": results, "machine": machine}))
    if args.train_only:
        return 0
    section = table(results, machine, command)
    print(section, file=sys.stderr)
    if args.write:
        write_benchmarks(section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
