"""Install the pack's Python dependencies into the interpreter that runs this script.

ComfyUI-Manager runs ``python install.py`` from the pack folder after installing ``requirements.txt``; running it
by hand does the same. It never installs, upgrades or replaces torch: the installed torch (CPU, CUDA or ROCm build)
is pinned through a pip constraints file for the whole run. Without torch it stops and says how to get one.

Options:
  --no-cuda-ext   skip the optional CUDA kernels even when CUDA is available
  --tinycudann    also try to build tiny-cuda-nn (needs a CUDA toolkit; a few minutes); never required
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _installed_torch_version() -> str | None:
    try:
        from importlib.metadata import version

        return version("torch")
    except Exception:
        return None


def _pip(*args: str, constraints: Path | None = None) -> int:
    cmd = [sys.executable, "-m", "pip", "install", *args]
    if constraints is not None:
        cmd += ["-c", str(constraints)]
    print("+", " ".join(cmd), flush=True)
    return subprocess.call(cmd)


def _requirements() -> list[str]:
    lines = (HERE / "requirements.txt").read_text().splitlines()
    return [ln.split("#", 1)[0].strip() for ln in lines if ln.split("#", 1)[0].strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--no-cuda-ext", action="store_true", help="do not build the optional CUDA kernels")
    parser.add_argument("--tinycudann", action="store_true", help="also try to install tiny-cuda-nn")
    args = parser.parse_args(argv)

    torch_version = _installed_torch_version()
    if torch_version is None:
        print("SyncTalk install: torch is not installed in this Python. Install the build for your machine first "
              "(https://pytorch.org/get-started/locally/), e.g. 'python -m pip install torch', then run this again.",
              file=sys.stderr)
        return 1

    with tempfile.TemporaryDirectory() as tmp:
        constraints = Path(tmp) / "constraints.txt"
        # Pin torch to what is installed so no dependency can pull another build (gigabytes of CUDA wheels).
        constraints.write_text(f"torch=={torch_version}\n")
        if _pip("-q", *_requirements(), constraints=constraints) != 0:
            print("SyncTalk install: installing requirements failed (see pip's message above).", file=sys.stderr)
            return 1
        if args.tinycudann and os.environ.get("CUDA_HOME"):
            _pip("-q", "--no-build-isolation",
                 "git+https://github.com/NVlabs/tiny-cuda-nn/#subdirectory=bindings/torch", constraints=constraints)

    if not args.no_cuda_ext:
        _maybe_build_cuda_ext()
    print("SyncTalk install: done. Check with: python -m synctalk_lib info")
    return 0


def _maybe_build_cuda_ext() -> None:
    """Warm the CUDA kernel cache when a GPU is present; the kernels otherwise build on first use."""
    try:
        import torch
    except ImportError:
        return
    if not torch.cuda.is_available():
        return
    build = HERE / "cuda_ext" / "build.py"
    if build.is_file():
        subprocess.call([sys.executable, str(build)])


if __name__ == "__main__":
    sys.exit(main())
