"""Quality and lip-sync metrics, and the evaluation of a trained model built from them.

Metric functions (numbers from arrays; no rendering):

- ``psnr``, ``ssim``, ``lpips`` (optional weights), ``lmd`` (mouth landmark distance, MediaPipe): image pairs;
- ``sharpness``: Laplacian-variance ratio and high-pass correlation in the face box (numpy only);
- ``lipsync``: speech envelope vs mouth opening (jawOpen), ``drive``: reference leak, silence, closed-mouth range;
- ``frames.FrameScorer``: all image metrics of rendered vs real frames at once.

``synctalk_lib.pipeline.evaluate(model, subject, ...)`` (``pipeline/evaluation.py``) renders held-out frames and
drives and scores them with these (the ``evaluate`` command and ``bench/quality.py`` call it). Images are ``[H, W, 3]`` (one frame) or ``[B, H, W, 3]``
(frames) RGB, float in [0, 1] or uint8; batch metrics are averaged over frames, like the original evaluation
(reference-synctalk.md 11). Heavy dependencies (MediaPipe, LPIPS weights) load only when used; nothing here renders (the renderer imports
this package).
"""
from synctalk_lib.metrics.psnr import psnr, psnr_from_mse, psnr_per_frame
from synctalk_lib.metrics.ssim import ssim, ssim_per_frame

__all__ = ["psnr", "psnr_from_mse", "psnr_per_frame", "ssim", "ssim_per_frame"]
