"""Image and lip-sync metrics used by ``evaluate``: PSNR, SSIM, LPIPS (optional weights) and mouth landmark distance.

Images are ``[H, W, 3]`` (one frame) or ``[B, H, W, 3]`` (frames) RGB, float in [0, 1] (tensors or numpy arrays);
batch metrics are averaged over frames, like the original evaluation (reference-synctalk.md 11).
Heavy dependencies (MediaPipe for LMD, LPIPS weights) load only when those metrics are called.
"""
from synctalk_lib.metrics.psnr import psnr, psnr_per_frame
from synctalk_lib.metrics.ssim import ssim, ssim_per_frame

__all__ = ["psnr", "psnr_per_frame", "ssim", "ssim_per_frame"]
