"""Optional fast kernels for the SyncTalk renderer (Triton), each with a PyTorch twin.

Importing this package is free: it imports neither Triton nor the kernel modules. Which implementation runs, and
whether the kernels work on a machine, is decided in one place, ``synctalk_lib.nerf.backends`` (it loads this
package by file location under a private name, so another pack's ``cuda_ext`` on ``sys.path`` is never used).

Kernel families: ``hashgrid`` (2-D multiresolution hash grid, all levels in one launch, forward + backward),
``march`` (occupancy-grid marching into packed samples), ``composite`` (volume compositing of packed samples, forward
+ backward). Each family is two modules side by side: ``<family>.py``, the PyTorch twin (the reference, and what runs
where the kernel cannot), and ``triton_<family>.py``, the kernel with the same contract and a ``probe(kind)`` that
checks it against the twin. Every public function takes and returns tensors (and plain numbers); nothing here
imports anything but torch and, in the kernel modules, Triton.
"""
FAMILIES: tuple[str, ...] = ("hashgrid", "composite", "march")
"""Kernel groups, each in its own ``triton_<family>.py`` with a ``probe(kind)`` function."""
