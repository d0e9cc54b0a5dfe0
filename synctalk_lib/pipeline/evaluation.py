"""Evaluate a trained model on its subject: held-out frames with ground truth, and drives with new audio.

    report = evaluate_model(model, subject, speech={"other": "speech.wav"}, silence=True,
                            heldout_audio=("own", "reversed"), models_dirs=[models])
    report.heldout["own"].head.psnr, report.heldout["own"].portrait.lmd, report.drives["other"].head.reference_leak
    write_json("eval.json", report.to_dict())

**Held-out** (``heldout``, one entry per audio variant): the held-out frames (default: those the model was not
trained on) are rendered at their own poses with their audio rows — the clip's own audio (``own``), or the
same stretch time-reversed (``reversed``) or silenced (``silent``) — composited over each real frame's background
at the clip's size (``head``), and blended into their original frames with the product's Portrait-Sync blend
(``portrait``). Both are scored against the real frames (``metrics.frames.FrameScores``: PSNR, SSIM, LPIPS, LMD,
jawOpen r, sharpness).

**Drives** (``drives``, one per speech, plus ``silence``): frames rendered from the speech exactly as ``drive``
renders them (ping-pong reference frames, ``timeline.reference_indices``), head and portrait, measured for mouth
opening (MediaPipe jawOpen): the lip-sync proxy r against the speech's loudness envelope, the reference leak, the
jawOpen mean / std, and the Laplacian-variance ratio against the reference frame under each output frame.

**Real clip** (``real``): the same measures on the subject's real frames with their own audio — the values a
perfect renderer would reach — and the subject's closed-mouth jawOpen range.
"""
from __future__ import annotations

import contextlib
import dataclasses
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np

from synctalk_lib.errors import InputError
from synctalk_lib.metrics.drive import ClosedMouth, OpeningStats
from synctalk_lib.metrics.frames import FrameScorer, FrameScores

HELDOUT_AUDIO = ("own", "reversed", "silent")


def _no_progress(description: str) -> contextlib.AbstractContextManager:
    return contextlib.nullcontext(None)


# --------------------------------------------------------------------------------------------- results
@dataclass(frozen=True)
class HeldOutScores:
    """Held-out frames rendered with one audio variant, scored against the real frames."""

    audio: str
    """own | reversed | silent."""
    frames: list[int]
    head: FrameScores
    portrait: FrameScores | None
    render_seconds: float

    @property
    def render_fps(self) -> float:
        return len(self.frames) / max(self.render_seconds, 1e-9)


@dataclass(frozen=True)
class MouthScores:
    """How the mouth of driven frames (head or portrait) moves."""

    envelope: dict[str, Any]
    """``lipsync_correlation`` of the speech's RMS envelope and the jawOpen: r (best lag), lag, r_lag0, frames."""
    reference_leak: float | None
    """r(jawOpen, jawOpen of the reference frame under each output frame); ideally about 0."""
    opening: OpeningStats
    """Mean and std of the jawOpen."""
    laplacian_ratio: float | None
    """Median var(Laplacian) ratio against the reference frame under each output frame, in its face box."""
    jaw_open: list[float | None] = field(default_factory=list, repr=False)


@dataclass(frozen=True)
class DriveScores:
    """Frames rendered from one speech (or silence), head and portrait."""

    name: str
    source: str
    frames: int
    head: MouthScores
    portrait: MouthScores | None
    render_seconds: float


@dataclass(frozen=True)
class RealClipScores:
    """The subject's real frames with their own audio: what a perfect render would score."""

    envelope: dict[str, Any]
    opening: OpeningStats
    closed: ClosedMouth
    """The subject's closed-mouth jawOpen range."""
    pauses: OpeningStats | None = None
    """jawOpen of the real frames in the clip's own pauses (``audio.augment.paused_frames``): the subject's mouth
    when they are silent (None without audio)."""
    jaw_open: list[float | None] = field(default_factory=list, repr=False)


