"""Bundle adjustment of head poses and 3D points (paper Eq. 7-8), initialised by the rough tracker.

Observations: dense keypoint tracks (optical flow; many points, sub-pixel precise) and the rigid landmarks
(MediaPipe; fewer, noisier, but tied to the face so the head frame cannot drift away from it).

- **Stage 1** (poses fixed at the rough fit): every 3D point is solved on its own -- a batched, robust Gauss-Newton
  triangulation from a start on the face template's surface. Tracks that stay far from any rigid 3D point (skin
  that moved with speech, a track that slid) are dropped here.
- **Stage 2** (Adam): keypoints, landmark points and the poses of up to ``JOINT_FRAMES`` frames together (every
  frame of a clip up to 16 s; evenly spaced frames of a longer one: the points are pinned down long before that).
- **Stage 3** (``frame_poses``): every frame's pose with the points of stage 2 held fixed (Levenberg-Marquardt).

Every stage runs over chunks of frames, so working memory stays the same whatever the clip's length, and time grows
linearly with it (stage 2's cost is bounded). On clips up to ``JOINT_FRAMES`` frames stage 3 only settles each
frame (median change 0.0003 deg on the reference clip; 0.003 deg with ``smoothness`` 3).

Loss (all stages): each residual is measured in units of its own noise level (estimated from the data by the
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
The prior applies in stage 3 (and in stage 2 when it sees every frame, i.e. consecutive ones).
"""
from __future__ import annotations

import math
from dataclasses import dataclass


import numpy as np

from synctalk_lib.pose.camera import axis_angle_to_matrix, project, transform_points
from synctalk_lib.pose.frame_poses import Observed, SmoothnessPrior, refine_frame_poses
from synctalk_lib.pose.rough_tracker import CHUNK_FRAMES, huber, robust_scale_px
from synctalk_lib.progress import StepCallback


HUBER_SIGMAS = 2.0
"""Huber threshold in units of each observation type's noise sigma."""
TEMPLATE_PRIOR_M = 0.003
"""Std-dev of the prior keeping the landmark 3D points near the template (metres)."""
HEAD_RADIUS_M = 0.08
"""Lever arm used to express rotations as image motion for the smoothness prior."""
SMOOTHNESS_UNIT = 0.1
"""Weight of the smoothness prior per unit of ``smoothness``, as a fraction of one frame's observations."""
JOINT_FRAMES = 400
"""Most frames whose poses stage 2 adjusts together with the points (its time and memory are bounded by it)."""
STAGE3_ITERATIONS = 20


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
    """Stage 2's loss at every iteration."""
    joint_frames: int = 0
    """Frames stage 2 adjusted together with the points (all of them up to ``JOINT_FRAMES``)."""


@dataclass(frozen=True)
class _Problem:
    """The inputs as the stages use them: rough poses as float64 tensors, observations as given (numpy)."""

    focal: float
    cx: float
    cy: float
    rotation: object
    """[N, 3, 3] torch float64."""
    translation: object
    """[N, 3] torch float64."""
    landmarks2d: np.ndarray
    """[N, L, 2]."""
    landmark_weights: np.ndarray
    """[N] per-frame weight of the landmarks."""
    template: object
    """[L, 3] torch float64."""
    tracks2d: np.ndarray
    """[N, P, 2]."""
    track_valid: np.ndarray
    """[N, P] bool."""
    ref_index: int

    @property
    def num_frames(self) -> int:
        return int(self.rotation.shape[0])

    @property
    def device(self):
        return self.rotation.device

    def landmark_mask(self) -> np.ndarray:
        """[N, L] weight of every landmark observation (a broadcast view, no copy)."""
        return np.broadcast_to(self.landmark_weights[:, None], self.landmarks2d.shape[:2])

    def residual_norms(self, rotation, translation, points, pixels: np.ndarray, chunk: int = CHUNK_FRAMES):
        """[N, M] pixel distance of ``points`` [M, 3] projected with the given poses from ``pixels`` [N, M, 2]."""
        import torch

        out = []
        for first in range(0, rotation.shape[0], chunk):
            rows = slice(first, first + chunk)
            observed = torch.as_tensor(np.asarray(pixels[rows]), dtype=torch.float64, device=self.device)
            cam = transform_points(rotation[rows], translation[rows], points)
            out.append((project(cam, self.focal, self.cx, self.cy) - observed).norm(dim=-1))
        return torch.cat(out) if out else torch.zeros(0, pixels.shape[1], dtype=torch.float64)


