"""Portrait-Sync blending: regions from the camera and the face geometry (one jaw line whatever the reference mouth
does), identity, seam colour matching, detail restoration, neck-gap fill, full-resolution paste."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from geometry_fixtures import SIZE, head_scene
from synctalk_lib.errors import InputError
from synctalk_lib.face.indices import CHIN
from synctalk_lib.portrait.blend import (BlendSettings, alpha_masks, blend_frame, paste_full_resolution, pose_masks,
                                         prepare_render, soft_mask)
from synctalk_lib.pose.face_geometry import FaceGeometry, PoseRegions

PLAIN = BlendSettings(color_match=False, neck_fill=False, restore_detail=False, paste="face")


@pytest.fixture(scope="module")
def scene():
    _, track, pose = head_scene(jaw_mm=np.linspace(0, 8, 40))
    regions = PoseRegions.for_size(FaceGeometry.from_track(track, pose), pose, SIZE, SIZE)
    return regions, pose


def _frame(colour) -> np.ndarray:
    return np.broadcast_to(np.array(colour, np.float32), (SIZE, SIZE, 3)).copy()


def test_face_region_reaches_below_the_widest_open_chin(scene):
    regions, pose = scene
    for n in (0, 20, 39):
        masks = pose_masks(regions, pose.c2w[n])
        chin = regions.project(regions.geometry.lower_face_reach()[[468 + CHIN]], pose.c2w[n])[0]
        assert masks.face[int(chin[1]) + 1, int(chin[0])], "a jaw opening this wide must be pasted, not cut off"
        assert masks.mouth_row < chin[1] and masks.neck_band[0] > chin[1]
        assert (masks.mouth > 0.5).sum() < masks.face.sum()
        assert masks.chin[int(chin[1]) + 1, int(chin[0])], "the mouth-only paste reaches as low"


def test_identical_render_returns_the_original(scene):
    regions, pose = scene
    original = np.random.default_rng(0).uniform(0.2, 0.8, (SIZE, SIZE, 3)).astype(np.float32)
    out = blend_frame(original.copy(), np.ones((SIZE, SIZE), np.float32), original, pose_masks(regions, pose.c2w[5]))
    np.testing.assert_allclose(out, original, atol=1e-5)


def test_pixels_away_from_the_face_come_from_the_original(scene):
    regions, pose = scene
    masks = pose_masks(regions, pose.c2w[5])
    original, render = _frame([0.1, 0.5, 0.9]), _frame([0.9, 0.1, 0.1])
    out = blend_frame(render, None, original, masks, PLAIN)
    np.testing.assert_array_equal(out[2, 2], original[2, 2])
    rows, cols = np.nonzero(masks.face)
    centre = int(rows.mean()), int(cols.mean())
    np.testing.assert_allclose(out[centre], render[centre], atol=1e-6)
    assert 0.0 < soft_mask(masks.face, 9, 4.0).min() + 1 and 0.1 < out[rows.min() + 1, int(cols.mean()), 0] < 0.9


def test_mouth_paste_keeps_the_reference_upper_face(scene):
    """paste="mouth": the render shows only lips, chin and the jaw between the cheeks (down to the widest-open
    chin); eyes, forehead, cheeks and jaw corners are the reference frame's pixels, exactly."""
    regions, pose = scene
    masks = pose_masks(regions, pose.c2w[5])
    original, render = _frame([0.1, 0.5, 0.9]), _frame([0.9, 0.1, 0.1])
    out = blend_frame(render, None, original, masks, dataclasses.replace(PLAIN, paste="mouth"))
    chin = masks.chin
    assert not (chin & ~(masks.mouth > 0.5)).any() and not (chin & ~masks.face).any()
    upper = masks.face & (np.arange(SIZE)[:, None] < np.nonzero(chin)[0].min() - 8)
    assert upper.sum() > 50
    np.testing.assert_array_equal(out[upper], original[upper])
    rows, cols = np.nonzero(chin)
    np.testing.assert_allclose(out[int(rows.mean()), int(cols.mean())], render[0, 0], atol=1e-6)
    with pytest.raises(InputError, match="paste"):
        blend_frame(render, None, original, masks, dataclasses.replace(PLAIN, paste="hair"))


