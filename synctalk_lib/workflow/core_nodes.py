"""Small stand-ins for the ComfyUI core nodes the pack's workflows use, for running them without ComfyUI.

Same node ids, input names, option lists, defaults and outputs as ComfyUI's core nodes (checked against ComfyUI
0.3.64 ``nodes.py``, ``comfy_extras/nodes_audio.py`` and ``comfy_extras/nodes_video.py``), so a workflow saved in
ComfyUI runs headless unchanged; the implementations are our own and smaller (PyAV, PIL). They are only used by the
headless runner: inside ComfyUI, ComfyUI's own nodes run and these are never registered.

Folders are the pack's defaults outside ComfyUI (``synctalk_lib.paths``): input files from ``$SYNCTALK_INPUT_DIR``
(else the current folder), results into ``$SYNCTALK_OUTPUT_DIR`` (else ``./output``), previews and intermediate
videos into its ``temp`` subfolder. Saved files are named like ComfyUI names them: ``<prefix>_00001_.<ext>``, the
counter continuing after the highest existing one, the prefix's folder part a subfolder of the output folder.
"""
from __future__ import annotations

import json
import os
import re
import time
import uuid
from fractions import Fraction
from pathlib import Path
from typing import Any

from synctalk_lib import paths
from synctalk_lib.errors import InputError


def input_dir() -> Path:
    return paths.default_input_dir()


def output_dir() -> Path:
    return paths.default_output_dir()


def temp_dir() -> Path:
    return paths.default_output_dir() / "temp"


def _input_files(kind: str) -> list[str]:
    folder = input_dir()
    if not folder.is_dir():
        return []
    return sorted(n for n in os.listdir(folder) if (folder / n).is_file() and paths.looks_like(n, kind))


def _input_path(name: str) -> Path:
    """An input-folder file name (ComfyUI's ``name [input]`` annotation allowed) or an absolute path."""
    name = re.sub(r"\s*\[(input|output|temp)\]$", "", str(name))
    path = Path(os.path.expanduser(name))
    return path if path.is_absolute() else input_dir() / name


def save_path(prefix: str, folder: Path, width: int = 0, height: int = 0) -> tuple[Path, str, int, str]:
    """Where to save the next ``<prefix>_NNNNN_.ext``: ``(folder, file stem prefix, counter, subfolder)``.

    The prefix may contain a subfolder (``video/ComfyUI``) and the tokens ``%width%``, ``%height%``, ``%year%``,
    ``%month%``, ``%day%``, ``%hour%``, ``%minute%``, ``%second%``. Paths leaving ``folder`` are refused.
    """
    now = time.localtime()
    tokens = {"width": width, "height": height, "year": now.tm_year, "month": f"{now.tm_mon:02d}",
              "day": f"{now.tm_mday:02d}", "hour": f"{now.tm_hour:02d}", "minute": f"{now.tm_min:02d}",
              "second": f"{now.tm_sec:02d}"}
    for key, value in tokens.items():
        prefix = prefix.replace(f"%{key}%", str(value))
    prefix = os.path.normpath(prefix)
    subfolder, stem = os.path.dirname(prefix), os.path.basename(prefix)
    root = folder.resolve()
    target = (root / subfolder).resolve()
    if target != root and root not in target.parents:
        raise InputError(f"filename_prefix '{prefix}' points outside the output folder {root}")
    target.mkdir(parents=True, exist_ok=True)
    pattern = re.compile(re.escape(stem) + r"_(\d+)_", re.IGNORECASE)
    counters = [int(m.group(1)) for name in os.listdir(target) if (m := pattern.match(name))]
    return target, stem, max(counters, default=0) + 1, subfolder


def _metadata(prompt: Any, extra_pnginfo: Any) -> dict[str, Any]:
    tags: dict[str, Any] = {}
    if isinstance(extra_pnginfo, dict):
        tags.update(extra_pnginfo)
    if prompt is not None:
        tags["prompt"] = prompt
    return tags


