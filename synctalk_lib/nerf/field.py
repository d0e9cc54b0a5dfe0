"""The SyncTalk head field (paper Eq. 12): tri-plane position encoding, facial-aware masked attention on the lip
and expression inputs, density and colour MLPs, SH view encoding, per-frame latent code and uncertainty.

Per sample (reference-synctalk.md 5.4):

    enc_x = triplane(x)                                    [M, 36]
    att_a = aud_ch_att_net(enc_x); a = code * att_a * g_lip [M, 32]    (g_lip: per-ray lip gate, 1 if unmasked)
    att_e = eye_att_net(enc_x);   e = expr * att_e * g_eye  [M, 7]
    h = sigma_net([enc_x, a, e]); sigma = exp(min(h0, 15)); geo = h[1:]
    rgb = sigmoid(color_net([SH(d), geo, latent])) * 1.002 - 0.001
    uncertainty = softplus(unc_net(enc_x.detach()))

The exponent is clamped at 15 (sigma <= 3.3e6; opacity over one step already saturates near sigma = 400) so that
fp16 autocast cannot overflow to inf; the original has no clamp. State-dict keys of the MLPs match the official
ones (``sigma_net.net.0.weight``, ...).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from synctalk_lib.nerf.config import NerfConfig
from synctalk_lib.nerf.sh import SHEncoding
from synctalk_lib.nerf.triplane import TriPlaneEncoding

SIGMA_EXP_CLAMP = 15.0
"""Upper clamp of the density exponent (overflow safety under fp16)."""


class MLP(nn.Module):
    """Bias-free MLP: ``layers`` Linear layers, ReLU between them, nothing after the last (keys ``net.<j>.weight``)."""

    def __init__(self, in_dim: int, out_dim: int, hidden_dim: int, layers: int):
        super().__init__()
        dims = [in_dim] + [hidden_dim] * (layers - 1) + [out_dim]
        self.net = nn.ModuleList(nn.Linear(a, b, bias=False) for a, b in zip(dims[:-1], dims[1:]))
        self.out_dim = out_dim

    def get_out_dim(self) -> int:
        return self.out_dim

    def forward(self, x: Tensor) -> Tensor:
        """[M, in_dim] -> [M, out_dim]."""
        for j, layer in enumerate(self.net):
            x = layer(x)
            if j < len(self.net) - 1:
                x = torch.relu(x)
        return x


@dataclass
class FieldOutputs:
    """Per-sample outputs of the field (M samples)."""

    sigma: Tensor
    """[M] density (>= 0)."""
    rgb: Tensor
    """[M, 3] colour in [-0.001, 1.001]."""
    amb_aud: Tensor
    """[M] ||audio attention|| (unmasked; for the official attention-mask loss)."""
    amb_eye: Tensor
    """[M] ||expression attention|| (0 without expression input)."""
    uncertainty: Tensor
    """[M] softplus uncertainty (0 when disabled)."""


def _per_sample(value: Tensor, count: int, name: str) -> Tensor:
    """Broadcast a [C] vector or pass through a [count, C] matrix."""
    if value.dim() == 1:
        return value.unsqueeze(0).expand(count, -1)
    if value.dim() == 2 and value.shape[0] == count:
        return value
    raise ValueError(f"{name} must be [C] or [{count}, C], got {tuple(value.shape)}")


def _gate(gate: Tensor | None, features: Tensor) -> Tensor:
    return features if gate is None else features * gate.unsqueeze(-1).to(features.dtype)


class SyncTalkField(nn.Module):
    """Density/colour field of the head, conditioned on a lip code, expression coefficients and a latent code."""

    def __init__(self, config: NerfConfig):
        super().__init__()
        self.config = config
        self.encoder = TriPlaneEncoding.from_config(config)
        self.direction_encoding = SHEncoding(4)
        enc_dim = self.encoder.get_out_dim()
        self.aud_ch_att_net = MLP(enc_dim, config.audio_dim, 64, 2)
        self.eye_att_net = MLP(enc_dim, config.expression_dim, 64, 2) if config.use_expression else None
        sigma_in = enc_dim + config.audio_dim + (config.expression_dim if config.use_expression else 0)
        self.geo_feat_dim = 64
        self.sigma_net = MLP(sigma_in, 1 + self.geo_feat_dim, 64, 3)
        code_dim = config.individual_dim if config.use_individual_codes else 0
        self.color_net = MLP(self.direction_encoding.get_out_dim() + self.geo_feat_dim + code_dim, 3, 64, 2)
        self.unc_net = MLP(enc_dim, 1, 32, 2) if config.use_uncertainty else None

    def geometry(self, positions: Tensor, audio_code: Tensor, expression: Tensor | None,
                 lip_gate: Tensor | None = None, expr_gate: Tensor | None = None
                 ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """Density part of the field.

        Args:
            positions: [M, 3] NGP-space points.
            audio_code: [A] or [M, A] lip code.
            expression: [E] or [M, E] expression coefficients (ignored when the model has no expression input).
            lip_gate, expr_gate: [M] multipliers of the audio / expression channels (None = 1).

        Returns:
            sigma [M], geo_feat [M, 64], enc_x [M, 36], att_a [M, A], att_e [M, E] (empty [M, 0] without expression).
        """
        count = positions.shape[0]
        enc_x = self.encoder(positions)
        att_a = self.aud_ch_att_net(enc_x)
        inputs = [enc_x, _gate(lip_gate, _per_sample(audio_code, count, "audio_code").to(enc_x.dtype) * att_a)]
        if self.eye_att_net is not None:
            if expression is None:
                raise ValueError("this model takes expression coefficients; pass expression=[E] (zeros = neutral)")
            att_e = self.eye_att_net(enc_x)
            expr = _per_sample(expression, count, "expression").to(enc_x.dtype)
            inputs.append(_gate(expr_gate, expr * att_e))
        else:
            att_e = enc_x.new_zeros(count, 0)
        h = self.sigma_net(torch.cat(inputs, dim=-1))
        sigma = torch.exp(h[:, 0].float().clamp(max=SIGMA_EXP_CLAMP))  # float32 even under autocast
        return sigma, h[:, 1:], enc_x, att_a, att_e

    def density(self, positions: Tensor, audio_code: Tensor, expression: Tensor | None,
                lip_gate: Tensor | None = None, expr_gate: Tensor | None = None) -> Tensor:
        """[M, 3] points -> [M] density (arguments as in :meth:`geometry`)."""
        return self.geometry(positions, audio_code, expression, lip_gate, expr_gate)[0]

    def forward(self, positions: Tensor, directions: Tensor, audio_code: Tensor, expression: Tensor | None,
                latent_code: Tensor | None = None, lip_gate: Tensor | None = None,
                expr_gate: Tensor | None = None) -> FieldOutputs:
        """Evaluate the field at samples.

        Args:
            positions: [M, 3] NGP-space points.
            directions: [M, 3] ray directions.
            audio_code: [A] or [M, A].
            expression: [E] or [M, E] (None only for models without expression input).
            latent_code: [K] or [M, K] per-frame code (ignored when the model has none; None = zeros).
            lip_gate, expr_gate: [M] channel gates (None = 1).

        Returns:
            FieldOutputs with M rows.
        """
        sigma, geo_feat, enc_x, att_a, att_e = self.geometry(positions, audio_code, expression, lip_gate, expr_gate)
        count = positions.shape[0]
        parts = [self.direction_encoding(directions).to(geo_feat.dtype), geo_feat]
        if self.config.use_individual_codes:
            if latent_code is None:
                latent_code = geo_feat.new_zeros(self.config.individual_dim)
            parts.append(_per_sample(latent_code, count, "latent_code").to(geo_feat.dtype))
        rgb = torch.sigmoid(self.color_net(torch.cat(parts, dim=-1))) * 1.002 - 0.001
        if self.unc_net is not None:
            uncertainty = nn.functional.softplus(self.unc_net(enc_x.detach())[:, 0])
        else:
            uncertainty = sigma.new_zeros(count)
        return FieldOutputs(sigma=sigma, rgb=rgb, amb_aud=att_a.norm(dim=-1), amb_eye=att_e.norm(dim=-1),
                            uncertainty=uncertainty)
