"""Checkpoints and export of AVE pre-training: the resumable training state beside the output, and the AVE in the
official key layout (``.safetensors`` with metadata, or ``.pth``)."""
from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from synctalk_lib.audio.ave import AudioVisualEncoder
from synctalk_lib.audio.ave_train_data import ClipSamples
from synctalk_lib.errors import InputError
from synctalk_lib.paths import atomic_path, set_aside

log = logging.getLogger("synctalk")


def checkpoint_path(out_path: Path) -> Path:
    """``<out>.train.pt``: the resumable training state beside the output."""
    return out_path.with_name(out_path.name + ".train.pt")


def fingerprint(data: list[ClipSamples], config, init_id: str) -> str:
    """What a checkpoint must match to be resumed: the clips, their ranges, the configuration and the start."""
    facts = {"clips": [(d.name, int(d.crops.shape[0]), d.train_range, d.val_range) for d in data],
             "config": dataclasses.asdict(config), "init": init_id}
    return json.dumps(facts, sort_keys=True, default=list)


def save_checkpoint(path: Path, models: nn.Module, optimizer: torch.optim.Optimizer, step: int, fingerprint: str,
                    history: list[dict], rng: np.random.Generator) -> None:
    """Models, optimiser, history and both RNG states at ``step``, written atomically."""
    state = {"step": step, "fingerprint": fingerprint, "models": models.state_dict(),
             "optimizer": optimizer.state_dict(), "history": json.dumps(history),
             "numpy_rng": json.dumps(rng.bit_generator.state), "torch_rng": torch.get_rng_state()}
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: Path, models: nn.Module, optimizer: torch.optim.Optimizer, fingerprint: str,
                    rng: np.random.Generator) -> tuple[int, list[dict]] | None:
    """Restore a matching checkpoint into ``models``, ``optimizer`` and ``rng``: ``(step, history)``, or None."""
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a checkpoint from another version or a damaged file: start over, say so
        log.warning("SyncTalk: cannot read the AVE training checkpoint %s (%s); it is kept as %s and training "
                    "starts over", path, exc, set_aside(path))
        return None
    if state.get("fingerprint") != fingerprint:
        log.warning("SyncTalk: %s belongs to other clips or settings, so it is not resumed; it is kept as %s and "
                    "training starts over", path, set_aside(path))
        return None
    models.load_state_dict(state["models"])
    optimizer.load_state_dict(state["optimizer"])
    rng.bit_generator.state = json.loads(state["numpy_rng"])
    torch.set_rng_state(state["torch_rng"])
    return int(state["step"]), json.loads(state["history"])


def save_ave_weights(ave: AudioVisualEncoder, path: Path | str, metadata: dict | None = None) -> Path:
    """Write the AVE in the official key layout (``.safetensors`` with metadata, or ``.pth``), atomically."""
    path = Path(path)
    state = ave.official_state_dict()
    with atomic_path(path) as tmp:
        if path.suffix == ".safetensors":
            from safetensors.torch import save_file

            meta = {"format": "synctalk-ave", "layout": "official SyncTalk audio_visual_encoder keys"}
            meta.update({k: str(v) for k, v in (metadata or {}).items()})
            save_file(state, str(tmp), metadata=meta)
        elif path.suffix in (".pth", ".pt"):
            torch.save(state, tmp)
        else:
            raise InputError(f"{path.name}: the AVE is saved as .safetensors or .pth")
        _readable_by_all(tmp)
    return path


def _readable_by_all(path: Path) -> None:
    """rw-r--r--: safetensors creates files owner-only, which breaks a models folder shared with ComfyUI's user."""
    os.chmod(path, 0o644)