# ------------------------------------------------------------------------------------------------- audio
class LoadAudio:
    """Load the first audio track of a file in the input folder (audio or video) as AUDIO, at its own rate."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"audio": (_input_files("audio"), {"audio_upload": True})}}

    RETURN_TYPES = ("AUDIO",)
    FUNCTION = "load"
    CATEGORY = "audio"

    def load(self, audio: str):
        from synctalk_lib.media.audio import load_audio, to_comfy_audio

        wave, rate = load_audio(_input_path(audio))
        return (to_comfy_audio(wave, rate),)

    @classmethod
    def VALIDATE_INPUTS(cls, audio):
        if audio is not None and not _input_path(audio).is_file():
            return f"Invalid audio file: {audio} (not in the input folder {input_dir()})"
        return True


class SaveAudio:
    """Save AUDIO as FLAC files in the output folder (one per batch item)."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"audio": ("AUDIO",), "filename_prefix": ("STRING", {"default": "audio/ComfyUI"})},
                "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}}

    RETURN_TYPES = ()
    FUNCTION = "save_flac"
    OUTPUT_NODE = True
    CATEGORY = "audio"

    def save_flac(self, audio, filename_prefix="audio/ComfyUI", prompt=None, extra_pnginfo=None):
        import av
        import numpy as np

        folder, stem, counter, subfolder = save_path(filename_prefix, output_dir())
        rate = int(audio["sample_rate"])
        results = []
        for wave in audio["waveform"]:
            wave = wave.detach().cpu().float().numpy()
            layout = "mono" if wave.shape[0] == 1 else "stereo"
            name = f"{stem}_{counter:05}_.flac"
            with av.open(str(folder / name), mode="w") as container:
                for key, value in _metadata(prompt, extra_pnginfo).items():
                    container.metadata[key] = json.dumps(value)
                stream = container.add_stream("flac", rate=rate, layout=layout)
                frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(wave[:2].T.reshape(1, -1)), format="flt",
                                                   layout=layout)
                frame.sample_rate = rate
                container.mux(stream.encode(frame))
                container.mux(stream.encode(None))
            results.append({"filename": name, "subfolder": subfolder, "type": "output"})
            counter += 1
        return {"ui": {"audio": results}}


# ------------------------------------------------------------------------------------------------- video
class LoadVideo:
    """A video file of the input folder as VIDEO (nothing decoded until used)."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"file": (_input_files("video"), {"video_upload": True})}}

    RETURN_TYPES = ("VIDEO",)
    FUNCTION = "execute"
    CATEGORY = "image/video"

    def execute(self, file: str):
        from synctalk_lib.media.video_file import VideoFile

        return (VideoFile(_input_path(file)),)

    @classmethod
    def VALIDATE_INPUTS(cls, file):
        if file is not None and not _input_path(file).is_file():
            return f"Invalid video file: {file}"
        return True


class CreateVideo:
    """Encode IMAGE frames (and optional AUDIO) into an H.264 MP4 in the temp folder, output as VIDEO."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"images": ("IMAGE", {"tooltip": "The images to create a video from."}),
                             "fps": ("FLOAT", {"default": 30.0, "min": 1.0, "max": 120.0, "step": 1.0})},
                "optional": {"audio": ("AUDIO", {"tooltip": "The audio to add to the video."})}}

    RETURN_TYPES = ("VIDEO",)
    FUNCTION = "execute"
    CATEGORY = "image/video"
    DESCRIPTION = "Create a video from images."

    def execute(self, images, fps: float, audio=None):
        from synctalk_lib.media.video_file import VideoFile
        from synctalk_lib.media.video_writer import write_video

        path = temp_dir() / f"CreateVideo_{uuid.uuid4().hex[:12]}.mp4"
        write_video(path, images, Fraction(fps).limit_denominator(1000), audio=audio)
        return (VideoFile(path),)


class GetVideoComponents:
    """Decode a VIDEO into its frames (IMAGE), audio (AUDIO, None without a track) and frame rate."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"video": ("VIDEO", {"tooltip": "The video to extract components from."})}}

    RETURN_TYPES = ("IMAGE", "AUDIO", "FLOAT")
    RETURN_NAMES = ("images", "audio", "fps")
    FUNCTION = "execute"
    CATEGORY = "image/video"
    DESCRIPTION = "Extracts all components from a video: frames, audio, and framerate."

    def execute(self, video):
        parts = video.get_components()
        return (parts.images, parts.audio, float(parts.frame_rate))


class SaveVideo:
    """Save a VIDEO into the output folder as ``<prefix>_NNNNN_.mp4`` (streams copied when possible)."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"video": ("VIDEO", {"tooltip": "The video to save."}),
                             "filename_prefix": ("STRING", {"default": "video/ComfyUI",
                                                            "tooltip": "The prefix for the file to save."}),
                             "format": (["auto", "mp4"], {"default": "auto"}),
                             "codec": (["auto", "h264"], {"default": "auto"})},
                "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}}

    RETURN_TYPES = ()
    FUNCTION = "execute"
    OUTPUT_NODE = True
    CATEGORY = "image/video"
    DESCRIPTION = "Saves the input images to your ComfyUI output directory."

    def execute(self, video, filename_prefix="video/ComfyUI", format="auto", codec="auto", prompt=None,
                extra_pnginfo=None):
        width, height = video.get_dimensions()
        folder, stem, counter, subfolder = save_path(filename_prefix, output_dir(), width, height)
        name = f"{stem}_{counter:05}_.mp4"
        video.save_to(str(folder / name), format=format, codec=codec,
                      metadata=_metadata(prompt, extra_pnginfo) or None)
        return {"ui": {"images": [{"filename": name, "subfolder": subfolder, "type": "output"}], "animated": [True]}}


