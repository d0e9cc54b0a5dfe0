"""``preprocess``: a reference video -> a subject folder and a ``Subject`` (clip, audio features, face track, pose).

Four stages, each reused when its settings and files are unchanged (``stages.StageLog``, the folder's report.json):

- ``load_video``: decode + crop into the clip cache, write audio.wav and clip.json;
- ``audio_features``: the clip's speech -> one feature row per frame;
- ``face_track``: MediaPipe landmarks, 52 blendshapes, 7 expression coefficients;
- ``pose``: focal length, rough poses, tracked keypoints, bundle adjustment.

    subject = preprocess("talk.mp4", "work/talk", PreprocessSettings(audio_encoder="mel"))
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from synctalk_lib.errors import InputError
from synctalk_lib.pipeline.stages import StageLog
from synctalk_lib.progress import StatusCallback, StepCallback, cli_progress
from synctalk_lib.subject import Subject, SubjectDir


@dataclass(frozen=True)
class PreprocessSettings:
    """Every choice ``preprocess`` makes (defaults = the CLI's and the nodes' defaults)."""

    fps: float = 25.0
    """Frame rate of the clip."""
    crop: str = "face"
    """``face``: a square around the head resized to ``size``; ``none``: whole frames."""
    size: int = 512
    start_time: float = 0.0
    max_duration: float = 0.0
    """Seconds to keep from ``start_time`` (0 = all)."""
    audio_encoder: str = "auto"
    """``auto | own | ave | ave-file:PATH | mel`` (see ``synctalk_lib.audio.features``); ``own`` first trains
    the audio-visual encoder on this clip (``audio.ave_train.train_own_encoder``, kept in the subject folder); ``auto``
    is the official ``ave`` when its weights are here (or download), else ``own``."""
    max_gap: int = 5
    """Longest run of frames without a face that is interpolated."""
    smoothing: str = "one_euro"
    """Temporal smoothing of landmarks and blendshapes (``one_euro`` or ``none``)."""
    flow: str = "opencv"
    """Optical flow of the keypoint tracks: ``opencv`` or ``raft-small``."""
    pose_smoothness: float = 0.0
    focal_range: tuple[float, float] | None = None
    device: str = "auto"
    """Where the audio encoder and the pose fit run."""

    def clip_settings(self) -> dict[str, Any]:
        return dict(fps=float(self.fps), start_time=float(self.start_time), max_duration=float(self.max_duration),
                    crop=self.crop, size=int(self.size))


@dataclass
class PreprocessRun:
    """What the stages share while one ``preprocess`` runs (a stage's ``settings`` and ``run`` receive it)."""

    video: Path
    folder: SubjectDir
    settings: PreprocessSettings
    log: StageLog
    models_dirs: list[Path]
    cache_dir: Path
    say: StatusCallback
    progress: Callable[[str], Any]
    clip: Any = None
    encoder: str | None = None

    def load_clip(self):
        if self.clip is None:
            self.clip = self.folder.load_clip()
        return self.clip

    def audio_encoder(self) -> str:
        """The audio encoder this run uses (``audio_encoder_choice``, decided once: ``auto`` may ask the Hub)."""
        if self.encoder is None:
            self.encoder = audio_encoder_choice(str(self.settings.audio_encoder), self.models_dirs)
        return self.encoder

    def clip_key(self) -> str:
        """Identity of the prepared clip (its cache folder name hashes the source file and every setting)."""
        return Path(self.folder.clip_ref()["clip_root"]).name


@dataclass(frozen=True)
class Stage:
    """One preprocessing stage: the files it writes, what they depend on, and the work (returns report entries)."""

    name: str
    outputs: tuple[str, ...]
    settings: Callable[[PreprocessRun], dict[str, Any]]
    run: Callable[[PreprocessRun], dict[str, Any]]


def preprocess(video: Path | str, folder: Path | str, settings: PreprocessSettings | None = None, *,
               models_dirs: Iterable[Path | str] | None = None, cache_dir: Path | str | None = None,
               force: bool = False, redo: Iterable[str] = (), on_status: StatusCallback | None = None,
               progress: Callable[[str], Any] | None = None, stages: tuple[Stage, ...] | None = None) -> Subject:
    """Prepare (or bring up to date) the subject folder ``folder`` from ``video``; returns the ``Subject``.

    Args:
        video: reference video of one person talking (3-5 minutes is best).
        folder: the subject folder (created when missing; finished stages in it are reused).
        settings: every option of the four stages.
        models_dirs: folders with the weights (face_landmarker.task, AVE, RAFT); default: the models folder.
        cache_dir: the clip cache; default ``$SYNCTALK_CACHE_DIR`` or ``~/.cache/synctalk/clips``.
        force: redo every stage (a decoded clip in the clip cache is still reused while the video is unchanged).
        redo: names of stages to redo.
        on_status: receives one line per stage (default: stderr).
        progress: ``progress(description)`` -> a context manager yielding ``on_step(done, total)``
            (default: a tqdm bar on stderr).
        stages: the stages to run (default ``STAGES``; a later stage is one more ``Stage``).
    """
    from synctalk_lib import paths

    video = Path(video).expanduser()
    stages = STAGES if stages is None else stages
    names = [stage.name for stage in stages]
    unknown = sorted(set(redo) - set(names))
    if unknown:
        raise InputError(f"unknown preprocess stage(s) {unknown}; choose from {', '.join(names)}")
    subject_dir = SubjectDir(folder)
    subject_dir.root.mkdir(parents=True, exist_ok=True)
    run = PreprocessRun(video=video, folder=subject_dir, settings=settings or PreprocessSettings(),
               log=StageLog(subject_dir.path(SubjectDir.REPORT)),
               models_dirs=[Path(p) for p in (models_dirs or [paths.default_models_dir()])],
               cache_dir=Path(cache_dir) if cache_dir else paths.default_cache_dir(),
               say=on_status or _stderr, progress=progress or cli_progress)
    todo = set(names) if force else set(redo)
    started = time.perf_counter()
    run.log.data["reused"] = []
    for number, stage in enumerate(stages, 1):
        _run_stage(run, stage, f"[{number}/{len(stages)}] {stage.name}", redo=stage.name in todo)
    run.log.data["run_seconds"] = round(time.perf_counter() - started, 3)
    run.log.write()
    return subject_dir.load_subject(clip=run.load_clip())


def _run_stage(run: PreprocessRun, stage: Stage, label: str, *, redo: bool) -> None:
    settings = stage.settings(run)
    files = [run.folder.path(f) for f in stage.outputs]
    if not redo and run.log.is_done(stage.name, settings, files) and _still_valid(run, stage.name):
        run.log.data["reused"].append(stage.name)
        run.say(f"{label}: up to date, reused")
        return
    run.log.forget(stage.name)
    run.say(f"{label} ...")
    started = time.perf_counter()
    entries = stage.run(run)
    seconds = time.perf_counter() - started
    run.log.mark_done(stage.name, settings, files, entries, seconds)
    run.say(f"{label}: done in {seconds:.1f} s")


def _still_valid(run: PreprocessRun, name: str) -> bool:
    """A finished load_video is reusable only while the clip cache it points to exists, features of the subject's
    own encoder only while that encoder is there (driving speech needs it)."""
    if name == "audio_features" and (run.log.settings_of(name) or {}).get("encoder") == OWN_ENCODER:
        return run.folder.path(run.folder.AUDIO_ENCODER).is_file()
    if name != "load_video":
        return True
    try:
        run.load_clip()
    except (InputError, OSError, KeyError, ValueError):
        return False
    return True


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------------ load_video
def _video_settings(run: PreprocessRun) -> dict[str, Any]:
    from synctalk_lib.media.prepare import clip_cache_path

    clip = run.settings.clip_settings()
    return {"video": str(run.video.resolve()), **clip,
            "clip_cache": clip_cache_path(run.video, run.cache_dir, **clip).name}


def _load_video(run: PreprocessRun) -> dict[str, Any]:
    from synctalk_lib.media.prepare import prepare_clip
    from synctalk_lib.media.training_checks import clip_notes

    clip_settings = run.settings.clip_settings()
    with run.progress("Preparing clip") as on_step:
        clip = prepare_clip(run.video, run.cache_dir, models_dirs=run.models_dirs, on_step=on_step,
                            warn=lambda note: run.say(f"note: {note}"), **clip_settings)
    if not clip.has_audio:
        raise InputError(f"{run.video.name} has no audio track; SyncTalk learns lip sync from the speech in the "
                         "reference video, so it needs a video with sound")
    audio = clip.audio_waveform()
    run.folder.save_audio_wav(audio, clip.sample_rate)
    run.folder.save_clip_ref(clip, clip_settings)
    run.clip = clip
    return {
        "video": clip.source_path, "frames": clip.num_frames, "fps": clip.fps, "width": clip.width,
        "height": clip.height, "sample_rate": clip.sample_rate, "audio_channels": clip.audio_channels,
        "audio_seconds": round(audio.shape[1] / clip.sample_rate, 4),
        "crop_box": list(clip.crop_box) if clip.crop_box else None, "clip_root": str(clip.root),
        "clip_notes": clip_notes(clip),
    }


# -------------------------------------------------------------------------------------------- audio_features
OWN_ENCODER = "own"


def audio_encoder_choice(setting: str, models_dirs: Iterable[Path | str] | None) -> str:
    """The encoder ``preprocess`` uses for ``setting``: ``auto`` is the official AVE when its weights are here or
    download, else the subject's ``own`` (measured on the reference clip: held-out PSNR +3.8 dB head, +1.7 dB
    portrait, reference leak <= 0.08 for every voice, against the mel windows; BENCHMARKS.md)."""
    if setting != "auto":
        return setting
    from synctalk_lib import hub
    from synctalk_lib.errors import MissingWeightsError

    try:
        hub.fetch("ave", models_dirs)
    except MissingWeightsError:
        return OWN_ENCODER
    return "ave"


def _audio_settings(run: PreprocessRun) -> dict[str, Any]:
    encoder = run.audio_encoder()
    settings: dict[str, Any] = {"clip": run.clip_key(), "encoder": encoder}
    if encoder == OWN_ENCODER:
        from synctalk_lib.audio.ave_train import OWN_ENCODER_STEPS

        settings.update(steps=OWN_ENCODER_STEPS, face_track=run.log.settings_of("face_track"))
    name, _, path = encoder.partition(":")
    if name.strip().lower() == "ave-file" and Path(path).expanduser().is_file():
        stat = Path(path).expanduser().stat()
        settings["encoder_file"] = {"bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    return settings


def _audio_features(run: PreprocessRun) -> dict[str, Any]:
    from synctalk_lib.audio.features import encode_audio

    clip = run.load_clip()
    encoder = run.audio_encoder()
    if encoder == OWN_ENCODER:
        encoder = _train_own_encoder(run, clip)
    with run.progress("Encoding audio") as on_step:
        features = encode_audio(clip.audio_waveform(), clip.sample_rate, fps=clip.fps, encoder=encoder,
                                models_dirs=run.models_dirs, device=run.settings.device, on_step=on_step)
    run.folder.save_audio_features(features)
    notes = list(features.notes)  # encode_audio has logged them already
    if features.num_frames != clip.num_frames:
        mismatch = (f"{features.num_frames} feature rows for {clip.num_frames} video frames; training uses the "
                    f"first {min(features.num_frames, clip.num_frames)}")
        notes.append(mismatch)
        run.say(f"note: {mismatch}")
    return {
        "audio_features_shape": list(features.features.shape),
        "audio_features": {"encoder_id": features.encoder_id, "fps": features.fps,
                           "shape": list(features.features.shape), "notes": notes},
    }


def _train_own_encoder(run: PreprocessRun, clip) -> str:
    """Train the subject's own audio-visual encoder on its clip; returns the ``ave-file`` encoder of it."""
    from synctalk_lib.audio.ave_train import train_own_encoder

    path = run.folder.path(run.folder.AUDIO_ENCODER)
    with run.progress("Training the subject's audio encoder") as on_step:
        report = train_own_encoder(clip, run.folder.load_face_track(), path, models_dirs=run.models_dirs,
                                   device=run.settings.device, on_step=on_step)
    auc = report.get("val_auc")
    run.say(f"the subject's own audio encoder: {report['encoder_id']}"
            + (f", held-out lip-sync AUC {auc:.2f}" if auc is not None else ""))
    return f"ave-file:{path}"


# ------------------------------------------------------------------------------------------------ face_track
def _face_settings(run: PreprocessRun) -> dict[str, Any]:
    return {"clip": run.clip_key(), "max_gap": int(run.settings.max_gap), "smoothing": run.settings.smoothing}


def _face_track(run: PreprocessRun) -> dict[str, Any]:
    from synctalk_lib.face.capture import capture_face_track
    from synctalk_lib.face.stats import summarize_face_track

    with run.progress("Capturing face") as on_step:
        track = capture_face_track(run.load_clip(), models_dirs=run.models_dirs, max_gap=run.settings.max_gap,
                                   smoothing=run.settings.smoothing, on_step=on_step)
    track.save(run.folder.path(SubjectDir.FACE_TRACK))
    summary = summarize_face_track(track)
    return {"face_frames": summary["face_frames"], "blendshape_names": list(track.blendshape_names),
            "expression_names": list(track.expression_names), "face": summary}


# ------------------------------------------------------------------------------------------------------ pose
def pose_settings(settings: PreprocessSettings) -> dict[str, Any]:
    return {"flow": settings.flow, "smoothness": float(settings.pose_smoothness),
            "focal_range": list(settings.focal_range) if settings.focal_range else None}


def _pose_settings(run: PreprocessRun) -> dict[str, Any]:
    return {"clip": run.clip_key(), "face_track": run.log.settings_of("face_track"), **pose_settings(run.settings)}


def _pose(run: PreprocessRun) -> dict[str, Any]:
    pose = stabilize(run.folder, run.settings, run.models_dirs, clip=run.load_clip(), progress=run.progress)
    return {"pose": pose.report()}


def stabilize(folder: SubjectDir, settings: PreprocessSettings, models_dirs, *, clip=None,
              progress: Callable[[str], Any] = cli_progress):
    """Stabilise the head poses of a subject folder and save head_pose.npz; returns the ``HeadPose``."""
    from synctalk_lib.pose.stabilize import stabilize_head_pose

    with progress("Stabilizing head pose") as on_step:
        pose = stabilize_head_pose(clip if clip is not None else folder.load_clip(), folder.load_face_track(),
                                   flow=settings.flow, models_dirs=models_dirs, focal_range=settings.focal_range,
                                   smoothness=float(settings.pose_smoothness), device=settings.device,
                                   on_step=on_step)
    pose.save(folder.path(SubjectDir.HEAD_POSE))
    return pose


def record_pose(folder: SubjectDir, settings: PreprocessSettings, pose) -> None:
    """Keep the folder's log true after a stand-alone ``pose`` run: its pose stage now has these settings."""
    log = StageLog(folder.path(SubjectDir.REPORT))
    stage = {"clip": Path(folder.clip_ref()["clip_root"]).name, "face_track": log.settings_of("face_track"),
             **pose_settings(settings)}
    log.mark_done("pose", stage, [folder.path(SubjectDir.HEAD_POSE)], {"pose": pose.report()},
                  pose.report().get("seconds", 0.0))


STAGES: tuple[Stage, ...] = (
    Stage("load_video", (SubjectDir.CLIP_REF, SubjectDir.AUDIO_WAV), _video_settings, _load_video),
    Stage("face_track", (SubjectDir.FACE_TRACK,), _face_settings, _face_track),
    Stage("audio_features", (SubjectDir.AUDIO_FEATURES,), _audio_settings, _audio_features),
    Stage("pose", (SubjectDir.HEAD_POSE,), _pose_settings, _pose),
)
"""The stages ``preprocess`` runs, in order."""