# ---------------------------------------------------------------------------------------------------- stage 1
def triangulate(rotation, translation, observed, valid, focal: float, cx: float, cy: float, init_points, *,
                huber_px: float, iterations: int = 10, chunk: int = CHUNK_FRAMES):
    """Robust Gauss-Newton triangulation of every point from its tracks, all points at once.

    Each point's normal equations are summed over chunks of frames, so memory does not grow with the clip.

    Args:
        rotation: [N, 3, 3] fixed poses, torch float64.
        translation: [N, 3].
        observed: [N, P, 2] pixels (torch or numpy).
        valid: [N, P] bool (torch or numpy).
        init_points: [P, 3] starting positions (metres).
        huber_px: Huber threshold in pixels.

    Returns:
        [P, 3] points.
    """
    import torch

    points = init_points.clone()
    eye = torch.eye(3, dtype=points.dtype, device=points.device)
    for _ in range(iterations):
        hess = torch.zeros(points.shape[0], 3, 3, dtype=points.dtype, device=points.device)
        grad = torch.zeros_like(points)
        for first in range(0, rotation.shape[0], chunk):
            rows = slice(first, first + chunk)
            obs = torch.as_tensor(np.asarray(observed[rows]), dtype=points.dtype, device=points.device)
            w_valid = torch.as_tensor(np.asarray(valid[rows]), device=points.device).to(points.dtype)
            h, g = _point_normal_equations(rotation[rows], translation[rows], points, obs, w_valid, focal, cx, cy,
                                           huber_px)
            hess += h
            grad += g
        damp = 1e-6 * torch.diagonal(hess, dim1=-2, dim2=-1).mean(-1)[:, None, None] + 1e-12
        points = points - torch.linalg.solve(hess + damp * eye, grad)
    return points


def _point_normal_equations(rotation, translation, points, observed, w_valid, focal, cx, cy, huber_px):
    """Gauss-Newton system of every point [P, 3, 3], [P, 3] from some frames' observations (IRLS Huber weights)."""
    import torch

    cam = transform_points(rotation, translation, points)  # [n, P, 3]
    residual = project(cam, focal, cx, cy) - observed
    dist = residual.norm(dim=-1)
    w = (w_valid * (huber_px / dist.clamp_min(1e-12)).clamp(max=1.0)).T[..., None]  # [P, n, 1]
    z = cam[..., 2].clamp_min(1e-6)
    zeros = torch.zeros_like(z)
    # Rows of d(pixel)/d(head point): d(pixel)/d(camera point) times R, one batched product per row.
    rows = [torch.stack([focal / z, zeros, -focal * cam[..., 0] / z ** 2], -1),
            torch.stack([zeros, focal / z, -focal * cam[..., 1] / z ** 2], -1)]
    hess = torch.zeros(points.shape[0], 3, 3, dtype=points.dtype, device=points.device)
    grad = torch.zeros_like(points)
    for axis, row in enumerate(rows):
        jac = torch.bmm(row, rotation).transpose(0, 1)  # [P, n, 3]
        weighted = jac * w
        hess += weighted.transpose(1, 2) @ jac
        grad += (weighted * residual[..., axis].T[..., None]).sum(1)
    return hess, grad


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


@dataclass(frozen=True)
class _Structure:
    """3D points and noise levels after stage 1 (and again after stage 2)."""

    keypoints: object
    """[P', 3] torch float64 (kept tracks only)."""
    landmarks: object
    """[L, 3] torch float64."""
    kept: np.ndarray
    """[P] bool."""
    sigma_track: float
    sigma_landmark: float


