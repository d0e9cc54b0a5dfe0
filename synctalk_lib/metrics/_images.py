"""Shared input handling for the image metrics."""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def as_frames(images: Tensor | np.ndarray, name: str) -> Tensor:
    """[H, W, 3] or [B, H, W, 3] float (0..1) or uint8 -> [B, H, W, 3] float64 tensor in 0..1."""
    t = torch.as_tensor(images)
    if t.dtype == torch.uint8:
        t = t.to(torch.float64) / 255.0
    else:
        t = t.detach().to(torch.float64)
    if t.dim() == 3:
        t = t.unsqueeze(0)
    if t.dim() != 4 or t.shape[-1] not in (1, 3):
        raise ValueError(f"{name} must be [H, W, 3] or [B, H, W, 3], got {tuple(t.shape)}")
    return t.cpu()


def matching_frames(pred: Tensor | np.ndarray, target: Tensor | np.ndarray) -> tuple[Tensor, Tensor]:
    """Both inputs as [B, H, W, 3] float64, checked to have the same shape."""
    a, b = as_frames(pred, "pred"), as_frames(target, "target")
    if a.shape != b.shape:
        raise ValueError(f"pred {tuple(a.shape)} and target {tuple(b.shape)} must have the same shape")
    return a, b
