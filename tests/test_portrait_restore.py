"""Detail restoration: real detail where the render agrees with the reference frame, the render's own shape where
the audio drives it, and never a sharpening of its own."""
from __future__ import annotations

import cv2
import numpy as np

from synctalk_lib.portrait.restore import DetailSettings, agreement, low_pass, restore_detail

S = 128


def _texture(seed: int = 0) -> np.ndarray:
    """A smooth face-like colour field with fine texture on top (the 'real' frame)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:S, 0:S] / S
    base = np.stack([0.6 + 0.1 * xx, 0.45 + 0.1 * yy, 0.4 + 0.05 * xx * yy], -1)
    return np.clip(base + rng.normal(0, 0.04, (S, S, 3)), 0, 1).astype(np.float32)


def _blur(image: np.ndarray, sigma: float = 2.0) -> np.ndarray:
    return cv2.GaussianBlur(image, (0, 0), sigma)


def test_identical_render_is_untouched():
    real = _texture()
    np.testing.assert_allclose(restore_detail(real, real, np.zeros((S, S), np.float32)), real, atol=1e-6)
    np.testing.assert_allclose(restore_detail(real, real, np.ones((S, S), np.float32)), real, atol=1e-5)


def test_soft_render_gets_the_real_detail_back():
    real = _texture()
    soft = _blur(real)
    restored = restore_detail(soft, real, np.zeros((S, S), np.float32))
    assert np.abs(restored - real).mean() < 0.15 * np.abs(soft - real).mean()
    inside = restore_detail(soft, real, np.ones((S, S), np.float32))  # mouth: shape kept, detail restored
    assert np.abs(inside - real).mean() < 0.5 * np.abs(soft - real).mean()


def test_a_changed_shape_in_the_mouth_stays_the_render():
    """A dark mouth opening the reference frame does not have: its low frequencies are the render's."""
    real = _texture()
    render = _blur(real).copy()
    render[60:80, 40:90] = 0.1  # the rendered mouth is open, the reference one closed
    mouth = np.zeros((S, S), np.float32)
    mouth[40:100, 20:110] = 1.0
    restored = restore_detail(render, real, mouth)
    settings = DetailSettings()
    sigma = settings.sigma * S / 512
    np.testing.assert_allclose(low_pass(restored, sigma)[64:76, 50:80], low_pass(render, sigma)[64:76, 50:80],
                               atol=0.02)
    assert restored[65:75, 50:80].mean() < 0.2


def test_outside_the_mouth_a_different_render_keeps_its_own_content():
    """Where the render differs (another expression), agreement is low and the render is kept."""
    real = _texture()
    render = real.copy()
    render[10:40, 10:60] = [0.2, 0.3, 0.8]
    a, _, _ = agreement(render, real)
    assert a[25, 35] < 0.01 and a[100, 100] > 0.99
    restored = restore_detail(render, real, np.zeros((S, S), np.float32))
    np.testing.assert_allclose(restored[20:30, 20:50], render[20:30, 20:50], atol=1e-3)


def test_no_sharpening_of_its_own():
    """With a flat reference there is no detail to restore: the output is never sharper than its inputs."""
    flat = np.full((S, S, 3), 0.5, np.float32)
    render = _blur(_texture(1), 1.0) * 0.2 + 0.4
    for mouth in (np.zeros((S, S), np.float32), np.ones((S, S), np.float32)):
        restored = restore_detail(render, flat, mouth)
        lap = cv2.Laplacian(cv2.cvtColor(restored, cv2.COLOR_RGB2GRAY), cv2.CV_32F).var()
        assert lap <= cv2.Laplacian(cv2.cvtColor(render, cv2.COLOR_RGB2GRAY), cv2.CV_32F).var() + 1e-6
