"""Portrait-Sync blending: mask geometry, identity, seam colour matching, neck-gap fill, full-resolution paste."""
from __future__ import annotations

import numpy as np
import pytest

from face_fixtures import synthetic_landmarks
from synctalk_lib.face import indices
from synctalk_lib.portrait.blend import (BlendSettings, blend_frame, face_mask, neck_colour, paste_full_resolution,
                                         prepare_render)

H = W = 128


def _frame(colour) -> np.ndarray:
    return np.broadcast_to(np.array(colour, np.float32), (H, W, 3)).copy()


def test_face_mask_covers_the_oval_and_extends_below_the_chin():
    lms = synthetic_landmarks()
    mask = face_mask(lms, H, W, chin_extension=0.0)
    assert mask[64, 64] == 1 and mask[64, 64 + 28] == 1 and mask[64, 64 + 33] == 0 and mask[5, 5] == 0
    chin_row = int(lms[indices.CHIN, 1])
    extended = face_mask(lms, H, W, chin_extension=9.0)
    below = chin_row + 2  # 9 px at 512 = 2.25 px at 128
    assert mask[below, 64] == 0 and extended[below, 64] == 1
    assert extended.sum() > mask.sum()


def test_identical_render_returns_the_original():
    original = np.random.default_rng(0).uniform(0.2, 0.8, (H, W, 3)).astype(np.float32)
    out = blend_frame(original.copy(), np.ones((H, W), np.float32), original, synthetic_landmarks())
    np.testing.assert_allclose(out, original, atol=1e-6)


def test_pixels_away_from_the_face_come_from_the_original():
    original, render = _frame([0.1, 0.5, 0.9]), _frame([0.9, 0.1, 0.1])
    out = blend_frame(render, None, original, synthetic_landmarks(), BlendSettings(color_match=False))
    np.testing.assert_array_equal(out[2, 2], original[2, 2])
    np.testing.assert_allclose(out[64, 64], render[64, 64], atol=1e-6)  # face centre: all render
    edge = out[64, 64 + 30]  # on the oval: a soft mix of both
    assert 0.1 < edge[0] < 0.9


def test_seam_colour_matching_removes_a_small_offset():
    original = _frame([0.5, 0.4, 0.3])
    render = original + 0.05
    out = blend_frame(render, np.ones((H, W), np.float32), original, synthetic_landmarks(),
                      BlendSettings(color_match=True, neck_fill=False))
    np.testing.assert_allclose(out[64, 64], original[64, 64], atol=1e-3)
    plain = blend_frame(render, np.ones((H, W), np.float32), original, synthetic_landmarks(),
                        BlendSettings(color_match=False, neck_fill=False))
    np.testing.assert_allclose(plain[64, 64], render[64, 64], atol=1e-6)


def test_colour_shift_is_bounded():
    original = _frame([0.9, 0.9, 0.9])
    render = _frame([0.1, 0.1, 0.1])
    fixed, _ = prepare_render(render, np.ones((H, W), np.float32), original, synthetic_landmarks(),
                              BlendSettings(max_color_shift=0.08, neck_fill=False))
    np.testing.assert_allclose(fixed[64, 64], [0.18] * 3, atol=1e-5)


def test_neck_gap_is_filled_with_the_average_neck_colour():
    lms = synthetic_landmarks()
    neck = np.array([0.8, 0.6, 0.5], np.float32)
    original = _frame([0.2, 0.2, 0.2])
    chin_row = int(lms[indices.CHIN, 1])
    original[chin_row + 1:, :] = neck  # neck below the chin
    render = _frame([0.0, 0.0, 0.0])  # renderer background (black) ...
    alpha = np.ones((H, W), np.float32)
    alpha[chin_row - 8:, :] = 0.0  # ... shows where the rendered jaw ends above the reference chin
    np.testing.assert_allclose(neck_colour(original, lms), neck, atol=1e-6)
    settings = BlendSettings(color_match=False)
    filled = blend_frame(render, alpha, original, lms, settings)
    gap = filled[chin_row - 4, 64]
    np.testing.assert_allclose(gap, neck, atol=0.02)
    unfilled = blend_frame(render, alpha, original, lms, BlendSettings(color_match=False, neck_fill=False))
    assert unfilled[chin_row - 4, 64].max() < 0.1, "without the fill the gap shows the dark renderer background"


def test_render_size_mismatch_is_a_clear_error():
    with pytest.raises(ValueError, match="render at the reference clip's size"):
        blend_frame(np.zeros((64, 64, 3), np.float32), None, _frame([0, 0, 0]), synthetic_landmarks())


def test_full_resolution_paste_only_touches_the_masked_crop():
    full = np.random.default_rng(1).uniform(0, 1, (300, 400, 3)).astype(np.float32)
    render = _frame([1.0, 0.0, 0.0])
    mask = np.zeros((H, W), np.float32)
    mask[32:96, 32:96] = 1.0
    box = (100, 20, 356, 276)  # 256x256 in source pixels = 2x upscale
    out = paste_full_resolution(full, render, box, mask)
    np.testing.assert_array_equal(out[:20], full[:20])
    np.testing.assert_array_equal(out[276:], full[276:])
    np.testing.assert_array_equal(out[:, :100], full[:, :100])
    np.testing.assert_allclose(out[20 + 128, 100 + 128], [1.0, 0.0, 0.0], atol=1e-5)
    np.testing.assert_allclose(out[20 + 10, 100 + 10], full[20 + 10, 100 + 10], atol=1e-6)
