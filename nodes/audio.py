"""Audio nodes: EncodeAudioAV (speech -> one feature row per video frame for the renderer)."""
from __future__ import annotations

import functools
import json
import os
from pathlib import Path

from . import bridge

ENCODERS = ["auto", "ave", "ave-file", "mel", "own"]
OWN_ENCODERS_DIR = "audio_encoders"
"""Where EncodeAudioAV keeps the subjects' own encoders, inside the first models folder."""
NO_FILE = "none"
_WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt")
_OFFICIAL_NAMES = {"audio_visual_encoder.pth", "audio_visual_encoder.safetensors"}
MODEL_ENCODER_FILE = "audio_encoder.safetensors"
"""The audio encoder a model folder carries (``synctalk_lib.nerf.model_folder.AUDIO_ENCODER_FILE``)."""


def list_ave_files() -> list[str]:
    """AVE weight files at the top of the models folders (``models/synctalk/``) and the audio encoders model folders
    carry (``NAME/audio_encoder.safetensors``: models trained on the subject's own encoder), for the ave_file combo.

    Only files that hold an audio-visual encoder are listed (other weights there, such as RAFT's, are not); the
    official AVE is chosen with ``ave``.
    """
    return [NO_FILE] + sorted({name for folder in bridge.models_dirs() for name, _ in _ave_files(folder)})


def _ave_files(folder, *, with_own: bool = False):
    """``(name inside the folder, path)`` of the AVE files of a models folder: its top level, the encoders model
    folders carry, and with ``with_own`` the subjects' own encoders EncodeAudioAV trained."""
    try:
        entries = sorted(os.listdir(folder))
    except OSError:
        return
    for name in entries:
        path = os.path.join(folder, name)
        if name.lower().endswith(_WEIGHT_SUFFIXES) and name not in _OFFICIAL_NAMES and _is_ave(path):
            yield name, path
        elif _is_ave(os.path.join(path, MODEL_ENCODER_FILE)):
            yield f"{name}/{MODEL_ENCODER_FILE}", os.path.join(path, MODEL_ENCODER_FILE)
        elif with_own and name == OWN_ENCODERS_DIR:
            for own in sorted(Path(path).glob("*.safetensors")):
                if _is_ave(str(own)):
                    yield f"{name}/{own.name}", str(own)


def _is_ave(path: str) -> bool:
    """``is_ave_file`` remembered per file version: INPUT_TYPES is asked for often."""
    try:
        stat = os.stat(path)
    except OSError:
        return False
    return _is_ave_cached(path, stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=256)
def _is_ave_cached(path: str, _size: int, _mtime_ns: int) -> bool:
    from synctalk_lib.audio.ave import is_ave_file

    return os.path.isfile(path) and is_ave_file(path)


