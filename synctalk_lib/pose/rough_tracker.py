"""Rough head-motion tracker (paper Eq. 5-6): the focal length, then a rotation and translation for every frame.

The rigid face template (``face_model``) is fitted to the rigid 2D landmarks of every frame:

1. **Focal search.** For each candidate focal length (log-spaced over ``focal_range``, then a golden-section
   refinement around the best one) every frame's pose is re-initialised -- rotation from MediaPipe's matrix,
   translation by linear least squares -- and refined; the focal with the lowest landmark cost wins. A subset of
   frames (at most ``search_frames``, evenly spaced) is enough to rank candidates; the original used every 10th.
2. **Per-frame fit.** At that focal, all frames are re-initialised and refined.

The refinement is a batched Levenberg-Marquardt solve (6 unknowns per frame, all frames at once, in torch)
instead of the original's thousands of Adam steps: it converges to the same minimum in about 20 iterations and
runs in well under a second on a CPU. The landmark cost is robust (Huber on each point's pixel distance, scale
set from the data), so a few badly placed landmarks do not pull the pose or the focal length.
"""
from __future__ import annotations

from dataclasses import dataclass, field


import numpy as np

from synctalk_lib.pose.camera import axis_angle_to_matrix, project, transform_points
from synctalk_lib.progress import StepCallback


CHUNK_FRAMES = 256
"""Frames fitted together: bounds the working memory of the per-frame fits whatever the clip's length."""
DEFAULT_FOCAL_RANGE = (0.8, 5.0)
"""Focal lengths searched by default, in multiples of the frame's longer side."""

#: Median of the norm of a 2-D isotropic Gaussian with unit sigma per axis: sqrt(2 ln 2).
_MEDIAN_NORM_PER_SIGMA = 1.1774


@dataclass(frozen=True)
class RoughFit:
    """Result of the rough tracker (``N`` frames, OpenCV head-to-camera poses)."""

    focal: float
    rotation: np.ndarray
    """[N, 3, 3] float64."""
    translation: np.ndarray
    """[N, 3] float64 metres."""
    residual_px: np.ndarray
    """[N, L] float64 pixel distance of each rigid landmark after the fit."""
    huber_px: float
    """Huber threshold used (pixels)."""
    focal_costs: list[tuple[float, float]] = field(default_factory=list)
    """Every (focal, mean robust cost) evaluated during the search, sorted by focal."""
    at_range_edge: bool = False
    """True when the best focal is at an end of the search range (widen the range)."""


# ------------------------------------------------------------------------------------------------ robust cost
def huber(dist, k: float):
    """Huber cost of pixel distances (quadratic up to ``k``, then linear), torch [...] -> [...]."""
    import torch

    return torch.where(dist <= k, 0.5 * dist * dist, k * (dist - 0.5 * k))


def _huber_weight(dist, k: float):
    """IRLS weight of the Huber cost: 1 inside ``k``, ``k / d`` outside."""
    return (k / dist.clamp_min(1e-12)).clamp(max=1.0)


# ---------------------------------------------------------------------------------------------- initialisation
def init_translation(points, observed, rotation, focal: float, cx: float, cy: float, weights=None):
    """Per-frame translation by linear least squares, given the rotation and the focal length.

    For ``p = R X + t`` the projection equations ``(u - cx) p_z = f p_x`` (and the same for y) are linear in ``t``.

    Args:
        points: [L, 3] template points (metres), torch.
        observed: [N, L, 2] pixels.
        rotation: [N, 3, 3] OpenCV head-to-camera rotations.
        weights: optional [N, L] observation weights.

    Returns:
        [N, 3] translations.
    """
    import torch

    rx = transform_points(rotation, torch.zeros_like(rotation[:, :, 0]), points)  # [N, L, 3]
    du = observed[..., 0] - cx
    dv = observed[..., 1] - cy
    zeros, fs = torch.zeros_like(du), torch.full_like(du, focal)
    rows_u = torch.stack([fs, zeros, -du], -1)  # [N, L, 3]
    rows_v = torch.stack([zeros, fs, -dv], -1)
    a = torch.cat([rows_u, rows_v], 1)  # [N, 2L, 3]
    b = torch.cat([du * rx[..., 2] - focal * rx[..., 0], dv * rx[..., 2] - focal * rx[..., 1]], 1)  # [N, 2L]
    w = torch.ones_like(b) if weights is None else torch.cat([weights, weights], 1)
    ata = torch.einsum("nk,nki,nkj->nij", w, a, a)
    atb = torch.einsum("nk,nki,nk->ni", w, a, b)
    t = torch.linalg.solve(ata + 1e-9 * torch.eye(3, dtype=a.dtype, device=a.device), atb)
    # A face behind the camera is the mirror solution of a degenerate fit; put it in front.
    t[:, 2] = t[:, 2].abs().clamp_min(1e-3)
    return t


