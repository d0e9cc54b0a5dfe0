"""Warm the kernel cache on a CUDA machine: compile every Triton kernel family, check it against its PyTorch twin
and say which ones work. ``install.py`` runs this when a GPU is present; it never fails the install.

    python cuda_ext/build.py            # or: python -m cuda_ext.build

Triton compiles on first use anyway (cached in ``~/.triton/cache``, per GPU architecture and Triton version), so
this only moves those seconds from the first render to the install.
"""
from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the pack folder importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    import torch

    from cuda_ext import _backend

    if not torch.cuda.is_available():
        print("cuda_ext: no CUDA GPU here; the PyTorch renderer is used (nothing to build)")
        return 0
    for family in _backend.FAMILIES:
        ok, reason = _backend.availability(family, "cuda")
        print(f"cuda_ext {family:10s} {'ready' if ok else 'NOT USED'}: {reason}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
