"""Resuming continues only the same subject: a checkpoint of another subject with the same name and frame count
is not resumed (TrainSyncTalk's defaults are name "my_subject", resume on)."""
from __future__ import annotations

import torch

from synctalk_lib.nerf.trainer import train_subject
from tests.nerf_fixtures import make_subject

TINY = dict(preset="quick", iterations=4, resolution=0, perceptual_loss="none", rays_per_step=128, patch_size=8,
            patches_per_step=1, checkpoint_every=0, log_every=1000, val_frames=0.2, nerf={"grid_resolution": 16})


def _train(subject, work, lines):
    model, summary = train_subject(subject.clip, subject.track, subject.pose, subject.audio, work_dir=work,
                                   resume=True, on_status=lines.append, **TINY)
    return model, summary


def test_another_subjects_checkpoint_is_not_resumed(tmp_path):
    first = make_subject(tmp_path / "a", num_frames=10, size=32, seed=1)
    second = make_subject(tmp_path / "b", num_frames=10, size=32, seed=2)
    work = tmp_path / "training" / "my_subject"
    lines: list[str] = []
    model_a, _ = _train(first, work, lines)
    lines.clear()
    model_b, summary = _train(second, work, lines)
    text = "\n".join(lines)
    assert "trained on another subject" in text and "starts over" in text and "resuming" not in text
    assert "audio features" in text and "clip" in text
    assert summary["steps"] == 4
    a, b = model_a.nerf.state_dict(), model_b.nerf.state_dict()
    assert not torch.equal(a["individual_codes"], b["individual_codes"]), "the first subject's network is not returned"
    # the same subject again resumes as before (its checkpoint is at the last step: nothing left to train)
    lines.clear()
    again, _ = _train(second, work, lines)
    assert any(line.startswith("resuming from step 4") for line in lines)
    assert torch.equal(again.nerf.state_dict()["individual_codes"], b["individual_codes"])
