"""The only module of the pack that touches ComfyUI.

Everything ComfyUI-specific goes through here: progress bars, interruption, the torch device, and the folders
(models, input, output, cache). Outside ComfyUI (tests, scripts calling the node classes) the same calls work
with plain defaults: tqdm progress, no interruption, ``auto|cpu|cuda`` devices and folders from environment
variables. ComfyUI is detected once, lazily, by trying to import ``folder_paths`` and ``comfy``.
"""
from __future__ import annotations

import contextlib
import functools
import logging
import os
from pathlib import Path
from typing import Iterator

from synctalk_lib import paths as lib_paths
from synctalk_lib.progress import StepCallback

log = logging.getLogger("synctalk")

MODEL_FOLDER_NAME = "synctalk"
CATEGORY = "SyncTalk"


@functools.lru_cache(maxsize=1)
def _comfy():
    """ComfyUI's modules when running inside ComfyUI, else None."""
    try:
        import folder_paths  # type: ignore[import-not-found]
        import comfy.utils  # type: ignore[import-not-found]
        import comfy.model_management  # type: ignore[import-not-found]
    except Exception:  # not inside ComfyUI (or a ComfyUI that cannot start here)
        return None
    return folder_paths, comfy.utils, comfy.model_management


def in_comfyui() -> bool:
    return _comfy() is not None


# ----------------------------------------------------------------------------------------------------- folders
def register_model_folder() -> None:
    """Register ``models/synctalk`` with ComfyUI (keeps paths users added in extra_model_paths.yaml first)."""
    comfy = _comfy()
    if comfy is None:
        return
    folder_paths = comfy[0]
    folder = os.path.join(folder_paths.models_dir, MODEL_FOLDER_NAME)
    if folder not in folder_paths.folder_names_and_paths.get(MODEL_FOLDER_NAME, ([], set()))[0]:
        folder_paths.add_model_folder_path(MODEL_FOLDER_NAME, folder)


def models_dirs() -> list[Path]:
    """Folders searched for weights and trained models, the first one is where downloads go."""
    comfy = _comfy()
    if comfy is None:
        return [lib_paths.default_models_dir()]
    register_model_folder()
    return [Path(p) for p in comfy[0].get_folder_paths(MODEL_FOLDER_NAME)]


def input_dir() -> Path:
    comfy = _comfy()
    return Path(comfy[0].get_input_directory()) if comfy else lib_paths.default_input_dir()


def output_dir() -> Path:
    comfy = _comfy()
    return Path(comfy[0].get_output_directory()) if comfy else lib_paths.default_output_dir()


def temp_dir() -> Path:
    comfy = _comfy()
    return Path(comfy[0].get_temp_directory()) if comfy else lib_paths.default_output_dir() / "temp"


def cache_dir() -> Path:
    """Where decoded clips and other re-usable intermediates live (survives ComfyUI restarts, unlike temp/)."""
    env = os.environ.get("SYNCTALK_CACHE_DIR")
    if env:
        return Path(env)
    comfy = _comfy()
    if comfy is not None:
        return Path(comfy[0].get_user_directory()) / "synctalk_cache"
    return lib_paths.default_cache_dir()


def list_input_files(kind: str) -> list[str]:
    """Files of the input folder whose content type is ``kind`` ("video", "audio"), for upload combos."""
    comfy = _comfy()
    folder = input_dir()
    if not folder.is_dir():
        return []
    names = sorted(f for f in os.listdir(folder) if (folder / f).is_file())
    if comfy is not None:
        return sorted(comfy[0].filter_files_content_types(names, [kind]))
    return [n for n in names if lib_paths.looks_like(n, kind)]


