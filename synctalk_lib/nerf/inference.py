"""Rendering a trained subject driven by audio features, in chunks (so long renders stream to a file).

    for chunk in render_frames(model, features, expression="training", batch_size=4):
        writer.write(chunk.rgb)                       # [b, H, W, 3] at the reference clip's size

Output frame ``i`` uses the audio window around feature row ``i``; its pose, background and region masks come from
reference frame ``j = timeline.reference_indices(...)[i]`` (ping-pong over the reference frames, the same mapping
the portrait blend uses), unless ``poses`` overrides the pose. The NeRF renders the head at the model's training
resolution over a black background; the premultiplied head colour and its opacity are resized to the reference
clip's size and composited over that frame's background (its torso, neck and background, with the head region
replaced by the clean background), so the output has the clip's size and a sharp background. Rendering is
deterministic (no jitter; per-frame code row 0).
"""
from __future__ import annotations

from typing import Callable, Iterator, NamedTuple, Sequence

import numpy as np
import torch

from synctalk_lib.errors import InputError
from synctalk_lib.nerf.dataset import gate_masks
from synctalk_lib.nerf.model_folder import SyncTalkModel
from synctalk_lib.nerf.rays import audio_windows, head_pose_to_ngp, image_rays
from synctalk_lib.portrait.background import frame_background
from synctalk_lib.timeline import reference_indices
from synctalk_lib.types import AudioFeatures

StepCallback = Callable[[int, int], None]


class RenderChunk(NamedTuple):
    """Consecutive output frames ``first_index .. first_index + b - 1`` (unpacks like a tuple)."""

    first_index: int
    rgb: np.ndarray
    """[b, H, W, 3] float32 0..1 (or uint8 with ``as_uint8``) at the reference clip's size."""
    alpha: np.ndarray
    """[b, H, W] float32 0..1 opacity of the rendered head."""


def check_features(model: SyncTalkModel, features: AudioFeatures) -> None:
    """The features must come from the encoder (and frame rate) the model was trained with, and be finite (they
    are checked when made, but the array can be changed in place afterwards)."""
    if features.dim != model.feature_dim or features.encoder_id != model.encoder_id:
        raise InputError(
            f"the audio features come from {features.encoder_id!r} (D = {features.dim}) but the model "
            f"{model.name!r} was trained on {model.encoder_id!r} (D = {model.feature_dim}); encode the audio with "
            f"the same encoder as the training audio (EncodeAudioAV encoder={_encoder_choice(model.encoder_id)!r})")
    if abs(features.fps - model.subject.fps) > 1e-3:
        raise InputError(f"the audio features are at {features.fps:g} fps but the model renders at "
                         f"{model.subject.fps:g} fps; encode the audio at {model.subject.fps:g} fps")
    if features.num_frames < 1:
        raise InputError("the audio features are empty (no frames to render)")
    _check_finite("the audio features", features.features, "encode the driving audio again (EncodeAudioAV)")


def _check_finite(what: str, values: np.ndarray, fix: str) -> None:
    values = np.asarray(values)
    if values.dtype.kind in "fc" and not np.isfinite(values).all():
        row = int(np.argwhere(~np.isfinite(values))[0][0])
        raise InputError(f"{what} hold NaN or infinite values (first in row {row}), which would render NaN images; "
                         f"{fix}")


def _encoder_choice(encoder_id: str) -> str:
    """The ``encode_audio`` encoder argument that makes features with ``encoder_id``."""
    if encoder_id.startswith("mel"):
        return "mel"
    if encoder_id.startswith("ave-file"):
        return "ave-file:<the same weights file>"
    return "ave" if encoder_id.startswith("ave") else encoder_id


