"""Numbers about a face track for reports: coverage, interpolated frames, blinks, expression ranges, speed."""
from __future__ import annotations

import numpy as np

from synctalk_lib.face.blinks import blink_signal, detect_blinks
from synctalk_lib.types import FaceTrack


def summarize_face_track(track: FaceTrack) -> dict:
    """A JSON-able summary of ``track`` (what the node's report and ``preprocess``'s report.json show)."""
    capture = track.report()
    blinks = detect_blinks(blink_signal(track.blendshapes, track.blendshape_names), track.fps)
    expression = {
        name: {"min": round(float(col.min()), 3), "mean": round(float(col.mean()), 3), "max": round(float(col.max()), 3)}
        for name, col in zip(track.expression_names, np.asarray(track.expression).T)
    }
    return {
        "frames": track.num_frames,
        "face_frames": int(np.sum(track.face_found)),
        "interpolated_frames": [int(i) for i in np.flatnonzero(~np.asarray(track.face_found, bool))],
        "blinks": len(blinks),
        "blink_frames": blinks,
        "expression": expression,
        "smoothing": capture.get("smoothing", {}).get("method", "none"),
        "capture_fps": capture.get("capture_fps"),
        "capture_seconds": capture.get("capture_seconds"),
    }


def format_face_report(summary: dict) -> str:
    """Human-readable lines of ``summarize_face_track``'s result."""
    filled = summary["interpolated_frames"]
    shown = ", ".join(map(str, filled[:20])) + (" ..." if len(filled) > 20 else "")
    lines = [
        f"Face found in {summary['face_frames']} of {summary['frames']} frames"
        + (f"; filled by interpolation: {shown}" if filled else ""),
        f"Blinks: {summary['blinks']}" + (f" (peaks at frames {', '.join(map(str, summary['blink_frames']))})"
                                          if summary["blink_frames"] else ""),
        f"Smoothing: {summary['smoothing']}",
    ]
    if summary.get("capture_fps") is not None:
        lines.append(f"Capture: {summary['capture_fps']} frames/s ({summary['capture_seconds']} s)")
    lines.append("Expression coefficients (min / mean / max):")
    for name, r in summary["expression"].items():
        lines.append(f"  {name:17s} {r['min']:.2f} / {r['mean']:.2f} / {r['max']:.2f}")
    return "\n".join(lines)
