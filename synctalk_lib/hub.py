"""Named weight files ("assets"): where they live on the Hugging Face Hub, their sha256, size and licence.

Resolution order for ``fetch(name, dirs)``: a file of that name in one of the models folders ``dirs`` (first match
wins, sha256 checked), then a download with ``huggingface_hub.hf_hub_download`` from the asset's repo (pinned
revision, then its mirrors), copied into ``dirs[0]`` under a temporary name and renamed after the sha256 check.
Offline (``HF_HUB_OFFLINE=1``) or without network the error names the file, its checksum, where to download it
and which folder to put it in. Pickled ``.pth`` files are only ever read with ``torch.load(weights_only=True)``,
after the checksum, and a safetensors copy is kept beside them; the copy records the sha256 of the ``.pth`` it
came from and is used only while that still matches (a ``.safetensors`` dropped beside a checksummed ``.pth`` is
never loaded in its place). Remembered checksums are keyed on the file's size, mtime, ctime and inode.

Trained SyncTalk model folders shared on the Hub come through ``download_model_folder``: only the model folder's
files, their total size checked against ``SYNCTALK_HUB_MAX_GB`` before anything is downloaded, pinned to the
commit the revision resolves to (logged).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from synctalk_lib.errors import InputError, MissingWeightsError
from synctalk_lib.paths import xdg_cache, atomic_path, default_models_dir, require_free_space

log = logging.getLogger("synctalk")


@dataclass(frozen=True)
class HubLocation:
    repo_id: str
    path_in_repo: str
    revision: str = "main"
    repo_type: str = "model"

    @property
    def url(self) -> str:
        prefix = "spaces/" if self.repo_type == "space" else ("datasets/" if self.repo_type == "dataset" else "")
        return f"https://huggingface.co/{prefix}{self.repo_id}/resolve/{self.revision}/{self.path_in_repo}"


@dataclass(frozen=True)
class Asset:
    name: str
    """Registry key, e.g. ``face_landmarker``."""
    filename: str
    """File name inside the models folder."""
    sha256: str
    licence: str
    description: str
    locations: tuple[HubLocation, ...]
    size: int | None = None
    """Exact size in bytes when known (checked before hashing)."""

    @property
    def non_commercial(self) -> bool:
        return "NC" in self.licence

    def label(self) -> str:
        size = f"{self.size / 1e6:.1f} MB, " if self.size else ""
        return f"{self.filename} (sha256 {self.sha256[:8]}…{self.sha256[-4:]}, {size}{self.licence})"


ASSETS: dict[str, Asset] = {
    a.name: a
    for a in (
        Asset(
            name="face_landmarker",
            filename="face_landmarker.task",
            sha256="64184e229b263107bc2b804c6625db1341ff2bb731874b0bcc2fe6544e0bc9ff",
            size=3_758_596,
            licence="Apache-2.0",
            description="MediaPipe Face Landmarker: face detector, 478 landmarks, 52 blendshapes",
            locations=(HubLocation("ameerazam08/SyncTalk", "data_utils/blendshape_capture/face_landmarker.task"),),
        ),
        Asset(
            name="ave",
            filename="audio_visual_encoder.pth",
            sha256="1f75cdb5556938590c64221f6c47a8d20ab3e368d53c166023eedb12279db8c4",
            size=None,
            licence="CC BY-NC 4.0",
            description="SyncTalk audio-visual encoder (official weights; non-commercial use only)",
            locations=(
                HubLocation("ameerazam08/SyncTalk", "nerf_triplane/checkpoints/audio_visual_encoder.pth"),
                HubLocation("united-avatars/linly", "checkpoints/audio_visual_encoder.pth", repo_type="space"),
            ),
        ),
        Asset(
            name="raft_small",
            filename="raft-small.pth",
            sha256="c7d41b9cc88442bb8aa911dbb33086dac55a226394b142937ff22d5578717332",
            size=3_984_814,
            licence="BSD-3-Clause",
            description="RAFT-small optical flow (princeton-vl release)",
            locations=(HubLocation("ameerazam08/SyncTalk", "data_utils/UNFaceFlow/pretrain_model/raft-small.pth"),),
        ),
    )
}


def get_asset(name: str) -> Asset:
    try:
        return ASSETS[name]
    except KeyError:
        raise InputError(f"unknown asset {name!r}; known assets: {', '.join(sorted(ASSETS))}") from None


# ------------------------------------------------------------------------------------------------- checksums
def sha256_of(path: Path | str, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def _sidecar(path: Path) -> Path:
    """Where the checksum of ``path`` is remembered (a user cache, so read-only model folders stay untouched)."""
    key = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:24]
    return xdg_cache() / "synctalk" / "sha256" / f"{key}.json"


def _cached_sha256(path: Path) -> str:
    """sha256 of ``path``, remembered by (size, mtime, ctime, inode) so large files are hashed once. The ctime
    cannot be set back by whoever rewrites the file, so a changed file is always hashed again."""
    stat = path.stat()
    key = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "ctime_ns": stat.st_ctime_ns, "inode": stat.st_ino,
           "device": stat.st_dev}
    side = _sidecar(path)
    try:
        data = json.loads(side.read_text())
        if {k: data.get(k) for k in key} == key:
            return str(data["sha256"])
    except (OSError, ValueError, KeyError):
        pass
    digest = sha256_of(path)
    try:
        side.parent.mkdir(parents=True, exist_ok=True)
        side.write_text(json.dumps({**key, "sha256": digest}))
    except OSError:  # unwritable cache: just hash again next time
        pass
    return digest


def _describe_bad_file(path: Path) -> str:
    """Recognise the usual wrong files saved under a weight's name."""
    with open(path, "rb") as fh:
        head = fh.read(512)
    if head.startswith(b"version https://git-lfs"):
        return "it is a Git LFS pointer, not the weights (download with git-lfs or from the URL below)"
    if head.lstrip().lower().startswith((b"<!doctype html", b"<html")):
        return "it is an HTML page (an error or login page was saved instead of the file)"
    return "its contents differ from the published file (incomplete download or a different version)"


