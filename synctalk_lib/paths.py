"""Default folders outside ComfyUI, and small file helpers shared by every stage."""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator

from synctalk_lib.errors import InputError

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


_PLAIN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
ALLOW_PATHS_ENV = "SYNCTALK_ALLOW_ABSOLUTE_PATHS"


def confined_name(text: str) -> bool:
    """Whether ``text`` is a plain file or folder name (letters, digits, ``_ . -``; no separator, no ``..``)."""
    return bool(_PLAIN_NAME.match(text)) and ".." not in text


def absolute_paths_allowed() -> bool:
    """``SYNCTALK_ALLOW_ABSOLUTE_PATHS=1``: node inputs may name any file on the server (off by default, since a
    ComfyUI started with ``--listen`` takes inputs from anyone who can reach it)."""
    return os.environ.get(ALLOW_PATHS_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def confine(name: str, roots: Iterable[Path | str], what: str) -> Path:
    """The path of ``name`` (a relative path such as ``clip.mp4`` or ``sub/clip.mp4``) inside one of ``roots``:
    the first root where it exists, else inside the first root. Absolute paths, ``~`` and ``..`` that lead outside
    every root are refused unless ``absolute_paths_allowed()``.

    Containment is checked on the normalised path (``..`` resolved lexically), not through symlinks: a name sent
    by a client cannot climb out of a root, while a symlink the machine's owner put inside a root (a models
    folder linking to shared weights) keeps working.
    """
    text = str(name).strip()
    folders = [Path(os.path.abspath(r)) for r in roots]
    if absolute_paths_allowed():
        candidate = Path(os.path.expanduser(text))
        if candidate.is_absolute():
            return candidate
        found = [root / candidate for root in folders if (root / candidate).exists()]
        return found[0] if found else (folders[0] / candidate if folders else Path(os.path.abspath(candidate)))
    inside = [] if not text or Path(text).is_absolute() or text.startswith("~") else [
        Path(os.path.abspath(root / text)) for root in folders]
    inside = [(root, path) for root, path in zip(folders, inside) if path != root and _inside(path, root)]
    for _, path in inside:
        if path.exists():
            return path
    if inside:
        return inside[0][1]
    allowed = ", ".join(str(r) for r in folders)
    raise InputError(f"{what} {text!r} is outside the allowed folders ({allowed}); put the file there and choose "
                     f"it by name, or set {ALLOW_PATHS_ENV}=1 on this machine to allow any path")


def _inside(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
    except ValueError:
        return False
    return True


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


def free_bytes(folder: Path | str) -> int:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return shutil.disk_usage(folder).free


def require_free_space(folder: Path | str, need: int, what: str, safety: int = 256 << 20,
                       free: int | None = None) -> None:
    """Raise InputError naming ``folder`` unless ``need`` bytes (plus ``safety``) fit on its disk."""
    free = free_bytes(folder) if free is None else free
    if need + safety > free:
        raise InputError(f"not enough disk space in {folder} for {what}: it needs about {need / 1e9:.2f} GB, "
                         f"{free / 1e9:.2f} GB are free; free some space there (or set SYNCTALK_CACHE_DIR / the "
                         "output folder to a bigger disk)")


def set_aside(path: Path | str) -> Path:
    """Rename ``path`` to the first free ``<stem>.old<k><suffix>`` beside it and return that name: a file that
    cannot be used now (a training checkpoint of other data or settings) is kept, never overwritten."""
    path = Path(path)
    k = 1
    while (target := path.with_name(f"{path.stem}.old{k}{path.suffix}")).exists():
        k += 1
    path.rename(target)
    return target
