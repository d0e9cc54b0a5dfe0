"""Camera frames, rotations, projection and the original SyncTalk ``transforms_*.json`` files.

The pack's convention is written at the top of ``synctalk_lib.pose``: camera-to-world 4x4 matrices, camera looking
down -z with +y up (NeRF / OpenGL), head fixed in world space, metres. The fitting code uses OpenCV head-to-camera
poses (``p_cam = R @ p_head + t``, camera looking down +z with +y down); this module converts between the two.

Rotation helpers are batched torch functions (they run inside the optimisers); frame conversions and the JSON files
work on numpy arrays. The renderer's NGP space (the original loader's ``nerf_matrix_to_ngp``) is one step further,
in ``synctalk_lib.nerf.rays.head_pose_to_ngp``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np

from synctalk_lib.errors import InputError
from synctalk_lib.paths import write_json

#: Flips between OpenCV (x right, y down, z forward) and OpenGL (x right, y up, z backward) camera axes.
OPENCV_FROM_OPENGL = np.diag([1.0, -1.0, -1.0])

TRAIN_FILE = "transforms_train.json"
VAL_FILE = "transforms_val.json"


# ------------------------------------------------------------------------------------------------- rotations
def axis_angle_to_matrix(rotvec):
    """Rodrigues' formula, batched and differentiable (also at zero angle).

    Args:
        rotvec: torch tensor [..., 3], axis * angle in radians.

    Returns:
        [..., 3, 3] rotation matrices, same dtype and device.
    """
    import torch

    theta2 = (rotvec * rotvec).sum(-1, keepdim=True)[..., None]  # [..., 1, 1]
    small = theta2 < 1e-8
    safe2 = torch.where(small, torch.ones_like(theta2), theta2)
    theta = safe2.sqrt()
    # sin(t)/t and (1 - cos t)/t^2 with their Taylor series near zero, so gradients stay finite there.
    a = torch.where(small, 1.0 - theta2 / 6.0, torch.sin(theta) / theta)
    b = torch.where(small, 0.5 - theta2 / 24.0, (1.0 - torch.cos(theta)) / safe2)
    x, y, z = rotvec.unbind(-1)
    zero = torch.zeros_like(x)
    k = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], -1).reshape(*rotvec.shape[:-1], 3, 3)
    eye = torch.eye(3, dtype=rotvec.dtype, device=rotvec.device).expand_as(k)
    return eye + a * k + b * (k @ k)


def matrix_to_quaternion(matrix):
    """Unit quaternions ``(w, x, y, z)`` with ``w >= 0`` of rotation matrices, torch [..., 3, 3] -> [..., 4].

    Shepperd's method: of the four algebraically equivalent formulas, each element uses the one with the
    largest denominator, which is accurate at every angle including 180 degrees.
    """
    import torch

    m = matrix
    m00, m01, m02 = m[..., 0, 0], m[..., 0, 1], m[..., 0, 2]
    m10, m11, m12 = m[..., 1, 0], m[..., 1, 1], m[..., 1, 2]
    m20, m21, m22 = m[..., 2, 0], m[..., 2, 1], m[..., 2, 2]
    candidates = torch.stack([
        torch.stack([1 + m00 + m11 + m22, m21 - m12, m02 - m20, m10 - m01], -1),
        torch.stack([m21 - m12, 1 + m00 - m11 - m22, m01 + m10, m02 + m20], -1),
        torch.stack([m02 - m20, m01 + m10, 1 - m00 + m11 - m22, m12 + m21], -1),
        torch.stack([m10 - m01, m02 + m20, m12 + m21, 1 - m00 - m11 + m22], -1),
    ], -2)  # [..., 4 candidates, 4]; candidate i is 4*q*q_i
    diag = torch.stack([candidates[..., i, i] for i in range(4)], -1)
    best = diag.argmax(-1, keepdim=True)
    q = torch.gather(candidates, -2, best[..., None].expand(*best.shape, 4)).squeeze(-2)
    q = q / q.norm(dim=-1, keepdim=True)
    return torch.where(q[..., :1] < 0, -q, q)


def matrix_to_axis_angle(matrix):
    """Rotation vectors (axis * angle, angle in [0, pi]) of rotation matrices, torch [..., 3, 3] -> [..., 3]."""
    import torch

    q = matrix_to_quaternion(matrix)
    w, v = q[..., :1], q[..., 1:]
    n = v.norm(dim=-1, keepdim=True)
    angle = 2.0 * torch.atan2(n, w)
    # angle / n -> 2 / w as n -> 0 (w is then ~1).
    scale = torch.where(n > 1e-7, angle / n.clamp_min(1e-12), 2.0 / w.clamp_min(1e-12))
    return v * scale


def rotation_angle_deg(a, b) -> np.ndarray:
    """Angle in degrees of ``a @ b^T`` (the rotation taking ``b`` to ``a``), numpy [..., 3, 3] -> [...]."""
    rel = np.asarray(a, np.float64) @ np.swapaxes(np.asarray(b, np.float64), -1, -2)
    cos = (np.trace(rel, axis1=-2, axis2=-1) - 1.0) / 2.0
    skew = np.stack([rel[..., 2, 1] - rel[..., 1, 2], rel[..., 0, 2] - rel[..., 2, 0],
                     rel[..., 1, 0] - rel[..., 0, 1]], -1)
    sin = 0.5 * np.linalg.norm(skew, axis=-1)
    return np.degrees(np.arctan2(sin, cos))  # accurate at small angles too, unlike arccos


# ------------------------------------------------------------------------------------------------ projection
def project(points_cam, focal: float, cx: float, cy: float):
    """Pinhole projection of OpenCV camera-frame points (``z > 0`` in front), torch or numpy.

    Args:
        points_cam: [..., 3] points in metres.
        focal: fx = fy in pixels.
        cx, cy: principal point in pixels.

    Returns:
        [..., 2] pixel coordinates ``(x = column, y = row)``.
    """
    z = points_cam[..., 2:3]
    return points_cam[..., :2] / z * focal + _xy(cx, cy, points_cam)


def _xy(cx: float, cy: float, like):
    if isinstance(like, np.ndarray):
        return np.array([cx, cy], dtype=like.dtype)
    import torch

    return torch.tensor([cx, cy], dtype=like.dtype, device=like.device)


def transform_points(rotation, translation, points):
    """``R @ p + t`` for every frame and point: R [N, 3, 3], t [N, 3], p [P, 3] or [N, P, 3] -> [N, P, 3]."""
    if points.ndim == 2:
        return points[None] @ rotation.swapaxes(-1, -2) + translation[:, None, :]
    return points @ rotation.swapaxes(-1, -2) + translation[:, None, :]


# --------------------------------------------------------------------------------------- frame conversions
def opencv_to_nerf(rotation: np.ndarray, translation: np.ndarray) -> np.ndarray:
    """Camera-to-world NeRF matrices from OpenCV head-to-camera poses.

    Args:
        rotation: [N, 3, 3] ``R`` of ``p_cam = R @ p_head + t`` (OpenCV camera axes).
        translation: [N, 3] ``t`` in metres.

    Returns:
        [N, 4, 4] float64 camera-to-world matrices (camera looking down -z, +y up).
    """
    rotation = np.asarray(rotation, np.float64)
    translation = np.asarray(translation, np.float64)
    r_gl = OPENCV_FROM_OPENGL @ rotation  # head -> OpenGL camera
    t_gl = translation @ OPENCV_FROM_OPENGL
    c2w = np.tile(np.eye(4), (len(rotation), 1, 1))
    c2w[:, :3, :3] = np.swapaxes(r_gl, -1, -2)
    c2w[:, :3, 3] = -np.einsum("nji,nj->ni", r_gl, t_gl)
    return c2w


def nerf_to_opencv(c2w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """OpenCV head-to-camera ``(R [N, 3, 3], t [N, 3])`` from NeRF camera-to-world matrices [N, 4, 4]."""
    c2w = np.asarray(c2w, np.float64)
    r_gl = np.swapaxes(c2w[:, :3, :3], -1, -2)
    t_gl = -np.einsum("nij,nj->ni", r_gl, c2w[:, :3, 3])
    return OPENCV_FROM_OPENGL @ r_gl, t_gl @ OPENCV_FROM_OPENGL


# ------------------------------------------------------------------------------------- transforms_*.json files
def split_frames(num_frames: int, val_frames: int | Sequence[int] | None = None) -> tuple[list[int], list[int]]:
    """Train and validation frame numbers.

    Args:
        num_frames: N.
        val_frames: None for the original split (train = first ``int(N * 10 / 11)`` frames, val = the rest), an
            int ``k`` for the last ``k`` frames, or explicit frame numbers.
    """
    if val_frames is None:
        n_train = int(num_frames * 10 / 11)
        return list(range(n_train)), list(range(n_train, num_frames))
    if isinstance(val_frames, (int, np.integer)):
        k = int(val_frames)
        if not 0 <= k < num_frames:
            raise InputError(f"val_frames = {k} must be between 0 and {num_frames - 1} (the clip has {num_frames} "
                             "frames)")
        return list(range(num_frames - k)), list(range(num_frames - k, num_frames))
    val = sorted({int(i) for i in val_frames})
    bad = [i for i in val if not 0 <= i < num_frames]
    if bad:
        raise InputError(f"validation frames {bad[:10]} are outside the clip (0..{num_frames - 1})")
    val_set = set(val)
    return [i for i in range(num_frames) if i not in val_set], val


def _transforms_doc(focal: float, cx: float, cy: float, width: int, height: int, c2w: np.ndarray,
                    frames: list[int]) -> dict:
    return {
        "focal_len": float(focal),
        "cx": float(cx),
        "cy": float(cy),
        # Not in the original files (its loader uses H = 2 * int(cy)); written so odd sizes survive a round trip.
        "w": int(width),
        "h": int(height),
        "frames": [{"img_id": int(i), "aud_id": int(i), "transform_matrix": np.asarray(c2w[i], float).tolist()}
                   for i in frames],
    }


def export_transforms(pose, folder: Path | str, *, val_frames: int | Sequence[int] | None = None
                      ) -> tuple[Path, Path]:
    """Write ``transforms_train.json`` and ``transforms_val.json`` (original SyncTalk layout) into ``folder``.

    Args:
        pose: a ``HeadPose``.
        folder: output folder (created).
        val_frames: see ``split_frames``; default is the original ``int(N * 10 / 11)`` split.

    Returns:
        The two file paths (train, val).
    """
    folder = Path(folder)
    train, val = split_frames(pose.num_frames, val_frames)
    paths = (folder / TRAIN_FILE, folder / VAL_FILE)
    for path, frames in zip(paths, (train, val)):
        write_json(path, _transforms_doc(pose.focal, pose.cx, pose.cy, pose.width, pose.height, pose.c2w, frames))
    return paths


def _read_transforms(path: Path) -> dict:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"{path} is not a readable transforms JSON file ({exc})") from exc
    missing = [k for k in ("focal_len", "cx", "cy", "frames") if k not in doc]
    if missing:
        raise InputError(f"{path} lacks the keys {missing}; expected the SyncTalk transforms layout "
                         "(focal_len, cx, cy, frames[img_id, transform_matrix])")
    return doc


def import_transforms(source: Path | str, val_path: Path | str | None = None):
    """A ``HeadPose`` from original-layout transforms files (train + val merged, ordered by ``img_id``).

    Args:
        source: a folder holding ``transforms_train.json`` (and usually ``transforms_val.json``), or the path of
            one transforms file.
        val_path: the second file when ``source`` is a file (optional).

    Returns:
        A ``HeadPose`` without 3D keypoints and with unknown (NaN) reprojection errors.
    """
    from synctalk_lib.types import HeadPose

    source = Path(source)
    if source.is_dir():
        files = [source / TRAIN_FILE] + ([source / VAL_FILE] if (source / VAL_FILE).is_file() else [])
        if not files[0].is_file():
            raise InputError(f"{source} has no {TRAIN_FILE}")
    else:
        files = [source] + ([Path(val_path)] if val_path is not None else [])
    docs = [_read_transforms(p) for p in files]
    first = docs[0]
    for path, doc in zip(files[1:], docs[1:]):
        if any(abs(float(doc[k]) - float(first[k])) > 1e-6 for k in ("focal_len", "cx", "cy")):
            raise InputError(f"{path} has different intrinsics from {files[0]}; both files must come from one fit")
    by_id: dict[int, np.ndarray] = {}
    for path, doc in zip(files, docs):
        for entry in doc["frames"]:
            matrix = np.asarray(entry.get("transform_matrix"), np.float64)
            if matrix.shape != (4, 4):
                raise InputError(f"{path}: frame {entry.get('img_id')} has a transform_matrix of shape "
                                 f"{list(matrix.shape)}, expected 4x4")
            by_id[int(entry["img_id"])] = matrix
    ids = sorted(by_id)
    if not ids or ids != list(range(len(ids))):
        gaps = sorted(set(range(max(ids, default=-1) + 1)) - set(ids))
        raise InputError(f"the transforms files must cover frames 0..N-1 without gaps; missing img_id {gaps[:10]}")
    cx, cy = float(first["cx"]), float(first["cy"])
    width = int(first.get("w", 2 * int(cx)))
    height = int(first.get("h", 2 * int(cy)))
    n = len(ids)
    return HeadPose(
        focal=float(first["focal_len"]), cx=cx, cy=cy, width=width, height=height,
        c2w=np.stack([by_id[i] for i in ids]).astype(np.float32),
        keypoints=np.zeros((0, 3), np.float32),
        reproj_error=np.full(n, np.nan, np.float32),
        report_json=json.dumps({"imported_from": [str(p) for p in files]}),
    )