# ------------------------------------------------------------------------------------------------- images
class SaveImage:
    """Save IMAGE frames as PNG files (with the prompt and workflow embedded when PIL is available)."""

    FOLDER_TYPE = "output"
    COMPRESS_LEVEL = 4

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"images": ("IMAGE", {"tooltip": "The images to save."}),
                             "filename_prefix": ("STRING", {"default": "ComfyUI",
                                                            "tooltip": "The prefix for the file to save."})},
                "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}}

    RETURN_TYPES = ()
    FUNCTION = "save_images"
    OUTPUT_NODE = True
    CATEGORY = "image"
    DESCRIPTION = "Saves the input images to your ComfyUI output directory."

    def _folder(self) -> Path:
        return output_dir()

    def save_images(self, images, filename_prefix="ComfyUI", prompt=None, extra_pnginfo=None):
        from synctalk_lib.media.video_writer import to_uint8_frames

        frames = to_uint8_frames(images)
        folder, stem, counter, subfolder = save_path(filename_prefix, self._folder(), frames.shape[2],
                                                     frames.shape[1])
        results = []
        for frame in frames:
            name = f"{stem}_{counter:05}_.png"
            _write_png(folder / name, frame, _metadata(prompt, extra_pnginfo), self.COMPRESS_LEVEL)
            results.append({"filename": name, "subfolder": subfolder, "type": self.FOLDER_TYPE})
            counter += 1
        return {"ui": {"images": results}}


class PreviewImage(SaveImage):
    """Write IMAGE frames as PNG previews into the temp folder."""

    FOLDER_TYPE = "temp"
    COMPRESS_LEVEL = 1

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"images": ("IMAGE",)}, "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}}

    DESCRIPTION = "Previews the images (PNG files in the temp folder)."

    def _folder(self) -> Path:
        return temp_dir()

    def save_images(self, images, filename_prefix="ComfyUI", prompt=None, extra_pnginfo=None):
        prefix = f"{filename_prefix}_temp_{uuid.uuid4().hex[:5]}"
        return super().save_images(images, prefix, prompt, extra_pnginfo)


def _write_png(path: Path, frame, metadata: dict[str, Any], compress_level: int) -> None:
    try:
        from PIL import Image
        from PIL.PngImagePlugin import PngInfo
    except ImportError:
        import cv2

        if not cv2.imwrite(str(path), frame[:, :, ::-1].copy(), [cv2.IMWRITE_PNG_COMPRESSION, compress_level]):
            raise InputError(f"could not write {path}")
        return
    info = PngInfo()
    for key, value in metadata.items():
        info.add_text(key, json.dumps(value))
    Image.fromarray(frame).save(path, pnginfo=info, compress_level=compress_level)


NODE_CLASS_MAPPINGS = {
    "LoadAudio": LoadAudio,
    "SaveAudio": SaveAudio,
    "LoadVideo": LoadVideo,
    "CreateVideo": CreateVideo,
    "GetVideoComponents": GetVideoComponents,
    "SaveVideo": SaveVideo,
    "SaveImage": SaveImage,
    "PreviewImage": PreviewImage,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "LoadAudio": "Load Audio",
    "SaveAudio": "Save Audio (FLAC)",
    "LoadVideo": "Load Video",
    "CreateVideo": "Create Video",
    "GetVideoComponents": "Get Video Components",
    "SaveVideo": "Save Video",
    "SaveImage": "Save Image",
    "PreviewImage": "Preview Image",
}
