"""Parity of the Triton compositing kernel with its PyTorch twin ``cuda_ext.composite.composite_packed_torch``
(outputs and gradients), plus hand-worked cases. CPU through Triton's interpreter in CI; GPU where present. Tiny
sizes (the interpreter is slow).
"""
from __future__ import annotations

import math

import pytest
import torch

from cuda_ext_testing import DEVICE, assert_close, require_triton

pytestmark = pytest.mark.usefixtures("one_thread")

require_triton()

from cuda_ext.composite import composite_packed_torch  # noqa: E402
from cuda_ext.triton_composite import composite_packed_triton  # noqa: E402

FIELDS = ("opacity", "depth", "weighted", "plain")


def random_packed(gen: torch.Generator, rays: int = 24, max_count: int = 16, sigma_scale: float = 40.0):
    counts = torch.randint(0, max_count + 1, (rays,), generator=gen)
    counts[0] = 0  # a ray without samples
    counts[1] = max_count
    offsets = torch.cat([torch.zeros(1, dtype=torch.int64), counts.cumsum(0)]).to(DEVICE)
    m = int(counts.sum())
    sigma = (torch.rand(m, generator=gen) * sigma_scale).to(DEVICE).requires_grad_(True)
    deltas = torch.full((m,), 0.0270633, device=DEVICE)
    t = (torch.rand(m, generator=gen) * 2 + 0.5).to(DEVICE)
    values = torch.rand(m, 4, generator=gen).to(DEVICE).requires_grad_(True)
    plain = torch.rand(m, 2, generator=gen).to(DEVICE).requires_grad_(True)
    return sigma, deltas, t, offsets, values, plain


def test_hand_worked_five_samples():
    """tau = [0, ln(1/0.7), ln 5, ln 5, ln 5] -> T = [1, 1, 0.7, 0.14, 0.028], w = [0, 0.3, 0.56, 0.112, 0.0224]."""
    tau = torch.tensor([0.0, math.log(1 / 0.7), math.log(5), math.log(5), math.log(5)], device=DEVICE)
    t = torch.arange(1.0, 6.0, device=DEVICE)
    colour = torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0], [1.0, 1.0, 1.0], [0.5, 0.5, 0.5]], device=DEVICE)
    out = composite_packed_triton(tau, torch.ones(5, device=DEVICE), t, torch.tensor([0, 5], device=DEVICE), colour)
    weights = torch.tensor([0.0, 0.3, 0.56, 0.112, 0.0224])
    assert_close(out.opacity, weights.sum()[None], 1e-5, "opacity (1 - 0.0056)")
    assert_close(out.depth, (weights * torch.arange(1.0, 6.0)).sum()[None], 1e-5, "depth (2.84)")
    assert_close(out.weighted, (weights[:, None] * colour.cpu()).sum(0, keepdim=True), 1e-5, "colour")


def test_early_termination_stops_weights_and_plain_sums():
    """After T < 1e-4 (here after the first sample, T = e^-10) samples are not visited: no weight, no plain sum."""
    sigma = torch.tensor([10.0, 10.0, 10.0], device=DEVICE)
    plain = torch.tensor([1.0, 2.0, 4.0], device=DEVICE)
    out = composite_packed_triton(sigma, torch.ones(3, device=DEVICE), torch.arange(3.0, device=DEVICE),
                                  torch.tensor([0, 3], device=DEVICE), plain=plain)
    assert_close(out.opacity, torch.tensor([1 - math.exp(-10)]), 1e-6, "opacity")
    assert_close(out.plain, torch.tensor([[1.0]]), 1e-6, "plain sum over visited samples only")


@pytest.mark.parametrize("sigma_scale", [5.0, 400.0])  # translucent rays, and rays that turn opaque early
def test_packed_forward_and_gradients_match_reference(sigma_scale):
    gen = torch.Generator().manual_seed(42)
    sigma, deltas, t, offsets, values, plain = random_packed(gen, sigma_scale=sigma_scale)
    fast = composite_packed_triton(sigma, deltas, t, offsets, values, plain)
    ref = composite_packed_torch(sigma, deltas, t, offsets, values, plain)
    for name in FIELDS:
        assert_close(getattr(fast, name), getattr(ref, name), 1e-5, name)
    upstream = {name: torch.randn(getattr(ref, name).shape, generator=gen).to(DEVICE) for name in FIELDS}

    def loss(out):
        return sum((getattr(out, name) * upstream[name]).sum() for name in FIELDS)

    g_fast = torch.autograd.grad(loss(fast), (sigma, values, plain))
    g_ref = torch.autograd.grad(loss(ref), (sigma, values, plain))
    for name, a, b in zip(("sigma", "values", "plain"), g_fast, g_ref):
        assert_close(a, b, 1e-5, f"gradient of {name}")


def test_float16_inputs_match_float32_reference():
    gen = torch.Generator().manual_seed(9)
    sigma, deltas, t, offsets, values, plain = random_packed(gen, rays=8)
    fast = composite_packed_triton(sigma.detach().half(), deltas, t, offsets, values.detach().half(),
                                   plain.detach().half())
    ref = composite_packed_torch(sigma.detach().half().float(), deltas, t, offsets, values.detach().half().float(),
                                 plain.detach().half().float())
    for name in FIELDS:
        assert_close(getattr(fast, name), getattr(ref, name), 1e-3, f"fp16 {name}")
