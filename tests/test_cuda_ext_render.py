"""The renderer with cuda_ext's Triton kernels against the same renderer with their PyTorch twins: same pixels,
alpha, depth, attention sums and uncertainty; same gradients; the same parameters after a few training steps.
CPU through Triton's interpreter in CI; GPU where present. A tiny model keeps the interpreter fast.
"""
from __future__ import annotations


import pytest
import torch

from cuda_ext_testing import DEVICE, assert_close, require_triton

pytestmark = pytest.mark.usefixtures("one_thread")

require_triton()

from synctalk_lib.nerf import NerfConfig, SyncTalkNeRF, backends  # noqa: E402


def render_fast(model, rays_o, rays_d, **kwargs):
    """The renderer with the Triton kernels (Triton's interpreter on the CPU)."""
    return model.render(rays_o, rays_d, kernels=backends.triton_kernels(), **kwargs)


def render_twins(model, rays_o, rays_d, **kwargs):
    """The renderer with the kernels' PyTorch twins (the reference)."""
    return model.render(rays_o, rays_d, kernels=backends.twins(), **kwargs)

OUTPUTS = ("rgb", "alpha", "depth", "amb_aud", "amb_eye", "uncertainty")


def tiny_model(density_gain: float, seed: int = 0) -> SyncTalkNeRF:
    """A small model with features large enough to give real structure, and a random occupancy grid."""
    torch.manual_seed(seed)
    cfg = NerfConfig(audio_in_dim=16, levels=4, base_resolution=8, log2_hashmap_size=8, desired_resolution=32,
                     grid_resolution=16, max_steps=8, march_step=2 * 3 ** 0.5 / 16, backend="torch",
                     num_codes=3)
    model = SyncTalkNeRF(cfg)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name in ("xy", "yz", "xz"):
            grid = getattr(model.field.encoder, f"encoder_{name}")
            grid.embeddings.copy_(torch.rand(grid.embeddings.shape, generator=gen) * 2 - 1)
        # row 0 of the last layer makes log-density; |w| keeps it positive for a gain > 1 (dense, opaque media)
        last = model.field.sigma_net.net[-1].weight
        last[0] = last[0].abs() * density_gain if density_gain > 1 else last[0]
        model.occupancy.occupied.copy_(torch.rand(16, 16, 16, generator=gen) > 0.3)
    return model.to(DEVICE)


