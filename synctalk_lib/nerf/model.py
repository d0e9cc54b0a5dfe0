"""SyncTalk head model: audio encoder + field + occupancy grid, and the renderer that wires them together.

    model = SyncTalkNeRF(NerfConfig(audio_in_dim=512, num_codes=300))
    code = model.encode_audio(audio_windows(features, [i]))[0]            # [32]
    out = model.render(rays_o, rays_d, audio_code=code, expression=expr, code_index=i, bg=bg,
                       lip_mask=lip, expr_mask=1 - lip)
    out.rgb                                                                # [N, 3]

Rendering = near/far against the render box -> occupancy-skipping marching -> field on the real samples ->
compositing over the per-ray background (sampler.py, field.py, compositing.py). Large ray batches are processed
in chunks so memory stays bounded.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, fields
from typing import Callable, Sequence

import torch
from torch import Tensor, nn

from synctalk_lib.errors import InputError
from synctalk_lib.nerf import backends
from synctalk_lib.nerf.audio_net import AudioEncoder
from synctalk_lib.nerf.compositing import TRANSMITTANCE_EPS, accumulate, composite_background, render_weights
from synctalk_lib.nerf.config import NerfConfig
from synctalk_lib.nerf.field import FieldOutputs, SyncTalkField
from synctalk_lib.nerf.occupancy import OccupancyGrid
from synctalk_lib.nerf.sampler import RaySamples, march_rays, ray_aabb_intersect


@dataclass
class RenderOutput:
    """Per-ray render results (N rays)."""

    rgb: Tensor
    """[N, 3] colour composited over the background, clamped to [0, 1]."""
    alpha: Tensor
    """[N] accumulated weight (opacity of the head)."""
    depth: Tensor
    """[N] expected distance along the ray, NGP units (weighted sum of sample distances; 0 where empty)."""
    amb_aud: Tensor
    """[N] sum over visited samples of ||audio attention|| (official attention-mask loss)."""
    amb_eye: Tensor
    """[N] sum over visited samples of ||expression attention||."""
    uncertainty: Tensor
    """[N] weighted sum of the per-sample uncertainty."""

    @staticmethod
    def cat(parts: list["RenderOutput"]) -> "RenderOutput":
        """Concatenate chunk outputs along the ray dimension."""
        return RenderOutput(**{f.name: torch.cat([getattr(p, f.name) for p in parts]) for f in fields(RenderOutput)})


FieldFn = Callable[[Tensor, Tensor, Tensor], FieldOutputs]
"""(positions [M, 3], directions [M, 3], ray index [M]) -> FieldOutputs of M samples."""


STAGE_SAMPLES = 4
"""Samples per ray evaluated per stage when rendering without gradients (early ray termination)."""


def volume_render(field_fn: FieldFn, rays_o: Tensor, rays_d: Tensor, bg: Tensor, *, aabb: Sequence[float] | Tensor,
                  step: float, max_steps: int, min_near: float = 0.05, occupancy: OccupancyGrid | None = None,
                  perturb: bool = False, generator: torch.Generator | None = None,
                  early_stop: bool | None = None) -> RenderOutput:
    """Render rays through any field: box near/far -> marching -> field on the real samples -> compositing.

    Args:
        field_fn: evaluates the field at the M real samples (see ``FieldFn``).
        rays_o, rays_d: [N, 3] origins and unit directions.
        bg: [N, 3] or [3] background colour.
        aabb: render box (xmin, ymin, zmin, xmax, ymax, zmax).
        step: marching step ``dt``; max_steps: samples per ray; min_near: near clamp.
        occupancy: grid whose empty cells are skipped (None = dense marching).
        perturb, generator: jitter of the first sample (training).
        early_stop: evaluate the field in stages of ``STAGE_SAMPLES`` samples and stop a ray once its
            transmittance is below 1e-4 — the same image, less work. None = on when gradients are off.

    Returns:
        RenderOutput with N rows.
    """
    near, far, _ = ray_aabb_intersect(rays_o, rays_d, aabb, min_near)
    samples = march_rays(rays_o, rays_d, near, far, step=step, max_steps=max_steps, occupancy=occupancy,
                         perturb=perturb, generator=generator)
    if early_stop is None:
        early_stop = not torch.is_grad_enabled()
    stage = STAGE_SAMPLES if early_stop and max_steps > STAGE_SAMPLES else max_steps
    values = _evaluate_in_stages(field_fn, samples, rays_d, stage)
    sigma = values["sigma"]
    weights, visited = render_weights(sigma, samples.deltas.to(sigma.dtype), samples.mask)
    rgb = accumulate(weights, values["rgb"])
    alpha = weights.sum(dim=-1)
    visited_f = visited.to(weights.dtype)
    return RenderOutput(
        rgb=composite_background(rgb, alpha, bg.to(rgb.dtype)),
        alpha=alpha,
        depth=accumulate(weights, samples.t.to(weights.dtype)),
        amb_aud=(values["amb_aud"] * visited_f).sum(dim=-1),
        amb_eye=(values["amb_eye"] * visited_f).sum(dim=-1),
        uncertainty=accumulate(weights, values["uncertainty"]),
    )


def _evaluate_in_stages(field_fn: FieldFn, samples: RaySamples, rays_d: Tensor, stage: int) -> dict[str, Tensor]:
    """Field outputs at the real samples, padded to [N, S(, C)] (zeros elsewhere).

    Samples are evaluated ``stage`` slots at a time; after each stage, rays whose transmittance fell below
    ``TRANSMITTANCE_EPS`` are dropped (their later samples would not be visited anyway).
    """
    n, slots = samples.mask.shape
    alive = torch.ones(n, dtype=torch.bool, device=samples.mask.device)
    padded: dict[str, Tensor] = {}
    optical_depth = None
    for first in range(0, slots, stage):
        live = samples.mask[:, first:first + stage] & alive[:, None]
        ray_idx, slot_idx = live.nonzero(as_tuple=True)
        slot_idx = slot_idx + first
        if len(ray_idx) or not padded:
            out = field_fn(samples.positions[ray_idx, slot_idx], rays_d[ray_idx], ray_idx)
            for f in fields(FieldOutputs):
                value = getattr(out, f.name)
                if f.name not in padded:
                    padded[f.name] = value.new_zeros((n, slots) + value.shape[1:])
                padded[f.name] = padded[f.name].index_put((ray_idx, slot_idx), value)
        if first + stage >= slots:
            break
        tau = (padded["sigma"][:, first:first + stage] * samples.deltas[:, first:first + stage]).sum(dim=-1)
        optical_depth = tau if optical_depth is None else optical_depth + tau
        alive &= torch.exp(-optical_depth) >= TRANSMITTANCE_EPS
        if not bool(alive.any()):
            break
    return padded


class SyncTalkNeRF(nn.Module):
    """The head NeRF of SyncTalk (audio-driven, expression-conditioned, per-frame codes, occupancy grid).

    Args:
        config: hyper-parameters (sizes, renderer constants, ablation switches).
    """

    individual_codes: Tensor
    """[num_codes, individual_dim] per-frame latent codes (row = training frame; row 0 for novel frames)."""

    def __init__(self, config: NerfConfig):
        super().__init__()
        self.config = config
        self.audio = AudioEncoder(config.audio_in_dim, config.audio_dim, config.audio_window,
                                  smoothing=config.use_audio_smoothing)
        self.field = SyncTalkField(config)
        self.occupancy = OccupancyGrid(config.grid_resolution, config.bound, config.density_thresh)
        self.individual_codes = nn.Parameter(torch.randn(config.num_codes, config.individual_dim) * 0.1)
        self.register_buffer("aabb", torch.tensor(config.aabb, dtype=torch.float32), persistent=False)

    # ------------------------------------------------------------------------------------------------ inputs
    def encode_audio(self, windows: Tensor) -> Tensor:
        """Lip codes of audio windows.

        Args:
            windows: [B, W, D] feature rows (``rays.audio_windows``), W = config.audio_window, D = audio_in_dim.

        Returns:
            [B, audio_dim] lip codes.
        """
        if windows.shape[-1] != self.config.audio_in_dim:
            raise InputError(f"audio features have {windows.shape[-1]} values per frame but this model was built "
                             f"for {self.config.audio_in_dim}; encode the audio with the same encoder as training")
        return self.audio(windows.to(self.individual_codes.dtype))

    def latent_code(self, code_index: int | Tensor | None) -> Tensor | None:
        """Per-frame code row(s): int -> [K]; [N] long -> [N, K]; None -> row 0 (novel frames)."""
        if not self.config.use_individual_codes:
            return None
        if code_index is None:
            code_index = 0
        if isinstance(code_index, Tensor) and code_index.dim() > 0:
            return self.individual_codes[code_index.long()]
        index = int(code_index)
        if not 0 <= index < self.config.num_codes:
            raise IndexError(f"code_index {index} is outside the latent code table (0..{self.config.num_codes - 1})")
        return self.individual_codes[index]

    # ----------------------------------------------------------------------------------------------- render
    def render(self, rays_o: Tensor, rays_d: Tensor, *, audio_code: Tensor, expression: Tensor,
               code_index: int | Tensor | None, bg: Tensor, lip_mask: Tensor | None = None,
               expr_mask: Tensor | None = None, perturb: bool = False, generator: torch.Generator | None = None,
               chunk_size: int | None = None) -> RenderOutput:
        """Render rays.

        Args:
            rays_o, rays_d: [N, 3] NGP-space origins and unit directions.
            audio_code: [audio_dim] lip code of the frame (or [N, audio_dim] per ray).
            expression: [E] expression coefficients (or [N, E] per ray).
            code_index: row of the per-frame code table (None = row 0, for novel frames), or [N] per ray.
            bg: [N, 3] background colour per ray (or [3]).
            lip_mask, expr_mask: [N] in 0..1; with ``mask_mode="ray"`` the audio channel of every sample of ray r is
                multiplied by ``lip_mask[r]`` and the expression channel by ``expr_mask[r]`` (None = all ones).
                Ignored for other mask modes.
            perturb: jitter sample positions (training); False renders deterministically.
            generator: random generator for the jitter.
            chunk_size: rays per internal chunk (default 65536 on CUDA, 16384 otherwise).

        Returns:
            RenderOutput with N rows.
        """
        n = rays_o.shape[0]
        if chunk_size is None:
            chunk_size = 65536 if rays_o.is_cuda else 16384
        use_masks = self.config.mask_mode == "ray"
        per_ray = {"audio_code": audio_code if audio_code.dim() == 2 else None,
                   "expression": expression if expression is not None and expression.dim() == 2 else None,
                   "bg": bg if bg.dim() == 2 else None,
                   "lip_mask": lip_mask if use_masks else None,
                   "expr_mask": expr_mask if use_masks else None,
                   "code_index": code_index if isinstance(code_index, Tensor) and code_index.dim() > 0 else None}
        render_chunk = self._chunk_renderer(rays_o)
        parts = []
        for start in range(0, max(n, 1), chunk_size):
            sl = slice(start, start + chunk_size)
            pick = {k: (v[sl] if v is not None else None) for k, v in per_ray.items()}
            parts.append(render_chunk(
                rays_o[sl], rays_d[sl],
                audio_code=pick["audio_code"] if pick["audio_code"] is not None else audio_code,
                expression=pick["expression"] if pick["expression"] is not None else expression,
                code_index=pick["code_index"] if pick["code_index"] is not None else code_index,
                bg=pick["bg"] if pick["bg"] is not None else bg,
                lip_mask=pick["lip_mask"], expr_mask=pick["expr_mask"], perturb=perturb, generator=generator))
        return parts[0] if len(parts) == 1 else RenderOutput.cat(parts)

    def _chunk_renderer(self, rays_o: Tensor) -> Callable[..., RenderOutput]:
        """The chunk renderer for these rays: cuda_ext's fast path for CUDA rays when the config's backend allows
        it and the kernels work here, else the PyTorch path below (the reference)."""
        kernels = backends.kernels_for(rays_o.device, self.config.backend)
        if kernels.name == "cuda_ext":
            return functools.partial(backends.cuda_ext_module("renderer").render_chunk, self, kernels=kernels)
        return self._render_chunk

    def _render_chunk(self, rays_o: Tensor, rays_d: Tensor, *, audio_code: Tensor, expression: Tensor | None,
                      code_index: int | Tensor | None, bg: Tensor, lip_mask: Tensor | None,
                      expr_mask: Tensor | None, perturb: bool, generator: torch.Generator | None) -> RenderOutput:
        latent = self.latent_code(code_index)

        def field_fn(positions: Tensor, directions: Tensor, ray_idx: Tensor) -> FieldOutputs:
            def per_sample(value: Tensor | None) -> Tensor | None:  # [N, C] per ray -> [M, C] per sample
                return value[ray_idx] if value is not None and value.dim() == 2 else value

            return self.field(positions, directions, audio_code=per_sample(audio_code),
                              expression=per_sample(expression), latent_code=per_sample(latent),
                              lip_gate=lip_mask[ray_idx] if lip_mask is not None else None,
                              expr_gate=expr_mask[ray_idx] if expr_mask is not None else None)

        cfg = self.config
        return volume_render(field_fn, rays_o, rays_d, bg, aabb=self.aabb, step=cfg.step_size,
                             max_steps=cfg.max_steps, min_near=cfg.min_near, occupancy=self.occupancy,
                             perturb=perturb, generator=generator)

    # -------------------------------------------------------------------------------------------- occupancy
    @torch.no_grad()
    def update_occupancy(self, audio_code: Tensor, expression: Tensor, *, decay: float = 0.95,
                         generator: torch.Generator | None = None, fraction: float = 1.0) -> None:
        """Fold the current density (for one frame's conditioning) into the occupancy grid.

        The density is evaluated with the audio and expression channels ungated (lip/expression masks = 1).

        Args:
            audio_code: [audio_dim] lip code of a (random) training frame.
            expression: [E] its expression coefficients.
            decay: factor on the old grid values.
            generator: random generator for the per-cell jitter.
            fraction: share of the cells to re-evaluate (1 = all, the original; e.g. 0.25 on CPU), see
                :meth:`OccupancyGrid.update`.
        """
        self.occupancy.update(lambda x: self.field.density(x, audio_code, expression), decay=decay,
                              fraction=fraction, generator=generator)

    @torch.no_grad()
    def mark_untrained_cells(self, poses_ngp: Tensor, focal: float, cx: float, cy: float) -> None:
        """Mark cells no training camera sees as never occupied.

        Args:
            poses_ngp: [F, 4, 4] NGP-space camera-to-world of the training frames.
            focal, cx, cy: intrinsics in pixels.
        """
        self.occupancy.mark_untrained(poses_ngp, focal, cx, cy)

    # ------------------------------------------------------------------------------------------- optimiser
    def param_groups(self, lr_grid: float = 1e-2, lr_net: float = 1e-3) -> list[dict]:
        """AdamW parameter groups like the original (reference-synctalk.md 9.2); each group has a ``name``.

        Hash grids: lr_grid, weight decay 0.01 (AdamW default in the original); audio MLP, field MLPs and codes:
        lr_net, no decay; audio attention: 5 * lr_net, decay 1e-4.
        """
        field = self.field
        groups = [
            {"name": "audio_net", "params": list(self.audio.audio_net.parameters()), "lr": lr_net,
             "weight_decay": 0.0},
            {"name": "encoders", "params": list(field.encoder.parameters()), "lr": lr_grid, "weight_decay": 0.01},
            {"name": "nets", "params": [p for m in (field.sigma_net, field.color_net, field.aud_ch_att_net,
                                                    field.unc_net, field.eye_att_net) if m is not None
                                        for p in m.parameters()] + [self.individual_codes],
             "lr": lr_net, "weight_decay": 0.0},
        ]
        if self.audio.audio_att_net is not None:
            groups.append({"name": "audio_att_net", "params": list(self.audio.audio_att_net.parameters()),
                           "lr": 5 * lr_net, "weight_decay": 1e-4})
        return groups
