"""The GPU check (``bench/gpu_check.sh``) cannot rot before a GPU is available: its CPU dry run runs every step on the
real reference clip (tiny sizes, Triton's interpreter) and reports; a step that fails or hangs costs only itself;
what goes back from the GPU machine fits the device tool's limits (its sharpness numbers come from
``metrics.sharpness``, tested in ``tests/test_sharpness.py``)."""
from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _bench(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(argv: list[str], timeout: float, **env: str) -> subprocess.CompletedProcess:
    full_env = dict(os.environ, PYTHON=sys.executable, **env)
    full_env.pop("OUT", None)
    return subprocess.run(argv, cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def dry_bundle(tmp_path_factory, shared_dir: Path) -> Path:
    """``bench/gpu_bundle.sh --dry-run``: the first 2.4 s of the reference clip, preprocessed (60 frames)."""
    folder = tmp_path_factory.mktemp("gpu_bundle") / "bundle"
    done = _run(["bash", "bench/gpu_bundle.sh", "--dry-run", str(folder)], 600, SYNCTALK_SHARED=str(shared_dir))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return folder


def test_bundle_holds_the_subject_and_the_frame_digests(dry_bundle):
    manifest = json.loads((dry_bundle / "manifest.json").read_text())
    assert manifest["frames"] == 60 and (manifest["width"], manifest["height"]) == (512, 512)
    assert len(manifest["frame_sha256"]) == 60 and manifest["audio_sha256"]
    assert manifest["clip_settings"]["crop"] == "none", "rebuilding the clip there must not need MediaPipe"
    names = {p.name for p in (dry_bundle / "subject").iterdir()}
    assert {"clip.json", "audio_features.npz", "face_track.npz", "head_pose.npz", "report.json"} <= names
    assert sum(p.stat().st_size for p in dry_bundle.rglob("*") if p.is_file()) < 5 * 2**20


def test_dry_run_runs_every_step_and_writes_the_report(dry_bundle, tmp_path):
    out = tmp_path / "out"
    done = _run(["bash", "bench/gpu_check.sh", "--dry-run", "--bundle", str(dry_bundle), "--out", str(out)], 900)
    report = json.loads((out / "gpu_check.json").read_text())
    statuses = {name: rec["status"] for name, rec in report["steps"].items()}
    assert done.returncode == 0 and set(statuses.values()) == {"ok"}, \
        f"{statuses}\n{done.stdout[-3000:]}\n{(out / 'gpu_check.log').read_text()[-4000:]}"
    assert list(statuses) == ["env", "tests", "render", "train_speed", "train_eval", "render_variants"]
    steps = {name: rec["result"] for name, rec in report["steps"].items()}
    assert steps["tests"]["counts"]["passed"] >= 5 and steps["tests"]["counts"]["failed"] == 0
    render = {r["backend"]: r for r in steps["render"]["results"]}
    assert render["torch"]["head_fps"] > 0 and render["torch"]["portrait_fps"] > 0
    assert "cuda_ext" in steps["render"]["skipped"], "no GPU here: the fast backend is listed with its reason"
    assert steps["train_speed"]["results"][0]["it_per_s"] > 0

    train = steps["train_eval"]
    assert train["clip_check"]["frames_differing"] == 0 and train["clip_check"]["audio_identical"]
    assert train["training"]["steps_reached"] >= 1 and train["training"]["projected_full_standard_seconds"] > 0
    head, portrait = train["evaluation"]["head"], train["evaluation"]["portrait"]
    assert 5 < head["psnr"] < 60 and 0 < head["ssim"] <= 1
    assert portrait["psnr"] > head["psnr"], "the portrait keeps the real frame outside the face"
    assert head["lmd"] is None and any("gpu_check_finish.py" in note for note in train["notes"])
    assert np.isfinite(train["evaluation"]["sharpness"]["head"]["laplacian_ratio"])
    renders = np.load(out / "heldout_renders.npz")
    assert renders["head"].shape == (2, 512, 512, 3) and renders["head"].dtype == np.uint8
    assert list(renders["frames"]) == [50, 51] and renders["alpha"].shape == (2, 512, 512)

    markdown = (out / "gpu_check.md").read_text()
    assert "DRY RUN" in markdown and "### Targets" in markdown and "| train_eval | **ok** |" in markdown
    assert markdown.strip() in done.stdout, "the table is printed too"
    files = [p for p in out.rglob("*") if p.is_file()]  # what the device tool brings back: <= 8 files of 16 MiB
    assert len(files) <= 8 and all(p.stat().st_size < 16 * 2**20 for p in files)
    assert all(re.fullmatch(r"[A-Za-z0-9._-]+", p.name) for p in files)


def test_a_hanging_or_failing_step_costs_only_itself(tmp_path):
    out = tmp_path / "out"
    done = _run(["bash", "bench/gpu_check.sh", "--dry-run", "--bundle", str(tmp_path / "no_bundle"), "--out",
                 str(out), "--steps", "render,train_eval", "--step-budget", "render=1"], 300)
    report = json.loads((out / "gpu_check.json").read_text())
    assert done.returncode == 1
    assert {name: rec["status"] for name, rec in report["steps"].items()} == {"render": "timeout",
                                                                               "train_eval": "failed"}
    assert "gpu_bundle.sh" in report["steps"]["train_eval"]["error"], "the failure says how to fix it"
    markdown = (out / "gpu_check.md").read_text()
    assert "| render | **timeout** |" in markdown and "| train_eval | **failed** |" in markdown


def test_time_box_scales_both_stages_like_the_preset():
    check = _bench("gpu_check_train")
    from synctalk_lib.nerf.presets import get_preset

    standard = get_preset("standard", perceptual_loss="none")
    timing = {"coarse_s_per_step": 0.01, "fine_s_per_step": 0.02}
    scaled = check.scaled_config(standard, 125.0, timing, (30000, 10000))
    assert (scaled.coarse_steps, scaled.fine_steps) == (7500, 2500)  # 125 s / (0.75 * 0.01 + 0.25 * 0.02)
    assert scaled.rays_per_step == standard.rays_per_step and scaled.resolution == 512
    assert check.scaled_config(standard, 1e6, timing, (30000, 10000)).total_steps == 40000, "never past the preset"


def test_finish_measures_lmd_of_the_returned_renders(dry_bundle, shared_models, tmp_path):
    """The CPU follow-up: renders that are the real frames themselves have LMD 0 (head and portrait)."""
    finish = _bench("gpu_check_finish")
    from synctalk_lib.subject import SubjectDir

    clip = SubjectDir(_rebuilt_subject(dry_bundle, tmp_path)).load_clip()
    real = np.stack([clip.frame(i) for i in (50, 51)])
    results = tmp_path / "returned"
    results.mkdir()
    np.savez_compressed(results / "heldout_renders.npz", head=real, alpha=np.full(real.shape[:3], 255, np.uint8),
                        frames=np.array([50, 51]))
    out = finish.finish(results, dry_bundle, [shared_models])
    assert out["clip_check"]["frames_differing"] == 0 and out["frames"] == [50, 51]
    assert out["head"]["lmd"] == pytest.approx(0.0, abs=1e-6) and out["head"]["skipped"] == []
    assert out["portrait"]["lmd"] == pytest.approx(0.0, abs=0.3)  # the blend of a frame into itself


def _rebuilt_subject(bundle: Path, work: Path) -> Path:
    subject_dir, check = _bench("gpu_check_train").rebuild_subject(bundle, work / "rebuilt")
    assert check["frames_differing"] == 0
    return subject_dir


def test_report_judges_the_targets_and_survives_missing_steps():
    report_module = _bench("gpu_check_report")
    render = {"results": [{"backend": "cuda_ext", "head_fps": 160.0, "portrait_fps": 100.0, "size": "512x512"},
                          {"backend": "torch", "head_fps": 20.0, "portrait_fps": 15.0, "size": "512x512"}]}
    train = {"training": {"projected_full_standard_seconds": 1500.0, "steps_reached": 900, "planned_steps": 900},
             "evaluation": {"head": {"psnr": 30.0}, "render_path": {"hash_grids": ["cuda_ext"],
                                                                    "fast_render_path_available": True}}}
    report = {"dry_run": False, "steps": {
        "tests": {"status": "failed", "result": {"counts": {"passed": 30, "failed": 1}}, "error": "boom"},
        "render": {"status": "ok", "result": render},
        "train_speed": {"status": "timeout", "error": "killed"},
        "train_eval": {"status": "ok", "result": train}}}
    met = {name: ok for name, _, _, ok in report_module.targets(report)}
    assert met["head-only FPS at 512x512 (cuda_ext)"] is True and met["portrait FPS at 512x512 (cuda_ext)"] is False
    assert met["render speed-up cuda_ext / torch"] is True, "160 / 20 = 8x"
    assert met["training speed-up cuda_ext / torch"] is None, "the step timed out: no number, no verdict"
    assert met["standard preset, projected minutes"] is True and met["kernel and GPU parity tests pass"] is False
    assert met["a trained model (backend auto) renders with cuda_ext on CUDA"] is True
    text = report_module.markdown_report(report)
    assert "| train_speed | **timeout** |" in text and "boom" in text and "| head | 30.00 |" in text
