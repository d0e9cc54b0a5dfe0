"""PyTorch twin of the compositing kernel (``triton_composite.py``): volume rendering of packed samples (paper
Eq. 9) into per-ray sums.

The rule, per ray, front to back: ``tau_i = sigma_i * delta_i``, transmittance ``T_i = exp(-sum_{j<i} tau_j)``,
``alpha_i = 1 - exp(-tau_i)``; a sample is *visited* while ``T_i >= 1e-4`` (the original stops marching there:
early ray termination) and then has the weight ``w_i = alpha_i T_i``. Per ray: ``opacity = sum w_i``,
``depth = sum w_i t_i``, ``weighted = sum w_i v_i`` for C value channels (colour, uncertainty, ...) and
``plain = sum_{visited} p_i`` for P unweighted channels (attention norms).

    out = composite_packed_torch(sigma, deltas, t, offsets, values, plain)   # [M] ... -> [N], [N, C], [N, P]

:func:`render_weights` is the rule on padded rows ``[N, S]``; the packed twin lays each ray's samples out in a row
and applies it. Example (hand-worked, see tests): alphas [0, 0.3, 0.8, 0.8, 0.5] give transmittance
[1, 1, 0.7, 0.14, 0.028] in front of each sample and weights [0, 0.3, 0.56, 0.112, 0.014].
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

TRANSMITTANCE_EPS = 1e-4
"""Samples behind a transmittance below this are not visited (early ray termination)."""


class Composited(NamedTuple):
    """Per-ray compositing results (N rays)."""

    opacity: Tensor
    """[N] sum of weights (accumulated alpha)."""
    depth: Tensor
    """[N] weighted sum of the sample distances t."""
    weighted: Tensor
    """[N, C] weighted sums of the value channels."""
    plain: Tensor
    """[N, P] unweighted sums over the visited samples of the plain channels."""


def render_weights(sigma: Tensor, deltas: Tensor, mask: Tensor | None = None,
                   transmittance_eps: float = TRANSMITTANCE_EPS) -> tuple[Tensor, Tensor]:
    """Compositing weights of padded samples (the rule).

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
    """Weighted sum along samples: weights [N, S] and values [N, S] or [N, S, C] -> [N] or [N, C]."""
    if values.dim() == weights.dim():
        return (weights * values).sum(dim=-1)
    return (weights.unsqueeze(-1) * values).sum(dim=-2)


def composite_packed_torch(sigma: Tensor, deltas: Tensor, t: Tensor, offsets: Tensor, values: Tensor | None = None,
                           plain: Tensor | None = None, *, max_samples: int | None = None,
                           transmittance_eps: float = TRANSMITTANCE_EPS) -> Composited:
    """Composite packed samples (ray r owns samples ``offsets[r]:offsets[r + 1]``, front to back).

    Args:
        sigma: [M] densities; deltas: [M] step lengths; t: [M] sample distances (for depth).
        offsets: [N + 1] int sample offsets per ray.
        values: [M, C] (or [M]) channels to weight, e.g. colour; None = none.
        plain: [M, P] (or [M]) channels summed unweighted over the visited samples; None = none.
        max_samples: the largest per-ray count, when known (rows are laid out that wide).
        transmittance_eps: early-termination threshold.

    Returns:
        Composited; differentiable in sigma, values and plain.
    """
    n = offsets.shape[0] - 1
    counts = offsets[1:] - offsets[:-1]
    width = max_samples if max_samples is not None else max(int(counts.max()) if n else 0, 1)
    mask = torch.arange(width, device=sigma.device)[None, :] < counts[:, None]  # [N, width]: the real samples

    def rows(x: Tensor) -> Tensor:  # [M, ...] -> [N, width, ...]: each ray's samples first in its row, then zeros
        return x.new_zeros((n, width) + x.shape[1:]).masked_scatter(mask.view(n, width, *([1] * (x.dim() - 1))), x)

    weights, visited = render_weights(rows(sigma), rows(deltas), mask, transmittance_eps)
    weighted = accumulate(weights, rows(_channels(values))) if values is not None else weights.new_zeros(n, 0)
    plain_sum = (rows(_channels(plain)) * visited.unsqueeze(-1).to(plain.dtype)).sum(dim=1) if plain is not None \
        else weights.new_zeros(n, 0)
    return Composited(opacity=weights.sum(dim=-1), depth=accumulate(weights, rows(t).to(weights.dtype)),
                      weighted=weighted, plain=plain_sum)


def _channels(x: Tensor) -> Tensor:
    """[M] -> [M, 1]; [M, K] unchanged."""
    return x.unsqueeze(-1) if x.dim() == 1 else x
