"""Face nodes: CaptureBlendshapes (MediaPipe landmarks, 52 blendshapes, expression coefficients)."""
from __future__ import annotations

from synctalk_lib.face.capture import DEFAULT_SMOOTHING, SMOOTHING_CHOICES

from . import bridge


class SyncTalkCaptureBlendshapes:
    """Clip -> face track (per-frame landmarks, blendshapes, head matrix, 7 expression coefficients) + preview."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "clip": ("SYNCTALK_CLIP", {"tooltip": "The prepared reference clip (from LoadReferenceVideo or "
                                                  "ClipFromImages); its frames are streamed from the cache."}),
            "max_gap": ("INT", {"default": 5, "min": 0, "max": 100, "step": 1,
                                "tooltip": "Longest run of frames without a detectable face that is filled by "
                                           "interpolation (and listed in the report). Longer runs stop with an "
                                           "error naming the frames; 0 allows none."}),
            "smoothing": (list(SMOOTHING_CHOICES), {
                "default": DEFAULT_SMOOTHING,
                "tooltip": "Temporal smoothing of landmarks and blendshape scores. one_euro: zero-phase One-Euro "
                           "filter, removes ~40 % of MediaPipe's frame-to-frame jitter without delaying motion or "
                           "blinks. none: the raw MediaPipe values."}),
            "preview_frames": ("INT", {"default": 8, "min": 1, "max": 64, "step": 1,
                                       "tooltip": "How many evenly spaced frames the preview shows."}),
        }}

    RETURN_TYPES = ("SYNCTALK_FACE_TRACK", "IMAGE", "STRING")
    RETURN_NAMES = ("face_track", "preview", "report")
    OUTPUT_TOOLTIPS = (
        "Per frame: 478 landmarks (pixels + relative depth), 52 blendshape scores, face-found flag, facial "
        "transformation matrix, and the 7 upper-face expression coefficients (brows + blinks) the renderer uses.",
        "Evenly spaced frames with the landmarks drawn (green = found, orange = interpolated) and the 7 "
        "coefficients as bars.",
        "Frames with a face, interpolated frames, blink events, smoothing and capture speed.",
    )
    FUNCTION = "run"
    CATEGORY = "SyncTalk/Preprocess"
    DESCRIPTION = ("Runs MediaPipe's FaceLandmarker (video mode) over every frame of the clip: landmarks, the 52 "
                   "blendshapes and the head matrix per frame, plus the 7 upper-face expression coefficients "
                   "(browDown L/R, browInnerUp, browOuterUp L/R, eyeBlink L/R) that drive SyncTalk's expression "
                   "sync. Short face dropouts are interpolated; optional smoothing removes jitter.")

    def run(self, clip, max_gap: int, smoothing: str, preview_frames: int):
        import torch

        from synctalk_lib.errors import InputError
        from synctalk_lib.face.capture import capture_face_track
        from synctalk_lib.face.preview import draw_face_preview
        from synctalk_lib.face.stats import format_face_report, summarize_face_track
        from synctalk_lib.types import Clip

        if not isinstance(clip, Clip):
            raise InputError(f"clip must be a SYNCTALK_CLIP (from LoadReferenceVideo), got {type(clip).__name__}")
        with bridge.progress("Capturing face", clip.num_frames) as on_step:
            track = capture_face_track(clip, models_dirs=bridge.models_dirs(), max_gap=int(max_gap),
                                       smoothing=smoothing, on_step=on_step)
        preview = torch.from_numpy(draw_face_preview(clip, track, int(preview_frames)))
        return (track, preview, format_face_report(summarize_face_track(track)))


NODE_CLASS_MAPPINGS = {"SyncTalkCaptureBlendshapes": SyncTalkCaptureBlendshapes}
NODE_DISPLAY_NAME_MAPPINGS = {"SyncTalkCaptureBlendshapes": "CaptureBlendshapes"}
