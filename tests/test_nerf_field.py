"""Field pieces: config round trip, SH basis, audio encoder, field sizes/keys, masked attention inside the field."""
from __future__ import annotations

import math
import warnings

import pytest
import torch

from synctalk_lib.nerf.audio_net import AudioEncoder
from synctalk_lib.nerf.config import NerfConfig
from synctalk_lib.nerf.field import SIGMA_EXP_CLAMP, SyncTalkField
from synctalk_lib.nerf.model import SyncTalkNeRF
from synctalk_lib.nerf.rays import audio_window, audio_windows
from synctalk_lib.nerf.sh import SHEncoding


pytestmark = pytest.mark.usefixtures("one_thread")


# --------------------------------------------------------------------------------------------------- config
def test_config_round_trip_and_unknown_keys():
    config = NerfConfig(audio_in_dim=1280, num_codes=300, max_steps=32, mask_mode="loss")
    data = config.to_dict()
    assert data["aabb"] == [-1.0, -0.5, -1.0, 1.0, 0.5, 1.0]
    assert NerfConfig.from_dict(data) == config
    with pytest.warns(UserWarning, match="future_option"):
        again = NerfConfig.from_dict({**data, "future_option": 3})
    assert again == config
    assert NerfConfig.from_dict({"num_codes": 5}) == NerfConfig(num_codes=5)
    assert NerfConfig().step_size == pytest.approx(0.0270633, abs=1e-7)
    assert NerfConfig(grid_resolution=64).step_size == NerfConfig().step_size  # the grid does not set the step
    assert NerfConfig(march_step=0.01).step_size == 0.01
    with pytest.raises(ValueError, match="mask_mode"):
        NerfConfig(mask_mode="lips")
    with pytest.raises(ValueError, match="backend"):
        NerfConfig(backend="opengl")


# ------------------------------------------------------------------------------------------------------- SH
def test_sh_values_on_axes_and_orthonormality():
    sh = SHEncoding()
    z = sh(torch.tensor([[0.0, 0.0, 2.0]]))[0]  # normalised inside
    expected = torch.zeros(16)
    expected[0] = 0.28209479
    expected[2] = 0.48860251
    expected[6] = 0.94617470 - 0.31539157
    expected[12] = 0.37317633 * 2.0
    assert torch.allclose(z, expected, atol=1e-6)
    y = sh(torch.tensor([[0.0, 1.0, 0.0]]))[0]
    assert y[1] == pytest.approx(-0.48860251, abs=1e-6)  # instant-ngp sign
    assert y[9] == pytest.approx(0.59004359, abs=1e-6)
    # orthonormal over the sphere: Fibonacci quadrature of the Gram matrix
    n = 20000
    i = torch.arange(n, dtype=torch.float64) + 0.5
    polar = torch.acos(1 - 2 * i / n)
    azimuth = math.pi * (1 + 5 ** 0.5) * i
    d = torch.stack([torch.sin(polar) * torch.cos(azimuth), torch.sin(polar) * torch.sin(azimuth), torch.cos(polar)], -1)
    basis = sh(d)
    gram = basis.T @ basis * (4 * math.pi / n)
    assert torch.allclose(gram, torch.eye(16, dtype=torch.float64), atol=2e-3)


# ---------------------------------------------------------------------------------------------------- audio
def test_audio_window_rows_and_zero_fill():
    features = torch.arange(10, dtype=torch.float32)[:, None].repeat(1, 3) + 1  # row i holds i + 1
    w = audio_window(features, 0, 8)  # rows -4..3
    assert w[:4].abs().sum() == 0 and w[4:, 0].tolist() == [1, 2, 3, 4]
    w = audio_window(features, 8, 8)  # rows 4..11
    assert w[:, 0].tolist() == [5, 6, 7, 8, 9, 10, 0, 0]
    assert audio_window(features, 30, 8).abs().sum() == 0
    batch = audio_windows(features, [0, 5, 8], 8)
    for b, index in enumerate([0, 5, 8]):
        assert torch.equal(batch[b], audio_window(features, index, 8))


def test_audio_encoder_keys_shapes_and_smoothing():
    torch.manual_seed(0)
    net = AudioEncoder(512, 32, 8)
    shapes = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    assert shapes["audio_net.encoder_fc1.0.weight"] == (256, 512)
    assert shapes["audio_net.encoder_fc1.4.weight"] == (32, 128)
    assert shapes["audio_att_net.attentionConvNet.8.weight"] == (1, 2, 3)
    assert shapes["audio_att_net.attentionNet.0.weight"] == (8, 8)
    assert sum(p.numel() for p in net.audio_net.parameters()) == 168352
    assert sum(p.numel() for p in net.audio_att_net.parameters()) == 2149
    windows = torch.randn(5, 8, 512)
    codes = net.audio_net(windows)
    weights = net.audio_att_net.weights(codes)
    assert torch.allclose(weights.sum(-1), torch.ones(5))
    assert torch.allclose(net(windows), (weights[..., None] * codes).sum(1), atol=1e-6)
    plain = AudioEncoder(1280, 32, 8, smoothing=False)
    windows = torch.randn(2, 8, 1280)
    assert torch.equal(plain(windows), plain.audio_net(windows[:, 4]))
    with pytest.raises(ValueError, match="audio windows"):
        net(torch.randn(2, 7, 512))


