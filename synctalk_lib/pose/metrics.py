"""The stabilizer's numbers, defined once and used by the library, the CLI report, the tests and the bench.

- ``jitter_rot_deg``: mean over frames of the norm of the second temporal difference of the head rotation vector,
  in degrees. The rotation is the head's orientation in the camera frame (world-to-camera, NeRF/OpenGL camera
  axes, so a frontal head is near the zero rotation and rotation vectors never wrap).
- ``jitter_trans``: the same for the head's position in the camera frame, divided by the mean head depth
  (unitless, so it does not depend on the focal length or the scene scale).
- ``reproj_px``: mean reprojection error of the rigid landmarks, in pixels (Euclidean distance per point).

A smooth trajectory has small second differences; per-frame noise raises them. Reprojection error guards the
other side: a pose track smoothed until it lags behind the face pays for it in ``reproj_px``.
"""
from __future__ import annotations

import numpy as np


def _head_in_camera(c2w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """World-to-camera rotation [N, 3, 3] and translation [N, 3] from camera-to-world [N, 4, 4]."""
    c2w = np.asarray(c2w, np.float64)
    rotation = np.swapaxes(c2w[:, :3, :3], -1, -2)
    translation = -np.einsum("nij,nj->ni", rotation, c2w[:, :3, 3])
    return rotation, translation


def _second_difference_norm(values: np.ndarray) -> np.ndarray:
    """||v[t+1] - 2 v[t] + v[t-1]|| for t = 1..N-2, [N, D] -> [N-2]."""
    return np.linalg.norm(values[2:] - 2.0 * values[1:-1] + values[:-2], axis=-1)


def jitter_rot_deg(c2w: np.ndarray) -> float:
    """Rotation jitter in degrees of camera-to-world poses [N, 4, 4] (0 for fewer than 3 frames)."""
    if len(c2w) < 3:
        return 0.0
    import torch

    from synctalk_lib.pose.camera import matrix_to_axis_angle

    rotation, _ = _head_in_camera(c2w)
    rotvec = matrix_to_axis_angle(torch.from_numpy(rotation)).numpy()
    return float(np.degrees(_second_difference_norm(rotvec).mean()))


def jitter_trans(c2w: np.ndarray) -> float:
    """Translation jitter of camera-to-world poses [N, 4, 4], relative to the mean head depth (unitless)."""
    if len(c2w) < 3:
        return 0.0
    _, translation = _head_in_camera(c2w)
    depth = float(np.abs(translation[:, 2]).mean())
    return float(_second_difference_norm(translation).mean() / max(depth, 1e-12))


def reproj_px(projected: np.ndarray, observed: np.ndarray, valid: np.ndarray | None = None) -> float:
    """Mean pixel distance between projected [N, L, 2] and observed [N, L, 2] points (optionally only ``valid``)."""
    dist = np.linalg.norm(np.asarray(projected, np.float64) - np.asarray(observed, np.float64), axis=-1)
    if valid is not None:
        dist = dist[np.asarray(valid, bool)]
    return float(dist.mean()) if dist.size else float("nan")


def reproj_px_per_frame(projected: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """Mean pixel distance per frame, [N, L, 2] x 2 -> [N] float32."""
    dist = np.linalg.norm(np.asarray(projected, np.float64) - np.asarray(observed, np.float64), axis=-1)
    return dist.mean(axis=1).astype(np.float32)


def pose_metrics(c2w: np.ndarray, projected: np.ndarray, observed: np.ndarray) -> dict[str, float]:
    """``{"jitter_rot_deg", "jitter_trans", "reproj_px"}`` of one pose track (rounded for reports)."""
    return {
        "jitter_rot_deg": round(jitter_rot_deg(c2w), 5),
        "jitter_trans": round(jitter_trans(c2w), 6),
        "reproj_px": round(reproj_px(projected, observed), 4),
    }