def verify(asset: Asset, path: Path) -> None:
    """Raise ``MissingWeightsError`` unless ``path`` holds exactly the published bytes of ``asset``."""
    size = path.stat().st_size
    if (asset.size is not None and size != asset.size) or _cached_sha256(path) != asset.sha256:
        raise MissingWeightsError(
            f"{path} does not match {asset.label()}: {_describe_bad_file(path)}. "
            f"Delete it and download it again from {asset.locations[0].url}"
        )


# ------------------------------------------------------------------------------------------------ resolution
def search_dirs(dirs: Iterable[Path | str] | None) -> list[Path]:
    found = [Path(d) for d in dirs] if dirs is not None else []
    return found or [default_models_dir()]


def find_local(name: str, dirs: Iterable[Path | str] | None = None) -> Path | None:
    """The verified local copy of asset ``name`` in ``dirs``, or None. A corrupt copy raises."""
    asset = get_asset(name)
    for folder in search_dirs(dirs):
        candidate = folder / asset.filename
        if candidate.is_file():
            verify(asset, candidate)
            return candidate
    return None


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def _hub_unreachable(timeout: float = 3.0) -> str | None:
    """Why the Hub cannot be reached, or None. A quick TCP check spares minutes of download retries offline."""
    import socket
    from urllib.parse import urlparse

    endpoint = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    host, port = endpoint.hostname or "huggingface.co", endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as exc:
        return f"no network connection to {host} ({exc})"
    return None


