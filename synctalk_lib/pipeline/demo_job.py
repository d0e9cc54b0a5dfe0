"""``demo``: the whole job in one call — preprocess, train, drive — reusing every finished stage.

    result = demo("talk.mp4", "talking_head.mp4", audio="new_speech.wav")
    result.seconds     # {"preprocess": ..., "train": ..., "render_and_blend": ..., "total": ...}
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from synctalk_lib.errors import InputError
from synctalk_lib.pipeline.driving import DriveResult, drive
from synctalk_lib.pipeline.preprocessing import PreprocessSettings, preprocess
from synctalk_lib.pipeline.training import train
from synctalk_lib.progress import StatusCallback


@dataclass(frozen=True)
class DemoResult:
    out: Path
    preset: str
    trained: bool
    """False when a finished model from an earlier run was reused."""
    drive: DriveResult
    seconds: dict[str, float] = field(default_factory=dict)


def demo(video: Path | str, out: Path | str, *, audio: Path | str | None = None, work: Path | str | None = None,
         preset: str = "auto", iterations: int = 0, resolution: int = 0, audio_encoder: str = "auto",
         perceptual_loss: str = "auto", device: Any = "auto", max_duration: float = 0.0, max_frames: int = 0,
         full_resolution: bool = False, force: bool = False, models_dirs: Iterable[Path | str] | None = None,
         cache_dir: Path | str | None = None, on_status: StatusCallback | None = None) -> DemoResult:
    """Train a subject from ``video`` and make it say ``audio`` (default: its own soundtrack) into ``out``.

    Work goes to ``work`` (default ``synctalk_work/<video name>``): ``subject/`` and ``model/``; running again
    reuses finished stages unless ``force``.
    """
    from synctalk_lib.devices import resolve_device
    from synctalk_lib.nerf.presets import resolve_preset

    video, out = Path(video), Path(out)
    if not video.is_file():
        raise InputError(f"reference video not found: {video}")
    if audio is not None and not Path(audio).is_file():
        raise InputError(f"driving audio not found: {audio}")
    say = on_status or (lambda line: print(line, flush=True))
    device = resolve_device(device)
    preset = resolve_preset(preset, device)
    work = Path(work) if work is not None else Path("synctalk_work") / video.stem
    seconds: dict[str, float] = {}
    started = time.perf_counter()

    say(f"[1/3] preprocess {video} -> {work / 'subject'}")
    subject = preprocess(video, work / "subject", PreprocessSettings(audio_encoder=audio_encoder,
                                                                     max_duration=max_duration, device=str(device)),
                         models_dirs=models_dirs, cache_dir=cache_dir, force=force)
    seconds["preprocess"] = time.perf_counter() - started

    t = time.perf_counter()
    say(f"[2/3] train ({preset} preset) -> {work / 'model'}")
    trained: list[bool] = [True]

    def status(line: str) -> None:
        if line.startswith("reusing the trained model"):
            trained[0] = False
        say(line)

    model = train(subject, work / "model", preset=preset, iterations=iterations, resolution=resolution,
                  perceptual_loss=perceptual_loss, device=device, reuse=not force,
                  resume=(work / "model.training" / "checkpoint.pt").is_file() and not force,
                  models_dirs=models_dirs, on_status=status)
    seconds["train"] = time.perf_counter() - t

    t = time.perf_counter()
    say(f"[3/3] render + portrait blend -> {out}")
    speech = Path(audio) if audio is not None else subject.folder.path(subject.folder.AUDIO_WAV)
    result = drive(model, speech, out, reference=subject.clip, max_frames=max_frames,
                   full_resolution=full_resolution, device=device, models_dirs=models_dirs, cache_dir=cache_dir)
    seconds["render_and_blend"] = time.perf_counter() - t
    seconds["total"] = time.perf_counter() - started
    return DemoResult(out=out, preset=preset, trained=trained[0], drive=result, seconds=seconds)
