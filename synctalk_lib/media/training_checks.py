"""Is a clip good enough to train a subject on? Sentences with the numbers when it is too short or its audio too
poor, for everywhere a clip enters: loading (LoadReferenceVideo, ClipFromImages, ``load-video``), ``preprocess``
and training.

SyncTalk's subjects are 3-5 minute videos; the renderer learns the face and the mouth shapes from every frame, so a
shorter clip gives a softer face and weaker lip sync, and under a minute the results are poor. Its audio features
are computed from 16 kHz audio, so a lower sample rate loses the upper part of the speech band.
"""
from __future__ import annotations

from synctalk_lib.types import Clip

GOOD_SECONDS = 180.0
"""Shortest clip that trains well (SyncTalk's subjects are 3-5 minutes)."""
POOR_SECONDS = 60.0
"""Below this the results are poor."""
FEATURE_SAMPLE_RATE = 16000
"""Sample rate the audio features are computed at."""


def training_notes(clip: Clip) -> list[str]:
    """One sentence per problem for training on ``clip`` (empty when it is long enough and its audio fine)."""
    return duration_notes(clip.num_frames, clip.fps) + sample_rate_notes(clip.sample_rate)


def duration_notes(num_frames: int, fps: float) -> list[str]:
    seconds = num_frames / fps if fps > 0 else 0.0
    if seconds >= GOOD_SECONDS:
        return []
    length = f"the clip has {num_frames} frames ({_duration(seconds)})"
    if seconds < POOR_SECONDS:
        return [f"{length}; SyncTalk needs about 3-5 minutes of video to train well, and results from under "
                f"{POOR_SECONDS:.0f} s will be poor (a blurry face and weak lip sync)"]
    return [f"{length}; SyncTalk needs about 3-5 minutes of video to train well: from under "
            f"{GOOD_SECONDS / 60:.0f} minutes expect a softer face and less accurate lip sync"]


def sample_rate_notes(sample_rate: int) -> list[str]:
    """A sentence when the audio is below 16 kHz (none without audio: that has its own note)."""
    if sample_rate <= 0 or sample_rate >= FEATURE_SAMPLE_RATE:
        return []
    return [f"the audio is sampled at {sample_rate} Hz, below the {FEATURE_SAMPLE_RATE} Hz the audio features use: "
            f"speech above {sample_rate / 2000:.1f} kHz is missing, so lip sync will be less accurate; use a "
            "recording with at least 16 kHz audio"]


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} minutes"


def clip_notes(clip: Clip) -> list[str]:
    """Everything to tell the user about ``clip``: the notes of its preparation, then ``training_notes``."""
    notes = list(clip.notes)
    return notes + [note for note in training_notes(clip) if note not in notes]
