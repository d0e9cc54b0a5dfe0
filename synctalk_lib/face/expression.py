"""The upper-face expression coefficients that drive the renderer, chosen here and nowhere else.

SyncTalk feeds the NeRF a small vector of blendshape scores per frame so that brows and eyelids move with the
subject (paper's "expression sync"; the network masks them to the brow/eye/forehead region). The official code's
default (``bs_area = "upper"``) keeps 7 of MediaPipe's 52 scores: the 5 brow shapes and the 2 blinks. Mouth, jaw and
cheek shapes are left out on purpose: the mouth is driven by the audio features, and feeding it the captured mouth
shapes too would let the renderer copy the training video's lips instead of following the new speech.

Quirk of the original we do NOT reproduce: it drops MediaPipe's category 0 (``_neutral``) and appends a zero
column, so its "columns 0, 1, 2, 3, 4, 8, 9" are MediaPipe categories 1, 2, 3, 4, 5, 9, 10. Indexing by column is
an off-by-one trap (and breaks silently if a model ever reorders its outputs), so we select by NAME.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from synctalk_lib.errors import InputError

EXPRESSION_NAMES: tuple[str, ...] = (
    "browDownLeft",
    "browDownRight",
    "browInnerUp",
    "browOuterUpLeft",
    "browOuterUpRight",
    "eyeBlinkLeft",
    "eyeBlinkRight",
)
"""The original's ``bs_area = "upper"`` set, in its order (left/right = the subject's side)."""

BLINK_NAMES: tuple[str, ...] = ("eyeBlinkLeft", "eyeBlinkRight")


def name_indices(names: Sequence[str], wanted: Sequence[str]) -> list[int]:
    """Positions of ``wanted`` in ``names``; InputError listing what is missing."""
    lookup = {name: i for i, name in enumerate(names)}
    missing = [w for w in wanted if w not in lookup]
    if missing:
        raise InputError(
            f"blendshape scores lack {', '.join(missing)} (the face model returned {len(names)} categories); "
            "use MediaPipe's face_landmarker.task with blendshapes enabled")
    return [lookup[w] for w in wanted]


def expression_coefficients(blendshapes: np.ndarray, names: Sequence[str],
                            wanted: Sequence[str] = EXPRESSION_NAMES) -> np.ndarray:
    """Select the expression coefficients by name.

    Args:
        blendshapes: [N, 52] float scores in the order of ``names``.
        names: the category name of each column.
        wanted: which categories to keep, in output order (default ``EXPRESSION_NAMES``).

    Returns:
        [N, len(wanted)] float32 scores (MediaPipe's ~[0, 1] range, unnormalised like the original).
    """
    blendshapes = np.asarray(blendshapes)
    if blendshapes.ndim != 2 or blendshapes.shape[1] != len(names):
        raise InputError(f"blendshapes must be [N, {len(names)}], got shape {list(blendshapes.shape)}")
    return np.ascontiguousarray(blendshapes[:, name_indices(names, wanted)], dtype=np.float32)
