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

from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

import numpy as np

from synctalk_lib.errors import InputError, require
from synctalk_lib.face.indices import FACE_OVAL, LEFT_EYE, RIGHT_EYE

StepCallback = Callable[[int, int], None]
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


# ------------------------------------------------------------------------------------------------ dense flows
def _gray(frame: np.ndarray) -> np.ndarray:
    return _cv2().cvtColor(np.ascontiguousarray(frame), _cv2().COLOR_RGB2GRAY)


def _outward(ref: int, start: int, stop: int) -> list[tuple[int, int]]:
    """(frame, neighbour toward ref) pairs, walking from ``ref`` to both ends of [start, stop)."""
    order = [(ref, ref)]
    order += [(i, i - 1) for i in range(ref + 1, stop)]
    order += [(i, i + 1) for i in range(ref - 1, start - 1, -1)]
    return order


class _OpenCVFlow:
    """DIS dense flow from the reference crop to other crops, warm-started from the neighbour's flow."""

    def __init__(self):
        cv2 = _cv2()
        self._dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)

    def forward(self, ref: np.ndarray, frame: np.ndarray, init: np.ndarray | None) -> np.ndarray:
        start = np.zeros((*ref.shape[:2], 2), np.float32) if init is None else init.copy()
        return self._dis.calc(_gray(ref), _gray(frame), start)


class _RaftFlow:
    """RAFT-small dense flow on crops scaled to at most 320 px (the original's UNFaceFlow size)."""

    def __init__(self, models_dirs, device):
        from synctalk_lib.pose.raft import load_raft_small

        self.model = load_raft_small(models_dirs, device=device)
        self.device = device

    def pair(self, ref: np.ndarray, frames: list[np.ndarray]) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Forward (ref -> frame) and backward (frame -> ref) flows, [h, w, 2] each, in crop pixels."""
        from synctalk_lib.pose.raft import estimate_flow

        refs = np.repeat(ref[None], len(frames), 0)
        batch = np.stack(frames)
        fwd = estimate_flow(self.model, refs, batch, max_side=320, device=self.device)
        bwd = estimate_flow(self.model, batch, refs, max_side=320, device=self.device)
        return list(fwd), list(bwd)


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
def _track_lk(frames: Callable[[int], np.ndarray], num_frames: int, ref_index: int, points: np.ndarray,
              fb_max_px: float, win: int, on_step: StepCallback | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Reference-anchored pyramidal Lucas-Kanade with forward-backward check, for every frame."""
    cv2 = _cv2()
    p = len(points)
    tracks = np.zeros((num_frames, p, 2), np.float32)
    fb = np.full((num_frames, p), np.inf, np.float32)
    ref_gray = _gray(frames(ref_index))
    ref_pts = points.reshape(-1, 1, 2).astype(np.float32)
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 30, 0.01)
    params = dict(winSize=(win, win), maxLevel=3, criteria=criteria, flags=cv2.OPTFLOW_USE_INITIAL_FLOW)
    done = 0
    for i, neighbour in _outward(ref_index, 0, num_frames):
        if i == ref_index:
            tracks[i], fb[i] = points, 0.0
        else:
            gray = _gray(frames(i))
            start = tracks[neighbour].reshape(-1, 1, 2).copy()
            fwd, st_f, _ = cv2.calcOpticalFlowPyrLK(ref_gray, gray, ref_pts, start, **params)
            back, st_b, _ = cv2.calcOpticalFlowPyrLK(gray, ref_gray, fwd, ref_pts.copy(), **params)
            err = np.linalg.norm(back.reshape(-1, 2) - points, axis=1)
            ok = (st_f.ravel() == 1) & (st_b.ravel() == 1) & np.isfinite(err)
            # A lost point keeps its neighbour's position as the next frame's starting guess.
            tracks[i] = np.where(ok[:, None], fwd.reshape(-1, 2), tracks[neighbour])
            fb[i] = np.where(ok, err, np.inf)
        done += 1
        if on_step is not None and (done % 16 == 0 or done == num_frames):
            on_step(done, num_frames)
    return tracks, fb <= fb_max_px, fb


