"""Time and peak memory of ``preprocess`` (and each of its stages) on long clips made from the reference clip.

    SYNCTALK_SHARED=/work/shared nice -n 10 python bench/scale.py [--minutes 0.5 2 5] [--work DIR]
        [--stages load_video,audio_features,face_track,pose] [--json R.json] [--write]
    python bench/scale.py --from-json R.json [--write]

For each length the reference clip (``may_short.mp4``, 13.24 s) is repeated into ``WORK/may_<m>min.mp4`` (its H.264
and AAC packets copied with shifted timestamps: seconds, no re-encoding) and cut to the exact length by
``--max-duration``. Every measurement is a separate child process, so its peak resident memory (``ru_maxrss`` of
that child alone) is the stage's own:

- ``preprocess``: the whole CLI run on a fresh subject folder and clip cache (wall time, peak memory);
- one row per stage: ``load-video`` into a fresh cache for ``load_video``, and ``preprocess --redo STEP`` on the
  finished subject for the others (peak memory of the process that ran only that step; its seconds from
  report.json).

More stages (training, loading + rendering) are one ``Stage`` each in ``STAGES``: a name and a function that
returns the command line and reads the stage's seconds afterwards.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CLIP_SECONDS = 331 / 25.0


@dataclass
class Run:
    """What every stage may use: the work folder of one clip length and the paths around it."""

    video: Path
    seconds: float
    work: Path
    models: Path
    options: list[str]
    """Options every preprocess run gets (``--max-duration``, ``--audio-encoder``, ...)."""

    @property
    def subject(self) -> Path:
        return self.work / "subject"

    @property
    def cache(self) -> Path:
        return self.work / "cache"

    def preprocess(self, *extra: str) -> list[str]:
        return ["preprocess", str(self.video), "--out", str(self.subject), "--cache-dir", str(self.cache),
                "--models-dir", str(self.models), *self.options, *extra]

    def report_seconds(self, step: str) -> float | None:
        report = json.loads((self.subject / "report.json").read_text())
        return report.get("seconds", {}).get(step)


@dataclass(frozen=True)
class Stage:
    """One measured child process: ``command(run)`` gives its ``python -m synctalk_lib`` arguments,
    ``seconds(run, wall)`` the stage's time."""

    name: str
    command: Callable[[Run], list[str]]
    seconds: Callable[[Run, float], float | None]


def _redo(step: str) -> Stage:
    return Stage(step, lambda run: run.preprocess("--redo", step), lambda run, _wall: run.report_seconds(step))


def _load_video_command(run: Run) -> list[str]:
    fresh = run.work / "cache_load"
    shutil.rmtree(fresh, ignore_errors=True)
    options = [o for o in run.options if not o.startswith("--audio")]
    return ["load-video", str(run.video), "--cache-dir", str(fresh), "--models-dir", str(run.models),
            *_only(options, "--max-duration")]


def _only(options: list[str], name: str) -> list[str]:
    i = options.index(name) if name in options else -1
    return options[i:i + 2] if i >= 0 else []


STAGES: dict[str, Stage] = {
    "load_video": Stage("load_video", _load_video_command, lambda _run, wall: wall),
    "audio_features": _redo("audio_features"),
    "face_track": _redo("face_track"),
    "pose": _redo("pose"),
}


