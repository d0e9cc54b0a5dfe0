"""Dense rigid keypoints in the head region, tracked through the clip by optical flow.

1. **Head region** of the reference frame: the MediaPipe face oval without its outline, the eyes and the lower face
   (``head_region``).
2. **Rigidity score** (after the original's step 8): dense optical flow from the reference frame to each frame of a
   window gives every region pixel a flow trajectory; the temporal Laplacian of that trajectory (kernel
   -0.5, 1, -0.5 along time, L2 norm over dx, dy) is large where the skin moves on its own (mouth, jaw, brows) or
   the flow is unreliable, and small on skin that moves rigidly with the skull. Time steps whose mean response is
   above 3x the overall mean (a blink, a fast turn) are left out; the per-pixel mean is min-max normalised to 0..1.
3. **Selection**: in every 5 x 5 cell (scaled with the frame size) the textured pixel with the lowest score, if
   below 0.16 (the original's 40/255); accepted greedily from the most rigid, at least ``spacing`` pixels apart
   from the points already accepted; the spacing grows until at most ``max_points`` remain.
4. **Tracking**: each point is matched from the reference frame to every frame directly (no chaining, so no
   drift), starting from its position in the neighbouring frame, and matched back; an observation whose
   forward-backward error exceeds ``fb_max_px`` is dropped. OpenCV: pyramidal Lucas-Kanade for the points and DIS
   for the dense score. RAFT-small (``flow="raft-small"``): its dense flows (reference -> frame and back) serve both.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

import numpy as np

from synctalk_lib.errors import InputError, require
from synctalk_lib.face.indices import FACE_OVAL, LEFT_EYE, RIGHT_EYE
from synctalk_lib.progress import StepCallback

FLOW_CHOICES: tuple[str, ...] = ("opencv", "raft-small")

SCORE_THRESHOLD = 40.0 / 255.0
"""Most non-rigid score a keypoint may have (the original's 40 on its 0-255 scale)."""
MOUTH_CORNERS = (61, 291)
"""MediaPipe's mouth corners: the keypoints stay above the line through them."""
LAPLACIAN_OUTLIER_FACTOR = 3.0
"""Time steps whose mean Laplacian response exceeds this multiple of the overall mean are ignored."""


class TooFewKeypoints(InputError):
    """The reference frame has too few rigid, textured points to track (small, blurred or smooth faces)."""


@dataclass(frozen=True)
class KeypointTracks:
    """Dense keypoint tracks of a clip (``N`` frames, ``P`` points)."""

    ref_index: int
    points: np.ndarray
    """[P, 2] float32 pixel positions in the reference frame."""
    tracks: np.ndarray
    """[N, P, 2] float32 pixel positions in every frame."""
    valid: np.ndarray
    """[N, P] bool: observation passed the forward-backward check."""
    fb_error: np.ndarray
    """[N, P] float32 forward-backward error in pixels."""
    score_map: np.ndarray
    """[H, W] float32 rigidity score (0 = most rigid, 1 = least; 1 outside the head region)."""
    region: np.ndarray
    """[H, W] bool head region of the reference frame."""
    flow: str


# ------------------------------------------------------------------------------------------------- head region
def head_region(landmarks: np.ndarray, height: int, width: int) -> np.ndarray:
    """Where keypoints may lie in one frame: the rigid part of the face, as a [H, W] bool mask.

    The MediaPipe face-oval polygon, shrunk away from its outline (points on the silhouette slide as the head
    turns), without the eyes (grown a little: blinks) and without everything below the line through the mouth
    corners, moved up by 5 % of the face height (lips, jaw and chin move with speech). The rigidity score then
    picks the steadiest of what remains, as in the original.

    Args:
        landmarks: [478, 2+] one frame's landmarks in pixels.
    """
    cv2 = _cv2()
    pts = np.asarray(landmarks, np.float64)[:, :2]
    face_height = float(np.linalg.norm(pts[10] - pts[152]))
    mask = np.zeros((height, width), np.uint8)
    cv2.fillPoly(mask, [np.round(pts[list(FACE_OVAL)]).astype(np.int32)], 1)
    inset = max(2, int(round(0.03 * face_height)))
    mask = cv2.erode(mask, np.ones((2 * inset + 1, 2 * inset + 1), np.uint8))
    holes = np.zeros_like(mask)
    for eye in (LEFT_EYE, RIGHT_EYE):
        cv2.fillConvexPoly(holes, cv2.convexHull(np.round(pts[list(eye)]).astype(np.int32)), 1)
    grow = max(2, int(round(0.03 * face_height)))
    holes = cv2.dilate(holes, np.ones((2 * grow + 1, 2 * grow + 1), np.uint8))
    # Lower face: the side of the mouth-corner line where the chin is.
    left, right = pts[MOUTH_CORNERS[0]], pts[MOUTH_CORNERS[1]]
    normal = np.array([-(right - left)[1], (right - left)[0]])
    normal /= max(np.linalg.norm(normal), 1e-9)
    if np.dot(pts[152] - left, normal) < 0:
        normal = -normal
    ys, xs = np.mgrid[0:height, 0:width]
    below = ((xs - left[0]) * normal[0] + (ys - left[1]) * normal[1]) > -0.05 * face_height
    return (mask > 0) & (holes == 0) & ~below


def _box(mask: np.ndarray, margin: int) -> tuple[int, int, int, int]:
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    h, w = mask.shape
    return (max(int(cols[0]) - margin, 0), max(int(rows[0]) - margin, 0),
            min(int(cols[-1]) + margin + 1, w), min(int(rows[-1]) + margin + 1, h))


# ------------------------------------------------------------------------------------------------ flow engines
def _gray(frame: np.ndarray) -> np.ndarray:
    return _cv2().cvtColor(np.ascontiguousarray(frame), _cv2().COLOR_RGB2GRAY)


def _outward(ref: int, start: int, stop: int) -> list[tuple[int, int]]:
    """(frame, neighbour toward ref) pairs, walking from ``ref`` to both ends of [start, stop)."""
    order = [(ref, ref)]
    order += [(i, i - 1) for i in range(ref + 1, stop)]
    order += [(i, i + 1) for i in range(ref - 1, start - 1, -1)]
    return order


class _FlowEngine:
    """What the keypoint stage asks of an optical flow; ``_OpenCVFlow`` and ``_RaftFlow`` answer it.

    Frames are handed over ``batch`` at a time, in the order of ``_outward`` (a sequential method warm-starts each
    frame from its neighbour toward the reference, which is then already done). Only the frames of one call are
    in memory: flows are used and dropped, never kept for the whole clip.
    """

    batch = 1
    parallel = False
    """Whether ``track`` may run on two threads at once (the walks before and after the reference)."""

    def dense(self, ref_crop: np.ndarray, index: list[int], crops: list[np.ndarray],
              inits: list[np.ndarray | None]) -> list[np.ndarray]:
        """Dense flow [h, w, 2] (crop pixels) from ``ref_crop`` to the crops of frames ``index``; ``inits``: the
        neighbours' flows."""
        raise NotImplementedError

    def start_tracking(self, ref_frame: np.ndarray, points: np.ndarray) -> None:
        """Track ``points`` [P, 2] (frame pixels) of ``ref_frame`` in the frames given to ``track``."""
        raise NotImplementedError

    def track(self, index: list[int], frames: list[np.ndarray], starts: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray]:
        """Positions [b, P, 2] of the points in ``frames`` (frame numbers ``index``) and their forward-backward
        error [b, P] (``inf`` where a point was lost); ``starts`` [b, P, 2]: the neighbours' positions, a
        sequential method's first guess."""
        raise NotImplementedError


class _OpenCVFlow(_FlowEngine):
    """DIS dense flow (warm-started from the neighbour's flow) and pyramidal Lucas-Kanade for the points."""

    parallel = True  # Lucas-Kanade keeps no state between calls and runs on one core

    def __init__(self, scale: float):
        cv2 = _cv2()
        self._dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
        win = max(15, int(round(21 * scale)) | 1)
        criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 30, 0.01)
        self._lk = dict(winSize=(win, win), maxLevel=3, criteria=criteria, flags=cv2.OPTFLOW_USE_INITIAL_FLOW)

    def dense(self, ref_crop, index, crops, inits):
        ref = _gray(ref_crop)
        return [self._dis.calc(ref, _gray(crop), np.zeros((*ref.shape, 2), np.float32) if init is None
                               else init.copy()) for crop, init in zip(crops, inits)]

    def start_tracking(self, ref_frame, points):
        self._ref_gray = _gray(ref_frame)
        self._points = np.asarray(points, np.float32)

    def track(self, index, frames, starts):
        cv2 = _cv2()
        ref_pts = self._points.reshape(-1, 1, 2)
        positions, errors = np.empty_like(starts), np.empty(starts.shape[:2], np.float32)
        for k, (frame, start) in enumerate(zip(frames, starts)):
            gray = _gray(frame)
            fwd, st_f, _ = cv2.calcOpticalFlowPyrLK(self._ref_gray, gray, ref_pts, start.reshape(-1, 1, 2).copy(),
                                                    **self._lk)
            back, st_b, _ = cv2.calcOpticalFlowPyrLK(gray, self._ref_gray, fwd, ref_pts.copy(), **self._lk)
            err = np.linalg.norm(back.reshape(-1, 2) - self._points, axis=1)
            ok = (st_f.ravel() == 1) & (st_b.ravel() == 1) & np.isfinite(err)
            positions[k] = fwd.reshape(-1, 2)
            errors[k] = np.where(ok, err, np.inf)
        return positions, errors