def _stage1(problem: _Problem, min_track_fraction: float, drop_factor: float) -> _Structure:
    """Triangulate keypoints and landmarks with the rough poses fixed; drop tracks no rigid point explains."""
    import torch

    p, rot0, trans0, ref = problem, problem.rotation, problem.translation, problem.ref_index
    f, cx, cy = p.focal, p.cx, p.cy
    lm_valid = p.landmark_mask() > 0
    lm_res = p.residual_norms(rot0, trans0, p.template, p.landmarks2d)
    sigma_lm = max(robust_scale_px(lm_res[torch.as_tensor(lm_valid)]), 0.05)
    ref_pixels = torch.as_tensor(np.asarray(p.tracks2d[ref]), dtype=torch.float64, device=p.device)
    tmpl_pixels = project(transform_points(rot0[ref:ref + 1], trans0[ref:ref + 1], p.template), f, cx, cy)[0]
    kp = surface_depth_init(rot0, trans0, p.template, tmpl_pixels, ref_pixels, ref, f, cx, cy)
    valid = torch.as_tensor(p.track_valid)
    kp = triangulate(rot0, trans0, p.tracks2d, p.track_valid, f, cx, cy, kp, huber_px=4.0, iterations=5)
    kp_res = p.residual_norms(rot0, trans0, kp, p.tracks2d)
    sigma_tr = max(robust_scale_px(kp_res[valid]), 0.02)
    kp = triangulate(rot0, trans0, p.tracks2d, p.track_valid, f, cx, cy, kp, huber_px=HUBER_SIGMAS * sigma_tr,
                     iterations=5)
    lm3d = triangulate(rot0, trans0, p.landmarks2d, lm_valid, f, cx, cy, p.template.clone(),
                       huber_px=HUBER_SIGMAS * sigma_lm, iterations=5)
    # Drop tracks that were lost too often (they slid or were occluded somewhere) and tracks that no rigid point
    # explains (skin moving with speech): a median residual far above the typical track's.
    kp_res = p.residual_norms(rot0, trans0, kp, p.tracks2d)
    masked = torch.where(valid, kp_res, torch.full_like(kp_res, float("nan")))
    per_track = masked.nanmedian(dim=0).values
    often = valid.to(torch.float64).mean(0) >= min_track_fraction
    typical = per_track[often].median() if often.any() else per_track.nanmedian()
    kept = often & (per_track <= drop_factor * typical)
    if kept.any():
        sigma_tr = max(robust_scale_px(kp_res[:, kept][valid[:, kept]]), 0.02)
    return _Structure(keypoints=kp[kept], landmarks=lm3d, kept=kept.cpu().numpy(), sigma_track=sigma_tr,
                      sigma_landmark=sigma_lm)


# ---------------------------------------------------------------------------------------------------- stage 2
def _normalised_huber(residual, sigma: float):
    return huber(residual.norm(dim=-1) / sigma, HUBER_SIGMAS)


def _second_difference(x):
    return x[2:] - 2.0 * x[1:-1] + x[:-2]


def joint_sample(num_frames: int, joint_frames: int = JOINT_FRAMES) -> np.ndarray:
    """The frames stage 2 adjusts: all of them up to ``joint_frames``, else that many evenly spaced."""
    if num_frames <= joint_frames:
        return np.arange(num_frames)
    return np.unique(np.round(np.linspace(0, num_frames - 1, joint_frames)).astype(np.int64))


