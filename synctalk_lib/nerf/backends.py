"""Which implementation runs — the one place that decides between the pack's Triton kernels (``cuda_ext``), their
PyTorch twins and tiny-cuda-nn, and says why.

Hash-grid backends (``NerfConfig.backend``, resolved when a model is built, :func:`resolve_backend`):

- ``torch``: the PyTorch twins of the kernels (CPU and CUDA). Always available.
- ``cuda_ext``: the pack's Triton kernels (``cuda_ext/``) on CUDA tensors; same layout and weights as ``torch``.
- ``tinycudann``: tiny-cuda-nn's ``HashGrid`` (needs the ``tinycudann`` package and a CUDA GPU). Its table layout
  differs from the original's (see :class:`synctalk_lib.nerf.hashgrid.TcnnHashGrid2D`), so its weights are its own.

``"auto"`` picks ``cuda_ext``, then ``tinycudann``, then ``torch``. Asking for a backend that is not usable here
falls back to ``torch`` with one warning per process.

Render kernels (:class:`Kernels`): the renderer and the hash grid run ``hash_grid_2d``, ``march_packed`` and
``composite_packed`` from one of two sets with the same contract — :func:`twins` (PyTorch, any device) or
:func:`triton_kernels` (cuda_ext). :func:`kernels_for` picks the set for a device and a backend setting: the Triton
kernels for CUDA tensors when the setting is ``auto`` or ``cuda_ext`` and every kernel family works here, else the
twins.

Whether a kernel family (``hashgrid``, ``march``, ``composite``) works on a device kind (:func:`availability`):
Triton imports, the device is a CUDA GPU (CPU tensors only under Triton's interpreter, ``TRITON_INTERPRET=1`` set
before Triton is first imported: slow, for tests), and the family's kernels compile and agree with their twins on
a tiny probe. The answer is cached per process (Triton caches compiled kernels on disk, ``~/.triton/cache``). A
kernel that fails later disables its family with one warning and the twin answers; out-of-memory errors are not
hidden. Nothing here ever crashes because a kernel cannot load.

The pack's ``cuda_ext`` is loaded from the pack folder by file location under a private module name
(:func:`cuda_ext_module`), never as the top-level name ``cuda_ext``: ComfyUI puts every pack's folder on
``sys.path``, where another pack's ``cuda_ext`` could otherwise stand in for ours.

Nothing is imported or compiled at module import time.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import threading
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

import torch

BACKENDS = ("torch", "tinycudann", "cuda_ext")
"""Hash-grid backends a config may name (besides ``auto``)."""
CUDA_EXT_DIR = Path(__file__).resolve().parents[2] / "cuda_ext"
"""The pack's kernel folder (beside ``synctalk_lib``)."""
CUDA_EXT_NAME = "_synctalk_cuda_ext"
"""The private module name the pack's ``cuda_ext`` is loaded under."""

_lock = threading.RLock()
_triton_state: tuple[bool, str] | None = None
_family_state: dict[tuple[str, str], tuple[bool, str]] = {}
_WARNED: set[str] = set()


# ---------------------------------------------------------------------------------------------- loading
def cuda_ext_module(name: str | None = None) -> ModuleType:
    """The pack's ``cuda_ext`` package, or its submodule ``name`` (e.g. ``"triton_march"``).

    Loaded from :data:`CUDA_EXT_DIR` by file location, so whatever else is called ``cuda_ext`` on ``sys.path`` is
    never used. Raises ImportError when the folder is missing (a damaged install).
    """
    package = sys.modules.get(CUDA_EXT_NAME)
    if package is None:
        with _lock:
            package = sys.modules.get(CUDA_EXT_NAME) or _load_cuda_ext()
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


# ------------------------------------------------------------------------------------------ kernel sets
@dataclass(frozen=True)
class Kernels:
    """One implementation of each operation the renderer and the hash grid run (same contract in every set)."""

    name: str
    """``"torch"`` (the PyTorch twins) or ``"cuda_ext"`` (the Triton kernels)."""
    hash_grid_2d: Callable[..., Any]
    """``(u, embeddings, offsets, scales, strides, dense) -> [N, L * C]`` features (cuda_ext/hashgrid.py)."""
    march_packed: Callable[..., Any]
    """Packed occupancy-grid marching (cuda_ext/march.py)."""
    composite_packed: Callable[..., Any]
    """Volume compositing of packed samples (cuda_ext/composite.py)."""


@lru_cache(maxsize=None)
def twins() -> Kernels:
    """The PyTorch twins (every device; the reference the kernels are tested against)."""
    return Kernels("torch", hash_grid_2d=cuda_ext_module("hashgrid").hash_grid_2d_torch,
                   march_packed=cuda_ext_module("march").march_packed_torch,
                   composite_packed=cuda_ext_module("composite").composite_packed_torch)


