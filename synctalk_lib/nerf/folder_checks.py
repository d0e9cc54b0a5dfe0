"""Checks of a model folder before anything big is allocated or decoded: JSON that parses, keys of the right types
and ranges, weights whose header matches the config, finite weights, indices inside the clip.

Every problem becomes one ``InputError`` naming the file and what to do, instead of a raw JSONDecodeError,
TypeError, KeyError, SafetensorError or a multi-gigabyte allocation. Used by ``model_folder.load_model_folder``.
"""
from __future__ import annotations

import dataclasses
import json
import math
import typing
from pathlib import Path
from typing import Any

import numpy as np

from synctalk_lib.errors import InputError
from synctalk_lib.nerf.config import NerfConfig

MAX_SIDE = 8192
"""Largest clip side a model folder may declare (pixels)."""
MAX_FRAMES = 2_000_000
"""Most reference frames a model folder may declare (22 hours at 25 fps)."""
MAX_RENDER_STEPS = 1024
"""Most samples per ray (``nerf.max_steps``); more would only make rendering run out of memory."""
DAMAGED = "the model folder is damaged: copy the whole folder again, or train and save the model again"


def damaged(path: Path, problem: str) -> InputError:
    """The one error for a bad file in a model folder."""
    return InputError(f"{path}: {problem}; {DAMAGED}")