# --------------------------------------------------------------------------------------- Levenberg-Marquardt
def _skew(v):
    import torch

    x, y, z = v.unbind(-1)
    zero = torch.zeros_like(x)
    return torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], -1).reshape(*v.shape[:-1], 3, 3)


def _frame_costs(points, observed, rotation, translation, focal, cx, cy, k, weights):
    cam = transform_points(rotation, translation, points)
    residual = project(cam, focal, cx, cy) - observed
    dist = residual.norm(dim=-1)
    return (huber(dist, k) * weights).sum(-1), residual, cam, dist


def pose_normal_equations(cam, residual, dist, translation, focal: float, k, weights):
    """Gauss-Newton system of every frame's pose on the robust cost at the current fit (IRLS weights).

    The unknowns are a left-multiplied rotation increment ``d`` (``R <- exp(d) R``) and a translation increment.

    Args:
        cam: [N, L, 3] points in camera coordinates; residual: [N, L, 2] projected minus observed pixels;
            dist: [N, L] their norms (all from ``_frame_costs``).
        translation: [N, 3].
        k: Huber threshold in pixels (a number, or [L] per point).
        weights: [N, L] observation weights.

    Returns:
        ``(hessian [N, 6, 6], gradient [N, 6])``.
    """
    import torch

    n = cam.shape[0]
    w = weights * _huber_weight(dist, k)  # [N, L]
    z = cam[..., 2].clamp_min(1e-6)
    zeros = torch.zeros_like(z)
    # Rows of d(pixel)/d(camera point), then through p = exp(d) R X + t: a left rotation increment moves p by
    # d x (R X), so a row a gets ((R X) x a) for the rotation and a itself for the translation.
    a_u = torch.stack([focal / z, zeros, -focal * cam[..., 0] / z ** 2], -1)  # [N, L, 3]
    a_v = torch.stack([zeros, focal / z, -focal * cam[..., 1] / z ** 2], -1)
    rotated = cam - translation[:, None, :]
    jac = torch.stack([torch.cat([torch.linalg.cross(rotated, a_u), a_u], -1),
                       torch.cat([torch.linalg.cross(rotated, a_v), a_v], -1)], 2).reshape(n, -1, 6)  # [N, 2L, 6]
    weighted = jac * w.repeat_interleave(2, dim=1)[..., None]
    hess = weighted.transpose(1, 2) @ jac
    grad = (weighted.transpose(1, 2) @ residual.reshape(n, -1, 1))[..., 0]
    return hess, grad


def fit_poses(points, observed, rotation, translation, focal: float, cx: float, cy: float, *,
              huber_px=float("inf"), weights=None, iterations: int = 20, tolerance: float | None = None):
    """Refine every frame's pose by batched Levenberg-Marquardt on the robust landmark cost.

    Frames are independent, so they are solved ``CHUNK_FRAMES`` at a time: memory does not grow with the clip.

    Args:
        points: [L, 3] template points, torch float64 (metres).
        observed: [N, L, 2] landmark pixels.
        rotation: [N, 3, 3] initial OpenCV head-to-camera rotations.
        translation: [N, 3] initial translations (metres, ``z > 0``).
        focal, cx, cy: pinhole intrinsics in pixels.
        huber_px: Huber threshold in pixels (``inf`` = plain least squares; a number or an [L] tensor).
        weights: optional [N, L] observation weights (0 drops an observation).
        iterations: LM iterations (at most, with ``tolerance``).
        tolerance: stop early once no frame's step exceeds this (radians and metres): every frame has converged.

    Returns:
        ``(rotation [N, 3, 3], translation [N, 3], cost [N])`` with the per-frame robust cost.
    """
    import torch

    if weights is None:
        weights = torch.ones(observed.shape[:2], dtype=observed.dtype, device=observed.device)
    parts = [_fit_chunk(points, observed[rows], rotation[rows], translation[rows], focal, cx, cy, huber_px,
                        weights[rows], iterations, tolerance)
             for rows in (slice(first, first + CHUNK_FRAMES) for first in range(0, observed.shape[0], CHUNK_FRAMES))]
    if not parts:
        return rotation, translation, torch.zeros(0, dtype=observed.dtype, device=observed.device)
    return tuple(torch.cat(values) for values in zip(*parts))


