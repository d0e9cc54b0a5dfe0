"""Renderer nodes: TrainSyncTalk, LoadSyncTalkModel, SaveSyncTalkModel and RenderTriPlane."""
from __future__ import annotations

import re

from . import bridge

PRESETS = ["auto", "quick", "standard", "paper"]  # auto first: standard on CUDA, quick elsewhere
DEVICES = ["auto", "cpu", "cuda"]
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
NO_MODELS = "(no models in models/synctalk yet)"


def _check_name(name: str) -> str:
    from synctalk_lib.errors import InputError

    name = str(name).strip()
    if not _NAME_RE.match(name):
        raise InputError(f"model name {name!r} must be 1-100 letters, digits, '_', '-' or '.', starting with a "
                         "letter or digit (it becomes a folder name in models/synctalk)")
    return name


def _model_folder(name: str):
    return bridge.models_dirs()[0] / name


def _list_models() -> list[str]:
    """Model folders (config.json + model.safetensors, see synctalk_lib.nerf.model_folder) in the models folders;
    plain pathlib so listing never imports torch."""
    names = set()
    for root in bridge.models_dirs():
        if root.is_dir():
            names.update(p.name for p in root.iterdir()
                         if p.is_dir() and (p / "config.json").is_file() and (p / "model.safetensors").is_file())
    return sorted(names)