class _RaftFlow(_FlowEngine):
    """RAFT-small on crops (``box``) scaled to at most 320 px (the original's UNFaceFlow size), 8 frames a call.

    Points are moved by the forward flow (reference -> frame) and back by the backward flow; a point that leaves
    the crop is lost. The forward flows of the rigidity window (at most ``score_frames``) are kept until the
    tracking uses them; no other flow outlives its batch.
    """

    batch = 8

    def __init__(self, models_dirs, device, box: tuple[int, int, int, int]):
        from synctalk_lib.pose.raft import load_raft_small

        self.model = load_raft_small(models_dirs, device=device)
        self.device = device
        self.box = box
        self._forward: dict[int, np.ndarray] = {}

    def _flows(self, first: list[np.ndarray], second: list[np.ndarray]) -> np.ndarray:
        from synctalk_lib.pose.raft import estimate_flow

        return estimate_flow(self.model, np.stack(first), np.stack(second), max_side=320, device=self.device)

    def _crop(self, frame: np.ndarray) -> np.ndarray:
        x0, y0, x1, y1 = self.box
        return np.ascontiguousarray(frame[y0:y1, x0:x1])

    def dense(self, ref_crop, index, crops, inits):
        flows = list(self._flows([ref_crop] * len(crops), crops))
        self._forward.update(zip(index, flows))
        return flows

    def start_tracking(self, ref_frame, points):
        self._ref_crop = self._crop(ref_frame)
        self._offset = np.array(self.box[:2], np.float32)
        self._local = np.asarray(points, np.float32) - self._offset

    def track(self, index, frames, starts):
        crops = [self._crop(f) for f in frames]
        missing = [k for k, i in enumerate(index) if i not in self._forward]
        computed = self._flows([self._ref_crop] * len(missing), [crops[k] for k in missing]) if missing else []
        fresh = dict(zip(missing, computed))
        fwd = [fresh[k] if k in fresh else self._forward.pop(i) for k, i in enumerate(index)]
        bwd = self._flows(crops, [self._ref_crop] * len(crops))
        h, w = self._ref_crop.shape[:2]
        positions, errors = np.empty_like(starts), np.empty(starts.shape[:2], np.float32)
        for k in range(len(frames)):
            moved = self._local + _bilinear(fwd[k], self._local)
            back = moved + _bilinear(bwd[k], moved)
            inside = (moved[:, 0] >= 0) & (moved[:, 0] <= w - 1) & (moved[:, 1] >= 0) & (moved[:, 1] <= h - 1)
            positions[k] = moved + self._offset
            errors[k] = np.where(inside, np.linalg.norm(back - self._local, axis=1), np.inf)
        return positions, errors


