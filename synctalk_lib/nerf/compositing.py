"""Volume rendering of padded ray samples (paper Eq. 9): weights, then weighted and plain sums per ray.

``alpha_i = 1 - exp(-sigma_i * delta_i)``, ``T_i = exp(-sum_{j<i} sigma_j delta_j)``, ``w_i = alpha_i T_i``.
A sample counts only while the transmittance in front of it is at least ``1e-4`` (the original stops marching
there), which is applied as a mask so every ray is handled at once.

    weights, visited = render_weights(sigma, samples.deltas, samples.mask)
    rgb = accumulate(weights, colours)              # [N, S, 3] -> [N, 3]
    image = composite_background(rgb, weights.sum(-1), bg)
"""
from __future__ import annotations

import torch
from torch import Tensor

TRANSMITTANCE_EPS = 1e-4
"""Samples behind a transmittance below this are not visited (early ray termination)."""


def render_weights(sigma: Tensor, deltas: Tensor, mask: Tensor | None = None,
                   transmittance_eps: float = TRANSMITTANCE_EPS) -> tuple[Tensor, Tensor]:
    """Compositing weights of padded samples.

    Example (hand-worked, see tests): alphas [0, 0.3, 0.8, 0.8, 0.5] give transmittance
    [1, 1, 0.7, 0.14, 0.028] in front of each sample and weights [0, 0.3, 0.56, 0.112, 0.014].

    Args:
        sigma: [N, S] densities.
        deltas: [N, S] step lengths.
        mask: [N, S] bool real samples (None = all).
        transmittance_eps: early-termination threshold on the transmittance in front of a sample.

    Returns:
        weights [N, S] (0 for masked or unvisited samples) and visited [N, S] bool.
    """
    tau = sigma * deltas
    if mask is not None:
        tau = torch.where(mask, tau, torch.zeros_like(tau))
    acc = torch.cumsum(tau, dim=-1)
    exclusive = torch.cat([torch.zeros_like(acc[..., :1]), acc[..., :-1]], dim=-1)
    transmittance = torch.exp(-exclusive)
    alpha = 1.0 - torch.exp(-tau)
    visited = transmittance >= transmittance_eps
    if mask is not None:
        visited = visited & mask
    weights = torch.where(visited, alpha * transmittance, torch.zeros_like(alpha))
    return weights, visited


def accumulate(weights: Tensor, values: Tensor) -> Tensor:
    """Weighted sum along samples.

    Args:
        weights: [N, S].
        values: [N, S] or [N, S, C].

    Returns:
        [N] or [N, C].
    """
    if values.dim() == weights.dim():
        return (weights * values).sum(dim=-1)
    return (weights.unsqueeze(-1) * values).sum(dim=-2)


def composite_background(rgb: Tensor, opacity: Tensor, background: Tensor) -> Tensor:
    """Pixel colour ``rgb + (1 - opacity) * background``, clamped to [0, 1].

    Args:
        rgb: [N, 3] accumulated colour.
        opacity: [N] accumulated weight.
        background: [N, 3] or [3] background colour.

    Returns:
        [N, 3] pixel colours.
    """
    return (rgb + (1.0 - opacity).unsqueeze(-1) * background).clamp(0.0, 1.0)
