"""Head-Sync Stabilizer: per-frame head poses of a talking-head clip, steady enough to train a NeRF on.

Camera convention (one for the whole pack; ``HeadPose.c2w`` and ``transforms_*.json`` use it):

- Poses are 4x4 **camera-to-world** matrices (``c2w``), right-handed.
- The **camera** looks down its -z axis with +y up and +x right (NeRF / OpenGL, as in the original SyncTalk
  ``transforms_*.json``). OpenCV's camera (x right, y down, looking down +z) differs by ``diag(1, -1, -1)``;
  ``camera.opencv_to_nerf`` / ``camera.nerf_to_opencv`` convert.
- The **world** is the head: it stays fixed and the camera moves around it. Head axes: +x to the right of the
  image for a frontal face, +y up, +z out of the face toward the camera. The origin is the centroid of the
  subject's 468-point face mesh template (``face_model``), like the 3DMM centroid of the original.
- Units are **metres**. Intrinsics are pixels: ``fx = fy = focal``, principal point ``(cx, cy)`` (``W/2, H/2``),
  pixel coordinates ``(x = column, y = row)`` from the top-left corner of the top-left pixel.

Internally the fitting code works with OpenCV head-to-camera poses (``p_cam = R @ p_head + t``), where the
projection is the familiar ``u = f * x / z + cx``; results are converted once, at the end, to ``c2w``.

Pipeline (``stabilize.stabilize_head_pose``):
1. ``face_model`` + ``rough_tracker``: MediaPipe's canonical (mean) face fitted to the rigid landmarks of every
   frame while searching the focal length (paper Eq. 5-6); then the subject's own template at that focal length
   and every frame's rotation and translation again with it ("raw" poses).
2. ``keypoints``: dense rigid keypoints in the face, tracked by optical flow (OpenCV, or ``raft`` = RAFT-small).
3. ``bundle_adjust``: two-stage bundle adjustment of keypoints, landmarks and poses (paper Eq. 7-8), with an
   optional temporal smoothness prior ("adjusted" poses).
4. ``metrics``: jitter and reprojection numbers of both; ``preview``: frames with axes and template drawn.
"""
from synctalk_lib.pose.camera import (
    export_transforms,
    import_transforms,
    nerf_to_opencv,
    opencv_to_nerf,
)
from synctalk_lib.pose.metrics import jitter_rot_deg, jitter_trans, pose_metrics, reproj_px

__all__ = [
    "export_transforms",
    "import_transforms",
    "nerf_to_opencv",
    "opencv_to_nerf",
    "jitter_rot_deg",
    "jitter_trans",
    "pose_metrics",
    "reproj_px",
    "stabilize_head_pose",
]


def __getattr__(name: str):
    # stabilize pulls in torch-heavy modules; load it on first use so ``import synctalk_lib.pose`` stays cheap.
    if name == "stabilize_head_pose":
        from synctalk_lib.pose.stabilize import stabilize_head_pose

        return stabilize_head_pose
    raise AttributeError(name)
