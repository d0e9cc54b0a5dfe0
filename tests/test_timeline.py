import numpy as np

from synctalk_lib.timeline import reference_indices


def test_ping_pong_order_repeats_the_end_frames():
    assert reference_indices(9, 3).tolist() == [0, 1, 2, 2, 1, 0, 0, 1, 2]


def test_within_reference_range_and_continuous():
    idx = reference_indices(1000, 7, start=5)
    assert idx.min() == 0 and idx.max() == 6
    assert np.abs(np.diff(idx)).max() <= 1, "never jumps"


def test_one_reference_frame():
    assert reference_indices(4, 1).tolist() == [0, 0, 0, 0]
