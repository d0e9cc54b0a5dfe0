"""Default folders outside ComfyUI, and small file helpers shared by every stage."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

VIDEO_EXTENSIONS = {".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi", ".gif", ".mpg", ".mpeg", ".ts"}
AUDIO_EXTENSIONS = {".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aac", ".aiff", ".aif", ".wma"}


def xdg_cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")


def default_models_dir() -> Path:
    """``$SYNCTALK_MODELS_DIR``, else ``~/.cache/synctalk/models``."""
    env = os.environ.get("SYNCTALK_MODELS_DIR")
    return Path(env) if env else xdg_cache() / "synctalk" / "models"


def default_cache_dir() -> Path:
    env = os.environ.get("SYNCTALK_CACHE_DIR")
    return Path(env) if env else xdg_cache() / "synctalk" / "clips"


def default_input_dir() -> Path:
    env = os.environ.get("SYNCTALK_INPUT_DIR")
    return Path(env) if env else Path.cwd()


def default_output_dir() -> Path:
    env = os.environ.get("SYNCTALK_OUTPUT_DIR")
    return Path(env) if env else Path.cwd() / "output"


def looks_like(name: str, kind: str) -> bool:
    suffix = Path(name).suffix.lower()
    if kind == "video":
        return suffix in VIDEO_EXTENSIONS
    if kind == "audio":
        return suffix in AUDIO_EXTENSIONS or suffix in VIDEO_EXTENSIONS
    return True


@contextlib.contextmanager
def atomic_path(target: Path | str) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; on success it replaces ``target`` in one rename.

    Works for files and folders. On error the temporary is removed and ``target`` is left untouched, so a
    crash or a Cancel never leaves a half-written checkpoint or cache entry behind.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    tmp.rmdir()  # the caller creates a file or a folder there
    try:
        yield tmp
        if target.is_dir() and not target.is_symlink():
            old = target.with_name(f".{target.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()


def write_json(path: Path | str, data: Any) -> None:
    """Write JSON atomically (sorted keys, indented)."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def read_json(path: Path | str) -> Any:
    return json.loads(Path(path).read_text())