class TrainSyncTalk:
    DESCRIPTION = ("Trains the subject's SyncTalk head NeRF (tri-plane hash grids, lip and expression attention) "
                   "from its clip, face track, head pose and audio features, then saves it to models/synctalk/<name>. "
                   "auto: standard on a CUDA GPU, quick otherwise; quick: CPU-friendly, reduced resolution, "
                   "minutes; standard: GPU, 512 px; paper: the paper's 125k steps. Checkpoints are kept, so Cancel "
                   "and resume lose little.")

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "clip": ("SYNCTALK_CLIP", {"tooltip": "The subject's reference clip (LoadReferenceVideo)."}),
                "face_track": ("SYNCTALK_FACE_TRACK", {"tooltip": "Face capture of the same clip "
                                                                  "(CaptureBlendshapes)."}),
                "head_pose": ("SYNCTALK_HEAD_POSE", {"tooltip": "Head poses of the same clip (StabilizeHeadPose)."}),
                "audio_features": ("SYNCTALK_AUDIO_FEATURES", {"tooltip": "Features of the clip's own audio "
                                                                          "(EncodeAudioAV); rendering later needs "
                                                                          "the same encoder."}),
                "preset": (PRESETS, {"default": "auto",
                                     "tooltip": "auto: standard when training on a CUDA GPU, quick otherwise; quick: "
                                                "CPU, 128 px, 4k steps (~10-20 min on 2 cores); standard: GPU, 512 "
                                                "px, 40k steps; paper: 512 px, 100k + 25k steps of 65k rays."}),
                "iterations": ("INT", {"default": 0, "min": 0, "max": 1_000_000, "step": 100,
                                       "tooltip": "Total training steps (0 = the preset's), split between the "
                                                  "coarse and fine stages like the preset."}),
                "resolution": ("INT", {"default": 0, "min": 0, "max": 2048, "step": 16,
                                       "tooltip": "Longer image side used for training and rendering in pixels "
                                                  "(0 = the preset's: 128 quick, 512 standard/paper)."}),
                "device": (DEVICES, {"default": "auto", "tooltip": "Where to train (auto: ComfyUI's device)."}),
                "name": ("STRING", {"default": "my_subject",
                                    "tooltip": "Model name: the folder models/synctalk/<name> and its checkpoints."}),
                "resume": ("BOOLEAN", {"default": True,
                                       "tooltip": "Continue from this name's last checkpoint when there is one "
                                                  "(after a Cancel, or to train longer); off starts over."}),
                "perceptual_loss": (["lpips", "none"], {
                    "default": "lpips",
                    "tooltip": "Fine-stage perceptual loss. lpips needs the 'lpips' weights; 'none' trains the fine "
                               "stage with the colour loss only (no extra downloads)."}),
            },
        }

    RETURN_TYPES = ("SYNCTALK_MODEL", "STRING")
    RETURN_NAMES = ("model", "report")
    OUTPUT_TOOLTIPS = ("The trained subject (also saved to models/synctalk/<name>), for RenderTriPlane.",
                       "Steps, time, final losses and the held-out PSNR.")
    FUNCTION = "train"
    CATEGORY = "SyncTalk/Train"

    def train(self, clip, face_track, head_pose, audio_features, preset="auto", iterations=0, resolution=0,
              device="auto", name="my_subject", resume=True, perceptual_loss="lpips"):
        import json

        import torch

        from synctalk_lib.nerf.presets import resolve_preset
        from synctalk_lib.nerf.trainer import train_subject

        name = _check_name(name)
        device = bridge.device(device)
        preset = resolve_preset(preset, device)
        work_dir = bridge.cache_dir() / "training" / name
        lines: list[str] = []

        def on_status(line: str) -> None:
            lines.append(line)

        reached = [0, 0]  # step, total: what a Cancel message reports

        with torch.inference_mode(False), torch.enable_grad():
            with bridge.progress(f"Training SyncTalk ({preset})") as on_step:
                def on_train_step(done: int, total: int) -> None:
                    reached[:] = [done, total]
                    on_step(done, total)

                try:
                    model, summary = train_subject(
                        clip, face_track, head_pose, audio_features, preset=preset, name=name, work_dir=work_dir,
                        device=device, resume=bool(resume), iterations=int(iterations),
                        resolution=int(resolution), perceptual_loss=perceptual_loss, on_step=on_train_step,
                        on_status=on_status, models_dirs=bridge.models_dirs(),
                        audio_encoder=_audio_encoder(audio_features))
                except BaseException as exc:
                    if bridge.is_interruption(exc) and reached[0]:
                        bridge.show_text(f"Cancelled at step {reached[0]} of {reached[1]}. The checkpoint is kept: "
                                         "run again with resume on to continue from there.")
                    raise
        folder = model.save_pretrained(_model_folder(name))
        bridge.show_text(f"Trained {reached[0]} steps; saved to {folder}.\n" + (lines[-1] if lines else ""))
        warnings = "".join(f"warning: {note}\n" for note in summary.get("notes", []))
        report = (f"Saved to {folder}\n" + warnings + "\n".join(lines[-5:]) + "\n" + json.dumps(summary, indent=2))
        return (model, report)


def _audio_encoder(features) -> str | None:
    """``ave-file:<path>`` of the weights the features came from when they are an AVE file in the models folders
    (the model carries it, so driving speech is encoded the same way)."""
    from .audio import encoder_file

    path = encoder_file(features.encoder_id)
    return None if path is None else f"ave-file:{path}"


