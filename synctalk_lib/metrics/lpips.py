"""LPIPS perceptual distance (Zhang et al. 2018, v0.1) without torchvision: the AlexNet/VGG16 feature trunk and the
LPIPS linear heads are built here and filled from the two official weight files.

Weights (neither ships with this pack):

- the ImageNet trunk as torchvision publishes it: ``alexnet-owt-7be5be79.pth`` / ``vgg16-397923af.pth`` from
  https://download.pytorch.org/models/ — found in the models folders (also under ``lpips/``) or in torch's hub
  cache (``$TORCH_HOME/hub/checkpoints``, where torchvision puts it); the sha256 prefix in the name is checked;
- the LPIPS linear heads ``v0.1/alex.pth`` / ``vgg.pth``, shipped inside the ``lpips`` pip package (found without
  importing it, so torchvision is not needed) or copied into a models folder as ``lpips_v0.1_alex.pth``.

    model = load_lpips("alex", models_dirs)          # MissingWeightsError says what to get and where to put it
    d = model(pred, target, normalize=True)          # [B, 3, H, W] in [0, 1] -> [B]

Both files are read with ``torch.load(weights_only=True)`` (no code is unpickled).
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import torch
from torch import Tensor, nn

from synctalk_lib import hub
from synctalk_lib.errors import InputError, MissingWeightsError

SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
EPS = 1e-10


@dataclass(frozen=True)
class Backbone:
    """A torchvision ``features`` trunk: layer list and which ReLU outputs LPIPS taps."""

    name: str
    filename: str
    sha256_prefix: str
    layers: tuple[tuple, ...]
    """("conv", c_in, c_out, kernel, stride, padding) | ("relu",) | ("pool", kernel, stride), torchvision order."""
    taps: tuple[int, ...]
    """Indices (in ``layers``) of the ReLUs whose outputs are compared."""
    channels: tuple[int, ...]


def _vgg16_layers() -> tuple[tuple, ...]:
    layers: list[tuple] = []
    c_in = 3
    for v in (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"):
        if v == "M":
            layers.append(("pool", 2, 2))
        else:
            layers += [("conv", c_in, v, 3, 1, 1), ("relu",)]
            c_in = v
    return tuple(layers)


BACKBONES: dict[str, Backbone] = {
    "alex": Backbone(
        name="alex", filename="alexnet-owt-7be5be79.pth", sha256_prefix="7be5be79",
        layers=(("conv", 3, 64, 11, 4, 2), ("relu",), ("pool", 3, 2), ("conv", 64, 192, 5, 1, 2), ("relu",),
                ("pool", 3, 2), ("conv", 192, 384, 3, 1, 1), ("relu",), ("conv", 384, 256, 3, 1, 1), ("relu",),
                ("conv", 256, 256, 3, 1, 1), ("relu",)),
        taps=(1, 4, 7, 9, 11), channels=(64, 192, 384, 256, 256)),
    "vgg": Backbone(
        name="vgg", filename="vgg16-397923af.pth", sha256_prefix="397923af", layers=_vgg16_layers()[:30],
        taps=(3, 8, 15, 22, 29), channels=(64, 128, 256, 512, 512)),
}
TRUNK_URL = "https://download.pytorch.org/models/"


class LPIPS(nn.Module):
    """LPIPS v0.1 distance. Inputs ``[B, 3, H, W]`` in [-1, 1] (or [0, 1] with ``normalize=True``) -> ``[B]``."""

    def __init__(self, net: str = "alex"):
        super().__init__()
        if net not in BACKBONES:
            raise InputError(f"LPIPS network must be one of {sorted(BACKBONES)}, got {net!r}")
        self.spec = BACKBONES[net]
        modules: list[nn.Module] = []
        for layer in self.spec.layers:
            if layer[0] == "conv":
                _, c_in, c_out, k, s, p = layer
                modules.append(nn.Conv2d(c_in, c_out, k, stride=s, padding=p))
            elif layer[0] == "relu":
                modules.append(nn.ReLU())
            else:
                modules.append(nn.MaxPool2d(layer[1], layer[2]))
        self.features = nn.Sequential(*modules)
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in self.spec.channels)
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def _taps(self, x: Tensor) -> list[Tensor]:
        out = []
        for i, module in enumerate(self.features):
            x = module(x)
            if i in self.spec.taps:
                out.append(x)
        return out

    def forward(self, x: Tensor, y: Tensor, normalize: bool = False) -> Tensor:
        """Distance per image pair.

        Args:
            x, y: [B, 3, H, W] images in [-1, 1] (in [0, 1] when ``normalize``).
            normalize: map [0, 1] inputs to [-1, 1] first.

        Returns:
            [B] LPIPS distances (0 for identical images). Gradients flow to the inputs (weights are frozen).
        """
        if normalize:
            x, y = 2 * x - 1, 2 * y - 1
        fx = self._taps((x - self.shift) / self.scale)
        fy = self._taps((y - self.shift) / self.scale)
        total = x.new_zeros(x.shape[0])
        for a, b, lin in zip(fx, fy, self.lins):
            a = a / (a.pow(2).sum(dim=1, keepdim=True).sqrt() + EPS)
            b = b / (b.pow(2).sum(dim=1, keepdim=True).sqrt() + EPS)
            total = total + lin((a - b) ** 2).mean(dim=(1, 2, 3))
        return total


def _lpips_package_dir() -> Path | None:
    """Folder of the installed ``lpips`` package, found without importing it (its import needs torchvision)."""
    spec = importlib.util.find_spec("lpips")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _torch_hub_checkpoints() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def find_weights(net: str = "alex", models_dirs: Iterable[Path | str] | None = None) -> tuple[Path | None, Path | None]:
    """Where the trunk and the linear-head weights of LPIPS-``net`` are (None where not found)."""
    spec = BACKBONES[net]
    folders = hub.search_dirs(models_dirs)
    trunk_candidates = [f / spec.filename for f in folders] + [f / "lpips" / spec.filename for f in folders]
    trunk_candidates.append(_torch_hub_checkpoints() / spec.filename)
    head_name = f"lpips_v0.1_{net}.pth"
    head_candidates = [f / head_name for f in folders] + [f / "lpips" / head_name for f in folders]
    package = _lpips_package_dir()
    if package is not None:
        head_candidates.append(package / "weights" / "v0.1" / f"{net}.pth")
    trunk = next((p for p in trunk_candidates if p.is_file()), None)
    head = next((p for p in head_candidates if p.is_file()), None)
    return trunk, head


def missing_weights_message(net: str, trunk: Path | None, head: Path | None,
                            models_dirs: Iterable[Path | str] | None) -> str:
    spec = BACKBONES[net]
    folder = hub.search_dirs(models_dirs)[0]
    parts = [f"LPIPS ({net}) needs two weight files and "]
    missing = []
    if trunk is None:
        missing.append(f"the ImageNet trunk {spec.filename} is missing: download {TRUNK_URL}{spec.filename} into "
                       f"{folder} (or {_torch_hub_checkpoints()})")
    if head is None:
        missing.append(f"the LPIPS linear heads v0.1/{net}.pth are missing: `python -m pip install lpips` (the "
                       f"package ships them; torchvision is not needed), or copy that file to "
                       f"{folder / f'lpips_v0.1_{net}.pth'}")
    parts.append("; ".join(missing))
    parts.append(". Or choose perceptual_loss 'none' / skip LPIPS in the evaluation.")
    return "".join(parts)


def load_lpips(net: str = "alex", models_dirs: Iterable[Path | str] | None = None,
               device: torch.device | str | None = None) -> LPIPS:
    """Build LPIPS-``net`` and load its weights.

    Raises:
        MissingWeightsError: a weight file is missing (the message names the file, the URL or pip command, and the
            folder to put it in).
        InputError: a file is corrupt or has the wrong layout.
    """
    if net not in BACKBONES:
        raise InputError(f"LPIPS network must be one of {sorted(BACKBONES)}, got {net!r}")
    spec = BACKBONES[net]
    trunk, head = find_weights(net, models_dirs)
    if trunk is None or head is None:
        raise MissingWeightsError(missing_weights_message(net, trunk, head, models_dirs))
    digest = hub.sha256_of(trunk)
    if not digest.startswith(spec.sha256_prefix):
        raise InputError(f"{trunk} is not the torchvision {net} trunk (sha256 {digest[:8]}..., expected "
                         f"{spec.sha256_prefix}...); download it again from {TRUNK_URL}{spec.filename}")
    model = LPIPS(net)
    trunk_state = torch.load(str(trunk), map_location="cpu", weights_only=True)
    head_state = torch.load(str(head), map_location="cpu", weights_only=True)
    state = {k: v for k, v in trunk_state.items() if k.startswith("features.")}
    for i in range(len(spec.channels)):
        key = f"lin{i}.model.1.weight"
        if key not in head_state:
            raise InputError(f"{head} is not an LPIPS v0.1 weight file (no {key})")
        state[f"lins.{i}.weight"] = head_state[key]
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise InputError(f"LPIPS weights {trunk.name} / {head.name} do not fit the {net} network: {exc}") from exc
    return model.to(device) if device is not None else model


def lpips_distance(pred: Tensor, target: Tensor, model: LPIPS, batch: int = 8) -> list[float]:
    """LPIPS of each frame pair, full frame, inputs in [0, 1] (the original evaluation's setting).

    Args:
        pred, target: [B, H, W, 3] float in [0, 1].
        model: from :func:`load_lpips`.
        batch: frames per forward pass.
    """
    device = next(model.parameters()).device
    out: list[float] = []
    with torch.no_grad():
        for i in range(0, pred.shape[0], batch):
            a = torch.as_tensor(pred[i:i + batch]).to(device, torch.float32).permute(0, 3, 1, 2)
            b = torch.as_tensor(target[i:i + batch]).to(device, torch.float32).permute(0, 3, 1, 2)
            out += [float(v) for v in model(a, b, normalize=True)]
    return out


__all__ = ["LPIPS", "BACKBONES", "load_lpips", "lpips_distance", "find_weights"]