def expression_rows(model: SyncTalkModel, expression, refs: np.ndarray, outputs: np.ndarray) -> np.ndarray:
    """``[b, E]`` expression per output frame: "training" (the reference frames' own, so blinks are replayed),
    "neutral" (the training median), an ``[E]`` vector, or an ``[F, E]`` array indexed by output frame."""
    subject = model.subject
    e_dim = subject.expression.shape[1]
    if expression is None or (isinstance(expression, str) and expression == "training"):
        return subject.expression[refs]
    if isinstance(expression, str):
        if expression != "neutral":
            raise InputError(f"expression must be 'training', 'neutral' or an array, got {expression!r}")
        return np.repeat(subject.neutral_expression()[None], len(refs), axis=0)
    array = np.asarray(expression.detach().cpu() if hasattr(expression, "detach") else expression, np.float32)
    _check_finite("the expression coefficients", array, "pass finite values (or 'training' / 'neutral')")
    if array.ndim == 1 and array.shape[0] == e_dim:
        return np.repeat(array[None], len(refs), axis=0)
    if array.ndim == 2 and array.shape[1] == e_dim:
        if outputs.max() >= len(array):
            raise InputError(f"the expression array has {len(array)} rows but frame {int(outputs.max())} is rendered")
        return array[outputs]
    raise InputError(f"expression must be [{e_dim}] or [frames, {e_dim}], got shape {list(array.shape)}")


def _nearest_reference(model: SyncTalkModel, c2w: np.ndarray) -> int:
    """The reference frame whose camera is closest to ``c2w`` (for region masks of an overridden pose)."""
    ref = model.subject.c2w
    dist = np.linalg.norm(ref[:, :3, 3] - c2w[:3, 3], axis=1) + 0.1 * np.linalg.norm(
        ref[:, :3, :3] - c2w[:3, :3], axis=(1, 2))
    return int(np.argmin(dist))


def _resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    if image.shape[:2] == (height, width):
        return image
    import cv2

    return cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)