class LoadSyncTalkModel:
    DESCRIPTION = ("Loads a trained subject from models/synctalk/<name> or a Hugging Face Hub repo id, with its "
                   "reference clip, head pose and face track for PortraitSyncBlend.")

    @classmethod
    def INPUT_TYPES(cls):
        names = _list_models() or [NO_MODELS]
        return {
            "required": {
                "name": (names, {"tooltip": "A model folder in models/synctalk (written by TrainSyncTalk or "
                                            "SaveSyncTalkModel)."}),
                "device": (DEVICES, {"default": "auto", "tooltip": "Where the model renders."}),
            },
            "optional": {
                "repo_id": ("STRING", {"default": "", "tooltip": "Hugging Face Hub repo id (owner/name) of a shared "
                                                                 "model folder; overrides name when set."}),
                "revision": ("STRING", {"default": "", "tooltip": "Hub branch, tag or commit (empty = main)."}),
            },
        }

    RETURN_TYPES = ("SYNCTALK_MODEL", "SYNCTALK_CLIP", "SYNCTALK_HEAD_POSE", "SYNCTALK_FACE_TRACK")
    RETURN_NAMES = ("model", "clip", "head_pose", "face_track")
    OUTPUT_TOOLTIPS = ("The trained subject, for RenderTriPlane.",
                       "Its reference frames as a clip (for PortraitSyncBlend).",
                       "Its head poses (for PortraitSyncBlend).",
                       "Its face track (for PortraitSyncBlend's face mask).")
    FUNCTION = "load"
    CATEGORY = "SyncTalk/Render"

    def load(self, name, device="auto", repo_id="", revision=""):
        from synctalk_lib.errors import InputError
        from synctalk_lib.nerf.model_folder import SyncTalkModel
        from synctalk_lib.paths import absolute_paths_allowed

        repo_id = str(repo_id).strip()
        if not repo_id and name == NO_MODELS:
            raise InputError("there is no trained model in models/synctalk yet; train one with TrainSyncTalk or "
                             "give a Hub repo id")
        with bridge.progress("Loading the model and decoding its reference frames"):
            model = SyncTalkModel.from_pretrained(None if repo_id else name, repo_id=repo_id or None,
                                                  revision=str(revision).strip() or None,
                                                  models_dirs=bridge.models_dirs(), device=bridge.device(device),
                                                  cache_dir=bridge.cache_dir(), allow_paths=absolute_paths_allowed())
        return (model, model.subject.reference_clip(), model.subject.pose, model.subject.track)

    @classmethod
    def VALIDATE_INPUTS(cls, name=None, repo_id="", **_):
        return True


class SaveSyncTalkModel:
    DESCRIPTION = "Saves a trained subject as a shareable model folder models/synctalk/<name>."

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("SYNCTALK_MODEL", {"tooltip": "A trained subject (TrainSyncTalk or LoadSyncTalkModel)."}),
            "name": ("STRING", {"default": "my_subject", "tooltip": "Folder name in models/synctalk (replaced if "
                                                                    "it exists)."}),
        }}

    RETURN_TYPES = ("STRING",)
    RETURN_NAMES = ("folder",)
    OUTPUT_TOOLTIPS = ("Path of the written model folder.",)
    FUNCTION = "save"
    OUTPUT_NODE = True
    CATEGORY = "SyncTalk/Train"

    def save(self, model, name="my_subject"):
        from synctalk_lib.nerf.model_folder import copy_model_folder

        target = _model_folder(_check_name(name))
        if model.folder is not None and model.folder.resolve() == target.resolve():
            folder = target  # already there
        elif model.folder is not None and model.folder.is_dir():
            folder = copy_model_folder(model.folder, target)
        else:
            folder = model.save_pretrained(target)
        return {"ui": {"text": [str(folder)]}, "result": (str(folder),)}


