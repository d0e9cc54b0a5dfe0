"""Face capture on the reference clip: coverage, geometry, blendshape names, expression selection, blinks, gap
filling and its errors, the preview image, and the CaptureBlendshapes node."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from synctalk_lib.errors import InputError
from synctalk_lib.face.blinks import blink_signal, detect_blinks
from synctalk_lib.face.capture import capture_face_track, check_gaps, fill_gaps, fill_transform_gaps, find_gaps, \
    orthonormalize
from synctalk_lib.face.expression import EXPRESSION_NAMES, expression_coefficients
from synctalk_lib.face.preview import BAR_COLOR, FILLED_COLOR, FOUND_COLOR, draw_coefficient_panel, \
    draw_face_preview, preview_indices
from synctalk_lib.face.smoothing import smooth_landmarks, smooth_scores
from synctalk_lib.face.stats import format_face_report, summarize_face_track
from synctalk_lib.media.clip_store import clip_from_arrays
from synctalk_lib.types import FaceTrack

# MediaPipe's published blendshape categories, in model output order.
MEDIAPIPE_BLENDSHAPES = (
    "_neutral", "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight", "cheekPuff",
    "cheekSquintLeft", "cheekSquintRight", "eyeBlinkLeft", "eyeBlinkRight", "eyeLookDownLeft", "eyeLookDownRight",
    "eyeLookInLeft", "eyeLookInRight", "eyeLookOutLeft", "eyeLookOutRight", "eyeLookUpLeft", "eyeLookUpRight",
    "eyeSquintLeft", "eyeSquintRight", "eyeWideLeft", "eyeWideRight", "jawForward", "jawLeft", "jawOpen", "jawRight",
    "mouthClose", "mouthDimpleLeft", "mouthDimpleRight", "mouthFrownLeft", "mouthFrownRight", "mouthFunnel",
    "mouthLeft", "mouthLowerDownLeft", "mouthLowerDownRight", "mouthPressLeft", "mouthPressRight", "mouthPucker",
    "mouthRight", "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper", "mouthSmileLeft",
    "mouthSmileRight", "mouthStretchLeft", "mouthStretchRight", "mouthUpperUpLeft", "mouthUpperUpRight",
    "noseSneerLeft", "noseSneerRight",
)
# Blink peaks of the whole reference clip (visible in its eyeBlink scores; see bench/face_capture.py).
REFERENCE_BLINKS = (7, 101, 173, 252, 312)


def decode_frames(video: Path, count: int | None = None) -> np.ndarray:
    """The first ``count`` frames of ``video`` as [N, H, W, 3] uint8 (the reference clip is 512x512 @ 25 fps)."""
    import av

    frames = []
    with av.open(str(video)) as container:
        for frame in container.decode(video=0):
            frames.append(frame.to_ndarray(format="rgb24"))
            if count is not None and len(frames) == count:
                break
    return np.stack(frames)


@pytest.fixture(scope="module")
def frames60(may_video: Path) -> np.ndarray:
    return decode_frames(may_video, 60)


@pytest.fixture(scope="module")
def clip60(frames60: np.ndarray, tmp_path_factory):
    return clip_from_arrays(tmp_path_factory.mktemp("face") / "clip60", frames60, 25.0)


@pytest.fixture(scope="module")
def track60(clip60, shared_models: Path) -> FaceTrack:
    return capture_face_track(clip60, models_dirs=[shared_models], smoothing="none")


# ------------------------------------------------------------------------------------------ reference clip
def test_face_found_in_every_frame_with_sensible_geometry(track60: FaceTrack, clip60):
    assert track60.num_frames == 60 and track60.face_found.all()
    report = track60.report()
    assert report["face_frames"] == 60 and report["interpolated_frames"] == [] and report["capture_fps"] > 0
    xy = track60.landmarks[..., :2]
    assert track60.landmarks.shape == (60, 478, 3) and track60.landmarks.dtype == np.float32
    assert xy.min() >= 0 and xy[..., 0].max() < clip60.width and xy[..., 1].max() < clip60.height
    x0, y0 = xy.min(axis=1).T
    x1, y1 = xy.max(axis=1).T
    width, height = x1 - x0, y1 - y0
    # The reference face is centred and fills roughly half of the 512 px frame.
    assert np.all((width > 150) & (width < 400) & (height > 180) & (height < 450))
    assert np.all(np.abs((x0 + x1) / 2 - 256) < 60) and np.all(np.abs((y0 + y1) / 2 - 270) < 80)
    # MediaPipe's point order: nose tip (1) between the eyes' outer corners (33 = subject's right, on the image
    # left; 263 = subject's left) and above the chin (152).
    assert np.all(xy[:, 33, 0] < xy[:, 1, 0]) and np.all(xy[:, 1, 0] < xy[:, 263, 0])
    assert np.all(xy[:, 1, 1] < xy[:, 152, 1])
    # Depth is scaled like x: the nose tip is in front (smaller z) and |z| stays within the face's width.
    z = track60.landmarks[..., 2]
    assert np.all(z[:, 1] < np.median(z, axis=1)) and np.abs(z).max() < width.max()
    # Head matrices are rigid transforms with the face ~30-80 cm in front of the camera (MediaPipe uses cm).
    rot = track60.transforms[:, :3, :3]
    np.testing.assert_allclose(rot @ rot.transpose(0, 2, 1), np.broadcast_to(np.eye(3), rot.shape), atol=1e-4)
    assert np.all((track60.transforms[:, 2, 3] < -20) & (track60.transforms[:, 2, 3] > -100))


def test_blendshape_names_and_expression_by_name(track60: FaceTrack):
    assert track60.blendshape_names == MEDIAPIPE_BLENDSHAPES
    scores = track60.blendshapes
    assert scores.shape == (60, 52) and scores.min() >= 0 and scores.max() <= 1
    assert EXPRESSION_NAMES == ("browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft",
                                "browOuterUpRight", "eyeBlinkLeft", "eyeBlinkRight")
    assert track60.expression_names == EXPRESSION_NAMES
    # By name these are MediaPipe categories 1-5, 9, 10: the original's columns 0-4, 8, 9 after it drops _neutral.
    columns = [MEDIAPIPE_BLENDSHAPES.index(n) for n in EXPRESSION_NAMES]
    assert columns == [1, 2, 3, 4, 5, 9, 10]
    np.testing.assert_array_equal(track60.expression, scores[:, columns])
    # Selection follows names, not positions: a shuffled layout gives the same coefficients.
    order = np.random.default_rng(0).permutation(52)
    shuffled = expression_coefficients(scores[:, order], [track60.blendshape_names[i] for i in order])
    np.testing.assert_array_equal(shuffled, track60.expression)
    with pytest.raises(InputError, match="eyeBlinkRight"):
        expression_coefficients(scores[:, :10], track60.blendshape_names[:10])


def test_blink_detected_where_the_blink_scores_peak(track60: FaceTrack):
    signal = blink_signal(track60.blendshapes, track60.blendshape_names)
    left = track60.blendshapes[:, MEDIAPIPE_BLENDSHAPES.index("eyeBlinkLeft")]
    right = track60.blendshapes[:, MEDIAPIPE_BLENDSHAPES.index("eyeBlinkRight")]
    np.testing.assert_allclose(signal, (left + right) / 2, rtol=1e-6)
    blinks = detect_blinks(signal, track60.fps)
    assert blinks == [7]  # the only blink in the first 60 frames
    assert int(np.argmax(left)) == 7 and int(np.argmax(right)) == 7
    assert left[7] > 0.6 and np.median(left) < 0.25


def test_full_reference_clip(may_video: Path, shared_models: Path, tmp_path: Path):
    """All 331 frames (~3 s of capture): face everywhere and the clip's five blinks."""
    clip = clip_from_arrays(tmp_path / "clip", decode_frames(may_video), 25.0)
    track = capture_face_track(clip, models_dirs=[shared_models], smoothing="none")
    assert track.num_frames == 331 and bool(track.face_found.all())
    summary = summarize_face_track(track)
    assert summary["face_frames"] == 331 and summary["blink_frames"] == list(REFERENCE_BLINKS)
    # The default smoothing keeps every blink on its frame.
    smoothed = smooth_scores(track.blendshapes, track.fps)
    assert detect_blinks(blink_signal(smoothed, track.blendshape_names), track.fps) == list(REFERENCE_BLINKS)


