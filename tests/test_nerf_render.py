"""Renderer: ray/box, marching, compositing (hand-worked), an analytic sphere, occupancy skipping, masked attention,
rays in NGP space and inference determinism."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from cuda_ext.composite import accumulate, render_weights
from cuda_ext.march import march_packed_torch
from synctalk_lib.nerf.config import NerfConfig
from synctalk_lib.nerf.field import FieldOutputs
from synctalk_lib.nerf.model import SyncTalkNeRF
from synctalk_lib.nerf.occupancy import OccupancyGrid, dilate6
from synctalk_lib.nerf.rays import head_pose_to_ngp, image_rays, pixel_rays
from synctalk_lib.nerf.renderer import RenderOutput, composite_background, volume_render
from synctalk_lib.nerf.sampler import ray_aabb_intersect, sample_jitter

AABB = (-1.0, -0.5, -1.0, 1.0, 0.5, 1.0)
DT = 2 * math.sqrt(3) / 128


pytestmark = pytest.mark.usefixtures("one_thread")


# --------------------------------------------------------------------------------------------- ray / box
def test_ray_aabb_intersect_hand_cases():
    o = torch.tensor([[-3.0, 0.0, 0.0], [0.0, -2.0, 0.0], [0.0, 0.0, 0.0], [-3.0, 2.0, 0.0], [0.0, 0.0, 0.0]])
    d = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 0.0, -1.0]])
    near, far, hit = ray_aabb_intersect(o, d, AABB, min_near=0.05)
    assert hit.tolist() == [True, True, True, False, True]
    assert torch.allclose(near, torch.tensor([2.0, 1.5, 0.05, 0.0, 0.05]))
    assert torch.allclose(far, torch.tensor([4.0, 2.5, 1.0, 0.0, 1.0]))
    # box behind the camera: no hit
    near, far, hit = ray_aabb_intersect(torch.tensor([[3.0, 0, 0]]), torch.tensor([[1.0, 0, 0]]), AABB, 0.05)
    assert not bool(hit[0])


# ---------------------------------------------------------------------------------------------- compositing
def test_compositing_five_samples_by_hand():
    # alphas [0, 0.3, 0.8, 0.8, 0.5] -> transmittance in front of each sample [1, 1, 0.7, 0.14, 0.028]
    alphas = torch.tensor([[0.0, 0.3, 0.8, 0.8, 0.5]])
    deltas = torch.full((1, 5), 0.5)
    sigma = -torch.log(1 - alphas) / deltas
    weights, visited = render_weights(sigma, deltas)
    expected = torch.tensor([[0.0, 0.3, 0.56, 0.112, 0.014]])  # alpha * [1, 1, 0.7, 0.14, 0.028]
    assert torch.allclose(weights, expected, atol=1e-6)
    assert bool(visited.all())
    colours = torch.tensor([[[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0], [1.0, 1.0, 1.0], [0.5, 0.5, 0.5]]])
    rgb = accumulate(weights, colours)
    assert torch.allclose(rgb, torch.tensor([[0.112 + 0.007, 0.3 + 0.112 + 0.007, 0.56 + 0.112 + 0.007]]), atol=1e-6)
    opacity = weights.sum(-1)
    assert float(opacity) == pytest.approx(0.986, abs=1e-6)
    pixel = composite_background(rgb, opacity, torch.tensor([[1.0, 1.0, 1.0]]))
    assert torch.allclose(pixel, rgb + 0.014, atol=1e-6)
    # padded slots are ignored
    mask = torch.tensor([[True, True, True, False, False]])
    weights, visited = render_weights(sigma, deltas, mask)
    assert torch.allclose(weights, torch.tensor([[0.0, 0.3, 0.56, 0.0, 0.0]]), atol=1e-6)
    assert visited.tolist() == [[True, True, True, False, False]]


def test_early_termination_below_transmittance_1e_4():
    # alpha 1 - 1e-5 on sample 1 leaves T = 1e-5 < 1e-4 in front of sample 2: samples 2.. are not visited
    alphas = torch.tensor([[0.5, 1 - 2e-5, 0.5, 0.5]], dtype=torch.float64)
    sigma = -torch.log(1 - alphas)
    weights, visited = render_weights(sigma, torch.ones(1, 4, dtype=torch.float64))
    assert visited.tolist() == [[True, True, False, False]]
    assert weights[0, 2:].abs().sum() == 0
    assert float(weights.sum()) == pytest.approx(0.5 + 0.5 * (1 - 2e-5), abs=1e-12)


# ------------------------------------------------------------------------------------------------ marching
def test_marching_lattice_occupancy_and_max_steps():
    o = torch.tensor([[0.0, 0.0, -2.0]])
    d = torch.tensor([[0.0, 0.0, 1.0]])
    near, far, _ = ray_aabb_intersect(o, d, AABB, 0.05)  # 1 .. 3
    dense = march_packed_torch(o, d, near, far, step=DT, max_steps=200)
    count = math.ceil(2.0 / DT)
    assert dense.offsets.tolist() == [0, count] and dense.ray_indices.tolist() == [0] * count
    assert torch.allclose(dense.t, 1.0 + DT * torch.arange(count, dtype=torch.float32), atol=1e-5)
    assert torch.allclose(dense.deltas, torch.full((count,), DT))
    assert torch.allclose(dense.positions, o + dense.t[:, None] * d)
    limited = march_packed_torch(o, d, near, far, step=DT, max_steps=16)
    assert limited.offsets.tolist() == [0, 16] and torch.equal(limited.t, dense.t[:16])
    # occupancy: only the cells with z in [0.25, 0.5) are occupied
    grid = OccupancyGrid(resolution=128)
    grid.occupied.zero_()
    grid.occupied[:, :, 80:96] = True  # z cells 80..95 <-> [0.25, 0.5)
    skipped = march_packed_torch(o, d, near, far, step=DT, max_steps=16, occupied=grid.occupied, bound=grid.bound)
    inside = (dense.positions[:, 2] >= 0.25) & (dense.positions[:, 2] < 0.5)
    assert torch.allclose(skipped.positions[:, 2], dense.positions[inside, 2])
    assert bool(grid.query(skipped.positions).all())


def test_marching_jitter_is_seeded_and_bounded():
    o = torch.zeros(64, 3) + torch.tensor([0.0, 0.0, -2.0])
    d = torch.tensor([[0.0, 0.0, 1.0]]).expand(64, 3)
    near, far, _ = ray_aabb_intersect(o, d, AABB, 0.05)

    def march(seed: int):
        jitter = sample_jitter(o, torch.Generator().manual_seed(seed))
        return march_packed_torch(o, d, near, far, step=DT, max_steps=16, jitter=jitter)

    a, b, c = march(1), march(1), march(2)
    assert torch.equal(a.t, b.t) and not torch.equal(a.t, c.t)
    offset = a.t[a.offsets[:-1]] - near  # first sample of each ray
    assert bool((offset >= 0).all()) and bool((offset < DT).all()) and float(offset.std()) > DT / 8


# --------------------------------------------------------------------------------------------- analytic scene
def _sphere_field(centre, radius, sigma0, colour):
    centre = torch.as_tensor(centre)

    def field_fn(positions, directions, ray_idx):
        inside = ((positions - centre).norm(dim=-1) < radius).to(positions.dtype)
        m = positions.shape[0]
        return FieldOutputs(sigma=sigma0 * inside, rgb=torch.as_tensor(colour).expand(m, 3), amb_aud=inside,
                            amb_eye=torch.zeros(m), uncertainty=torch.ones(m))
    return field_fn


def _sphere_rays(n_side=24):
    """Parallel rays along a slightly tilted direction through a square that covers the sphere and its outside."""
    d = torch.nn.functional.normalize(torch.tensor([0.15, 0.05, 1.0]), dim=0)
    a, b = torch.meshgrid(torch.linspace(-0.45, 0.45, n_side), torch.linspace(-0.4, 0.4, n_side), indexing="ij")
    o = torch.stack([a.reshape(-1) + 0.1, b.reshape(-1) + 0.05, torch.full((n_side * n_side,), -0.5)], -1) - 2.5 * d
    return o, d.expand_as(o).contiguous()


def _chords(o, d, centre, radius):
    oc = o - torch.as_tensor(centre)
    b = (oc * d).sum(-1)
    disc = b * b - ((oc * oc).sum(-1) - radius ** 2)
    return 2 * disc.clamp(min=0).sqrt()


def test_analytic_sphere_pixels_and_alpha():
    centre, radius, sigma0 = (0.1, 0.05, -0.05), 0.3, 5.0
    colour, bg = torch.tensor([0.9, 0.2, 0.4]), torch.tensor([0.1, 0.3, 0.8])
    o, d = _sphere_rays()
    field = _sphere_field(centre, radius, sigma0, colour)
    out = volume_render(field, o, d, bg, aabb=AABB, step=DT, max_steps=256)
    chord = _chords(o, d, centre, radius)
    # each sample stands for one step: the marched optical depth is within one step of the exact one
    optical = -torch.log1p(-out.alpha.clamp(max=1 - 1e-7))
    assert float((optical - sigma0 * chord).abs().max()) <= sigma0 * DT + 1e-4
    assert float((out.alpha - (1 - torch.exp(-sigma0 * chord))).abs().max()) <= sigma0 * DT
    assert torch.allclose(out.rgb, colour * out.alpha[:, None] + bg * (1 - out.alpha[:, None]), atol=1e-6)
    assert bool((out.alpha[chord == 0] == 0).all()) and float(out.alpha.max()) > 0.9
    assert torch.allclose(out.uncertainty, out.alpha, atol=1e-6)
    assert float((out.amb_aud * DT - chord).abs().max()) <= DT + 1e-5
    # jittered marching is unbiased: the mean optical depth over many offsets converges to the exact one
    gen = torch.Generator().manual_seed(0)
    mean = torch.stack([-torch.log1p(-volume_render(field, o, d, bg, aabb=AABB, step=DT, max_steps=256, perturb=True,
                                                    generator=gen).alpha.clamp(max=1 - 1e-7)) for _ in range(200)]).mean(0)
    assert float((mean - sigma0 * chord).abs().max()) <= 0.15 * sigma0 * DT


def _cube_density(points, half=0.125):
    return 40.0 * ((points.abs() < half).all(dim=-1)).to(points.dtype)


def test_occupancy_skipping_never_changes_the_image():
    # a cube whose faces lie on cell boundaries: the occupancy grid can represent it exactly
    def field_fn(positions, directions, ray_idx):
        m = positions.shape[0]
        sigma = _cube_density(positions)
        rgb = torch.stack([positions[:, 0] + 0.5, positions[:, 1] + 0.5, 0.5 + 0 * positions[:, 2]], -1)
        return FieldOutputs(sigma=sigma, rgb=rgb, amb_aud=(sigma > 0).float(), amb_eye=torch.zeros(m),
                            uncertainty=torch.zeros(m))

    grid = OccupancyGrid(resolution=128)
    grid.update(_cube_density, generator=torch.Generator().manual_seed(0))
    assert 0 < float(grid.occupied.float().mean()) < 0.01
    pose = head_pose_to_ngp(_look_at_origin_pose(0.6))
    o, d = image_rays(pose, 100.0, 16.0, 16.0, 32, 32)
    for perturb in (False, True):
        kwargs = dict(aabb=AABB, step=DT, perturb=perturb)
        dense = volume_render(field_fn, o, d, torch.zeros(3), max_steps=512,
                              generator=torch.Generator().manual_seed(3), **kwargs)
        skipping = volume_render(field_fn, o, d, torch.zeros(3), max_steps=16, occupancy=grid,
                                 generator=torch.Generator().manual_seed(3), **kwargs)
        assert float(dense.alpha.max()) > 0.99 and float((dense.alpha == 0).float().mean()) > 0.3
        for name in ("rgb", "alpha", "depth", "amb_aud"):  # same samples; sums over longer rows round differently
            a, b = getattr(dense, name), getattr(skipping, name)
            assert torch.allclose(a, b, rtol=0, atol=1e-6), f"{name}: max abs diff {float((a - b).abs().max())}"


def test_early_ray_termination_gives_the_same_image():
    def field_fn(positions, directions, ray_idx):
        m = positions.shape[0]
        sigma = _cube_density(positions, half=0.3) * 10  # opaque: rays terminate a few samples in
        rgb = torch.stack([positions[:, 0] + 0.5, positions[:, 2] + 0.5, 0.5 + 0 * positions[:, 1]], -1)
        return FieldOutputs(sigma=sigma, rgb=rgb, amb_aud=torch.ones(m), amb_eye=torch.ones(m),
                            uncertainty=torch.ones(m))

    calls = []

    def counting(positions, directions, ray_idx):
        calls.append(len(positions))
        return field_fn(positions, directions, ray_idx)

    pose = head_pose_to_ngp(_look_at_origin_pose(0.6))
    o, d = image_rays(pose, 60.0, 16.0, 16.0, 32, 32)
    full = volume_render(field_fn, o, d, torch.ones(3), aabb=AABB, step=DT, max_steps=32, early_stop=False)
    staged = volume_render(counting, o, d, torch.ones(3), aabb=AABB, step=DT, max_steps=32, early_stop=True)
    for name in ("rgb", "alpha", "depth", "amb_aud", "amb_eye", "uncertainty"):
        a, b = getattr(full, name), getattr(staged, name)
        assert torch.allclose(a, b, atol=1e-6), f"{name}: {float((a - b).abs().max())}"
    hits = int((full.alpha > 0.5).sum())
    assert float(full.alpha.max()) > 0.9999 and hits > 100
    # the cube starts ~8 samples in: opaque rays stop after the third stage of 4 instead of marching 32 samples
    assert sum(calls) <= 32 * (len(o) - hits) + 12 * hits
    # rays that miss everything
    miss = volume_render(field_fn, o + torch.tensor([0.0, 50.0, 0.0]), d, torch.ones(3), aabb=AABB, step=DT,
                         max_steps=16)
    assert torch.equal(miss.rgb, torch.ones(len(o), 3)) and torch.equal(miss.alpha, torch.zeros(len(o)))


# ------------------------------------------------------------------------------------------- occupancy grid
def test_occupancy_update_rule_dilation_and_threshold():
    grid = OccupancyGrid(resolution=8, density_thresh=10.0)
    grid.density[2, 3, 4] = 20.0
    grid.update(lambda p: torch.zeros(len(p)), decay=0.5)
    assert float(grid.density[2, 3, 4]) == 10.0 and float(grid.density.sum()) == 10.0
    assert grid.occupied.sum() == 1 and bool(grid.occupied[2, 3, 4])
    assert float(grid.mean_density) == pytest.approx(10.0 / 512)
    single = torch.zeros(5, 5, 5)
    single[2, 2, 2] = 1.0
    dilated = dilate6(single)
    assert float(dilated.sum()) == 7.0 and float(dilated[1, 2, 2]) == 1.0 and float(dilated[1, 1, 2]) == 0.0
    # threshold = min(mean density, density_thresh)
    grid = OccupancyGrid(resolution=8, density_thresh=0.5)
    grid.update(lambda p: torch.where(p[:, 0] > 0, 100.0, 1.0))
    assert bool(grid.occupied.all())  # mean ~50 but the cap 0.5 keeps the density-1 cells occupied


def test_partial_occupancy_update_touches_some_cells_and_keeps_the_rest():
    grid = OccupancyGrid(resolution=16)
    grid.density.fill_(5.0)
    grid.update(lambda p: torch.zeros(len(p)), decay=0.5, fraction=0.02, generator=torch.Generator().manual_seed(0))
    values = grid.density.reshape(-1)
    decayed = values == 2.5
    assert bool(((values == 5.0) | decayed).all())
    # about 2% of the cells evaluated, each updating itself and up to 6 neighbours
    assert 0.02 < float(decayed.float().mean()) < 0.3
    grid.density[0, 0, 0] = -1.0  # unseen cells stay unseen
    grid.update(lambda p: torch.full((len(p),), 9.0), fraction=1.0)
    assert float(grid.density[0, 0, 0]) == -1.0 and float(grid.density[1, 1, 1]) == 9.0


def _look_at_origin_pose(distance: float) -> np.ndarray:
    """OpenGL camera-to-world in head space: camera on +z at ``distance`` metres, looking at the origin."""
    pose = np.eye(4, dtype=np.float32)
    pose[2, 3] = distance
    return pose


def test_untrained_cells_stay_empty():
    grid = OccupancyGrid(resolution=32)
    pose = head_pose_to_ngp(_look_at_origin_pose(0.6))  # NGP: camera at y = 2.4 looking down -y
    grid.mark_untrained(pose[None], focal=1000.0, cx=64.0, cy=64.0)
    centres = grid.cell_centres()
    seen = grid.density.reshape(-1) >= 0
    # narrow frustum around the -y axis: cells near the axis are seen, cells far to the side are not
    near_axis = (centres[:, 0].abs() < 0.05) & (centres[:, 2].abs() < 0.05)
    assert bool(seen[near_axis].all())
    assert not bool(seen[centres[:, 0].abs() > 0.5].any())
    grid.update(lambda p: torch.full((len(p),), 50.0))
    assert bool((grid.density.reshape(-1)[~seen] == -1).all())
    assert torch.equal(grid.occupied.reshape(-1), seen)


# ----------------------------------------------------------------------------------------------------- rays
def test_head_pose_to_ngp_matches_reference_formula():
    c = np.arange(16, dtype=np.float32).reshape(4, 4) + 1  # C[i, j] = 4 i + j + 1
    c[3] = (0, 0, 0, 1)
    out = head_pose_to_ngp(c[None], scale=4.0, offset=(0.1, 0.2, 0.3))[0]
    expected = torch.tensor([[5.0, -6.0, -7.0, 4 * 8 + 0.1],
                             [9.0, -10.0, -11.0, 4 * 12 + 0.2],
                             [1.0, -2.0, -3.0, 4 * 4 + 0.3],
                             [0.0, 0.0, 0.0, 1.0]])
    assert torch.allclose(out, expected)
    assert head_pose_to_ngp(c).shape == (4, 4)


def test_centre_ray_of_a_camera_looking_at_the_head_hits_the_origin():
    pose = head_pose_to_ngp(_look_at_origin_pose(0.6))
    assert torch.allclose(pose[:3, 3], torch.tensor([0.0, 2.4, 0.0]))
    o, d = pixel_rays(pose, 500.0, 256.0, 256.0, torch.tensor([255.5]), torch.tensor([255.5]))
    assert torch.allclose(d[0], torch.tensor([0.0, -1.0, 0.0]), atol=1e-6)
    # image up (row 0) is head +y = NGP +x; image right (last column) is head +x = NGP +z
    _, d = pixel_rays(pose, 500.0, 256.0, 256.0, torch.tensor([0, 255]), torch.tensor([255, 511]))
    assert float(d[0, 0]) > 0.3 and float(d[1, 2]) > 0.3
    o_all, d_all = image_rays(pose, 500.0, 256.0, 256.0, 4, 6)
    o_px, d_px = pixel_rays(pose, 500.0, 256.0, 256.0, torch.tensor([2]), torch.tensor([5]))
    assert torch.allclose(d_all[2 * 6 + 5], d_px[0]) and o_all.shape == (24, 3)
    poses = pose.expand(3, 4, 4)
    o3, d3 = pixel_rays(poses, 500.0, 256.0, 256.0, torch.tensor([0, 1, 2]), torch.tensor([5, 6, 7]))
    o1, d1 = pixel_rays(pose, 500.0, 256.0, 256.0, torch.tensor([0, 1, 2]), torch.tensor([5, 6, 7]))
    assert torch.allclose(d3, d1, atol=1e-6) and torch.allclose(o3, o1)


# ----------------------------------------------------------------------------------------------------- model
def _model(mask_mode: str = "ray") -> SyncTalkNeRF:
    torch.manual_seed(0)
    model = SyncTalkNeRF(NerfConfig(num_codes=4, mask_mode=mask_mode))
    with torch.no_grad():  # make audio effects large enough to see (the original init is ~1e-4)
        for name in ("xy", "yz", "xz"):
            getattr(model.field.encoder, f"encoder_{name}").embeddings.normal_(0, 1)
    return model.eval()


def _frame_rays(size: int = 16):
    pose = head_pose_to_ngp(_look_at_origin_pose(0.6))
    o, d = image_rays(pose, 30.0 * size, size / 2, size / 2, size, size)
    lip = torch.zeros(size * size)
    lip[size * size // 2:] = 1.0  # lower half of the image is the "lip region"
    return o, d, lip


@pytest.mark.parametrize("mask_mode", ["ray", "none", "loss"])
def test_masked_attention_keeps_audio_inside_the_lip_region(mask_mode):
    model = _model(mask_mode)
    o, d, lip = _frame_rays()
    expr = torch.rand(7)
    bg = torch.full((len(o), 3), 0.5)
    with torch.no_grad():
        a = model.render(o, d, audio_code=torch.randn(32), expression=expr, code_index=1, bg=bg, lip_mask=lip,
                         expr_mask=1 - lip)
        b = model.render(o, d, audio_code=torch.randn(32) * 3, expression=expr, code_index=1, bg=bg, lip_mask=lip,
                         expr_mask=1 - lip)
    outside = lip == 0
    diff_outside = float((a.rgb[outside] - b.rgb[outside]).abs().max())
    diff_inside = float((a.rgb[~outside] - b.rgb[~outside]).abs().max())
    assert diff_inside > 1e-4
    if mask_mode == "ray":
        assert diff_outside <= 1e-6
    else:
        assert diff_outside > 1e-4


def test_render_is_deterministic_and_chunking_is_invisible():
    model = _model()
    o, d, lip = _frame_rays()
    kwargs = dict(audio_code=torch.randn(32), expression=torch.rand(7), code_index=2, bg=torch.rand(len(o), 3),
                  lip_mask=lip, expr_mask=1 - lip)
    with torch.no_grad():
        first = model.render(o, d, **kwargs)
        second = model.render(o, d, **kwargs)
        chunked = model.render(o, d, chunk_size=37, **kwargs)
    for name in ("rgb", "alpha", "depth", "amb_aud", "amb_eye", "uncertainty"):
        assert torch.equal(getattr(first, name), getattr(second, name)), name
        assert torch.allclose(getattr(first, name), getattr(chunked, name), atol=1e-5), name
    assert isinstance(first, RenderOutput) and first.rgb.shape == (len(o), 3) and first.alpha.shape == (len(o),)
    assert float(first.rgb.min()) >= 0 and float(first.rgb.max()) <= 1
    with torch.inference_mode():  # how ComfyUI runs nodes
        assert torch.equal(model.render(o, d, **kwargs).rgb, first.rgb)
    with torch.no_grad():
        empty = model.render(o[:0], d[:0], **{**kwargs, "bg": kwargs["bg"][:0], "lip_mask": lip[:0],
                                              "expr_mask": lip[:0]})
    assert empty.rgb.shape == (0, 3) and empty.alpha.shape == (0,)


def test_render_per_ray_conditioning_and_gradients():
    model = _model()
    model.train()
    o, d, lip = _frame_rays(8)
    n = len(o)
    code = torch.randn(32)
    out = model.render(o, d, audio_code=code.expand(n, 32), expression=torch.rand(7).expand(n, 7),
                       code_index=torch.full((n,), 3), bg=torch.zeros(n, 3), lip_mask=lip, expr_mask=1 - lip,
                       perturb=True, generator=torch.Generator().manual_seed(0))
    loss = out.rgb.mean() + out.amb_aud.mean() * 1e-4 + out.uncertainty.mean()
    loss.backward()
    grads = {name: p.grad for name, p in model.named_parameters()}
    assert grads["field.encoder.encoder_xy.embeddings"].abs().sum() > 0
    assert grads["individual_codes"][3].abs().sum() > 0 and grads["individual_codes"][0].abs().sum() == 0
    assert grads["field.unc_net.net.0.weight"].abs().sum() > 0


def test_model_occupancy_helpers_and_param_groups():
    model = SyncTalkNeRF(NerfConfig(num_codes=2, grid_resolution=32))
    pose = head_pose_to_ngp(_look_at_origin_pose(0.6))
    model.mark_untrained_cells(pose[None], 1000.0, 64.0, 64.0)
    unseen = model.occupancy.density < 0
    assert 0 < float(unseen.float().mean()) < 1
    model.update_occupancy(torch.randn(32), torch.rand(7), generator=torch.Generator().manual_seed(0))
    assert bool((model.occupancy.density[unseen] == -1).all()) and not bool(model.occupancy.occupied[unseen].any())
    assert bool(model.occupancy.occupied.any())
    groups = model.param_groups(lr_grid=1e-2, lr_net=1e-3)
    params = [p for g in groups for p in g["params"]]
    assert len(params) == len(set(map(id, params))) == len(list(model.parameters()))
    lrs = {g["name"]: (g["lr"], g["weight_decay"]) for g in groups}
    assert lrs == {"audio_net": (1e-3, 0.0), "encoders": (1e-2, 0.01), "nets": (1e-3, 0.0),
                   "audio_att_net": (5e-3, 1e-4)}
    torch.optim.AdamW(groups, betas=(0.0, 0.99), eps=1e-8)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_render_matches_cpu():
    model = _model()
    o, d, lip = _frame_rays()
    kwargs = dict(audio_code=torch.randn(32), expression=torch.rand(7), code_index=2, bg=torch.rand(len(o), 3),
                  lip_mask=lip, expr_mask=1 - lip)
    with torch.no_grad():
        cpu = model.render(o, d, **kwargs)
        gpu_model = model.cuda()
        gpu = gpu_model.render(o.cuda(), d.cuda(), **{k: v.cuda() if isinstance(v, torch.Tensor) else v
                                                      for k, v in kwargs.items()})
    for name in ("rgb", "alpha", "depth"):
        a, b = getattr(cpu, name), getattr(gpu, name).cpu()
        assert torch.allclose(a, b, atol=1e-4), f"{name}: {float((a - b).abs().max())}"


def test_renders_what_the_padded_renderer_rendered():
    """The renderer (packed samples, until-opaque inference) against images and attention sums written by the
    padded renderer it replaced (commit 4b16e14, same seeded scene: a model with strong random features and an
    occupancy grid from its density, 24 x 24 pixels, translucent to nearly opaque rays) — inference and training
    (jittered) renders agree to float32 rounding."""
    torch.manual_seed(0)
    model = SyncTalkNeRF(NerfConfig(num_codes=4, grid_resolution=32))
    with torch.no_grad():
        for name in ("xy", "yz", "xz"):
            getattr(model.field.encoder, f"encoder_{name}").embeddings.normal_(0, 1)
        model.field.sigma_net.net[-1].weight[0].abs_().mul_(12)
    code, expr = torch.randn(32), torch.rand(7)
    model.update_occupancy(code, expr, generator=torch.Generator().manual_seed(0))
    o, d = image_rays(head_pose_to_ngp(_look_at_origin_pose(0.6)), 30.0, 12.0, 12.0, 24, 24)
    lip = torch.zeros(len(o))
    lip[len(o) // 2:] = 1
    kwargs = dict(audio_code=code, expression=expr, code_index=1, lip_mask=lip, expr_mask=1 - lip,
                  bg=torch.rand(len(o), 3, generator=torch.Generator().manual_seed(1)))
    with torch.no_grad():
        inference = model.eval().render(o, d, **kwargs)
    training = model.train().render(o, d, perturb=True, generator=torch.Generator().manual_seed(2), **kwargs)
    reference = np.load(Path(__file__).parent / "data" / "renderer_reference.npz")
    for mode, out in (("infer", inference), ("train", training)):
        for name in ("rgb", "alpha", "depth", "amb_aud", "amb_eye", "uncertainty"):
            got, want = getattr(out, name).detach().numpy(), reference[f"{mode}_{name}"]
            scale = max(1.0, float(np.abs(want).max()))
            assert np.abs(got - want).max() <= 1e-6 * scale, f"{mode} {name}: {np.abs(got - want).max():.3g}"
