"""Trainer on the synthetic subject: the loss falls, checkpoints round-trip, resume is exact, LPIPS errors are clear."""
from __future__ import annotations

import math
import sys

import numpy as np
import pytest
import torch

from synctalk_lib.errors import SyncTalkError
from synctalk_lib.nerf.dataset import DataSettings, SubjectData
from synctalk_lib.nerf.losses import LossWeights, opacity_entropy, photometric_error
from synctalk_lib.nerf.presets import PRESETS, TrainConfig, get_preset, resolve_preset
from synctalk_lib.nerf.trainer import Trainer, heldout_psnr, lr_factor, train_subject
from tests.nerf_fixtures import make_subject

TINY = dict(resolution=0, rays_per_step=256, patch_size=16, patches_per_step=1, perceptual_loss="none",
            log_every=1000, checkpoint_every=0, nerf={"grid_resolution": 32})


@pytest.fixture(scope="module")
def subject(tmp_path_factory):
    return make_subject(tmp_path_factory.mktemp("train"), num_frames=20, size=48)


@pytest.fixture(scope="module")
def data(subject):
    return SubjectData(subject.clip, subject.track, subject.pose, subject.audio,
                       settings=DataSettings(val_frames="17:20"))


def _params(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_presets_and_overrides():
    quick = get_preset("quick")
    assert quick.preset == "quick" and quick.resolution <= 192 and quick.total_steps <= 5000
    paper = get_preset("paper")
    assert (paper.coarse_steps, paper.fine_steps, paper.rays_per_step) == (100000, 25000, 256 * 256)
    assert paper.patch_size ** 2 * paper.patches_per_step == paper.rays_per_step
    changed = get_preset("quick", coarse_steps=7, photometric="mse", nerf={"max_steps": 32})
    assert changed.coarse_steps == 7 and changed.photometric == "mse"
    assert changed.nerf["max_steps"] == 32 and changed.nerf["grid_resolution"] == 64  # preset's kept
    assert TrainConfig.from_dict(changed.to_dict()) == changed
    with pytest.raises(ValueError, match="unknown preset"):
        get_preset("fast")


def test_auto_preset_is_standard_on_cuda_and_quick_elsewhere():
    assert resolve_preset("auto", "cuda") == "standard"
    assert resolve_preset("auto", torch.device("cuda", 1)) == "standard"
    assert resolve_preset("auto", "cuda:0") == "standard"
    assert resolve_preset("auto", torch.device("cpu")) == "quick"
    assert resolve_preset("auto", "mps") == "quick"
    assert all(resolve_preset(name, "cuda") == name and resolve_preset(name, "cpu") == name for name in PRESETS)
    with pytest.raises(ValueError, match="resolve_preset"):
        get_preset("auto")  # the device decides, so the caller must resolve it


def test_lr_schedule_decays_per_stage():
    cfg = TrainConfig(coarse_steps=100, fine_steps=50, lr_coarse_end=0.5, lr_fine_end=0.05)
    assert lr_factor(0, cfg) == 1.0
    assert lr_factor(100, cfg) == pytest.approx(0.5)
    assert lr_factor(50, cfg) == pytest.approx(0.5 ** 0.5)
    assert lr_factor(150, cfg) == pytest.approx(0.05)
    assert lr_factor(125, cfg) == pytest.approx(0.5 * 0.1 ** 0.5)


def test_loss_terms_by_hand():
    pred = torch.tensor([[0.5, 0.5, 0.5], [1.0, 0.0, 0.0]])
    target = torch.tensor([[0.3, 0.5, 0.8], [1.0, 0.0, 0.0]])
    assert photometric_error(pred, target, "l1").tolist() == pytest.approx([(0.2 + 0.0 + 0.3) / 3, 0.0])
    assert photometric_error(pred, target, "mse").tolist() == pytest.approx([(0.04 + 0.09) / 3, 0.0])
    # entropy: 1 bit at alpha 0.5, ~0 at 0 or 1
    assert float(opacity_entropy(torch.tensor([0.5]))) == pytest.approx(1.0)
    assert float(opacity_entropy(torch.tensor([0.0, 1.0]))) < 1e-3
    assert LossWeights().photometric == "l1"


@pytest.mark.parametrize("photometric", ["l1", "mse"])
def test_tiny_training_lowers_the_loss(data, photometric):
    config = get_preset("quick", coarse_steps=60, fine_steps=6, photometric=photometric, **TINY)
    trainer = Trainer(data, config.replace(checkpoint_every=20))  # no work_dir: periodic checkpoints are skipped
    before = heldout_psnr(trainer.model, data)
    result = trainer.run()
    losses = [h["photometric"] for h in trainer.history if h["stage"] == 0.0]
    assert np.mean(losses[-10:]) < 0.7 * np.mean(losses[:10])
    after = result.summary["heldout_psnr"]
    assert after > before + 2.0, (before, after)
    assert result.summary["steps"] == 66 and result.summary["final_losses"]["fine"]["photometric"] > 0
    # cells no camera sees were marked empty, and the density updates left the grid partly empty
    assert 0.0 < result.summary["occupied_fraction"] < 1.0


def test_checkpoint_round_trip(data, tmp_path):
    config = get_preset("quick", coarse_steps=6, fine_steps=0, **TINY)
    trainer = Trainer(data, config, work_dir=tmp_path)
    trainer.run(evaluate=False)
    path = tmp_path / "checkpoint.pt"
    assert path.is_file() and not list(tmp_path.glob(".*tmp*")), "written atomically, no leftovers"
    other = Trainer(data, config, work_dir=tmp_path)
    other.load_checkpoint(path)
    assert other.step == 6
    for key, value in _params(trainer.model).items():
        assert torch.equal(value, other.model.state_dict()[key]), key
    assert torch.equal(trainer.generator.get_state(), other.generator.get_state())
    assert other.optimizer.state_dict()["state"].keys() == trainer.optimizer.state_dict()["state"].keys()


class _Cancel(Exception):
    pass


def test_resume_after_interruption_reproduces_the_uninterrupted_run(data, tmp_path):
    config = get_preset("quick", coarse_steps=12, fine_steps=6, **TINY).replace(occupancy_interval=4)
    full = Trainer(data, config, work_dir=tmp_path / "full")
    full.run(evaluate=False)

    def cancel_at_7(done: int, total: int) -> None:
        if done == 7:
            raise _Cancel()

    first = Trainer(data, config, work_dir=tmp_path / "split", on_step=cancel_at_7)
    with pytest.raises(_Cancel):
        first.run(evaluate=False)
    assert (tmp_path / "split" / "checkpoint.pt").is_file()
    second = Trainer(data, config, work_dir=tmp_path / "split")
    second.run(resume=True, evaluate=False)
    assert second.step == 18
    expected = _params(full.model)
    for key, value in second.model.state_dict().items():
        diff = (value.float() - expected[key].float()).abs().max().item() if value.numel() else 0.0
        assert diff <= 1e-6, f"{key} differs by {diff}"


def test_a_checkpoint_of_other_settings_is_set_aside(data, tmp_path):
    config = get_preset("quick", coarse_steps=2, fine_steps=0, **TINY)
    first = Trainer(data, config, work_dir=tmp_path)
    first.run(evaluate=False)
    saved = first.checkpoint_path.read_bytes()
    other = Trainer(data, config.replace(nerf={"grid_resolution": 32, "max_steps": 8}), work_dir=tmp_path)
    lines: list[str] = []
    other.on_status = lines.append
    other.run(evaluate=False)
    assert any("max_steps" in line and "starts over" in line for line in lines)
    assert (tmp_path / "checkpoint.old1.pt").read_bytes() == saved, "the first run's checkpoint is kept"
    assert other.step == 2


def test_missing_lpips_is_a_clear_error_unless_none(subject, monkeypatch):
    # make synctalk_lib.metrics.lpips unimportable, as on a machine without the package/weights
    monkeypatch.setitem(sys.modules, "synctalk_lib.metrics.lpips", None)
    kwargs = dict(iterations=4, resolution=0, checkpoint_every=0, log_every=1000, rays_per_step=128,
                  patch_size=16, patches_per_step=1, nerf={"grid_resolution": 32})
    with pytest.raises(SyncTalkError, match="perceptual_loss='none'"):
        train_subject(subject.clip, subject.track, subject.pose, subject.audio, preset="quick",
                      perceptual_loss="lpips", **kwargs)
    model, summary = train_subject(subject.clip, subject.track, subject.pose, subject.audio, preset="quick",
                                   perceptual_loss="none", **kwargs)
    assert summary["steps"] == 4 and summary["perceptual_loss"] == "none"
    assert math.isfinite(summary["heldout_psnr"])
    assert model.encoder_id == subject.audio.encoder_id


def test_fine_stage_uses_lpips_on_patches_and_lips(data, monkeypatch):
    """With LPIPS loadable (here: the real network with untrained weights) the fine stage adds its term on patch
    steps (weight 0.1) and lips steps (weight 0.01) and still trains."""
    from synctalk_lib.metrics import lpips as lpips_module

    torch.manual_seed(0)
    net = lpips_module.LPIPS("alex")
    with torch.no_grad():  # LPIPS heads are non-negative; random ones need not be
        for lin in net.lins:
            lin.weight.abs_()
    calls = []

    def fake_load(name="alex", models_dirs=None, device=None):
        calls.append(name)
        return net

    monkeypatch.setattr(lpips_module, "load_lpips", fake_load)
    config = get_preset("quick", coarse_steps=2, fine_steps=4, **{**TINY, "perceptual_loss": "lpips"})
    trainer = Trainer(data, config)
    trainer.run(evaluate=False)
    assert calls == ["alex"]
    fine = [h for h in trainer.history if h["stage"] == 1.0]
    kinds = [h["kind"] for h in fine]
    assert kinds == [2.0, 1.0, 2.0, 1.0], "lips and patch steps alternate"
    assert all("lpips" in h and h["lpips"] > 0 and math.isfinite(h["total"]) for h in fine)
    patch = [h["lpips"] for h in fine if h["kind"] == 1.0]
    lips = [h["lpips"] for h in fine if h["kind"] == 2.0]
    assert np.mean(patch) > np.mean(lips)  # 0.1 vs 0.01 weight


def test_speaker_variants_feed_a_share_of_the_steps(subject):
    """Variant k's rows reach the network on about ``speaker_variants`` of the steps, the same steps every run."""
    from synctalk_lib.types import AudioFeatures

    audio = subject.audio
    shifted = AudioFeatures(features=audio.features + 1.0, fps=audio.fps, encoder_id=audio.encoder_id)
    data = SubjectData(subject.clip, subject.track, subject.pose, audio, settings=DataSettings(val_frames="17:20"),
                       audio_variants=[shifted])
    window, _ = data.conditioning(5, variant=1)
    own, _ = data.conditioning(5)
    assert torch.allclose(window[data.window // 2], own[data.window // 2] + 1.0)
    config = get_preset("quick", coarse_steps=400, fine_steps=0, speaker_variants=0.25, **TINY)
    picks = [Trainer(data, config).variant_for_step(step) for step in range(3)]
    trainer = Trainer(data, config)
    chosen = np.array([trainer.variant_for_step(step) for step in range(400)])
    assert picks == list(chosen[:3]) and set(chosen) == {0, 1}
    assert abs((chosen == 1).mean() - 0.25) < 0.07
    assert all(Trainer(data, config.replace(speaker_variants=0.0)).variant_for_step(s) == 0 for s in range(50))


def test_speaker_variants_must_match_the_features(subject):
    from synctalk_lib.errors import InputError
    from synctalk_lib.types import AudioFeatures

    audio = subject.audio
    other = AudioFeatures(features=audio.features[:, :4], fps=audio.fps, encoder_id=audio.encoder_id)
    with pytest.raises(InputError, match="speaker variant"):
        SubjectData(subject.clip, subject.track, subject.pose, audio, audio_variants=[other])


def test_training_on_speech_uses_speaker_variants(tmp_path):
    """A subject with real sound (mel features) is trained with its speech as other voices too."""
    speaking = make_subject(tmp_path, num_frames=20, size=48, audio="mel")
    lines: list[str] = []
    config = dict(TINY, val_frames="17:20")
    model, summary = train_subject(speaking.clip, speaking.track, speaking.pose, speaking.audio, preset="quick",
                                   iterations=4, on_status=lines.append, **config)
    assert any("speaker variants" in line for line in lines)
    assert np.isfinite(summary["heldout_psnr"])


def test_unknown_model_settings_are_refused():
    with pytest.raises(ValueError, match="max_stepz"):
        get_preset("quick", nerf={"max_stepz": 8}).validate()
