"""``stabilize_head_pose``: the whole Head-Sync Stabilizer, from a clip and its face track to a ``HeadPose``.

canonical face -> focal + first poses (rough_tracker) -> subject template (face_model) -> rough poses -> dense
keypoint tracks (keypoints) -> two-stage bundle adjustment (bundle_adjust) -> camera-to-world poses in the pack's
convention, with the metrics of the rough fit ("raw") and of the adjusted one ("adjusted") in the report.
"""
from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from synctalk_lib.errors import InputError
from synctalk_lib.pose.camera import opencv_to_nerf, project
from synctalk_lib.pose.metrics import pose_metrics, reproj_px_per_frame
from synctalk_lib.types import Clip, FaceTrack, HeadPose
from synctalk_lib.progress import StepCallback


INTERPOLATED_FRAME_WEIGHT = 0.25
"""Weight of landmarks in frames where MediaPipe found no face and the capture interpolated them."""

#: Share of the progress bar each stage takes (roughly its share of the run time on a CPU).
_STAGES = {"rough": 0.12, "template": 0.03, "keypoints": 0.45, "bundle": 0.40}


class _Progress:
    """Maps each stage's ``(done, total)`` onto one 0..1000 bar."""

    def __init__(self, on_step: StepCallback | None):
        self.on_step = on_step
        self.base = 0.0

    def stage(self, name: str) -> StepCallback:
        start, width = self.base, _STAGES[name]
        self.base += width

        def report(done: int, total: int) -> None:
            if self.on_step is not None and total > 0:
                self.on_step(int(1000 * (start + width * min(done / total, 1.0))), 1000)

        return report


def _reference_frame(rotation: np.ndarray, usable: np.ndarray) -> int:
    """The usable frame whose head rotation is closest to the median one (a typical view to seed keypoints)."""
    frontal = np.diag([1.0, -1.0, -1.0])
    rel = frontal @ rotation  # head orientation relative to facing the camera, no 180-degree wrap
    flat = rel.reshape(len(rel), 9)
    median = np.median(flat[usable], axis=0)
    dist = np.linalg.norm(flat - median, axis=1)
    dist[~usable] = np.inf
    return int(np.argmin(dist))


@contextlib.contextmanager
def _fit_threads(device) -> Iterator[None]:
    """Run the CPU fits on one torch thread (restored afterwards).

    The fits are thousands of small tensor operations (at most a chunk of frames at a time, whatever the clip's
    length); on a busy machine, handing each to a thread pool costs far more than it saves (a 50-frame clip took
    55 s with 2 threads on a loaded 2-core machine, 5 s with 1).
    """
    import torch

    if device.type != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def resolve_device(device):
    """A torch device from ``"auto" | "cpu" | "cuda"`` (or a ``torch.device``); auto prefers CUDA."""
    import torch

    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise InputError("device 'cuda' was chosen but torch sees no CUDA GPU here; choose 'auto' or 'cpu'")
    return torch.device(device)


def _check_inputs(clip: Clip, track: FaceTrack) -> None:
    if track.num_frames != clip.num_frames:
        raise InputError(f"the face track has {track.num_frames} frames but the clip has {clip.num_frames}; "
                         "capture the face track from this clip")
    if (track.width, track.height) != (clip.width, clip.height):
        raise InputError(f"the face track was captured at {track.width}x{track.height} but the clip is "
                         f"{clip.width}x{clip.height}; capture the face track from this clip")
    if clip.num_frames < 3:
        raise InputError(f"the clip has {clip.num_frames} frames; head pose stabilisation needs at least 3")


