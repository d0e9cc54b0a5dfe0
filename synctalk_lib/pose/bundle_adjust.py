"""Two-stage bundle adjustment of head poses and 3D points (paper Eq. 7-8), initialised by the rough tracker.

Observations: dense keypoint tracks (optical flow; many points, sub-pixel precise) and the rigid landmarks
(MediaPipe; fewer, noisier, but tied to the face so the head frame cannot drift away from it).

- **Stage 1** (poses fixed at the rough fit): every 3D point is solved on its own -- a batched, robust Gauss-Newton
  triangulation from a start on the face template's surface. Tracks that stay far from any rigid 3D point (skin
  that moved with speech, a track that slid) are dropped here.
- **Stage 2** (Adam): keypoints, landmark points and every frame's rotation and translation together.

Loss (both stages): each residual is measured in units of its own noise level (estimated from the data by the
median, separately for tracks and landmarks) and passed through a **Huber** function (quadratic up to 2 sigma,
linear beyond), so every observation counts by its precision and outliers pull with a bounded force. The landmark
3D points have a weak prior toward the template (3 mm), which fixes the overall position, orientation and scale
that image measurements alone cannot (the "gauge").

Optional **temporal smoothness prior** (``smoothness > 0``, off by default): a penalty on the second temporal
difference of each frame's rotation and translation, expressed as the image motion it causes at the head's scale
(rotation times an 8 cm lever arm, translation, both times focal / depth) in units of the track noise, and weighted
like ``smoothness / 10`` of one frame's observations. It removes jitter the measurements cannot: with a long lens
the depth and the rotation/translation split are barely visible in the image, so per-frame noise goes there. A
strong prior makes poses lag behind fast head turns, which shows up as a higher landmark ``reproj_px``. On the
reference clip (bench/pose.py, MediaPipe's raw landmarks) rotation / translation jitter relative to the rough fit:
0 -> 1.1x / 0.9x, 1 -> 1.8x / 3.3x, 3 -> 2.3x / 3.8x, 10 -> 3.0x / 4.6x lower, with the landmark reprojection
error below the rough fit's up to 3 and 1 % above it at 10, and no measurable lag (cross-correlation peak at 0).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from synctalk_lib.pose.camera import axis_angle_to_matrix, project, transform_points
from synctalk_lib.pose.rough_tracker import huber, robust_scale_px

StepCallback = Callable[[int, int], None]

HUBER_SIGMAS = 2.0
"""Huber threshold in units of each observation type's noise sigma."""
TEMPLATE_PRIOR_M = 0.003
"""Std-dev of the prior keeping the landmark 3D points near the template (metres)."""
HEAD_RADIUS_M = 0.08
"""Lever arm used to express rotations as image motion for the smoothness prior."""
SMOOTHNESS_UNIT = 0.1
"""Weight of the smoothness prior per unit of ``smoothness``, as a fraction of one frame's observations."""


@dataclass(frozen=True)
class BundleResult:
    """Adjusted poses and points (``N`` frames, OpenCV head-to-camera poses)."""

    rotation: np.ndarray
    """[N, 3, 3] float64."""
    translation: np.ndarray
    """[N, 3] float64 metres."""
    keypoints3d: np.ndarray
    """[P', 3] float64 3D positions of the kept keypoint tracks (metres, head frame)."""
    kept_tracks: np.ndarray
    """[P] bool: which input tracks survived stage 1."""
    landmarks3d: np.ndarray
    """[L, 3] float64 adjusted rigid landmark positions."""
    sigma_track_px: float
    sigma_landmark_px: float
    loss_history: list[float]