@dataclass(frozen=True)
class EvaluationReport:
    heldout: dict[str, HeldOutScores]
    drives: dict[str, DriveScores]
    real: RealClipScores | None
    resolution: tuple[int, int]
    render_resolution: tuple[int, int]
    notes: list[str]
    samples: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    """A few output frames (uint8 ``[H, W, 3]``) to look at, by name; not part of :meth:`to_dict`."""
    images: dict[str, dict[str, np.ndarray]] = field(default_factory=dict, repr=False)
    """With ``return_images``, per held-out audio variant: "head" (float32 0..1 renders over the real backgrounds),
    "alpha" and "portrait" (uint8 blends) of every held-out frame; not part of :meth:`to_dict`."""

    def to_dict(self, per_frame: bool = True) -> dict[str, Any]:
        """JSON-ready numbers (``per_frame=False`` leaves the per-frame lists out)."""
        data = asdict(dataclasses.replace(self, samples={}, images={}))  # (asdict would deep-copy the arrays)
        data.pop("samples")
        data.pop("images")
        if not per_frame:
            _drop_keys(data, {"per_frame", "jaw_open"})
        return data


def _drop_keys(value: Any, keys: set[str]) -> None:
    if isinstance(value, dict):
        for key in keys & set(value):
            value.pop(key)
        for item in value.values():
            _drop_keys(item, keys)


# ------------------------------------------------------------------------------------------------- API
def evaluate_model(model, subject, *, frames: Sequence[int] | None = None,
                   heldout_audio: Sequence[str] = ("own",), speech: Mapping[str, Any] | None = None,
                   silence: bool = False, portrait: bool = True, max_frames: int = 0, with_lpips: bool = True,
                   with_lmd: bool = True, max_lag: int = 2, encoder: str | None = None, device: Any = "cpu",
                   models_dirs: Iterable[Path | str] | None = None, samples: int = 0, return_images: bool = False,
                   progress: Callable[[str], contextlib.AbstractContextManager] | None = None) -> EvaluationReport:
    """Score ``model`` on its ``subject`` (see the module docstring).

    Args:
        model: a trained ``SyncTalkModel``.
        subject: the ``Subject`` it was trained on (clip, face track, pose, audio features).
        frames: held-out frames (default: the model's held-out frames); empty skips the held-out part.
        heldout_audio: audio variants of the held-out part: any of "own", "reversed", "silent".
        speech: drives, ``{name: file or (wave, rate)}``.
        silence: also drive with silence (as many frames as ``max_frames``, else as the clip).
        portrait: also score the Portrait-Sync blend into the original frames.
        max_frames: render at most this many frames per drive (0 = the whole speech).
        with_lpips, with_lmd: compute LPIPS (when its weights exist) and LMD / jawOpen r.
        encoder: audio encoder override (only for models trained on an ``ave-file``).
        samples: keep this many evenly spaced output frames per part in ``report.samples``.
        return_images: keep every held-out render, its alpha and its blend in ``report.heldout[...].images``.
        progress: ``progress(description)`` -> context manager yielding an ``on_step`` (e.g. ``cli_progress``).
    """
    frames = list(model.subject.val_indices.tolist() if frames is None else (int(i) for i in frames))
    _check_subject(model, subject)
    for variant in heldout_audio:
        if variant not in HELDOUT_AUDIO:
            raise InputError(f"held-out audio must be one of {HELDOUT_AUDIO}, got {variant!r}")
    if heldout_audio and not frames:
        raise InputError("there are no frames to evaluate (the model has no held-out frames; pass frames)")
    run = _Run(model, subject, device=device, models_dirs=models_dirs, encoder=encoder, portrait=portrait,
               samples=samples, return_images=return_images, progress=progress or _no_progress)
    heldout: dict[str, HeldOutScores] = {}
    drives: dict[str, DriveScores] = {}
    real = None
    with run.using_clip_frames(), FrameScorer(models_dirs=models_dirs, device=device, with_lpips=with_lpips,
                                              with_lmd=with_lmd) as scorer:
        for variant in heldout_audio:
            heldout[variant] = run.heldout(frames, variant, scorer)
        run.notes.extend(scorer.notes)
        if speech or silence:
            real = run.real_clip(max_lag)
            for name, source in (speech or {}).items():
                drives[name] = run.drive(name, source, real, max_frames=max_frames, max_lag=max_lag)
            if silence:
                count = max_frames or subject.clip.num_frames
                wave = np.zeros((1, int(round(count / subject.clip.fps * 16000))), np.float32)
                drives["silence"] = run.drive("silence", (wave, 16000), real, max_frames=count, max_lag=max_lag)
    return EvaluationReport(heldout=heldout, drives=drives, real=real,
                            resolution=(subject.clip.height, subject.clip.width),
                            render_resolution=(model.render_height, model.render_width),
                            notes=_unique(run.notes), samples=run.kept, images=run.images)