def stabilize_head_pose(clip: Clip, track: FaceTrack, *, flow: str = "opencv",
                        models_dirs: Iterable[Path | str] | None = None,
                        focal_range: tuple[float, float] | None = None, smoothness: float = 0.0,
                        max_keypoints: int = 400, bundle_iterations: int = 600, device="cpu",
                        on_step: StepCallback | None = None) -> HeadPose:
    """Rough fit (focal search + per-frame R, t), dense keypoint tracks, two-stage bundle adjustment.

    Args:
        clip: the prepared clip.
        track: its face track (``CaptureBlendshapes``): landmarks and MediaPipe's matrices.
        flow: ``"opencv"`` (no weights) or ``"raft-small"`` (RAFT weights from ``models_dirs``; slow on a CPU).
        models_dirs: folders searched for weights (``face_landmarker.task`` for the canonical face, RAFT).
        focal_range: (min, max) focal length in pixels searched; default ``(0.8, 5.0) * max(W, H)``.
        smoothness: temporal smoothness prior of the bundle adjustment (0 = off; see ``bundle_adjust``).
        max_keypoints: most dense keypoints tracked.
        bundle_iterations: Adam iterations of bundle-adjustment stage 2.
        device: torch device for the fits and RAFT (``"auto"``, ``"cpu"``, ``"cuda"`` or a ``torch.device``).
        on_step: progress callback ``(done, total)``.

    Returns:
        A ``HeadPose``; ``report()`` holds ``focal``, ``raw`` and ``adjusted`` metrics and ``seconds``.
    """
    _check_inputs(clip, track)
    device = resolve_device(device)
    if not 0.0 <= smoothness <= 1000.0:
        raise InputError(f"smoothness must be between 0 and 1000, got {smoothness}")
    with _fit_threads(device):
        return _stabilize(clip, track, flow=flow, models_dirs=models_dirs, focal_range=focal_range,
                          smoothness=smoothness, max_keypoints=max_keypoints, bundle_iterations=bundle_iterations,
                          device=device, on_step=on_step)


def _no_tracks(num_frames: int, ref_index: int, height: int, width: int, flow: str):
    """Empty keypoint tracks (P = 0) for a landmarks-only bundle adjustment."""
    from synctalk_lib.pose.keypoints import KeypointTracks

    return KeypointTracks(ref_index=ref_index, points=np.zeros((0, 2), np.float32),
                          tracks=np.zeros((num_frames, 0, 2), np.float32), valid=np.zeros((num_frames, 0), bool),
                          fb_error=np.zeros((num_frames, 0), np.float32),
                          score_map=np.ones((height, width), np.float32), region=np.zeros((height, width), bool),
                          flow=flow)


@dataclass(frozen=True)
class _Rough:
    """The rough fit and what it was fitted to (``N`` frames, ``L`` rigid landmarks)."""

    fit: object
    """``RoughFit`` of the subject's template at the searched focal length."""
    search: object
    """``RoughFit`` of the focal search with MediaPipe's canonical face."""
    template: object
    """The subject's ``FaceTemplate``."""
    observed: np.ndarray
    """[N, L, 2] rigid landmark pixels."""
    frame_weight: np.ndarray
    """[N] landmark weight per frame (lower where the face was interpolated)."""


def _rough_fit(clip: Clip, track: FaceTrack, *, models_dirs, focal_range, device, progress: _Progress) -> _Rough:
    """Focal length and first poses with MediaPipe's canonical (mean) face, then the subject's own template."""
    from synctalk_lib.pose.face_model import RIGID_LANDMARKS, canonical_face, mediapipe_rotations, subject_template
    from synctalk_lib.pose.rough_tracker import fit_fixed_focal, track_rough

    width, height = clip.width, clip.height
    rigid = np.asarray(RIGID_LANDMARKS, np.int64)
    observed = np.asarray(track.landmarks[:, rigid, :2], np.float64)
    found = np.asarray(track.face_found, bool)
    frame_weight = np.where(found, 1.0, INTERPOLATED_FRAME_WEIGHT)
    canonical = canonical_face(models_dirs)
    search = track_rough(canonical[rigid], observed, mediapipe_rotations(track), width=width, height=height,
                         focal_range=focal_range, weights=frame_weight, device=device,
                         on_step=progress.stage("rough"))
    template = subject_template(track.landmarks, search.rotation, search.translation, search.focal, width / 2.0,
                                height / 2.0, canonical, weights=found.astype(float))
    fit = fit_fixed_focal(template.rigid_points, observed, search.rotation, search.focal, width=width,
                          height=height, huber_px=search.huber_px, weights=frame_weight, device=device)
    progress.stage("template")(1, 1)
    return _Rough(fit=fit, search=search, template=template, observed=observed, frame_weight=frame_weight)


