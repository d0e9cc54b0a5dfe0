"""Which reference frame goes with each output frame when driving a subject with new audio.

The audio decides how many frames are rendered; head poses, backgrounds and the original frames used for the
portrait blend come from the subject's reference frames, played forwards then backwards ("ping-pong": 0, 1, ...,
n-1, n-1, ..., 0, 0, 1, ...) so there is never a jump at the end of the reference clip. Every stage that maps output
frames to reference frames calls ``reference_indices``, so they always agree.
"""
from __future__ import annotations

import numpy as np


def reference_indices(num_output: int, num_reference: int, start: int = 0) -> np.ndarray:
    """``[num_output]`` int64 reference frame index for each output frame (ping-pong over ``num_reference``)."""
    if num_reference <= 0:
        raise ValueError("there must be at least one reference frame")
    k = np.arange(start, start + num_output, dtype=np.int64) % (2 * num_reference)
    return np.where(k < num_reference, k, 2 * num_reference - 1 - k)
