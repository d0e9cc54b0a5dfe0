"""Optional fast kernels for the SyncTalk renderer (Triton), each with a PyTorch twin.

Importing this package is free: it imports neither Triton nor the kernel modules. Which implementation runs, and
whether the kernels work on a machine, is decided in one place, ``synctalk_lib.nerf.backends`` (it loads this
package by file location under a private name, so another pack's ``cuda_ext`` on ``sys.path`` is never used).

Kernel families (``triton_<family>.py``, each with a ``probe(kind)`` that checks it against its twin):
``hashgrid`` (2-D multiresolution hash grid, all levels in one launch, forward + backward), ``march``
(occupancy-grid marching), ``composite`` (volume compositing forward + backward). ``torch_twins.py`` holds the
PyTorch twins in the kernels' layouts.
"""
FAMILIES: tuple[str, ...] = ("hashgrid", "composite", "march")
"""Kernel groups, each in its own ``triton_<family>.py`` with a ``probe(kind)`` function."""