@lru_cache(maxsize=None)
def triton_kernels() -> Kernels:
    """The Triton kernels, each falling back to its twin where its family cannot run on the inputs' device."""
    slow = twins()

    def kernel(family: str, function: str, twin: Callable[..., Any]) -> Callable[..., Any]:
        def run(*args: Any, **kwargs: Any) -> Any:
            def fast() -> Any:  # imports the kernel module (and Triton) only when the family can run
                return getattr(cuda_ext_module(f"triton_{family}"), function)(*args, **kwargs)

            return _run(family, args[0].device, fast, lambda: twin(*args, **kwargs))

        run.__name__ = run.__qualname__ = function
        return run

    return Kernels("cuda_ext", hash_grid_2d=kernel("hashgrid", "hash_grid_2d_triton", slow.hash_grid_2d),
                   march_packed=kernel("march", "march_packed_triton", slow.march_packed),
                   composite_packed=kernel("composite", "composite_packed_triton", slow.composite_packed))


def kernels_for(device: torch.device | str, requested: str = "auto") -> Kernels:
    """The kernel set for tensors on ``device`` under the backend setting ``requested``.

    The Triton kernels for a CUDA device when ``requested`` is ``auto`` or ``cuda_ext`` and every kernel family
    works here; else the twins. An explicit ``cuda_ext`` that cannot run is warned about once (with the reason).
    """
    if requested not in ("auto", "cuda_ext") or _device_kind(device) != "cuda":
        return twins()
    ok, reason = availability("all", device)
    if ok:
        return triton_kernels()
    if requested == "cuda_ext":
        _warn_kernels_unused(reason)
    return twins()


def _run(family: str, device: object, fast: Callable[[], Any], slow: Callable[[], Any]) -> Any:
    """``fast`` when the family runs on ``device`` (else ``slow``); a failure of ``fast`` other than running out
    of memory disables the family with one warning and runs ``slow``."""
    ok, reason = availability(family, device)
    if not ok:
        if _device_kind(device) == "cuda":  # on CPU tensors the twin is the normal path: nothing to warn about
            _warn_kernels_unused(reason)
        return slow()
    try:
        return fast()
    except torch.cuda.OutOfMemoryError:
        raise
    except Exception as exc:
        _mark_failed(family, device, exc)
        return slow()


# ------------------------------------------------------------------------------------ Triton availability
def families() -> tuple[str, ...]:
    """The kernel families, each in ``cuda_ext/triton_<family>.py`` with a ``probe(kind)`` function."""
    return tuple(cuda_ext_module().FAMILIES)


def interpreting() -> bool:
    """True when Triton runs kernels through its CPU interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def availability(family: str = "all", device: object = "cuda") -> tuple[bool, str]:
    """Whether a kernel family runs on a device here, with the reason.

    Args:
        family: one of :func:`families`, or "all" (every family must work).
        device: torch device (or tensor) the kernels would run on.

    Returns:
        (ok, reason): ``reason`` is a sentence for people ("the 'triton' package is not installed ...",
        "ok (GPU; probed against the PyTorch twin)"). The first question for a family compiles and probes it.
    """
    names = families()
    if family == "all":
        results = [availability(name, device) for name in names]
        bad = [(name, reason) for name, (ok, reason) in zip(names, results) if not ok]
        if not bad:
            return True, results[0][1]
        if len({reason for _, reason in bad}) == 1:
            return False, bad[0][1]
        return False, "; ".join(f"{name}: {reason}" for name, reason in bad)
    if family not in names:
        raise ValueError(f"unknown kernel family {family!r}; choose one of {names}")
    key = (family, _device_kind(device))
    with _lock:
        if key not in _family_state:
            _family_state[key] = _decide(family, key[1])
        return _family_state[key]


def _decide(family: str, kind: str) -> tuple[bool, str]:
    if kind == "cuda" and not torch.cuda.is_available():
        return False, "no CUDA GPU is visible to torch"
    if kind != "cuda" and not interpreting():
        return False, ("the Triton kernels run on CUDA GPUs only (set TRITON_INTERPRET=1 before importing triton to "
                       "run them, slowly, on the CPU for tests)")
    ok, reason = _import_triton()
    return _probe(family, kind) if ok else (ok, reason)


def _import_triton() -> tuple[bool, str]:
    global _triton_state
    if _triton_state is None:
        try:
            spec = importlib.util.find_spec("triton")
        except (ImportError, ValueError):  # a broken or blocked install counts as absent
            spec = None
        if spec is None:
            _triton_state = (False, "the 'triton' package is not installed (on a CUDA machine: "
                                    "python -m pip install triton; it comes with Linux CUDA builds of torch)")
        else:
            try:
                importlib.import_module("triton")
                importlib.import_module("triton.language")
                _triton_state = (True, "triton imported")
            except Exception as exc:  # broken install, wrong CUDA driver, ...
                _triton_state = (False, f"'import triton' failed: {type(exc).__name__}: {_first_line(exc)}")
    return _triton_state


def _probe(family: str, kind: str) -> tuple[bool, str]:
    """Compile and run the family's kernels once on tiny inputs and compare them with their twins."""
    try:
        module = cuda_ext_module(f"triton_{family}")
        # the first question may come from inside inference_mode/no_grad (ComfyUI runs nodes that way); the probe
        # checks gradients too, so it must record them
        with torch.inference_mode(False), torch.enable_grad():
            problem = module.probe(kind)
    except Exception as exc:  # compiler missing, unsupported GPU, ptxas error, ...
        return False, f"compiling/running the Triton kernels failed: {type(exc).__name__}: {_first_line(exc)}"
    if problem:
        return False, f"the Triton kernels disagree with the PyTorch reference on this machine: {problem}"
    mode = "Triton interpreter" if interpreting() else "GPU"
    return True, f"ok ({mode}; probed against the PyTorch twin)"


