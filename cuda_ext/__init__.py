"""Optional fast kernels for the SyncTalk renderer (Triton), each with a PyTorch twin in ``synctalk_lib.nerf``.

Importing this package is free: it imports neither Triton nor the kernel modules. Each public function below is a
small wrapper that, on its first call, asks :mod:`cuda_ext._backend` whether its kernel family runs on the
inputs' device (Triton importable, a CUDA GPU, the kernels compile and agree with the PyTorch twin on a tiny
probe). If yes it runs the Triton kernel; if not it runs the PyTorch twin — after **one** warning on CUDA machines
naming the reason and the fix, silently on CPU tensors (where the twin is the normal path). Nothing here ever
crashes because a kernel cannot load.

    import cuda_ext
    cuda_ext.is_available()                  # True on a CUDA machine with triton
    cuda_ext.availability()                  # (False, "the 'triton' package is not installed ...")
    features = cuda_ext.hash_grid_2d(u, embeddings, offsets, scales, strides, dense)

Kernel families (``cuda_ext/triton_<family>.py``): ``hashgrid`` (2-D multiresolution hash grid, all levels in one
launch, forward + backward), ``march`` (occupancy-grid marching: packed training samples, padded samples, inference
steps), ``composite`` (volume compositing forward + backward; packed, dense and inference-step forms).
:mod:`cuda_ext.renderer` puts them together into the fast render path of ``SyncTalkNeRF``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import _backend

if TYPE_CHECKING:  # for readers and type checkers only; never imported at run time here
    from torch import Tensor

__all__ = ["availability", "is_available", "hash_grid_2d", "march_rays", "march_rays_packed", "composite_packed",
           "composite_dense"]


def availability(family: str = "all", device: Any = "cuda") -> tuple[bool, str]:
    """(ok, reason) for running the kernels of ``family`` ("hashgrid", "march", "composite" or "all") on ``device``.

    The first call for a family imports Triton and compiles and checks that family's kernels (seconds the first
    time on a machine; Triton caches the compiled kernels on disk).
    """
    return _backend.availability(family, device)


def is_available(device: Any = "cuda") -> bool:
    """True when every kernel family runs on ``device`` here."""
    return _backend.availability("all", device)[0]


def _device_of(tensor: "Tensor") -> Any:
    return tensor.device


def hash_grid_2d(u: "Tensor", embeddings: "Tensor", offsets: "Tensor", scales: "Tensor", strides: "Tensor",
                 dense: "Tensor") -> "Tensor":
    """2-D multiresolution hash grid, all levels at once (contract of ``hash_grid_2d_torch``).

    Args:
        u: [N, 2] points in the unit square (outside -> 0).
        embeddings: [T, C] float32 or float16 table of all levels.
        offsets: [L + 1] int first row per level (+ total); scales: [L] float; strides: [L] int; dense: [L] bool.

    Returns:
        [N, L * C] level-major features (dtype of ``embeddings``), differentiable in ``u`` and ``embeddings``.
    """
    from synctalk_lib.nerf.hashgrid import hash_grid_2d_torch

    def fast():
        from .triton_hashgrid import hash_grid_2d_triton

        return hash_grid_2d_triton(u, embeddings, offsets, scales, strides, dense)

    return _backend.run_or_fallback("hashgrid", _device_of(embeddings), fast,
                                    lambda: hash_grid_2d_torch(u, embeddings, offsets, scales, strides, dense))


def march_rays(rays_o: "Tensor", rays_d: "Tensor", near: "Tensor", far: "Tensor", *, step: float, max_steps: int,
               occupancy: Any = None, perturb: bool = False, generator: Any = None):
    """Padded samples ``[N, max_steps]`` (a drop-in for ``synctalk_lib.nerf.sampler.march_rays``).

    Args:
        rays_o, rays_d: [N, 3] origins and unit directions; near, far: [N].
        step: distance between samples; max_steps: samples per ray.
        occupancy: ``OccupancyGrid`` or None; perturb, generator: jitter of the first sample (training).

    Returns:
        ``RaySamples`` (positions [N, S, 3], t [N, S], deltas [N, S], mask [N, S]).
    """
    from synctalk_lib.nerf.sampler import march_rays as march_rays_torch

    kwargs = dict(step=step, max_steps=max_steps, occupancy=occupancy, perturb=perturb, generator=generator)

    def fast():
        from .triton_march import march_rays_triton

        return march_rays_triton(rays_o, rays_d, near, far, **kwargs)

    return _backend.run_or_fallback("march", _device_of(rays_o), fast,
                                    lambda: march_rays_torch(rays_o, rays_d, near, far, **kwargs))


def march_rays_packed(rays_o: "Tensor", rays_d: "Tensor", near: "Tensor", far: "Tensor", *, step: float,
                      max_steps: int, occupancy: Any = None, perturb: bool = False, generator: Any = None):
    """Compacted samples (training layout), arguments as :func:`march_rays`.

    Returns:
        ``cuda_ext.triton_march.PackedSamples``: positions [M, 3], t [M], deltas [M], ray_indices [M],
        offsets [N + 1].
    """
    kwargs = dict(step=step, max_steps=max_steps, occupancy=occupancy, perturb=perturb, generator=generator)

    def fast():
        from .triton_march import march_rays_packed_triton

        return march_rays_packed_triton(rays_o, rays_d, near, far, **kwargs)

    def slow():
        from .torch_twins import march_rays_packed_torch

        return march_rays_packed_torch(rays_o, rays_d, near, far, **kwargs)

    return _backend.run_or_fallback("march", _device_of(rays_o), fast, slow)


def composite_packed(sigma: "Tensor", deltas: "Tensor", t: "Tensor", offsets: "Tensor", values: "Tensor | None" = None,
                     plain: "Tensor | None" = None, *, max_samples: int | None = None,
                     transmittance_eps: float = 1e-4):
    """Volume compositing of packed samples (ray r owns ``offsets[r]:offsets[r + 1]``).

    Args:
        sigma: [M] densities; deltas: [M]; t: [M]; offsets: [N + 1].
        values: [M, C] weighted channels (colour, ...); plain: [M, P] channels summed over visited samples.
        max_samples: largest per-ray count, when known; transmittance_eps: early-termination threshold.

    Returns:
        ``Composited``: opacity [N], depth [N], weighted [N, C], plain [N, P] (float32, differentiable in sigma,
        values and plain).
    """
    kwargs = dict(max_samples=max_samples, transmittance_eps=transmittance_eps)

    def fast():
        from .triton_composite import composite_packed_triton

        return composite_packed_triton(sigma, deltas, t, offsets, values, plain, **kwargs)

    def slow():
        from .torch_twins import composite_packed_torch

        return composite_packed_torch(sigma, deltas, t, offsets, values, plain, **kwargs)

    return _backend.run_or_fallback("composite", _device_of(sigma), fast, slow)


def composite_dense(sigma: "Tensor", deltas: "Tensor", t: "Tensor", mask: "Tensor | None" = None,
                    values: "Tensor | None" = None, plain: "Tensor | None" = None, *,
                    transmittance_eps: float = 1e-4):
    """Volume compositing of padded samples ``[N, S]`` (mask marks the real ones); results as
    :func:`composite_packed`."""
    kwargs = dict(transmittance_eps=transmittance_eps)

    def fast():
        from .triton_composite import composite_dense_triton

        return composite_dense_triton(sigma, deltas, t, mask, values, plain, **kwargs)

    def slow():
        from .torch_twins import composite_dense_torch

        return composite_dense_torch(sigma, deltas, t, mask, values, plain, **kwargs)

    return _backend.run_or_fallback("composite", _device_of(sigma), fast, slow)
