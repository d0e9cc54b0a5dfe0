"""Sharpness metrics on synthetic images: the Laplacian-variance ratio measures how much detail there is, the
high-pass correlation whether it is the real detail; a sharpening filter moves the first and not the second."""
from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.ndimage as ndimage

from synctalk_lib.face.indices import FACE_OVAL
from synctalk_lib.metrics.sharpness import (face_box, face_boxes, frame_sharpness, gaussian_blur, grey, high_pass,
                                            laplacian, laplacian_ratio, sharpness)


def natural_texture(size: int = 128, seed: int = 0) -> np.ndarray:
    """Grey image in 0.2..0.8 with a 1/f amplitude spectrum and random phases (the statistics of natural images)."""
    rng = np.random.default_rng(seed)
    fy, fx = np.fft.fftfreq(size)[:, None], np.fft.fftfreq(size)[None, :]
    f = np.hypot(fx, fy)
    f[0, 0] = 1.0
    spectrum = (rng.normal(size=(size, size)) + 1j * rng.normal(size=(size, size))) / f
    spectrum[0, 0] = 0.0
    image = np.real(np.fft.ifft2(spectrum))
    return 0.2 + 0.6 * (image - image.min()) / (image.max() - image.min())


def low_resolution(image: np.ndarray, factor: int = 4) -> np.ndarray:
    """What a renderer trained at 1/factor of the size shows after upscaling: block means, bilinear upsampling."""
    h, w = image.shape
    small = image.reshape(h // factor, factor, w // factor, factor).mean(axis=(1, 3))
    return ndimage.zoom(small, factor, order=1, mode="nearest")


def unsharp(image: np.ndarray, sigma: float = 2.0, amount: float = 4.0) -> np.ndarray:
    return image + amount * (image - gaussian_blur(image, sigma))


BOX = (16, 16, 112, 112)


def test_filters_match_scipy():
    image = natural_texture(64)
    for sigma in (1.0, 1.5, 2.0):
        # numpy's "reflect" padding is scipy's "mirror"; the kernel radius is ceil(3 sigma) = scipy's truncate=3
        expected = ndimage.gaussian_filter(image, sigma, mode="mirror", truncate=3.0)
        assert np.abs(gaussian_blur(image, sigma) - expected).max() < 1e-12
    assert np.abs(laplacian(image) - ndimage.laplace(image)[1:-1, 1:-1]).max() < 1e-12
    assert np.abs(high_pass(image, 2.0) - (image - gaussian_blur(image, 2.0))).max() == 0


def test_grey_is_bt601_luma_of_uint8_or_float():
    rgb = np.zeros((2, 2, 3), np.uint8)
    rgb[0, 0] = (255, 0, 0)
    rgb[0, 1] = (0, 255, 0)
    rgb[1, 0] = (0, 0, 255)
    rgb[1, 1] = (255, 255, 255)
    assert grey(rgb) == pytest.approx(np.array([[0.299, 0.587], [0.114, 1.0]]))
    assert grey(rgb.astype(np.float32) / 255.0) == pytest.approx(grey(rgb))
    with pytest.raises(ValueError, match="RGB"):
        grey(np.zeros((4, 4, 2)))


def test_identical_frames_score_one():
    image = natural_texture()
    assert frame_sharpness(image, image, BOX) == pytest.approx((1.0, 1.0))
    rgb = np.repeat(image[..., None], 3, axis=2)
    result = sharpness(np.stack([rgb, rgb]), np.stack([rgb, rgb]), [BOX, BOX])
    assert result.laplacian_ratio == pytest.approx(1.0) and result.highpass_correlation == pytest.approx(1.0)
    assert result.per_frame_ratio == pytest.approx((1.0, 1.0)) and result.sigma == 2.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_soft_frames_score_below_one(seed):
    real = natural_texture(seed=seed)
    for soft in (gaussian_blur(real, 1.5), low_resolution(real)):
        ratio, corr = frame_sharpness(soft, real, BOX)
        assert ratio < 0.1 and corr < 0.7
        assert ratio == pytest.approx(laplacian_ratio(soft, real, BOX))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sharpening_does_not_count_as_real_detail(seed):
    """A renderer's missing detail (low resolution, upscaled) sharpened: far more Laplacian variance, no better
    correlation with the real detail. The real frame keeps its lead."""
    real = natural_texture(seed=seed)
    soft = low_resolution(real)
    sharpened = unsharp(soft)
    ratio_soft, corr_soft = frame_sharpness(soft, real, BOX)
    ratio_sharp, corr_sharp = frame_sharpness(sharpened, real, BOX)
    assert ratio_sharp > 10 * ratio_soft
    assert corr_sharp <= corr_soft + 0.01
    assert corr_sharp < 0.5 < frame_sharpness(real, real, BOX)[1]


@pytest.mark.parametrize("seed", [0, 1])
def test_made_up_detail_raises_the_ratio_and_lowers_the_correlation(seed):
    """Noise as fine as the real detail: the Laplacian ratio comes near the real frame's, the correlation falls."""
    real = natural_texture(seed=seed)
    soft = low_resolution(real)
    noisy = soft + np.random.default_rng(9).normal(0.0, 0.02, soft.shape)
    ratio_soft, corr_soft = frame_sharpness(soft, real, BOX)
    ratio_noisy, corr_noisy = frame_sharpness(noisy, real, BOX)
    assert ratio_noisy > 0.2 > ratio_soft
    assert corr_noisy < 0.6 * corr_soft


def test_real_detail_added_back_raises_the_correlation():
    """Adding the real frame's own missing detail (what a better renderer does) raises both numbers."""
    real = natural_texture()
    soft = low_resolution(real)
    better = soft + 0.5 * (real - soft)
    ratio_soft, corr_soft = frame_sharpness(soft, real, BOX)
    ratio_better, corr_better = frame_sharpness(better, real, BOX)
    assert ratio_better > ratio_soft and corr_better > corr_soft + 0.2


def test_only_the_box_counts():
    real = natural_texture()
    out = low_resolution(real)
    wild = out.copy()
    margin = 7  # the high-pass blur sees ceil(3 sigma) = 6 px around the box
    wild[:BOX[1] - margin] = np.random.default_rng(0).random(wild[:BOX[1] - margin].shape)
    wild[BOX[3] + margin:] = 0.0
    wild[:, :BOX[0] - margin] = 1.0
    assert frame_sharpness(wild, real, BOX) == pytest.approx(frame_sharpness(out, real, BOX), abs=1e-12)
    assert frame_sharpness(wild, real) != pytest.approx(frame_sharpness(out, real))
    # too small a box, or a real frame without detail: NaN, left out of the summary
    assert all(math.isnan(v) for v in frame_sharpness(out, real, (10, 10, 14, 40)))
    flat = np.full_like(real, 0.5)
    rgb = [np.repeat(image[..., None], 3, axis=2) for image in (out, flat, real)]
    result = sharpness(np.stack([rgb[0], rgb[1]]), np.stack([rgb[2], rgb[1]]))
    assert math.isnan(result.per_frame_ratio[1])
    assert result.laplacian_ratio == pytest.approx(result.per_frame_ratio[0])


def test_face_box_is_the_face_oval_bounding_box():
    landmarks = np.full((478, 3), 50.0)
    oval = np.array(FACE_OVAL)
    landmarks[oval, 0] = np.linspace(30.2, 90.7, len(oval))
    landmarks[oval, 1] = np.linspace(40.0, 120.5, len(oval))[::-1]
    landmarks[0] = (0.0, 0.0, 0.0)  # not on the oval (upper lip): ignored
    assert face_box(landmarks, 100, 128) == (30, 40, 92, 100)  # x1 = ceil(90.7) + 1, y1 clipped to the height
    assert face_boxes(np.stack([landmarks, landmarks]), 100, 128) == [(30, 40, 92, 100)] * 2


def test_shape_errors_name_the_inputs():
    with pytest.raises(ValueError, match="same size"):
        frame_sharpness(np.zeros((10, 10)), np.zeros((10, 12)))
    with pytest.raises(ValueError, match="2 face boxes for 1 frames"):
        sharpness(np.zeros((1, 16, 16, 3)), np.zeros((1, 16, 16, 3)), [BOX, BOX])
