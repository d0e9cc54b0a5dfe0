"""The SyncTalk head NeRF: tri-plane hash encoding, audio/expression-conditioned field, occupancy-grid renderer.

Small composable pieces, one concept per module:

- ``config``: :class:`NerfConfig` (hyper-parameters, JSON round trip).
- ``hashgrid`` / ``triplane``: 2-D multiresolution hash grids and the tri-plane encoder (``backends``: torch,
  tinycudann, cuda_ext).
- ``sh``: spherical-harmonics direction encoding; ``audio_net``: lip code from audio windows.
- ``field``: the density/colour field with facial-aware masked attention.
- ``occupancy``: the occupancy grid; ``sampler``: ray/box near-far and the jitter of the first sample.
- ``renderer``: :func:`volume_render` (marching + any field + compositing, packed samples, until-opaque inference)
  and :class:`RenderOutput`; ``backends``: which implementation runs (cuda_ext's Triton kernels or their PyTorch
  twins, tinycudann).
- ``rays``: NGP-space poses, pixel rays, audio windows; ``model``: :class:`SyncTalkNeRF`.
- ``official``: import of official SyncTalk head checkpoints.
"""
from synctalk_lib.nerf.config import NerfConfig
from synctalk_lib.nerf.model import SyncTalkNeRF
from synctalk_lib.nerf.rays import audio_window, audio_windows, head_pose_to_ngp, image_rays, pixel_rays
from synctalk_lib.nerf.renderer import RenderOutput, volume_render

__all__ = ["NerfConfig", "RenderOutput", "SyncTalkNeRF", "audio_window", "audio_windows", "head_pose_to_ngp",
           "image_rays", "pixel_rays", "volume_render"]
