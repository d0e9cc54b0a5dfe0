"""Benchmark: output quality and lip sync on the reference clip, head-only and portrait.

Runs (or reuses) the chain on ``may_short.mp4`` — preprocess -> train (``--preset``, ``--iterations``) — then
``pipeline.evaluation.evaluate_model``:

* held-out frames 300-330 with the clip's own audio, its time-reversed stretch and silence: PSNR / SSIM / LPIPS
  (null without its weights) / LMD / jawOpen r / Laplacian-variance ratio / high-pass correlation, head and portrait;
* drives, head and portrait: espeak-ng voices (``--voices``: languages, speeds, pitches), the other speaker's real
  speech, the clip's own audio and silence: lip-sync proxy r (speech envelope vs jawOpen), reference leak,
  jawOpen mean / std, Laplacian ratio; next to the real clip's own values and its closed-mouth range.

Prints markdown tables; ``--write`` appends them to BENCHMARKS.md under a dated heading with the command and machine.

    python bench/quality.py --shared ../shared --work /tmp/quality --threads 1 [--write]
    python bench/quality.py --model M --subject S ...     # score an already trained model (no training)
    python bench/quality.py --from-json R.json --write    # a finished run's --json, printed / appended again

Finished stages in ``--work`` are reused (preprocess and training are pipeline stages).
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

TEXTS = {
    "en": "Hello, this is a short test of the talking head. Papa opens the window, and the bright morning light "
          "falls on the table. We will meet again next Tuesday at noon.",
    "de": "Guten Morgen, das ist ein kurzer Test des sprechenden Kopfes. Papa öffnet das Fenster, und das helle "
          "Licht fällt auf den Tisch. Wir sehen uns am Dienstag wieder.",
    "fr": "Bonjour, ceci est un court essai de la tête parlante. Papa ouvre la fenêtre, et la lumière du matin "
          "tombe sur la table. Nous nous reverrons mardi prochain.",
    "es": "Hola, esta es una breve prueba de la cabeza parlante. Papá abre la ventana, y la luz de la mañana cae "
          "sobre la mesa. Nos veremos el martes que viene.",
}
VOICES = "en-us:160:50,en-us:120:30,en-us:200:70,de:160:50,fr-fr:160:50,es:160:50"
"""espeak-ng voice:speed (words per minute):pitch (0-99) of the default voice set."""


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


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, check=True, capture_output=True,
                              text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def parse_voices(text: str) -> list[tuple[str, int, int]]:
    """``"en-us:160:50,de"`` -> ``[("en-us", 160, 50), ("de", 160, 50)]`` (speed and pitch default 160 / 50)."""
    voices = []
    for item in (v.strip() for v in text.split(",") if v.strip()):
        parts = item.split(":")
        voices.append((parts[0], int(parts[1]) if len(parts) > 1 else 160, int(parts[2]) if len(parts) > 2 else 50))
    return voices


def espeak_speech(folder: Path, voice: str, speed: int, pitch: int) -> tuple[str, Path]:
    """A WAV of the voice's language's sentence spoken by espeak-ng: ``(drive name, path)``."""
    name = f"espeak_{voice}_s{speed}_p{pitch}"
    path = folder / f"{name}.wav"
    if not path.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        text = TEXTS.get(voice.split("-")[0], TEXTS["en"])
        try:
            subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", str(path), text],
                           check=True, capture_output=True)
        except FileNotFoundError as exc:
            raise SystemExit("espeak-ng is not installed (apt-get install -y espeak-ng), or pass --voices '' and "
                             "--speech FILE") from exc
    return name, path


def prepare(args) -> tuple[object, object, dict]:
    """The subject and the trained model (given, or made / reused in ``--work``), and the training report."""
    from synctalk_lib import pipeline

    timings: dict[str, float] = {}
    started = time.perf_counter()
    if args.subject:
        subject = pipeline.load_subject(args.subject)
    else:
        subject = pipeline.preprocess(args.shared / "data" / "may_short.mp4", args.work / "subject",
                                      models_dirs=[args.shared / "models"], cache_dir=args.work / "cache")
    timings["preprocess_s"] = round(time.perf_counter() - started, 1)
    started = time.perf_counter()
    model_dir = args.model or args.work / "model"
    if args.model:
        model = pipeline.load_model(model_dir, device=args.device)
    else:
        model = pipeline.train(subject, model_dir, preset=args.preset, iterations=args.iterations,
                               perceptual_loss=args.perceptual_loss, device=args.device,
                               models_dirs=[args.shared / "models"], on_status=lambda line: print(line, flush=True))
    timings["train_s"] = round(time.perf_counter() - started, 1)
    report_path = Path(model_dir) / "train_report.json"
    train = json.loads(report_path.read_text()) if report_path.is_file() else {}
    train = {k: train.get(k) for k in ("steps", "preset", "heldout_psnr", "seconds")}
    return subject, model, {"timings": timings, "train": train, "model": str(model_dir),
                            "subject": str(subject.folder.root if subject.folder else args.subject)}


def speech_set(args, subject) -> dict:
    """Drives by name: espeak-ng voices, the other speaker, extra files, and the clip's own audio."""
    speech: dict = {}
    for voice, speed, pitch in parse_voices(args.voices):
        name, path = espeak_speech(args.work / "speech", voice, speed, pitch)
        speech[name] = path
    other = args.shared / "data" / "speech_other_speaker.wav"
    if args.other_speaker and other.is_file():
        speech["other_speaker"] = other
    for path in args.speech:
        speech[path.stem] = path
    if args.own_audio and subject.clip.has_audio:
        speech["own_audio"] = (subject.clip.audio_waveform(), subject.clip.sample_rate)
    return speech


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=Path(os.environ.get("SYNCTALK_SHARED", ROOT.parent / "shared")))
    parser.add_argument("--work", type=Path, default=Path("/tmp/synctalk_quality"))
    parser.add_argument("--model", type=Path, default=None, help="a trained model folder (skips preprocess/train)")
    parser.add_argument("--subject", type=Path, default=None, help="its subject folder (with --model)")
    parser.add_argument("--preset", default="quick", choices=["quick", "standard", "paper"])
    parser.add_argument("--iterations", type=int, default=0, help="training steps (0 = the preset's)")
    parser.add_argument("--perceptual-loss", default="none", choices=["none", "lpips", "auto"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--encoder", default=None,
                        help="audio encoder of a model trained on your own AVE weights: ave-file:PATH")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--voices", default=VOICES, help="espeak-ng voice:speed:pitch list ('' = none)")
    parser.add_argument("--speech", type=Path, action="append", default=[], help="more speech files (repeatable)")
    parser.add_argument("--no-other-speaker", dest="other_speaker", action="store_false",
                        help="leave out SHARED/data/speech_other_speaker.wav")
    parser.add_argument("--no-own-audio", dest="own_audio", action="store_false",
                        help="leave out the drive with the clip's own audio")
    parser.add_argument("--heldout-audio", default="own,reversed,silent")
    parser.add_argument("--max-frames", type=int, default=200, help="frames rendered per drive (and for silence)")
    parser.add_argument("--save-frames", type=Path, default=None, help="write a few output frames here as PNGs")
    parser.add_argument("--json", type=Path, default=None, help="also write all numbers here")
    parser.add_argument("--write", action="store_true", help="append the tables to BENCHMARKS.md")
    parser.add_argument("--from-json", type=Path, default=None,
                        help="print (and with --write append) the tables of a finished run's --json, without running")
    args = parser.parse_args()
    if args.from_json:
        return report(json.loads(args.from_json.read_text()), write=args.write)
    if args.model and not args.subject:
        parser.error("--model needs --subject (the subject folder it was trained on)")

    import torch

    from synctalk_lib.commands.evaluate import save_frames
    from synctalk_lib.pipeline.evaluation import evaluate_model
    from synctalk_lib.progress import cli_progress

    torch.set_num_threads(max(1, args.threads))
    args.work.mkdir(parents=True, exist_ok=True)
    subject, model, info = prepare(args)
    speech = speech_set(args, subject)
    started = time.perf_counter()
    evaluation = evaluate_model(model, subject, heldout_audio=[v for v in args.heldout_audio.split(",") if v],
                                speech=speech, silence=True, max_frames=args.max_frames, device=model.device,
                                models_dirs=[args.shared / "models"], samples=3 if args.save_frames else 0,
                                encoder=args.encoder, progress=cli_progress)
    info["timings"]["evaluate_s"] = round(time.perf_counter() - started, 1)
    if args.save_frames:
        save_frames(evaluation.samples, args.save_frames)
    result = {"command": "python bench/quality.py " + shlex.join(sys.argv[1:]), "machine": machine(),
              "date": datetime.date.today().isoformat(), "commit": git_commit(), "threads": args.threads,
              "speech": {name: "waveform" if isinstance(src, tuple) else str(src) for name, src in speech.items()},
              "evaluation": evaluation.to_dict(), **info}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))
    return report(result, write=args.write)


def report(result: dict, *, write: bool) -> int:
    """Print the tables (and with ``write`` append them to BENCHMARKS.md under a heading)."""
    from synctalk_lib.pipeline.evaluation import report_tables

    text = report_tables(result["evaluation"])
    print()
    print(text)
    print(json.dumps({k: result.get(k) for k in ("train", "timings")}, indent=1))
    for note in result["evaluation"].get("notes", []):
        print(f"note: {note}")
    if write:
        train, timings = result.get("train", {}), result.get("timings", {})
        heading = (f"\n## Quality baseline ({result['date']})\n\n"
                   f"`{result['command']}` at commit {result.get('commit')} on {result['machine']}: "
                   f"{train.get('preset')} preset, {train.get('steps')} steps, {result['threads']} thread(s); "
                   f"evaluation {timings.get('evaluate_s')} s. Drives: {', '.join(result['speech'])}, silence.\n\n")
        with open(ROOT / "BENCHMARKS.md", "a", encoding="utf-8") as fh:
            fh.write(heading + text + "\n")
        print("appended to BENCHMARKS.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
