"""Face capture on the reference clip: coverage, CPU throughput, blink events, and what smoothing does.

    SYNCTALK_SHARED=/work/shared python bench/face_capture.py [--video PATH] [--models-dir DIR] [--sweep]

Prints: frames with a face; landmark + blendshape throughput (frames/s, single process, CPU); blink events and
their peak frames; jitter and lag of the raw track and of the One-Euro settings in use (zero phase and causal);
with --sweep, a table of other settings. Jitter = mean |second difference| over time: of the rigid landmarks
(nose ridge, eye corners, forehead; pixels/frame^2) and of the 7 expression coefficients. Lag = the cross-
correlation peak offset (frames) between raw and smoothed first differences; positive = smoothed is late.
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

from synctalk_lib.face.blinks import blink_signal, detect_blinks  # noqa: E402
from synctalk_lib.face.capture import capture_face_track  # noqa: E402
from synctalk_lib.face.expression import expression_coefficients  # noqa: E402
from synctalk_lib.face.smoothing import (  # noqa: E402
    LANDMARK_FILTER, RIGID_LANDMARKS, SCORE_FILTER, OneEuroParams, jitter, lag_frames, smooth_landmarks,
    smooth_scores)
from synctalk_lib.media.clip_store import clip_from_arrays  # noqa: E402


def decode_clip(video: Path, cache: Path):
    """The reference clip as decoded frames (it is already 512x512 at 25 fps, so no crop or resampling)."""
    import av

    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate)
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(stream)])
    return clip_from_arrays(cache / "clip", frames, fps)


def smoothing_row(track, lm_params: OneEuroParams, sc_params: OneEuroParams, zero_phase: bool) -> dict:
    raw_rigid = track.landmarks[:, list(RIGID_LANDMARKS), :2]
    lm = smooth_landmarks(track.landmarks, track.fps, lm_params, zero_phase=zero_phase)
    rigid = lm[:, list(RIGID_LANDMARKS), :2]
    scores = smooth_scores(track.blendshapes, track.fps, sc_params, zero_phase=zero_phase)
    expr = expression_coefficients(scores, track.blendshape_names)
    raw_signal = blink_signal(track.blendshapes, track.blendshape_names)
    signal = blink_signal(scores, track.blendshape_names)
    raw_peaks = detect_blinks(raw_signal, track.fps)
    peaks = detect_blinks(signal, track.fps)
    return {
        "lm_jitter": jitter(rigid), "lm_lag": lag_frames(raw_rigid, rigid),
        "lm_rms_px": float(np.sqrt(((rigid - raw_rigid) ** 2).mean())),
        "ex_jitter": jitter(expr), "ex_lag": lag_frames(track.expression, expr),
        "blinks": peaks,
        "blink_height": float(signal[peaks].mean() / raw_signal[raw_peaks].mean()) if peaks and raw_peaks else 0.0,
    }


def print_row(label: str, row: dict, raw: dict) -> None:
    print(f"  {label:34s} landmarks: jitter {row['lm_jitter']:.3f} px ({row['lm_jitter'] / raw['lm_jitter']:.0%})"
          f" lag {row['lm_lag']:+.2f} fr, {row['lm_rms_px']:.2f} px from raw | coefficients: jitter "
          f"{row['ex_jitter']:.4f} ({row['ex_jitter'] / raw['ex_jitter']:.0%}) lag {row['ex_lag']:+.2f} fr |"
          f" blinks {row['blinks']} at {row['blink_height']:.0%} height")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    shared = Path(os.environ.get("SYNCTALK_SHARED", Path(__file__).resolve().parents[2] / "shared"))
    parser.add_argument("--video", type=Path, default=shared / "data" / "may_short.mp4")
    parser.add_argument("--models-dir", type=Path, default=shared / "models")
    parser.add_argument("--sweep", action="store_true", help="also print a table of other One-Euro settings")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        clip = decode_clip(args.video, Path(tmp))
        started = time.perf_counter()
        track = capture_face_track(clip, models_dirs=[args.models_dir], smoothing="none")
        wall = time.perf_counter() - started
    report = track.report()
    print(f"clip: {args.video.name}, {clip.num_frames} frames {clip.width}x{clip.height} @ {clip.fps:g} fps")
    print(f"face found in {report['face_frames']} of {report['frames']} frames; "
          f"interpolated: {report['interpolated_frames'] or 'none'}")
    print(f"throughput (landmarks + 52 blendshapes + matrix, CPU, one process): {report['capture_fps']:.1f} "
          f"frames/s (detection loop {report['capture_seconds']:.2f} s; with model load {wall:.2f} s)")
    peaks = detect_blinks(blink_signal(track.blendshapes, track.blendshape_names), track.fps)
    print(f"blink events: {len(peaks)} at frames {peaks}")

    raw_rigid = track.landmarks[:, list(RIGID_LANDMARKS), :2]
    raw = {"lm_jitter": jitter(raw_rigid), "ex_jitter": jitter(track.expression)}
    print(f"raw jitter: rigid landmarks {raw['lm_jitter']:.3f} px/frame^2, "
          f"expression coefficients {raw['ex_jitter']:.4f} /frame^2")
    print("smoothing (One-Euro; landmarks in face-size units):")
    for zero_phase in (True, False):
        label = f"in use, {'zero phase' if zero_phase else 'causal'} ({LANDMARK_FILTER.min_cutoff:g} Hz, " \
                f"beta {LANDMARK_FILTER.beta:g})"
        print_row(label, smoothing_row(track, LANDMARK_FILTER, SCORE_FILTER, zero_phase), raw)
    if args.sweep:
        for zero_phase in (True, False):
            for min_cutoff in (1.0, 2.0, 3.0, 5.0):
                for beta in (2.0, 5.0, 10.0, 20.0):
                    params = OneEuroParams(min_cutoff, beta)
                    label = f"{'zero phase' if zero_phase else 'causal'} min_cutoff {min_cutoff:g} beta {beta:g}"
                    print_row(label, smoothing_row(track, params, params, zero_phase), raw)
    return 0


if __name__ == "__main__":
    sys.exit(main())