@dataclass
class _Joint:
    """Stage 2's data: observations of the sampled frames as tensors, the loss weights and the parameters."""

    problem: _Problem
    frames: np.ndarray
    structure: _Structure
    smoothness: float

    def __post_init__(self):
        import torch

        p, dev, kept = self.problem, self.problem.device, self.structure.kept
        f64 = dict(dtype=torch.float64, device=dev)
        self.rot0, self.trans0 = p.rotation[self.frames], p.translation[self.frames]
        self.tr_obs = torch.as_tensor(p.tracks2d[self.frames][:, kept], **f64)
        self.tr_valid = torch.as_tensor(p.track_valid[self.frames][:, kept], device=dev)
        self.lm_obs = torch.as_tensor(p.landmarks2d[self.frames], **f64)
        self.lm_mask = torch.as_tensor(np.ascontiguousarray(p.landmark_mask()[self.frames]), **f64)
        self.num_obs = float(self.tr_valid.sum() + (self.lm_mask > 0).sum())
        self.depth = float(self.trans0[:, 2].mean())
        self.rot_delta = torch.zeros(len(self.frames), 3, **f64, requires_grad=True)
        self.trans_delta = torch.zeros(len(self.frames), 3, **f64, requires_grad=True)
        self.kp = self.structure.keypoints.clone().requires_grad_(True)
        self.lm = self.structure.landmarks.clone().requires_grad_(True)
        self.sigma_tr, self.sigma_lm = self.structure.sigma_track, self.structure.sigma_landmark

    def poses(self):
        return axis_angle_to_matrix(self.rot_delta) @ self.rot0, self.trans0 + self.trans_delta

    def reestimate_noise(self) -> None:
        """The first noise estimates came from residuals at the rough poses, which include their jitter; measured
        again at the better poses, each observation type gets its proper weight."""
        import torch

        f, cx, cy = self.problem.focal, self.problem.cx, self.problem.cy
        with torch.no_grad():
            r, t = self.poses()
            tr_dist = (project(transform_points(r, t, self.kp), f, cx, cy) - self.tr_obs).norm(dim=-1)
            lm_dist = (project(transform_points(r, t, self.lm), f, cx, cy) - self.lm_obs).norm(dim=-1)
            if self.tr_valid.any():
                self.sigma_tr = max(robust_scale_px(tr_dist[self.tr_valid]), 0.02)
            self.sigma_lm = max(robust_scale_px(lm_dist[self.lm_mask > 0]), 0.05)

    def loss(self):
        f, cx, cy = self.problem.focal, self.problem.cx, self.problem.cy
        r, t = self.poses()
        loss = (_normalised_huber(project(transform_points(r, t, self.kp), f, cx, cy) - self.tr_obs, self.sigma_tr)
                * self.tr_valid).sum()
        loss = loss + (_normalised_huber(project(transform_points(r, t, self.lm), f, cx, cy) - self.lm_obs,
                                         self.sigma_lm) * self.lm_mask).sum()
        loss = loss + 0.5 * ((self.lm - self.problem.template) ** 2).sum() / TEMPLATE_PRIOR_M ** 2
        if self.smoothness > 0 and len(self.frames) >= 3:
            prior = _smoothness_prior(self.problem, self.smoothness, self.num_obs / len(self.frames),
                                      self.sigma_tr, self.depth)
            # ||second difference of R||_F / sqrt(2) is the rotation's second difference in radians (to first
            # order), without converting every matrix to a rotation vector each step.
            loss = loss + prior.weight * ((_second_difference(r) ** 2).sum() / 2.0 * prior.rotation_px ** 2
                                          + (_second_difference(t) ** 2).sum() * prior.translation_px ** 2)
        return loss / self.num_obs


def _smoothness_prior(problem: _Problem, smoothness: float, obs_per_frame: float, sigma_tr: float,
                      depth: float) -> SmoothnessPrior:
    """The prior in the units of the data terms: ``smoothness / 10`` of one frame's observations, as image motion
    in units of the track noise."""
    return SmoothnessPrior(weight=SMOOTHNESS_UNIT * smoothness * obs_per_frame * 0.5 / sigma_tr ** 2,
                           rotation_px=problem.focal * HEAD_RADIUS_M / depth, translation_px=problem.focal / depth)


