"""Import of official SyncTalk head checkpoints: key mapping, Morton-ordered occupancy, unsupported variants."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from synctalk_lib.errors import InputError
from synctalk_lib.nerf.config import NerfConfig
from synctalk_lib.nerf.model import SyncTalkNeRF
from synctalk_lib.nerf.official import convert_official_state_dict, load_official_checkpoint, morton3d, morton_order
from synctalk_lib.nerf.rays import head_pose_to_ngp, image_rays


def test_morton_code_hand_cases():
    codes = morton3d(np.array([1, 0, 0, 1, 2, 0, 3]), np.array([0, 1, 0, 1, 0, 2, 3]), np.array([0, 0, 1, 1, 0, 0, 3]))
    assert codes.tolist() == [1, 2, 4, 7, 8, 16, 63]
    order = morton_order(4)
    assert sorted(order.tolist()) == list(range(64))  # a permutation
    assert order[(1 * 4 + 0) * 4 + 0] == 1 and order[(0 * 4 + 0) * 4 + 1] == 4


def _official_from(model: SyncTalkNeRF) -> dict:
    """What the official trainer would have saved for this model (inverse of the import mapping)."""
    state = {}
    for key, value in model.state_dict().items():
        if key.startswith("field.encoder."):
            state[key[len("field.encoder."):]] = value
        elif key.startswith("field."):
            state[key[len("field."):]] = value
        elif key.startswith("audio."):
            state[key[len("audio."):]] = value
        elif key == "individual_codes":
            state[key] = value
    grid = model.occupancy.density.reshape(-1)
    order = torch.from_numpy(morton_order(model.occupancy.resolution))
    official_grid = torch.empty_like(grid)
    official_grid[order] = grid
    bits = np.zeros(grid.numel(), dtype=np.uint8)
    bits[order.numpy()] = model.occupancy.occupied.reshape(-1).numpy()
    state["density_grid"] = official_grid[None]
    state["density_bitfield"] = torch.from_numpy(np.packbits(bits, bitorder="little"))
    state["aabb_train"] = state["aabb_infer"] = torch.tensor(model.config.aabb)
    state["step_counter"] = torch.zeros(16, 2, dtype=torch.int32)
    return {"model": state, "mean_density": float(model.occupancy.mean_density), "epoch": 3, "global_step": 900}


def test_official_checkpoint_round_trip_renders_the_same():
    torch.manual_seed(0)
    model = SyncTalkNeRF(NerfConfig(num_codes=6, mask_mode="loss")).eval()
    with torch.no_grad():
        for name in ("xy", "yz", "xz"):
            getattr(model.field.encoder, f"encoder_{name}").embeddings.normal_()
        model.occupancy.density.uniform_(-1, 20)
        model.occupancy.density[model.occupancy.density < 0] = -1
        model.occupancy._refresh_occupied()
    checkpoint = _official_from(model)
    imported = load_official_checkpoint(checkpoint)
    assert imported.config.mask_mode == "loss" and imported.config.num_codes == 6
    for key, value in model.state_dict().items():
        assert torch.equal(imported.state_dict()[key], value), key
    pose = np.eye(4, dtype=np.float32)
    pose[2, 3] = 0.6
    o, d = image_rays(head_pose_to_ngp(pose), 300.0, 8.0, 8.0, 16, 16)
    kwargs = dict(audio_code=torch.randn(32), expression=torch.rand(7), code_index=None, bg=torch.rand(len(o), 3))
    with torch.no_grad():
        assert torch.equal(model.render(o, d, **kwargs).rgb, imported.render(o, d, **kwargs).rgb)
    # ngp.pth has no density_grid: the bitfield alone gives the same occupancy
    del checkpoint["model"]["density_grid"]
    _, state = convert_official_state_dict(checkpoint)
    assert torch.equal(state["occupancy.occupied"], model.occupancy.occupied)


def test_unsupported_official_variants_are_refused():
    with pytest.raises(InputError, match="DeepSpeech"):
        convert_official_state_dict({"audio_net.encoder_conv.0.weight": torch.zeros(32, 29, 3)})
    with pytest.raises(InputError, match="missing"):
        convert_official_state_dict({"model": {"sigma_net.net.0.weight": torch.zeros(64, 75)}})
