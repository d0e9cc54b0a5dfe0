"""Hyper-parameters of the SyncTalk head NeRF, as one frozen dataclass that saves to and loads from JSON.

Defaults reproduce the official head model (reference-synctalk.md sections 0, 2.3, 5 and 6). Sizes that follow
from these (encoder width, step size) are computed by the components, never typed in twice.

    config = NerfConfig(audio_in_dim=features.dim, num_codes=300)
    NerfConfig.from_dict(json.loads(text))   # unknown keys are reported by name and ignored
"""
from __future__ import annotations

import dataclasses
import logging
import math
import warnings
from dataclasses import dataclass
from typing import Any, Literal

MaskMode = Literal["ray", "loss", "none"]
Backend = Literal["auto", "torch", "tinycudann", "cuda_ext"]

MASK_MODES: tuple[str, ...] = ("ray", "loss", "none")
REFERENCE_GRID_RESOLUTION = 128
"""The original occupancy grid size; its cell diagonal sets the default marching step."""
BACKENDS: tuple[str, ...] = ("auto", "torch", "tinycudann", "cuda_ext")


@dataclass(frozen=True)
class NerfConfig:
    """Everything that shapes a SyncTalk head model (network sizes, encodings, renderer constants)."""

    audio_in_dim: int = 512
    """D of the AudioFeatures rows (512 for AVE, 1280 for mel); the audio MLP adapts to it."""
    audio_dim: int = 32
    """Width of the lip (audio) code that enters the density network."""
    audio_window: int = 8
    """Rows of audio features per frame: i - window//2 .. i + window//2 - 1 (original ``att=2``: i-4..i+3)."""
    expression_dim: int = 7
    """Number of upper-face expression coefficients (blendshapes) per frame."""
    individual_dim: int = 4
    """Width of the per-frame latent code fed to the colour network."""
    num_codes: int = 1
    """Rows of the per-frame latent code table (= number of training frames); row 0 is used for novel frames."""
    levels: int = 12
    """Levels of each 2-D multiresolution hash grid."""
    level_dim: int = 1
    """Features per level of each hash grid."""
    base_resolution: int = 64
    """Resolution of the coarsest hash level."""
    log2_hashmap_size: int = 14
    """log2 of the maximum number of table rows per level (16384)."""
    desired_resolution: int = 512
    """Resolution of the finest hash level (multiplied by ``bound``)."""
    bound: float = 1.0
    """Half-size of the cubic domain of the hash grids and the occupancy grid, in NGP units."""
    aabb: tuple[float, ...] = (-1.0, -0.5, -1.0, 1.0, 0.5, 1.0)
    """Render box (xmin, ymin, zmin, xmax, ymax, zmax) in NGP space; rays are marched only inside it."""
    max_steps: int = 16
    """Maximum samples per ray (original: 16); more (32, 64) trades speed for quality."""
    grid_resolution: int = 128
    """Cells per axis of the occupancy grid."""
    density_thresh: float = 10.0
    """Upper bound of the occupancy threshold on sigma (the threshold is min(mean density, this))."""
    min_near: float = 0.05
    """Lower clamp of the ray near distance, in NGP units."""
    mask_mode: MaskMode = "ray"
    """Facial-aware masked attention: "ray" gates audio/expression per ray by the lip/expression masks (paper
    Eq. 4); "loss" leaves the network unmasked and lets the trainer push the attention to 0 outside the regions
    (official code); "none" disables both."""
    use_audio_smoothing: bool = True
    """Temporal attention over the audio window (off: only the centre row's code is used)."""
    use_expression: bool = True
    """Feed the expression coefficients through the expression attention (off: no expression input)."""
    use_individual_codes: bool = True
    """Feed a per-frame latent code to the colour network (off: no code input)."""
    use_uncertainty: bool = True
    """Predict the per-sample uncertainty used by the uncertainty-weighted loss (off: uncertainty is 0)."""
    backend: Backend = "auto"
    """Hash-grid implementation: "torch" (reference, CPU and CUDA), "tinycudann", "cuda_ext"; "auto" picks the
    fastest available and falls back to torch."""
    march_step: float | None = None
    """Marching step in NGP units; None = the original's constant 2 sqrt(3) bound / 128 = 0.0270633 (independent
    of ``grid_resolution``, so a coarser occupancy grid does not coarsen the sampling)."""

    def __post_init__(self) -> None:
        if self.mask_mode not in MASK_MODES:
            raise ValueError(f"mask_mode must be one of {MASK_MODES}, got {self.mask_mode!r}")
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {self.backend!r}")
        if len(self.aabb) != 6:
            raise ValueError(f"aabb needs 6 numbers (xmin, ymin, zmin, xmax, ymax, zmax), got {self.aabb!r}")
        object.__setattr__(self, "aabb", tuple(float(v) for v in self.aabb))
        for name in ("audio_in_dim", "audio_dim", "audio_window", "levels", "level_dim", "base_resolution",
                     "max_steps", "grid_resolution", "num_codes"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.bound <= 0:
            raise ValueError(f"bound must be positive, got {self.bound}")
        if self.march_step is not None and not self.march_step > 0:
            raise ValueError(f"march_step must be positive (or None for the default), got {self.march_step}")

    @property
    def step_size(self) -> float:
        """Constant marching step in NGP units: ``march_step`` or 2 sqrt(3) bound / 128 (0.0270633)."""
        if self.march_step is not None:
            return float(self.march_step)
        return 2.0 * math.sqrt(3.0) * self.bound / REFERENCE_GRID_RESOLUTION

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of every field (tuples become lists)."""
        out = dataclasses.asdict(self)
        out["aabb"] = list(self.aabb)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "NerfConfig":
        """Build from a dict; unknown keys are named in one warning and ignored, missing keys take their defaults
        (logged at debug level: partial dicts are normal, e.g. the trainer's overrides or an older file)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            warnings.warn(f"NerfConfig: ignoring unknown keys {unknown} (written by another version?)", stacklevel=2)
        defaulted = sorted(names - set(data))
        if defaulted:
            logging.getLogger("synctalk").debug("NerfConfig: keys not given, using defaults: %s", defaulted)
        values = {k: v for k, v in data.items() if k in names}
        if "aabb" in values:
            values["aabb"] = tuple(values["aabb"])
        return cls(**values)

    def replace(self, **changes: Any) -> "NerfConfig":
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)
