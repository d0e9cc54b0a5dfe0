"""Input nodes: a reference video (or frames from other nodes) becomes a SYNCTALK_CLIP cached on disk."""
from __future__ import annotations

from . import bridge

CATEGORY = f"{bridge.CATEGORY}/Input"


class SyncTalkLoadReferenceVideo:
    """Decode a video once into the clip cache (uint8 frames on disk) and hand it on as a SYNCTALK_CLIP."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "video": (bridge.list_input_files("video"), {
                "video_upload": True,
                "tooltip": "Video of the person talking (3-5 minutes, one face, steady camera, at 25 fps after "
                           "loading). Upload it here or put it in ComfyUI's input folder (other paths only "
                           "with SYNCTALK_ALLOW_ABSOLUTE_PATHS=1)."}),
            "fps": ("FLOAT", {"default": 25.0, "min": 1.0, "max": 120.0, "step": 0.01,
                              "tooltip": "Frame rate of the clip; each output frame is the source frame nearest "
                                         "to its time. SyncTalk is trained at 25."}),
            "start_time": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 86400.0, "step": 0.1,
                                     "tooltip": "Seconds to skip at the beginning of the video."}),
            "max_duration": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 86400.0, "step": 0.1,
                                       "tooltip": "Seconds to keep from start_time; 0 keeps the whole video."}),
            "crop": (["face", "none"], {"default": "face",
                                        "tooltip": "face: one fixed square around the head (hair and some neck "
                                                   "included), resized to size x size. none: the full frame at "
                                                   "its own resolution (size is ignored)."}),
            "size": ("INT", {"default": 512, "min": 64, "max": 2048, "step": 16,
                             "tooltip": "Side of the square face crop in pixels (SyncTalk uses 512)."}),
            "preview_memory_mb": ("INT", {"default": 2048, "min": 16, "max": 262144, "step": 16,
                                          "tooltip": "Memory the frames output may use (float32 IMAGE). All frames "
                                                     "when they fit, otherwise evenly spaced ones; the clip output "
                                                     "always holds every frame."}),
        }}

    RETURN_TYPES = ("SYNCTALK_CLIP", "IMAGE", "AUDIO", "FLOAT", "INT")
    RETURN_NAMES = ("clip", "frames", "audio", "fps", "frame_count")
    OUTPUT_TOOLTIPS = (
        "The prepared clip (frames cached on disk as uint8, audio, crop box, source) for the SyncTalk nodes.",
        "The frames as IMAGE: all of them within preview_memory_mb, otherwise an evenly spaced preview.",
        "The video's audio from frame 0, as long as the clip, at its own sample rate (empty without a track).",
        "Frames per second of the clip.",
        "Number of frames in the clip.",
    )
    FUNCTION = "load"
    CATEGORY = CATEGORY
    DESCRIPTION = ("Loads the reference video for SyncTalk: decodes it once (streaming) into a cache folder at the "
                   "chosen fps, with the audio kept in sync and the face cropped to a square, so long videos cost "
                   "disk rather than memory. Re-running with the same file and settings reuses the cache.")

    @classmethod
    def VALIDATE_INPUTS(cls, video):
        if video is None:  # linked from another node: checked when it runs
            return True
        from synctalk_lib.errors import InputError

        try:
            path = bridge.resolve_input_path(str(video))
        except InputError as exc:
            return str(exc)
        if not path.is_file():
            return f"video file not found: {video} (looked for {path}); upload it into ComfyUI's input folder"
        return True

    @classmethod
    def IS_CHANGED(cls, video, **kwargs):
        # path + size + mtime: a changed file re-runs the node without hashing gigabytes
        try:
            path = bridge.resolve_input_path(str(video))
            stat = path.stat()
        except (OSError, TypeError, ValueError):
            return f"missing:{video}"
        return f"{path}:{stat.st_size}:{stat.st_mtime_ns}"

    def load(self, video, fps, start_time, max_duration, crop, size, preview_memory_mb):
        from synctalk_lib.media.prepare import prepare_clip
        from synctalk_lib.media.preview import image_preview

        path = bridge.resolve_input_path(str(video))
        with bridge.progress("Loading reference video") as on_step:
            clip = prepare_clip(path, bridge.cache_dir(), fps=float(fps), start_time=float(start_time),
                                max_duration=float(max_duration), crop=crop, size=int(size),
                                models_dirs=bridge.models_dirs(), on_step=on_step, warn=bridge.warn)
        frames, warning = image_preview(clip, int(preview_memory_mb) * 2**20)
        if warning:
            bridge.warn(warning)
        return (clip, frames, clip.audio(), float(clip.fps), int(clip.num_frames))


class SyncTalkClipFromImages:
    """Turn frames made by other nodes (and optional audio) into a SYNCTALK_CLIP."""

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "images": ("IMAGE", {"tooltip": "Frames [N, H, W, 3] in time order, e.g. from a video loader or "
                                                "an image batch. Odd sizes lose their last row/column."}),
                "fps": ("FLOAT", {"default": 25.0, "min": 1.0, "max": 120.0, "step": 0.01,
                                  "tooltip": "Frame rate of the images (SyncTalk is trained at 25)."}),
            },
            "optional": {
                "audio": ("AUDIO", {"tooltip": "Speech that starts with the first frame; it is trimmed or padded "
                                               "with silence to the length of the frames."}),
            },
        }

    RETURN_TYPES = ("SYNCTALK_CLIP",)
    RETURN_NAMES = ("clip",)
    OUTPUT_TOOLTIPS = ("The frames cached on disk as uint8 with the audio, for the SyncTalk nodes.",)
    FUNCTION = "build"
    CATEGORY = CATEGORY
    DESCRIPTION = ("Makes a SyncTalk clip from an IMAGE batch and optional AUDIO, so frames produced by other nodes "
                   "can be used for training. The same frames and audio are written to the cache only once.")

    def build(self, images, fps, audio=None):
        from synctalk_lib.media.prepare import clip_from_images

        with bridge.progress("Caching frames", int(images.shape[0])) as on_step:
            clip = clip_from_images(images, audio, float(fps), bridge.cache_dir(), warn=bridge.warn,
                                    on_step=on_step)
        return (clip,)


NODE_CLASS_MAPPINGS = {
    "SyncTalkLoadReferenceVideo": SyncTalkLoadReferenceVideo,
    "SyncTalkClipFromImages": SyncTalkClipFromImages,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "SyncTalkLoadReferenceVideo": "LoadReferenceVideo",
    "SyncTalkClipFromImages": "SyncTalkClipFromImages",
}