def _keypoint_tracks(clip: Clip, track: FaceTrack, ref_index: int, *, flow, models_dirs, device, max_keypoints,
                     progress: _Progress, notes: list[str]):
    from synctalk_lib.pose.keypoints import TooFewKeypoints, find_keypoint_tracks

    try:
        return find_keypoint_tracks(clip.frame, clip.num_frames, track.landmarks, ref_index, flow=flow,
                                    models_dirs=models_dirs, device=device, max_points=max_keypoints,
                                    on_step=progress.stage("keypoints"))
    except TooFewKeypoints as exc:
        # Small or soft frames: adjust with the rigid landmarks alone rather than refuse the clip.
        notes.append(f"{exc}; bundle adjustment used the rigid landmarks only")
        return _no_tracks(clip.num_frames, ref_index, clip.height, clip.width, flow)


def _stabilize(clip: Clip, track: FaceTrack, *, flow, models_dirs, focal_range, smoothness, max_keypoints,
               bundle_iterations, device, on_step) -> HeadPose:
    from synctalk_lib.pose.bundle_adjust import bundle_adjust

    seconds = {"started": time.perf_counter()}
    progress = _Progress(on_step)
    rough = _rough_fit(clip, track, models_dirs=models_dirs, focal_range=focal_range, device=device,
                       progress=progress)
    seconds["rough"] = time.perf_counter()
    ref_index = _reference_frame(rough.fit.rotation, np.asarray(track.face_found, bool))
    notes: list[str] = []
    tracks = _keypoint_tracks(clip, track, ref_index, flow=flow, models_dirs=models_dirs, device=device,
                              max_keypoints=max_keypoints, progress=progress, notes=notes)
    seconds["keypoints"] = time.perf_counter()
    bundle = bundle_adjust(focal=rough.fit.focal, cx=clip.width / 2.0, cy=clip.height / 2.0,
                           rotation=rough.fit.rotation, translation=rough.fit.translation,
                           landmarks2d=rough.observed, template=rough.template.rigid_points,
                           tracks2d=tracks.tracks, track_valid=tracks.valid, ref_index=ref_index,
                           landmark_weights=rough.frame_weight, smoothness=smoothness,
                           stage2_iterations=bundle_iterations, device=device, on_step=progress.stage("bundle"))
    seconds["bundle"] = time.perf_counter()
    return _head_pose(clip, rough, tracks, bundle, seconds, notes, flow=flow, smoothness=smoothness, device=device)


def _head_pose(clip: Clip, rough: _Rough, tracks, bundle, seconds: dict[str, float], notes: list[str], *, flow,
               smoothness, device) -> HeadPose:
    """Camera-to-world poses in the pack's convention, with the raw and adjusted metrics in the report."""
    focal, cx, cy = rough.fit.focal, clip.width / 2.0, clip.height / 2.0

    def landmarks_in_image(rotation: np.ndarray, translation: np.ndarray, points: np.ndarray) -> np.ndarray:
        cam = np.einsum("nij,lj->nli", rotation, points) + translation[:, None, :]
        return project(cam, focal, cx, cy)

    raw_c2w = opencv_to_nerf(rough.fit.rotation, rough.fit.translation)
    c2w = opencv_to_nerf(bundle.rotation, bundle.translation)
    raw_proj = landmarks_in_image(rough.fit.rotation, rough.fit.translation, rough.template.rigid_points)
    adj_proj = landmarks_in_image(bundle.rotation, bundle.translation, bundle.landmarks3d)
    report = _report(clip, rough, tracks, bundle, seconds, flow=flow, smoothness=smoothness, device=device)
    report["raw"] = pose_metrics(raw_c2w, raw_proj, rough.observed)
    report["adjusted"] = pose_metrics(c2w, adj_proj, rough.observed)
    if rough.search.at_range_edge:
        notes.append(f"the focal length {focal:.0f} px is at the edge of the searched range; pass a wider "
                     "focal_range")
    if report["adjusted"]["reproj_px"] > 1.1 * report["raw"]["reproj_px"]:
        notes.append("the adjusted poses fit the landmarks more than 10 % worse than the raw fit; lower smoothness")
    if notes:
        report["notes"] = notes
    return HeadPose(focal=float(focal), cx=cx, cy=cy, width=clip.width, height=clip.height,
                    c2w=c2w.astype(np.float32), keypoints=bundle.keypoints3d.astype(np.float32),
                    reproj_error=reproj_px_per_frame(adj_proj, rough.observed), report_json=json.dumps(report),
                    landmarks3d=bundle.landmarks3d.astype(np.float32))


