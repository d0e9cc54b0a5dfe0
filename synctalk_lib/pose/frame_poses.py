"""Every frame's head pose with the 3D points held fixed (stage 3 of the bundle adjustment).

With the points known, a frame's pose depends only on that frame's observations: a Levenberg-Marquardt solve with
6 unknowns per frame (``rough_tracker.fit_poses``), run over chunks of frames so memory stays the same whatever
the clip's length. The temporal smoothness prior (``SmoothnessPrior``) ties each frame to two neighbours on
either side; with it the normal equations of the whole clip form one block-banded system (6 unknowns per frame,
17 sub-diagonals), solved by banded Cholesky in time and memory proportional to the number of frames.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from synctalk_lib.pose.camera import axis_angle_to_matrix
from synctalk_lib.pose.rough_tracker import CHUNK_FRAMES, _frame_costs, _skew, fit_poses, pose_normal_equations
STEP_TOLERANCE = 1e-6
"""A frame has converged once its Levenberg-Marquardt step is below this (radians and metres: 0.00006 degrees, 1 um)."""


@dataclass(frozen=True)
class Observed:
    """Pixels of ``M`` 3D points in every frame and their weights, as stored (float32 tracks stay float32);
    ``take(rows)`` converts the rows of some frames to float64 tensors, so only one chunk is converted at a time."""

    pixels: np.ndarray
    """[N, M, 2]."""
    weights: np.ndarray
    """[N, M]: 0 where a point was not seen; otherwise its weight (e.g. 1 / sigma^2)."""

    def take(self, rows, device):
        import torch

        pixels = torch.as_tensor(np.asarray(self.pixels[rows]), dtype=torch.float64, device=device)
        weights = torch.as_tensor(np.asarray(self.weights[rows]), dtype=torch.float64, device=device)
        return pixels, weights


def _take(observed: Sequence[Observed], rows, device):
    """The rows of several point sets side by side (point axis): ``(pixels [n, M, 2], weights [n, M])``."""
    import torch

    taken = [part.take(rows, device) for part in observed]
    return torch.cat([p for p, _ in taken], 1), torch.cat([w for _, w in taken], 1)


@dataclass(frozen=True)
class SmoothnessPrior:
    """``weight * (rotation_px^2 / 2 * sum ||R[i+1] - 2 R[i] + R[i-1]||_F^2 + translation_px^2 * sum ||same of t||^2)``.

    ``rotation_px`` and ``translation_px`` turn a rotation (radians) and a translation (metres) into image motion;
    ``||second difference of R||_F / sqrt(2)`` is the rotation's second difference in radians, to first order.
    """

    weight: float
    rotation_px: float
    translation_px: float

    def cost(self, rotation, translation) -> float:
        if rotation.shape[0] < 3:
            return 0.0
        rot = ((rotation[2:] - 2 * rotation[1:-1] + rotation[:-2]) ** 2).sum() / 2.0 * self.rotation_px ** 2
        trans = ((translation[2:] - 2 * translation[1:-1] + translation[:-2]) ** 2).sum() * self.translation_px ** 2
        return float(self.weight * (rot + trans))

    def normal_equations(self, rotation, translation):
        """Gradient [N, 6] and the block bands ``(H[i, i], H[i+1, i], H[i+2, i])`` of the prior's Gauss-Newton
        system in the unknowns of ``pose_normal_equations``."""
        import torch

        n, dtype, device = rotation.shape[0], rotation.dtype, rotation.device
        bands = [torch.zeros(max(n - o, 0), 6, 6, dtype=dtype, device=device) for o in range(3)]
        grad = torch.zeros(n, 6, dtype=dtype, device=device)
        if n < 3:
            return grad, bands
        # d vec(exp(d) R) / d d_k = vec([e_k]x R): the rotation's 9 entries against its 3 unknowns.
        axes = _skew(torch.eye(3, dtype=dtype, device=device))  # [k, 3, 3]
        jac = torch.einsum("kab,nbc->nack", axes, rotation).reshape(n, 9, 3)
        w_rot = self.weight * self.rotation_px ** 2  # cost = w_rot / 2 * |r|^2 per residual
        w_trans = 2.0 * self.weight * self.translation_px ** 2
        r_rot = (rotation[2:] - 2 * rotation[1:-1] + rotation[:-2]).reshape(-1, 9)
        r_trans = translation[2:] - 2 * translation[1:-1] + translation[:-2]
        m = n - 2
        eye = torch.eye(3, dtype=dtype, device=device)
        for x, cx in enumerate((1.0, -2.0, 1.0)):
            grad[x:x + m, :3] += w_rot * cx * torch.einsum("mak,ma->mk", jac[x:x + m], r_rot)
            grad[x:x + m, 3:] += w_trans * cx * r_trans
            for y, cy in enumerate((1.0, -2.0, 1.0)[:x + 1]):
                block = bands[x - y][y:y + m]  # H[m + x, m + y]
                block[:, :3, :3] += w_rot * cx * cy * torch.einsum("mak,mal->mkl", jac[x:x + m], jac[y:y + m])
                block[:, 3:, 3:] += w_trans * cx * cy * eye
        return grad, bands


def refine_frame_poses(points, observed: Sequence[Observed], huber_px, rotation, translation, focal: float, cx: float,
                       cy: float, *, smoothness: SmoothnessPrior | None = None, iterations: int = 20,
                       chunk: int = CHUNK_FRAMES):
    """Every frame's pose at fixed ``points`` [M, 3] (torch float64), from ``rotation`` [N, 3, 3] and
    ``translation`` [N, 3]; ``observed``: their pixels and weights (point sets side by side, ``M`` points in
    all); ``huber_px``: [M] or a number.

    Returns:
        ``(rotation, translation)``, torch, on the points' device.
    """
    if smoothness is None or smoothness.weight <= 0 or rotation.shape[0] < 3:
        return _independent(points, observed, huber_px, rotation, translation, focal, cx, cy, iterations, chunk)
    return _banded(points, observed, huber_px, rotation, translation, focal, cx, cy, smoothness, iterations, chunk)


def _independent(points, observed, huber_px, rotation, translation, focal, cx, cy, iterations, chunk):
    """Frames are independent without the prior: ``fit_poses`` one chunk at a time."""
    rotation, translation = rotation.clone(), translation.clone()
    for first in range(0, rotation.shape[0], chunk):
        rows = slice(first, first + chunk)
        pixels, weights = _take(observed, rows, points.device)
        rotation[rows], translation[rows], _ = fit_poses(points, pixels, rotation[rows], translation[rows], focal,
                                                         cx, cy, huber_px=huber_px, weights=weights,
                                                         iterations=iterations, tolerance=STEP_TOLERANCE)
    return rotation, translation


def _system(points, observed, huber_px, rotation, translation, focal, cx, cy, smoothness, chunk):
    """Total cost, gradient [N, 6] and block bands of the whole clip's Gauss-Newton system, chunk by chunk."""
    grad, bands = smoothness.normal_equations(rotation, translation)
    cost = smoothness.cost(rotation, translation)
    for first in range(0, rotation.shape[0], chunk):
        rows = slice(first, first + chunk)
        pixels, weights = _take(observed, rows, points.device)
        frame_cost, residual, cam, dist = _frame_costs(points, pixels, rotation[rows], translation[rows], focal, cx,
                                                       cy, huber_px, weights)
        hess, g = pose_normal_equations(cam, residual, dist, translation[rows], focal, huber_px, weights)
        bands[0][rows] += hess
        grad[rows] += g
        cost += float(frame_cost.sum())
    return cost, grad, bands


