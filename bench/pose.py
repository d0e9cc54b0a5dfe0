"""Head-Sync Stabilizer on the reference clip (and on synthetic ground truth): focal, jitter, reprojection, time.

    SYNCTALK_SHARED=/work/shared python bench/pose.py [--video PATH] [--models-dir DIR] [--frames N]
        [--smoothness 0,1,3,10] [--landmarks none,one_euro] [--flow opencv|raft-small] [--synthetic]

For each face-track smoothing (``none``: MediaPipe's raw landmarks; ``one_euro``: CaptureBlendshapes' default) and
each bundle-adjustment smoothness it prints the focal length, the metrics of ``synctalk_lib.pose.metrics`` for the
rough fit (raw) and after bundle adjustment (adjusted), their ratios, the lag of the adjusted rotation behind the
raw one (frames, cross-correlation peak of first differences; 0 = none), and the stabilizer's wall time on this
CPU (face capture not included). ``--synthetic`` adds the synthetic scene of tests/test_pose_tracker.py with its
ground truth (focal error, median rotation error).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from synctalk_lib.face.capture import capture_face_track  # noqa: E402
from synctalk_lib.media.clip_store import clip_from_arrays  # noqa: E402
from synctalk_lib.pose.camera import matrix_to_axis_angle, opencv_to_nerf  # noqa: E402
from synctalk_lib.pose.stabilize import stabilize_head_pose  # noqa: E402


def decode_clip(video: Path, cache: Path, frames: int | None):
    import av

    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate)
        decoded = []
        for frame in container.decode(stream):
            decoded.append(frame.to_ndarray(format="rgb24"))
            if frames and len(decoded) == frames:
                break
    return clip_from_arrays(cache / "clip", np.stack(decoded), fps)


def rotation_vectors(c2w: np.ndarray) -> np.ndarray:
    import torch

    rotation = np.swapaxes(np.asarray(c2w, np.float64)[:, :3, :3], 1, 2)
    return matrix_to_axis_angle(torch.from_numpy(rotation)).numpy()


def lag_frames(reference: np.ndarray, other: np.ndarray, max_lag: int = 5) -> int:
    """Offset (frames) maximising the correlation of first differences; positive = ``other`` is late."""
    a, b = np.diff(reference, axis=0), np.diff(other, axis=0)
    scores = {}
    for lag in range(-max_lag, max_lag + 1):
        x, y = (a[:len(a) - lag], b[lag:]) if lag >= 0 else (a[-lag:], b[:len(b) + lag])
        scores[lag] = float((x * y).sum() / np.sqrt((x * x).sum() * (y * y).sum() + 1e-30))
    return max(scores, key=scores.get)


def reference_rows(args, shared: Path) -> None:
    video = Path(args.video or shared / "data" / "may_short.mp4")
    models = [Path(args.models_dir)] if args.models_dir else [shared / "models"]
    with tempfile.TemporaryDirectory() as tmp:
        if args.flow == "raft-small":  # keep the converted weights out of the shared folder
            local = Path(tmp) / "models"
            local.mkdir()
            for name in ("face_landmarker.task", "raft-small.pth"):
                (local / name).symlink_to(models[0] / name)
            models = [local]
        clip = decode_clip(video, Path(tmp), args.frames)
        print(f"{video.name}: {clip.num_frames} frames {clip.width}x{clip.height} @ {clip.fps:g} fps, "
              f"flow {args.flow}, torch threads {args.threads}")
        header = (f"{'landmarks':9s} {'smooth':>6s} {'focal':>7s} | {'rot raw':>8s} {'rot adj':>8s} {'x':>5s} | "
                  f"{'trans raw':>9s} {'trans adj':>9s} {'x':>5s} | {'reproj raw':>10s} {'adj':>6s} | {'lag':>3s} "
                  f"{'kept':>4s} {'sec':>6s}")
        print(header)
        print("-" * len(header))
        for smoothing in args.landmarks.split(","):
            track = capture_face_track(clip, models_dirs=models, smoothing=smoothing)
            for smoothness in (float(s) for s in args.smoothness.split(",")):
                started = time.perf_counter()
                pose = stabilize_head_pose(clip, track, flow=args.flow, models_dirs=models, smoothness=smoothness,
                                           device="cpu")
                seconds = time.perf_counter() - started
                r = pose.report()
                raw, adj = r["raw"], r["adjusted"]
                raw_c2w = opencv_to_nerf(*_raw_poses(clip, track, pose, models))
                lag = lag_frames(rotation_vectors(raw_c2w), rotation_vectors(pose.c2w))
                print(f"{smoothing:9s} {smoothness:6.1f} {r['focal']:7.1f} | {raw['jitter_rot_deg']:8.4f} "
                      f"{adj['jitter_rot_deg']:8.4f} {raw['jitter_rot_deg'] / adj['jitter_rot_deg']:5.2f} | "
                      f"{raw['jitter_trans']:9.6f} {adj['jitter_trans']:9.6f} "
                      f"{raw['jitter_trans'] / adj['jitter_trans']:5.2f} | {raw['reproj_px']:10.4f} "
                      f"{adj['reproj_px']:6.4f} | {lag:3d} {r['keypoints']['kept']:4d} {seconds:6.1f}")
        print("stage seconds of the last run:", r["stage_seconds"])


_RAW_CACHE: dict = {}


def _raw_poses(clip, track, pose, models):
    """The rough fit's poses (raw), recomputed once per track (they do not depend on the smoothness)."""
    key = id(track)
    if key not in _RAW_CACHE:
        from synctalk_lib.pose.face_model import RIGID_LANDMARKS, canonical_face, mediapipe_rotations, \
            subject_template
        from synctalk_lib.pose.rough_tracker import fit_fixed_focal, track_rough

        rigid = list(RIGID_LANDMARKS)
        observed = track.landmarks[:, rigid, :2].astype(np.float64)
        canonical = canonical_face(models)
        search = track_rough(canonical[rigid], observed, mediapipe_rotations(track), width=clip.width,
                             height=clip.height)
        template = subject_template(track.landmarks, search.rotation, search.translation, search.focal,
                                    clip.width / 2, clip.height / 2, canonical)
        rough = fit_fixed_focal(template.rigid_points, observed, search.rotation, search.focal, width=clip.width,
                                height=clip.height, huber_px=search.huber_px)
        _RAW_CACHE[key] = (rough.rotation, rough.translation)
    return _RAW_CACHE[key]