def test_seam_colour_matching_removes_a_small_offset(scene):
    regions, pose = scene
    masks = pose_masks(regions, pose.c2w[5])
    original = _frame([0.5, 0.4, 0.3])
    render = original + 0.05
    rows, cols = np.nonzero(masks.face)
    centre = int(rows.mean()), int(cols.mean())
    settings = BlendSettings(neck_fill=False, restore_detail=False)
    out = blend_frame(render, np.ones((SIZE, SIZE), np.float32), original, masks, settings)
    np.testing.assert_allclose(out[centre], original[centre], atol=1e-3)
    plain = blend_frame(render, np.ones((SIZE, SIZE), np.float32), original, masks, PLAIN)
    np.testing.assert_allclose(plain[centre], render[centre], atol=1e-6)
    far = _frame([0.1, 0.1, 0.1])
    fixed, _, _ = prepare_render(far, np.ones((SIZE, SIZE), np.float32), _frame([0.9] * 3), masks,
                                 BlendSettings(max_color_shift=0.08, neck_fill=False, restore_detail=False))
    np.testing.assert_allclose(fixed, 0.18, atol=1e-5)  # the shift is bounded


def test_detail_comes_back_where_the_render_agrees(scene):
    regions, pose = scene
    masks = pose_masks(regions, pose.c2w[5])
    import cv2

    original = np.clip(0.5 + np.random.default_rng(2).normal(0, 0.05, (SIZE, SIZE, 3)), 0, 1).astype(np.float32)
    soft = cv2.GaussianBlur(original, (0, 0), 2.0)
    with_detail = blend_frame(soft, np.ones((SIZE, SIZE), np.float32), original, masks,
                              BlendSettings(neck_fill=False, color_match=False))
    inside = masks.face & (masks.mouth < 0.01)
    assert np.abs(with_detail - original)[inside].mean() < 0.2 * np.abs(soft - original)[inside].mean()


def test_neck_gap_is_filled_with_the_reference_neck_colour(scene):
    regions, pose = scene
    masks = pose_masks(regions, pose.c2w[5])
    neck = np.array([0.8, 0.6, 0.5], np.float32)
    original = _frame([0.2, 0.2, 0.2])
    r0, r1, c0, c1 = masks.neck_band
    original[r0:r1, c0:c1] = neck
    render = _frame([0.0, 0.0, 0.0])
    alpha = np.ones((SIZE, SIZE), np.float32)
    gap_row = int(masks.mouth_row) + 12
    alpha[gap_row - 2:, :] = 0.0  # the rendered jaw ends here, above the lowest chin
    col = (c0 + c1) // 2
    assert masks.face[gap_row, col]
    filled = blend_frame(render, alpha, original, masks, BlendSettings(color_match=False, restore_detail=False))
    np.testing.assert_allclose(filled[gap_row, col], neck, atol=0.03)
    unfilled = blend_frame(render, alpha, original, masks, PLAIN)
    assert unfilled[gap_row, col].max() < 0.1, "without the fill the gap shows the dark renderer background"


def test_without_a_face_geometry_the_alpha_is_the_mask():
    alpha = np.zeros((64, 64), np.float32)
    alpha[10:50, 10:50] = 1.0
    masks = alpha_masks(alpha)
    assert masks.face[30, 30] and not masks.face[10, 10] and not masks.face[5, 5]


def test_render_size_mismatch_is_a_clear_error(scene):
    regions, pose = scene
    with pytest.raises(ValueError, match="render at the reference clip's size"):
        blend_frame(np.zeros((64, 64, 3), np.float32), None, _frame([0, 0, 0]), pose_masks(regions, pose.c2w[0]))


