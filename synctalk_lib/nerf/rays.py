"""Cameras and rays in NGP space, and the audio window of a frame.

Conventions (reference-synctalk.md 8.6): head poses (``HeadPose.c2w``) are OpenGL camera-to-world matrices in
metres (camera looks down -z, +y up). The renderer works in "NGP space": world axes permuted (NGP x = head y,
NGP y = head z, NGP z = head x), camera y and z columns negated (OpenCV-like camera: x right, y down, looking down
+z) and translations scaled by 4 (1 NGP unit = 0.25 m). Pixel (row, col) has its centre at (row + 0.5, col + 0.5).

    poses = head_pose_to_ngp(head_pose.c2w)                         # [F, 4, 4]
    rays_o, rays_d = image_rays(poses[0], focal, cx, cy, 512, 512)  # [H*W, 3] each, row-major
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import Tensor


def head_pose_to_ngp(c2w: np.ndarray | Tensor, scale: float = 4.0,
                     offset: Sequence[float] = (0.0, 0.0, 0.0)) -> Tensor:
    """Convert OpenGL head-space camera-to-world matrices (metres) to NGP space.

    Rows of the result (C = input): ``(C10, -C11, -C12, s C13 + o0)``, ``(C20, -C21, -C22, s C23 + o1)``,
    ``(C00, -C01, -C02, s C03 + o2)``, ``(0, 0, 0, 1)``.

    Args:
        c2w: [F, 4, 4] or [4, 4] camera-to-world.
        scale: metres -> NGP units factor (original: 4).
        offset: added to the scaled translation.

    Returns:
        [F, 4, 4] (or [4, 4]) float32 NGP camera-to-world.
    """
    c = torch.as_tensor(np.asarray(c2w) if not isinstance(c2w, Tensor) else c2w).to(torch.float32)
    single = c.dim() == 2
    c = c.reshape(-1, 4, 4)
    out = torch.zeros_like(c)
    sign = torch.tensor([1.0, -1.0, -1.0], dtype=c.dtype, device=c.device)
    off = torch.as_tensor(offset, dtype=c.dtype, device=c.device)
    for ngp_row, head_row in enumerate((1, 2, 0)):
        out[:, ngp_row, :3] = c[:, head_row, :3] * sign
        out[:, ngp_row, 3] = c[:, head_row, 3] * scale + off[ngp_row]
    out[:, 3, 3] = 1.0
    return out[0] if single else out


def pixel_rays(c2w_ngp: Tensor, focal: float, cx: float, cy: float, rows: Tensor,
               cols: Tensor) -> tuple[Tensor, Tensor]:
    """Rays through pixel centres.

    Args:
        c2w_ngp: [4, 4] NGP camera-to-world (one camera), or [N, 4, 4] one per pixel.
        focal, cx, cy: intrinsics in pixels.
        rows, cols: [N] integer (or float) pixel coordinates; the ray passes through (row + 0.5, col + 0.5).

    Returns:
        rays_o [N, 3], rays_d [N, 3] (unit length), float32.
    """
    c2w_ngp = c2w_ngp.to(torch.float32)
    x = (cols.to(torch.float32) + 0.5 - cx) / focal
    y = (rows.to(torch.float32) + 0.5 - cy) / focal
    d_cam = torch.nn.functional.normalize(torch.stack([x, y, torch.ones_like(x)], dim=-1), dim=-1)
    rot = c2w_ngp[..., :3, :3]
    if c2w_ngp.dim() == 2:
        rays_d = d_cam @ rot.T
        rays_o = c2w_ngp[:3, 3].expand_as(rays_d)
    else:
        rays_d = torch.einsum("nij,nj->ni", rot, d_cam)
        rays_o = c2w_ngp[:, :3, 3]
    return rays_o.contiguous(), rays_d


def image_rays(c2w_ngp: Tensor, focal: float, cx: float, cy: float, height: int,
               width: int) -> tuple[Tensor, Tensor]:
    """Rays of every pixel of a ``height x width`` image, row-major.

    Args:
        c2w_ngp: [4, 4] NGP camera-to-world.

    Returns:
        rays_o [H*W, 3], rays_d [H*W, 3].
    """
    device = c2w_ngp.device
    rows = torch.arange(height, device=device).repeat_interleave(width)
    cols = torch.arange(width, device=device).repeat(height)
    return pixel_rays(c2w_ngp, focal, cx, cy, rows, cols)


def audio_window(features: Tensor, index: int, window: int = 8) -> Tensor:
    """The audio rows around a frame: ``index - window // 2 .. index + window - window // 2 - 1``.

    Rows outside the feature array are zeros (original ``att=2``: frames i-4..i+3 for window 8).

    Args:
        features: [N, D] per-frame audio features.
        index: frame index (may be beyond N for padded renders; those rows are zeros).
        window: rows per window.

    Returns:
        [window, D] tensor on the features' device and dtype.
    """
    first = index - window // 2
    out = features.new_zeros(window, features.shape[1])
    lo, hi = max(first, 0), min(first + window, features.shape[0])
    if hi > lo:
        out[lo - first:hi - first] = features[lo:hi]
    return out


def audio_windows(features: Tensor, indices: Sequence[int] | Tensor, window: int = 8) -> Tensor:
    """Windows of several frames at once: [N, D] -> [B, window, D] (see :func:`audio_window`)."""
    idx = torch.as_tensor(indices, dtype=torch.long, device=features.device).reshape(-1, 1)
    rows = idx - window // 2 + torch.arange(window, device=features.device)[None]  # [B, W]
    valid = (rows >= 0) & (rows < features.shape[0])
    gathered = features[rows.clamp(0, max(features.shape[0] - 1, 0))]
    return gathered * valid[..., None].to(features.dtype)