def _fit_chunk(points, observed, rotation, translation, focal, cx, cy, huber_px, weights, iterations, tolerance):
    """``fit_poses`` on one chunk of frames."""
    import torch

    n = observed.shape[0]
    damping = torch.full((n, 1), 1e-3, dtype=observed.dtype, device=observed.device)
    cost, residual, cam, dist = _frame_costs(points, observed, rotation, translation, focal, cx, cy, huber_px,
                                             weights)
    for _ in range(iterations):
        hess, grad = pose_normal_equations(cam, residual, dist, translation, focal, huber_px, weights)
        diag = torch.diagonal(hess, dim1=-2, dim2=-1)
        system = hess + damping[..., None] * torch.diag_embed(diag + 1e-9)
        step = -torch.linalg.solve(system, grad)
        if tolerance is not None and float(step.abs().max()) < tolerance:
            break
        new_rotation = axis_angle_to_matrix(step[:, :3]) @ rotation
        new_translation = translation + step[:, 3:]
        new = _frame_costs(points, observed, new_rotation, new_translation, focal, cx, cy, huber_px, weights)
        better = (new[0] < cost) & (new_translation[:, 2] > 0)
        keep = better[:, None]
        rotation = torch.where(keep[..., None], new_rotation, rotation)
        translation = torch.where(keep, new_translation, translation)
        cost = torch.where(better, new[0], cost)
        residual = torch.where(keep[..., None], new[1], residual)
        cam = torch.where(keep[..., None], new[2], cam)
        dist = torch.where(keep, new[3], dist)
        damping = torch.where(keep, damping * 0.3, damping * 10.0).clamp(1e-7, 1e7)
    return rotation, translation, cost


def robust_scale_px(residual_norms) -> float:
    """Per-axis noise sigma (pixels) estimated from residual distances by their median."""
    return float(residual_norms.median()) / _MEDIAN_NORM_PER_SIGMA


# ------------------------------------------------------------------------------------------------ focal search
def _fit_at(points, observed, init_rotation, focal, cx, cy, huber_px, weights, iterations):
    translation = init_translation(points, observed, init_rotation, focal, cx, cy, weights)
    return fit_poses(points, observed, init_rotation.clone(), translation, focal, cx, cy, huber_px=huber_px,
                     weights=weights, iterations=iterations)


def search_focal(points, observed, init_rotation, cx: float, cy: float, focal_range: tuple[float, float], *,
                 huber_px: float, weights=None, grid: int = 12, refine: int = 12, iterations: int = 15,
                 on_step: StepCallback | None = None) -> tuple[float, list[tuple[float, float]]]:
    """The focal length with the lowest mean robust landmark cost (poses re-initialised for every candidate).

    Returns:
        ``(best focal, [(focal, cost), ...])``.
    """
    costs: dict[float, float] = {}
    total = grid + refine

    def evaluate(focal: float) -> float:
        if focal not in costs:
            cost = _fit_at(points, observed, init_rotation, focal, cx, cy, huber_px, weights, iterations)[2]
            costs[focal] = float(cost.mean())
            if on_step is not None:
                on_step(min(len(costs), total), total)
        return costs[focal]

    log_lo, log_hi = np.log(focal_range[0]), np.log(focal_range[1])
    candidates = np.exp(np.linspace(log_lo, log_hi, grid))
    values = [evaluate(float(f)) for f in candidates]
    best = int(np.argmin(values))
    # Golden section in log-focal between the best candidate's neighbours.
    a = np.log(candidates[max(best - 1, 0)])
    b = np.log(candidates[min(best + 1, grid - 1)])
    ratio = (np.sqrt(5.0) - 1.0) / 2.0
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc, fd = evaluate(float(np.exp(c))), evaluate(float(np.exp(d)))
    for _ in range(max(refine - 2, 0)):
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - ratio * (b - a)
            fc = evaluate(float(np.exp(c)))
        else:
            a, c, fc = c, d, fd
            d = a + ratio * (b - a)
            fd = evaluate(float(np.exp(d)))
    focal = min(costs, key=costs.get)
    return focal, sorted(costs.items())


