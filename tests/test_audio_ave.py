"""The audio-visual encoder: official checkpoint layout, loading through the Hub registry, inference."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from synctalk_lib import hub
from synctalk_lib.audio.ave import AudioVisualEncoder, encode_windows, load_ave
from synctalk_lib.errors import InputError, MissingWeightsError

# shapes of the official checkpoint (reference-synctalk.md section 2.2)
OFFICIAL_CONV_SHAPES = {
    0: (32, 1, 3, 3), 1: (32, 32, 3, 3), 2: (32, 32, 3, 3), 3: (64, 32, 3, 3), 4: (64, 64, 3, 3),
    5: (64, 64, 3, 3), 6: (128, 64, 3, 3), 7: (128, 128, 3, 3), 8: (128, 128, 3, 3), 9: (256, 128, 3, 3),
    10: (256, 256, 3, 3), 11: (512, 256, 3, 3), 12: (512, 512, 1, 1),
}


def fake_official_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """A state dict laid out like audio_visual_encoder.pth, with non-trivial BatchNorm statistics."""
    torch.manual_seed(seed)
    model = AudioVisualEncoder()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.1, 0.1)
    return model.official_state_dict()


@pytest.fixture()
def official_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, dict]:
    """A fake official .pth in a models folder, with the registry's checksum patched to match it."""
    folder = tmp_path / "models"
    folder.mkdir()
    state = fake_official_state()
    path = folder / "audio_visual_encoder.pth"
    torch.save(state, path)
    asset = hub.get_asset("ave")
    monkeypatch.setitem(hub.ASSETS, "ave", dataclasses.replace(asset, sha256=hub.sha256_of(path),
                                                               size=path.stat().st_size))
    return path, state


def test_parameter_names_and_shapes_are_the_official_ones():
    state = AudioVisualEncoder().official_state_dict()
    assert len(state) == 13 * 7
    for i, shape in OFFICIAL_CONV_SHAPES.items():
        assert tuple(state[f"{i}.conv_block.0.weight"].shape) == shape
        for name in ("conv_block.0.bias", "conv_block.1.weight", "conv_block.1.bias", "conv_block.1.running_mean",
                     "conv_block.1.running_var"):
            assert tuple(state[f"{i}.{name}"].shape) == (shape[0],)
        assert state[f"{i}.conv_block.1.num_batches_tracked"].dtype == torch.int64
    trainable = sum(p.numel() for p in AudioVisualEncoder().parameters())
    assert trainable == 2_812_672
    # the loader's view: every key carries the Sequential's name
    assert all(k.startswith("audio_encoder.") for k in AudioVisualEncoder().state_dict())


def test_feature_map_sizes_follow_the_layer_table():
    model = AudioVisualEncoder().eval()
    sizes = []
    x = torch.zeros(2, 1, 80, 16)
    for block in model.audio_encoder:
        x = block(x)
        sizes.append(tuple(x.shape[2:]))
    assert sizes[2] == (80, 16) and sizes[3] == (27, 16) and sizes[6] == (9, 6) and sizes[9] == (3, 3)
    assert sizes[11] == (1, 1) and sizes[12] == (1, 1)


def test_official_file_loads_strictly_through_the_hub(official_file):
    path, state = official_file
    model = load_ave(None, [path.parent])
    loaded = model.official_state_dict()
    assert set(loaded) == set(state)
    for key, value in state.items():
        assert torch.equal(loaded[key], value), key
    assert model.weights_id == f"ave:{hub.sha256_of(path)[:8]}"
    assert not model.training
    # first load keeps a safetensors copy beside the pickle; the second load reads it
    copy = path.with_suffix(".safetensors")
    assert copy.is_file()
    from safetensors.torch import load_file

    assert set(load_file(str(copy))) == set(state)
    again = load_ave(None, [path.parent])
    assert torch.equal(again.official_state_dict()["11.conv_block.0.weight"], state["11.conv_block.0.weight"])