class SyncTalkRenderTriPlane:
    DESCRIPTION = ("Renders the trained subject speaking the given audio features: the tri-plane NeRF head over "
                   "each reference frame's torso and background, at the reference clip's size. Poses, backgrounds "
                   "and (by default) blinks come from the reference frames, played back and forth when the audio is "
                   "longer. The MASK output is the head's opacity.")

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": ("SYNCTALK_MODEL", {"tooltip": "A trained subject (TrainSyncTalk or LoadSyncTalkModel)."}),
                "audio_features": ("SYNCTALK_AUDIO_FEATURES", {"tooltip": "Features of the driving speech, from "
                                                                          "the encoder the model was trained with."}),
            },
            "optional": {
                "expression": (["training", "neutral"], {
                    "default": "training",
                    "tooltip": "training: replay the reference frames' blinks and brows; neutral: the subject's "
                               "median expression."}),
                "head_pose": ("SYNCTALK_HEAD_POSE", {
                    "tooltip": "Optional camera path: frame k uses pose k (cycled) instead of the reference poses. "
                               "Backgrounds still come from the reference frames, so large changes show."}),
                "device": (DEVICES, {"default": "auto", "tooltip": "Where to render."}),
                "batch_size": ("INT", {"default": 4, "min": 1, "max": 64, "step": 1,
                                       "tooltip": "Frames rendered per call."}),
                "max_frames": ("INT", {"default": 0, "min": 0, "max": 1_000_000, "step": 1,
                                       "tooltip": "Render at most this many frames (0 = one per audio frame)."}),
                "memory_mb": ("INT", {"default": 8192, "min": 64, "max": 1_048_576, "step": 64,
                                      "tooltip": "Memory budget of the IMAGE output; a longer render stops with an "
                                                 "error before starting (use max_frames or the `render` CLI, which "
                                                 "streams to a file)."}),
                "region": (["head", "mouth"], {
                    "default": "head",
                    "tooltip": "head: render the whole head. mouth: render only the lips, chin and jaw (what "
                               "PortraitSyncBlend's paste 'mouth' uses), about 3x faster; every other pixel is the "
                               "reference frame's own. Needs expression 'training'."}),
            },
        }

    RETURN_TYPES = ("IMAGE", "MASK")
    RETURN_NAMES = ("images", "alpha")
    OUTPUT_TOOLTIPS = ("Rendered frames [frames, H, W, 3] at the reference clip's size.",
                       "Head opacity per frame [frames, H, W] (for PortraitSyncBlend).")
    FUNCTION = "render"
    CATEGORY = "SyncTalk/Render"

    def render(self, model, audio_features, expression="training", head_pose=None, device="auto", batch_size=4,
               max_frames=0, memory_mb=8192, region="head"):
        import torch

        from synctalk_lib.errors import InputError
        from synctalk_lib.nerf.inference import check_features, render_frames

        check_features(model, audio_features)
        total = audio_features.num_frames if not max_frames else min(int(max_frames), audio_features.num_frames)
        h, w = model.subject.height, model.subject.width
        need = total * h * w * 4 * 4  # IMAGE (3 floats) + MASK (1 float)
        if need > int(memory_mb) << 20:
            message = (f"RenderTriPlane: {total} frames of {w}x{h} need {need / 2**20:.0f} MB as IMAGE + MASK, more "
                       f"than memory_mb={memory_mb}; render fewer frames (max_frames), raise memory_mb, or use "
                       "`python -m synctalk_lib render`, which streams to a video file")
            bridge.warn(message)
            raise InputError(message)
        images = torch.empty((total, h, w, 3), dtype=torch.float32)
        masks = torch.empty((total, h, w), dtype=torch.float32)
        with bridge.progress("Rendering (tri-plane NeRF)", total) as on_step:
            poses = None if head_pose is None else head_pose.c2w
            for chunk in render_frames(model, audio_features, expression=expression, poses=poses, count=total,
                                       batch_size=int(batch_size), device=bridge.device(device), region=str(region),
                                       on_step=on_step):
                end = chunk.first_index + len(chunk.rgb)
                images[chunk.first_index:end] = torch.from_numpy(chunk.rgb)
                masks[chunk.first_index:end] = torch.from_numpy(chunk.alpha)
        return (images, masks)


NODE_CLASS_MAPPINGS = {
    "TrainSyncTalk": TrainSyncTalk,
    "LoadSyncTalkModel": LoadSyncTalkModel,
    "SaveSyncTalkModel": SaveSyncTalkModel,
    "SyncTalkRenderTriPlane": SyncTalkRenderTriPlane,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "TrainSyncTalk": "TrainSyncTalk",
    "LoadSyncTalkModel": "LoadSyncTalkModel",
    "SaveSyncTalkModel": "SaveSyncTalkModel",
    "SyncTalkRenderTriPlane": "RenderTriPlane",
}
