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

``region="mouth"`` renders only what the portrait blend's mouth-only paste takes from the render (the chin region and
a margin, :meth:`RaySubject.mouth_mask`); every other pixel is the reference frame itself. It casts a third of the
head's rays, so the mouth can be rendered at a higher resolution for the same time.
"""
from __future__ import annotations

from typing import Iterator, NamedTuple, Sequence

import numpy as np
import torch

from synctalk_lib.audio.features import encoder_for
from synctalk_lib.errors import InputError
from synctalk_lib.nerf.frame_rays import RaySubject, frame_rays
from synctalk_lib.pose.face_geometry import FaceGeometry
from synctalk_lib.nerf.model_folder import SyncTalkModel
from synctalk_lib.nerf.rays import audio_windows
from synctalk_lib.portrait.background import frame_background
from synctalk_lib.timeline import reference_indices
from synctalk_lib.types import AudioFeatures
from synctalk_lib.progress import StepCallback


RENDER_REGIONS = ("head", "mouth")
"""What ``render_frames`` renders: the whole head region, or only what the mouth-only portrait paste uses."""


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
            f"the same encoder as the training audio (EncodeAudioAV encoder={_encoder_choice(model)!r})")
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


def _encoder_choice(model: SyncTalkModel) -> str:
    """The ``encode_audio`` encoder argument that makes features for ``model`` (for messages)."""
    encoder_id = model.encoder_id
    if encoder_id.startswith("ave-file"):
        return model.audio_encoder() or "ave-file:<the same weights file>"
    try:
        return encoder_for(encoder_id)
    except InputError:  # an encoder this version cannot make: name it as the model does
        return encoder_id


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
                  render_size: tuple[int, int] | None = None, region: str = "head", as_uint8: bool = False,
                  on_step: StepCallback | None = None) -> Iterator[RenderChunk]:
    """Render the subject speaking ``features``, yielding chunks of ``batch_size`` frames.

    Only the pixels of each frame's head region are rendered (everything else is that frame's own background);
    ``render_size`` sets the resolution they are rendered at (default: the model's training resolution; the clip's
    size renders the face at full resolution).

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
        render_size: ``(height, width)`` the head is rendered at before it is resized to the clip's size.
        region: "head" (the head region over the frame's background) or "mouth" (only what the mouth-only portrait
            paste uses, over the reference frame itself; the alpha is 1 where the reference frame shows).
        as_uint8: yield uint8 frames instead of float32.
        on_step: ``on_step(done, total)`` after every chunk; may raise to stop.
    """
    check_features(model, features)
    if region not in RENDER_REGIONS:
        raise InputError(f"region must be one of {', '.join(RENDER_REGIONS)}, got {region!r}")
    if region == "mouth" and not (expression is None or (isinstance(expression, str) and expression == "training")):
        raise InputError("region 'mouth' renders only the lips, chin and jaw, where the expression has no effect; "
                         "render region 'head' to show another expression (or use expression 'training')")
    if region == "mouth" and poses is not None:
        raise InputError("region 'mouth' keeps the reference frames' own pixels around the mouth, which show the "
                         "reference head poses; render region 'head' with other head poses")
    refs_all, audio_rows = _frame_plan(model, features, frames, start, count)
    pose_override = _pose_override(poses)
    device = torch.device(device) if device is not None else model.device
    nerf = model.nerf.to(device).eval()
    ray_subject = model_ray_subject(model)
    size = _render_size(model, render_size)
    feats = torch.from_numpy(np.ascontiguousarray(features.features, np.float32)).to(device)
    total, done = len(refs_all), 0
    for first in range(0, total, batch_size):
        idx = np.arange(first, min(first + batch_size, total))
        refs = refs_all[idx]
        outputs = audio_rows[idx]
        expr = torch.from_numpy(np.ascontiguousarray(expression_rows(model, expression, refs, outputs))).to(device)
        codes = nerf.encode_audio(audio_windows(feats, torch.from_numpy(outputs).to(device), nerf.config.audio_window))
        cams = [None if pose_override is None else pose_override[(start + int(i)) % len(pose_override)]
                for i in idx]
        rays = [_region_rays(model, ray_subject, int(j), c2w, size, region, device) for j, c2w in zip(refs, cams)]
        counts = torch.tensor([len(r.rays_o) for r in rays], device=device)
        out = nerf.render(torch.cat([r.rays_o for r in rays]), torch.cat([r.rays_d for r in rays]),
                          audio_code=codes.repeat_interleave(counts, dim=0),
                          expression=expr.repeat_interleave(counts, dim=0), code_index=None,
                          bg=torch.zeros(3, device=device), lip_mask=torch.cat([r.lip_mask for r in rays]),
                          expr_mask=torch.cat([r.expr_mask for r in rays]), chunk_size=chunk_rays)
        head, alpha = _scatter(rays, out.rgb, out.alpha, size)
        if not (np.isfinite(head).all() and np.isfinite(alpha).all()):  # never hand NaN images on
            raise InputError(f"the model {model.name!r} rendered NaN values for output frames {int(idx[0])}.."
                             f"{int(idx[-1])}; its weights are damaged: train the subject again")
        rgb_out, alpha_out = _over_reference_frames(model, ray_subject, refs, head, alpha, size, region)
        done += len(refs)
        first_index = int(idx[0]) + (0 if frames is not None else start)
        yield RenderChunk(first_index, (rgb_out * 255.0 + 0.5).astype(np.uint8) if as_uint8 else rgb_out, alpha_out)
        if on_step is not None:
            on_step(done, total)


def _render_size(model: SyncTalkModel, render_size: tuple[int, int] | None) -> tuple[int, int]:
    if render_size is None:
        return model.render_height, model.render_width
    height, width = int(render_size[0]), int(render_size[1])
    if not (8 <= height <= 4 * model.subject.height and 8 <= width <= 4 * model.subject.width):
        raise InputError(f"render_size {height}x{width} must lie between 8 px and 4x the clip's "
                         f"{model.subject.width}x{model.subject.height}")
    return height, width


def _region_rays(model: SyncTalkModel, ray_subject: RaySubject, ref: int, c2w: np.ndarray | None,
                 size: tuple[int, int], region: str, device: torch.device):
    """The rays of ``region`` ("head" or "mouth") of reference frame ``ref`` (seen from ``c2w`` when the pose is
    overridden)."""
    if c2w is not None and ray_subject.geometry is None:
        ref_for_gates = _nearest_reference(model, c2w)  # landmark gates: the reference frame nearest that camera
    else:
        ref_for_gates = ref
    mask_of = ray_subject.mouth_mask if region == "mouth" else ray_subject.head_mask
    rows, cols = np.nonzero(mask_of(ref_for_gates, size, pose=c2w))
    return frame_rays(ray_subject, ref_for_gates, pose=c2w, size=size, pixels=(rows, cols), device=device)


def _scatter(rays: list, rgb: torch.Tensor, alpha: torch.Tensor, size: tuple[int, int]
             ) -> tuple[np.ndarray, np.ndarray]:
    """Per-ray colour ``[N, 3]`` (premultiplied over black) and opacity ``[N]`` back into ``[b, h, w, 3]`` and
    ``[b, h, w]`` images (zero where no ray was cast)."""
    h, w = size
    head = np.zeros((len(rays), h, w, 3), np.float32)
    opacity = np.zeros((len(rays), h, w), np.float32)
    rgb_np = rgb.float().cpu().numpy()
    alpha_np = alpha.float().clamp(0.0, 1.0).cpu().numpy()
    offset = 0
    for k, r in enumerate(rays):
        n = len(r.rays_o)
        rows, cols = r.rows.cpu().numpy(), r.cols.cpu().numpy()
        head[k, rows, cols] = rgb_np[offset:offset + n]
        opacity[k, rows, cols] = alpha_np[offset:offset + n]
        offset += n
    return head, opacity


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
    _check_finite("the head poses", array, "run StabilizeHeadPose again or connect other poses")
    return array


def _over_reference_frames(model: SyncTalkModel, ray_subject: RaySubject, refs: np.ndarray, head: np.ndarray,
                           alpha: np.ndarray, size: tuple[int, int], region: str) -> tuple[np.ndarray, np.ndarray]:
    """Rendered heads (``[b, h, w, 3]`` premultiplied over black, ``[b, h, w]`` opacity at the render size)
    resized to the clip's size and composited over their reference frames' backgrounds: ``[b, H, W, 3]`` and
    ``[b, H, W]`` float32. With ``region="mouth"`` the reference frame itself shows outside the rendered region
    (opacity 1 there), the render ramped in past its own edge: the render pixel the resize mixes with the
    unrendered ones."""
    subject = model.subject
    big_h, big_w = subject.height, subject.width
    rgb_out = np.empty((len(refs), big_h, big_w, 3), np.float32)
    alpha_out = np.empty((len(refs), big_h, big_w), np.float32)
    for k, j in enumerate(refs):
        frame = subject.frames.frame(int(j))
        bg = frame_background(frame, ray_subject.head_mask(int(j), (big_h, big_w)), subject.background)
        a = np.clip(_resize(alpha[k], big_h, big_w), 0.0, 1.0)
        c = _resize(head[k], big_h, big_w)
        rgb_out[k] = np.clip(c + (1.0 - a[..., None]) * (bg.astype(np.float32) / 255.0), 0.0, 1.0)
        alpha_out[k] = a
        if region == "mouth":
            weight = _mouth_weight(ray_subject, int(j), (big_h, big_w), size)
            original = frame.astype(np.float32) / 255.0
            rgb_out[k] = original + weight[..., None] * (rgb_out[k] - original)
            alpha_out[k] = 1.0 + weight * (a - 1.0)
    return rgb_out, alpha_out


def _mouth_weight(ray_subject: RaySubject, ref: int, out_size: tuple[int, int],
                  render_size: tuple[int, int]) -> np.ndarray:
    """``[H, W]`` 0..1: how much of a mouth-only render shows — 1 inside its region, ramping to 0 over the render
    pixel next to its edge (one render pixel = ``out / render`` output pixels)."""
    import cv2

    inside = ray_subject.mouth_mask(ref, out_size).astype(np.uint8)
    edge = max(out_size[0] / render_size[0], out_size[1] / render_size[1])
    return np.clip(cv2.distanceTransform(inside, cv2.DIST_L2, 5) / edge - 1.0, 0.0, 1.0)