# ---------------------------------------------------------------------------------------------------- field
OFFICIAL_SHAPES = {  # reference-synctalk.md section 12
    "sigma_net.net.0.weight": (64, 75), "sigma_net.net.1.weight": (64, 64), "sigma_net.net.2.weight": (65, 64),
    "color_net.net.0.weight": (64, 84), "color_net.net.1.weight": (3, 64),
    "unc_net.net.0.weight": (32, 36), "unc_net.net.1.weight": (1, 32),
    "aud_ch_att_net.net.0.weight": (64, 36), "aud_ch_att_net.net.1.weight": (32, 64),
    "eye_att_net.net.0.weight": (64, 36), "eye_att_net.net.1.weight": (7, 64),
    "encoder.encoder_xy.embeddings": (163584, 1), "encoder.encoder_xy.offsets": (13,),
}


def test_field_sizes_match_the_official_head():
    field = SyncTalkField(NerfConfig())
    shapes = {k: tuple(v.shape) for k, v in field.state_dict().items()}
    for key, shape in OFFICIAL_SHAPES.items():
        assert shapes[key] == shape, key
    assert not any(k.endswith("bias") for k in shapes)
    model = SyncTalkNeRF(NerfConfig(num_codes=20000))
    assert sum(p.numel() for p in model.parameters()) == 768165  # the official head's parameter count


def _field(config: NerfConfig) -> SyncTalkField:
    torch.manual_seed(0)
    field = SyncTalkField(config)
    with torch.no_grad():  # a sensitive field: the original's tiny init would hide every effect
        for name in ("xy", "yz", "xz"):
            getattr(field.encoder, f"encoder_{name}").embeddings.normal_(0, 1)
    return field


def test_field_outputs_ranges_and_conditioning():
    field = _field(NerfConfig())
    x = torch.rand(200, 3) * 2 - 1
    d = torch.nn.functional.normalize(torch.randn(200, 3), dim=-1)
    code, expr, latent = torch.randn(32), torch.rand(7), torch.randn(4)
    field.requires_grad_(False)
    out = field(x, d, code, expr, latent)
    assert out.sigma.shape == (200,) and bool((out.sigma > 0).all())
    assert out.rgb.shape == (200, 3) and float(out.rgb.min()) >= -0.001 and float(out.rgb.max()) <= 1.001
    assert bool((out.uncertainty > 0).all()) and bool((out.amb_aud > 0).all()) and bool((out.amb_eye > 0).all())
    # each input matters
    assert not torch.allclose(out.sigma, field(x, d, torch.randn(32), expr, latent).sigma)
    assert not torch.allclose(out.sigma, field(x, d, code, torch.rand(7), latent).sigma)
    assert not torch.allclose(out.rgb, field(x, d, code, expr, torch.randn(4)).rgb)
    assert torch.equal(out.sigma, field(x, d, code, expr, torch.randn(4)).sigma)  # latent code: colour only
    # per-sample conditioning equals broadcast conditioning
    rows = field(x, d, code.expand(200, 32), expr.expand(200, 7), latent.expand(200, 4))
    assert torch.allclose(rows.rgb, out.rgb, atol=1e-6)


def test_gates_remove_the_audio_and_expression_channels():
    field = _field(NerfConfig())
    x = torch.rand(100, 3) * 2 - 1
    zero = torch.zeros(100)
    a = field.density(x, torch.randn(32), torch.rand(7), lip_gate=zero, expr_gate=zero)
    b = field.density(x, torch.randn(32), torch.rand(7), lip_gate=zero, expr_gate=zero)
    assert torch.equal(a, b)
    half = torch.full((100,), 0.5)
    code = torch.randn(32)
    assert torch.allclose(field.density(x, code, torch.rand(7), lip_gate=half, expr_gate=zero),
                          field.density(x, code * 0.5, torch.rand(7), lip_gate=None, expr_gate=zero), atol=1e-5)


def test_density_exponent_is_clamped():
    field = _field(NerfConfig())
    with torch.no_grad():
        field.sigma_net.net[2].weight.mul_(1e4)
    sigma = field.density(torch.rand(100, 3) * 2 - 1, torch.randn(32) * 100, torch.rand(7)).detach()
    assert bool(torch.isfinite(sigma).all()) and float(sigma.max()) <= math.exp(SIGMA_EXP_CLAMP) * (1 + 1e-6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert bool(torch.isfinite(field.density(torch.rand(10, 3), torch.randn(32), torch.rand(7))).all())


@pytest.mark.parametrize("switch", ["use_expression", "use_individual_codes", "use_uncertainty",
                                    "use_audio_smoothing"])
def test_ablation_switches_drop_their_part(switch):
    config = NerfConfig(**{switch: False})
    model = SyncTalkNeRF(config)
    keys = set(model.state_dict())
    x = torch.rand(20, 3) * 2 - 1
    d = torch.nn.functional.normalize(torch.randn(20, 3), dim=-1)
    out = model.field(x, d, torch.randn(32), torch.rand(7), model.latent_code(0))
    assert out.rgb.shape == (20, 3)
    if switch == "use_expression":
        assert not any(k.startswith("field.eye_att_net") for k in keys)
        assert model.field.sigma_net.net[0].in_features == 36 + 32
        assert torch.equal(out.amb_eye, torch.zeros(20))
    elif switch == "use_individual_codes":
        assert model.field.color_net.net[0].in_features == 16 + 64
        assert model.latent_code(0) is None
    elif switch == "use_uncertainty":
        assert model.field.unc_net is None and torch.equal(out.uncertainty, torch.zeros(20))
    else:
        assert model.audio.audio_att_net is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert NerfConfig.from_dict(config.to_dict()) == config
