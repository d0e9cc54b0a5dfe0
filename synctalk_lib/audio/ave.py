"""The audio-visual encoder (AVE): a 16-frame mel window -> a 512-d non-negative code per video frame.

Layers (``reference-synctalk.md`` §2.1): 13 blocks of Conv2d (with bias) -> BatchNorm2d -> optional residual add
of the block input -> ReLU, in a Sequential named ``audio_encoder``, each block's conv and norm in a Sequential
named ``conv_block``. Parameter names and shapes therefore equal the official checkpoint
(``audio_visual_encoder.pth``) once its keys get the ``audio_encoder.`` prefix, and it loads with ``strict=True``.

Files we read and write use the official layout (keys without the prefix, e.g. ``0.conv_block.0.weight``); files
with the prefix are accepted too. ``num_batches_tracked`` may be absent (BatchNorm's counter; unused in eval).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterable

import torch
from torch import nn

from synctalk_lib import hub
from synctalk_lib.errors import InputError

log = logging.getLogger("synctalk")

PREFIX = "audio_encoder."
FEATURE_DIM = 512

# (in, out, kernel, stride (H, W), padding, residual) per block; H = mel bins, W = time
LAYERS: tuple[tuple[int, int, int, tuple[int, int], int, bool], ...] = (
    (1, 32, 3, (1, 1), 1, False),
    (32, 32, 3, (1, 1), 1, True),
    (32, 32, 3, (1, 1), 1, True),
    (32, 64, 3, (3, 1), 1, False),
    (64, 64, 3, (1, 1), 1, True),
    (64, 64, 3, (1, 1), 1, True),
    (64, 128, 3, (3, 3), 1, False),
    (128, 128, 3, (1, 1), 1, True),
    (128, 128, 3, (1, 1), 1, True),
    (128, 256, 3, (3, 2), 1, False),
    (256, 256, 3, (1, 1), 1, True),
    (256, 512, 3, (1, 1), 0, False),
    (512, 512, 1, (1, 1), 0, False),
)


class ConvBlock(nn.Module):
    """Conv2d -> BatchNorm2d (-> + input) -> ReLU. ``[B, cin, H, W] -> [B, cout, H', W']``."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: tuple[int, int], padding: int, residual: bool):
        super().__init__()
        self.conv_block = nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, padding), nn.BatchNorm2d(cout))
        self.residual = residual
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv_block(x)
        if self.residual:
            out = out + x
        return self.act(out)


class AudioVisualEncoder(nn.Module):
    """The AVE audio branch. ``forward``: ``[B, 1, 80, 16]`` mel windows -> ``[B, 512]`` codes (>= 0).

    Attributes:
        weights_id: which weights are loaded (``ave:<sha8>``, ``ave-file:<sha8>`` or ``random``); set by
            ``load_ave`` and used as ``AudioFeatures.encoder_id``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.audio_encoder = nn.Sequential(*(ConvBlock(*spec) for spec in LAYERS))
        self.weights_id = "random"

    def forward(self, mel_windows: torch.Tensor) -> torch.Tensor:
        return self.audio_encoder(mel_windows).flatten(1)

    # --- official file layout
    def official_state_dict(self) -> dict[str, torch.Tensor]:
        """State dict with the official checkpoint's keys (no ``audio_encoder.`` prefix), contiguous CPU tensors."""
        return {k[len(PREFIX):]: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}

    def load_official_state_dict(self, state: dict[str, torch.Tensor], source: str = "weights") -> None:
        """Load official-layout tensors strictly (prefix optional; missing ``num_batches_tracked`` tolerated).

        Raises:
            InputError: the keys or shapes differ from the official AVE (another model's file).
        """
        prefixed = {(k if k.startswith(PREFIX) else PREFIX + k): v for k, v in state.items()}
        for key, value in self.state_dict().items():
            if key.endswith("num_batches_tracked") and key not in prefixed:
                prefixed[key] = value.clone()
        own = self.state_dict()
        missing = sorted(_bare(k) for k in set(own) - set(prefixed))
        unexpected = sorted(_bare(k) for k in set(prefixed) - set(own))
        wrong = [f"{_bare(k)} {list(prefixed[k].shape)} (expected {list(v.shape)})"
                 for k, v in own.items() if k in prefixed and prefixed[k].shape != v.shape]
        if missing or unexpected or wrong:
            details = "; ".join(part for part in (
                f"missing {', '.join(missing[:4])}{' ...' if len(missing) > 4 else ''}" if missing else "",
                f"unexpected {', '.join(unexpected[:4])}{' ...' if len(unexpected) > 4 else ''}" if unexpected else "",
                f"wrong shapes {', '.join(wrong[:4])}" if wrong else "") if part)
            raise InputError(f"{source} is not an audio-visual encoder checkpoint in the official SyncTalk layout "
                             f"({details}). Use the official audio_visual_encoder.pth or a file made by ave-train.")
        self.load_state_dict(prefixed, strict=True)


def official_key_shapes() -> dict[str, tuple[int, ...]]:
    """Every key of an official-layout AVE file (without the prefix) and its tensor shape, from ``LAYERS``."""
    shapes: dict[str, tuple[int, ...]] = {}
    for i, (cin, cout, kernel, *_rest) in enumerate(LAYERS):
        shapes[f"{i}.conv_block.0.weight"] = (cout, cin, kernel, kernel)
        for name in ("0.bias", "1.weight", "1.bias", "1.running_mean", "1.running_var"):
            shapes[f"{i}.conv_block.{name}"] = (cout,)
        shapes[f"{i}.conv_block.1.num_batches_tracked"] = ()
    return shapes