def _bilinear(field: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Sample a [h, w, C] field at float pixel positions [P, 2] (clamped to the border)."""
    h, w = field.shape[:2]
    x = np.clip(xy[:, 0], 0, w - 1.001)
    y = np.clip(xy[:, 1], 0, h - 1.001)
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    return ((1 - fx) * (1 - fy) * field[y0, x0] + fx * (1 - fy) * field[y0, x0 + 1]
            + (1 - fx) * fy * field[y0 + 1, x0] + fx * fy * field[y0 + 1, x0 + 1])


# --------------------------------------------------------------------------------------------------- the stage
def find_keypoint_tracks(frames: Callable[[int], np.ndarray], num_frames: int, landmarks: np.ndarray,
                         ref_index: int, *, flow: str = "opencv", models_dirs: Iterable | None = None,
                         device="cpu", max_points: int = 400, score_frames: int = 200, fb_max_px: float = 1.0,
                         on_step: StepCallback | None = None) -> KeypointTracks:
    """Select rigid keypoints in the reference frame and track them through every frame.

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
    cv2 = _cv2()
    ref_frame = frames(ref_index)
    height, width = ref_frame.shape[:2]
    scale = max(height, width) / 512.0
    fb_max = fb_max_px * scale
    region = head_region(np.asarray(landmarks[ref_index]), height, width)
    if region.sum() < 100:
        raise InputError(f"frame {ref_index}: the head region is only {int(region.sum())} pixels; the face is too "
                         "small for dense keypoints (crop the video closer to the face)")
    x0, y0, x1, y1 = _box(region, margin=int(round(16 * scale)))
    crop = lambda img: np.ascontiguousarray(img[y0:y1, x0:x1])  # noqa: E731
    region_crop = region[y0:y1, x0:x1]
    stride = 2
    ys, xs = np.nonzero(region_crop[::stride, ::stride])
    sample = np.stack([xs * stride, ys * stride], 1)  # crop pixels whose trajectory is recorded

    # Window of consecutive frames around the reference for the rigidity score.
    length = min(num_frames, max(score_frames, 3))
    start = int(np.clip(ref_index - length // 2, 0, num_frames - length))
    stop = start + length
    total = length + num_frames
    progress = 0

    def report(step: int) -> None:
        if on_step is not None:
            on_step(min(step, total), total)

    ref_crop = crop(ref_frame)
    trajectories = np.zeros((length, len(sample), 2), np.float32)
    raft = _RaftFlow(models_dirs, device) if flow == "raft-small" else None
    raft_fwd: dict[int, np.ndarray] = {}
    raft_bwd: dict[int, np.ndarray] = {}
    if raft is None:
        engine = _OpenCVFlow()
        flows: dict[int, np.ndarray] = {}
        for i, neighbour in _outward(ref_index, start, stop):
            field = (np.zeros((*ref_crop.shape[:2], 2), np.float32) if i == ref_index
                     else engine.forward(ref_crop, crop(frames(i)), flows.get(neighbour)))
            flows[i] = field
            flows.pop(neighbour - (1 if i > neighbour else -1), None)  # keep only what warm starts need
            trajectories[i - start] = field[sample[:, 1], sample[:, 0]]
            progress += 1
            if progress % 16 == 0:
                report(progress)
    else:
        for chunk in _chunks(range(num_frames), 8):
            fwd, bwd = raft.pair(ref_crop, [crop(frames(i)) for i in chunk])
            for i, f, b in zip(chunk, fwd, bwd):
                raft_fwd[i], raft_bwd[i] = f, b
                if start <= i < stop:
                    trajectories[i - start] = f[sample[:, 1], sample[:, 0]]
            progress += len(chunk) * length // num_frames
            report(progress)
    progress = length
    report(progress)

    score_map = np.ones((height, width), np.float32)
    sub = np.ones(region_crop[::stride, ::stride].shape, np.float32)
    sub[ys, xs] = rigidity_score(trajectories)
    score_crop = cv2.resize(sub, (region_crop.shape[1], region_crop.shape[0]) if stride > 1 else sub.shape[::-1],
                            interpolation=cv2.INTER_NEAREST)[:region_crop.shape[0], :region_crop.shape[1]]
    score_map[y0:y1, x0:x1] = np.where(region_crop, score_crop, 1.0)

    gray = _gray(ref_frame).astype(np.float32)
    eig = cv2.cornerMinEigenVal(gray, blockSize=5)
    texture = eig > 0.02 * float(np.percentile(eig[region], 99))
    points = select_keypoints(score_map, region, texture, cell=max(5, int(round(5 * scale))),
                              spacing=max(5, int(round(5 * scale))), max_points=max_points)
    if len(points) < 8:
        raise TooFewKeypoints(f"only {len(points)} rigid, textured keypoints were found in frame {ref_index}; the face "
                         "may be blurred or too small. Use a sharper, closer video")

    def after_score(done: int, _total: int) -> None:
        report(length + done)

    if raft is None:
        tracks, valid, fb = _track_lk(frames, num_frames, ref_index, points, fb_max,
                                      win=max(15, int(round(21 * scale)) | 1), on_step=after_score)
    else:
        offset = np.array([x0, y0], np.float32)
        local = points - offset
        tracks = np.zeros((num_frames, len(points), 2), np.float32)
        fb = np.zeros((num_frames, len(points)), np.float32)
        for i in range(num_frames):
            if i == ref_index:  # identity by definition (RAFT's own ref -> ref flow is only ~0)
                tracks[i], fb[i] = points, 0.0
                continue
            moved = local + _bilinear(raft_fwd[i], local)
            back = moved + _bilinear(raft_bwd[i], moved)
            tracks[i] = moved + offset
            fb[i] = np.linalg.norm(back - local, axis=1)
        valid = fb <= fb_max
        inside = ((tracks[..., 0] >= x0) & (tracks[..., 0] <= x1 - 1) & (tracks[..., 1] >= y0)
                  & (tracks[..., 1] <= y1 - 1))
        valid &= inside
        report(total)
    return KeypointTracks(ref_index=int(ref_index), points=points, tracks=tracks, valid=valid,
                          fb_error=np.where(np.isfinite(fb), fb, 1e6).astype(np.float32), score_map=score_map,
                          region=region, flow=flow)


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
