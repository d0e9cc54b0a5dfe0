"""Training cost does not grow with the clip: the occupancy set-up looks at a bounded, spread-out set of cameras,
the final evaluation renders a bounded sample of held-out frames, and (slow) a step on a 20x longer clip of the
same content costs what a step on the short one does."""
from __future__ import annotations

import dataclasses
import time

import numpy as np
import pytest
import torch

from synctalk_lib.nerf.occupancy import SPREAD_CAMERAS, OccupancyGrid, spread_cameras
from synctalk_lib.nerf.trainer import eval_frames
from tests.nerf_fixtures import _camera_path


def _ngp(c2w: np.ndarray) -> torch.Tensor:
    from synctalk_lib.nerf.rays import head_pose_to_ngp

    return head_pose_to_ngp(c2w)


def _seen(poses: torch.Tensor, spread: int = SPREAD_CAMERAS) -> torch.Tensor:
    grid = OccupancyGrid(resolution=32)
    grid.mark_untrained(poses, focal=80.0, cx=32.0, cy=32.0, spread=spread)
    return grid.density >= 0


def test_occupancy_set_up_is_exact_with_a_bounded_first_pass(monkeypatch):
    rng = np.random.default_rng(0)
    c2w = _camera_path(2500)  # a long clip's cameras: a smooth path with small jitter
    c2w[:, :3, 3] += rng.normal(0, 0.002, (2500, 3)).astype(np.float32)
    poses = _ngp(c2w)
    assert len(spread_cameras(poses)) == SPREAD_CAMERAS
    tested = []
    original = OccupancyGrid._seen_by

    def counting(self, points, cams, *args):
        tested.append(len(points) * len(cams))
        return original(self, points, cams, *args)

    monkeypatch.setattr(OccupancyGrid, "_seen_by", counting)
    fast = _seen(poses)
    work = sum(tested)
    exact = _seen(poses, spread=len(poses))  # every camera against every cell, the original rule
    assert torch.equal(fast, exact), "the same cells are seen"
    assert work < 0.25 * 32 ** 3 * len(poses), f"{work} cell-camera tests instead of {32 ** 3 * len(poses)}"
    # a short clip keeps every camera, a repeated clip its distinct ones
    assert torch.equal(spread_cameras(poses[:300]), poses[:300])
    repeated = poses[:331].repeat(23, 1, 1)
    assert len(spread_cameras(repeated)) <= 331


def test_final_evaluation_is_a_bounded_even_sample():
    val = np.arange(6955, 7650)  # the last 1/11 of a 5-minute clip: 695 frames
    picked = eval_frames(val, 32)
    assert len(picked) == 32 and picked[0] == 6955 and picked[-1] == 7649
    assert np.all(np.diff(picked) >= 21)
    assert np.array_equal(eval_frames(np.arange(300, 331), 32), np.arange(300, 331)), "31 frames: all of them"
    from synctalk_lib.nerf.presets import get_preset

    assert get_preset("quick").max_eval_frames == 32


def _tiled(subject, reps: int, root):
    from synctalk_lib.media.clip_store import ClipWriter

    clip = subject.clip
    rows = np.arange(clip.num_frames * reps) % clip.num_frames
    with ClipWriter(root / f"tiled{reps}", height=clip.height, width=clip.width, fps=clip.fps) as writer:
        for start in range(0, len(rows), 64):
            writer.append(clip.frames()[rows[start:start + 64]])
        long_clip = writer.finish()
    t, p, a = subject.track, subject.pose, subject.audio
    track = dataclasses.replace(t, landmarks=t.landmarks[rows], blendshapes=t.blendshapes[rows],
                                face_found=t.face_found[rows], transforms=t.transforms[rows],
                                expression=t.expression[rows])
    pose = dataclasses.replace(p, c2w=p.c2w[rows], reproj_error=p.reproj_error[rows])
    return long_clip, track, pose, dataclasses.replace(a, features=a.features[rows])


@pytest.mark.slow
def test_a_step_on_a_long_clip_costs_what_it_costs_on_a_short_one(tmp_path):
    """Same content 20x longer: set-up and seconds per step (median of interleaved runs) within 1.3x."""
    from synctalk_lib.nerf.dataset import DataSettings, SubjectData
    from synctalk_lib.nerf.presets import get_preset
    from synctalk_lib.nerf.trainer import Trainer
    from tests.nerf_fixtures import make_subject

    short = make_subject(tmp_path / "short", num_frames=40, size=64)
    parts = {"short": (short.clip, short.track, short.pose, short.audio), "long": _tiled(short, 20, tmp_path)}
    config = get_preset("quick", resolution=64, rays_per_step=1024, perceptual_loss="none", checkpoint_every=0,
                        log_every=10**6, coarse_steps=40, fine_steps=0, nerf={"grid_resolution": 32})
    times: dict[str, list[float]] = {"short": [], "long": []}
    setup: dict[str, float] = {}
    trainers = {}
    for name, (clip, track, pose, audio) in parts.items():
        started = time.perf_counter()
        data = SubjectData(clip, track, pose, audio, settings=DataSettings(resolution=64))
        trainers[name] = Trainer(data, config)
        trainers[name].model.mark_untrained_cells(data.poses_ngp[data.train_indices], data.focal, data.cx,
                                                  data.cy)
        setup[name] = time.perf_counter() - started
    for step in range(40):  # interleaved, so machine load hits both alike
        for name, trainer in trainers.items():
            started = time.perf_counter()
            trainer.train_step(step)
            if step >= 5:
                times[name].append(time.perf_counter() - started)
    ratio = np.median(times["long"]) / np.median(times["short"])
    assert ratio < 1.3, f"a step on the 20x longer clip takes {ratio:.2f}x as long"
    assert setup["long"] < 1.5 * setup["short"] + 2.0, setup
