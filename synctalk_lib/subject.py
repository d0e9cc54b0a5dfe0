"""A subject folder: everything the later stages need about one person's reference video, in plain files.

Written by ``python -m synctalk_lib preprocess VIDEO --out SUBJECT_DIR`` and read by training, rendering and
evaluation. One class knows the file names, so no stage spells them itself::

    SUBJECT_DIR/
      clip.json            where the prepared clip (uint8 frames + audio) lives in the clip cache, and its settings
      audio.wav            the clip's audio track (16-bit PCM, the clip's rate and channels), for listening/muxing
      audio_features.npz   AudioFeatures: [N, D] float32, one row per video frame, with its encoder id and fps
      face_track.npz       FaceTrack: landmarks, 52 blendshapes, head matrices, 7 expression coefficients
      head_pose.npz        HeadPose (written by the pose step)
      report.json          what each step did: settings, timings, the numbers users ask about
"""
from __future__ import annotations

import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from synctalk_lib.errors import InputError
from synctalk_lib.paths import atomic_path, read_json, write_json
from synctalk_lib.types import AudioFeatures, Clip, FaceTrack, HeadPose


@dataclass(frozen=True, eq=False)
class Subject:
    """One person's prepared reference video: the four hand-off types of the same frames, and where they live.

    Made by ``pipeline.preprocess`` (or ``SubjectDir.load_subject``); consumed by ``pipeline.train`` and
    ``pipeline.evaluate``. ``folder`` is None for a subject assembled in memory (e.g. by the nodes).
    """

    clip: Clip
    track: FaceTrack
    pose: HeadPose
    features: AudioFeatures
    folder: "SubjectDir | None" = None

    def __post_init__(self) -> None:
        counts = {"clip": self.clip.num_frames, "face track": self.track.num_frames,
                  "head pose": self.pose.num_frames}
        if len(set(counts.values())) != 1:
            listed = ", ".join(f"{k} {v}" for k, v in counts.items())
            raise InputError(f"the subject's parts disagree on the number of frames ({listed}); run face capture "
                             "and head pose on this same clip")

    @property
    def num_frames(self) -> int:
        return self.clip.num_frames

    def audio_encoder(self) -> str | None:
        """``ave-file:<path>`` of the subject's own audio encoder when its features come from it, else None."""
        return self.folder.audio_encoder(self.features.encoder_id) if self.folder is not None else None

    def identity(self) -> dict[str, Any]:
        """What the subject's data depends on (for reusing a model trained on it): its folder's stage settings,
        else the shapes and encoder of its parts."""
        if self.folder is not None and self.folder.path(SubjectDir.REPORT).is_file():
            return {"stages": self.folder.read_report().get("steps", {})}
        return {"frames": self.num_frames, "size": [self.clip.width, self.clip.height], "clip": str(self.clip.root),
                "encoder": self.features.encoder_id, "focal": float(self.pose.focal)}


