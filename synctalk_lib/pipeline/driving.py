"""``encode`` and ``drive``: make a trained subject say new speech.

    features = encode(model, "speech.wav")                     # the encoder the model was trained with
    result = drive(model, "speech.wav", "talk.mp4")            # encode -> render -> portrait blend -> MP4

``drive`` streams: frames are rendered in small batches, blended into their reference frames and written to the
MP4 as they come, so memory does not grow with the length of the speech.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from synctalk_lib.errors import InputError
from synctalk_lib.media.audio import load_speech
from synctalk_lib.progress import cli_progress
from synctalk_lib.types import AudioFeatures, Clip


def model_encoder(model, override: str | None = None) -> str:
    """The ``encode_audio`` encoder that makes features for ``model``: ``override``, else its own audio encoder
    (models trained on the subject's own encoder carry it), else the built-in one its features came from."""
    from synctalk_lib.audio.features import encoder_for

    return encoder_for(model.encoder_id, override or model.audio_encoder())


def encode(model, speech: Path | str | tuple[np.ndarray, int], *, encoder: str | None = None, device: Any = "auto",
           models_dirs: Iterable[Path | str] | None = None,
           on_step: Callable[[int, int], None] | None = None) -> AudioFeatures:
    """Audio features of ``speech`` for ``model`` (same encoder and frame rate as its training audio)."""
    from synctalk_lib.audio.features import encode_audio
    from synctalk_lib.devices import resolve_device
    from synctalk_lib.nerf.inference import check_features

    wave, rate = load_speech(speech)
    features = encode_audio(wave, rate, fps=model.subject.fps, encoder=model_encoder(model, encoder),
                            models_dirs=models_dirs, device=resolve_device(device), on_step=on_step)
    check_features(model, features)
    return features


@dataclass(frozen=True)
class DriveResult:
    """What ``drive`` wrote."""

    path: Path
    frames: int
    width: int
    height: int
    fps: float
    seconds: dict[str, float] = field(default_factory=dict)
    """Wall time per part: encode_audio, render_and_blend."""

    @property
    def render_fps(self) -> float:
        return self.frames / max(self.seconds.get("render_and_blend", 0.0), 1e-9)


def default_blend(expression: Any):
    """Blend settings for renders with ``expression``: the reference frame's own upper face where the expression
    replays the reference frames ("training"), the whole rendered face otherwise."""
    from synctalk_lib.portrait.blend import BlendSettings

    replays = expression is None or (isinstance(expression, str) and expression == "training")
    return BlendSettings(paste="mouth" if replays else "face")


def render_region(settings) -> str:
    """What the renderer must paint for a blend with ``settings``: only the mouth region when the blend pastes only
    the mouth (the rest of every output pixel is the reference frame's), else the head."""
    return "mouth" if settings.paste == "mouth" else "head"


def drive(model, speech: Path | str | tuple[np.ndarray, int], out: Path | str, *, reference: Clip | None = None,
          encoder: str | None = None, expression: Any = "training", max_frames: int = 0,
          full_resolution: bool = False, blend=None, device: Any = "auto", batch_size: int = 4,
          models_dirs: Iterable[Path | str] | None = None, cache_dir: Path | str | None = None,
          progress: Callable[[str], Any] = cli_progress) -> DriveResult:
    """Render ``model`` speaking ``speech`` and blend it into the reference frames: an MP4 with that speech.

    Args:
        model: a trained ``SyncTalkModel``.
        speech: an audio (or video) file, or ``(wave [C, T], sample_rate)``.
        out: the MP4 to write.
        reference: the subject's reference clip (default: the model's own reference frames, decoded once into
            the clip cache).
        encoder: audio encoder override (only for models trained on an ``ave-file``).
        expression: ``training`` (replay the reference blinks), ``neutral``, ``[E]`` or ``[F, E]``.
        max_frames: render at most this many frames (0 = as long as the speech); the sound is cut to match.
        full_resolution: paste into the source video at its own resolution through the clip's crop box.
        blend: ``portrait.blend.BlendSettings`` (default: ``default_blend(expression)``).
    """
    from synctalk_lib import paths
    from synctalk_lib.devices import resolve_device
    from synctalk_lib.nerf.inference import render_frames
    from synctalk_lib.portrait.generate import generate_portrait_video

    device = resolve_device(device)
    cache = Path(cache_dir) if cache_dir else paths.default_cache_dir()
    wave, rate = load_speech(speech)
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    with progress("Encoding the driving audio") as on_step:
        features = encode(model, (wave, rate), encoder=encoder, device=device, models_dirs=models_dirs,
                          on_step=on_step)
    seconds["encode_audio"] = time.perf_counter() - started
    total = features.num_frames if not max_frames else min(int(max_frames), features.num_frames)
    if max_frames:  # keep the sound as long as the frames that are rendered
        wave = wave[:, :int(round(total / model.subject.fps * rate))]
    reference = reference if reference is not None else model.subject.reference_clip()
    full = full_resolution_clip(reference, cache, models_dirs) if full_resolution else None
    settings = blend or default_blend(expression)
    started = time.perf_counter()
    with progress("Rendering and blending") as on_step:
        chunks = render_frames(model, features, expression=expression, count=total, batch_size=batch_size,
                               device=device, region=render_region(settings))
        result = generate_portrait_video(chunks, total, reference, model.subject.pose, out,
                                         track=model.subject.track, settings=settings,
                                         full_resolution=full, audio=wave, sample_rate=rate,
                                         preview_budget_bytes=0, on_step=on_step)
    seconds["render_and_blend"] = time.perf_counter() - started
    return DriveResult(path=result.path, frames=result.frames, width=result.width, height=result.height,
                       fps=result.fps, seconds=seconds)


def full_resolution_clip(clip: Clip, cache_dir: Path, models_dirs: Iterable[Path | str] | None = None,
                         on_step: Callable[[int, int], None] | None = None) -> Clip:
    """The clip's frames at its source video's resolution (prepared once into the clip cache)."""
    from synctalk_lib.media.prepare import prepare_clip

    if not clip.source_path:
        raise InputError("full_resolution needs the clip of the original video: a loaded model's reference frames "
                         "carry no source path (model folders are shared without local paths); connect the clip from "
                         "LoadReferenceVideo of the same video (or pass that clip as reference), or turn "
                         "full_resolution off")
    if not Path(clip.source_path).is_file():
        raise InputError(f"full_resolution needs the source video of the clip ({clip.source_path}), which is not "
                         "on this machine; turn full_resolution off")
    return prepare_clip(clip.source_path, cache_dir, fps=clip.fps, start_time=clip.start_time,
                        max_duration=clip.duration, crop="none", models_dirs=models_dirs, on_step=on_step)
