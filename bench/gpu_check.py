"""The GPU check: one unattended command that proves the pack's GPU path and measures it (``bench/gpu_check.sh``
calls this after putting the bundle's PyAV wheel on the path; see its header for the exact device invocation).

    python bench/gpu_check.py [--dry-run] [--out DIR] [--bundle DIR] [--budget SECONDS] [--steps a,b]
                              [--step-budget NAME=SECONDS]

Steps, in this order, each in its own process with its own time limit (a failure or a hang costs only that step's
budget, and the report is rewritten after every step, so it exists whatever happens):

    env              a. GPU, driver, torch, triton versions; `python -m synctalk_lib info`
    tests            b. the kernels' tests and the GPU render parity tests on the real GPU
    render           c. head-only and portrait FPS at 512 x 512 per backend (torch, cuda_ext), peak GPU memory
    train_speed      d. training it/s at the standard preset's rays per step, per backend
    train_eval       e. time-boxed standard-preset training on the reference clip, then the held-out evaluation
    render_variants  extra: the fast path with whole-frame chunks and in float16 (tuning data), if time is left

Writes to ``--out`` (default ``$OUT``): ``gpu_check.md`` (the tables, also printed), ``gpu_check.json`` (every
number), ``gpu_check.log`` (every step's output), ``heldout_renders.npz`` and ``heldout_preview.png`` (step e).
``--dry-run`` runs the same steps on the CPU with tiny sizes and Triton's interpreter, in about a minute (CI).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

from gpu_check_report import markdown_report  # noqa: E402

DEVICE_RUN = ('run(command="bash bench/gpu_check.sh", carry=["bench/.gpu_bundle"], timeout_s=600)')
"""How the device tool runs this check (after `bash bench/gpu_bundle.sh` on a machine with the shared data)."""


@dataclass(frozen=True)
class Step:
    name: str
    title: str
    gpu_s: float
    """Time limit on the GPU machine, seconds."""
    dry_s: float
    """Time limit of the CPU dry run (limits, not expected times)."""
    takes_slack: bool = False
    """Also gets the time earlier steps left unused (less what the later steps need): more training steps."""


STEPS = (
    Step("env", "a. environment", 30, 45),
    Step("tests", "b. CUDA tests", 140, 90),
    Step("render", "c. render speed 512x512", 70, 60),
    Step("train_speed", "d. training speed", 45, 60),
    Step("train_eval", "e. standard preset, time-boxed, held-out evaluation", 150, 120, takes_slack=True),
    Step("render_variants", "extra: fast-path render variants", 40, 45),
)
GPU_BUDGET_S = 480.0
"""The whole check on the GPU: 8 minutes, inside the device tool's 10 minutes per command."""
DRY_BUDGET_S = 420.0
KILL_GRACE_S = 5.0


