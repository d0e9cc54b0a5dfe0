"""PortraitSyncBlend: paste rendered faces back into the reference frames and write the finished video."""
from __future__ import annotations

import time

from . import bridge


class SyncTalkPortraitSyncBlend:
    DESCRIPTION = ("Portrait-Sync Generator: pastes each rendered face into the reference frame it was rendered for "
                   "(same head pose) through a Gaussian-blurred face mask, matches colours at the seam and fills the "
                   "jaw gap with the average neck colour. Hair, neck, torso and background come from the real video. "
                   "Streams the frames into an MP4 (VIDEO output, ready for SaveVideo) and returns a preview IMAGE.")

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "images": ("IMAGE", {"tooltip": "Rendered head frames from RenderTriPlane."}),
                "alpha": ("MASK", {"tooltip": "Head opacity from RenderTriPlane (used to find the jaw gap)."}),
                "clip": ("SYNCTALK_CLIP", {"tooltip": "The subject's reference clip (from LoadSyncTalkModel or "
                                                      "LoadReferenceVideo); rendered frame k goes into its ping-pong "
                                                      "reference frame."}),
                "head_pose": ("SYNCTALK_HEAD_POSE", {"tooltip": "The subject's head poses; must describe the same "
                                                                "frames as the clip."}),
                "blur_kernel": ("INT", {"default": 9, "min": 1, "max": 99, "step": 2,
                                        "tooltip": "Kernel of the Gaussian blur on the face-mask edge (pixels at 512)."}),
                "blur_sigma": ("FLOAT", {"default": 4.0, "min": 0.1, "max": 50.0, "step": 0.1,
                                         "tooltip": "Sigma of the Gaussian blur on the face-mask edge (pixels at 512)."}),
                "color_match": ("BOOLEAN", {"default": True,
                                            "tooltip": "Match the render's colours to the video around the seam."}),
                "neck_fill": ("BOOLEAN", {"default": True,
                                          "tooltip": "Fill the gap under a closing jaw with the average neck colour."}),
                "paste": (["mouth", "face"], {"default": "mouth",
                                              "tooltip": "mouth: only the lips and chin come from the render; "
                                                         "eyes, brows, forehead and cheeks stay the video's own, sharp "
                                                         "(right with RenderTriPlane's expression 'training'). face: "
                                                         "the whole face is the render's (expression 'neutral')."}),
                "full_resolution": ("BOOLEAN", {"default": False,
                                                "tooltip": "Paste into the full-resolution source video through the "
                                                           "clip's crop box (needs the source file)."}),
                "preview_memory_mb": ("INT", {"default": 2048, "min": 16, "max": 262144, "step": 16,
                                              "tooltip": "Memory budget of the IMAGE output; longer videos give "
                                                         "evenly spaced preview frames (the VIDEO has all)."}),
            },
            "optional": {
                "face_track": ("SYNCTALK_FACE_TRACK", {"tooltip": "Landmarks of the reference frames: the mask "
                                                                  "then follows the face oval like the paper. Without "
                                                                  "it the renderer's alpha is used (includes hair)."}),
                "audio": ("AUDIO", {"tooltip": "Driving speech to mux into the video."}),
            },
        }

    RETURN_TYPES = ("VIDEO", "IMAGE")
    RETURN_NAMES = ("video", "images")
    OUTPUT_TOOLTIPS = ("The finished talking-head video (MP4 with the audio), for SaveVideo.",
                       "The blended frames (all of them within the memory budget, else a preview).")
    FUNCTION = "blend"
    CATEGORY = "SyncTalk/Render"

    def blend(self, images, alpha, clip, head_pose, blur_kernel=9, blur_sigma=4.0, color_match=True, neck_fill=True,
              paste="mouth", full_resolution=False, preview_memory_mb=2048, face_track=None, audio=None):
        import torch

        from synctalk_lib.media.audio import from_comfy_audio
        from synctalk_lib.portrait.blend import BlendSettings
        from synctalk_lib.portrait.generate import generate_portrait_video

        settings = BlendSettings(blur_kernel=int(blur_kernel), blur_sigma=float(blur_sigma),
                                 color_match=bool(color_match), neck_fill=bool(neck_fill), paste=str(paste))
        full = _full_resolution_clip(clip) if full_resolution else None
        wave, rate = from_comfy_audio(audio, "audio") if audio is not None else (None, 0)
        total = int(images.shape[0])
        masks = alpha.reshape(-1, images.shape[1], images.shape[2]) if alpha is not None else None
        if masks is not None and masks.shape[0] != total:
            raise ValueError(f"alpha has {masks.shape[0]} masks for {total} images; connect RenderTriPlane's outputs")

        def chunks():
            for start in range(0, total, 16):
                rgb = images[start:start + 16].detach().cpu().float().numpy()
                a = None if masks is None else masks[start:start + 16].detach().cpu().float().numpy()
                yield start, rgb, a

        out_path = bridge.temp_dir() / "synctalk" / f"portrait_{time.strftime('%Y%m%d-%H%M%S')}_{id(self) % 10000}.mp4"
        with bridge.progress("Portrait-Sync blending", total) as on_step:
            result = generate_portrait_video(chunks(), total, clip, head_pose, out_path, track=face_track,
                                             settings=settings, full_resolution=full, audio=wave, sample_rate=rate,
                                             preview_budget_bytes=int(preview_memory_mb) << 20, on_step=on_step)
        if result.preview_is_partial:
            bridge.warn(f"PortraitSyncBlend: {result.frames} frames do not fit {preview_memory_mb} MB as IMAGE; the "
                        f"images output holds {len(result.preview)} evenly spaced frames (the video has all of them)")
        preview = torch.from_numpy(result.preview).float().div_(255.0)
        return (bridge.video_from_file(result.path), preview)


def _full_resolution_clip(clip):
    """The reference frames at the source video's resolution (prepared once, cached)."""
    from synctalk_lib.pipeline.driving import full_resolution_clip

    with bridge.progress("Preparing full-resolution frames") as on_step:
        return full_resolution_clip(clip, bridge.cache_dir(), bridge.models_dirs(), on_step=on_step)


NODE_CLASS_MAPPINGS = {"SyncTalkPortraitSyncBlend": SyncTalkPortraitSyncBlend}
NODE_DISPLAY_NAME_MAPPINGS = {"SyncTalkPortraitSyncBlend": "PortraitSyncBlend"}
