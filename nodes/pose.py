"""Pose nodes: StabilizeHeadPose (the Head-Sync Stabilizer: focal length, per-frame head poses, bundle adjustment)."""
from __future__ import annotations

from . import bridge


class SyncTalkStabilizeHeadPose:
    """Clip + face track -> stabilised per-frame head poses (camera-to-world) + preview + report."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "clip": ("SYNCTALK_CLIP", {"tooltip": "The prepared reference clip (from LoadReferenceVideo or "
                                                  "ClipFromImages); keypoints are tracked in its frames."}),
            "face_track": ("SYNCTALK_FACE_TRACK", {"tooltip": "The clip's face track from CaptureBlendshapes "
                                                              "(landmarks and MediaPipe head matrices)."}),
            "flow": (["opencv", "raft-small"], {
                "default": "opencv",
                "tooltip": "Optical flow used to track dense keypoints. opencv: DIS + Lucas-Kanade, no weights, fast "
                           "on a CPU. raft-small: the RAFT-small network (weights raft-small.pth, BSD-3-Clause, "
                           "fetched into models/synctalk); slow on a CPU, use it with a GPU."}),
            "smoothness": ("FLOAT", {
                "default": 0.0, "min": 0.0, "max": 10.0, "step": 0.1,
                "tooltip": "Temporal smoothness prior of the bundle adjustment (0 = off, the paper's setting). "
                           "1-3 removes jitter the measurements cannot (depth and small turns are barely visible "
                           "with a long lens); high values make the head lag behind fast turns - the report's "
                           "landmark reprojection error shows it."}),
            "device": (["auto", "cpu", "cuda"], {"default": "auto",
                                                 "tooltip": "Where the fits (and RAFT) run (auto: ComfyUI's device)."}),
        }}

    RETURN_TYPES = ("SYNCTALK_HEAD_POSE", "IMAGE", "STRING")
    RETURN_NAMES = ("head_pose", "preview", "report")
    OUTPUT_TOOLTIPS = (
        "Intrinsics (focal, cx, cy) and one camera-to-world pose per frame (head fixed in world space, NeRF camera "
        "axes, metres), the 3D keypoints and landmarks, and per-frame reprojection errors.",
        "Four frames with the head axes (red right, green up, blue out of the face) and the projected face "
        "template (cyan) and keypoints (yellow); they should sit on the face.",
        "Focal length, jitter and landmark reprojection error of the rough fit and after bundle adjustment, and "
        "the time taken.",
    )
    FUNCTION = "run"
    CATEGORY = "SyncTalk/Preprocess"
    DESCRIPTION = ("SyncTalk's Head-Sync Stabilizer. Finds the camera's focal length and a head pose for every "
                   "frame by fitting a 3D face to the rigid face landmarks, then tracks hundreds of rigid skin "
                   "points with optical flow and refines points and poses together by bundle adjustment, so the "
                   "head does not jitter or drift in the trained model.")

    def run(self, clip, face_track, flow: str, smoothness: float, device: str):
        import torch

        from synctalk_lib.errors import InputError
        from synctalk_lib.pose.preview import draw_pose_preview
        from synctalk_lib.pose.stabilize import format_pose_report, stabilize_head_pose
        from synctalk_lib.types import Clip, FaceTrack

        if not isinstance(clip, Clip):
            raise InputError(f"clip must be a SYNCTALK_CLIP (from LoadReferenceVideo), got {type(clip).__name__}")
        if not isinstance(face_track, FaceTrack):
            raise InputError("face_track must be a SYNCTALK_FACE_TRACK (from CaptureBlendshapes), got "
                             f"{type(face_track).__name__}")
        with bridge.progress("Stabilizing head pose", 1000) as on_step:
            pose = stabilize_head_pose(clip, face_track, flow=flow, models_dirs=bridge.models_dirs(),
                                       smoothness=float(smoothness), device=bridge.device(device), on_step=on_step)
        preview = torch.from_numpy(draw_pose_preview(clip, pose))
        return (pose, preview, format_pose_report(pose))


NODE_CLASS_MAPPINGS = {"SyncTalkStabilizeHeadPose": SyncTalkStabilizeHeadPose}
NODE_DISPLAY_NAME_MAPPINGS = {"SyncTalkStabilizeHeadPose": "StabilizeHeadPose"}
