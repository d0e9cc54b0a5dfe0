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
from synctalk_lib.nerf.frame_rays import RaySubject, frame_rays
from synctalk_lib.pose.face_geometry import FaceGeometry
from synctalk_lib.nerf.model_folder import SyncTalkModel
from synctalk_lib.nerf.rays import audio_windows
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
    """The features must come from the encoder (and frame rate) the model was trained with."""
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


def model_ray_subject(model: SyncTalkModel) -> RaySubject:
    """What the rays of a trained subject's frames are made from, at the model's render size: its face geometry
    (rebuilt from the training frames' track and poses, exactly as in training), or for models trained with
    landmark gates their face regions."""
    subject = model.subject
    geometry = None
    if model.region_shape is not None:
        geometry = FaceGeometry.from_track(subject.track, subject.pose, frames=subject.train_indices)
    return RaySubject(subject.pose, subject.regions(), model.lip_gate_margin,
                      size=(model.render_height, model.render_width), geometry=geometry, shape=model.region_shape)


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
    refs_all, audio_rows = _frame_plan(model, features, frames, start, count)
    pose_override = _pose_override(poses)
    device = torch.device(device) if device is not None else model.device
    nerf = model.nerf.to(device).eval()
    ray_subject = model_ray_subject(model)
    feats = torch.from_numpy(np.ascontiguousarray(features.features, np.float32)).to(device)
    total, done = len(refs_all), 0
    for first in range(0, total, batch_size):
        idx = np.arange(first, min(first + batch_size, total))
        refs = refs_all[idx]
        outputs = audio_rows[idx]
        expr = torch.from_numpy(np.ascontiguousarray(expression_rows(model, expression, refs, outputs))).to(device)
        codes = nerf.encode_audio(audio_windows(feats, torch.from_numpy(outputs).to(device), nerf.config.audio_window))
        rays = []
        for k, j in enumerate(refs):
            if pose_override is None:
                rays.append(frame_rays(ray_subject, int(j), device=device))
            else:  # gates from that camera (landmark-gated models: the reference frame whose camera is nearest)
                c2w = pose_override[(start + int(idx[k])) % len(pose_override)]
                rays.append(frame_rays(ray_subject, _nearest_reference(model, c2w), pose=c2w, device=device))
        n = len(rays[0].rays_o)
        out = nerf.render(torch.cat([r.rays_o for r in rays]), torch.cat([r.rays_d for r in rays]),
                          audio_code=codes.repeat_interleave(n, dim=0), expression=expr.repeat_interleave(n, dim=0),
                          code_index=None, bg=torch.zeros(3, device=device),
                          lip_mask=torch.cat([r.lip_mask for r in rays]),
                          expr_mask=torch.cat([r.expr_mask for r in rays]), chunk_size=chunk_rays)
        rgb_out, alpha_out = _over_reference_frames(model, ray_subject, refs, out.rgb, out.alpha)
        done += len(refs)
        first_index = int(idx[0]) + (0 if frames is not None else start)
        yield RenderChunk(first_index, (rgb_out * 255.0 + 0.5).astype(np.uint8) if as_uint8 else rgb_out, alpha_out)
        if on_step is not None:
            on_step(done, total)


def _frame_plan(model: SyncTalkModel, features: AudioFeatures, frames: Sequence[int] | None, start: int,
                count: int | None) -> tuple[np.ndarray, np.ndarray]:
    """``(reference frame, audio row)`` of every output frame (see :func:`render_frames`)."""
    subject = model.subject
    if frames is not None:
        refs = np.asarray(list(frames), np.int64)
        if refs.size and (refs.min() < 0 or refs.max() >= subject.num_frames):
            raise InputError(f"frames must lie in 0..{subject.num_frames - 1}")
        return refs, refs
    total = features.num_frames - start if count is None else int(count)
    if total <= 0 or start < 0:
        raise InputError(f"nothing to render: start {start}, count {count}, {features.num_frames} feature rows")
    return reference_indices(total, subject.num_frames, start=start), np.arange(start, start + total, dtype=np.int64)


def _pose_override(poses) -> np.ndarray | None:
    """``[P, 4, 4]`` float32 camera-to-world poses from an array or tensor (None: the reference poses)."""
    if poses is None:
        return None
    array = np.asarray(poses.detach().cpu() if hasattr(poses, "detach") else poses, np.float32)
    if array.ndim != 3 or array.shape[1:] != (4, 4) or len(array) == 0:
        raise InputError(f"poses must be [P, 4, 4] camera-to-world matrices, got {list(array.shape)}")
    return array


def _over_reference_frames(model: SyncTalkModel, ray_subject: RaySubject, refs: np.ndarray, rgb: torch.Tensor,
                           alpha: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Rendered heads (``[b * h * w, 3]`` premultiplied over black, ``[b * h * w]`` opacity at the render size)
    resized to the clip's size and composited over their reference frames' backgrounds: ``[b, H, W, 3]`` and
    ``[b, H, W]`` float32."""
    subject = model.subject
    b, h, w = len(refs), model.render_height, model.render_width
    big_h, big_w = subject.height, subject.width
    head = rgb.reshape(b, h, w, 3).float().cpu().numpy()
    alpha_small = alpha.reshape(b, h, w).float().clamp(0.0, 1.0).cpu().numpy()
    rgb_out = np.empty((b, big_h, big_w, 3), np.float32)
    alpha_out = np.empty((b, big_h, big_w), np.float32)
    for k, j in enumerate(refs):
        bg = frame_background(subject.frames.frame(int(j)), ray_subject.head_mask(int(j), (big_h, big_w)),
                              subject.background)
        a = np.clip(_resize(alpha_small[k], big_h, big_w), 0.0, 1.0)
        c = _resize(head[k], big_h, big_w)
        rgb_out[k] = np.clip(c + (1.0 - a[..., None]) * (bg.astype(np.float32) / 255.0), 0.0, 1.0)
        alpha_out[k] = a
    return rgb_out, alpha_out
