"""``evaluate`` and ``pipeline.evaluation.evaluate_model`` on a synthetic subject with a barely trained model:
held-out head / portrait scores, the audio variants, drives with speech and silence, and the sample frames."""
from __future__ import annotations

import json

import numpy as np
import pytest

from tests.nerf_fixtures import make_subject, speech_like_audio, write_subject_dir

SCORE_KEYS = {"psnr", "ssim", "lpips", "lmd", "jaw_r", "laplacian_ratio", "highpass_correlation", "per_frame"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A synthetic subject folder and a model trained on it for a few steps (held-out frames 11-13)."""
    from synctalk_lib.cli import main

    root = tmp_path_factory.mktemp("evaluate")
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


def _load(subject_dir, model_dir):
    from synctalk_lib import pipeline

    return pipeline.load_model(model_dir, device="cpu"), pipeline.load_subject(subject_dir)


def test_portrait_entry_beats_head_only(trained, tmp_path):
    """The synthetic frames' background differs from what the barely-trained renderer produces, so pasting only
    the face into the real frame must score better than the head render alone, with the same keys."""
    _, subject_dir, model_dir = trained
    result = _evaluate(model_dir, subject_dir, tmp_path / "eval.json", "--no-lmd")
    own = result["heldout"]["own"]
    assert set(own["portrait"]) == set(own["head"]) == SCORE_KEYS
    assert own["frames"] == [11, 12, 13] and list(result["heldout"]) == ["own"]
    assert own["portrait"]["psnr"] > own["head"]["psnr"] + 0.2
    assert own["portrait"]["ssim"] > own["head"]["ssim"]
    assert len(own["portrait"]["per_frame"]["psnr"]) == 3
    assert own["portrait"]["lpips"] is None and own["portrait"]["lmd"] is None and own["head"]["jaw_r"] is None
    assert 0.0 < own["head"]["laplacian_ratio"] and -1.0 <= own["head"]["highpass_correlation"] <= 1.0
    assert result["drives"] == {} and result["real"] is None

    plain = _evaluate(model_dir, subject_dir, tmp_path / "plain.json", "--no-lmd", "--no-portrait")
    assert plain["heldout"]["own"]["portrait"] is None
    assert plain["heldout"]["own"]["head"]["psnr"] == pytest.approx(own["head"]["psnr"], abs=1e-6)  # deterministic


def test_library_call_matches_the_cli_and_changes_only_the_held_out_audio(trained, tmp_path):
    """``evaluate_model`` is what the CLI prints; the reversed / silent variants change the held-out frames' audio
    rows only, and the model's reference frames are restored afterwards."""
    from synctalk_lib.pipeline.evaluation import evaluate_model

    _, subject_dir, model_dir = trained
    model, subject = _load(subject_dir, model_dir)
    frames_before = model.subject.frames
    calls = []
    seen = {}

    def progress(description):
        import contextlib

        calls.append(description)
        return contextlib.nullcontext(lambda done, total: None)

    import synctalk_lib.pipeline.evaluation as evaluation

    original = evaluation._Run.changed_features

    def spy(run, frames, variant):
        features = original(run, frames, variant)
        seen[variant] = features
        return features

    evaluation._Run.changed_features = spy
    try:
        report = evaluate_model(model, subject, heldout_audio=("own", "reversed", "silent"), with_lpips=False,
                                with_lmd=False, samples=2, return_images=True, progress=progress)
    finally:
        evaluation._Run.changed_features = original
    assert model.subject.frames is frames_before
    assert list(report.heldout) == ["own", "reversed", "silent"] and len(calls) == 3
    cli = _evaluate(model_dir, subject_dir, tmp_path / "eval.json", "--no-lmd")
    assert report.heldout["own"].head.psnr == pytest.approx(cli["heldout"]["own"]["head"]["psnr"], abs=1e-6)
    own = subject.features.features
    for variant in ("reversed", "silent"):
        changed = seen[variant].features
        assert np.array_equal(changed[:11], own[:11])  # the training frames keep their rows
        assert not np.allclose(changed[11:14], own[11:14])
    assert seen["silent"].features[11:14].min() == pytest.approx(own.min())  # the mel floor of silence
    assert sorted(report.samples) == ["heldout_own_head_0000", "heldout_own_head_0002", "heldout_own_portrait_0000",
                                      "heldout_own_portrait_0002", "heldout_reversed_head_0000",
                                      "heldout_reversed_head_0002", "heldout_reversed_portrait_0000",
                                      "heldout_reversed_portrait_0002", "heldout_silent_head_0000",
                                      "heldout_silent_head_0002", "heldout_silent_portrait_0000",
                                      "heldout_silent_portrait_0002"]
    assert report.samples["heldout_own_head_0000"].dtype == np.uint8
    images = report.images["own"]
    assert images["head"].shape == (3, 40, 40, 3) and images["alpha"].shape == (3, 40, 40)
    assert np.array_equal(images["portrait"][2], report.samples["heldout_own_portrait_0002"])
    data = report.to_dict(per_frame=False)
    assert "per_frame" not in data["heldout"]["own"]["head"]
    json.dumps(data)


def test_portrait_frames_keep_everything_outside_the_face(trained):
    """Outside the blurred face region the blended frame is the original frame exactly."""
    from synctalk_lib.pipeline.evaluation import portrait_frames
    from synctalk_lib.portrait.blend import soft_mask
    from synctalk_lib.portrait.generate import frame_masks

    subject, _, _ = trained
    real = np.stack([subject.clip.frame(i) for i in (11, 12)])
    pred = np.zeros(real.shape, np.float32)
    alpha = np.ones(real.shape[:3], np.float32)
    out = portrait_frames(pred, alpha, [11, 12], subject.clip, subject.pose, subject.track)
    assert out.dtype == np.uint8 and out.shape == real.shape
    masks_of = frame_masks(subject.clip, subject.pose, subject.track)
    for k, j in enumerate((11, 12)):
        outside = soft_mask(masks_of(j, alpha[k]).face, 9, 4.0) < 1e-4
        assert outside.any() and np.array_equal(out[k][outside], real[k][outside])
        assert out[k][~outside].mean() < real[k][~outside].mean()  # the (black) render shows inside


def test_drives_report_envelope_leak_and_silence(trained, tmp_path, shared_models):
    """``--audio`` and ``--silence`` add drives. The synthetic clip's sound is loud exactly when its mouth is open,
    and MediaPipe finds its (cartoon) face, so the real clip's envelope r is clearly positive and it has a
    closed-mouth range; the barely trained render is no face to MediaPipe, so its values are null (nothing
    measurable, not a made-up 0)."""
    from synctalk_lib.subject import write_wav

    _, subject_dir, model_dir = trained
    wav = tmp_path / "speech.wav"
    write_wav(wav, speech_like_audio(np.linspace(0, 1, 10, dtype=np.float32)), 16000)  # 0.4 s = 10 frames
    result = _evaluate(model_dir, subject_dir, tmp_path / "lip.json", "--no-lmd", "--heldout-audio", "none",
                       "--audio", str(wav), "--silence", "--max-frames", "8", "--models-dir", str(shared_models))
    assert result["heldout"] == {} and set(result["drives"]) == {"speech", "silence"}
    real = result["real"]
    assert real["envelope"]["frames"] >= 10 and real["envelope"]["r"] > 0.3 and abs(real["envelope"]["lag"]) <= 2
    assert real["closed"]["low"] <= real["closed"]["mean"] <= real["closed"]["high"]
    assert len(real["jaw_open"]) == 14
    # the subject's mouth in the clip's own pauses: the real jawOpen of exactly the paused frames
    from synctalk_lib import pipeline
    from synctalk_lib.audio.augment import paused_frames

    clip = pipeline.load_subject(subject_dir).clip
    paused = paused_frames(clip.audio_waveform(), clip.sample_rate, clip.fps, clip.num_frames)
    jaw = np.array([np.nan if v is None else v for v in real["jaw_open"]], np.float64)[paused]
    jaw = jaw[np.isfinite(jaw)]
    assert real["pauses"]["frames"] == len(jaw)
    assert real["pauses"]["mean"] == (pytest.approx(jaw.mean(), abs=1e-4) if len(jaw) else None)
    for name, drive in result["drives"].items():
        assert drive["frames"] == 8
        for view in ("head", "portrait"):
            scores = drive[view]
            assert scores["envelope"]["r"] is None or -1.0 <= scores["envelope"]["r"] <= 1.0
            assert scores["reference_leak"] is None or -1.0 <= scores["reference_leak"] <= 1.0
            assert len(scores["jaw_open"]) == 8 and scores["laplacian_ratio"] > 0
    assert result["drives"]["silence"]["head"]["envelope"]["r"] is None  # silence has no envelope to follow
