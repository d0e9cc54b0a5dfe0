"""Subject regions and the clean background, on the synthetic subject (exact silhouettes known)."""
from __future__ import annotations

import numpy as np
import pytest

from synctalk_lib.face import regions as R
from synctalk_lib.face.regions import FaceRegions, Rect, square_rect
from synctalk_lib.portrait.background import clean_background, frame_background, masked_median
from tests.nerf_fixtures import make_subject


@pytest.fixture(scope="module")
def subject(tmp_path_factory):
    return make_subject(tmp_path_factory.mktemp("regions"), num_frames=36, size=64)


def test_rect_contains_matches_mask():
    rect = Rect(3, 9, 2, 7)
    mask = rect.mask(12, 12)
    rows, cols = np.mgrid[0:12, 0:12]
    assert np.array_equal(rect.contains(rows, cols), mask)
    assert mask.sum() == 6 * 5
    assert Rect(-4, 3, 10, 20).clamped(12, 12).as_tuple() == (0, 3, 10, 12)


def test_square_rect_like_the_original():
    pts = np.array([[10.0, 20.0], [30.0, 26.0]])  # 20 wide, 6 tall
    rect = square_rect(pts, 100, 100)
    assert rect.as_tuple() == (23 - 11, 23 + 11, 20 - 11, 20 + 11)
    assert rect.height == rect.width == 22
    assert rect.contains(pts[:, 1].astype(int), pts[:, 0].astype(int)).all()
    # clamped at the image border
    assert square_rect(pts - 15, 100, 100).r0 == 0


def test_lip_square_contains_the_lip_landmarks(subject):
    regions = FaceRegions.from_track(subject.track)
    for i in range(subject.track.num_frames):
        rect = regions.lips_rect(i)
        lips = regions.points(i, R.LIPS)
        assert rect.contains(np.floor(lips[:, 1]).astype(int), np.floor(lips[:, 0]).astype(int)).all(), i
        assert abs(rect.height - rect.width) <= 1
        # and it is a tight square: not much larger than the lips
        span = np.ptp(lips, axis=0).max()
        assert rect.height <= 1.1 * span + 3


def test_head_mask_covers_the_true_head_and_is_not_the_whole_image(subject):
    regions = FaceRegions.from_track(subject.track)
    for i in range(subject.track.num_frames):
        head = regions.head_mask(i)
        truth = subject.head_masks[i]
        assert not (truth & ~head).any(), f"frame {i}: head pixels outside the head region"
        assert head.sum() < 2.5 * truth.sum()


def test_region_layout_is_anatomical(subject):
    regions = FaceRegions.from_track(subject.track)
    i = 0
    eye, lips = regions.eye_rect(i), regions.lips_rect(i)
    lower, upper = regions.lower_face_rect(i), regions.upper_face_rect(i)
    assert eye.r1 <= lips.r0, "eyes above the lips"
    assert upper.r1 == lower.r0, "upper and lower face split at the nose tip"
    assert lower.contains(np.array([lips.r0 + lips.height // 2]), np.array([lips.c0 + lips.width // 2]))[0]
    neck = regions.neck_mask(i)
    face = regions.face_mask(i)
    assert neck.any() and not (neck & face).any()
    neck_rows = np.flatnonzero(neck.any(axis=1))
    face_rows = np.flatnonzero(face.any(axis=1))
    assert neck_rows.mean() > face_rows.max() - 2, "neck below the jaw"
    assert regions.lower_face_mask(i).sum() < face.sum()
    assert regions.lips_mask(i).any()


def test_resized_regions_scale_consistently(subject):
    regions = FaceRegions.from_track(subject.track)
    big = regions.resized(128, 128)
    a, b = regions.lips_rect(3), big.lips_rect(3)
    assert abs(b.r0 - 2 * a.r0) <= 2 and abs(b.c1 - 2 * a.c1) <= 2
    assert abs(big.head_mask(3).sum() - 4 * regions.head_mask(3).sum()) < 0.08 * big.head_mask(3).sum()


def test_masked_median_ignores_invalid_samples():
    frames = np.zeros((5, 2, 2, 3), np.uint8)
    frames[:, 0, 0] = np.array([10, 200, 20, 30, 250])[:, None]
    valid = np.ones((5, 2, 2), bool)
    valid[[1, 4], 0, 0] = False  # the two bright samples are "head"
    med, count = masked_median(frames, valid)
    assert med[0, 0, 0] == 20 and count[0, 0] == 3
    valid[:, 1, 1] = False
    med, count = masked_median(frames, valid)
    assert count[1, 1] == 0 and med[1, 1].tolist() == [0, 0, 0]


def test_background_never_contains_head_pixels(subject):
    regions = FaceRegions.from_track(subject.track)
    bg = clean_background(subject.clip, regions, max_samples=36)
    truth = subject.background.astype(int)
    err = np.abs(bg.image.astype(int) - truth).max(axis=-1)
    ever_head = subject.head_masks.any(axis=0)
    # pixels taken from observations are exactly the true background, and none of them was ever head
    assert err[bg.observed].max() <= 1
    assert not (bg.observed & ever_head).any()
    # filled pixels are made from background colours: close to the background around them, far from skin
    assert 0.0 < bg.filled_fraction < 0.6
    assert np.median(err[~bg.observed]) < 25
    head_colours = np.concatenate([subject.clip.frame(i)[subject.head_masks[i]] for i in range(0, 36, 6)])
    skin = np.median(head_colours, axis=0)
    filled = bg.image[~bg.observed].astype(int)
    to_skin = np.abs(filled - skin).max(axis=-1)
    assert err[~bg.observed].mean() < 0.5 * to_skin.mean(), "filled pixels look like the head, not the background"


def test_frame_background_keeps_the_frame_outside_the_head(subject):
    regions = FaceRegions.from_track(subject.track)
    bg = clean_background(subject.clip, regions)
    frame = subject.clip.frame(7)
    head = regions.head_mask(7)
    out = frame_background(frame, head, bg.image)
    assert np.array_equal(out[~head], frame[~head])
    assert np.array_equal(out[head], bg.image[head])
    assert not (subject.head_masks[7] & (out == frame).all(-1) & ~(frame == bg.image).all(-1)).any()


def test_convex_hull_keeps_only_the_corners():
    from synctalk_lib.face.regions import _convex_hull

    rng = np.random.default_rng(0)
    corners = np.array([[0, 0], [10, 0], [10, 5], [0, 5]], np.float32)
    inner = rng.uniform([1, 1], [9, 4], size=(50, 2)).astype(np.float32)
    hull = _convex_hull(np.concatenate([inner, corners, corners[:2]]))
    assert sorted(map(tuple, hull.tolist())) == sorted(map(tuple, corners.tolist()))
    assert len(_convex_hull(corners[:2])) == 2
