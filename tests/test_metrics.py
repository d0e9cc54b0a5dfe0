"""Metrics: PSNR and SSIM against hand values and a plain float64 implementation, LPIPS through its real loading
path with small fake weights, LMD on synthetic landmarks and on real frames."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from synctalk_lib.errors import InputError, MissingWeightsError
from synctalk_lib.metrics import psnr, psnr_per_frame, ssim, ssim_per_frame
from synctalk_lib.metrics import lpips as lpips_module
from synctalk_lib.metrics.lmd import LIP_LANDMARKS, lmd_from_landmarks, mouth_landmark_distance


pytestmark = pytest.mark.usefixtures("one_thread")


# ----------------------------------------------------------------------------------------------------- PSNR
def test_psnr_known_noise_levels():
    target = np.full((8, 8, 3), 0.5)
    signs = np.where(np.indices((8, 8, 3)).sum(0) % 2 == 0, 1.0, -1.0)
    assert psnr(target + 0.1 * signs, target) == pytest.approx(20.0, abs=1e-9)  # mse 0.01
    assert psnr(target + 0.01 * signs, target) == pytest.approx(40.0, abs=1e-9)
    batch = np.stack([target + 0.1 * signs, target + 0.01 * signs])
    assert psnr_per_frame(batch, np.stack([target, target])) == pytest.approx([20.0, 40.0])
    assert psnr(batch, np.stack([target, target])) == pytest.approx(30.0)  # mean of per-frame values
    assert psnr_per_frame(target, target) == [math.inf]
    uint8 = (target * 255).astype(np.uint8)
    assert psnr(uint8, uint8) == math.inf
    with pytest.raises(ValueError, match="same shape"):
        psnr(target, target[:4])


# ----------------------------------------------------------------------------------------------------- SSIM
def _ssim_numpy(a: np.ndarray, b: np.ndarray) -> float:
    """Straightforward float64 SSIM: explicit 11x11 Gaussian windows over every valid position and channel."""
    x = np.arange(11) - 5.0
    g = np.exp(-x ** 2 / (2 * 1.5 ** 2))
    w = np.outer(g, g)
    w /= w.sum()
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    values = []
    for c in range(a.shape[2]):
        for i in range(a.shape[0] - 10):
            for j in range(a.shape[1] - 10):
                pa, pb = a[i:i + 11, j:j + 11, c], b[i:i + 11, j:j + 11, c]
                ma, mb = (w * pa).sum(), (w * pb).sum()
                va, vb = (w * (pa - ma) ** 2).sum(), (w * (pb - mb) ** 2).sum()
                cov = (w * (pa - ma) * (pb - mb)).sum()
                values.append(((2 * ma * mb + c1) * (2 * cov + c2)) / ((ma ** 2 + mb ** 2 + c1) * (va + vb + c2)))
    return float(np.mean(values))


def test_ssim_identity_and_plain_implementation():
    rng = np.random.default_rng(0)
    a = rng.random((20, 24, 3))
    b = np.clip(a + rng.normal(0, 0.1, a.shape), 0, 1)
    assert ssim(a, a) == pytest.approx(1.0, abs=1e-12)
    assert ssim(a, b) == pytest.approx(_ssim_numpy(a, b), abs=1e-10)
    assert ssim(a, b) < 0.95
    assert ssim_per_frame(np.stack([a, b]), np.stack([a, a])) == pytest.approx([1.0, _ssim_numpy(b, a)], abs=1e-10)
    smooth = np.linspace(0, 1, 20 * 24 * 3).reshape(20, 24, 3)
    assert ssim(torch.tensor(smooth, dtype=torch.float32), torch.tensor(smooth, dtype=torch.float32)) == \
        pytest.approx(1.0, abs=1e-6)
    with pytest.raises(ValueError, match="at least"):
        ssim(a[:8, :8], a[:8, :8])


# ---------------------------------------------------------------------------------------------------- LPIPS
def _fake_lpips_files(folder, net: str = "alex"):
    """Random weights in the exact layout of the official files (torchvision trunk + LPIPS v0.1 heads)."""
    torch.manual_seed(0)
    reference = lpips_module.LPIPS(net)
    trunk = {f"features.{k}": torch.randn_like(v) * 0.05 for k, v in reference.features.state_dict().items()}
    trunk["classifier.1.weight"] = torch.zeros(4, 4)  # torchvision files also hold the classifier (ignored)
    heads = {f"lin{i}.model.1.weight": torch.rand_like(lin.weight) for i, lin in enumerate(reference.lins)}
    spec = lpips_module.BACKBONES[net]
    torch.save(trunk, folder / spec.filename)
    torch.save(heads, folder / f"lpips_v0.1_{net}.pth")
    return trunk, heads


def _lpips_by_hand(x, y, trunk, heads):
    """LPIPS v0.1 (alex) written out with functional ops: scale, 5 conv stages, unit-normalise, weighted mean."""
    shift = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
    scale = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)
    F = torch.nn.functional

    def taps(z):
        z = (z - shift) / scale
        z = F.relu(F.conv2d(z, trunk["features.0.weight"], trunk["features.0.bias"], stride=4, padding=2))
        out = [z]
        z = F.relu(F.conv2d(F.max_pool2d(z, 3, 2), trunk["features.3.weight"], trunk["features.3.bias"], padding=2))
        out.append(z)
        z = F.relu(F.conv2d(F.max_pool2d(z, 3, 2), trunk["features.6.weight"], trunk["features.6.bias"], padding=1))
        out.append(z)
        z = F.relu(F.conv2d(z, trunk["features.8.weight"], trunk["features.8.bias"], padding=1))
        out.append(z)
        z = F.relu(F.conv2d(z, trunk["features.10.weight"], trunk["features.10.bias"], padding=1))
        out.append(z)
        return out

    total = 0.0
    for i, (a, b) in enumerate(zip(taps(x), taps(y))):
        a = a / (a.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
        b = b / (b.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
        total = total + ((a - b) ** 2 * heads[f"lin{i}.model.1.weight"].view(1, -1, 1, 1)).sum(1).mean(dim=(1, 2))
    return total


def test_lpips_loads_through_the_real_path_and_computes_lpips(tmp_path, monkeypatch):
    trunk, heads = _fake_lpips_files(tmp_path)
    monkeypatch.setattr(lpips_module, "_lpips_package_dir", lambda: None)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    # the real trunk's name carries its sha256 prefix; the fake file has its own
    with pytest.raises(InputError, match="sha256"):
        lpips_module.load_lpips("alex", [tmp_path])
    fake_prefix = lpips_module.hub.sha256_of(tmp_path / "alexnet-owt-7be5be79.pth")[:8]
    spec = lpips_module.BACKBONES["alex"]
    monkeypatch.setitem(lpips_module.BACKBONES, "alex", type(spec)(**{**spec.__dict__, "sha256_prefix": fake_prefix}))
    model = lpips_module.load_lpips("alex", [tmp_path])
    torch.manual_seed(1)
    x, y = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)
    d = model(x, y, normalize=True)
    assert d.shape == (2,) and bool((d > 0).all())
    assert torch.allclose(d, _lpips_by_hand(2 * x - 1, 2 * y - 1, trunk, heads), rtol=1e-4, atol=1e-6)
    assert torch.allclose(model(y, x, normalize=True), d, rtol=1e-5)
    assert torch.equal(model(x, x, normalize=True), torch.zeros(2))
    frames = lpips_module.lpips_distance(x.permute(0, 2, 3, 1), y.permute(0, 2, 3, 1), model, batch=1)
    assert frames == pytest.approx(d.tolist(), rel=1e-5)


def test_lpips_missing_weights_say_what_to_get(tmp_path, monkeypatch):
    monkeypatch.setattr(lpips_module, "_lpips_package_dir", lambda: None)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    with pytest.raises(MissingWeightsError) as info:
        lpips_module.load_lpips("alex", [tmp_path])
    message = str(info.value)
    assert "alexnet-owt-7be5be79.pth" in message and "https://download.pytorch.org/models/" in message
    assert "pip install lpips" in message and str(tmp_path) in message
    # with only the heads present, only the trunk is asked for
    torch.save({f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1) for i, c in enumerate((64, 192, 384, 256, 256))},
               tmp_path / "lpips_v0.1_alex.pth")
    with pytest.raises(MissingWeightsError) as info:
        lpips_module.load_lpips("alex", [tmp_path])
    assert "pip install lpips" not in str(info.value) and "alexnet-owt" in str(info.value)
    with pytest.raises(InputError, match="must be one of"):
        lpips_module.load_lpips("squeeze", [tmp_path])


def test_lpips_vgg_layout_matches_torchvision_keys():
    keys = set(lpips_module.LPIPS("vgg").features.state_dict())
    expected = {f"{i}.{p}" for i in (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28) for p in ("weight", "bias")}
    assert keys == expected


# ------------------------------------------------------------------------------------------------------ LMD
def test_lmd_on_synthetic_landmarks():
    rng = np.random.default_rng(0)
    target = rng.random((3, 40, 2)) * 100
    assert np.allclose(lmd_from_landmarks(target, target), 0)
    assert np.allclose(lmd_from_landmarks(target + np.array([7.0, -3.0]), target), 0)  # translation is removed
    moved = target.copy()
    moved[:, :20, 1] += 4.0  # half of the points move down 4 px: each set's mean moves 2 px
    # after centring, every point is 2 px off -> LMD = 2 k (P - k) d / P^2 = 2 * 20 * 20 * 4 / 1600 = 2
    assert np.allclose(lmd_from_landmarks(moved, target), 2.0)
    assert len(LIP_LANDMARKS) == 40 and len(set(LIP_LANDMARKS)) == 40


def _first_frames(video, count):
    import av

    frames = []
    with av.open(str(video)) as container:
        for frame in container.decode(video=0):
            frames.append(frame.to_ndarray(format="rgb24"))
            if len(frames) == count:
                break
    return np.stack(frames)


def test_lmd_with_mediapipe_on_real_frames(may_video, shared_models):
    frames = _first_frames(may_video, 40)
    pick = frames[[0, 39]]
    same = mouth_landmark_distance(pick, pick, [shared_models])
    assert same.lmd == 0.0 and same.skipped == ()
    # a whole-frame shift moves the lips, not their shape
    shifted = np.roll(pick, (6, -4), axis=(1, 2))
    moved = mouth_landmark_distance(shifted, pick, [shared_models])
    assert moved.lmd < 1.0
    # a different frame of the clip has a different mouth shape
    other = mouth_landmark_distance(frames[[20, 0]], pick, [shared_models])
    assert other.lmd > moved.lmd
    blank = mouth_landmark_distance(np.zeros_like(pick), pick, [shared_models])
    assert blank.skipped == (0, 1) and math.isnan(blank.lmd)
