"""Benchmark: output quality on the reference clip, head-only vs portrait, plus the lip-sync proxy.

Runs the whole chain on ``may_short.mp4``: preprocess -> train (``--preset``, ``--iterations``) -> ``evaluate`` on
the held-out frames 300-330 (PSNR / SSIM / LPIPS or null / LMD for the head render and for the portrait blend into
the original frames) -> the lip-sync proxy (Pearson r of the audio envelope with MediaPipe jawOpen) on frames
rendered from the clip's own audio and from an espeak-ng speech file, next to the real clip's reference value.
Prints a markdown table; ``--write`` appends it to BENCHMARKS.md under a heading with the command, machine and date.

    python bench/quality.py --shared ../shared --work /tmp/quality --iterations 1500 --threads 1 [--write]

Finished stages in ``--work`` are reused (subject folder; the model with ``--reuse-model``). A finished run's
``--json`` can be printed / appended again without rerunning: ``python bench/quality.py --from-json R.json --write``.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SENTENCE = "Hello, this is a short test of the talking head. Papa opens the window."


def machine() -> str:
    """CPU model and core count (or the GPU name when CUDA is used)."""
    import torch

    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)} (CUDA)"
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores, CPU"


def make_speech(path: Path, text: str) -> Path:
    """A speech file from espeak-ng (16 kHz-ish mono WAV)."""
    if not path.is_file():
        try:
            subprocess.run(["espeak-ng", "-w", str(path), text], check=True, capture_output=True)
        except FileNotFoundError as exc:
            raise SystemExit("espeak-ng is not installed (apt-get install espeak-ng), or pass --speech FILE") from exc
    return path


def run_cli(args: list[str]) -> None:
    from synctalk_lib.cli import main

    print("$ python -m synctalk_lib " + shlex.join(args), flush=True)
    code = main(args)
    if code != 0:
        raise SystemExit(f"command failed with exit code {code}")


def fmt(value, digits: int = 3) -> str:
    return "null" if value is None else f"{value:.{digits}f}"


def table(result: dict) -> str:
    ev, lip = result["evaluate"], result["lipsync"]
    rows = ["| mode (held-out frames 300-330) | PSNR dB | SSIM | LPIPS | LMD px |", "|---|---|---|---|---|"]
    for mode in ("head", "portrait"):
        s = ev[mode]
        rows.append(f"| {mode} | {fmt(s['psnr'], 2)} | {fmt(s['ssim'], 4)} | {fmt(s['lpips'], 4)} | "
                    f"{fmt(s['lmd'], 2)} |")
    rows += ["", "| lip-sync proxy (r: audio RMS envelope vs jawOpen, best lag within +-2 frames) | r | lag | "
                 "r at lag 0 | frames |", "|---|---|---|---|---|"]
    for label, key in (("real clip, own audio (reference)", "reference"),
                       ("rendered, clip's own audio", "rendered_own"), ("rendered, espeak-ng speech", "rendered_speech")):
        d = lip[key]
        rows.append(f"| {label} | {fmt(d['r'])} | {d['lag']} | {fmt(d['r_lag0'])} | {d['frames']} |")
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=Path(os.environ.get("SYNCTALK_SHARED", ROOT.parent / "shared")))
    parser.add_argument("--work", type=Path, default=Path("/tmp/synctalk_quality"))
    parser.add_argument("--preset", default="quick", choices=["quick", "standard", "paper"])
    parser.add_argument("--iterations", type=int, default=1500, help="training steps (0 = the preset's)")
    parser.add_argument("--perceptual-loss", default="none", choices=["none", "lpips"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--speech", type=Path, default=None, help="speech file (default: made with espeak-ng)")
    parser.add_argument("--own-audio-frames", type=int, default=75,
                        help="frames rendered from the clip's own audio for the proxy (0 = all 331)")
    parser.add_argument("--reuse-model", action="store_true", help="reuse WORK/model when it exists")
    parser.add_argument("--json", type=Path, default=None, help="also write all numbers here")
    parser.add_argument("--write", action="store_true", help="append the table to BENCHMARKS.md")
    parser.add_argument("--from-json", type=Path, default=None,
                        help="print (and with --write append) the table of a finished run's --json, without running")
    args = parser.parse_args()
    if args.from_json:
        return report(json.loads(args.from_json.read_text()), write=args.write)

    import torch

    torch.set_num_threads(max(1, args.threads))
    video = args.shared / "data" / "may_short.mp4"
    models_dir = args.shared / "models"
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    subject_dir, model_dir = work / "subject", work / "model"
    timings: dict[str, float] = {}

    started = time.perf_counter()
    run_cli(["preprocess", str(video), "--out", str(subject_dir), "--models-dir", str(models_dir),
             "--cache-dir", str(work / "cache"), "--audio-encoder", "mel"])
    timings["preprocess_s"] = round(time.perf_counter() - started, 1)

    started = time.perf_counter()
    if not (args.reuse_model and (model_dir / "train_report.json").is_file()):
        run_cli(["train", str(subject_dir), "--out", str(model_dir), "--preset", args.preset, "--iterations",
                 str(args.iterations), "--perceptual-loss", args.perceptual_loss, "--val-frames", "300:331",
                 "--threads", str(args.threads), "--device", args.device, "--models-dir", str(models_dir)])
    timings["train_s"] = round(time.perf_counter() - started, 1)
    train_report = json.loads((model_dir / "train_report.json").read_text())

    speech = args.speech or make_speech(work / "speech.wav", SENTENCE)
    started = time.perf_counter()
    eval_json = work / "evaluate.json"
    run_cli(["evaluate", str(model_dir), "--subject", str(subject_dir), "--frames", "300:331", "--audio", str(speech),
             "--json", str(eval_json), "--device", args.device, "--threads", str(args.threads),
             "--models-dir", str(models_dir)])
    evaluation = json.loads(eval_json.read_text())
    timings["evaluate_s"] = round(time.perf_counter() - started, 1)

    # The proxy on frames rendered from the clip's own audio (the training audio, so an upper bound for new speech).
    from synctalk_lib.commands.evaluate import rendered_lipsync
    from synctalk_lib.devices import resolve_device
    from synctalk_lib.nerf.model_folder import SyncTalkModel
    from synctalk_lib.subject import SubjectDir

    started = time.perf_counter()
    device = resolve_device(args.device)
    model = SyncTalkModel.from_pretrained(str(model_dir), models_dirs=[models_dir], device=device)
    clip = SubjectDir(subject_dir).load_clip()
    own = rendered_lipsync(model, clip.audio_waveform(), clip.sample_rate, device=device, models_dirs=[models_dir],
                           max_frames=args.own_audio_frames)
    timings["own_audio_lipsync_s"] = round(time.perf_counter() - started, 1)

    lip = evaluation["lipsync"]
    result = {
        "command": "python bench/quality.py " + shlex.join(sys.argv[1:]), "machine": machine(),
        "date": datetime.date.today().isoformat(), "preset": args.preset, "threads": args.threads,
        "perceptual_loss": args.perceptual_loss,
        "evaluate": {"head": evaluation["head"], "portrait": evaluation["portrait"]},
        "lipsync": {"reference": lip["reference_detail"], "rendered_own": own,
                    "rendered_speech": lip["rendered_detail"]},
        "train": {k: train_report.get(k) for k in ("steps", "preset", "heldout_psnr", "seconds")},
        "speech": str(speech), "timings": timings, "notes": evaluation.get("notes", []),
        "render_fps_heldout": evaluation.get("render_fps"),
    }
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return report(result, write=args.write)


def report(result: dict, *, write: bool) -> int:
    """Print the table (and with ``write`` append it to BENCHMARKS.md under a heading)."""
    text = table(result)
    print()
    print(text)
    print(json.dumps({k: result[k] for k in ("train", "timings", "notes")}, indent=1))
    if write:
        timings = result["timings"]
        heading = (f"\n## Quality: head-only vs portrait, lip-sync proxy ({result['date']})\n\n"
                   f"`{result['command']}` on {result['machine']}: {result['preset']} preset, "
                   f"{result['train']['steps']} steps, perceptual loss {result['perceptual_loss']}, "
                   f"{result['threads']} thread(s); train {timings['train_s']} s, evaluate {timings['evaluate_s']} s "
                   f"(held-out render {result['render_fps_heldout']} fps). Speech: espeak-ng \"{SENTENCE}\".\n\n")
        with open(ROOT / "BENCHMARKS.md", "a", encoding="utf-8") as fh:
            fh.write(heading + text + "\n")
        print("appended to BENCHMARKS.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