# ------------------------------------------------------------------------------------------------- the clips
def repeat_clip(source: Path, target: Path, seconds: float) -> Path:
    """``source`` played back to back until ``seconds`` are covered, as one MP4.

    The H.264 packets are copied with shifted timestamps (no re-encoding: seconds for minutes of video); the audio
    is decoded once, repeated and encoded again as AAC (its packets overlap at the joins, so they cannot be copied).
    """
    import math

    import av
    import numpy as np

    from synctalk_lib.media.audio import decode_audio_stream

    if target.is_file():
        return target
    repeats = math.ceil(seconds / CLIP_SECONDS - 1e-9)
    tmp = target.with_suffix(".tmp.mp4")
    with av.open(str(source)) as src:
        wave, rate = decode_audio_stream(src, src.streams.audio[0])
    per_clip = round(CLIP_SECONDS * rate)
    wave = np.tile(wave[:, :per_clip], (1, repeats)).astype(np.float32)
    with av.open(str(source)) as src, av.open(str(tmp), "w") as out:
        video = src.streams.video[0]
        out_video = out.add_stream_from_template(template=video)
        out_audio = out.add_stream("aac", rate=rate, layout="mono" if wave.shape[0] == 1 else "stereo")
        length = round(CLIP_SECONDS / video.time_base)
        for r in range(repeats):
            src.seek(0)
            for packet in src.demux(video):
                if packet.dts is None:
                    continue
                packet.pts, packet.dts = packet.pts + r * length, packet.dts + r * length
                packet.stream = out_video
                out.mux(packet)
        for start in range(0, wave.shape[1], 1024):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(wave[:, start:start + 1024]), format="fltp",
                                               layout=out_audio.layout.name)
            frame.sample_rate, frame.pts = rate, start
            out.mux(out_audio.encode(frame))
        out.mux(out_audio.encode(None))
    tmp.rename(target)
    return target


# ---------------------------------------------------------------------------------------------- measurement
def measure(cli_args: list[str], log: Path) -> dict:
    """Run ``python -m synctalk_lib CLI_ARGS`` as a child: its wall time, CPU time (user + system; on a shared
    machine the better measure of single-threaded work), peak resident memory and the load average at its end.

    The peak is the child's own VmHWM, written by ``_child`` as it exits: the ``ru_maxrss`` that ``wait4`` reports
    starts from the parent's peak, which Linux carries over into the child at exec.
    """
    env = dict(os.environ, SYNCTALK_QUIET="1", PYTHONPATH=str(ROOT))
    peak_file = log.with_suffix(".peak")
    peak_file.unlink(missing_ok=True)
    started = time.perf_counter()
    with open(log, "w") as fh:
        child = subprocess.Popen([sys.executable, __file__, "--child-peak", str(peak_file), *cli_args], cwd=ROOT,
                                 env=env, stdout=fh, stderr=subprocess.STDOUT)
        _pid, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"synctalk_lib {' '.join(cli_args)} failed ({code}); see {log}")
    return {"wall_s": round(wall, 1), "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
            "peak_rss_mb": round(int(peak_file.read_text()) / 1024.0, 0), "load_avg": round(os.getloadavg()[0], 1)}


def _child(peak_file: str, cli_args: list[str]) -> None:
    """``python -m synctalk_lib CLI_ARGS`` in this process, then its peak resident memory (kB) into ``peak_file``."""
    import atexit
    import runpy

    def record() -> None:
        status = Path("/proc/self/status").read_text()
        Path(peak_file).write_text(status.split("VmHWM:")[1].split()[0])

    atexit.register(record)
    sys.argv = ["synctalk_lib", *cli_args]
    runpy.run_module("synctalk_lib", run_name="__main__", alter_sys=True)


def bench_length(minutes: float, args, shared: Path) -> dict:
    seconds = minutes * 60.0
    work = args.work / f"{minutes:g}min"
    work.mkdir(parents=True, exist_ok=True)
    video = repeat_clip(shared / "data" / "may_short.mp4", args.work / f"may_{minutes:g}min.mp4", seconds)
    run = Run(video=video, seconds=seconds, work=work, models=shared / "models",
              options=["--max-duration", f"{seconds:g}", "--audio-encoder", args.audio_encoder])
    shutil.rmtree(run.subject, ignore_errors=True)
    shutil.rmtree(run.cache, ignore_errors=True)
    print(f"{minutes:g} min: preprocess ...", flush=True)
    result = {"minutes": minutes, "preprocess": measure(run.preprocess(), work / "preprocess.log")}
    result["frames"] = json.loads((run.subject / "report.json").read_text())["frames"]
    result["preprocess"]["steps_s"] = json.loads((run.subject / "report.json").read_text())["seconds"]
    for name in args.stages:
        stage = STAGES[name]
        print(f"{minutes:g} min: {name} ...", flush=True)
        row = measure(stage.command(run), work / f"{name}.log")
        row["stage_s"] = stage.seconds(run, row["wall_s"])
        result[name] = row
    return result