def rigidity_score(trajectories: np.ndarray) -> np.ndarray:
    """Per-pixel non-rigidity from flow trajectories (see the module docstring).

    Args:
        trajectories: [T, P, 2] flow of P pixels from the reference frame to T consecutive frames (T >= 3).

    Returns:
        [P] float32 score normalised to 0..1 (0 = most rigid).
    """
    traj = np.asarray(trajectories, np.float32)
    if traj.shape[0] < 3:
        raise InputError(f"the rigidity score needs at least 3 consecutive frames, got {traj.shape[0]}")
    lap = np.linalg.norm(traj[1:-1] - 0.5 * (traj[:-2] + traj[2:]), axis=-1)  # [T-2, P]
    step_mean = lap.mean(axis=1)
    keep = step_mean <= LAPLACIAN_OUTLIER_FACTOR * step_mean.mean()
    score = lap[keep].mean(axis=0) if keep.any() else lap.mean(axis=0)
    lo, hi = float(score.min()), float(score.max())
    return ((score - lo) / max(hi - lo, 1e-12)).astype(np.float32)


def select_keypoints(score_map: np.ndarray, region: np.ndarray, texture: np.ndarray, *, cell: int, spacing: int,
                     max_points: int) -> np.ndarray:
    """The most rigid textured pixel of every ``cell`` x ``cell`` window, spaced out (module docstring, step 3).

    Args:
        score_map: [H, W] rigidity score 0..1.
        region: [H, W] bool where keypoints may lie.
        texture: [H, W] bool pixels with enough texture to track.

    Returns:
        [P, 2] float32 pixel positions (x, y), most rigid first.
    """
    h, w = score_map.shape
    allowed = region & texture & (score_map < SCORE_THRESHOLD)
    score = np.where(allowed, score_map, np.inf)
    hc, wc = h // cell, w // cell
    blocks = score[:hc * cell, :wc * cell].reshape(hc, cell, wc, cell).transpose(0, 2, 1, 3).reshape(hc, wc, -1)
    best = blocks.argmin(-1)
    best_score = np.take_along_axis(blocks, best[..., None], -1)[..., 0]
    rows = np.arange(hc)[:, None] * cell + best // cell
    cols = np.arange(wc)[None, :] * cell + best % cell
    ok = np.isfinite(best_score)
    cand = np.stack([cols[ok], rows[ok]], 1)
    order = np.argsort(best_score[ok], kind="stable")
    cand = cand[order]
    while True:
        chosen = _greedy_spaced(cand, spacing, (h, w))
        if len(chosen) <= max_points:
            return chosen.astype(np.float32)
        spacing = int(np.ceil(spacing * 1.25))


