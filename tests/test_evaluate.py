"""``evaluate``'s portrait entry (renders blended into their original frames) and its lip-sync proxy option."""
from __future__ import annotations

import json

import numpy as np
import pytest

from tests.nerf_fixtures import make_subject, speech_like_audio, write_subject_dir


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A synthetic subject folder and a model trained on it for a few steps (held-out frames 11-13)."""
    from synctalk_lib.cli import main

    root = tmp_path_factory.mktemp("portrait_eval")
    subject = make_subject(root / "fixture", num_frames=14, size=40, audio="mel")
    subject_dir = write_subject_dir(subject, root / "subject")
    model_dir = root / "model"
    assert main(["train", str(subject_dir), "--preset", "quick", "--out", str(model_dir), "--iterations", "6",
                 "--perceptual-loss", "none", "--val-frames", "11:14", "--threads", "1",
                 "--set", "rays_per_step=256", "--set", "patch_size=16", "--set", "patches_per_step=1",
                 "--set", "nerf.grid_resolution=32"]) == 0
    return subject, subject_dir, model_dir


def _evaluate(model_dir, subject_dir, out, *extra):
    from synctalk_lib.cli import main

    assert main(["evaluate", str(model_dir), "--subject", str(subject_dir), "--json", str(out), "--no-lpips",
                 "--device", "cpu", *extra]) == 0
    return json.loads(out.read_text())


def test_portrait_entry_beats_head_only(trained, tmp_path):
    """The synthetic frames' background differs from what the barely-trained renderer produces, so pasting only
    the face into the real frame must score better than the head render alone, with the same keys."""
    _, subject_dir, model_dir = trained
    result = _evaluate(model_dir, subject_dir, tmp_path / "eval.json", "--no-lmd")
    assert set(result["portrait"]) == set(result["head"]) == {"psnr", "ssim", "lpips", "lmd"}
    assert result["frames"] == [11, 12, 13]
    assert result["portrait"]["psnr"] > result["head"]["psnr"] + 0.2
    assert result["portrait"]["ssim"] > result["head"]["ssim"]
    assert len(result["per_frame_portrait"]["psnr"]) == 3
    assert result["portrait"]["lpips"] is None and result["portrait"]["lmd"] is None

    plain = _evaluate(model_dir, subject_dir, tmp_path / "plain.json", "--no-lmd", "--no-portrait")
    assert "portrait" not in plain
    assert plain["head"]["psnr"] == pytest.approx(result["head"]["psnr"], abs=1e-6)  # rendering is deterministic


def test_portrait_frames_keep_everything_outside_the_face(trained):
    """Outside the blurred face region the blended frame is the original frame exactly."""
    from synctalk_lib.commands.evaluate import portrait_frames
    from synctalk_lib.portrait.blend import soft_mask
    from synctalk_lib.portrait.generate import frame_masks

    subject, _, _ = trained
    real = np.stack([subject.clip.frame(i) for i in (11, 12)]).astype(np.float32) / 255.0
    pred = np.zeros_like(real)
    alpha = np.ones(real.shape[:3], np.float32)
    out = portrait_frames(pred, alpha, real, [11, 12], subject.clip, subject.pose, subject.track)
    masks_of = frame_masks(subject.clip, subject.pose, subject.track)
    for k, j in enumerate((11, 12)):
        outside = soft_mask(masks_of(j, alpha[k]).face, 9, 4.0) < 1e-4
        assert outside.any() and np.allclose(out[k][outside], real[k][outside], atol=1e-5)
        assert out[k][~outside].mean() < real[k][~outside].mean()  # the (black) render shows inside


def test_lipsync_option_reports_rendered_and_reference(trained, tmp_path, shared_models):
    """``--audio`` adds the lip-sync entry. The synthetic clip's sound is loud exactly when its mouth is open, and
    MediaPipe finds its (cartoon) face, so the reference correlation is clearly positive; the barely trained
    render is no face to MediaPipe, so its value is null (nothing measurable, not a made-up 0)."""
    from synctalk_lib.subject import write_wav

    _, subject_dir, model_dir = trained
    wav = tmp_path / "speech.wav"
    write_wav(wav, speech_like_audio(np.linspace(0, 1, 10, dtype=np.float32)), 16000)  # 0.4 s = 10 frames
    result = _evaluate(model_dir, subject_dir, tmp_path / "lip.json", "--no-lmd", "--no-portrait", "--audio",
                       str(wav), "--models-dir", str(shared_models))
    lip = result["lipsync"]
    assert {"rendered", "reference", "rendered_detail", "reference_detail"} <= set(lip)
    assert lip["rendered"] is None or -1.0 <= lip["rendered"] <= 1.0
    assert lip["reference_detail"]["frames"] >= 10 and lip["reference"] > 0.3
    assert abs(lip["reference_detail"]["lag"]) <= 2
