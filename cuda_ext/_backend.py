"""One place that decides whether the Triton kernels can run here, and says why not.

Nothing is imported or compiled when this module is imported. The first question (``availability(family)``)
imports Triton, and on a CUDA machine compiles the kernels of that family on tiny inputs and checks them against
their PyTorch twins (a "probe"); the answer is cached for the process. Triton caches compiled kernels on disk
(``~/.triton/cache``), so later processes only pay the check (milliseconds).

Where the kernels run:
- on CUDA tensors, when ``triton`` imports and a CUDA GPU is present;
- on CPU tensors, only under Triton's interpreter (``TRITON_INTERPRET=1`` set before Triton is imported) — slow,
  for tests in CI.

Failures never crash: a family that cannot load makes the wrappers use the PyTorch twin, with one warning per
family that names the reason and the fix.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import threading
import warnings
from typing import Callable

FAMILIES: tuple[str, ...] = ("hashgrid", "composite", "march")
"""Kernel groups, each in its own ``cuda_ext/triton_<family>.py`` with a ``probe(device)`` function."""

_lock = threading.Lock()
_import_state: tuple[bool, str] | None = None
_family_state: dict[tuple[str, str], tuple[bool, str]] = {}
_warned: set[str] = set()


def interpreting() -> bool:
    """True when Triton runs kernels through its CPU interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def _import_triton() -> tuple[bool, str]:
    global _import_state
    if _import_state is None:
        try:
            spec = importlib.util.find_spec("triton")
        except (ImportError, ValueError):  # a broken or blocked install counts as absent
            spec = None
        if spec is None:
            _import_state = (False, "the 'triton' package is not installed (on a CUDA machine: "
                                    "python -m pip install triton; it comes with Linux CUDA builds of torch)")
        else:
            try:
                importlib.import_module("triton")
                importlib.import_module("triton.language")
                _import_state = (True, "triton imported")
            except Exception as exc:  # broken install, wrong CUDA driver, ...
                _import_state = (False, f"'import triton' failed: {type(exc).__name__}: {_first_line(exc)}")
    return _import_state


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else ""


def device_kind(device: object) -> str:
    """'cuda' or 'cpu' for a torch device, device string or tensor."""
    import torch

    if isinstance(device, torch.Tensor):
        device = device.device
    return torch.device(device).type  # type: ignore[arg-type]


def availability(family: str = "all", device: object = "cuda") -> tuple[bool, str]:
    """Whether a kernel family runs on a device here, with the reason.

    Args:
        family: one of :data:`FAMILIES`, or "all" (every family must work).
        device: torch device (or tensor) the kernels would run on.

    Returns:
        (ok, reason); ``reason`` is a sentence for people ("triton is not installed ...", "ok (probed against
        the PyTorch twin)").
    """
    if family == "all":
        results = [availability(name, device) for name in FAMILIES]
        bad = [(name, reason) for name, (ok, reason) in zip(FAMILIES, results) if not ok]
        if not bad:
            return True, results[0][1]
        if len({reason for _, reason in bad}) == 1:
            return False, bad[0][1]
        return False, "; ".join(f"{name}: {reason}" for name, reason in bad)
    if family not in FAMILIES:
        raise ValueError(f"unknown kernel family {family!r}; choose one of {FAMILIES}")
    kind = device_kind(device)
    key = (family, kind)
    with _lock:
        if key in _family_state:
            return _family_state[key]
        ok, reason = _import_triton()
        if ok and kind == "cpu" and not interpreting():
            ok, reason = False, ("the Triton kernels run on CUDA GPUs only (set TRITON_INTERPRET=1 before importing "
                                 "triton to run them, slowly, on the CPU for tests)")
        if ok and kind == "cuda":
            import torch

            if not torch.cuda.is_available():
                ok, reason = False, "no CUDA GPU is visible to torch"
        if ok:
            ok, reason = _probe(family, kind)
        _family_state[key] = (ok, reason)
        return ok, reason


def _probe(family: str, kind: str) -> tuple[bool, str]:
    """Compile and run the family's kernels once on tiny inputs and compare them with the PyTorch twin."""
    import torch

    try:
        module = importlib.import_module(f".triton_{family}", __package__)
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


def usable(family: str, device: object) -> bool:
    """True when ``family`` can run on ``device``; on a CUDA device that cannot, warns once per reason.

    CPU tensors outside the interpreter quietly answer False: the kernels are GPU code and the PyTorch twin is
    the normal CPU path, so there is nothing to warn about.
    """
    ok, reason = availability(family, device)
    if not ok and device_kind(device) == "cuda":
        _warn_fallback(reason)
    return ok


def _warn_fallback(reason: str) -> None:
    # keyed by the reason: a missing triton disables every family but is said once
    warn_once(reason, f"cuda_ext: the fast kernels are not used ({reason}); falling back to the PyTorch "
                      f"implementation (same results, slower).")


def warn_once(key: str, message: str) -> None:
    """Emit ``message`` as a RuntimeWarning the first time ``key`` is seen in this process."""
    if key in _warned:
        return
    _warned.add(key)
    warnings.warn(message, RuntimeWarning, stacklevel=3)


def mark_failed(family: str, device: object, exc: BaseException) -> None:
    """Record that a kernel failed at run time (e.g. a new specialisation did not compile) and warn once."""
    kind = device_kind(device)
    reason = f"{family} kernels: a Triton kernel failed at run time: {type(exc).__name__}: {_first_line(exc)}"
    with _lock:
        _family_state[(family, kind)] = (False, reason)
    _warn_fallback(reason)


def run_or_fallback(family: str, device: object, fast: Callable[[], object], slow: Callable[[], object]) -> object:
    """Run ``fast`` when the family is usable on ``device``, else ``slow``; a failure of ``fast`` (other than
    running out of memory) disables the family with one warning and runs ``slow``."""
    if not usable(family, device):
        return slow()
    try:
        return fast()
    except Exception as exc:
        import torch

        if isinstance(exc, torch.cuda.OutOfMemoryError):
            raise
        mark_failed(family, device, exc)
        return slow()


def reset() -> None:
    """Forget cached answers and warnings (tests)."""
    global _import_state
    with _lock:
        _import_state = None
        _family_state.clear()
        _warned.clear()