def synthetic_rows() -> None:
    from synctalk_lib.pose.bundle_adjust import bundle_adjust
    from synctalk_lib.pose.camera import axis_angle_to_matrix, project, rotation_angle_deg
    from synctalk_lib.pose.metrics import pose_metrics
    from synctalk_lib.pose.rough_tracker import track_rough
    from synctalk_lib.pose.synthetic import make_scene
    import torch

    torch.set_num_threads(1)  # tiny tensors: thread hand-offs cost more than they save (see stabilize)
    print("\nsynthetic scene (tests/test_pose_tracker.py): focal 1100 px, 120 frames, landmarks 1.5 px + 1 % "
          "outliers, tracks 0.3 px")
    for seed in range(3):
        scene = make_scene(seed=seed)
        noise = np.radians(np.random.default_rng(seed).normal(0, 3.0, (len(scene.rotation), 3)))
        start = axis_angle_to_matrix(torch.from_numpy(noise)).numpy() @ scene.rotation
        started = time.perf_counter()
        rough = track_rough(scene.landmarks3d, scene.landmarks2d, start, width=512, height=512)
        ba = bundle_adjust(focal=rough.focal, cx=256.0, cy=256.0, rotation=rough.rotation,
                           translation=rough.translation, landmarks2d=scene.landmarks2d, template=scene.landmarks3d,
                           tracks2d=scene.tracks2d, track_valid=scene.track_valid, ref_index=60)
        seconds = time.perf_counter() - started

        def metrics(rotation, translation, points):
            cam = np.einsum("nij,lj->nli", rotation, points) + translation[:, None]
            return pose_metrics(opencv_to_nerf(rotation, translation), project(cam, rough.focal, 256.0, 256.0),
                                scene.landmarks2d)

        raw, adj = metrics(rough.rotation, rough.translation, scene.landmarks3d), metrics(
            ba.rotation, ba.translation, ba.landmarks3d)
        print(f"seed {seed}: focal {rough.focal:.1f} ({100 * (rough.focal / scene.focal - 1):+.2f} %), rotation "
              f"error median raw {np.median(rotation_angle_deg(rough.rotation, scene.rotation)):.3f} deg -> "
              f"adjusted {np.median(rotation_angle_deg(ba.rotation, scene.rotation)):.3f} deg; jitter rot "
              f"{raw['jitter_rot_deg']:.4f} -> {adj['jitter_rot_deg']:.4f} "
              f"({raw['jitter_rot_deg'] / adj['jitter_rot_deg']:.1f}x), trans {raw['jitter_trans']:.6f} -> "
              f"{adj['jitter_trans']:.6f} ({raw['jitter_trans'] / adj['jitter_trans']:.1f}x); reproj "
              f"{raw['reproj_px']:.3f} -> {adj['reproj_px']:.3f} px; {seconds:.1f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--video", default=None)
    parser.add_argument("--models-dir", default=None)
    parser.add_argument("--frames", type=int, default=None, help="first N frames only (default all)")
    parser.add_argument("--smoothness", default="0,1,3,10")
    parser.add_argument("--landmarks", default="none,one_euro", help="face-track smoothing(s) to compare")
    parser.add_argument("--flow", choices=("opencv", "raft-small"), default="opencv")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--synthetic", action="store_true", help="also run the synthetic ground-truth scenes")
    args = parser.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    args.threads = torch.get_num_threads()
    shared = Path(os.environ.get("SYNCTALK_SHARED", Path(__file__).resolve().parents[2] / "shared"))
    reference_rows(args, shared)
    if args.synthetic:
        synthetic_rows()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