def test_smoothing_option_applies_the_filters(clip60, track60: FaceTrack, shared_models: Path):
    smooth = capture_face_track(clip60, models_dirs=[shared_models], smoothing="one_euro")
    # MediaPipe is deterministic on CPU, so the smoothed track is the filter applied to the raw one.
    np.testing.assert_allclose(smooth.landmarks, smooth_landmarks(track60.landmarks, 25.0), atol=1e-3)
    np.testing.assert_allclose(smooth.blendshapes, smooth_scores(track60.blendshapes, 25.0), atol=1e-5)
    np.testing.assert_array_equal(smooth.expression, expression_coefficients(smooth.blendshapes,
                                                                              smooth.blendshape_names))
    assert smooth.report()["smoothing"]["method"] == "one_euro"
    with pytest.raises(InputError, match="smoothing"):
        capture_face_track(clip60, models_dirs=[shared_models], smoothing="kalman")


def test_save_load_roundtrip(track60: FaceTrack, tmp_path: Path):
    loaded = FaceTrack.load(track60.save(tmp_path / "face_track.npz"))
    np.testing.assert_array_equal(loaded.landmarks, track60.landmarks)
    np.testing.assert_array_equal(loaded.expression, track60.expression)
    assert loaded.blendshape_names == track60.blendshape_names and loaded.report() == track60.report()