def test_missing_num_batches_tracked_and_prefixed_keys_are_accepted(tmp_path):
    state = fake_official_state(1)
    no_counter = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    prefixed = {"audio_encoder." + k: v for k, v in no_counter.items()}
    for name, data in (("plain.pth", no_counter), ("prefixed.pth", prefixed)):
        torch.save(data, tmp_path / name)
        model = load_ave(tmp_path / name)
        key = "5.conv_block.1.running_var"
        assert torch.equal(model.official_state_dict()[key], state[key])
        assert model.weights_id.startswith("ave-file:")


def test_a_different_network_is_refused_with_the_reason(tmp_path):
    state = fake_official_state()
    state["11.conv_block.0.weight"] = torch.zeros(256, 256, 3, 3)
    del state["12.conv_block.0.bias"]
    torch.save(state, tmp_path / "other.pth")
    with pytest.raises(InputError, match="wrong shapes 11.conv_block.0.weight") as info:
        load_ave(tmp_path / "other.pth")
    assert "missing" in str(info.value) and "12.conv_block.0.bias" in str(info.value)


def test_missing_official_weights_offline_names_file_url_and_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    folder = tmp_path / "empty_models"
    with pytest.raises(MissingWeightsError) as info:
        load_ave(None, [folder])
    message = str(info.value)
    assert "audio_visual_encoder.pth" in message
    assert "https://huggingface.co/" in message and "audio_visual_encoder.pth" in message.split("https://")[1]
    assert str(folder) in message
    assert "CC BY-NC" in message


def test_a_corrupt_official_file_is_refused(tmp_path):
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "audio_visual_encoder.pth").write_bytes(b"version https://git-lfs.github.com/spec/v1\n")
    with pytest.raises(MissingWeightsError, match="Git LFS pointer"):
        load_ave(None, [folder])


def test_missing_local_file_error():
    with pytest.raises(InputError, match="not found"):
        load_ave("/nonexistent/ave.safetensors")


def test_output_is_non_negative_deterministic_and_batch_independent(official_file):
    path, _ = official_file
    model = load_ave(None, [path.parent])
    torch.manual_seed(3)
    windows = torch.rand(70, 80, 16) * 8 - 4
    a = encode_windows(model, windows, batch_size=64)
    b = encode_windows(model, windows, batch_size=7)
    c = encode_windows(load_ave(None, [path.parent]), windows)
    assert a.shape == (70, 512) and a.dtype == torch.float32
    assert (a >= 0).all() and (a > 0).float().mean() > 0.05
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    assert torch.equal(a, c)
    # different inputs, different codes
    assert (a[0] - a[1]).abs().max() > 1e-3


def test_eval_mode_uses_running_statistics(official_file):
    """A reference forward pass written out by hand with the BN running statistics."""
    path, state = official_file
    model = load_ave(None, [path.parent])
    x = torch.randn(3, 1, 80, 16)
    h = x
    layers = [(1, 1), (1, 1), (1, 1), (3, 1), (1, 1), (1, 1), (3, 3), (1, 1), (1, 1), (3, 2), (1, 1), (1, 1), (1, 1)]
    residual = {1, 2, 4, 5, 7, 8, 10}
    for i, stride in enumerate(layers):
        pad = 0 if i >= 11 else 1
        y = torch.nn.functional.conv2d(h, state[f"{i}.conv_block.0.weight"], state[f"{i}.conv_block.0.bias"],
                                       stride=stride, padding=pad)
        mean, var = state[f"{i}.conv_block.1.running_mean"], state[f"{i}.conv_block.1.running_var"]
        gamma, beta = state[f"{i}.conv_block.1.weight"], state[f"{i}.conv_block.1.bias"]
        y = (y - mean[:, None, None]) / torch.sqrt(var[:, None, None] + 1e-5)
        y = y * gamma[:, None, None] + beta[:, None, None]
        if i in residual:
            y = y + h
        h = torch.relu(y)
    expected = h.flatten(1)
    with torch.no_grad():
        torch.testing.assert_close(model(x), expected, rtol=1e-4, atol=1e-5)
