"""Person silhouette from a static background: GrabCut seeded by background difference and the face oval."""
from __future__ import annotations

import numpy as np

from face_fixtures import synthetic_landmarks
from synctalk_lib.portrait.silhouette import person_silhouette


def _scene(seed: int = 0):
    rng = np.random.default_rng(seed)
    h, w = 160, 128
    yy, xx = np.mgrid[0:h, 0:w]
    background = np.stack([0.3 + 0.2 * np.sin(xx / 9.0), 0.5 + 0.1 * np.cos(yy / 7.0), 0.6 + 0 * xx], -1)
    background = (background + rng.normal(0, 0.01, background.shape)).clip(0, 1).astype(np.float32)
    head = ((xx - 64) / 30.0) ** 2 + ((yy - 64) / 40.0) ** 2 <= 1.0
    torso = (yy >= 120) & (np.abs(xx - 64) <= 50)
    neck = (yy >= 95) & (yy < 125) & (np.abs(xx - 64) <= 14)
    person = head | torso | neck
    frame = background.copy()
    frame[head | neck] = [0.85, 0.65, 0.55]
    frame[torso] = [0.15, 0.2, 0.45]
    frame = (frame + rng.normal(0, 0.01, frame.shape)).clip(0, 1).astype(np.float32)
    return frame, background, person


def _iou(a, b):
    return (a & b).sum() / max((a | b).sum(), 1)


def test_silhouette_recovers_the_person():
    frame, background, person = _scene()
    mask = person_silhouette(frame, background, synthetic_landmarks(64, 64, 30, 40)) > 0.5
    assert _iou(mask, person) > 0.9


def test_silhouette_works_without_landmarks_and_ignores_specks():
    frame, background, person = _scene(1)
    frame[5:8, 5:8] = [1.0, 1.0, 1.0]  # a flicker far from the person
    mask = person_silhouette(frame, background) > 0.5
    assert _iou(mask, person) > 0.85
    assert not mask[5:8, 5:8].any()


def test_identical_frame_and_background_give_an_empty_silhouette():
    _, background, _ = _scene()
    assert person_silhouette(background, background).sum() == 0