_SNIFF_BYTES = 1 << 20  # a .pth keeps its key names in the pickle at the start (legacy) or in data.pkl (zip)


def is_ave_file(path: Path | str) -> bool:
    """Whether a weights file holds an AVE in the official layout, judged without loading it (for file lists).

    ``.safetensors``: its header's keys and shapes are exactly the AVE's (``num_batches_tracked`` optional).
    ``.pth``/``.pt``: every AVE key name occurs in its pickle (nothing is unpickled) and no face encoder does
    (Wav2Lip's SyncNet shares the audio layout).
    """
    import json
    import struct
    import zipfile

    path = Path(path)
    expected = official_key_shapes()
    try:
        if path.suffix == ".safetensors":
            with open(path, "rb") as handle:
                size = struct.unpack("<Q", handle.read(8))[0]
                header = json.loads(handle.read(min(size, _SNIFF_BYTES)))
            shapes = {_bare(k): tuple(v["shape"]) for k, v in header.items() if k != "__metadata__"}
            required = {k for k in expected if not k.endswith("num_batches_tracked")}
            return required <= set(shapes) <= set(expected) and all(shapes[k] == expected[k] for k in shapes)
        if path.suffix not in (".pth", ".pt"):
            return False
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                pickled = next((n for n in archive.namelist() if n.endswith("data.pkl")), None)
                data = archive.read(pickled)[:_SNIFF_BYTES] if pickled else b""
        else:
            with open(path, "rb") as handle:
                data = handle.read(_SNIFF_BYTES)
    except (OSError, ValueError, KeyError, struct.error, zipfile.BadZipFile):
        return False
    names = [k for k in expected if not k.endswith("num_batches_tracked")]
    return b"face_encoder" not in data and all(k.encode() in data for k in names)


def _bare(key: str) -> str:
    """A key as the official file names it (without the ``audio_encoder.`` prefix)."""
    return key[len(PREFIX):] if key.startswith(PREFIX) else key


def file_id(path: Path | str, kind: str = "ave-file") -> str:
    """``<kind>:<first 8 hex of sha256>`` of a weights file (cached by size and mtime)."""
    return f"{kind}:{hub._cached_sha256(Path(path))[:8]}"


def load_ave(path: Path | str | None = None, models_dirs: Iterable[Path | str] | None = None,
             device: torch.device | str = "cpu") -> AudioVisualEncoder:
    """The AVE in eval mode on ``device``.

    Args:
        path: a local ``.safetensors`` / ``.pth`` in the official layout (e.g. from ``ave-train``); a bare file
            name is looked up in ``models_dirs``. ``None``: the official weights through the Hub registry
            (``hub.fetch("ave")``: models folder first, then download; sha256 checked; a safetensors copy is
            written next to the ``.pth`` on first load).
        models_dirs: models folders to search / download into.
        device: torch device.

    Raises:
        MissingWeightsError: official weights neither present nor downloadable (names file, URL and folder).
        InputError: ``path`` does not exist or is not an AVE checkpoint.
    """
    if path is None:
        weights = hub.fetch("ave", models_dirs)
        weights_id = f"ave:{hub.get_asset('ave').sha256[:8]}"
    else:
        weights = _resolve_local(Path(path), models_dirs)
        weights_id = file_id(weights)
    state = hub.load_state_dict(weights)
    model = AudioVisualEncoder()
    model.load_official_state_dict(state, source=str(weights))
    model.weights_id = weights_id
    log.debug("SyncTalk: loaded AVE %s from %s", weights_id, weights)
    return model.to(device).eval()


def _resolve_local(path: Path, models_dirs: Iterable[Path | str] | None) -> Path:
    if path.is_file():
        return path
    if not path.is_absolute():
        for folder in hub.search_dirs(models_dirs):
            if (Path(folder) / path).is_file():
                return Path(folder) / path
    if path.suffix not in {".safetensors", ".pth", ".pt"}:
        raise InputError(f"AVE weights file {path} must be a .safetensors or .pth file")
    raise InputError(f"AVE weights file not found: {path} (looked as given and in the models folders "
                     f"{', '.join(map(str, hub.search_dirs(models_dirs)))}). Train one with "
                     "`python -m synctalk_lib ave-train` or give the full path.")


@torch.no_grad()
def encode_windows(model: AudioVisualEncoder, windows: torch.Tensor, *, batch_size: int = 64,
                   on_step=None) -> torch.Tensor:
    """Run the AVE over mel windows.

    Args:
        model: an ``AudioVisualEncoder`` (put in eval mode here).
        windows: ``[N, 80, 16]`` float32 mel windows (``windows.gather_windows``).
        batch_size: windows per forward pass (results do not depend on it: BatchNorm uses running stats).
        on_step: ``on_step(done, total)`` after each batch.

    Returns:
        ``[N, 512]`` float32 on CPU.
    """
    model.eval()
    device = next(model.parameters()).device
    out = []
    total = len(windows)
    for start in range(0, total, batch_size):
        batch = windows[start:start + batch_size].to(device=device, dtype=torch.float32)
        out.append(model(batch[:, None]).float().cpu())
        if on_step is not None:
            on_step(min(start + batch_size, total), total)
    return torch.cat(out) if out else torch.zeros(0, FEATURE_DIM)
