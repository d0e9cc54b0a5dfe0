"""Training presets: ``quick`` (CPU, minutes), ``standard`` (GPU, 512 x 512) and ``paper`` (the paper's schedule).

``auto`` (the default of the ``train`` / ``demo`` commands and the TrainSyncTalk node) is not a preset of its own:
:func:`resolve_preset` turns it into ``standard`` on a CUDA device and ``quick`` anywhere else.

Every number is a field of :class:`TrainConfig`, so any preset can be changed one value at a time::

    config = get_preset("quick", coarse_steps=4000, photometric="l1")

Stages (run in this order, each may be 0 steps):

- ``coarse``: random rays, mostly in the head region; photometric loss with uncertainty weighting.
- ``fine``: like the original's second stage: steps alternate between random patches (photometric + LPIPS,
  weight 0.1) and the lips square (photometric + LPIPS, weight 0.01) when ``lips_every`` is 2; uncertainty off.
"""
from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass, field
from typing import Any, Literal

PRESETS: tuple[str, ...] = ("quick", "standard", "paper")
PRESET_CHOICES: tuple[str, ...] = ("auto",) + PRESETS
"""What users may ask for: a preset, or ``auto`` (see :func:`resolve_preset`)."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything that shapes a training run (the model's own sizes are in ``nerf``)."""

    preset: str = "quick"
    """Name of the preset these values started from."""
    resolution: int = 128
    """Longer image side used for training and rendering, pixels (0 = the clip's own)."""
    coarse_steps: int = 3200
    """Steps of the coarse stage (random rays)."""
    fine_steps: int = 800
    """Steps of the fine stage (patches + LPIPS, alternating with lips steps)."""
    rays_per_step: int = 2048
    """Rays per coarse step (one frame per step)."""
    patch_size: int = 32
    """Side of the LPIPS patches in pixels (at the training resolution)."""
    patches_per_step: int = 2
    """Patches per fine step."""
    lips_every: int = 2
    """In the fine stage every ``lips_every``-th step renders the lips square instead of patches (0 = never)."""
    face_fraction: float = 0.75
    """Share of random rays drawn inside the head region."""
    lip_weight: float = 1.0
    """Extra photometric weight of rays inside the lips square."""
    speaker_variants: float = 0.5
    """Share of steps whose audio window comes from the subject's own speech played faster or slower
    (``audio.augment``: other pitch, formants and rate, the same mouth), so the lips learn to follow speech rather
    than one voice (0 = never)."""
    photometric: Literal["l1", "mse"] = "mse"
    """Per-ray colour loss: "mse" (paper / ER-NeRF; measured better on the reference clip's held-out frames: +1.5
    dB PSNR, +0.012 SSIM at equal steps) or "l1" (official code)."""
    perceptual_loss: Literal["lpips", "none"] = "lpips"
    """Perceptual loss of the fine stage; "none" trains the fine stage with the photometric loss only."""
    lpips_patch_weight: float = 0.1
    lpips_lips_weight: float = 0.01
    uncertainty_weight: float = 0.01
    """Uncertainty regulariser weight in the coarse stage (0 = no uncertainty weighting)."""
    entropy_weight: float = 1e-4
    attention_mask_weight: float = 1e-4
    """Attention-mask loss weight (used when the model's mask_mode is "loss")."""
    lr_grid: float = 1e-2
    """Learning rate of the hash grids."""
    lr_net: float = 1e-3
    """Learning rate of the networks and latent codes."""
    lr_coarse_end: float = 0.5
    """LR factor reached at the end of the coarse stage (decays exponentially from 1)."""
    lr_fine_end: float = 0.05
    """LR factor reached at the end of the fine stage (decays exponentially from lr_coarse_end)."""
    occupancy_interval: int = 16
    """Steps between occupancy-grid updates."""
    occupancy_decay: float = 0.95
    occupancy_fraction: float = 1.0
    """Share of the occupancy cells re-evaluated per update (1 = all, the original; lower is cheaper on CPU)."""
    checkpoint_every: int = 500
    """Steps between checkpoints (0 = only at the end and on interruption)."""
    val_frames: str | float | None = None
    """Held-out frames (None: the last 1/11; "300:331"; a fraction)."""
    max_eval_frames: int = 32
    """Held-out frames rendered for the final PSNR: at most this many, evenly spaced over the held-out frames
    (0 = all of them). 32 covers the reference clip's 31 held-out frames; a 5-minute clip's 695 would take longer
    to render on a CPU than the quick preset's training."""
    seed: int = 0
    log_every: int = 50
    """Steps between status lines."""
    nerf: dict[str, Any] = field(default_factory=dict)
    """Overrides of the model's NerfConfig (e.g. {"max_steps": 32, "mask_mode": "loss"})."""

    @property
    def total_steps(self) -> int:
        return self.coarse_steps + self.fine_steps

    def replace(self, **changes: Any) -> "TrainConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            warnings.warn(f"TrainConfig: ignoring unknown keys {unknown}", stacklevel=2)
        return cls(**{k: v for k, v in data.items() if k in names})

    def validate(self) -> None:
        for name in ("coarse_steps", "fine_steps", "rays_per_step", "patch_size", "patches_per_step",
                     "occupancy_interval", "checkpoint_every", "log_every", "resolution", "lips_every"):
            if int(getattr(self, name)) < 0:
                raise ValueError(f"{name} must not be negative, got {getattr(self, name)}")
        if self.total_steps <= 0:
            raise ValueError("training needs at least one step (coarse_steps + fine_steps > 0)")
        if self.photometric not in ("l1", "mse"):
            raise ValueError(f"photometric must be 'l1' or 'mse', got {self.photometric!r}")
        from synctalk_lib.nerf.config import NerfConfig

        unknown = sorted(set(self.nerf) - {f.name for f in dataclasses.fields(NerfConfig)})
        if unknown:  # a typo here would otherwise train hours with the default silently
            raise ValueError(f"nerf has unknown model settings {unknown}; the settings are NerfConfig's fields")
        if not 0.0 <= self.speaker_variants <= 1.0:
            raise ValueError(f"speaker_variants must be in [0, 1], got {self.speaker_variants}")
        if not 0.0 < self.occupancy_fraction <= 1.0:
            raise ValueError(f"occupancy_fraction must be in (0, 1], got {self.occupancy_fraction}")
        if self.perceptual_loss not in ("lpips", "none"):
            raise ValueError(f"perceptual_loss must be 'lpips' or 'none', got {self.perceptual_loss!r}")


