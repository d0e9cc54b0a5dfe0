"""RAFT-small: the released weights load strictly into our implementation and give sensible flow."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from synctalk_lib import hub
from synctalk_lib.pose.raft import RAFTSmall, estimate_flow, load_raft_small

cv2 = pytest.importorskip("cv2")


@pytest.fixture(scope="module")
def raft_dir(shared_models: Path, tmp_path_factory) -> Path:
    """A models folder linking the shared weights (the safetensors copy is then written here, not there)."""
    folder = tmp_path_factory.mktemp("raft_models")
    (folder / "raft-small.pth").symlink_to(shared_models / "raft-small.pth")
    return folder


@pytest.fixture(scope="module")
def model(raft_dir: Path) -> RAFTSmall:
    torch.set_num_threads(1)
    return load_raft_small([raft_dir])


def test_release_state_dict_matches_our_layout_exactly(raft_dir: Path, model: RAFTSmall):
    state = hub.load_state_dict(hub.fetch("raft_small", [raft_dir]))
    ours = model.state_dict()
    released = {k.removeprefix("module."): v for k, v in state.items()}
    assert set(released) == set(ours) and len(ours) == 106
    for key, value in released.items():
        assert ours[key].shape == value.shape and torch.equal(ours[key].cpu(), value), key
    assert (raft_dir / "raft-small.safetensors").is_file()  # converted copy beside the link, not in shared/


def first_frame(video: Path) -> np.ndarray:
    import av

    with av.open(str(video)) as container:
        return next(container.decode(video=0)).to_ndarray(format="rgb24")


def test_flow_of_a_known_shift(model: RAFTSmall, may_video: Path):
    frame = first_frame(may_video)  # a real face: RAFT was trained on natural images
    first = np.ascontiguousarray(frame[120:280, 130:290])
    second = np.ascontiguousarray(frame[117:277, 125:285])  # content moves +5 px in x, +3 px in y
    flow = estimate_flow(model, first[None], second[None], iters=12)[0]
    inner = flow[16:-16, 16:-16].reshape(-1, 2)
    assert np.allclose(np.median(inner, axis=0), [5.0, 3.0], atol=0.15), np.median(inner, axis=0)
    assert np.percentile(np.linalg.norm(inner - [5.0, 3.0], axis=1), 90) < 0.4
    # Backward flow is the opposite; inputs are resized and padded to multiples of 8 transparently.
    back = estimate_flow(model, second[None, :101, :117], first[None, :101, :117], iters=12)[0]
    assert back.shape == (101, 117, 2)
    assert np.isfinite(back).all()  # the coarsest correlation level of a small input used to divide by zero
    assert np.allclose(np.median(back[16:-16, 16:-16].reshape(-1, 2), axis=0), [-5.0, -3.0], atol=0.5)
    # Large frames are scaled down to max_side and the flow scaled back to their pixels.
    big = estimate_flow(model, frame[None, 60:460, 60:460], frame[None, 57:457, 55:455], max_side=200)[0]
    assert big.shape == (400, 400, 2)
    assert np.allclose(np.median(big[40:-40, 40:-40].reshape(-1, 2), axis=0), [5.0, 3.0], atol=0.4)
