"""Short clips and low audio rates are named, with their numbers, wherever a clip enters: loading and training."""
from __future__ import annotations

import numpy as np
import torch

from synctalk_lib.media.prepare import clip_from_images
from synctalk_lib.media.training_checks import duration_notes, sample_rate_notes, training_notes
from synctalk_lib.nerf.trainer import train_subject
from tests.nerf_fixtures import make_subject


def test_sentences_carry_the_numbers():
    (poor,) = duration_notes(8, 25.0)
    assert "8 frames (0.3 s)" in poor and "3-5 minutes" in poor and "under 60 s" in poor
    (soft,) = duration_notes(2500, 25.0)  # 100 s
    assert "2500 frames (1.7 minutes)" in soft and "under 3 minutes" in soft
    assert duration_notes(4500, 25.0) == []  # 3 minutes trains well
    (low,) = sample_rate_notes(8000)
    assert "8000 Hz" in low and "16000 Hz" in low and "4.0 kHz" in low
    assert sample_rate_notes(16000) == sample_rate_notes(44100) == []
    assert sample_rate_notes(0) == []  # no audio has its own note


def test_loading_an_8_frame_clip_with_8_khz_audio_says_both(tmp_path):
    images = torch.from_numpy(np.random.default_rng(0).random((8, 32, 32, 3), dtype=np.float32))
    audio = {"waveform": torch.zeros(1, 1, 8 * 8000 // 25), "sample_rate": 8000}
    said: list[str] = []
    clip = clip_from_images(images, audio, 25.0, tmp_path / "cache", warn=said.append)
    assert any("8 frames (0.3 s)" in note for note in said), said
    assert any("8000 Hz" in note for note in said), said
    assert training_notes(clip) == [note for note in said if note in training_notes(clip)]
    # The cached clip says it again when it is loaded a second time.
    again: list[str] = []
    clip_from_images(images, audio, 25.0, tmp_path / "cache", warn=again.append)
    assert again == said


def test_training_a_short_subject_reports_it(tmp_path):
    subject = make_subject(tmp_path, num_frames=12, size=32)
    status: list[str] = []
    _, summary = train_subject(subject.clip, subject.track, subject.pose, subject.audio, preset="quick",
                               iterations=2, resolution=0, perceptual_loss="none", checkpoint_every=0,
                               log_every=1000, rays_per_step=128, patch_size=16, patches_per_step=1,
                               nerf={"grid_resolution": 16}, on_status=status.append)
    assert any("12 frames (0.5 s)" in note for note in summary["notes"]), summary.get("notes")
    assert any(line.startswith("note: the clip has 12 frames") for line in status), status