def _banded(points, observed, huber_px, rotation, translation, focal, cx, cy, smoothness, iterations, chunk):
    """Levenberg-Marquardt on the whole clip at once, with one damping for all frames."""
    args = (points, observed, huber_px)
    cost, grad, bands = _system(*args, rotation, translation, focal, cx, cy, smoothness, chunk)
    damping = 1e-3
    for _ in range(iterations):
        step = _solve_banded(bands, grad, damping)
        new_rotation = axis_angle_to_matrix(step[:, :3]) @ rotation
        new_translation = translation + step[:, 3:]
        if float(step.abs().max()) < STEP_TOLERANCE:
            break
        new = _system(*args, new_rotation, new_translation, focal, cx, cy, smoothness, chunk)
        if new[0] < cost and bool((new_translation[:, 2] > 0).all()):
            rotation, translation, (cost, grad, bands) = new_rotation, new_translation, new
            damping = max(damping * 0.3, 1e-7)
        else:
            damping = min(damping * 10.0, 1e7)
    return rotation, translation


def _solve_banded(bands, grad, damping: float):
    """``(H + damping * diag(H)) x = -grad`` for the symmetric block-banded ``H`` given by its lower bands."""
    import scipy.linalg
    import torch

    n = grad.shape[0]
    lower = np.zeros((18, 6 * n))
    diagonal = bands[0].detach().cpu().numpy().copy()
    idx = np.arange(6)
    diag_values = diagonal[:, idx, idx]
    diagonal[:, idx, idx] += damping * diag_values + 1e-12 * max(float(diag_values.mean()), 1e-300)
    for offset, band in enumerate([diagonal] + [b.detach().cpu().numpy() for b in bands[1:]]):
        cols = np.arange(band.shape[0]) * 6
        for a in range(6):
            for b in range(6):
                k = offset * 6 + a - b  # H[row, col] sits at lower[row - col, col]
                if k >= 0:
                    lower[k, cols + b] = band[:, a, b]
    x = scipy.linalg.solveh_banded(lower, -grad.detach().cpu().numpy().reshape(-1), lower=True)
    return torch.as_tensor(x.reshape(n, 6), dtype=grad.dtype, device=grad.device)