def _stage2(joint: _Joint, iterations: int, learning_rate: float, on_step: StepCallback | None) -> list[float]:
    """Adam on points and the sampled frames' poses, cosine decay to 1 % of the step; returns the loss history."""
    import torch

    optimiser = torch.optim.Adam([
        {"params": [joint.rot_delta], "lr": learning_rate},
        {"params": [joint.trans_delta], "lr": learning_rate * joint.depth},
        {"params": [joint.kp, joint.lm], "lr": learning_rate * joint.depth * 0.5},
    ])
    base_lrs = [g["lr"] for g in optimiser.param_groups]
    history: list[float] = []
    reestimate_at = {iterations // 3, (2 * iterations) // 3} - {0}
    for it in range(iterations):
        if it in reestimate_at:
            joint.reestimate_noise()
        # Cosine decay to 1 % of the initial step: large moves first, then settling without Adam's rattle.
        scale = 0.01 + 0.99 * 0.5 * (1.0 + math.cos(math.pi * it / max(iterations - 1, 1)))
        for group, lr in zip(optimiser.param_groups, base_lrs):
            group["lr"] = lr * scale
        optimiser.zero_grad(set_to_none=True)
        loss = joint.loss()
        loss.backward()
        optimiser.step()
        history.append(float(loss.detach()))
        if on_step is not None and (it % 20 == 0 or it == iterations - 1):
            on_step(it + 2, iterations + 3)
    return history


# ---------------------------------------------------------------------------------------------------- stage 3
def _stage3(problem: _Problem, joint: _Joint, smoothness: float):
    """Every frame's pose with stage 2's points fixed, starting from stage 2's poses where it has them."""
    import torch

    kept = joint.structure.kept
    with torch.no_grad():
        r_joint, t_joint = joint.poses()
        rotation, translation = problem.rotation.clone(), problem.translation.clone()
        rotation[joint.frames], translation[joint.frames] = r_joint, t_joint
        points = torch.cat([joint.kp.detach(), joint.lm.detach()])
    tracks = Observed(problem.tracks2d[:, kept], problem.track_valid[:, kept].astype(np.float32) / joint.sigma_tr ** 2)
    landmarks = Observed(problem.landmarks2d, problem.landmark_mask() / joint.sigma_lm ** 2)
    huber_px = torch.cat([torch.full((int(kept.sum()),), HUBER_SIGMAS * joint.sigma_tr, dtype=torch.float64),
                          torch.full((problem.template.shape[0],), HUBER_SIGMAS * joint.sigma_lm,
                                     dtype=torch.float64)]).to(problem.device)
    prior = None
    if smoothness > 0:
        num_obs = float(problem.track_valid[:, kept].sum() + (problem.landmark_mask() > 0).sum())
        prior = _smoothness_prior(problem, smoothness, num_obs / problem.num_frames, joint.sigma_tr,
                                  float(problem.translation[:, 2].mean()))
    return refine_frame_poses(points, [tracks, landmarks], huber_px, rotation, translation, problem.focal,
                              problem.cx, problem.cy, smoothness=prior, iterations=STAGE3_ITERATIONS)


# ---------------------------------------------------------------------------------------------------- the stage
def bundle_adjust(*, focal: float, cx: float, cy: float, rotation: np.ndarray, translation: np.ndarray,
                  landmarks2d: np.ndarray, template: np.ndarray, tracks2d: np.ndarray, track_valid: np.ndarray,
                  ref_index: int, landmark_weights: np.ndarray | None = None, smoothness: float = 0.0,
                  stage2_iterations: int = 600, learning_rate: float = 2e-3, min_track_fraction: float = 0.7,
                  drop_factor: float = 2.0, joint_frames: int = JOINT_FRAMES,
                  device="cpu", on_step: StepCallback | None = None) -> BundleResult:
    """Stages 1-3 as described in the module docstring.

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
        joint_frames: most frames stage 2 adjusts together with the points.
        device: torch device.
        on_step: progress callback ``(done, total)``.

    Returns:
        A ``BundleResult``.
    """
    import torch

    dev = torch.device(device)
    f64 = dict(dtype=torch.float64, device=dev)
    n = len(rotation)
    weights = np.ones(n) if landmark_weights is None else np.asarray(landmark_weights, np.float64)
    problem = _Problem(focal=float(focal), cx=float(cx), cy=float(cy),
                       rotation=torch.as_tensor(np.asarray(rotation), **f64),
                       translation=torch.as_tensor(np.asarray(translation), **f64),
                       landmarks2d=np.asarray(landmarks2d), landmark_weights=weights,
                       template=torch.as_tensor(np.asarray(template), **f64), tracks2d=np.asarray(tracks2d),
                       track_valid=np.asarray(track_valid, bool), ref_index=int(ref_index))
    # ComfyUI runs nodes under inference_mode; the optimisation needs autograd.
    with torch.inference_mode(False), torch.enable_grad():
        structure = _stage1(problem, min_track_fraction, drop_factor)
        if on_step is not None:
            on_step(1, stage2_iterations + 3)
        frames = joint_sample(n, joint_frames)
        joint = _Joint(problem, frames, structure, smoothness if len(frames) == n else 0.0)
        history = _stage2(joint, stage2_iterations, learning_rate, on_step)
        rotation_out, translation_out = _stage3(problem, joint, smoothness)
    if on_step is not None:
        on_step(stage2_iterations + 3, stage2_iterations + 3)
    return BundleResult(rotation=rotation_out.cpu().numpy(), translation=translation_out.cpu().numpy(),
                        keypoints3d=joint.kp.detach().cpu().numpy(), kept_tracks=structure.kept,
                        landmarks3d=joint.lm.detach().cpu().numpy(), sigma_track_px=float(joint.sigma_tr),
                        sigma_landmark_px=float(joint.sigma_lm), loss_history=history, joint_frames=len(frames))