# ------------------------------------------------------------------------------------------------ gaps
def test_gap_is_interpolated_and_reported(frames60, track60: FaceTrack, shared_models: Path, tmp_path: Path):
    frames = frames60[:40].copy()
    frames[10:13] = 0  # three black frames: no face
    clip = clip_from_arrays(tmp_path / "gap", frames, 25.0)
    track = capture_face_track(clip, models_dirs=[shared_models], max_gap=5, smoothing="none")
    report = track.report()
    assert report["interpolated_frames"] == [10, 11, 12] and report["gaps"] == [[10, 12]]
    assert report["face_frames"] == 37
    assert list(np.flatnonzero(~track.face_found)) == [10, 11, 12]
    # Linear between the neighbours 9 and 13.
    for i, w in ((10, 0.25), (11, 0.5), (12, 0.75)):
        np.testing.assert_allclose(track.landmarks[i], (1 - w) * track.landmarks[9] + w * track.landmarks[13],
                                   atol=1e-3)
        np.testing.assert_allclose(track.blendshapes[i], (1 - w) * track.blendshapes[9] + w * track.blendshapes[13],
                                   atol=1e-5)
    rot = track.transforms[11, :3, :3]
    np.testing.assert_allclose(rot @ rot.T, np.eye(3), atol=1e-5)
    # ... and near what MediaPipe saw in the real frames: much nearer than holding the last face would be.
    truth = track60.landmarks[10:13, :, :2]
    err = np.linalg.norm(track.landmarks[10:13, :, :2] - truth, axis=-1).mean()
    err_hold = np.linalg.norm(track.landmarks[9:10, :, :2] - truth, axis=-1).mean()
    assert err < 6.0 and err < 0.7 * err_hold, (err, err_hold)
    summary = summarize_face_track(track)
    assert "filled by interpolation: 10, 11, 12" in format_face_report(summary)