def test_full_resolution_paste_only_touches_the_masked_crop():
    full = np.random.default_rng(1).uniform(0, 1, (300, 400, 3)).astype(np.float32)
    render = np.broadcast_to(np.array([1.0, 0.0, 0.0], np.float32), (128, 128, 3)).copy()
    mask = np.zeros((128, 128), np.float32)
    mask[32:96, 32:96] = 1.0
    box = (100, 20, 356, 276)  # 256x256 in source pixels = 2x upscale
    out = paste_full_resolution(full, render, box, mask)
    np.testing.assert_array_equal(out[:20], full[:20])
    np.testing.assert_array_equal(out[276:], full[276:])
    np.testing.assert_array_equal(out[:, :100], full[:, :100])
    np.testing.assert_allclose(out[20 + 128, 100 + 128], [1.0, 0.0, 0.0], atol=1e-5)
    np.testing.assert_allclose(out[20 + 10, 100 + 10], full[20 + 10, 100 + 10], atol=1e-6)
    # with detail restoration the source's own fine texture comes back where the (lower-resolution) render agrees
    import cv2

    yy, xx = np.mgrid[0:300, 0:400] / 400.0
    smooth = np.stack([0.5 + 0.2 * xx, 0.4 + 0.2 * yy, 0.45 + 0.1 * xx], -1)
    textured = np.clip(smooth + np.random.default_rng(3).normal(0, 0.03, smooth.shape), 0, 1).astype(np.float32)
    low = cv2.resize(textured[20:276, 100:356], (128, 128), interpolation=cv2.INTER_AREA)
    inside = (slice(20 + 80, 20 + 176), slice(100 + 80, 100 + 176))
    plain = paste_full_resolution(textured, low, box, mask)
    restored = paste_full_resolution(textured, low, box, mask, mouth=np.zeros((128, 128), np.float32),
                                     detail=BlendSettings().detail)
    assert np.abs(restored - textured)[inside].mean() < 0.3 * np.abs(plain - textured)[inside].mean()


@pytest.mark.parametrize("paste", ["mouth", "face"])
def test_blending_inside_the_work_box_equals_blending_the_whole_frame(scene, paste):
    """The box only saves work: every step done on the whole frame (the oracle) gives the same frame."""
    from synctalk_lib.portrait.blend import colour_shift, fill_neck_gap, work_box
    from synctalk_lib.portrait.restore import restore_detail

    regions, pose = scene
    rng = np.random.default_rng(3)
    masks = pose_masks(regions, pose.c2w[4])
    original = np.clip(0.5 + rng.normal(0, 0.08, (SIZE, SIZE, 3)), 0, 1).astype(np.float32)
    render = np.clip(original * 0.9 + 0.05 + rng.normal(0, 0.03, (SIZE, SIZE, 3)), 0, 1).astype(np.float32)
    alpha = np.clip(rng.uniform(0.6, 1.4, (SIZE, SIZE)), 0, 1).astype(np.float32)
    settings = BlendSettings(paste=paste)
    out = blend_frame(render, alpha, original, masks, settings)

    face = masks.chin if paste == "mouth" else masks.face
    whole = dataclasses.replace(masks, face=face)
    ref = fill_neck_gap(render, alpha, whole, original)
    ref = np.clip(ref + colour_shift(ref, original, face, alpha > 0.5, settings.max_color_shift), 0, 1)
    ref = restore_detail(ref, original, masks.mouth, settings.detail)
    m = soft_mask(face, settings.blur_kernel, settings.blur_sigma)[..., None]
    np.testing.assert_allclose(out, ref * m + original * (1 - m), atol=2e-3)
    rows, cols = work_box(face, settings)
    assert (rows.stop - rows.start) * (cols.stop - cols.start) < SIZE * SIZE or paste == "face"