_PRESET_VALUES: dict[str, dict[str, Any]] = {
    # CPU, minutes: 128 px, 4000 steps of 2048 rays; a coarser occupancy grid (64^3) keeps its updates cheap.
    "quick": dict(resolution=128, coarse_steps=3200, fine_steps=800, rays_per_step=2048, patch_size=32,
                  patches_per_step=2, checkpoint_every=500, log_every=50,
                  nerf={"grid_resolution": 64, "max_steps": 16}),
    # GPU: full 512 px, 30k + 10k steps of 16k rays.
    "standard": dict(resolution=512, coarse_steps=30000, fine_steps=10000, rays_per_step=16384, patch_size=64,
                     patches_per_step=4, checkpoint_every=2000, log_every=200),
    # The paper's schedule: 100k coarse + 25k fine iterations of 256^2 = 65536 rays (16 patches of 64^2).
    "paper": dict(resolution=512, coarse_steps=100000, fine_steps=25000, rays_per_step=65536, patch_size=64,
                  patches_per_step=16, checkpoint_every=5000, log_every=500),
}


def resolve_preset(name: str, device: Any) -> str:
    """The preset ``name`` stands for on ``device``: ``auto`` is ``standard`` on a CUDA device (the pack's GPU
    kernels make its 40k steps at 512 px practical) and ``quick`` anywhere else (``standard`` would take many hours
    on a CPU); other names are returned unchanged.

    Args:
        name: "auto" or a preset name.
        device: a ``torch.device`` or its name ("cuda", "cuda:1", "cpu", "mps").
    """
    if name != "auto":
        return name
    kind = getattr(device, "type", None) or str(device).split(":", 1)[0]
    return "standard" if kind == "cuda" else "quick"


def get_preset(name: str, **overrides: Any) -> TrainConfig:
    """The preset ``name`` with ``overrides`` applied (unknown names raise a ValueError)."""
    if name == "auto":
        raise ValueError("preset 'auto' depends on the device: resolve it first with resolve_preset('auto', device)")
    if name not in _PRESET_VALUES:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    values = dict(_PRESET_VALUES[name])
    nerf = dict(values.pop("nerf", {}))
    nerf.update(overrides.pop("nerf", None) or {})
    values.update({k: v for k, v in overrides.items() if v is not None})
    config = TrainConfig(preset=name, nerf=nerf, **values)
    config.validate()
    return config