def test_gap_longer_than_max_gap_names_the_frames(frames60, shared_models: Path, tmp_path: Path):
    frames = frames60[:30].copy()
    frames[10:13] = 0
    clip = clip_from_arrays(tmp_path / "gap", frames, 25.0)
    with pytest.raises(InputError, match=r"frames 10-12 \(3 frames\).*max_gap = 2"):
        capture_face_track(clip, models_dirs=[shared_models], max_gap=2)


def test_missing_face_at_the_start(frames60, shared_models: Path, tmp_path: Path):
    frames = frames60[:20].copy()
    frames[:2] = 0
    clip = clip_from_arrays(tmp_path / "start", frames, 25.0)
    with pytest.raises(InputError, match=r"frames 0-1 \(2 frames\)"):
        capture_face_track(clip, models_dirs=[shared_models], max_gap=1)
    track = capture_face_track(clip, models_dirs=[shared_models], max_gap=2, smoothing="none")
    assert track.report()["interpolated_frames"] == [0, 1]
    np.testing.assert_array_equal(track.landmarks[0], track.landmarks[2])  # nearest found frame


def test_no_face_anywhere(shared_models: Path, tmp_path: Path):
    clip = clip_from_arrays(tmp_path / "black", np.zeros((3, 64, 64, 3), np.uint8), 25.0)
    with pytest.raises(InputError, match="no face was found in any of the 3 frames"):
        capture_face_track(clip, models_dirs=[shared_models])


def test_gap_helpers_on_synthetic_values():
    found = np.array([0, 1, 1, 0, 0, 1, 0], bool)
    assert find_gaps(found) == [(0, 0), (3, 4), (6, 6)]
    values = np.arange(7, dtype=np.float32)[:, None] * np.array([[1.0, -2.0]], np.float32)
    values[~found] = 99.0
    filled = fill_gaps(values, found)
    np.testing.assert_allclose(filled[:, 0], [1, 1, 2, 3, 4, 5, 5])
    np.testing.assert_allclose(filled[:, 1], [-2, -2, -4, -6, -8, -10, -10])
    assert check_gaps(found, max_gap=2) == [(0, 0), (3, 4), (6, 6)]
    with pytest.raises(InputError, match=r"frames 3-4 \(2 frames\)"):
        check_gaps(found, max_gap=1)
    # A blend of two rotations is re-projected onto a rotation.
    a, b = np.eye(4, dtype=np.float32), np.eye(4, dtype=np.float32)
    b[:3, :3] = [[0, -1, 0], [1, 0, 0], [0, 0, 1]]  # 90 degrees about z
    b[:3, 3] = [2.0, 0.0, -40.0]
    mats = np.stack([a, np.zeros((4, 4), np.float32), b])
    filled = fill_transform_gaps(mats, np.array([True, False, True]))
    mid = filled[1]
    np.testing.assert_allclose(mid[:3, :3] @ mid[:3, :3].T, np.eye(3), atol=1e-6)
    np.testing.assert_allclose(np.arctan2(mid[1, 0], mid[0, 0]), np.pi / 4, atol=1e-6)
    np.testing.assert_allclose(mid[:3, 3], [1.0, 0.0, -20.0], atol=1e-6)
    np.testing.assert_array_equal(filled[[0, 2]], mats[[0, 2]])  # found frames are untouched
    # The scale of a scaled rotation survives re-projection.
    np.testing.assert_allclose(orthonormalize(2.0 * a[None])[0, :3, :3], 2.0 * np.eye(3), atol=1e-6)


def test_detect_blinks_hysteresis_and_separation():
    x = np.full(100, 0.1)
    x[20:23] = [0.4, 0.7, 0.5]          # a blink peaking at 21
    x[24:26] = [0.35, 0.45]             # a rebound 4 frames later: same blink (0.2 s separation = 5 frames)
    x[60:63] = [0.25, 0.28, 0.26]       # under the rise threshold (0.1 + 0.2): not a blink
    x[80:85] = [0.5, 0.32, 0.25, 0.45, 0.2]  # dips to 0.25 (> release 0.2) in between: one event, peak 80
    assert detect_blinks(x, 25.0) == [21, 80]
    assert detect_blinks(x, 25.0, min_separation_s=0.0) == [21, 25, 80]
    assert detect_blinks(np.stack([x, x], axis=1), 25.0) == [21, 80]
    assert detect_blinks(np.zeros(0), 25.0) == []


