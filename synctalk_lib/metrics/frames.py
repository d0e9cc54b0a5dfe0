"""Image and mouth scores of rendered frames against the real frames they stand for.

    with FrameScorer(models_dirs=[models], device="cpu") as scorer:
        scores = scorer.score(rendered, real, boxes=face_boxes(track.landmarks[frames], 512, 512))
    scores.psnr, scores.ssim, scores.lpips, scores.lmd, scores.jaw_r, scores.laplacian_ratio, ...

LPIPS and MediaPipe (LMD, jawOpen) are loaded once per scorer; LPIPS is None (with a note) when its weights are
missing, LMD / jawOpen r are None when switched off or when no face is found.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from synctalk_lib.metrics.sharpness import Box


def clean_number(value: float | None, digits: int = 4) -> float | None:
    """A JSON-friendly number: None for NaN / None, rounded otherwise (inf stays inf)."""
    if value is None or value != value:
        return None
    return float(value) if math.isinf(value) else round(float(value), digits)


@dataclass(frozen=True)
class FrameScores:
    """Scores of rendered frames against real frames, averaged over the frames (see each field)."""

    psnr: float
    """dB, mean over frames."""
    ssim: float
    lpips: float | None
    """AlexNet LPIPS; None when its weights are missing or it was switched off."""
    lmd: float | None
    """Mouth landmark distance, px at 512 (MediaPipe's 40 lip points); None when off or no face was found."""
    jaw_r: float | None
    """Pearson r over the frames between the rendered and the real MediaPipe jawOpen (from the LMD detections)."""
    laplacian_ratio: float | None
    """Median over frames of var(Laplacian) output / real in the face box (``metrics.sharpness``)."""
    highpass_correlation: float | None
    """Mean over frames of the Pearson r of the high-pass bands in the face box (``metrics.sharpness``)."""
    per_frame: dict[str, list] = field(default_factory=dict, repr=False)
    """The same per frame: psnr, ssim, lpips, lmd, jaw_open, real_jaw_open, laplacian_ratio, highpass_correlation."""


class FrameScorer:
    """Scores frame pairs with every image metric, loading LPIPS and the face landmarker once."""

    def __init__(self, *, models_dirs: Iterable[Path | str] | None = None, device: Any = "cpu",
                 with_lpips: bool = True, with_lmd: bool = True):
        self.models_dirs = list(models_dirs) if models_dirs is not None else None
        self.device = device
        self.with_lmd = with_lmd
        self.notes: list[str] = []
        self._lpips = self._load_lpips() if with_lpips else None
        self._landmarker = None

    def _load_lpips(self):
        from synctalk_lib.errors import MissingWeightsError
        from synctalk_lib.metrics.lpips import load_lpips

        try:
            return load_lpips("alex", self.models_dirs, device=self.device)
        except MissingWeightsError as exc:
            self.notes.append(f"LPIPS not computed: {exc}")
            return None

    def _open_landmarker(self):
        if self._landmarker is None:
            from synctalk_lib.face.landmarker import FaceLandmarker

            self._landmarker = FaceLandmarker.open(self.models_dirs, mode="image")
        return self._landmarker

    def score(self, pred: np.ndarray, real: np.ndarray, boxes: Sequence[Box] | None = None,
              label: str = "", frames: Sequence[int] | None = None) -> FrameScores:
        """Scores of ``[F, H, W, 3]`` rendered frames against the real ones (uint8, or float in 0..1).

        Args:
            boxes: the face box of each frame for the sharpness measures (None: the whole frame).
            label: prefixes the notes this call adds (e.g. "portrait").
            frames: the clip's frame numbers of the pairs, for the notes (default 0..F-1).
        """
        from synctalk_lib.metrics import psnr_per_frame, ssim_per_frame
        from synctalk_lib.metrics.sharpness import sharpness

        pred, real = _as_float_frames(pred), _as_float_frames(real)
        psnr, ssim = psnr_per_frame(pred, real), ssim_per_frame(pred, real)
        per_frame: dict[str, list] = {"psnr": [clean_number(v) for v in psnr], "ssim": [clean_number(v) for v in ssim]}
        lpips = None
        if self._lpips is not None:
            from synctalk_lib.metrics.lpips import lpips_distance

            per_frame["lpips"] = [clean_number(v) for v in lpips_distance(pred, real, self._lpips)]
            lpips = float(np.mean(per_frame["lpips"]))
        lmd = jaw_r = None
        if self.with_lmd:
            lmd, jaw_r = self._mouth(pred, real, per_frame, label, frames)
        sharp = sharpness(pred, real, boxes)
        per_frame["laplacian_ratio"] = [clean_number(v) for v in sharp.per_frame_ratio]
        per_frame["highpass_correlation"] = [clean_number(v) for v in sharp.per_frame_correlation]
        return FrameScores(psnr=clean_number(float(np.mean(psnr))), ssim=clean_number(float(np.mean(ssim))),
                           lpips=clean_number(lpips), lmd=clean_number(lmd), jaw_r=clean_number(jaw_r),
                           laplacian_ratio=clean_number(sharp.laplacian_ratio),
                           highpass_correlation=clean_number(sharp.highpass_correlation), per_frame=per_frame)

    def _mouth(self, pred: np.ndarray, real: np.ndarray, per_frame: dict[str, list], label: str,
               frames: Sequence[int] | None) -> tuple[float | None, float | None]:
        from synctalk_lib.metrics.lipsync import pearson
        from synctalk_lib.metrics.lmd import mouth_landmark_distance

        result = mouth_landmark_distance(pred, real, landmarker=self._open_landmarker())
        per_frame["lmd"] = [clean_number(v) for v in result.per_frame]
        per_frame["jaw_open"] = [clean_number(v) for v in result.pred_jaw_open]
        per_frame["real_jaw_open"] = [clean_number(v) for v in result.target_jaw_open]
        if result.skipped:
            prefix = f"{label}: " if label else ""
            skipped = [int(frames[i]) for i in result.skipped] if frames is not None else list(result.skipped)
            self.notes.append(f"{prefix}LMD skipped frames {skipped} (no face found in the render or the real "
                              "frame)")
        return result.lmd, pearson(np.asarray(result.pred_jaw_open), np.asarray(result.target_jaw_open))

    def close(self) -> None:
        if self._landmarker is not None:
            self._landmarker.close()
            self._landmarker = None

    def __enter__(self) -> "FrameScorer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _as_float_frames(frames: np.ndarray) -> np.ndarray:
    array = np.asarray(frames)
    array = array.astype(np.float32) / 255.0 if array.dtype == np.uint8 else array.astype(np.float32)
    return array[None] if array.ndim == 3 else array


__all__ = ["FrameScorer", "FrameScores", "clean_number"]