class SubjectDir:
    """Paths and load/save helpers of one subject folder (``root``)."""

    CLIP_REF = "clip.json"
    AUDIO_WAV = "audio.wav"
    AUDIO_FEATURES = "audio_features.npz"
    LEGACY_AUDIO_FEATURES = "audio_features.npy"
    """Written by versions before 0.2 (the array alone; encoder id and fps in report.json); still read."""
    AUDIO_ENCODER = "audio_encoder.safetensors"
    """The subject's own audio-visual encoder (``preprocess`` with the audio encoder ``own``)."""
    FACE_TRACK = "face_track.npz"
    HEAD_POSE = "head_pose.npz"
    REPORT = "report.json"

    def __init__(self, root: Path | str):
        self.root = Path(root)

    def path(self, name: str) -> Path:
        """``root / name`` for one of the file names above."""
        return self.root / name

    def __repr__(self) -> str:
        return f"SubjectDir({str(self.root)!r})"

    def _require(self, name: str, made_by: str) -> Path:
        path = self.path(name)
        if not path.is_file():
            raise InputError(f"{path} is missing; run `python -m synctalk_lib preprocess VIDEO --out {self.root}` "
                             f"first (its {made_by} step writes it)")
        return path

    # --- report
    def read_report(self) -> dict[str, Any]:
        """The report written so far ({} when there is none yet)."""
        path = self.path(self.REPORT)
        return read_json(path) if path.is_file() else {}

    def write_report(self, report: dict[str, Any]) -> None:
        write_json(self.path(self.REPORT), report)

    # --- clip
    def save_clip_ref(self, clip: Clip, settings: dict[str, Any]) -> None:
        """Remember where ``clip`` is cached and how it was prepared (so it can be found or prepared again)."""
        write_json(self.path(self.CLIP_REF), {"clip_root": str(Path(clip.root).resolve()), "settings": settings,
                                              "frames": clip.num_frames, "fps": clip.fps,
                                              "width": clip.width, "height": clip.height})

    def clip_ref(self) -> dict[str, Any]:
        return read_json(self._require(self.CLIP_REF, "load_video"))

    def load_clip(self) -> Clip:
        """The prepared clip; InputError with the fix when its cache folder was deleted."""
        ref = self.clip_ref()
        root = Path(ref["clip_root"])
        if not (root / Clip.META_FILE).is_file():
            raise InputError(f"the clip cache {root} that {self.path(self.CLIP_REF)} points to is gone (cache "
                             f"cleared?); run preprocess on the video again with --out {self.root} to rebuild it")
        return Clip.load(root)

    # --- audio
    def save_audio_wav(self, wave_data: np.ndarray, sample_rate: int) -> Path:
        """Write ``wave_data`` [C, T] float (-1..1) as 16-bit PCM ``audio.wav``, atomically."""
        return write_wav(self.path(self.AUDIO_WAV), wave_data, sample_rate)

    def save_audio_features(self, features: AudioFeatures) -> Path:
        return features.save(self.path(self.AUDIO_FEATURES))

    def audio_encoder(self, encoder_id: str) -> str | None:
        """``ave-file:<path>`` of the subject's own encoder when features with ``encoder_id`` come from it (the
        encoder that makes such features again: speaker variants, driving speech); None otherwise."""
        path = self.path(self.AUDIO_ENCODER)
        if not (encoder_id.startswith("ave-file") and path.is_file()):
            return None
        from synctalk_lib.audio.ave import file_id

        return f"ave-file:{path}" if file_id(path) == encoder_id else None

    def load_audio_features(self) -> AudioFeatures:
        """The clip's audio features (``audio_features.npz``; a legacy ``.npy`` with report.json is read too)."""
        if not self.path(self.AUDIO_FEATURES).is_file() and self.path(self.LEGACY_AUDIO_FEATURES).is_file():
            return self._load_legacy_features()
        return AudioFeatures.load(self._require(self.AUDIO_FEATURES, "audio_features"))

    def _load_legacy_features(self) -> AudioFeatures:
        array = np.load(self.path(self.LEGACY_AUDIO_FEATURES))
        meta = self.read_report().get("audio_features", {})
        if "encoder_id" not in meta or "fps" not in meta:
            raise InputError(f"{self.path(self.REPORT)} does not say which encoder made "
                             f"{self.LEGACY_AUDIO_FEATURES}; run preprocess again with --redo audio_features")
        return AudioFeatures(features=array.astype(np.float32, copy=False), fps=float(meta["fps"]),
                             encoder_id=str(meta["encoder_id"]))

    # --- face and pose
    def load_face_track(self) -> FaceTrack:
        return FaceTrack.load(self._require(self.FACE_TRACK, "face_track"))

    def load_head_pose(self) -> HeadPose:
        return HeadPose.load(self._require(self.HEAD_POSE, "pose"))

    def load_subject(self, *, clip: Clip | None = None) -> Subject:
        """The whole prepared subject (``clip`` given: skip re-reading it)."""
        return Subject(clip=clip if clip is not None else self.load_clip(), track=self.load_face_track(),
                       pose=self.load_head_pose(), features=self.load_audio_features(), folder=self)


def write_wav(path: Path | str, wave_data: np.ndarray, sample_rate: int) -> Path:
    """Write [C, T] (or [T]) float audio as a 16-bit PCM WAV file, atomically; values are clipped to -1..1."""
    data = np.asarray(wave_data, dtype=np.float32)
    if data.ndim == 1:
        data = data[None]
    if data.ndim != 2 or data.shape[0] < 1 or sample_rate <= 0:
        raise InputError(f"audio must be [channels, samples] with a positive rate, got {list(data.shape)} "
                         f"at {sample_rate} Hz")
    pcm = np.round(np.clip(data, -1.0, 1.0) * 32767.0).astype("<i2").T  # interleaved [T, C]
    path = Path(path)
    with atomic_path(path) as tmp:
        with wave.open(str(tmp), "wb") as out:
            out.setnchannels(int(data.shape[0]))
            out.setsampwidth(2)
            out.setframerate(int(sample_rate))
            out.writeframes(np.ascontiguousarray(pcm).tobytes())
    return path
