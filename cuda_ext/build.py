"""Warm the kernel cache on a CUDA machine: compile every Triton kernel family, check it against its PyTorch twin
and say which ones work. ``install.py`` runs this when a GPU is present; it never fails the install.

    python cuda_ext/build.py            # or: python -m cuda_ext.build

Triton compiles on first use anyway (cached in ``~/.triton/cache``, per GPU architecture and Triton version), so
this only moves those seconds from the first render to the install. Whether the renderer then uses the kernels is
decided by ``synctalk_lib.nerf.backends`` (``python -m synctalk_lib info``).
"""
from __future__ import annotations

import importlib
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: this folder's package comes first on the path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    __package__ = "cuda_ext"


def main() -> int:
    import torch

    families = importlib.import_module(__package__).FAMILIES
    if not torch.cuda.is_available():
        print("cuda_ext: no CUDA GPU here; the PyTorch renderer is used (nothing to build)")
        return 0
    for family in families:
        try:
            problem = importlib.import_module(f".triton_{family}", __package__).probe("cuda")
        except Exception as exc:  # compiler missing, unsupported GPU, ...
            problem = f"compiling/running failed: {type(exc).__name__}: {exc}"
        print(f"cuda_ext {family:10s} {'ready' if not problem else 'NOT USED: ' + str(problem).splitlines()[0]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