def _check_subject(model, subject) -> None:
    assets, clip = model.subject, subject.clip
    if (clip.num_frames, clip.height, clip.width) != (assets.num_frames, assets.height, assets.width):
        raise InputError(f"the subject clip ({clip.num_frames} frames {clip.width}x{clip.height}) is not the one "
                         f"the model was trained on ({assets.num_frames} frames {assets.width}x{assets.height})")
    if subject.track.num_frames != clip.num_frames:
        raise InputError(f"the face track has {subject.track.num_frames} frames but the clip has {clip.num_frames}; "
                         "use the subject's own face track")


def _unique(notes: list[str]) -> list[str]:
    return list(dict.fromkeys(notes))


# ------------------------------------------------------------------------------------------------ parts
class _Run:
    """State shared by the parts of one evaluation: the model, the subject, settings and the notes."""

    def __init__(self, model, subject, *, device, models_dirs, encoder, portrait: bool, samples: int,
                 return_images: bool, progress):
        self.model, self.subject = model, subject
        self.device, self.models_dirs, self.encoder = device, models_dirs, encoder
        self.portrait, self.samples, self.return_images, self.progress = portrait, samples, return_images, progress
        self.notes: list[str] = []
        self.kept: dict[str, np.ndarray] = {}
        self.images: dict[str, dict[str, np.ndarray]] = {}
        clip = subject.clip
        from synctalk_lib.metrics.sharpness import face_boxes

        self.boxes = face_boxes(subject.track.landmarks, clip.height, clip.width)

    @contextlib.contextmanager
    def using_clip_frames(self) -> Iterator[None]:
        """Render over the subject clip's own frames (not the model folder's re-encoded copy), so the real frame
        and the render's background are the same pixels; the model is left as it was afterwards."""
        assets = self.model.subject
        saved = assets.frames
        assets.frames = self.subject.clip
        try:
            yield
        finally:
            assets.frames = saved

    def keep(self, name: str, index: int, total: int, frame: np.ndarray) -> None:
        if self.samples and index in _sample_slots(total, self.samples):
            self.kept[f"{name}_{index:04d}"] = _to_uint8(frame)

    def encode(self, wave: np.ndarray, rate: int):
        from synctalk_lib.audio.features import encode_audio
        from synctalk_lib.pipeline.driving import model_encoder

        return encode_audio(wave, rate, fps=self.model.subject.fps, encoder=model_encoder(self.model, self.encoder),
                            models_dirs=self.models_dirs, device=self.device)

    def changed_features(self, frames: list[int], variant: str):
        """The subject's features with the rows of ``frames`` encoded from their audio stretch time-reversed or
        silenced (every other row stays the training row, so only the held-out frames' sound changes)."""
        from synctalk_lib.metrics.drive import replace_stretch
        from synctalk_lib.types import AudioFeatures

        clip, own = self.subject.clip, self.subject.features
        if not clip.has_audio:
            raise InputError(f"held-out audio '{variant}' needs the clip's audio, and the subject clip has none")
        wave = clip.audio_waveform()
        for start, stop in _runs(frames):
            wave = replace_stretch(wave, clip.sample_rate, clip.fps, range(start, stop), variant)
        encoded = self.encode(wave, clip.sample_rate)
        rows = np.asarray([f for f in frames if f < min(encoded.num_frames, own.num_frames)], np.int64)
        if len(rows) < len(frames):
            self.notes.append(f"held-out {variant}: {len(frames) - len(rows)} frames lie past the end of the "
                              "clip's audio and keep their own feature rows")
        changed = np.array(own.features, copy=True)
        changed[rows] = encoded.features[rows]
        return AudioFeatures(features=changed, fps=own.fps, encoder_id=own.encoder_id)

    def heldout(self, frames: list[int], variant: str, scorer: FrameScorer) -> HeldOutScores:
        """Render the held-out ``frames`` with the ``variant`` audio and score head and portrait."""
        from synctalk_lib.nerf.inference import render_frames

        features = self.subject.features if variant == "own" else self.changed_features(frames, variant)
        started = time.perf_counter()
        with self.progress(f"Rendering held-out frames ({variant} audio)") as on_step:
            chunks = list(render_frames(self.model, features, frames=frames, device=self.device, on_step=on_step))
        seconds = time.perf_counter() - started
        views = {"head": np.concatenate([c.rgb for c in chunks])}
        alpha = np.concatenate([c.alpha for c in chunks])
        if self.portrait:
            views["portrait"] = portrait_frames(views["head"], alpha, frames, self.subject.clip, self.subject.pose,
                                                self.subject.track)
        real = np.stack([self.subject.clip.frame(i) for i in frames])
        boxes = [self.boxes[i] for i in frames]
        scores: dict[str, FrameScores] = {}
        for view, images in views.items():
            for k, frame in enumerate(images):
                self.keep(f"heldout_{variant}_{view}", k, len(images), frame)
            scores[view] = scorer.score(images, real, boxes, label=f"held-out {variant} {view}", frames=frames)
        if self.return_images:
            self.images[variant] = {**views, "alpha": alpha}
        return HeldOutScores(audio=variant, frames=list(frames), head=scores["head"], portrait=scores.get("portrait"),
                             render_seconds=round(seconds, 2))

    def real_clip(self, max_lag: int) -> RealClipScores:
        """jawOpen of every real frame, its envelope r with the clip's own audio, and the closed-mouth range."""
        from synctalk_lib.metrics.drive import closed_mouth, opening_stats
        from synctalk_lib.metrics.lipsync import MouthOpeningMeter, audio_envelope, lipsync_correlation

        clip = self.subject.clip
        with self.progress("Measuring the real clip's mouth") as on_step, \
                MouthOpeningMeter(self.models_dirs, fps=clip.fps) as meter:
            for i in range(clip.num_frames):
                meter.add(clip.frame(i))
                if on_step is not None:
                    on_step(i + 1, clip.num_frames)
        opening = meter.values
        pauses = None
        if clip.has_audio:
            from synctalk_lib.audio.augment import paused_frames

            envelope = lipsync_correlation(audio_envelope(clip.audio_waveform(), clip.sample_rate, clip.fps,
                                                          clip.num_frames), opening, max_lag=max_lag)
            paused = paused_frames(clip.audio_waveform(), clip.sample_rate, clip.fps, clip.num_frames)
            pauses = opening_stats(np.asarray(opening, np.float64)[paused[:len(opening)]])
        else:
            envelope = lipsync_correlation(np.zeros(0), np.zeros(0), max_lag=max_lag)
            self.notes.append("the subject clip has no audio: no reference value for the lip-sync proxy")
        return RealClipScores(envelope=envelope, opening=opening_stats(opening), closed=closed_mouth(opening),
                              pauses=pauses, jaw_open=_json_list(opening))

    def drive(self, name: str, source: Any, real: RealClipScores, *, max_frames: int, max_lag: int) -> DriveScores:
        """Render ``source`` like ``drive`` does and measure the mouth of the head and portrait frames."""
        from synctalk_lib.media.audio import load_speech
        from synctalk_lib.metrics.lipsync import audio_envelope
        from synctalk_lib.nerf.inference import render_frames

        wave, rate = load_speech(source)
        features = self.encode(wave, rate)
        count = features.num_frames if not max_frames else min(int(max_frames), features.num_frames)
        started = time.perf_counter()
        with self.progress(f"Rendering the '{name}' drive") as on_step:
            chunks = render_frames(self.model, features, count=count, device=self.device, as_uint8=True,
                                   on_step=on_step)
            measured = self._measure_drive(name, chunks, count)
        seconds = time.perf_counter() - started
        envelope = audio_envelope(wave, rate, self.model.subject.fps, count)
        reference = np.asarray([np.nan if v is None else v for v in real.jaw_open], np.float64)
        views = {view: _mouth_scores(opening, ratios, envelope, reference, max_lag)
                 for view, (opening, ratios) in measured.items()}
        return DriveScores(name=name, source="waveform" if isinstance(source, tuple) else str(source), frames=count,
                           head=views["head"], portrait=views.get("portrait"), render_seconds=round(seconds, 2))

    def _measure_drive(self, name: str, chunks, count: int) -> dict[str, tuple[np.ndarray, list[float]]]:
        """jawOpen and Laplacian ratios of the head frames and (with ``portrait``) of their blend, streamed."""
        from synctalk_lib.metrics.lipsync import MouthOpeningMeter
        from synctalk_lib.metrics.sharpness import laplacian_ratio
        from synctalk_lib.portrait.generate import blend_stream
        from synctalk_lib.timeline import reference_indices

        clip, fps = self.subject.clip, self.model.subject.fps
        views = ("head", "portrait") if self.portrait else ("head",)
        ratios: dict[str, list[float]] = {view: [] for view in views}
        with contextlib.ExitStack() as stack:
            meters = {view: stack.enter_context(MouthOpeningMeter(self.models_dirs, fps=fps)) for view in views}
            for chunk in chunks:
                refs = reference_indices(len(chunk.rgb), clip.num_frames, start=chunk.first_index)
                outputs = {"head": list(chunk.rgb)}
                if self.portrait:
                    outputs["portrait"] = list(blend_stream([chunk], clip, self.subject.pose, track=self.subject.track))
                for view, frames in outputs.items():
                    for k, (frame, j) in enumerate(zip(frames, refs)):
                        meters[view].add(frame)
                        ratios[view].append(laplacian_ratio(frame, clip.frame(int(j)), self.boxes[int(j)]))
                        self.keep(f"drive_{name}_{view}", chunk.first_index + k, count, frame)
        return {view: (meters[view].values, ratios[view]) for view in views}


