"""Portrait-Sync Generator over a whole render: stream rendered chunks through the blend into a video file.

Output frame ``k`` was rendered at the pose of reference frame ``reference_indices(k)`` (ping-pong over all frames
of the subject clip, the same mapping the renderer uses), so it is pasted into that frame. With a full-resolution
twin of the reference clip (same frames at the source video's resolution) the face is pasted through the clip's
crop box, and the output has the source's resolution.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from synctalk_lib.errors import InputError
from synctalk_lib.media.preview import preview_indices
from synctalk_lib.portrait.blend import (BlendSettings, alpha_masks, blend_frame, paste_full_resolution, pose_masks,
                                         prepare_render)
from synctalk_lib.pose.face_geometry import FaceGeometry, PoseRegions
from synctalk_lib.timeline import reference_indices
from synctalk_lib.types import Clip, FaceTrack, HeadPose

RenderChunk = tuple[int, np.ndarray, "np.ndarray | None"]
"""(first output index, rgb [b, H, W, 3] uint8 or float 0..1, alpha [b, H, W] float 0..1 or None)."""


@dataclass(frozen=True)
class PortraitResult:
    path: Path
    frames: int
    width: int
    height: int
    fps: float
    preview: np.ndarray
    """[n, H, W, 3] uint8: every frame when they fit the preview budget, else evenly spaced ones."""
    preview_is_partial: bool


def check_inputs(reference: Clip, pose: HeadPose, track: FaceTrack | None) -> None:
    """The reference clip, its head pose and face track must describe the same frames."""
    if pose.num_frames != reference.num_frames:
        raise InputError(f"head_pose has {pose.num_frames} frames but the reference clip has {reference.num_frames}; "
                         "connect the clip and head pose of the same subject")
    if (pose.width, pose.height) != (reference.width, reference.height):
        raise InputError(f"head_pose is for {pose.width}x{pose.height} frames, the clip is "
                         f"{reference.width}x{reference.height}")
    if track is not None and track.num_frames != reference.num_frames:
        raise InputError(f"face_track has {track.num_frames} frames but the reference clip has {reference.num_frames}")


def frame_masks(reference: Clip, pose: HeadPose, track: FaceTrack | None):
    """``masks(j, alpha) -> BlendMasks`` of reference frame ``j``: from its camera and the subject's face geometry
    when the face track is known, else from the renderer's opacity."""
    if track is None:
        return lambda j, alpha: alpha_masks(np.ones((reference.height, reference.width), np.float32)
                                            if alpha is None else alpha)
    regions = PoseRegions.for_size(FaceGeometry.from_track(track, pose), pose, reference.height, reference.width)
    return lambda j, alpha: pose_masks(regions, pose.c2w[j])


def blend_stream(chunks: Iterable[RenderChunk], reference: Clip, pose: HeadPose, *, track: FaceTrack | None = None,
                 settings: BlendSettings = BlendSettings(), full_resolution: Clip | None = None) -> Iterator[np.ndarray]:
    """Yield blended uint8 frames ``[H, W, 3]`` (source resolution with ``full_resolution``) in render order."""
    if full_resolution is not None:
        if reference.crop_box is None:
            raise InputError("full_resolution needs a clip prepared with a crop box (crop='face')")
        if full_resolution.num_frames < reference.num_frames:
            raise InputError("the full-resolution clip has fewer frames than the reference clip")
    masks_of = frame_masks(reference, pose, track)
    for first, rgb, alpha in chunks:
        rgb = np.asarray(rgb)
        rgb = rgb.astype(np.float32) / 255.0 if rgb.dtype == np.uint8 else rgb.astype(np.float32)
        refs = reference_indices(len(rgb), reference.num_frames, start=first)
        for i, j in enumerate(refs):
            original = reference.frame(int(j)).astype(np.float32) / 255.0
            a = None if alpha is None else np.asarray(alpha[i], np.float32)
            masks = masks_of(int(j), a)
            if full_resolution is not None:
                full = full_resolution.frame(int(j)).astype(np.float32) / 255.0
                out = _paste_full(rgb[i], a, original, masks, settings, full, reference.crop_box)
            else:
                out = blend_frame(rgb[i], a, original, masks, settings)
            yield (np.clip(out, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _paste_full(render: np.ndarray, alpha, original: np.ndarray, masks, settings: BlendSettings,
                full: np.ndarray, crop_box) -> np.ndarray:
    """Blend into the full-resolution frame; detail is restored there, against the source's own pixels."""
    import dataclasses

    fixed, box_mask, box = prepare_render(render, alpha, original, masks,
                                          dataclasses.replace(settings, restore_detail=False))
    whole = np.asarray(render, np.float32).copy()
    whole[box] = fixed
    mask = np.zeros(render.shape[:2], np.float32)
    mask[box] = box_mask
    if settings.restore_detail:
        return paste_full_resolution(full, whole, crop_box, mask, mouth=masks.mouth, detail=settings.detail)
    return paste_full_resolution(full, whole, crop_box, mask)


def generate_portrait_video(chunks: Iterable[RenderChunk], total: int, reference: Clip, pose: HeadPose,
                            out_path: Path | str, *, track: FaceTrack | None = None,
                            settings: BlendSettings = BlendSettings(), full_resolution: Clip | None = None,
                            audio: np.ndarray | None = None, sample_rate: int = 0,
                            preview_budget_bytes: int = 1 << 30,
                            on_step: Callable[[int, int], None] | None = None) -> PortraitResult:
    """Blend ``total`` rendered frames into their reference frames and stream them into ``out_path`` (MP4).

    The preview keeps float32-equivalent memory under ``preview_budget_bytes`` (all frames, or evenly spaced ones).
    """
    from synctalk_lib.media.video_writer import VideoWriter

    check_inputs(reference, pose, track)
    src = full_resolution if full_resolution is not None else reference
    height, width = src.height, src.width
    slots = set(preview_indices(total, height * width * 3 * 4, preview_budget_bytes).tolist())
    preview: list[np.ndarray] = []
    count = 0
    with VideoWriter(out_path, reference.fps, audio=audio, sample_rate=sample_rate) as writer:
        for frame in blend_stream(chunks, reference, pose, track=track, settings=settings, full_resolution=full_resolution):
            writer.write(frame)
            if count in slots:
                preview.append(frame)
            count += 1
            if on_step is not None:
                on_step(count, total)
    if count != total:
        raise InputError(f"expected {total} rendered frames, got {count}")
    return PortraitResult(path=Path(out_path), frames=count, width=width, height=height, fps=reference.fps,
                          preview=np.stack(preview) if preview else np.zeros((0, height, width, 3), np.uint8),
                          preview_is_partial=len(slots) < total)