def track_rough(points: np.ndarray, observed: np.ndarray, init_rotation: np.ndarray, *, width: int, height: int,
                focal_range: tuple[float, float] | None = None, weights: np.ndarray | None = None,
                search_frames: int = 100, iterations: int = 25, device="cpu",
                on_step: StepCallback | None = None) -> RoughFit:
    """Focal search, then every frame's head pose (paper Eq. 5-6).

    Args:
        points: [L, 3] rigid template points in metres (head frame).
        observed: [N, L, 2] the same landmarks in pixels, every frame.
        init_rotation: [N, 3, 3] starting rotations (OpenCV head-to-camera; e.g. from MediaPipe's matrices).
        width, height: frame size; the principal point is the image centre.
        focal_range: (min, max) focal length in pixels; default ``(0.8, 5.0) * max(width, height)`` (the original
            searched 500-1450 px for 512 px frames; TV footage cropped to the face often needs more).
        weights: optional [N] or [N, L] weights; frames with weight 0 are left out of the focal search.
        search_frames: frames used to rank focal candidates.
        iterations: LM iterations of the final per-frame fit.
        device: torch device.
        on_step: progress callback.

    Returns:
        A ``RoughFit``.
    """
    import torch

    cx, cy = width / 2.0, height / 2.0
    if focal_range is None:
        size = float(max(width, height))
        focal_range = DEFAULT_FOCAL_RANGE[0] * size, DEFAULT_FOCAL_RANGE[1] * size
    lo, hi = sorted(float(f) for f in focal_range)
    dev = torch.device(device)
    pts = torch.as_tensor(np.asarray(points), dtype=torch.float64, device=dev)
    obs = torch.as_tensor(np.asarray(observed), dtype=torch.float64, device=dev)
    rot0 = torch.as_tensor(np.asarray(init_rotation), dtype=torch.float64, device=dev)
    n, num_points = obs.shape[:2]
    w = torch.ones((n, num_points), dtype=torch.float64, device=dev)
    if weights is not None:
        wt = torch.as_tensor(np.asarray(weights), dtype=torch.float64, device=dev)
        w = w * (wt[:, None] if wt.ndim == 1 else wt)

    usable = torch.nonzero(w.sum(1) > 0).flatten()
    subset = usable[torch.linspace(0, len(usable) - 1, min(search_frames, len(usable))).round().long()]

    # One robust scale for every candidate, so their costs are comparable: from a least-squares fit at the
    # geometric middle of the range.
    middle = float(np.sqrt(lo * hi))
    r_mid, t_mid, _ = _fit_at(pts, obs[subset], rot0[subset], middle, cx, cy, float("inf"), w[subset], 10)
    cam = transform_points(r_mid, t_mid, pts)
    dist = (project(cam, middle, cx, cy) - obs[subset]).norm(dim=-1)
    sigma = max(robust_scale_px(dist[w[subset] > 0]), 0.05)
    k = 2.5 * sigma

    def search_progress(done: int, total: int) -> None:
        if on_step is not None:
            on_step(done, total + 1)

    focal, costs = search_focal(pts, obs[subset], rot0[subset], cx, cy, (lo, hi), huber_px=k, weights=w[subset],
                                on_step=search_progress)
    rotation, translation, _ = _fit_at(pts, obs, rot0, focal, cx, cy, k, w, iterations)
    cam = transform_points(rotation, translation, pts)
    residual = (project(cam, focal, cx, cy) - obs).norm(dim=-1)
    if on_step is not None:
        on_step(len(costs) + 1, len(costs) + 1)
    edge = focal <= lo * 1.02 or focal >= hi / 1.02
    return RoughFit(focal=float(focal), rotation=rotation.cpu().numpy(), translation=translation.cpu().numpy(),
                    residual_px=residual.cpu().numpy(), huber_px=float(k), focal_costs=costs, at_range_edge=edge)


def fit_fixed_focal(points: np.ndarray, observed: np.ndarray, init_rotation: np.ndarray, focal: float, *,
                    width: int, height: int, huber_px: float, weights: np.ndarray | None = None,
                    iterations: int = 25, device="cpu") -> RoughFit:
    """Every frame's pose at a known focal length (the second half of ``track_rough``, e.g. with a new template).

    Args: as ``track_rough``; ``huber_px`` is the Huber threshold in pixels (``RoughFit.huber_px`` of a search).
    """
    import torch

    cx, cy = width / 2.0, height / 2.0
    dev = torch.device(device)
    pts = torch.as_tensor(np.asarray(points), dtype=torch.float64, device=dev)
    obs = torch.as_tensor(np.asarray(observed), dtype=torch.float64, device=dev)
    rot0 = torch.as_tensor(np.asarray(init_rotation), dtype=torch.float64, device=dev)
    w = None
    if weights is not None:
        wt = torch.as_tensor(np.asarray(weights), dtype=torch.float64, device=dev)
        w = (wt[:, None] if wt.ndim == 1 else wt).expand(obs.shape[:2]).contiguous()
    rotation, translation, _ = _fit_at(pts, obs, rot0, focal, cx, cy, huber_px, w, iterations)
    cam = transform_points(rotation, translation, pts)
    residual = (project(cam, focal, cx, cy) - obs).norm(dim=-1)
    return RoughFit(focal=float(focal), rotation=rotation.cpu().numpy(), translation=translation.cpu().numpy(),
                    residual_px=residual.cpu().numpy(), huber_px=float(huber_px))
