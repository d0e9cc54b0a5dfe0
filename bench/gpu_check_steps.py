"""The steps of the GPU check, one per process: ``bench/gpu_check.py`` runs each with a time limit.

    python bench/gpu_check_steps.py STEP --work DIR --json RESULT.json --budget SECONDS [--dry-run] [--bundle DIR]

STEP is one of ``env``, ``tests``, ``render``, ``render_variants``, ``train_speed``, ``train_eval``. Each writes
its numbers to ``--json`` and exits 0, or fails with a message (the orchestrator records the status either way).
``--dry-run`` uses tiny sizes on the CPU (the kernels' tests through Triton's interpreter) so the whole check runs
in CI; the numbers it prints then only show that the code paths work.

Nothing here imports PyAV or MediaPipe unless the step needs it: on the GPU machine PyAV comes from the bundle's
wheel (``bench/gpu_check.sh`` installs it), and MediaPipe is absent, so LMD is computed afterwards on a CPU
machine by ``bench/gpu_check_finish.py`` from the held-out renders this check returns.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(ROOT))

CUDA_TESTS = ("tests/test_cuda_ext_compile.py", "tests/test_cuda_ext_composite.py", "tests/test_cuda_ext_hashgrid.py",
              "tests/test_cuda_ext_loading.py", "tests/test_cuda_ext_march.py", "tests/test_cuda_ext_render.py",
              "tests/test_nerf_hashgrid.py::test_cuda_matches_cpu",
              "tests/test_nerf_render.py::test_cuda_render_matches_cpu")
"""The kernels' parity tests and the GPU render parity tests (the last three skip without a GPU)."""
DRY_TESTS = ("tests/test_cuda_ext_hashgrid.py",)
"""A few seconds of the same tests under Triton's interpreter: proves the step's plumbing in the dry run."""


@dataclass(frozen=True)
class Sizes:
    """Problem sizes of one check flavour (the GPU run or the CPU dry run)."""

    device: str
    tests: tuple[str, ...]
    render: dict[str, Any]
    """Arguments of bench/render_fps.py (head-only and portrait at 512 x 512, both backends)."""
    render_variants: tuple[dict[str, Any], ...]
    """Extra render_fps runs of the fast path: a whole frame per chunk, and float16."""
    train_speed: dict[str, Any]
    reference_overrides: dict[str, dict[str, Any]]
    """Changes for the slow ``torch`` backend in the render and train_speed runs (fewer repeats)."""
    train_overrides: dict[str, Any]
    """Changes to the standard preset for the time-boxed run (none on the GPU)."""
    val_frames: str
    calibration: tuple[int, int, int]
    """(warm-up steps, timed coarse steps, timed fine steps) of the step-time calibration."""
    eval_reserve_s: float
    """Seconds kept for the evaluation after training."""
    max_train_s: float | None = None
    """Cap on the time-boxed training (None: whatever the step's budget leaves)."""


GPU = Sizes(
    device="cuda",
    tests=CUDA_TESTS,
    render=dict(backends="cuda_ext,torch", size=512, frames=8, warmup=2, repeats=5, fit_steps=300,
                fit_points=65536),
    render_variants=(dict(backends="cuda_ext", size=512, frames=8, warmup=2, repeats=5, fit_steps=300,
                          fit_points=65536, chunk=262144, no_portrait=True),
                     dict(backends="cuda_ext", size=512, frames=8, warmup=2, repeats=5, fit_steps=300,
                          fit_points=65536, chunk=262144, amp=True, no_portrait=True)),
    train_speed=dict(backends="cuda_ext,torch", size=512, steps=30, warmup=5, fit_steps=300, fit_points=65536),
    reference_overrides={"render_fps": dict(warmup=1, repeats=3), "train_speed": dict(steps=10, warmup=3)},
    train_overrides={},
    val_frames="300:331",
    calibration=(8, 48, 16),
    eval_reserve_s=35.0,
)
DRY = Sizes(
    device="cpu",
    tests=DRY_TESTS,
    render=dict(backends="cuda_ext,torch", size=16, frames=1, warmup=0, repeats=1, fit_steps=3, fit_points=1024,
                grid_resolution=16),
    render_variants=(dict(backends="torch", size=16, frames=1, warmup=0, repeats=1, fit_steps=3, fit_points=1024,
                          grid_resolution=16, chunk=128, no_portrait=True),),
    train_speed=dict(backends="cuda_ext,torch", size=16, steps=2, warmup=1, fit_steps=3, fit_points=1024,
                     grid_resolution=16),
    reference_overrides={},
    train_overrides=dict(resolution=40, rays_per_step=256, patch_size=16, patches_per_step=1,
                         nerf={"grid_resolution": 32, "max_steps": 16}),
    val_frames="50:52",
    calibration=(1, 2, 2),
    eval_reserve_s=20.0,
    max_train_s=2.0,
)