def _download(asset: Asset, target: Path) -> Path:
    """Download ``asset`` into ``target`` (atomically, verified); raise MissingWeightsError with every reason."""
    reasons: list[str] = []
    unreachable = None if _offline() else _hub_unreachable()
    if _offline():
        reasons.append("HF_HUB_OFFLINE is set")
    elif unreachable:
        reasons.append(unreachable)
    else:
        try:
            from huggingface_hub import hf_hub_download
        except ImportError:
            reasons.append("huggingface_hub is not installed (python -m pip install huggingface-hub)")
        else:
            for loc in asset.locations:
                try:
                    cached = Path(hf_hub_download(loc.repo_id, loc.path_in_repo, revision=loc.revision,
                                                  repo_type=loc.repo_type))
                    with atomic_path(target) as tmp:
                        shutil.copyfile(cached, tmp)
                        verify(asset, tmp)
                    log.info("SyncTalk: downloaded %s from %s to %s", asset.filename, loc.repo_id, target)
                    return target
                except MissingWeightsError as exc:
                    reasons.append(f"{loc.repo_id}: downloaded file refused ({exc})")
                except Exception as exc:  # network, auth, missing repo: try the next mirror
                    reasons.append(f"{loc.repo_id}: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
    raise MissingWeightsError(
        f"{asset.label()} — {asset.description} — is not in the models folder and could not be downloaded "
        f"({'; '.join(reasons)}). Download it from {asset.locations[0].url} and put it at {target}"
    )


def fetch(name: str, dirs: Iterable[Path | str] | None = None, *, download: bool = True) -> Path:
    """Path of asset ``name``: a verified local file in ``dirs`` or a fresh download into ``dirs[0]``."""
    asset = get_asset(name)
    folders = search_dirs(dirs)
    local = find_local(name, folders)
    if local is not None:
        return local
    target = folders[0] / asset.filename
    if not download:
        raise MissingWeightsError(
            f"{asset.label()} is not in {', '.join(map(str, folders))}. "
            f"Download it from {asset.locations[0].url} and put it at {target}"
        )
    return _download(asset, target)


def status(dirs: Iterable[Path | str] | None = None) -> dict[str, dict]:
    """For ``info``: per asset, whether a verified local copy exists and where."""
    out: dict[str, dict] = {}
    for name, asset in ASSETS.items():
        try:
            path = find_local(name, dirs)
            out[name] = {"present": path is not None, "path": str(path) if path else None, "licence": asset.licence}
        except MissingWeightsError as exc:
            out[name] = {"present": False, "path": None, "licence": asset.licence, "error": str(exc)}
    return out


# --------------------------------------------------------------------------------------------- state dicts
def _writable_folder(folder: Path) -> bool:
    """Whether we may add files to ``folder``: its permission bits allow it (root ignores them, we don't)."""
    import stat

    try:
        mode = folder.stat().st_mode
    except OSError:
        return False
    return bool(mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)) and os.access(folder, os.W_OK)

def load_state_dict(path: Path | str, *, keep_safetensors_copy: bool = True) -> dict:
    """Tensors of a weights file without unpickling code.

    ``.safetensors`` is read directly. A ``.pth``/``.pt`` is read with ``torch.load(weights_only=True)``; a
    ``.safetensors`` copy is then written beside it (atomically, with the ``.pth``'s sha256 in its metadata) and
    used on later calls while that sha256 still matches the ``.pth``. Nested dicts with a single
    ``state_dict``/``model`` key are unwrapped.
    """
    import torch
    from safetensors.torch import load_file, save_file

    path = Path(path)
    if path.suffix == ".safetensors":
        return load_file(str(path))
    converted = path.with_suffix(".safetensors")
    source_sha = _cached_sha256(path)
    if converted.is_file() and _converted_from(converted) == source_sha:
        return load_file(str(converted))
    if converted.is_file():
        log.warning("SyncTalk: ignoring %s: it was not converted from %s (sha256 %s…)", converted, path.name,
                    source_sha[:12])
    try:
        data = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise InputError(f"{path} could not be read as plain PyTorch weights ({exc}); only state dicts of tensors "
                         "are accepted (nothing is unpickled).") from exc
    for key in ("state_dict", "model"):
        if isinstance(data, dict) and set(data) == {key}:
            data = data[key]
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise InputError(f"{path} is not a flat state dict of tensors")
    if keep_safetensors_copy and _writable_folder(converted.parent):
        try:
            with atomic_path(converted) as tmp:
                save_file({k: v.contiguous() for k, v in data.items()}, str(tmp),
                          metadata={"source_file": path.name, "source_sha256": source_sha})
        except OSError as exc:
            log.warning("SyncTalk: could not write a safetensors copy of %s (%s)", path, exc)
    return data