@torch.no_grad()
def render_frames(model: SyncTalkModel, features: AudioFeatures, *, expression=None, poses=None,
                  frames: Sequence[int] | None = None, start: int = 0, count: int | None = None,
                  batch_size: int = 4, chunk_rays: int | None = None, device: torch.device | str | None = None,
                  as_uint8: bool = False, on_step: StepCallback | None = None) -> Iterator[RenderChunk]:
    """Render the subject speaking ``features``, yielding chunks of ``batch_size`` frames.

    Args:
        model: a trained subject.
        features: audio features from the training encoder; one output frame per row.
        expression: "training" (default), "neutral", ``[E]`` or ``[F, E]`` (see :func:`expression_rows`).
        poses: optional ``[P, 4, 4]`` OpenGL camera-to-world poses (HeadPose convention) used instead of the
            reference poses, output frame ``i`` taking ``poses[i % P]``.
        frames: render exactly these reference frames with their own audio rows (evaluation of held-out frames);
            overrides the ping-pong mapping, ``start`` and ``count``.
        start, count: output frames ``start .. start + count - 1`` (default: every feature row).
        batch_size: frames per chunk (and per render call).
        chunk_rays: rays per internal render chunk (None: the model's default).
        device: where to render (default: the model's device).
        as_uint8: yield uint8 frames instead of float32.
        on_step: ``on_step(done, total)`` after every chunk; may raise to stop.
    """
    check_features(model, features)
    subject = model.subject
    if frames is not None:
        refs_all = np.asarray(list(frames), np.int64)
        if refs_all.size and (refs_all.min() < 0 or refs_all.max() >= subject.num_frames):
            raise InputError(f"frames must lie in 0..{subject.num_frames - 1}")
        audio_rows = refs_all
        total = len(refs_all)
    else:
        total = features.num_frames - start if count is None else int(count)
        if total <= 0 or start < 0:
            raise InputError(f"nothing to render: start {start}, count {count}, {features.num_frames} feature rows")
        audio_rows = np.arange(start, start + total, dtype=np.int64)
        refs_all = reference_indices(total, subject.num_frames, start=start)
    pose_override = None
    if poses is not None:
        pose_override = np.asarray(poses.detach().cpu() if hasattr(poses, "detach") else poses, np.float32)
        if pose_override.ndim != 3 or pose_override.shape[1:] != (4, 4) or len(pose_override) == 0:
            raise InputError(f"poses must be [P, 4, 4] camera-to-world matrices, got {list(pose_override.shape)}")
        _check_finite("the head poses", pose_override, "run StabilizeHeadPose again or connect other poses")

    device = torch.device(device) if device is not None else model.device
    nerf = model.nerf.to(device).eval()
    h, w = model.render_height, model.render_width
    focal, cx, cy = model.render_intrinsics
    big_h, big_w = subject.height, subject.width
    regions_small = subject.regions(h, w)
    regions_big = subject.regions()
    feats = torch.from_numpy(np.ascontiguousarray(features.features, np.float32)).to(device)
    window = nerf.config.audio_window
    rows_px = np.repeat(np.arange(h), w)
    cols_px = np.tile(np.arange(w), h)
    done = 0
    for first in range(0, total, batch_size):
        idx = np.arange(first, min(first + batch_size, total))
        refs = refs_all[idx]
        outputs = audio_rows[idx]
        expr = torch.from_numpy(np.ascontiguousarray(expression_rows(model, expression, refs, outputs))).to(device)
        codes = nerf.encode_audio(audio_windows(feats, torch.from_numpy(outputs).to(device), window))  # [b, A]
        rays_o, rays_d, lip, eye = [], [], [], []
        for k, j in enumerate(refs):
            c2w = pose_override[(start + int(idx[k])) % len(pose_override)] if pose_override is not None \
                else subject.c2w[j]
            region_frame = _nearest_reference(model, c2w) if pose_override is not None else int(j)
            o, d = image_rays(head_pose_to_ngp(c2w).to(device), focal, cx, cy, h, w)
            lip_gate, expr_gate = gate_masks(regions_small, region_frame, rows_px, cols_px, model.lip_gate_margin)
            rays_o.append(o)
            rays_d.append(d)
            lip.append(torch.from_numpy(lip_gate))
            eye.append(torch.from_numpy(expr_gate))
        n = h * w
        b = len(refs)
        out = nerf.render(torch.cat(rays_o), torch.cat(rays_d),
                          audio_code=codes.repeat_interleave(n, dim=0), expression=expr.repeat_interleave(n, dim=0),
                          code_index=None, bg=torch.zeros(3, device=device), lip_mask=torch.cat(lip).to(device),
                          expr_mask=torch.cat(eye).to(device), chunk_size=chunk_rays)
        head = out.rgb.reshape(b, h, w, 3).float().cpu().numpy()  # premultiplied (black background)
        alpha = out.alpha.reshape(b, h, w).float().clamp(0.0, 1.0).cpu().numpy()
        if not (np.isfinite(head).all() and np.isfinite(alpha).all()):  # never hand NaN images on
            raise InputError(f"the model {model.name!r} rendered NaN values for output frames {int(idx[0])}.."
                             f"{int(idx[-1])}; its weights are damaged: train the subject again")
        rgb_out = np.empty((b, big_h, big_w, 3), np.float32)
        alpha_out = np.empty((b, big_h, big_w), np.float32)
        for k, j in enumerate(refs):
            bg = frame_background(subject.frames.frame(int(j)), regions_big.head_mask(int(j)), subject.background)
            a = np.clip(_resize(alpha[k], big_h, big_w), 0.0, 1.0)
            c = _resize(head[k], big_h, big_w)
            rgb_out[k] = np.clip(c + (1.0 - a[..., None]) * (bg.astype(np.float32) / 255.0), 0.0, 1.0)
            alpha_out[k] = a
        done += b
        if as_uint8:
            yield RenderChunk(int(idx[0]) + (0 if frames is not None else start),
                              (rgb_out * 255.0 + 0.5).astype(np.uint8), alpha_out)
        else:
            yield RenderChunk(int(idx[0]) + (0 if frames is not None else start), rgb_out, alpha_out)
        if on_step is not None:
            on_step(done, total)