# ---------------------------------------------------------------------------------------------------- stage 1
def triangulate(rotation, translation, observed, valid, focal: float, cx: float, cy: float, init_points, *,
                huber_px: float, iterations: int = 10):
    """Robust Gauss-Newton triangulation of every point from its tracks, all points at once.

    Args:
        rotation: [N, 3, 3] fixed poses, torch float64.
        translation: [N, 3].
        observed: [N, P, 2] pixels.
        valid: [N, P] bool.
        init_points: [P, 3] starting positions (metres).
        huber_px: Huber threshold in pixels.

    Returns:
        [P, 3] points.
    """
    import torch

    points = init_points.clone()
    w_valid = valid.to(points.dtype)
    for _ in range(iterations):
        cam = transform_points(rotation, translation, points)  # [N, P, 3]
        residual = project(cam, focal, cx, cy) - observed
        dist = residual.norm(dim=-1)
        w = w_valid * (huber_px / dist.clamp_min(1e-12)).clamp(max=1.0)
        z = cam[..., 2].clamp_min(1e-6)
        zeros = torch.zeros_like(z)
        d_proj = torch.stack([
            torch.stack([focal / z, zeros, -focal * cam[..., 0] / z ** 2], -1),
            torch.stack([zeros, focal / z, -focal * cam[..., 1] / z ** 2], -1),
        ], -2)  # [N, P, 2, 3]
        jac = d_proj @ rotation[:, None]  # d(pixel)/d(head point)
        hess = torch.einsum("np,npai,npaj->pij", w, jac, jac)
        grad = torch.einsum("np,npai,npa->pi", w, jac, residual)
        damp = 1e-6 * torch.diagonal(hess, dim1=-2, dim2=-1).mean(-1)[:, None, None] + 1e-12
        step = -torch.linalg.solve(hess + damp * torch.eye(3, dtype=hess.dtype, device=hess.device), grad)
        points = points + step
    return points


def surface_depth_init(rotation, translation, template_points, template_pixels, ref_pixels, ref_index: int,
                       focal: float, cx: float, cy: float):
    """Start positions of keypoints: back-project their reference-frame pixels to the depth of the face template.

    The depth at a pixel is interpolated (inverse distance, 4 nearest) from the template landmarks projected into
    the reference frame, so tracks start on the face surface and stage 1 only has to refine them.

    Args:
        template_points: [L, 3] template landmarks (metres).
        template_pixels: [L, 2] their projection in the reference frame.
        ref_pixels: [P, 2] keypoint pixels in the reference frame.

    Returns:
        [P, 3] head-frame points.
    """
    import torch

    r, t = rotation[ref_index], translation[ref_index]
    depth_lm = (template_points @ r.T + t)[:, 2]  # [L]
    d = torch.cdist(ref_pixels, template_pixels)  # [P, L]
    nearest, idx = d.topk(min(4, d.shape[1]), largest=False)
    w = 1.0 / (nearest + 1.0)
    depth = (depth_lm[idx] * w).sum(1) / w.sum(1)
    rays = torch.stack([(ref_pixels[:, 0] - cx) / focal, (ref_pixels[:, 1] - cy) / focal,
                        torch.ones_like(depth)], -1)
    cam = rays * depth[:, None]
    return (cam - t) @ r  # R^T (p - t)


# ---------------------------------------------------------------------------------------------------- stage 2
def _normalised_huber(residual, sigma: float):
    return huber(residual.norm(dim=-1) / sigma, HUBER_SIGMAS)


def _second_difference(x):
    return x[2:] - 2.0 * x[1:-1] + x[:-2]


def bundle_adjust(*, focal: float, cx: float, cy: float, rotation: np.ndarray, translation: np.ndarray,
                  landmarks2d: np.ndarray, template: np.ndarray, tracks2d: np.ndarray, track_valid: np.ndarray,
                  ref_index: int, landmark_weights: np.ndarray | None = None, smoothness: float = 0.0,
                  stage2_iterations: int = 600, learning_rate: float = 2e-3, min_track_fraction: float = 0.7,
                  drop_factor: float = 2.0,
                  device="cpu", on_step: StepCallback | None = None) -> BundleResult:
    """Stage 1 (points, poses fixed) and stage 2 (points + poses, Adam) as described in the module docstring.

    Args:
        focal, cx, cy: intrinsics (pixels; the focal length stays fixed, as in the original).
        rotation: [N, 3, 3] rough OpenCV head-to-camera rotations.
        translation: [N, 3] rough translations (metres).
        landmarks2d: [N, L] rigid landmark pixels ``[N, L, 2]``.
        template: [L, 3] the template's rigid landmark positions (metres).
        tracks2d: [N, P, 2] keypoint tracks (pixels).
        track_valid: [N, P] bool.
        ref_index: the frame the tracks were seeded in.
        landmark_weights: optional [N] per-frame weight of the landmarks (e.g. lower where the face was
            interpolated).
        smoothness: weight of the temporal smoothness prior (0 = off).
        stage2_iterations: Adam iterations of stage 2.
        learning_rate: Adam step for rotations (radians); translations and points use it times the mean depth
            and times 0.5 (metres).
        min_track_fraction: tracks valid in fewer than this fraction of the frames are dropped.
        drop_factor: tracks whose median residual after stage 1 exceeds this multiple of the typical track's
            (the median over tracks) are dropped.
        device: torch device.
        on_step: progress callback ``(done, total)``.

    Returns:
        A ``BundleResult``.
    """
    import torch

    # ComfyUI runs nodes under inference_mode; the optimisation needs autograd.
    with torch.inference_mode(False), torch.enable_grad():
        return _bundle_adjust(focal=focal, cx=cx, cy=cy, rotation=rotation, translation=translation,
                              landmarks2d=landmarks2d, template=template, tracks2d=tracks2d,
                              track_valid=track_valid, ref_index=ref_index, landmark_weights=landmark_weights,
                              smoothness=smoothness, stage2_iterations=stage2_iterations,
                              learning_rate=learning_rate, min_track_fraction=min_track_fraction,
                              drop_factor=drop_factor, device=device, on_step=on_step)