def _report(clip: Clip, rough: _Rough, tracks, bundle, seconds: dict[str, float], *, flow, smoothness,
            device) -> dict:
    search = rough.search
    stage_seconds = {name: round(seconds[name] - seconds[before], 3)
                     for before, name in zip(("started", "rough", "keypoints"), ("rough", "keypoints", "bundle"))}
    return {
        "focal": round(rough.fit.focal, 3),
        "raw": {}, "adjusted": {},
        "seconds": round(seconds["bundle"] - seconds["started"], 3),
        "stage_seconds": stage_seconds,
        "flow": flow,
        "smoothness": float(smoothness),
        "device": str(device),
        "frames": clip.num_frames,
        "reference_frame": tracks.ref_index,
        "rigid_landmarks": int(len(rough.template.rigid)),
        "keypoints": {"selected": int(len(tracks.points)), "kept": int(bundle.kept_tracks.sum()),
                      "valid_observations": round(float(tracks.valid.mean()), 4) if tracks.valid.size else 0.0},
        "bundle_joint_frames": int(bundle.joint_frames),
        "noise_px": {"landmarks": round(bundle.sigma_landmark_px, 4), "tracks": round(bundle.sigma_track_px, 4)},
        "focal_search": {"range": [round(search.focal_costs[0][0], 2), round(search.focal_costs[-1][0], 2)],
                         "evaluated": len(search.focal_costs), "at_range_edge": bool(search.at_range_edge),
                         "canonical_reproj_px": round(float(search.residual_px.mean()), 4)},
        "template": {"spread_mm": round(rough.template.spread_mm, 3), "frames_used": rough.template.frames_used},
        "head_depth_m": round(float(np.mean(bundle.translation[:, 2])), 4),
    }


def format_pose_report(pose: HeadPose) -> str:
    """A short text report for people (the node's ``report`` output and the CLI)."""
    r = pose.report()
    if "raw" not in r:
        return f"Head pose: {pose.num_frames} frames, focal {pose.focal:.1f} px (imported, no fit metrics)"
    raw, adj = r["raw"], r["adjusted"]

    def ratio(key: str) -> str:
        return f"{raw[key] / adj[key]:.1f}x lower" if adj[key] > 0 else "n/a"

    lines = [
        f"Head pose: {r['frames']} frames, focal {r['focal']:.1f} px, head at {r['head_depth_m']:.2f} m, "
        f"{r['seconds']:.1f} s ({r['flow']} flow, device {r['device']})",
        f"  keypoints: {r['keypoints']['kept']} of {r['keypoints']['selected']} tracked points kept, "
        f"{r['rigid_landmarks']} rigid landmarks, reference frame {r['reference_frame']}",
        f"  rotation jitter: raw {raw['jitter_rot_deg']:.4f} deg -> adjusted {adj['jitter_rot_deg']:.4f} deg "
        f"({ratio('jitter_rot_deg')})",
        f"  translation jitter: raw {raw['jitter_trans']:.6f} -> adjusted {adj['jitter_trans']:.6f} "
        f"({ratio('jitter_trans')})",
        f"  landmark reprojection: raw {raw['reproj_px']:.3f} px -> adjusted {adj['reproj_px']:.3f} px",
    ]
    lines += [f"  note: {n}" for n in r.get("notes", [])]
    return "\n".join(lines)