def resolve_input_path(name: str) -> Path:
    """An input file given as a combo choice: a name in the input folder, or with ComfyUI's ``[input]`` /
    ``[output]`` / ``[temp]`` annotation a name in that folder. Names that climb out of the folder and absolute
    paths are refused (a ComfyUI started with ``--listen`` takes inputs from anyone who reaches it) unless
    ``SYNCTALK_ALLOW_ABSOLUTE_PATHS=1``."""
    text = str(name).strip()
    folder = input_dir()
    for suffix, where in ((" [output]", output_dir), (" [input]", input_dir), (" [temp]", temp_dir)):
        if text.endswith(suffix) or text.endswith(suffix.strip()):
            text, folder = text[:-len(suffix.strip())].rstrip(), where()
            break
    return lib_paths.confine(text, [folder], "input file")


# ---------------------------------------------------------------------------------------------------- progress
def check_interrupted() -> None:
    """Raise ComfyUI's InterruptProcessingException if the user pressed Cancel (no-op outside ComfyUI)."""
    comfy = _comfy()
    if comfy is not None:
        comfy[2].throw_exception_if_processing_interrupted()


@contextlib.contextmanager
def progress(description: str, total: int | None = None) -> Iterator[StepCallback]:
    """Yield an ``on_step(done, total)`` callback for library functions.

    Inside ComfyUI it drives the node's ProgressBar (which also raises on Cancel); outside it drives tqdm.
    Every call also checks for interruption, so long loops stop cleanly between steps.
    """
    comfy = _comfy()
    if comfy is not None:
        bar = comfy[1].ProgressBar(max(total or 1, 1))

        def on_step(done: int, total_now: int) -> None:
            check_interrupted()
            bar.update_absolute(done, max(total_now, 1))

        yield on_step
        return

    from synctalk_lib.progress import cli_progress

    with cli_progress(description, total) as on_step:
        yield on_step


def is_interruption(exc: BaseException) -> bool:
    """Whether ``exc`` is ComfyUI's Cancel (never true outside ComfyUI)."""
    comfy = _comfy()
    return comfy is not None and isinstance(exc, comfy[2].InterruptProcessingException)


def show_text(text: str) -> None:
    """Show ``text`` on the running node in ComfyUI's editor (under its widgets); a no-op outside ComfyUI."""
    if _comfy() is None:
        return
    try:
        from comfy_execution.utils import get_executing_context  # type: ignore[import-not-found]
        from server import PromptServer  # type: ignore[import-not-found]
    except ImportError:  # a ComfyUI without node text
        return
    context = get_executing_context()
    if context is not None and getattr(PromptServer, "instance", None) is not None:
        PromptServer.instance.send_progress_text(text, context.node_id)


def warn(message: str) -> None:
    """A warning the user should see (ComfyUI's console / the CLI's stderr)."""
    log.warning("SyncTalk: %s", message)


# ------------------------------------------------------------------------------------------------------ device
def device(choice: str = "auto"):
    """The torch device for ``choice`` in ``auto|cpu|cuda``; ``auto`` inside ComfyUI is ComfyUI's device."""
    import torch

    if choice == "cpu":
        return torch.device("cpu")
    if choice == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("device 'cuda' was chosen but torch sees no CUDA GPU here; choose 'auto' or 'cpu'.")
        return torch.device("cuda")
    if choice != "auto":
        raise ValueError(f"device must be one of auto, cpu, cuda (got {choice!r})")
    comfy = _comfy()
    if comfy is not None:
        return comfy[2].get_torch_device()
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def free_device_memory() -> None:
    comfy = _comfy()
    if comfy is not None:
        comfy[2].soft_empty_cache()


# ------------------------------------------------------------------------------------------------------- video
def video_from_file(path) -> object:
    """The core ``VIDEO`` value for a finished video file: ComfyUI's ``VideoFromFile`` (so SaveVideo and
    GetVideoComponents treat it as their own). Outside ComfyUI, where no VIDEO type exists, the file's ``Path``."""
    if _comfy() is not None:
        try:
            from comfy_api.input_impl import VideoFromFile  # type: ignore[import-not-found]
        except ImportError:  # a ComfyUI older than the VIDEO type
            pass
        else:
            return VideoFromFile(str(path))
    return Path(path)
