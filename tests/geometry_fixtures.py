"""A synthetic head seen by a moving camera: a face-like point cloud, its poses, and the landmarks the camera sees
(with the lower face dropping as the jaw opens), for tests of the face geometry and of everything built on it."""
from __future__ import annotations

import numpy as np

from synctalk_lib.face.indices import CHIN, NOSE_TIP
from synctalk_lib.pose.camera import opencv_to_nerf, project
from synctalk_lib.pose.face_model import RIGID_LANDMARKS
from synctalk_lib.types import FaceTrack, HeadPose

FOCAL, SIZE = 900.0, 256


def face_cloud(rng: np.random.Generator) -> np.ndarray:
    """[478, 3] a face-sized point cloud (metres): a half ellipsoid facing +z, chin at -9 cm, nose tip forward."""
    theta = rng.uniform(0, np.pi, 478)
    phi = rng.uniform(0, 2 * np.pi, 478)
    pts = np.stack([0.07 * np.sin(theta) * np.cos(phi), 0.09 * np.cos(theta),
                    0.05 * np.abs(np.sin(theta) * np.sin(phi))], -1)
    pts[CHIN] = (0.0, -0.09, 0.02)
    pts[NOSE_TIP] = (0.0, 0.0, 0.06)
    pts[2] = (0.0, -0.015, 0.05)  # subnasale
    pts[10] = (0.0, 0.085, 0.03)  # forehead top
    return pts


def head_scene(num_frames: int = 40, seed: int = 0, jaw_mm: np.ndarray | None = None):
    """Synthetic track and pose: a head turning a few degrees, its chin and lower points dropping by ``jaw_mm``."""
    rng = np.random.default_rng(seed)
    base = face_cloud(rng)
    jaw_mm = np.zeros(num_frames) if jaw_mm is None else jaw_mm
    angles = np.radians(rng.uniform(-6, 6, (num_frames, 3)))
    landmarks, rotations, translations = [], [], []
    lower = base[:, 1] < base[2, 1]
    for n in range(num_frames):
        pts = base.copy()
        pts[lower, 1] -= jaw_mm[n] / 1000.0 * (base[2, 1] - pts[lower, 1]) / 0.075
        rx, ry, rz = angles[n]
        r = rotation(rx, ry, rz) @ np.diag([1.0, -1.0, -1.0])  # head +y up -> OpenCV camera y down
        t = np.array([0.0, 0.0, 1.0]) + rng.normal(0, 0.005, 3)
        cam = pts @ r.T + t
        px = project(cam, FOCAL, SIZE / 2, SIZE / 2)
        s = np.median(cam[RIGID_LANDMARKS, 2]) / FOCAL  # the lifting's metres-per-pixel
        z_px = (cam[:, 2] - 1.0) / s
        landmarks.append(np.concatenate([px, z_px[:, None]], 1))
        rotations.append(r)
        translations.append(t)
    c2w = opencv_to_nerf(np.array(rotations), np.array(translations)).astype(np.float32)
    pose = HeadPose(focal=FOCAL, cx=SIZE / 2, cy=SIZE / 2, width=SIZE, height=SIZE, c2w=c2w,
                    keypoints=np.zeros((0, 3), np.float32), reproj_error=np.zeros(num_frames, np.float32),
                    landmarks3d=base[list(RIGID_LANDMARKS)].astype(np.float32))
    track = FaceTrack(landmarks=np.array(landmarks, np.float32), blendshapes=np.zeros((num_frames, 52), np.float32),
                      blendshape_names=tuple(f"b{i}" for i in range(52)), face_found=np.ones(num_frames, bool),
                      transforms=np.tile(np.eye(4, dtype=np.float32), (num_frames, 1, 1)),
                      expression=np.zeros((num_frames, 7), np.float32), expression_names=tuple("abcdefg"),
                      width=SIZE, height=SIZE, fps=25.0)
    return base, track, pose


def rotation(rx: float, ry: float, rz: float) -> np.ndarray:
    cx, sx, cy, sy, cz, sz = np.cos(rx), np.sin(rx), np.cos(ry), np.sin(ry), np.cos(rz), np.sin(rz)
    return (np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]]) @ np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
            @ np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]]))