class SyncTalkEncodeAudioAV:
    """AUDIO -> SYNCTALK_AUDIO_FEATURES ``[N, D]`` at the video's fps (AVE 512-d, or mel 1280-d offline)."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "audio": ("AUDIO", {"tooltip": "Speech to encode: the reference clip's audio (training) or a new "
                                           "driving audio (rendering). Any sample rate, mono or stereo."}),
            "fps": ("FLOAT", {"default": 25.0, "min": 1.0, "max": 120.0, "step": 0.01,
                              "tooltip": "Frame rate of the video the features drive: one feature row per video "
                                         "frame the audio covers (rounded half up). Use the clip's fps."}),
            "encoder": (ENCODERS, {
                "default": "auto",
                "tooltip": "ave: SyncTalk's official audio-visual encoder (512-d; downloaded once into "
                           "models/synctalk; its weights are CC BY-NC 4.0, non-commercial use only). "
                           "ave-file: your own AVE weights (ave_file below, e.g. made by ave-train). "
                           "mel: no weights, the normalised mel window of each frame (1280-d), fully offline. "
                           "auto: ave when its weights are present or downloadable, else mel with a warning. "
                           "own: train SyncTalk's audio-visual encoder on the connected clip and face track (about "
                           "100 s on a CPU, once per clip) and encode with it; for the training audio."}),
            "ave_file": (list_ave_files(), {
                "default": NO_FILE,
                "tooltip": "AVE weights (.safetensors/.pth in the official key layout) from the models/synctalk "
                           "folder; used only when encoder is ave-file. Make one with "
                           "`python -m synctalk_lib ave-train`."}),
            "device": (["auto", "cpu", "cuda"], {"default": "auto",
                                                 "tooltip": "Where the encoder runs (auto: ComfyUI's device)."}),
        }, "optional": {
            "model": ("SYNCTALK_MODEL", {
                "tooltip": "Encode for this trained model: its own audio encoder (or the one its training features "
                           "came from) and its fps, whatever encoder, ave_file and fps say. Connect it when the "
                           "features drive RenderTriPlane."}),
            "clip": ("SYNCTALK_CLIP", {"tooltip": "With encoder 'own': the subject's clip (LoadReferenceVideo) its "
                                                  "encoder learns from."}),
            "face_track": ("SYNCTALK_FACE_TRACK", {"tooltip": "With encoder 'own': the clip's face track "
                                                              "(CaptureBlendshapes), for the mouth crops."}),
        }}

    RETURN_TYPES = ("SYNCTALK_AUDIO_FEATURES", "INT", "STRING")
    RETURN_NAMES = ("features", "frame_count", "report")
    OUTPUT_TOOLTIPS = (
        "One feature row per video frame ([frames, 512] with the AVE, [frames, 1280] with mel), the fps and the "
        "encoder id; render with the same encoder the model was trained with.",
        "Number of video frames the audio covers (= rows = frames a render of this audio produces).",
        "Encoder, shape, duration and any warnings (fallback to mel, silent audio).",
    )
    FUNCTION = "run"
    CATEGORY = "SyncTalk/Audio"
    DESCRIPTION = ("Face-Sync Controller, audio half: mixes the audio to mono, resamples to 16 kHz, computes the "
                   "lip-sync mel spectrogram (80 bands) and cuts one 200 ms window per video frame, centred on "
                   "the frame; the audio-visual encoder turns each window into a 512-d code (or, with 'mel', the "
                   "window itself is the feature).")

    def run(self, audio, fps: float, encoder: str, ave_file: str, device: str, model=None, clip=None,
            face_track=None):
        from synctalk_lib.audio.features import encode_audio
        from synctalk_lib.errors import InputError
        from synctalk_lib.media.audio import from_comfy_audio

        wave, rate = from_comfy_audio(audio, "audio")
        choice = encoder
        if model is not None:
            from synctalk_lib.pipeline.driving import model_encoder

            choice, fps = model_encoder(model), model.subject.fps
        elif encoder == "own":
            choice = f"ave-file:{own_encoder(clip, face_track, device)}"
        elif encoder == "ave-file":
            if not ave_file or ave_file == NO_FILE:
                raise InputError("encoder is 'ave-file' but no ave_file is chosen: put your AVE weights "
                                 "(.safetensors/.pth) in models/synctalk, refresh, and pick the file")
            choice = f"ave-file:{self._resolve(ave_file)}"
        with bridge.progress("Encoding audio") as on_step:
            features = encode_audio(wave, rate, fps=float(fps), encoder=choice, models_dirs=bridge.models_dirs(),
                                    device=bridge.device(device), on_step=on_step)
        # the notes were logged once by encode_audio; the report repeats them on the node
        return (features, features.num_frames, format_report(features, wave.shape[1] / rate))

    @staticmethod
    def _resolve(name: str) -> Path:
        """The weights file ``name`` in the models folders (never a path elsewhere unless allowed)."""
        from synctalk_lib.paths import confine

        return confine(name, bridge.models_dirs(), "ave_file")


def own_encoder(clip, face_track, device: str) -> Path:
    """The subject's own audio encoder for ``clip`` in ``models/synctalk/audio_encoders/`` (trained once per clip)."""
    import hashlib

    from synctalk_lib.audio.ave_train import OWN_ENCODER_STEPS, train_own_encoder
    from synctalk_lib.errors import InputError

    if clip is None or face_track is None:
        raise InputError("encoder 'own' learns from the subject's clip: connect LoadReferenceVideo's clip and "
                         "CaptureBlendshapes' face_track to EncodeAudioAV")
    if face_track.num_frames != clip.num_frames:
        raise InputError(f"face_track has {face_track.num_frames} frames but the clip has {clip.num_frames}; "
                         "connect the face track of this clip")
    key = hashlib.sha256(f"{Path(clip.root).resolve()}|{clip.num_frames}|{OWN_ENCODER_STEPS}".encode()).hexdigest()
    path = bridge.models_dirs()[0] / OWN_ENCODERS_DIR / f"own-{key[:12]}.safetensors"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        with bridge.progress("Training the subject's audio encoder") as on_step:
            train_own_encoder(clip, face_track, path, models_dirs=bridge.models_dirs(), device=bridge.device(device),
                              on_step=on_step)
    return path


def encoder_file(encoder_id: str) -> Path | None:
    """The weights file behind ``ave-file:<id>`` features among the models folders' AVE files (top level, the
    subjects' own encoders, the ones model folders carry); None when there is none."""
    if not encoder_id.startswith("ave-file:"):
        return None
    from synctalk_lib.audio.ave import file_id

    for folder in bridge.models_dirs():
        for _, path in _ave_files(folder, with_own=True):
            if file_id(path) == encoder_id:
                return Path(path)
    return None


def format_report(features, seconds: float) -> str:
    """A short human-readable summary followed by the same facts as JSON."""
    lines = [f"encoder {features.encoder_id}: {features.num_frames} frames x {features.dim} at "
             f"{features.fps:g} fps from {seconds:.2f} s of audio"]
    lines += [f"warning: {note}" for note in features.notes]
    facts = {"encoder_id": features.encoder_id, "shape": [features.num_frames, features.dim],
             "fps": features.fps, "audio_seconds": round(seconds, 4), "notes": list(features.notes)}
    return "\n".join(lines) + "\n" + json.dumps(facts)


NODE_CLASS_MAPPINGS = {"SyncTalkEncodeAudioAV": SyncTalkEncodeAudioAV}
NODE_DISPLAY_NAME_MAPPINGS = {"SyncTalkEncodeAudioAV": "EncodeAudioAV"}