# ---------------------------------------------------------------------------------------------- preview
def test_preview_draws_landmarks_and_bars(clip60, track60: FaceTrack, frames60):
    preview = draw_face_preview(clip60, track60, 4)
    shown = preview_indices(60, 4)
    assert shown == [0, 20, 39, 59]
    assert preview.shape[0] == 4 and preview.shape[1] == 512 and preview.shape[2] > 512
    assert preview.dtype == np.float32 and 0.0 <= preview.min() and preview.max() <= 1.0
    green = np.array(FOUND_COLOR) / 255.0
    for k, i in enumerate(shown):
        for p in (1, 33, 152, 263):  # nose tip, eye corners, chin
            x, y = np.floor(track60.landmarks[i, p, :2]).astype(int)
            np.testing.assert_allclose(preview[k, y, x], green)
        # Far from the face the frame is untouched.
        np.testing.assert_allclose(preview[k, 5, 5], frames60[i, 5, 5] / 255.0)
    # In the side panel, bar lengths are proportional to the values.
    panel = draw_coefficient_panel(512, np.array([0.25, 0.5, 1.0]), ("a", "b", "c"), "frame 0")
    is_bar = np.all(panel == np.array(BAR_COLOR, np.uint8), axis=-1)
    lengths = sorted({int(n) for n in is_bar.sum(axis=1) if n > 0})
    assert len(lengths) == 3 and lengths[0] * 2 == pytest.approx(lengths[1], abs=2)
    assert lengths[1] * 2 == pytest.approx(lengths[2], abs=2)


def test_preview_marks_filled_frames(clip60, track60: FaceTrack):
    found = track60.face_found.copy()
    found[0] = False
    fake = dataclasses.replace(track60, face_found=found)
    preview = draw_face_preview(clip60, fake, 2)
    x, y = np.floor(fake.landmarks[0, 1, :2]).astype(int)
    np.testing.assert_allclose(preview[0, y, x], np.array(FILLED_COLOR) / 255.0)


# -------------------------------------------------------------------------------------------------- node
def test_capture_blendshapes_node(clip60, shared_models: Path, monkeypatch: pytest.MonkeyPatch):
    import torch

    from pack_loader import load_pack

    monkeypatch.setenv("SYNCTALK_MODELS_DIR", str(shared_models))
    pack = load_pack()
    node_cls = pack.NODE_CLASS_MAPPINGS["SyncTalkCaptureBlendshapes"]
    assert pack.NODE_DISPLAY_NAME_MAPPINGS["SyncTalkCaptureBlendshapes"] == "CaptureBlendshapes"
    spec = node_cls.INPUT_TYPES()["required"]
    assert spec["max_gap"][1]["default"] == 5 and spec["preview_frames"][1]["default"] == 8
    track, preview, report = getattr(node_cls(), node_cls.FUNCTION)(clip=clip60, max_gap=5, smoothing="one_euro",
                                                                    preview_frames=3)
    assert isinstance(track, FaceTrack) and track.num_frames == 60
    assert isinstance(preview, torch.Tensor) and preview.shape[0] == 3 and preview.shape[-1] == 3
    assert preview.dtype == torch.float32
    assert "Face found in 60 of 60 frames" in report and "Blinks: 1 (peaks at frames 7)" in report
    with pytest.raises(InputError, match="SYNCTALK_CLIP"):
        getattr(node_cls(), node_cls.FUNCTION)(clip="not a clip", max_gap=5, smoothing="none", preview_frames=3)
