"""Import a head model trained with the official SyncTalk code (``ngp_ep*.pth`` / ``ngp.pth``, reference 12).

The layouts that matter already match: the tri-plane hash lookup (5.1), SH basis (5.2), bias-free MLPs and AVE
audio network (12). Only key names differ, and the occupancy grid is stored in 3-D Morton order there and as a
dense ``[x, y, z]`` array here.

    checkpoint = torch.load("ngp_ep0059.pth", map_location="cpu", weights_only=True)
    model = load_official_checkpoint(checkpoint)     # SyncTalkNeRF, mask_mode="loss" like the original

Supported: AVE audio (``audio_net.encoder_fc1``), any blendshape width, with or without the temporal attention.
Not supported (clear error): DeepSpeech/HuBERT audio nets and the ``emb`` variant. A torso network in the file is
ignored (this pack renders the head over the real torso, like the original head model).
"""
from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
from torch import Tensor

from synctalk_lib.errors import InputError
from synctalk_lib.nerf.config import NerfConfig
from synctalk_lib.nerf.model import SyncTalkNeRF

log = logging.getLogger("synctalk")

FIELD_NETS = ("sigma_net", "color_net", "unc_net", "aud_ch_att_net", "eye_att_net")
IGNORED_PREFIXES = ("aabb_train", "aabb_infer", "step_counter", "density_grid", "density_bitfield", "torso_",
                    "anchor_points", "individual_codes_torso", "density_grid_torso", "camera_dR", "camera_dT")


def morton3d(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
    """3-D Morton code with x bits at positions 0, 3, 6, ..., y at 1, 4, ..., z at 2, 5, ... (10 bits per axis)."""

    def spread(v: np.ndarray) -> np.ndarray:
        v = v.astype(np.int64) & 0x3FF
        v = (v | (v << 16)) & 0x030000FF
        v = (v | (v << 8)) & 0x0300F00F
        v = (v | (v << 4)) & 0x030C30C3
        v = (v | (v << 2)) & 0x09249249
        return v

    return spread(x) | (spread(y) << 1) | (spread(z) << 2)


def morton_order(resolution: int) -> np.ndarray:
    """[R^3] Morton index of each cell in this pack's flat order ``(x * R + y) * R + z``."""
    axis = np.arange(resolution)
    x, y, z = np.meshgrid(axis, axis, axis, indexing="ij")
    return morton3d(x.reshape(-1), y.reshape(-1), z.reshape(-1))


def _unwrap(checkpoint: dict[str, Any]) -> tuple[dict[str, Tensor], float | None]:
    if "model" in checkpoint and isinstance(checkpoint["model"], dict):
        mean = checkpoint.get("mean_density")
        return checkpoint["model"], (float(mean) if mean is not None else None)
    return checkpoint, None


def convert_official_state_dict(checkpoint: dict[str, Any]) -> tuple[NerfConfig, dict[str, Tensor]]:
    """Config and ``SyncTalkNeRF`` state dict for an official checkpoint (full trainer dict or its ``model``).

    Raises:
        InputError: the file is not an official head model, or a variant this pack cannot render.
    """
    state, mean_density = _unwrap(checkpoint)
    if "audio_net.encoder_conv.0.weight" in state:
        raise InputError("this official checkpoint uses DeepSpeech/HuBERT audio features; only AVE models "
                         "(--asr_model ave) can be imported")
    if "embedding.weight" in state:
        raise InputError("this official checkpoint uses the 'emb' audio variant, which cannot be imported")
    required = ["encoder_xy.embeddings", "sigma_net.net.0.weight", "audio_net.encoder_fc1.0.weight",
                "individual_codes"]
    missing = [k for k in required if k not in state]
    if missing:
        raise InputError(f"not an official SyncTalk head checkpoint: missing {missing}")

    has_eye = "eye_att_net.net.1.weight" in state
    has_att = "audio_att_net.attentionNet.0.weight" in state
    aabb = state.get("aabb_infer", state.get("aabb_train"))
    config = NerfConfig(
        audio_in_dim=int(state["audio_net.encoder_fc1.0.weight"].shape[1]),
        audio_dim=int(state["audio_net.encoder_fc1.4.weight"].shape[0]),
        audio_window=int(state["audio_att_net.attentionNet.0.weight"].shape[0]) if has_att else 8,
        expression_dim=int(state["eye_att_net.net.1.weight"].shape[0]) if has_eye else 7,
        individual_dim=int(state["individual_codes"].shape[1]),
        num_codes=int(state["individual_codes"].shape[0]),
        aabb=tuple(float(v) for v in aabb) if aabb is not None else NerfConfig().aabb,
        mask_mode="loss",
        use_audio_smoothing=has_att,
        use_expression=has_eye,
        use_uncertainty="unc_net.net.0.weight" in state,
    )

    out: dict[str, Tensor] = {}
    unknown = []
    for key, value in state.items():
        if key.startswith("encoder_"):
            out[f"field.encoder.{key}"] = value
        elif key.split(".")[0] in FIELD_NETS:
            out[f"field.{key}"] = value
        elif key.startswith(("audio_net.", "audio_att_net.")):
            out[f"audio.{key}"] = value
        elif key == "individual_codes":
            out[key] = value
        elif not key.startswith(IGNORED_PREFIXES):
            unknown.append(key)
    if unknown:
        raise InputError(f"official checkpoint has keys this pack does not know: {unknown[:8]}")
    if any(k.startswith("torso_") for k in state):
        log.warning("SyncTalk: the official checkpoint holds a torso network; it is ignored (head model only)")
    out.update(_occupancy_state(state, mean_density, config))
    return config, out


def _occupancy_state(state: dict[str, Tensor], mean_density: float | None,
                     config: NerfConfig) -> dict[str, Tensor]:
    resolution = config.grid_resolution
    order = torch.from_numpy(morton_order(resolution))
    shape = (resolution,) * 3
    threshold_cap = config.density_thresh
    if "density_grid" in state:
        grid = state["density_grid"].reshape(-1).float()[: resolution ** 3][order].reshape(shape)
        mean = float(grid.clamp(min=0).mean()) if mean_density is None else mean_density
        occupied = grid > min(mean, threshold_cap)
    elif "density_bitfield" in state:
        bits = np.unpackbits(state["density_bitfield"].numpy().astype(np.uint8), bitorder="little")
        occupied = torch.from_numpy(bits[: resolution ** 3].astype(bool))[order].reshape(shape)
        mean = mean_density if mean_density is not None else 0.0
        # only the bitfield is known: occupied cells get a density just above the threshold, the rest 0
        grid = torch.where(occupied, torch.tensor(min(mean, threshold_cap) + 1.0), torch.tensor(0.0))
    else:
        log.warning("SyncTalk: the official checkpoint has no occupancy grid; every cell is marked occupied")
        grid = torch.zeros(shape)
        occupied = torch.ones(shape, dtype=torch.bool)
        mean = 0.0
    return {"occupancy.density": grid, "occupancy.occupied": occupied,
            "occupancy.mean_density": torch.tensor(float(mean))}


def load_official_checkpoint(checkpoint: dict[str, Any]) -> SyncTalkNeRF:
    """A ``SyncTalkNeRF`` (eval mode) holding an official head checkpoint; see :func:`convert_official_state_dict`."""
    config, state = convert_official_state_dict(checkpoint)
    model = SyncTalkNeRF(config)
    model.load_state_dict(state, strict=True)
    return model.eval()
