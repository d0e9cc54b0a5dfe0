"""``info``: what this machine can do (packages, devices, backends) and which weights are present."""
from __future__ import annotations

import argparse
import importlib.util
import json
import platform

NAME = "info"
HELP = "show packages, devices, backends and which weights are present"

OPTIONAL_PACKAGES = ("torch", "av", "mediapipe", "cv2", "lpips", "tinycudann", "triton", "huggingface_hub",
                     "safetensors", "scipy", "librosa")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models-dir", action="append", default=None, help="models folder(s) to check")
    parser.add_argument("--json", action="store_true", help="print JSON only")


def _package_version(name: str) -> str | None:
    if importlib.util.find_spec(name) is None:
        return None
    try:
        module = importlib.import_module(name)
        return str(getattr(module, "__version__", "installed"))
    except Exception as exc:  # installed but broken (e.g. a CUDA-only wheel on a CPU machine)
        return f"broken: {type(exc).__name__}: {str(exc).splitlines()[0][:120]}"


def collect(models_dirs=None) -> dict:
    from synctalk_lib import __version__, hub

    report: dict = {"synctalk_lib": __version__, "python": platform.python_version(), "platform": platform.platform()}
    report["packages"] = {name: _package_version(name) for name in OPTIONAL_PACKAGES}
    try:
        import torch

        report["torch"] = {"version": torch.__version__, "cuda_available": torch.cuda.is_available(),
                           "cuda_version": torch.version.cuda,
                           "devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
                           "threads": torch.get_num_threads()}
    except ImportError:
        report["torch"] = None
    report["backends"] = _backends()
    report["models_dirs"] = [str(p) for p in hub.search_dirs(models_dirs)]
    report["assets"] = hub.status(models_dirs)
    for name, entry in report["assets"].items():
        entry["non_commercial"] = hub.ASSETS[name].non_commercial
    return report


def _backends() -> dict:
    """Which renderer backends work here (filled in by the nerf / cuda_ext stages when present)."""
    try:
        from synctalk_lib.nerf.backends import available_backends
    except ImportError:
        return {"torch": True}
    return available_backends()


def run(args: argparse.Namespace) -> int:
    report = collect(args.models_dir)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"synctalk_lib {report['synctalk_lib']}  python {report['python']}  {report['platform']}")
    torch_info = report["torch"]
    if torch_info:
        gpus = ", ".join(torch_info["devices"]) or "none"
        print(f"torch {torch_info['version']}  CUDA available: {torch_info['cuda_available']}  GPUs: {gpus}")
    else:
        print("torch: NOT INSTALLED")
    print("packages:")
    for name, version in report["packages"].items():
        print(f"  {name:16s} {version or 'not installed'}")
    print("render backends: " + ", ".join(f"{k}={'yes' if v else 'no'}" for k, v in report["backends"].items()))
    print("models folders: " + ", ".join(report["models_dirs"]))
    print("weights:")
    for name, entry in report["assets"].items():
        state = entry["path"] if entry["present"] else ("INVALID: " + entry["error"] if "error" in entry else "missing")
        nc = "  [non-commercial licence]" if entry["non_commercial"] else ""
        print(f"  {name:16s} {entry['licence']:14s} {state}{nc}")
    return 0