def _mouth_scores(opening: np.ndarray, ratios: list[float], envelope: np.ndarray, reference: np.ndarray,
                  max_lag: int) -> MouthScores:
    from synctalk_lib.metrics.drive import opening_stats, reference_leak
    from synctalk_lib.metrics.frames import clean_number
    from synctalk_lib.metrics.lipsync import lipsync_correlation

    finite = [r for r in ratios if r == r]
    return MouthScores(envelope=lipsync_correlation(envelope, opening, max_lag=max_lag),
                       reference_leak=reference_leak(opening, reference), opening=opening_stats(opening),
                       laplacian_ratio=clean_number(float(np.median(finite))) if finite else None,
                       jaw_open=_json_list(opening))


def portrait_frames(pred: np.ndarray, alpha: np.ndarray, frames: Sequence[int], clip, pose, track=None,
                    settings=None) -> np.ndarray:
    """Blend renders of reference ``frames`` into those same original frames with the product's blend
    (``portrait.generate.blend_stream``; masks from the camera and the face geometry, or from ``alpha`` without a
    face track): ``[F, H, W, 3]`` uint8."""
    from synctalk_lib.portrait.blend import BlendSettings
    from synctalk_lib.portrait.generate import blend_stream

    settings = settings or BlendSettings()
    # One chunk per frame, whose first index is the frame itself: the blend's output->reference mapping
    # (timeline.reference_indices) then picks exactly that frame.
    chunks = ((int(j), pred[k:k + 1], alpha[k:k + 1]) for k, j in enumerate(frames))
    return np.stack(list(blend_stream(chunks, clip, pose, track=track, settings=settings)))