def _greedy_spaced(candidates: np.ndarray, spacing: int, shape: tuple[int, int]) -> np.ndarray:
    taken = np.zeros(shape, bool)
    out = []
    for x, y in candidates:
        y0, y1, x0, x1 = max(y - spacing, 0), y + spacing + 1, max(x - spacing, 0), x + spacing + 1
        if taken[y0:y1, x0:x1].any():
            continue
        taken[y, x] = True
        out.append((x, y))
    return np.asarray(out, np.int64).reshape(-1, 2)


# -------------------------------------------------------------------------------------------------- tracking
def _bilinear(field: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Sample a [h, w, C] field at float pixel positions [P, 2] (clamped to the border)."""
    h, w = field.shape[:2]
    x = np.clip(xy[:, 0], 0, w - 1.001)
    y = np.clip(xy[:, 1], 0, h - 1.001)
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    return ((1 - fx) * (1 - fy) * field[y0, x0] + fx * (1 - fy) * field[y0, x0 + 1]
            + (1 - fx) * fy * field[y0 + 1, x0] + fx * fy * field[y0 + 1, x0 + 1])


def _track_points(engine: _FlowEngine, frames: Callable[[int], np.ndarray], num_frames: int, ref_index: int,
                  points: np.ndarray, fb_max: float, on_step: StepCallback | None = None
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Reference-anchored tracks of ``points`` in every frame, with the forward-backward check.

    The frames after the reference and those before it are two independent walks; an engine that allows it
    (``parallel``) runs the earlier one on a second thread (OpenCV releases the GIL), so two cores track at once.
    Results do not depend on it: each walk is sequential and writes only its own frames.

    Returns:
        ``(tracks [N, P, 2], valid [N, P], fb_error [N, P])``; a lost point keeps its neighbour's position (the
        next frame's starting guess) and an infinite error.
    """
    tracks = np.zeros((num_frames, len(points), 2), np.float32)
    fb = np.full((num_frames, len(points)), np.inf, np.float32)
    engine.start_tracking(frames(ref_index), points)
    tracks[ref_index], fb[ref_index] = points, 0.0  # identity by definition (a flow's own ref -> ref is only ~0)
    order = _outward(ref_index, 0, num_frames)[1:]
    later, earlier = order[:num_frames - 1 - ref_index], order[num_frames - 1 - ref_index:]
    done = [1]

    def walk(chain: list[tuple[int, int]], report: bool) -> None:
        for batch in _chunks(chain, engine.batch):
            index = [i for i, _ in batch]
            starts = tracks[[n for _, n in batch]]
            positions, errors = engine.track(index, [frames(i) for i in index], starts)
            tracks[index] = np.where(np.isfinite(errors)[..., None], positions, starts)
            fb[index] = errors
            done[0] += len(batch)  # a progress count only: an increment lost to the other thread does not matter
            if report and on_step is not None and done[0] % 16 < len(batch):
                on_step(min(done[0], num_frames), num_frames)

    if engine.parallel and earlier:
        with ThreadPoolExecutor(1) as pool:
            other = pool.submit(walk, earlier, False)
            walk(later, True)
            other.result()
    else:
        walk(later, True)
        walk(earlier, True)
    if on_step is not None:
        on_step(num_frames, num_frames)
    return tracks, fb <= fb_max, fb


def _score_map(engine: _FlowEngine, frames: Callable[[int], np.ndarray], num_frames: int, ref_index: int,
               region: np.ndarray, box: tuple[int, int, int, int], score_frames: int,
               on_step: StepCallback | None) -> np.ndarray:
    """[H, W] rigidity score (module docstring, step 2): dense flows of a window of frames around the reference,
    recorded at every second pixel of the head region; 1 outside the region."""
    cv2 = _cv2()
    x0, y0, x1, y1 = box
    region_crop = region[y0:y1, x0:x1]
    stride = 2
    ys, xs = np.nonzero(region_crop[::stride, ::stride])
    sample = (ys * stride, xs * stride)  # crop pixels whose trajectory is recorded
    length = min(num_frames, max(score_frames, 3))
    start = int(np.clip(ref_index - length // 2, 0, num_frames - length))
    ref_crop = np.ascontiguousarray(frames(ref_index)[y0:y1, x0:x1])
    trajectories = np.zeros((length, len(ys), 2), np.float32)
    flows: dict[int, np.ndarray] = {ref_index: np.zeros((*ref_crop.shape[:2], 2), np.float32)}
    done = 1
    for batch in _chunks(_outward(ref_index, start, start + length)[1:], engine.batch):
        crops = [np.ascontiguousarray(frames(i)[y0:y1, x0:x1]) for i, _ in batch]
        fields = engine.dense(ref_crop, [i for i, _ in batch], crops,
                              [flows.get(n) if n != ref_index else None for _, n in batch])
        for (i, neighbour), field in zip(batch, fields):
            flows[i] = field
            flows.pop(neighbour - (1 if i > neighbour else -1), None)  # keep only what warm starts need
            trajectories[i - start] = field[sample]
        done += len(batch)
        if on_step is not None and (done % 16 < len(batch) or done == length):
            on_step(done, length)
    sub = np.ones(region_crop[::stride, ::stride].shape, np.float32)
    sub[ys, xs] = rigidity_score(trajectories)
    score_crop = cv2.resize(sub, (region_crop.shape[1], region_crop.shape[0]), interpolation=cv2.INTER_NEAREST)
    score_map = np.ones(region.shape, np.float32)
    score_map[y0:y1, x0:x1] = np.where(region_crop, score_crop, 1.0)
    return score_map


# --------------------------------------------------------------------------------------------------- the stage
def find_keypoint_tracks(frames: Callable[[int], np.ndarray], num_frames: int, landmarks: np.ndarray,
                         ref_index: int, *, flow: str = "opencv", models_dirs: Iterable | None = None,
                         device="cpu", max_points: int = 400, score_frames: int = 200, fb_max_px: float = 1.0,
                         on_step: StepCallback | None = None) -> KeypointTracks:
    """Select rigid keypoints in the reference frame and track them through every frame.

    Frames are read one batch at a time through ``frames`` and their flows dropped once used, so memory does not
    grow with the clip beyond the tracks themselves (16 bytes per point and frame).

    Args:
        frames: ``frames(i)`` returns frame ``i`` as [H, W, 3] uint8 RGB (e.g. ``clip.frame``).
        num_frames: N.
        landmarks: [N, 478, 2+] face landmarks in pixels (only the reference frame's are used).
        ref_index: the reference frame (a typical, near-median head pose works best).
        flow: ``"opencv"`` (DIS + Lucas-Kanade, no weights) or ``"raft-small"`` (RAFT weights, faster on a GPU).
        models_dirs: folders searched for ``raft-small.pth``.
        device: torch device for RAFT.
        max_points: upper bound on the number of keypoints.
        score_frames: length of the consecutive frame window used for the rigidity score.
        fb_max_px: forward-backward error above which an observation is dropped (pixels, at 512 px frames;
            scaled with the frame size).
        on_step: progress callback.

    Returns:
        ``KeypointTracks``.
    """
    if flow not in FLOW_CHOICES:
        raise InputError(f"flow must be one of {', '.join(FLOW_CHOICES)}, got {flow!r}")
    ref_frame = frames(ref_index)
    height, width = ref_frame.shape[:2]
    scale = max(height, width) / 512.0
    region = head_region(np.asarray(landmarks[ref_index]), height, width)
    if region.sum() < 100:
        raise InputError(f"frame {ref_index}: the head region is only {int(region.sum())} pixels; the face is too "
                         "small for dense keypoints (crop the video closer to the face)")
    box = _box(region, margin=int(round(16 * scale)))
    engine = _RaftFlow(models_dirs, device, box) if flow == "raft-small" else _OpenCVFlow(scale)
    length = min(num_frames, max(score_frames, 3))
    total = length + num_frames

    def report(offset: int) -> StepCallback | None:
        return None if on_step is None else (lambda done, _n: on_step(min(offset + done, total), total))

    score_map = _score_map(engine, frames, num_frames, ref_index, region, box, score_frames, report(0))
    points = _select_points(score_map, region, ref_frame, scale, max_points, ref_index)
    tracks, valid, fb = _track_points(engine, frames, num_frames, ref_index, points, fb_max_px * scale,
                                      report(length))
    return KeypointTracks(ref_index=int(ref_index), points=points, tracks=tracks, valid=valid,
                          fb_error=np.where(np.isfinite(fb), fb, 1e6).astype(np.float32), score_map=score_map,
                          region=region, flow=flow)


def _select_points(score_map: np.ndarray, region: np.ndarray, ref_frame: np.ndarray, scale: float,
                   max_points: int, ref_index: int) -> np.ndarray:
    """``select_keypoints`` on the reference frame's textured pixels (corner response above 2 % of the region's
    99th percentile), with the cell size and spacing scaled to the frame."""
    cv2 = _cv2()
    eig = cv2.cornerMinEigenVal(_gray(ref_frame).astype(np.float32), blockSize=5)
    texture = eig > 0.02 * float(np.percentile(eig[region], 99))
    size = max(5, int(round(5 * scale)))
    points = select_keypoints(score_map, region, texture, cell=size, spacing=size, max_points=max_points)
    if len(points) < 8:
        raise TooFewKeypoints(f"only {len(points)} rigid, textured keypoints were found in frame {ref_index}; the "
                              "face may be blurred or too small. Use a sharper, closer video")
    return points


def _chunks(items: Iterable[int], size: int) -> Iterator[list[int]]:
    batch: list[int] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _cv2():
    return require("cv2", "Head pose keypoint tracking (OpenCV optical flow)", "opencv-contrib-python")