def rays(n: int, seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    rays_o = torch.tensor([0.0, 0.0, 2.0]) + torch.randn(n, 3, generator=gen) * 0.1
    target = torch.randn(n, 3, generator=gen) * 0.4
    rays_d = torch.nn.functional.normalize(target - rays_o, dim=-1)
    return rays_o.to(DEVICE), rays_d.to(DEVICE), torch.rand(n, 3, generator=gen).to(DEVICE)


def inputs(model: SyncTalkNeRF, bg: torch.Tensor, lip_mask: torch.Tensor | None = None):
    gen = torch.Generator().manual_seed(2)
    return dict(audio_code=torch.randn(model.config.audio_dim, generator=gen).to(DEVICE),
                expression=torch.rand(7, generator=gen).to(DEVICE), code_index=1, bg=bg,
                lip_mask=lip_mask, expr_mask=None if lip_mask is None else 1 - lip_mask)


@pytest.mark.parametrize("density_gain", [1.0, 60.0])  # translucent, and mostly opaque (early termination)
def test_inference_until_opaque_matches_pytorch_renderer(density_gain):
    model = tiny_model(density_gain)
    rays_o, rays_d, bg = rays(160)
    lip = (torch.rand(160, generator=torch.Generator().manual_seed(4)) > 0.5).float().to(DEVICE)
    kwargs = inputs(model, bg, lip_mask=lip)
    evaluated = []
    field_forward = model.field.forward

    def counting_field(positions, *args, **kw):
        evaluated.append(positions.shape[0])
        return field_forward(positions, *args, **kw)

    with torch.no_grad():
        ref = render_twins(model, rays_o, rays_d, perturb=False, generator=None, **kwargs)
        model.field.forward = counting_field
        try:
            fast = render_fast(model, rays_o, rays_d, perturb=False, generator=None, **kwargs)
        finally:
            model.field.forward = field_forward
    for name in OUTPUTS:
        assert_close(getattr(fast, name), getattr(ref, name), 1e-5, name)
    if density_gain > 1:
        assert float((ref.alpha > 0.9999).float().mean()) > 0.3, "scene meant to be mostly opaque"
        full = _samples_in_full_march(model, rays_o, rays_d)  # what a training render evaluates
        assert sum(evaluated) < 0.8 * full, \
            f"rendering until opaque evaluated {sum(evaluated)} of {full} samples; it should skip those behind " \
            "opaque ones"


def _samples_in_full_march(model: SyncTalkNeRF, rays_o: torch.Tensor, rays_d: torch.Tensor) -> int:
    from synctalk_lib.nerf.sampler import ray_aabb_intersect

    near, far, _ = ray_aabb_intersect(rays_o, rays_d, model.aabb, model.config.min_near)
    samples = backends.twins().march_packed(rays_o, rays_d, near, far, step=model.config.step_size,
                                            max_steps=model.config.max_steps, occupied=model.occupancy.occupied,
                                            bound=model.occupancy.bound)
    return int(samples.offsets[-1])


def test_training_path_matches_outputs_and_gradients():
    model = tiny_model(20.0)
    rays_o, rays_d, bg = rays(96)
    kwargs = inputs(model, bg)
    ref = render_twins(model, rays_o, rays_d, perturb=True, generator=torch.Generator().manual_seed(7), **kwargs)
    fast = render_fast(model, rays_o, rays_d, perturb=True, generator=torch.Generator().manual_seed(7), **kwargs)
    for name in OUTPUTS:
        assert_close(getattr(fast, name), getattr(ref, name), 1e-5, name)
    params = [p for p in model.parameters() if p.requires_grad]

    def loss(out):
        return (out.rgb - 0.5).square().sum() + out.depth.sum() + 0.1 * out.amb_aud.sum() + out.uncertainty.sum()

    g_ref = torch.autograd.grad(loss(ref), params, allow_unused=True)
    g_fast = torch.autograd.grad(loss(fast), params, allow_unused=True)
    names = [name for name, p in model.named_parameters() if p.requires_grad]
    for name, a, b in zip(names, g_fast, g_ref):
        if b is None:
            assert a is None or float(a.abs().max()) == 0.0, name
            continue
        assert_close(a, b, 1e-4, f"gradient of {name}")


def test_a_few_training_steps_give_the_same_model():
    """Train two copies for 3 gradient steps, one through each renderer: parameters and renders agree.

    (Plain gradient descent: constructing a torch.optim optimiser first imports torch._dynamo, seconds of CI time.)
    """
    models = [tiny_model(5.0, seed=3), tiny_model(5.0, seed=3)]
    rays_o, rays_d, bg = rays(64, seed=5)
    target = torch.rand(64, 3, generator=torch.Generator().manual_seed(6)).to(DEVICE)
    losses = {0: [], 1: []}
    for which, model in enumerate(models):
        for step in range(3):
            kwargs = inputs(model, bg)
            gen = torch.Generator().manual_seed(100 + step)
            render = render_twins if which == 0 else render_fast
            out = render(model, rays_o, rays_d, perturb=True, generator=gen, **kwargs)
            loss = (out.rgb - target).square().mean()
            params = [p for p in model.parameters() if p.requires_grad]
            grads = torch.autograd.grad(loss, params, allow_unused=True)
            with torch.no_grad():
                for p, g in zip(params, grads):
                    if g is not None:
                        p -= 0.5 * g
            losses[which].append(float(loss.detach()))
    assert losses[0][-1] < losses[0][0], "the tiny model should learn"
    assert losses[1] == pytest.approx(losses[0], rel=1e-4)
    for (name, a), (_, b) in zip(models[1].named_parameters(), models[0].named_parameters()):
        assert_close(a, b, 1e-3, f"parameter {name} after training")
    with torch.no_grad():
        kwargs = inputs(models[0], bg)
        image_ref = render_twins(models[0], rays_o, rays_d, perturb=False, generator=None, **kwargs).rgb
        image_fast = render_fast(models[1], rays_o, rays_d, perturb=False, generator=None, **kwargs).rgb
    assert_close(image_fast, image_ref, 1e-3, "rendered pixels after training")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (full-size model through model.render)")
def test_full_size_model_renders_the_same_through_both_backends_on_gpu():
    """Official sizes (12-level grids, 128^3 occupancy, 16 steps): a 128 x 128 image and one training step's
    gradients through ``SyncTalkNeRF.render`` with backend "torch" and "cuda_ext" (same weights)."""
    from synctalk_lib.nerf import head_pose_to_ngp, image_rays

    torch.manual_seed(0)
    ref_model = SyncTalkNeRF(NerfConfig(num_codes=4, backend="torch")).to(DEVICE)
    fast_model = SyncTalkNeRF(NerfConfig(num_codes=4, backend="cuda_ext")).to(DEVICE)
    with torch.no_grad():
        for grid in (ref_model.field.encoder.encoder_xy, ref_model.field.encoder.encoder_yz,
                     ref_model.field.encoder.encoder_xz):
            grid.embeddings.uniform_(-1, 1)
        ref_model.field.sigma_net.net[-1].weight[0].abs_().mul_(30)
        centres = ref_model.occupancy.cell_centres()
        inside = ((centres / torch.tensor([0.55, 0.4, 0.45], device=DEVICE)) ** 2).sum(-1) < 1
        ref_model.occupancy.occupied.copy_(inside.reshape(ref_model.occupancy.occupied.shape))
    fast_model.load_state_dict(ref_model.state_dict())
    fast_model.occupancy.occupied.copy_(ref_model.occupancy.occupied)
    assert fast_model.field.encoder.encoder_xy.backend == "cuda_ext"
    pose = torch.eye(4)
    pose[2, 3] = 0.6
    rays_o, rays_d = image_rays(head_pose_to_ngp(pose).to(DEVICE), 150.0, 64.0, 64.0, 128, 128)
    kwargs = dict(audio_code=torch.randn(32, device=DEVICE), expression=torch.rand(7, device=DEVICE),
                  code_index=1, bg=torch.ones(3, device=DEVICE))
    with torch.no_grad():
        ref = ref_model.render(rays_o, rays_d, **kwargs)
        fast = fast_model.render(rays_o, rays_d, **kwargs)
    assert float(ref.alpha.mean()) > 0.05, "the test scene should show a head"
    for name in OUTPUTS:
        assert_close(getattr(fast, name), getattr(ref, name), 1e-4, f"full-size {name}")
    pick = torch.randperm(len(rays_o), device=DEVICE)[:4096]
    losses = []
    for model in (ref_model, fast_model):
        out = model.render(rays_o[pick], rays_d[pick], perturb=True, generator=torch.Generator().manual_seed(0),
                           **kwargs)
        losses.append((out.rgb - 0.3).abs().mean() + out.depth.mean())
    params = (ref_model.field.encoder.encoder_xy.embeddings, fast_model.field.encoder.encoder_xy.embeddings)
    g_ref = torch.autograd.grad(losses[0], params[0])[0]
    g_fast = torch.autograd.grad(losses[1], params[1])[0]
    assert_close(g_fast, g_ref, 1e-3, "full-size hash-grid gradient")