def _converted_from(path: Path) -> str | None:
    """The ``source_sha256`` recorded in a safetensors copy's metadata (None: absent or unreadable)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            return (handle.metadata() or {}).get("source_sha256")
    except Exception:  # not a safetensors file: it is simply not a valid copy
        return None


# ---------------------------------------------------------------------------------------------- model repos
DEFAULT_MODEL_MAX_GB = 20.0
"""Largest model folder a Hub download may fetch when ``SYNCTALK_HUB_MAX_GB`` is not set."""


def _max_model_bytes() -> int:
    raw = os.environ.get("SYNCTALK_HUB_MAX_GB", "").strip()
    try:
        return int(float(raw or DEFAULT_MODEL_MAX_GB) * 1e9)
    except ValueError:
        raise InputError(f"SYNCTALK_HUB_MAX_GB must be a number of gigabytes, got {raw!r}") from None


def download_model_folder(repo_id: str, *, revision: str | None, local_files_only: bool,
                          files: Iterable[str]) -> Path:
    """A SyncTalk model folder from the Hub: only ``files``, at most ``SYNCTALK_HUB_MAX_GB`` (checked before the
    download, and the free disk too), at the commit ``revision`` resolves to (logged). Offline (``HF_HUB_OFFLINE``,
    no network, or ``local_files_only``) only the local Hub cache is used."""
    import re

    if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$", repo_id or "") or ".." in repo_id:
        raise InputError(f"repo_id {repo_id!r} is not a Hugging Face Hub repo id (owner/name)")
    try:
        import huggingface_hub
    except ImportError as exc:
        from synctalk_lib.errors import MissingDependencyError

        raise MissingDependencyError("huggingface_hub", "Loading a SyncTalk model from the Hub",
                                     "huggingface-hub") from exc
    allowed = sorted(set(files))
    where = f"{repo_id!r}{f' at revision {revision!r}' if revision else ''}"
    unreachable = "HF_HUB_OFFLINE is set" if _offline() else (None if local_files_only else _hub_unreachable())
    if local_files_only or unreachable:
        try:
            folder = Path(huggingface_hub.snapshot_download(repo_id, revision=revision, allow_patterns=allowed,
                                                            local_files_only=True))
        except Exception as exc:
            reason = unreachable or "local_files_only was asked for"
            raise MissingWeightsError(
                f"the SyncTalk model {where} is not in the local Hub cache and cannot be downloaded ({reason}); "
                "download the model folder on a connected machine and copy it into models/synctalk/") from exc
        return folder
    try:
        info = huggingface_hub.HfApi().model_info(repo_id, revision=revision, files_metadata=True)
    except Exception as exc:  # not found, private, bad revision: one sentence with the fix
        raise InputError(f"could not read the Hub repo {where} ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else ''}); check the repo id, the revision and "
                         "your access token (huggingface-cli login)") from exc
    sizes = {s.rfilename: int(s.size or 0) for s in (info.siblings or []) if s.rfilename in allowed}
    total, cap = sum(sizes.values()), _max_model_bytes()
    if total > cap:
        raise InputError(f"the model folder in the Hub repo {where} is {total / 1e9:.2f} GB, more than the "
                         f"{cap / 1e9:.2f} GB allowed; raise SYNCTALK_HUB_MAX_GB to load it")
    cache = Path(os.environ.get("HF_HUB_CACHE") or os.environ.get("HF_HOME") or xdg_cache() / "huggingface")
    require_free_space(cache, total, f"the model {repo_id}", safety=64 << 20)
    log.info("SyncTalk: downloading the model %s at commit %s (%d files, %.1f MB)", repo_id, info.sha,
             len(sizes), total / 1e6)
    folder = Path(huggingface_hub.snapshot_download(repo_id, revision=info.sha, allow_patterns=allowed))
    return folder
