"""Synthetic head-motion scenes with known ground truth, for tests and benchmarks of the stabilizer.

A face-like rigid surface (an ellipsoidal cap with a nose) moves smoothly in front of a pinhole camera; its points
are projected with a known focal length, then disturbed like real measurements: Gaussian landmark noise, a few
gross outliers, and (more precise) dense keypoint tracks with some dropped observations.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from synctalk_lib.pose.camera import project


@dataclass(frozen=True)
class SyntheticScene:
    """Ground truth and measurements of one synthetic clip (``N`` frames, OpenCV head-to-camera poses)."""

    focal: float
    width: int
    height: int
    rotation: np.ndarray
    """[N, 3, 3] true rotations."""
    translation: np.ndarray
    """[N, 3] true translations (metres)."""
    landmarks3d: np.ndarray
    """[L, 3] true rigid landmark positions (metres, head frame)."""
    keypoints3d: np.ndarray
    """[P, 3] true dense keypoint positions."""
    landmarks2d: np.ndarray
    """[N, L, 2] noisy landmark observations (pixels)."""
    tracks2d: np.ndarray
    """[N, P, 2] noisy keypoint tracks."""
    track_valid: np.ndarray
    """[N, P] bool."""
    outliers: np.ndarray
    """[N, L] bool: landmark observations replaced by gross errors."""


def face_surface(num_points: int, rng: np.random.Generator) -> np.ndarray:
    """Points on a face-like surface in metres: ellipsoid front (x right, y up, z toward the viewer) with a nose."""
    u = rng.uniform(-1.0, 1.0, size=(num_points * 3, 2))
    u = u[(u ** 2).sum(1) < 0.95][:num_points]
    x, y = 0.075 * u[:, 0], 0.09 * u[:, 1]
    z = 0.06 * np.sqrt(np.clip(1.0 - u[:, 0] ** 2 - u[:, 1] ** 2, 0.0, None))
    z += 0.025 * np.exp(-((x / 0.012) ** 2 + ((y + 0.01) / 0.025) ** 2))  # the nose
    pts = np.stack([x, y, z], 1)
    return pts - pts.mean(0)


def smooth_motion(num_frames: int, rng: np.random.Generator, *, fps: float = 25.0, rot_deg=(12.0, 7.0, 4.0),
                  shift_m=(0.02, 0.015, 0.03), distance_m: float = 0.6) -> tuple[np.ndarray, np.ndarray]:
    """Smooth random head motion: sums of slow sinusoids (0.05-0.4 Hz) per rotation and translation axis.

    Returns:
        OpenCV head-to-camera ``(rotation [N, 3, 3], translation [N, 3])`` of a head facing the camera.
    """
    import torch

    from synctalk_lib.pose.camera import axis_angle_to_matrix

    t = np.arange(num_frames) / fps

    def wave(amplitude: float) -> np.ndarray:
        freqs = rng.uniform(0.05, 0.4, size=3)
        phases = rng.uniform(0, 2 * np.pi, size=3)
        weights = rng.uniform(0.5, 1.0, size=3)
        signal = (weights[:, None] * np.sin(2 * np.pi * freqs[:, None] * t + phases[:, None])).sum(0)
        return amplitude * signal / weights.sum()

    angles = np.radians(np.stack([wave(a) for a in rot_deg], 1))  # pitch (x), yaw (y), roll (z) in head axes
    head = axis_angle_to_matrix(torch.from_numpy(angles)).numpy()
    frontal = np.diag([1.0, -1.0, -1.0])  # head +y up / +z toward camera -> OpenCV camera axes
    rotation = frontal @ head
    translation = np.stack([wave(shift_m[0]), wave(shift_m[1]), distance_m + wave(shift_m[2])], 1)
    return rotation, translation


def make_scene(*, num_frames: int = 120, num_landmarks: int = 150, num_keypoints: int = 300, focal: float = 1100.0,
               size: int = 512, landmark_sigma_px: float = 1.5, outlier_fraction: float = 0.01,
               track_sigma_px: float = 0.3, track_drop_fraction: float = 0.03, seed: int = 0) -> SyntheticScene:
    """A synthetic clip with known poses and focal length (see the module docstring)."""
    rng = np.random.default_rng(seed)
    landmarks3d = face_surface(num_landmarks, rng)
    keypoints3d = face_surface(num_keypoints, rng)
    rotation, translation = smooth_motion(num_frames, rng)
    cx = cy = size / 2.0

    def observe(points: np.ndarray) -> np.ndarray:
        cam = np.einsum("nij,pj->npi", rotation, points) + translation[:, None, :]
        return project(cam, focal, cx, cy)

    landmarks2d = observe(landmarks3d) + rng.normal(0.0, landmark_sigma_px, size=(num_frames, num_landmarks, 2))
    outliers = rng.random((num_frames, num_landmarks)) < outlier_fraction
    kicks = rng.uniform(8.0, 30.0, size=outliers.sum())[:, None] * _unit_vectors(outliers.sum(), rng)
    landmarks2d[outliers] += kicks
    tracks2d = observe(keypoints3d) + rng.normal(0.0, track_sigma_px, size=(num_frames, num_keypoints, 2))
    valid = rng.random((num_frames, num_keypoints)) >= track_drop_fraction
    return SyntheticScene(focal=focal, width=size, height=size, rotation=rotation, translation=translation,
                          landmarks3d=landmarks3d, keypoints3d=keypoints3d, landmarks2d=landmarks2d,
                          tracks2d=tracks2d, track_valid=valid, outliers=outliers)


def _unit_vectors(count: int, rng: np.random.Generator) -> np.ndarray:
    angle = rng.uniform(0, 2 * np.pi, size=count)
    return np.stack([np.cos(angle), np.sin(angle)], 1)