def read_json_object(path: Path) -> dict[str, Any]:
    """The JSON object in ``path`` (InputError when it does not parse or is not an object)."""
    try:
        data = json.loads(Path(path).read_bytes().decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise damaged(path, f"not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise damaged(path, f"expected a JSON object, found {type(data).__name__}")
    return data


def need(path: Path, data: dict, key: str, kind: type | tuple[type, ...], *, low: float | None = None,
         high: float | None = None, optional: bool = False, default: Any = None, section: str = "") -> Any:
    """``data[key]`` checked to be of ``kind`` (ints are not bools; numbers finite) and within ``[low, high]``;
    ``section`` names the JSON object ``data`` is in (for the message)."""
    label = f"{section} {key!r}".strip()
    if key not in data:
        if optional:
            return default
        raise damaged(path, f"the key {label} is missing")
    value = data[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if bool in kinds:
        ok = isinstance(value, bool)
    elif float in kinds:
        ok = is_number and math.isfinite(float(value))
    elif int in kinds:
        ok = is_number and float(value).is_integer()
    else:
        ok = isinstance(value, kinds)
    if not ok:
        words = {float: "a finite number", int: "a whole number", bool: "true or false", str: "a string"}
        names = " or ".join(words.get(k, k.__name__) for k in kinds)
        raise damaged(path, f"{label} must be {names}, found {value!r}")
    if int in kinds and float not in kinds:
        value = int(value)
    if (low is not None and value < low) or (high is not None and value > high):
        allowed = f"{low:g}..{high:g}" if low is not None and high is not None else (
            f"at least {low:g}" if low is not None else f"at most {high:g}")
        raise damaged(path, f"{label} = {value!r} is not allowed (must be {allowed})")
    return value


# --------------------------------------------------------------------------------------------- NerfConfig
def nerf_config(path: Path, values: Any) -> NerfConfig:
    """``config.json``'s ``nerf`` section as a NerfConfig, every field's type checked first."""
    if not isinstance(values, dict):
        raise damaged(path, f"'nerf' must be a JSON object, found {type(values).__name__}")
    hints = typing.get_type_hints(NerfConfig)
    for f in dataclasses.fields(NerfConfig):
        if f.name not in values:
            continue
        kind = hints[f.name]
        value = values[f.name]
        if f.name == "aabb":
            if not (isinstance(value, list) and len(value) == 6 and all(
                    isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)):
                raise damaged(path, f"nerf 'aabb' must be 6 finite numbers, found {value!r}")
        elif f.name == "march_step":
            if value is not None:
                need(path, values, f.name, float, low=1e-6, high=10.0, section="nerf")
        elif kind in (int, float, bool):
            need(path, values, f.name, kind, low=0 if kind is not bool else None,
                 high=MAX_RENDER_STEPS if f.name == "max_steps" else None, section="nerf")
        elif not isinstance(value, str):
            raise damaged(path, f"nerf {f.name!r} must be a string, found {value!r}")
    try:
        return NerfConfig.from_dict(values)
    except (ValueError, TypeError) as exc:
        raise damaged(path, f"the 'nerf' settings are invalid ({exc})") from None


def check_weight_shapes(path: Path, config: NerfConfig) -> None:
    """The tensors in the safetensors header must have the shapes ``config`` builds (checked on the meta device,
    so a config asking for a huge grid is refused before anything is allocated)."""
    import torch
    from safetensors import safe_open

    from synctalk_lib.nerf.model import SyncTalkNeRF

    try:
        with safe_open(str(path), framework="pt") as handle:
            stored = {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}
    except Exception as exc:  # SafetensorError (truncated, not safetensors) has no stable import path
        raise damaged(path, f"not a readable safetensors file ({type(exc).__name__}: {exc})") from None
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in SyncTalkNeRF(config).state_dict().items()}
    missing = sorted(set(expected) - set(stored))
    if missing:
        raise damaged(path, f"weights {missing[:8]} are missing (from an incompatible version?)")
    wrong = [f"{k} {list(stored[k])} (config.json implies {list(expected[k])})"
             for k in sorted(expected) if stored[k] != expected[k]]
    if wrong:
        raise damaged(path, f"weights disagree with config.json: {', '.join(wrong[:4])}")


def check_finite_weights(path: Path, state: dict) -> None:
    """No NaN or infinite value in any floating-point weight (they would render NaN images)."""
    for key, tensor in state.items():
        if tensor.is_floating_point() and not bool(tensor.isfinite().all()):
            raise InputError(f"{path}: the weight {key!r} holds NaN or infinite values, so the model would render "
                             "NaN images; train the subject again (the training data or the run went wrong)")


# ------------------------------------------------------------------------------------------------ subject
def subject_meta(path: Path, meta: dict[str, Any]) -> dict[str, Any]:
    """``subject.json`` with every value checked; indices as int64 arrays, ``source`` without local paths."""
    n = need(path, meta, "num_frames", int, low=1, high=MAX_FRAMES)
    out = {
        "num_frames": n,
        "fps": float(need(path, meta, "fps", float, low=0.1, high=240.0)),
        "height": need(path, meta, "height", int, low=8, high=MAX_SIDE),
        "width": need(path, meta, "width", int, low=8, high=MAX_SIDE),
    }
    for key, default in (("train_indices", list(range(n))), ("val_indices", [])):
        raw = meta.get(key, default)
        if not isinstance(raw, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in raw):
            raise damaged(path, f"{key!r} must be a list of frame numbers")
        indices = np.asarray(raw, np.int64)
        if indices.size and (indices.min() < 0 or indices.max() >= n):
            raise damaged(path, f"{key!r} holds frame {int(indices.min() if indices.min() < 0 else indices.max())}, "
                                f"outside the {n} reference frames")
        out[key] = indices
    if out["train_indices"].size == 0:
        raise damaged(path, "'train_indices' is empty")
    out["source"] = source_meta(path, meta.get("source") or {})
    return out


def source_meta(path: Path, source: Any) -> dict[str, Any]:
    """The shareable description of the source video: its file name, size, crop box and start time (a local
    path written by older versions is reduced to its file name)."""
    if not isinstance(source, dict):
        raise damaged(path, "'source' must be a JSON object")
    name = source.get("name") or (Path(str(source["path"])).name if source.get("path") else None)
    size, crop = source.get("size"), source.get("crop_box")
    for key, value, length in (("size", size, 2), ("crop_box", crop, 4)):
        if value is not None and not (isinstance(value, list) and len(value) == length and all(
                isinstance(v, int) and not isinstance(v, bool) for v in value)):
            raise damaged(path, f"source {key!r} must be {length} whole numbers, found {value!r}")
    start = need(path, source, "start_time", float, low=0.0, optional=True, default=0.0)
    return {"name": str(name) if name else None, "size": size, "crop_box": crop, "start_time": float(start or 0.0)}


def render_size(path: Path, render: Any, height: int, width: int) -> tuple[int, int]:
    """``config.json``'s render size: at least 8 pixels and never larger than the reference frames (training
    renders at the clip's size or smaller)."""
    if not isinstance(render, dict):
        raise damaged(path, "'render' must be a JSON object")
    h = need(path, render, "height", int, low=8, high=height, optional=True, default=height, section="render")
    w = need(path, render, "width", int, low=8, high=width, optional=True, default=width, section="render")
    return h, w
