"""Shared set-up of the cuda_ext parity tests: Triton's CPU interpreter, one thread, relative-error checks."""
from __future__ import annotations

import os
import sys

import pytest
import torch

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")


def require_triton() -> None:
    """Skip the calling test module unless triton can run here (its interpreter on a CPU-only machine)."""
    if not torch.cuda.is_available():
        if "triton" in sys.modules and os.environ.get("TRITON_INTERPRET") != "1":
            # triton reads the variable when it is imported; an earlier import (not ours) fixed it to "compile"
            pytest.skip("triton was imported before TRITON_INTERPRET=1 was set; run these tests in their own "
                        "process: python -m pytest tests/test_cuda_ext_*.py", allow_module_level=True)
        os.environ.setdefault("TRITON_INTERPRET", "1")  # must precede the first import of triton
    pytest.importorskip("triton", reason="triton is not installed; the cuda_ext kernels are optional "
                                         "(python -m pip install triton)")


def assert_close(actual: torch.Tensor, expected: torch.Tensor, rtol: float, what: str) -> None:
    """Relative error against the largest reference magnitude, with the max abs diff in the message."""
    actual, expected = actual.detach().float().cpu(), expected.detach().float().cpu()
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    diff = float((actual - expected).abs().max()) if actual.numel() else 0.0
    scale = float(expected.abs().max()) if expected.numel() else 0.0
    assert diff <= rtol * max(scale, 1e-12), \
        f"{what}: max abs diff {diff:.3g} (reference scale {scale:.3g}, rtol {rtol})"
