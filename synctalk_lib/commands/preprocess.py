"""``preprocess``: a reference video -> a subject folder (clip, audio, audio features, face track, ...).

The work is a list of small steps run in order (``STEPS``). Each step names the files it writes, the settings its
result depends on, and the command-line options it reads. A step is skipped when its files exist and the settings
recorded in report.json match the current ones, so re-running reuses finished work (``--force`` redoes every
step, ``--redo STEP`` one). report.json is rewritten atomically after every step, so an interrupted run leaves a
consistent folder and the next run carries on from the first unfinished step.

Adding a stage (e.g. head pose) is one line in ``STEPS``: ``Step("pose", (SubjectDir.HEAD_POSE,), pose_settings,
run_pose, add_pose_arguments)``, where ``run_pose(ctx)`` writes the file and returns its report entries.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from synctalk_lib.commands.pose import add_pose_arguments, pose_step_settings, run_pose_step
from synctalk_lib.subject import SubjectDir

NAME = "preprocess"
HELP = "prepare a subject folder from a reference video: clip, audio, audio features, face track, report.json"

StepCallback = Callable[[int, int], None]


# ------------------------------------------------------------------------------------------------ machinery
@dataclass
class Context:
    """What every step can use: the parsed options, the subject folder, the report so far, the folders."""

    args: argparse.Namespace
    subject: SubjectDir
    report: dict[str, Any]
    models_dirs: list[Path]
    cache_dir: Path
    _clip: Any = field(default=None, repr=False)

    def clip(self):
        """The prepared clip (after the ``load_video`` step)."""
        if self._clip is None:
            self._clip = self.subject.load_clip()
        return self._clip

    def clip_key(self) -> str:
        """Identity of the prepared clip (its cache folder name hashes the source file and every setting)."""
        return Path(self.subject.clip_ref()["clip_root"]).name

    def progress(self, description: str):
        """An ``on_step(done, total)`` callback drawing a tqdm bar on stderr (silent with SYNCTALK_QUIET=1)."""
        from synctalk_lib.progress import cli_progress

        return cli_progress(description)


@dataclass(frozen=True)
class Step:
    """One preprocessing step.

    Attributes:
        name: key in report.json (``steps``, ``seconds``) and for ``--redo``.
        outputs: file names in the subject folder that the step writes.
        settings: everything the outputs depend on (JSON-able); a change re-runs the step.
        run: does the work, writes ``outputs`` and returns entries for report.json.
        add_arguments: adds the step's command-line options (optional).
        still_valid: extra check that the finished step's results are usable (optional).
    """

    name: str
    outputs: tuple[str, ...]
    settings: Callable[[Context], dict[str, Any]]
    run: Callable[[Context], dict[str, Any]]
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None
    still_valid: Callable[[Context], bool] | None = None


def _as_json(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _is_done(step: Step, ctx: Context, settings: dict[str, Any]) -> bool:
    record = ctx.report.get("steps", {}).get(step.name)
    if not record or record.get("settings") != settings:
        return False
    if not all(ctx.subject.path(name).is_file() for name in step.outputs):
        return False
    return step.still_valid(ctx) if step.still_valid is not None else True


def run_steps(steps: tuple[Step, ...], ctx: Context, *, force: set[str]) -> dict[str, Any]:
    """Run (or reuse) ``steps`` in order, writing report.json after each; returns the final report."""
    report = ctx.report
    report.setdefault("steps", {})
    report.setdefault("seconds", {})
    report["reused"] = []
    run_started = time.perf_counter()
    for number, step in enumerate(steps, 1):
        settings = _as_json(step.settings(ctx))
        if step.name not in force and _is_done(step, ctx, settings):
            report["reused"].append(step.name)
            _say(f"[{number}/{len(steps)}] {step.name}: up to date, reused")
            continue
        _say(f"[{number}/{len(steps)}] {step.name} ...")
        started = time.perf_counter()
        entries = step.run(ctx)
        seconds = round(time.perf_counter() - started, 3)
        report.update(_as_json(entries))
        report["seconds"][step.name] = seconds
        report["steps"][step.name] = {"settings": settings, "outputs": list(step.outputs)}
        ctx.subject.write_report(report)
        _say(f"[{number}/{len(steps)}] {step.name}: done in {seconds:.1f} s")
    report["run_seconds"] = round(time.perf_counter() - run_started, 3)
    ctx.subject.write_report(report)
    return report


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------------ load_video
def add_video_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--fps", type=float, default=25.0, help="frame rate of the clip (default 25)")
    parser.add_argument("--crop", choices=("face", "none"), default="face",
                        help="face: square crop around the head resized to --size (default); none: full frames")
    parser.add_argument("--size", type=int, default=512, help="side of the face crop in pixels (default 512)")
    parser.add_argument("--start", type=float, default=0.0, help="seconds to skip at the start of the video")
    parser.add_argument("--max-duration", type=float, default=0.0, help="seconds to keep; 0 = the whole video")


def _video_settings(args: argparse.Namespace) -> dict[str, Any]:
    return dict(fps=float(args.fps), start_time=float(args.start), max_duration=float(args.max_duration),
                crop=args.crop, size=int(args.size))


def load_video_settings(ctx: Context) -> dict[str, Any]:
    from synctalk_lib.media.prepare import clip_cache_path

    settings = _video_settings(ctx.args)
    return {"video": str(Path(ctx.args.video).expanduser().resolve()), **settings,
            "clip_cache": clip_cache_path(ctx.args.video, ctx.cache_dir, **settings).name}


def run_load_video(ctx: Context) -> dict[str, Any]:
    from synctalk_lib.errors import InputError
    from synctalk_lib.media.prepare import prepare_clip

    settings = _video_settings(ctx.args)
    with ctx.progress("Preparing clip") as on_step:
        clip = prepare_clip(ctx.args.video, ctx.cache_dir, models_dirs=ctx.models_dirs, on_step=on_step,
                            warn=lambda note: _say(f"note: {note}"), **settings)
    if not clip.has_audio:
        raise InputError(f"{Path(ctx.args.video).name} has no audio track; SyncTalk learns lip sync from the "
                         "speech in the reference video, so it needs a video with sound")
    audio = clip.audio_waveform()
    ctx.subject.save_audio_wav(audio, clip.sample_rate)
    ctx.subject.save_clip_ref(clip, settings)
    ctx._clip = clip
    return {
        "video": clip.source_path, "frames": clip.num_frames, "fps": clip.fps, "width": clip.width,
        "height": clip.height, "sample_rate": clip.sample_rate, "audio_channels": clip.audio_channels,
        "audio_seconds": round(audio.shape[1] / clip.sample_rate, 4),
        "crop_box": list(clip.crop_box) if clip.crop_box else None, "clip_root": str(clip.root),
        "clip_notes": list(clip.notes),
    }


def clip_still_cached(ctx: Context) -> bool:
    """A finished load_video is reusable only while the clip cache it points to exists."""
    from synctalk_lib.errors import InputError

    try:
        ctx.clip()
    except (InputError, OSError, KeyError, ValueError):
        return False
    return True


# -------------------------------------------------------------------------------------------- audio_features
def add_audio_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--audio-encoder", default="auto", metavar="auto|ave|ave-file:PATH|mel",
                        help="audio features: the official audio-visual encoder (ave), your own AVE weights "
                             "(ave-file:PATH), the plain mel windows (mel, no weights), or auto (ave when its "
                             "weights are available, else mel with a warning). Default auto")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="where the audio encoder runs (default auto)")


def audio_features_settings(ctx: Context) -> dict[str, Any]:
    encoder = str(ctx.args.audio_encoder)
    settings: dict[str, Any] = {"clip": ctx.clip_key(), "encoder": encoder}
    name, _, path = encoder.partition(":")
    if name.strip().lower() == "ave-file" and Path(path).expanduser().is_file():
        stat = Path(path).expanduser().stat()
        settings["encoder_file"] = {"bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    return settings


def run_audio_features(ctx: Context) -> dict[str, Any]:
    from synctalk_lib.audio.features import encode_audio

    clip = ctx.clip()
    with ctx.progress("Encoding audio") as on_step:
        features = encode_audio(clip.audio_waveform(), clip.sample_rate, fps=clip.fps,
                                encoder=ctx.args.audio_encoder, models_dirs=ctx.models_dirs,
                                device=ctx.args.device, on_step=on_step)
    ctx.subject.save_audio_features(features)
    notes = list(features.notes)  # encode_audio has logged them already
    if features.num_frames != clip.num_frames:
        mismatch = (f"{features.num_frames} feature rows for {clip.num_frames} video frames; training uses the "
                    f"first {min(features.num_frames, clip.num_frames)}")
        notes.append(mismatch)
        _say(f"note: {mismatch}")
    return {
        "audio_features_shape": list(features.features.shape),
        "audio_features": {"encoder_id": features.encoder_id, "fps": features.fps,
                           "shape": list(features.features.shape), "notes": notes},
    }


# ------------------------------------------------------------------------------------------------ face_track
def add_face_arguments(parser: argparse.ArgumentParser) -> None:
    from synctalk_lib.face.capture import DEFAULT_SMOOTHING, SMOOTHING_CHOICES

    parser.add_argument("--max-gap", type=int, default=5,
                        help="longest run of frames without a face that is interpolated (default 5)")
    parser.add_argument("--smoothing", choices=SMOOTHING_CHOICES, default=DEFAULT_SMOOTHING,
                        help=f"temporal smoothing of landmarks and blendshapes (default {DEFAULT_SMOOTHING})")


def face_track_settings(ctx: Context) -> dict[str, Any]:
    return {"clip": ctx.clip_key(), "max_gap": int(ctx.args.max_gap), "smoothing": ctx.args.smoothing}


def run_face_track(ctx: Context) -> dict[str, Any]:
    from synctalk_lib.face.capture import capture_face_track
    from synctalk_lib.face.stats import summarize_face_track

    clip = ctx.clip()
    with ctx.progress("Capturing face") as on_step:
        track = capture_face_track(clip, models_dirs=ctx.models_dirs, max_gap=ctx.args.max_gap,
                                   smoothing=ctx.args.smoothing, on_step=on_step)
    track.save(ctx.subject.path(SubjectDir.FACE_TRACK))
    summary = summarize_face_track(track)
    return {
        "face_frames": summary["face_frames"],
        "blendshape_names": list(track.blendshape_names),
        "expression_names": list(track.expression_names),
        "face": summary,
    }


# ------------------------------------------------------------------------------------------------ the steps
STEPS: tuple[Step, ...] = (
    Step("load_video", (SubjectDir.CLIP_REF, SubjectDir.AUDIO_WAV), load_video_settings, run_load_video,
         add_video_arguments, clip_still_cached),
    Step("audio_features", (SubjectDir.AUDIO_FEATURES,), audio_features_settings, run_audio_features,
         add_audio_arguments),
    Step("face_track", (SubjectDir.FACE_TRACK,), face_track_settings, run_face_track, add_face_arguments),
    Step("pose", (SubjectDir.HEAD_POSE,), pose_step_settings, run_pose_step, add_pose_arguments),
)


# ------------------------------------------------------------------------------------------------------ CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("video", help="reference video of one person talking (3-5 minutes is best)")
    parser.add_argument("--out", required=True, help="subject folder to write (created if missing)")
    parser.add_argument("--models-dir", action="append", default=None,
                        help="folder with weights (face_landmarker.task, AVE); repeatable; "
                             "default $SYNCTALK_MODELS_DIR")
    parser.add_argument("--cache-dir", default=None, help="clip cache folder; default $SYNCTALK_CACHE_DIR")
    parser.add_argument("--force", action="store_true",
                        help="redo every step even if its results exist (a decoded clip in the clip cache is "
                             "still reused while the video and the clip settings are unchanged)")
    parser.add_argument("--redo", action="append", default=[], choices=[s.name for s in STEPS], metavar="STEP",
                        help=f"redo this step (repeatable): {', '.join(s.name for s in STEPS)}")
    for step in STEPS:
        if step.add_arguments is not None:
            step.add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from synctalk_lib import paths

    subject = SubjectDir(args.out)
    subject.root.mkdir(parents=True, exist_ok=True)
    ctx = Context(args=args, subject=subject, report=subject.read_report(),
                  models_dirs=[Path(p) for p in (args.models_dir or [paths.default_models_dir()])],
                  cache_dir=Path(args.cache_dir) if args.cache_dir else paths.default_cache_dir())
    force = {s.name for s in STEPS} if args.force else set(args.redo)
    report = run_steps(STEPS, ctx, force=force)
    summary = {key: report.get(key) for key in ("frames", "fps", "face_frames", "audio_seconds",
                                                 "audio_features_shape", "seconds", "run_seconds", "reused")}
    summary["blink_frames"] = report.get("face", {}).get("blink_frames")
    summary["encoder_id"] = report.get("audio_features", {}).get("encoder_id")
    summary["report"] = str(subject.path(SubjectDir.REPORT))
    print(json.dumps(summary, indent=2))
    return 0
