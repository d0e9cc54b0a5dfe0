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

The pack's ``cuda_ext`` is loaded from the pack folder by file location under a private module name
(:func:`cuda_ext_module`), never as the top-level name ``cuda_ext``: ComfyUI puts every pack's folder on
``sys.path``, where another pack's ``cuda_ext`` could otherwise stand in for ours.

Nothing is imported or compiled at module import time.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
import warnings
from functools import lru_cache
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

_WARNED: set[str] = set()

CUDA_EXT_DIR = Path(__file__).resolve().parents[2] / "cuda_ext"
"""The pack's kernel folder (beside ``synctalk_lib``)."""
CUDA_EXT_NAME = "_synctalk_cuda_ext"
"""The private module name the pack's ``cuda_ext`` is loaded under."""
_load_lock = threading.Lock()


def cuda_ext_module(name: str | None = None) -> ModuleType:
    """The pack's ``cuda_ext`` package, or its submodule ``name`` (e.g. ``"triton_march"``).

    Loaded from :data:`CUDA_EXT_DIR` by file location, so whatever else is called ``cuda_ext`` on ``sys.path`` is
    never used. Raises ImportError when the folder is missing (a damaged install).
    """
    package = sys.modules.get(CUDA_EXT_NAME)
    if package is None:
        with _load_lock:
            package = sys.modules.get(CUDA_EXT_NAME)
            if package is None:
                package = _load_cuda_ext()
    return package if name is None else importlib.import_module(f"{CUDA_EXT_NAME}.{name}")


def _load_cuda_ext() -> ModuleType:
    init = CUDA_EXT_DIR / "__init__.py"
    if not init.is_file():
        raise ImportError(f"the pack's kernel folder {CUDA_EXT_DIR} is missing; reinstall the node pack")
    spec = importlib.util.spec_from_file_location(CUDA_EXT_NAME, init, submodule_search_locations=[str(CUDA_EXT_DIR)])
    package = importlib.util.module_from_spec(spec)
    sys.modules[CUDA_EXT_NAME] = package
    try:
        spec.loader.exec_module(package)  # type: ignore[union-attr]
    except BaseException:
        del sys.modules[CUDA_EXT_NAME]
        raise
    return package


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
    if not _cuda():
        return None
    try:
        module = cuda_ext_module("hashgrid")
    except Exception:
        return None
    return module if callable(getattr(module, "hash_grid_2d", None)) else None


@lru_cache(maxsize=None)
def _cuda_ext_renderer() -> Any | None:
    if _cuda_ext_hashgrid() is None:
        return None
    try:
        module = cuda_ext_module("renderer")
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