# ----------------------------------------------------------------------------------------------------- table
def table(results: list[dict], stages: list[str]) -> str:
    lines = ["| clip | frames | measure | " + " | ".join(["preprocess"] + stages) + " |",
             "| --- | --- | --- | " + " | ".join("---" for _ in range(len(stages) + 1)) + " |"]
    for r in results:
        clip = f"{r['minutes']:g} min"
        times = [f"{r['preprocess']['wall_s']:.0f} s"] + [
            f"{r[s]['stage_s']:.0f} s" if r.get(s, {}).get("stage_s") is not None else "-" for s in stages]
        cpu = [f"{r[s]['cpu_s']:.0f} s" if s in r else "-" for s in ["preprocess"] + stages]
        memory = [f"{r[s]['peak_rss_mb'] / 1024:.2f} GB" if s in r else "-" for s in ["preprocess"] + stages]
        loads = sorted(r[s]["load_avg"] for s in ["preprocess"] + stages if s in r)
        lines.append(f"| {clip} | {r['frames']} | wall time (load {loads[0]:g}-{loads[-1]:g}) | "
                     + " | ".join(times) + " |")
        lines.append(f"| {clip} | {r['frames']} | CPU time | " + " | ".join(cpu) + " |")
        lines.append(f"| {clip} | {r['frames']} | peak memory | " + " | ".join(memory) + " |")
    return "\n".join(lines)


def report(result: dict, *, write: bool) -> int:
    text = table(result["runs"], result["stages"])
    print(text)
    if write:
        heading = (f"\n## Preprocess at scale — {result['date']}, {result['machine']}\n\nCommand: `{result['command']}`"
                   f" (reference clip repeated; each stage also run alone in its own process for its peak memory)."
                   "\n\n")
        with open(ROOT / "BENCHMARKS.md", "a", encoding="utf-8") as fh:
            fh.write(heading + text + "\n")
        print("appended to BENCHMARKS.md")
    return 0


def main() -> int:
    if len(sys.argv) > 2 and sys.argv[1] == "--child-peak":
        _child(sys.argv[2], sys.argv[3:])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, nargs="+", default=[0.5, 2.0, 5.0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/synctalk_scale"))
    parser.add_argument("--stages", default=",".join(STAGES), help=f"comma-separated, of {', '.join(STAGES)}")
    parser.add_argument("--audio-encoder", default="auto", help="preprocess --audio-encoder (default auto)")
    parser.add_argument("--json", type=Path, default=None, help="also write all numbers here")
    parser.add_argument("--write", action="store_true", help="append the table to BENCHMARKS.md")
    parser.add_argument("--from-json", type=Path, default=None, help="print (and --write) a finished run's --json")
    args = parser.parse_args()
    if args.from_json:
        return report(json.loads(args.from_json.read_text()), write=args.write)
    args.stages = [s for s in args.stages.split(",") if s]
    unknown = set(args.stages) - set(STAGES)
    if unknown:
        parser.error(f"unknown stages {sorted(unknown)}; choose from {', '.join(STAGES)}")
    shared = Path(os.environ.get("SYNCTALK_SHARED", ROOT.parent / "shared"))
    args.work.mkdir(parents=True, exist_ok=True)
    runs = [bench_length(m, args, shared) for m in args.minutes]
    result = {"runs": runs, "stages": args.stages, "date": datetime.date.today().isoformat(),
              "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, CPU",
              "command": "python bench/scale.py " + " ".join(sys.argv[1:])}
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return report(result, write=args.write)


if __name__ == "__main__":
    raise SystemExit(main())
