"""A preview of head poses for people: a few frames with the head's axes and the projected face template drawn.

If the poses are right, the template's dots (cyan) sit on the face's nose, cheeks and forehead in every frame and
the axes turn with the head: red = head right (+x), green = up (+y), blue = out of the face (+z). The dense
keypoints found by bundle adjustment are drawn small in yellow.
"""
from __future__ import annotations

import numpy as np

from synctalk_lib.errors import require
from synctalk_lib.pose.camera import nerf_to_opencv, project
from synctalk_lib.types import Clip, HeadPose

TEMPLATE_COLOR = (0, 230, 255)
KEYPOINT_COLOR = (255, 220, 0)
AXIS_COLORS = ((255, 40, 40), (40, 220, 40), (60, 120, 255))
TEXT_COLOR = (255, 255, 255)
AXIS_LENGTH_M = 0.08


def preview_indices(num_frames: int, count: int) -> list[int]:
    """``count`` frame indices spread evenly over the clip (fewer if it is shorter)."""
    count = max(1, min(int(count), num_frames))
    return sorted({int(round(i)) for i in np.linspace(0, num_frames - 1, count)})


def _project_frame(pose: HeadPose, index: int, points: np.ndarray) -> np.ndarray:
    rotation, translation = nerf_to_opencv(pose.c2w[index:index + 1])
    cam = points @ rotation[0].T + translation[0]
    return project(cam, pose.focal, pose.cx, pose.cy)


def draw_pose_preview(clip: Clip, pose: HeadPose, num_frames: int = 4, *, max_side: int = 768) -> np.ndarray:
    """Preview images of ``pose`` on ``clip``.

    Args:
        clip: the clip the poses belong to (same frame count and size).
        pose: its head poses.
        num_frames: how many evenly spaced frames to show.
        max_side: frames larger than this are scaled down.

    Returns:
        [K, H', W', 3] float32 0..1 (a ComfyUI ``IMAGE`` batch), K <= ``num_frames``.
    """
    cv2 = require("cv2", "Head pose preview", "opencv-contrib-python")
    if pose.num_frames != clip.num_frames:
        raise ValueError(f"the head pose has {pose.num_frames} frames but the clip has {clip.num_frames}")
    scale = min(1.0, max_side / max(clip.height, clip.width))
    out_w, out_h = int(round(clip.width * scale)), int(round(clip.height * scale))
    axes = np.array([[0, 0, 0], [AXIS_LENGTH_M, 0, 0], [0, AXIS_LENGTH_M, 0], [0, 0, AXIS_LENGTH_M]], np.float64)
    radius = max(1, int(round(1.5 * max(out_w, out_h) / 512)))
    thickness = max(1, int(round(2 * max(out_w, out_h) / 512)))
    images = []
    for i in preview_indices(clip.num_frames, num_frames):
        frame = clip.frame(i)
        if scale < 1.0:
            frame = cv2.resize(frame, (out_w, out_h), interpolation=cv2.INTER_AREA)
        frame = np.ascontiguousarray(frame)
        for points, color, size in ((pose.keypoints, KEYPOINT_COLOR, max(1, radius - 1)),
                                    (pose.landmarks3d, TEMPLATE_COLOR, radius)):
            if len(points):
                for x, y in _project_frame(pose, i, np.asarray(points, np.float64)) * scale:
                    if np.isfinite(x) and np.isfinite(y):
                        cv2.circle(frame, (int(round(x)), int(round(y))), size, color, -1, cv2.LINE_AA)
        ends = _project_frame(pose, i, axes) * scale
        origin = tuple(int(round(v)) for v in ends[0])
        for end, color in zip(ends[1:], AXIS_COLORS):
            cv2.line(frame, origin, tuple(int(round(v)) for v in end), color, thickness, cv2.LINE_AA)
        error = float(pose.reproj_error[i]) if len(pose.reproj_error) else float("nan")
        label = f"frame {i}  reproj {error:.2f} px" if np.isfinite(error) else f"frame {i}"
        font = max(0.4, 0.5 * max(out_w, out_h) / 512)
        cv2.putText(frame, label, (8, int(24 * font / 0.5)), cv2.FONT_HERSHEY_SIMPLEX, font, (0, 0, 0),
                    thickness + 2, cv2.LINE_AA)
        cv2.putText(frame, label, (8, int(24 * font / 0.5)), cv2.FONT_HERSHEY_SIMPLEX, font, TEXT_COLOR,
                    thickness, cv2.LINE_AA)
        images.append(frame)
    return np.stack(images).astype(np.float32) / 255.0
