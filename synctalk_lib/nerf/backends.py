"""Which hash-grid implementations work on this machine, and how a requested backend resolves.

- ``torch``: the reference implementation in :mod:`synctalk_lib.nerf.hashgrid` (CPU and CUDA). Always available.
- ``tinycudann``: tiny-cuda-nn's ``HashGrid`` (needs the ``tinycudann`` package and a CUDA GPU). Its table layout
  differs from the original's (see :class:`synctalk_lib.nerf.hashgrid.TcnnHashGrid2D`), so its weights are its own.
- ``cuda_ext``: this pack's optional kernels (``cuda_ext/``). The contract is a module ``cuda_ext.hashgrid`` with a
  function ``hash_grid_2d(u, embeddings, offsets, scales, strides, dense) -> Tensor`` that computes exactly what
  :func:`synctalk_lib.nerf.hashgrid.hash_grid_2d_torch` computes (same layout, same weights), with autograd; and
  optionally ``cuda_ext.renderer.render_chunk(model, rays_o, rays_d, **same keywords as
  SyncTalkNeRF._render_chunk)``, which :meth:`SyncTalkNeRF.render` then uses for CUDA rays.

``"auto"`` picks ``cuda_ext``, then ``tinycudann``, then ``torch``. Asking for a backend that is not usable here
falls back to ``torch`` with one warning per process (per backend).

Nothing is imported or compiled at module import time.
"""
from __future__ import annotations

import importlib
import importlib.util
import warnings
from functools import lru_cache
from typing import Any

import torch

_WARNED: set[str] = set()


def _cuda() -> bool:
    return bool(torch.cuda.is_available())


@lru_cache(maxsize=None)
def _tcnn_module() -> Any | None:
    if not _cuda() or importlib.util.find_spec("tinycudann") is None:
        return None
    try:
        return importlib.import_module("tinycudann")
    except Exception:  # installed but built for another CUDA/torch: treat as absent
        return None


@lru_cache(maxsize=None)
def _cuda_ext_hashgrid() -> Any | None:
    if not _cuda() or importlib.util.find_spec("cuda_ext") is None:
        return None
    try:
        module = importlib.import_module("cuda_ext.hashgrid")
    except Exception:
        return None
    return module if callable(getattr(module, "hash_grid_2d", None)) else None


@lru_cache(maxsize=None)
def _cuda_ext_renderer() -> Any | None:
    if _cuda_ext_hashgrid() is None:
        return None
    try:
        module = importlib.import_module("cuda_ext.renderer")
    except Exception:
        return None
    return module if callable(getattr(module, "render_chunk", None)) else None


def cuda_ext_renderer() -> Any | None:
    """``cuda_ext.renderer`` (fast packed / until-opaque render path with the signature of
    ``SyncTalkNeRF._render_chunk``) when the cuda_ext kernels work here, else None."""
    return _cuda_ext_renderer()


def tcnn_module() -> Any | None:
    """The imported ``tinycudann`` module when it works here (CUDA present), else None."""
    return _tcnn_module()


def cuda_ext_hashgrid() -> Any | None:
    """The ``cuda_ext.hashgrid`` module when it is built and loadable here, else None."""
    return _cuda_ext_hashgrid()


def available_backends() -> dict[str, bool]:
    """Which hash-grid backends work on this machine, e.g. ``{"torch": True, "tinycudann": False, ...}``."""
    return {"torch": True, "tinycudann": tcnn_module() is not None, "cuda_ext": cuda_ext_hashgrid() is not None}


def resolve_backend(requested: str) -> str:
    """Map a requested backend (``auto | torch | tinycudann | cuda_ext``) to one that works here.

    Warns once per process and backend when an explicitly requested fast backend is missing.
    """
    available = available_backends()
    if requested == "auto":
        for name in ("cuda_ext", "tinycudann"):
            if available[name]:
                return name
        return "torch"
    if requested not in available:
        raise ValueError(f"unknown backend {requested!r}; choose one of auto, {', '.join(available)}")
    if available[requested]:
        return requested
    if requested not in _WARNED:
        _WARNED.add(requested)
        hint = ("pip install git+https://github.com/NVlabs/tiny-cuda-nn/#subdirectory=bindings/torch (needs CUDA)"
                if requested == "tinycudann" else "build the pack's cuda_ext kernels (see install.py; needs CUDA)")
        warnings.warn(f"hash-grid backend {requested!r} is not available here; using the PyTorch backend "
                      f"(slower, same results). To enable it: {hint}", stacklevel=2)
    return "torch"
