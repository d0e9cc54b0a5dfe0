"""SyncTalk head model: audio encoder + field + occupancy grid, rendered by the one renderer.

    model = SyncTalkNeRF(NerfConfig(audio_in_dim=512, num_codes=300))
    code = model.encode_audio(audio_windows(features, [i]))[0]            # [32]
    out = model.render(rays_o, rays_d, audio_code=code, expression=expr, code_index=i, bg=bg,
                       lip_mask=lip, expr_mask=1 - lip)
    out.rgb                                                                # [N, 3]

Rendering is :func:`synctalk_lib.nerf.renderer.volume_render` with this model's field, render box and occupancy
grid; large ray batches are processed in chunks so memory stays bounded.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from synctalk_lib.errors import InputError
from synctalk_lib.nerf import backends
from synctalk_lib.nerf.audio_net import AudioEncoder
from synctalk_lib.nerf.config import NerfConfig
from synctalk_lib.nerf.field import FieldOutputs, SyncTalkField
from synctalk_lib.nerf.occupancy import OccupancyGrid
from synctalk_lib.nerf.renderer import RenderOutput, volume_render


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
               chunk_size: int | None = None, kernels: backends.Kernels | None = None) -> RenderOutput:
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
            kernels: marching and compositing implementation (None: the config's backend for the rays' device,
                :func:`backends.kernels_for`).

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
        kernels = kernels or backends.kernels_for(rays_o.device, self.config.backend)
        parts = []
        for start in range(0, max(n, 1), chunk_size):
            sl = slice(start, start + chunk_size)
            pick = {k: (v[sl] if v is not None else None) for k, v in per_ray.items()}
            parts.append(self._render_chunk(
                rays_o[sl], rays_d[sl], kernels=kernels,
                audio_code=pick["audio_code"] if pick["audio_code"] is not None else audio_code,
                expression=pick["expression"] if pick["expression"] is not None else expression,
                code_index=pick["code_index"] if pick["code_index"] is not None else code_index,
                bg=pick["bg"] if pick["bg"] is not None else bg,
                lip_mask=pick["lip_mask"], expr_mask=pick["expr_mask"], perturb=perturb, generator=generator))
        return parts[0] if len(parts) == 1 else RenderOutput.cat(parts)

    def _render_chunk(self, rays_o: Tensor, rays_d: Tensor, *, kernels: backends.Kernels, audio_code: Tensor,
                      expression: Tensor | None, code_index: int | Tensor | None, bg: Tensor,
                      lip_mask: Tensor | None, expr_mask: Tensor | None, perturb: bool,
                      generator: torch.Generator | None) -> RenderOutput:
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
                             perturb=perturb, generator=generator, kernels=kernels)

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