# ------------------------------------------------------------------------------------------------ helpers
def run_text(argv: list[str], timeout: float = 60) -> str:
    """Output of a command (stdout + stderr), or what went wrong."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"({argv[0]}: {exc})"
    return (done.stdout + done.stderr).strip()


def versions() -> dict[str, str | None]:
    """Versions of the packages the check depends on (None: not installed)."""
    from importlib import metadata

    out: dict[str, str | None] = {}
    for name in ("torch", "triton", "numpy", "scipy", "safetensors", "huggingface_hub", "opencv-python-headless",
                 "opencv-contrib-python", "av", "mediapipe", "pytest"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def save_partial(args: argparse.Namespace, result: dict) -> None:
    """Write what the step measured so far: a step killed at its time limit still reports it."""
    args.json.write_text(json.dumps(result, indent=1, default=str))


def per_backend(args: argparse.Namespace, sizes: Sizes, module: str, options: dict[str, Any]) -> dict:
    """``bench/<module>.py`` once per backend (the fast one first), the merged results saved after each."""
    merged: dict[str, Any] = {"results": [], "skipped": {}}
    for backend in options["backends"].split(","):
        changes = sizes.reference_overrides.get(module, {})
        one = bench_main(module, {**options, "backends": backend, **(changes if backend == "torch" else {})},
                         args.work / f"{module}_{backend}.json", sizes.device)
        merged["results"] += one["results"]
        merged["skipped"].update(one.get("skipped", {}))
        merged.update(device=one["device"], date=one["date"], torch=one["torch"])
        save_partial(args, merged)
    return merged


def bench_main(module: str, options: dict[str, Any], json_path: Path, device: str) -> dict:
    """Run ``bench/<module>.py``'s main with ``options`` (``--key value``; True = a flag) and read its JSON."""
    import importlib

    argv = ["--device", device, "--json", str(json_path)]
    for key, value in options.items():
        if value is True:
            argv.append(f"--{key.replace('_', '-')}")
        elif value is not None and value is not False:
            argv += [f"--{key.replace('_', '-')}", str(value)]
    importlib.import_module(module).main(argv)
    return json.loads(json_path.read_text())


# -------------------------------------------------------------------------------------------------- steps
def step_env(args: argparse.Namespace, sizes: Sizes) -> dict:
    """GPU, driver, CUDA, torch and triton versions, and what ``python -m synctalk_lib info`` says."""
    import torch

    gpu = run_text(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm",
                    "--format=csv,noheader"])
    result = {"python": platform.python_version(), "platform": platform.platform(), "cpu_count": os.cpu_count(),
              "packages": versions(), "torch_cuda": torch.version.cuda, "cuda_available": torch.cuda.is_available(),
              "nvidia_smi": gpu, "triton_interpret": os.environ.get("TRITON_INTERPRET")}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        result.update(gpu=props.name, capability=f"{props.major}.{props.minor}", sm_count=props.multi_processor_count,
                      gpu_memory_gib=round(props.total_memory / 2**30, 1))
    result["info"] = run_text([sys.executable, "-m", "synctalk_lib", "info"], timeout=max(10, args.budget - 10))
    if sizes.device == "cuda" and not torch.cuda.is_available():
        save_partial(args, result)
        raise SystemExit("torch sees no CUDA GPU here; run with --dry-run on a CPU machine")
    return result