def _bundle_adjust(*, focal, cx, cy, rotation, translation, landmarks2d, template, tracks2d, track_valid, ref_index,
                   landmark_weights, smoothness, stage2_iterations, learning_rate, min_track_fraction, drop_factor,
                   device, on_step) -> BundleResult:
    import torch

    dev = torch.device(device)
    f64 = dict(dtype=torch.float64, device=dev)
    rot0 = torch.as_tensor(np.asarray(rotation), **f64)
    trans0 = torch.as_tensor(np.asarray(translation), **f64)
    lm_obs = torch.as_tensor(np.asarray(landmarks2d), **f64)
    tmpl = torch.as_tensor(np.asarray(template), **f64)
    tr_obs = torch.as_tensor(np.asarray(tracks2d), **f64)
    tr_valid = torch.as_tensor(np.asarray(track_valid), dtype=torch.bool, device=dev)
    n = lm_obs.shape[0]
    lm_w = torch.ones(n, **f64) if landmark_weights is None else torch.as_tensor(np.asarray(landmark_weights),
                                                                                 **f64)
    total_steps = stage2_iterations + 2

    # ---- stage 1: triangulate keypoints and landmarks with the rough poses fixed.
    lm_valid = (lm_w[:, None] > 0).expand(lm_obs.shape[:2])
    lm_res = (project(transform_points(rot0, trans0, tmpl), focal, cx, cy) - lm_obs).norm(dim=-1)
    sigma_lm = max(robust_scale_px(lm_res[lm_valid]), 0.05)
    ref_pixels = tr_obs[ref_index]
    tmpl_pixels = project(transform_points(rot0[ref_index:ref_index + 1], trans0[ref_index:ref_index + 1], tmpl),
                          focal, cx, cy)[0]
    kp_init = surface_depth_init(rot0, trans0, tmpl, tmpl_pixels, ref_pixels, ref_index, focal, cx, cy)
    kp = triangulate(rot0, trans0, tr_obs, tr_valid, focal, cx, cy, kp_init, huber_px=4.0, iterations=5)
    kp_res = (project(transform_points(rot0, trans0, kp), focal, cx, cy) - tr_obs).norm(dim=-1)
    sigma_tr = max(robust_scale_px(kp_res[tr_valid]), 0.02)
    kp = triangulate(rot0, trans0, tr_obs, tr_valid, focal, cx, cy, kp, huber_px=HUBER_SIGMAS * sigma_tr,
                     iterations=5)
    lm3d = triangulate(rot0, trans0, lm_obs, lm_valid, focal, cx, cy, tmpl.clone(),
                       huber_px=HUBER_SIGMAS * sigma_lm, iterations=5)
    if on_step is not None:
        on_step(1, total_steps)

    # Drop tracks that were lost too often (they slid or were occluded somewhere) and tracks that no rigid point
    # explains (skin moving with speech): a median residual far above the typical track's.
    kp_res = (project(transform_points(rot0, trans0, kp), focal, cx, cy) - tr_obs).norm(dim=-1)
    masked = torch.where(tr_valid, kp_res, torch.full_like(kp_res, float("nan")))
    per_track = masked.nanmedian(dim=0).values
    often = tr_valid.to(torch.float64).mean(0) >= min_track_fraction
    typical = per_track[often].median() if often.any() else per_track.nanmedian()
    kept = often & (per_track <= drop_factor * typical)
    kp, tr_obs, tr_valid = kp[kept], tr_obs[:, kept], tr_valid[:, kept]
    if kept.any():
        sigma_tr = max(robust_scale_px(kp_res[:, kept][tr_valid]), 0.02)

    # ---- stage 2: everything together with Adam.
    rot_delta = torch.zeros(n, 3, **f64, requires_grad=True)
    trans_delta = torch.zeros(n, 3, **f64, requires_grad=True)
    kp_param = kp.clone().requires_grad_(True)
    lm_param = lm3d.clone().requires_grad_(True)
    depth = float(trans0[:, 2].mean())
    optimiser = torch.optim.Adam([
        {"params": [rot_delta], "lr": learning_rate},
        {"params": [trans_delta], "lr": learning_rate * depth},
        {"params": [kp_param, lm_param], "lr": learning_rate * depth * 0.5},
    ])
    base_lrs = [g["lr"] for g in optimiser.param_groups]
    num_obs = float(tr_valid.sum() + lm_valid.sum())
    obs_per_frame = num_obs / n
    tr_mask = tr_valid.to(torch.float64)
    lm_mask = lm_w[:, None].expand(lm_obs.shape[:2])
    history: list[float] = []

    def poses():
        return axis_angle_to_matrix(rot_delta) @ rot0, trans0 + trans_delta

    reestimate_at = {stage2_iterations // 3, (2 * stage2_iterations) // 3} - {0}
    for it in range(stage2_iterations):
        if it in reestimate_at:
            # The first noise estimates came from residuals at the rough poses, which include their jitter;
            # measured again at the better poses, each observation type gets its proper weight.
            with torch.no_grad():
                r, t = poses()
                tr_dist = (project(transform_points(r, t, kp_param), focal, cx, cy) - tr_obs).norm(dim=-1)
                lm_dist = (project(transform_points(r, t, lm_param), focal, cx, cy) - lm_obs).norm(dim=-1)
                if tr_valid.any():
                    sigma_tr = max(robust_scale_px(tr_dist[tr_valid]), 0.02)
                sigma_lm = max(robust_scale_px(lm_dist[lm_valid]), 0.05)
        # Cosine decay to 1 % of the initial step: large moves first, then settling without Adam's rattle.
        scale = 0.01 + 0.99 * 0.5 * (1.0 + math.cos(math.pi * it / max(stage2_iterations - 1, 1)))
        for group, lr in zip(optimiser.param_groups, base_lrs):
            group["lr"] = lr * scale
        optimiser.zero_grad(set_to_none=True)
        r, t = poses()
        loss = (_normalised_huber(project(transform_points(r, t, kp_param), focal, cx, cy) - tr_obs, sigma_tr)
                * tr_mask).sum()
        loss = loss + (_normalised_huber(project(transform_points(r, t, lm_param), focal, cx, cy) - lm_obs,
                                         sigma_lm) * lm_mask).sum()
        loss = loss + 0.5 * ((lm_param - tmpl) ** 2).sum() / TEMPLATE_PRIOR_M ** 2
        if smoothness > 0 and n >= 3:
            sigma_img = sigma_tr
            # ||second difference of R||_F / sqrt(2) is the rotation's second difference in radians (to first
            # order), without converting every matrix to a rotation vector each step.
            rot_px2 = (_second_difference(r) ** 2).sum() / 2.0 * (focal * HEAD_RADIUS_M / depth) ** 2
            trans_px2 = (_second_difference(t) ** 2).sum() * (focal / depth) ** 2
            loss = loss + SMOOTHNESS_UNIT * smoothness * obs_per_frame * 0.5 * (rot_px2 + trans_px2) / sigma_img ** 2
        loss = loss / num_obs
        loss.backward()
        optimiser.step()
        history.append(float(loss.detach()))
        if on_step is not None and (it % 20 == 0 or it == stage2_iterations - 1):
            on_step(it + 2, total_steps)

    with torch.no_grad():
        r, t = poses()
    if on_step is not None:
        on_step(total_steps, total_steps)
    return BundleResult(rotation=r.cpu().numpy(), translation=t.cpu().numpy(),
                        keypoints3d=kp_param.detach().cpu().numpy(), kept_tracks=kept.cpu().numpy(),
                        landmarks3d=lm_param.detach().cpu().numpy(), sigma_track_px=float(sigma_tr),
                        sigma_landmark_px=float(sigma_lm), loss_history=history)