def run_step(step: Step, limit: float, args: argparse.Namespace, work: Path, log_path: Path) -> dict[str, Any]:
    """Run one step in its own process group, killed at ``limit`` seconds; returns its status record."""
    result_path = work / f"step_{step.name}.json"
    result_path.unlink(missing_ok=True)
    argv = [sys.executable, str(BENCH / "gpu_check_steps.py"), step.name, "--work", str(work), "--json",
            str(result_path), "--budget", f"{limit:.0f}", "--bundle", str(args.bundle), "--out", str(args.out)]
    if args.dry_run:
        argv.append("--dry-run")
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if args.dry_run:  # the CPU flavour everywhere, also on a machine that has a GPU
        env.update(TRITON_INTERPRET="1", CUDA_VISIBLE_DEVICES="")
    started = time.perf_counter()
    with open(log_path, "w") as log:
        log.write(f"$ {' '.join(argv)}\n")
        log.flush()
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            code = proc.wait(timeout=limit)
            status = "ok" if code == 0 else "failed"
        except subprocess.TimeoutExpired:
            code, status = None, "timeout"
            _kill_group(proc)
    record: dict[str, Any] = {"status": status, "exit_code": code, "seconds": round(time.perf_counter() - started, 1),
                              "limit_s": round(limit)}
    if result_path.is_file():
        record["result"] = json.loads(result_path.read_text())
    if status != "ok":
        record["error"] = _tail(log_path)
    return record


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGTERM the step's process group, SIGKILL what is left after a grace period."""
    for sig, wait in ((signal.SIGTERM, KILL_GRACE_S), (signal.SIGKILL, KILL_GRACE_S)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _tail(path: Path, lines: int = 25) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def parse_budgets(items: list[str]) -> dict[str, float]:
    out = {}
    names = {s.name for s in STEPS}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or name not in names:
            raise SystemExit(f"--step-budget expects NAME=SECONDS with NAME in {sorted(names)}, got {item!r}")
        out[name] = float(value)
    return out


def write_report(report: dict[str, Any], out: Path) -> str:
    """Rewrite gpu_check.json and gpu_check.md; returns the markdown."""
    (out / "gpu_check.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
    text = markdown_report(report)
    (out / "gpu_check.md").write_text(text)
    return text


def step_limit(step: Step, k: int, wanted: list[str], left: float, args: argparse.Namespace,
               overrides: dict[str, float]) -> float:
    """Seconds step number ``k`` may run: its own limit (or ``--step-budget``) within what is ``left``; a step that
    takes slack also gets the time earlier steps did not use, less the limits of the steps still to come."""
    def own(s: Step) -> float:
        return overrides.get(s.name, s.dry_s if args.dry_run else s.gpu_s)

    limit = min(own(step), left)
    if step.takes_slack and step.name not in overrides and not args.dry_run:
        later = sum(own(s) for s in STEPS[k + 1:] if s.name in wanted)
        limit = max(limit, left - later)
    return limit


def run_steps(args: argparse.Namespace, wanted: list[str], overrides: dict[str, float], work: Path,
              report: dict[str, Any]) -> None:
    """Run the wanted steps in order, appending their output to gpu_check.log and rewriting the report after each."""
    started = time.perf_counter()
    log_all = args.out / "gpu_check.log"
    log_all.write_text("")
    for k, step in enumerate(STEPS):
        if step.name not in wanted:
            continue
        left = report["budget_s"] - (time.perf_counter() - started)
        if left < 5:
            report["steps"][step.name] = {"status": "skipped", "error": "no time left in the check's budget"}
        else:
            limit = step_limit(step, k, wanted, left, args, overrides)
            print(f"== {step.title} (limit {limit:.0f} s)", flush=True)
            step_log = work / f"{step.name}.log"
            record = report["steps"][step.name] = run_step(step, limit, args, work, step_log)
            with open(log_all, "a") as out:
                out.write(f"\n===== {step.name}: {record['status']} =====\n")
                out.write(step_log.read_text(errors="replace"))
            print(f"   {record['status']} in {record['seconds']} s", flush=True)
        report["seconds"] = round(time.perf_counter() - started, 1)
        write_report(report, args.out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes on the CPU, Triton's interpreter")
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or "gpu_check_out"),
                        help="output folder (default $OUT, else ./gpu_check_out)")
    parser.add_argument("--bundle", type=Path, default=BENCH / ".gpu_bundle", help="bench/gpu_bundle.sh's folder")
    parser.add_argument("--budget", type=float, default=None,
                        help=f"seconds for all steps (default {GPU_BUDGET_S:.0f}; dry run {DRY_BUDGET_S:.0f})")
    parser.add_argument("--steps", default=",".join(s.name for s in STEPS), help="comma-separated subset, in order")
    parser.add_argument("--step-budget", action="append", default=[], metavar="NAME=SECONDS",
                        help="change one step's time limit")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one)")
    args = parser.parse_args(argv)
    args.out = args.out.resolve()
    args.bundle = args.bundle.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    wanted = [s.strip() for s in args.steps.split(",") if s.strip()]
    unknown = sorted(set(wanted) - {s.name for s in STEPS})
    if unknown:
        raise SystemExit(f"unknown steps {unknown}; choose from {[s.name for s in STEPS]}")
    work = args.work or Path(tempfile.mkdtemp(prefix="gpu_check_"))
    work.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"date": datetime.datetime.now().isoformat(timespec="seconds"),
                              "dry_run": args.dry_run, "device_run": DEVICE_RUN,
                              "budget_s": args.budget or (DRY_BUDGET_S if args.dry_run else GPU_BUDGET_S),
                              "command": " ".join(["bash bench/gpu_check.sh", *(argv or sys.argv[1:])]),
                              "steps": {}}
    run_steps(args, wanted, parse_budgets(args.step_budget), work, report)
    print(write_report(report, args.out))
    failed = [name for name, rec in report["steps"].items() if rec["status"] in ("failed", "timeout")]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