def step_tests(args: argparse.Namespace, sizes: Sizes) -> dict:
    """The kernels' tests (real GPU, or Triton's interpreter in the dry run), counted from pytest's JUnit XML."""
    import xml.etree.ElementTree as ET

    junit = args.work / "tests_junit.xml"
    # --rootdir=tests: the repository root has an __init__.py (a ComfyUI pack), which pytest would try to import
    # as a package named after the checkout's folder; that fails when the folder name is not an identifier
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir=tests", "-rfEs",
            f"--junitxml={junit}", *sizes.tests]
    env = dict(os.environ, SYNCTALK_QUIET="1")
    done = subprocess.run(argv, cwd=ROOT, env=env, timeout=max(5.0, args.budget - 5))
    if not junit.is_file():
        raise SystemExit(f"pytest wrote no report (exit code {done.returncode})")
    cases = []
    for case in ET.parse(junit).getroot().iter("testcase"):
        outcome = "passed"
        message = ""
        for tag in ("failure", "error", "skipped"):
            node = case.find(tag)
            if node is not None:
                outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}[tag]
                message = (node.get("message") or "")[:300]
        cases.append({"test": f"{case.get('classname')}::{case.get('name')}", "outcome": outcome,
                      "seconds": float(case.get("time") or 0), "message": message})
    counts = {k: sum(c["outcome"] == k for c in cases) for k in ("passed", "failed", "error", "skipped")}
    result = {"exit_code": done.returncode, "counts": counts, "files": list(sizes.tests),
              "not_passed": [c for c in cases if c["outcome"] != "passed"]}
    if done.returncode != 0:
        save_partial(args, result)
        raise SystemExit(f"pytest exit code {done.returncode}: {counts}")
    return result


def step_render(args: argparse.Namespace, sizes: Sizes) -> dict:
    """Head-only and portrait FPS at 512 x 512 per backend (bench/render_fps.py), peak GPU memory."""
    return per_backend(args, sizes, "render_fps", sizes.render)


def step_render_variants(args: argparse.Namespace, sizes: Sizes) -> dict:
    """The fast path with a whole frame per chunk, and under float16 autocast (for tuning the defaults)."""
    runs: list[dict] = []
    for k, options in enumerate(sizes.render_variants):
        runs.append(bench_main("render_fps", options, args.work / f"render_variant_{k}.json", sizes.device))
        save_partial(args, {"runs": runs})
    return {"runs": runs}


def step_train_speed(args: argparse.Namespace, sizes: Sizes) -> dict:
    """Training it/s at the standard preset's rays per step, per backend (bench/train_speed.py)."""
    from synctalk_lib.nerf.presets import get_preset

    rays = get_preset("standard", **sizes.train_overrides).rays_per_step
    options = dict(sizes.train_speed, rays=rays, preset="standard", preset_steps=sizes.train_speed["steps"])
    if args.dry_run:
        options["preset"] = ""  # the dry run's tiny ray count is not the preset's
    return per_backend(args, sizes, "train_speed", options)


def step_train_eval(args: argparse.Namespace, sizes: Sizes) -> dict:
    from gpu_check_train import train_and_evaluate

    return train_and_evaluate(args, sizes)


STEPS: dict[str, Callable[[argparse.Namespace, Sizes], dict]] = {
    "env": step_env, "tests": step_tests, "render": step_render, "render_variants": step_render_variants,
    "train_speed": step_train_speed, "train_eval": step_train_eval}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=sorted(STEPS))
    parser.add_argument("--work", type=Path, required=True, help="scratch folder of the check")
    parser.add_argument("--json", type=Path, required=True, help="where the step writes its numbers")
    parser.add_argument("--budget", type=float, default=600.0, help="seconds the orchestrator allows this step")
    parser.add_argument("--bundle", type=Path, default=BENCH / ".gpu_bundle", help="bench/gpu_bundle.sh's folder")
    parser.add_argument("--out", type=Path, default=None, help="folder for files that go back (renders, preview)")
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes on the CPU")
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    args.started = time.perf_counter()
    args.save_partial = lambda result: save_partial(args, result)
    sizes = DRY if args.dry_run else GPU
    save_partial(args, STEPS[args.step](args, sizes))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