def _mark_failed(family: str, device: object, exc: BaseException) -> None:
    """Record that a kernel failed at run time (e.g. a new specialisation did not compile) and warn once."""
    reason = f"{family} kernels: a Triton kernel failed at run time: {type(exc).__name__}: {_first_line(exc)}"
    with _lock:
        _family_state[(family, _device_kind(device))] = (False, reason)
    _warn_kernels_unused(reason)


def reset() -> None:
    """Forget cached answers and warnings (tests)."""
    global _triton_state
    with _lock:
        _triton_state = None
        _family_state.clear()
        _WARNED.clear()
        _tcnn_module.cache_clear()


def _device_kind(device: object) -> str:
    if isinstance(device, torch.Tensor):
        device = device.device
    return torch.device(device).type  # type: ignore[arg-type]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else ""


# ------------------------------------------------------------------------------------- hash-grid backends
@lru_cache(maxsize=None)
def _tcnn_module() -> Any | None:
    if not torch.cuda.is_available() or importlib.util.find_spec("tinycudann") is None:
        return None
    try:
        return importlib.import_module("tinycudann")
    except Exception:  # installed but built for another CUDA/torch: treat as absent
        return None


def tcnn_module() -> Any | None:
    """The imported ``tinycudann`` module when it works here (CUDA present), else None."""
    return _tcnn_module()


def available_backends() -> dict[str, bool]:
    """Which hash-grid backends work on this machine, e.g. ``{"torch": True, "tinycudann": False, ...}``."""
    return {"torch": True, "tinycudann": tcnn_module() is not None,
            "cuda_ext": availability("all", "cuda")[0]}


def resolve_backend(requested: str) -> str:
    """Map a requested backend (``auto | torch | tinycudann | cuda_ext``) to one that works here.

    Warns once per process and backend when an explicitly requested fast backend is missing.
    """
    if requested != "auto" and requested not in BACKENDS:
        raise ValueError(f"unknown backend {requested!r}; choose one of auto, {', '.join(BACKENDS)}")
    available = available_backends()
    if requested == "auto":
        return next((name for name in ("cuda_ext", "tinycudann") if available[name]), "torch")
    if available[requested]:
        return requested
    if requested == "tinycudann":
        hint = "pip install git+https://github.com/NVlabs/tiny-cuda-nn/#subdirectory=bindings/torch (needs CUDA)"
    else:
        hint = f"{availability('all', 'cuda')[1]}; see cuda_ext/README.md"
    _warn_once(requested, f"hash-grid backend {requested!r} is not available here; using the PyTorch backend "
                          f"(slower, same results). To enable it: {hint}", UserWarning)
    return "torch"


# ------------------------------------------------------------------------------------------------ warnings
def _warn_kernels_unused(reason: str) -> None:
    # keyed by the reason: a missing triton disables every family but is said once
    _warn_once(reason, f"cuda_ext: the fast kernels are not used ({reason}); falling back to the PyTorch "
                       f"implementation (same results, slower).", RuntimeWarning)


def _warn_once(key: str, message: str, category: type[Warning]) -> None:
    """Emit ``message`` the first time ``key`` is seen in this process."""
    with _lock:
        if key in _WARNED:
            return
        _WARNED.add(key)
    warnings.warn(message, category, stacklevel=4)
