"""After the GPU check, on a CPU machine with MediaPipe: the mouth landmark distance (LMD) of the held-out renders
the check returned, which the GPU machine cannot compute (it has no MediaPipe).

    python bench/gpu_check_finish.py RESULTS_DIR [--bundle bench/.gpu_bundle] [--models-dir ../shared/models]
                                     [--json gpu_check_lmd.json]

RESULTS_DIR holds the check's ``heldout_renders.npz`` (uint8 head renders over the real background, alpha) and
``gpu_check.json``. The real frames come from the same bundle (decoded again and checked against its sha256), the
portrait frames are blended again from the renders (the library's Portrait-Sync blend with the face track), and
LMD is measured for both. As a cross-check the PSNR of the uint8 renders is printed next to the GPU machine's
(they differ only by the rounding to 8 bits, a few hundredths of a dB).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent))


def finish(results: Path, bundle: Path, models_dirs: list[Path]) -> dict:
    """LMD (head, portrait) and the PSNR cross-check of the renders in ``results``."""
    from gpu_check_train import rebuild_subject

    from synctalk_lib.metrics import psnr_per_frame
    from synctalk_lib.metrics.lmd import mouth_landmark_distance
    from synctalk_lib.pipeline.evaluation import portrait_frames
    from synctalk_lib.subject import SubjectDir

    renders = np.load(results / "heldout_renders.npz")
    head, frames = renders["head"], [int(i) for i in renders["frames"]]
    alpha = renders["alpha"].astype(np.float32) / 255.0
    with tempfile.TemporaryDirectory(prefix="gpu_check_finish_") as work:
        subject_dir, clip_check = rebuild_subject(bundle, Path(work))
        subject = SubjectDir(subject_dir)
        clip, track, pose = subject.load_clip(), subject.load_face_track(), subject.load_head_pose()
        real = np.stack([clip.frame(i) for i in frames])
        real_f = real.astype(np.float32) / 255.0
        head_f = head.astype(np.float32) / 255.0
        portrait = portrait_frames(head_f, alpha, frames, clip, pose, track).astype(np.float32) / 255.0
    out = {"frames": frames, "clip_check": clip_check}
    for mode, images in (("head", head_f), ("portrait", portrait)):
        lmd = mouth_landmark_distance(images, real, models_dirs=models_dirs)
        out[mode] = {"lmd": None if lmd.lmd != lmd.lmd else lmd.lmd, "skipped": list(lmd.skipped),
                     "psnr_uint8": float(np.mean(psnr_per_frame(images, real_f)))}
    report_path = results / "gpu_check.json"
    if report_path.is_file():
        report = json.loads(report_path.read_text())
        evaluation = report.get("steps", {}).get("train_eval", {}).get("result", {}).get("evaluation", {})
        for mode in ("head", "portrait"):
            out[mode]["psnr_gpu"] = evaluation.get(mode, {}).get("psnr")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, help="folder with the check's heldout_renders.npz and gpu_check.json")
    parser.add_argument("--bundle", type=Path, default=BENCH / ".gpu_bundle", help="the bundle the check used")
    parser.add_argument("--models-dir", type=Path, action="append", default=None,
                        help="folder with face_landmarker.task (default $SYNCTALK_SHARED/models)")
    parser.add_argument("--json", type=Path, default=Path("gpu_check_lmd.json"), help="where to write the numbers")
    args = parser.parse_args(argv)
    models_dirs = args.models_dir or [Path(os.environ.get("SYNCTALK_SHARED", "../shared")) / "models"]
    out = finish(args.results, args.bundle, models_dirs)
    args.json.write_text(json.dumps(out, indent=1) + "\n")
    print(f"held-out frames {out['frames'][0]}-{out['frames'][-1]} ({len(out['frames'])}); clip decode: "
          f"{out['clip_check']['frames_differing']} frames differ from the bundle")
    print("| mode | LMD px (MediaPipe, 512 px) | PSNR of the uint8 renders | PSNR on the GPU machine |")
    print("| --- | --- | --- | --- |")
    for mode in ("head", "portrait"):
        r = out[mode]
        lmd = "n/a" if r["lmd"] is None else f"{r['lmd']:.2f}"
        gpu = "n/a" if r.get("psnr_gpu") is None else f"{r['psnr_gpu']:.2f}"
        print(f"| {mode} | {lmd} | {r['psnr_uint8']:.2f} | {gpu} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