def _runs(frames: Sequence[int]) -> list[tuple[int, int]]:
    """Consecutive runs ``[(start, stop), ...]`` (stop exclusive) of sorted unique frame numbers."""
    runs: list[tuple[int, int]] = []
    for i in sorted(set(int(f) for f in frames)):
        if runs and runs[-1][1] == i:
            runs[-1] = (runs[-1][0], i + 1)
        else:
            runs.append((i, i + 1))
    return runs


def _sample_slots(total: int, count: int) -> set[int]:
    return set(np.linspace(0, total - 1, min(count, total)).round().astype(int).tolist()) if total else set()


def _to_uint8(frame: np.ndarray) -> np.ndarray:
    array = np.asarray(frame)
    return array if array.dtype == np.uint8 else (np.clip(array, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _json_list(values: np.ndarray) -> list[float | None]:
    return [None if v != v else round(float(v), 4) for v in np.asarray(values, np.float64)]


# ------------------------------------------------------------------------------------------------ tables
def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "null"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def heldout_table(data: Mapping[str, Any]) -> str:
    """Markdown table of ``EvaluationReport.to_dict()["heldout"]``: one row per audio variant and view."""
    rows = ["| held-out frames | audio | view | PSNR dB | SSIM | LPIPS | LMD px | jawOpen r | Laplacian ratio | "
            "high-pass r |", "|---|---|---|---|---|---|---|---|---|---|"]
    for variant, part in data.items():
        frames = part["frames"]
        span = f"{frames[0]}-{frames[-1]}" if frames == list(range(frames[0], frames[-1] + 1)) else f"{len(frames)}"
        for view in ("head", "portrait"):
            s = part.get(view)
            if s is None:
                continue
            rows.append(f"| {span} | {variant} | {view} | {_fmt(s['psnr'], 2)} | {_fmt(s['ssim'], 4)} | "
                        f"{_fmt(s['lpips'], 4)} | {_fmt(s['lmd'], 2)} | {_fmt(s['jaw_r'])} | "
                        f"{_fmt(s['laplacian_ratio'])} | {_fmt(s['highpass_correlation'])} |")
    return "\n".join(rows)


def drive_table(data: Mapping[str, Any]) -> str:
    """Markdown table of the drives and the real clip of ``EvaluationReport.to_dict()``."""
    rows = ["| drive | view | frames | envelope r (lag) | r lag 0 | reference leak r | jawOpen mean | jawOpen std | "
            "Laplacian ratio |", "|---|---|---|---|---|---|---|---|---|"]
    real = data.get("real")
    if real:
        env, op = real["envelope"], real["opening"]
        rows.append(f"| real clip, own audio | real | {op['frames']} | {_fmt(env['r'])} ({_fmt(env['lag'])}) | "
                    f"{_fmt(env['r_lag0'])} | - | {_fmt(op['mean'])} | {_fmt(op['std'])} | 1 |")
    for name, drive in data.get("drives", {}).items():
        for view in ("head", "portrait"):
            s = drive.get(view)
            if s is None:
                continue
            env, op = s["envelope"], s["opening"]
            rows.append(f"| {name} | {view} | {drive['frames']} | {_fmt(env['r'])} ({_fmt(env['lag'])}) | "
                        f"{_fmt(env['r_lag0'])} | {_fmt(s['reference_leak'])} | {_fmt(op['mean'])} | "
                        f"{_fmt(op['std'])} | {_fmt(s['laplacian_ratio'])} |")
    if real:
        c = real["closed"]
        rows.append("")
        rows.append(f"Subject's closed-mouth jawOpen range (real frames at or below the {c['quantile']:g} quantile, "
                    f"{c['frames']} frames): {_fmt(c['low'])}..{_fmt(c['high'])}, mean {_fmt(c['mean'])}, "
                    f"std {_fmt(c['std'])}.")
        p = real.get("pauses")
        if p and p.get("frames"):
            rows.append(f"Subject's mouth in the clip's own pauses ({p['frames']} frames): jawOpen mean "
                        f"{_fmt(p['mean'])}, std {_fmt(p['std'])}.")
    return "\n".join(rows)


def report_tables(data: Mapping[str, Any]) -> str:
    """Both tables (the parts that were measured) of ``EvaluationReport.to_dict()``."""
    parts = []
    if data.get("heldout"):
        parts.append(heldout_table(data["heldout"]))
    if data.get("drives") or data.get("real"):
        parts.append(drive_table(data))
    return "\n\n".join(parts)


__all__ = ["DriveScores", "EvaluationReport", "HeldOutScores", "MouthScores", "RealClipScores", "drive_table",
           "evaluate_model", "heldout_table", "portrait_frames", "report_tables"]
