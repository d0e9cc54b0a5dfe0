"""The hash-grid entry point that ``synctalk_lib.nerf.backends`` looks for (``cuda_ext.hashgrid.hash_grid_2d``).

``backends`` imports this module only when it resolves a backend on a CUDA machine, and treats a failed import as
"cuda_ext not available". So importing it checks (once per process, cached) that the Triton hash-grid kernels
compile and agree with the PyTorch twin on this GPU, and raises ImportError with the reason when they do not —
which keeps ``python -m synctalk_lib info`` truthful. Calls go through :func:`cuda_ext.hash_grid_2d`, which still
falls back to PyTorch (one warning) should a later specialisation fail.
"""
from __future__ import annotations

from . import _backend
from . import hash_grid_2d

_ok, _reason = _backend.availability("hashgrid", "cuda" if not _backend.interpreting() else "cpu")
if not _ok:
    raise ImportError(f"cuda_ext hash-grid kernels are not usable here: {_reason}")

__all__ = ["hash_grid_2d"]
