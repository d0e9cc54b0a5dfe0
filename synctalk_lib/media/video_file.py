"""Reading a small encoded video back whole (tests, previews and checks of written files).

Long videos are streamed by ``media.video`` / the clip cache instead; this is for files of a few hundred frames.
"""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

from synctalk_lib.errors import InputError


def read_frames(path: Path | str) -> tuple[np.ndarray, Fraction]:
    """All frames of a (small) video as uint8 ``[T, H, W, 3]`` and its frame rate."""
    import av

    path = Path(path)
    if not path.is_file():
        raise InputError(f"video file not found: {path}")
    try:
        container = av.open(str(path))
    except av.FFmpegError as exc:
        raise InputError(f"{path.name} could not be opened as a video ({exc})") from exc
    with container:
        if not container.streams.video:
            raise InputError(f"{path.name} has no video stream")
        stream = container.streams.video[0]
        rate = Fraction(stream.average_rate or stream.guessed_rate or 1)
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
    if not frames:
        raise InputError(f"{path.name}: the video stream has no decodable frames")
    return np.stack(frames), rate
