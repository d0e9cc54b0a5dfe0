"""The pose fits at clip length (issue 13, item 11): memory must not grow with the number of frames.

A long synthetic scene (3000 frames = 2 minutes, 300 tracked points, 150 landmarks) goes through the rough tracker
and the bundle adjustment in a child process, whose peak resident memory (VmHWM) is read before and after. Before
the fits ran in chunks, the growth was proportional to the frames (+433 MB for the bundle adjustment alone at 3000
frames, +170 MB at 1000); now it is about +70 MB at any length. The full-size numbers (5-minute preprocess, every
stage) are in BENCHMARKS.md, from ``bench/scale.py``.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, sys
import numpy as np, torch
torch.set_num_threads(1)
from synctalk_lib.pose.bundle_adjust import bundle_adjust
from synctalk_lib.pose.rough_tracker import track_rough
from synctalk_lib.pose.synthetic import make_scene

def peak_mb():
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM")) / 1024

def fit(scene, iterations):
    rough = track_rough(scene.landmarks3d, scene.landmarks2d, scene.rotation, width=512, height=512)
    return rough, bundle_adjust(focal=rough.focal, cx=256.0, cy=256.0, rotation=rough.rotation,
                                translation=rough.translation, landmarks2d=scene.landmarks2d,
                                template=scene.landmarks3d, tracks2d=scene.tracks2d, track_valid=scene.track_valid,
                                ref_index=0, stage2_iterations=iterations)

fit(make_scene(num_frames=40), 3)  # imports and the allocator's first blocks
scene = make_scene(num_frames=int(sys.argv[1]))
before = peak_mb()
rough, result = fit(scene, 20)
error = np.degrees(np.linalg.norm(result.rotation - scene.rotation, axis=(1, 2)) / np.sqrt(2))
print(json.dumps({"growth_mb": peak_mb() - before, "frames": len(result.rotation), "joint": result.joint_frames,
                  "median_rotation_error_deg": float(np.median(error)), "focal_error": rough.focal / scene.focal - 1}))
"""


def run_child(frames: int) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, str(frames)], cwd=ROOT, capture_output=True, text=True,
                         check=True, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_rough_fit_and_bundle_adjustment_of_3000_frames_stay_within_150_mb():
    result = run_child(3000)
    assert result["frames"] == 3000 and result["joint"] == 400  # stage 2 saw a bounded sample of the frames
    assert result["growth_mb"] < 150, result
    # ... and the poses of every frame are still right (the truth is known).
    assert abs(result["focal_error"]) < 0.05 and result["median_rotation_error_deg"] < 0.3, result
