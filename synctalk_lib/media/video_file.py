"""Reading a small encoded video back whole (tests, previews and checks of written files).

Long videos are streamed by ``media.video`` / the clip cache instead; this is for files of a few hundred frames.
"""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

from synctalk_lib.errors import InputError
from synctalk_lib.media.video import open_container


def read_frames(path: Path | str) -> tuple[np.ndarray, Fraction]:
    """All frames of a (small) video as uint8 ``[T, H, W, 3]`` and its frame rate."""
    path = Path(path)
    with open_container(path) as container:
        stream = container.streams.video[0]
        rate = Fraction(stream.average_rate or stream.guessed_rate or 1)
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
    if not frames:
        raise InputError(f"{path.name}: the video stream has no decodable frames")
    return np.stack(frames), rate
