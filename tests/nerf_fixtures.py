"""A tiny synthetic talking-head subject for renderer, data and trainer tests.

The scene (head space, metres, OpenGL axes: +x right, +y up, +z toward the camera at rest):

- the head is an ellipsoid at the origin with a textured skin, hair on its top cap, two eyes whose darkness follows
  expression coefficient 0 (a blink), and a mouth whose opening follows audio feature 0;
- a static background image (gradient, coloured blocks) and a static "torso" block at the bottom;
- a camera 0.55 m in front of the head, turning a few degrees and shifting a little from frame to frame.

Frames are ray-traced exactly (2 x 2 supersampling), so the ground truth head silhouette and background are known.
The FaceTrack's 478 landmarks sit on the ellipsoid surface where MediaPipe's face mesh would put them (face oval,
lips opening with the mouth, eyes, brows, irises, nose; the other points spread over the face) and are projected
with the same cameras, so every region computed from them is consistent with the images.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from synctalk_lib.face import regions as R
from synctalk_lib.media.clip_store import clip_from_arrays
from synctalk_lib.types import AudioFeatures, Clip, FaceTrack, HeadPose

HEAD_AXES = np.array([0.075, 0.095, 0.07])
"""Ellipsoid semi-axes (x, y, z) in metres."""
CAMERA_DISTANCE = 0.55
MOUTH_CENTRE = (0.0, -0.5)
"""Mouth centre in face coordinates (u right, v up, both -1..1 over the face)."""
FACE_SPAN = (0.068, 0.098)
"""Metres covered by face coordinate 1 along x and y."""

BLENDSHAPE_NAMES = (
    "_neutral", "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight", "cheekPuff",
    "cheekSquintLeft", "cheekSquintRight", "eyeBlinkLeft", "eyeBlinkRight", "eyeLookDownLeft", "eyeLookDownRight",
    "eyeLookInLeft", "eyeLookInRight", "eyeLookOutLeft", "eyeLookOutRight", "eyeLookUpLeft", "eyeLookUpRight",
    "eyeSquintLeft", "eyeSquintRight", "eyeWideLeft", "eyeWideRight", "jawForward", "jawLeft", "jawOpen",
    "jawRight", "mouthClose", "mouthDimpleLeft", "mouthDimpleRight", "mouthFrownLeft", "mouthFrownRight",
    "mouthFunnel", "mouthLeft", "mouthLowerDownLeft", "mouthLowerDownRight", "mouthPressLeft", "mouthPressRight",
    "mouthPucker", "mouthRight", "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper",
    "mouthSmileLeft", "mouthSmileRight", "mouthStretchLeft", "mouthStretchRight", "mouthUpperUpLeft",
    "mouthUpperUpRight", "noseSneerLeft", "noseSneerRight")
EXPRESSION_NAMES = ("eyeBlinkLeft", "eyeBlinkRight", "eyeSquintLeft", "eyeSquintRight", "eyeWideLeft",
                    "eyeWideRight", "browInnerUp")


@dataclass
class SyntheticSubject:
    clip: Clip
    track: FaceTrack
    pose: HeadPose
    audio: AudioFeatures
    background: np.ndarray
    """[H, W, 3] uint8 the true static background (torso block included)."""
    head_masks: np.ndarray
    """[N, H, W] bool the true head silhouette of every frame."""
    mouth_open: np.ndarray
    """[N] float32 mouth opening 0..1 (= audio feature 0)."""


# ------------------------------------------------------------------------------------------------- geometry
def _look_at(eye: np.ndarray, target: np.ndarray, up=(0.0, 1.0, 0.0)) -> np.ndarray:
    """OpenGL camera-to-world ``[4, 4]`` (camera looks down -z, +y up)."""
    back = eye - target
    back = back / np.linalg.norm(back)
    right = np.cross(np.asarray(up, float), back)
    right /= np.linalg.norm(right)
    true_up = np.cross(back, right)
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, true_up, back, eye
    return c2w


def _camera_path(num_frames: int) -> np.ndarray:
    t = np.linspace(0.0, 2.0 * np.pi, num_frames, endpoint=False)
    yaw = np.deg2rad(9.0) * np.sin(t)
    pitch = np.deg2rad(4.0) * np.sin(2.0 * t + 0.5)
    eyes = CAMERA_DISTANCE * np.stack([np.sin(yaw) * np.cos(pitch), np.sin(pitch), np.cos(yaw) * np.cos(pitch)], 1)
    shift = np.stack([0.006 * np.sin(3.0 * t), 0.004 * np.cos(2.0 * t), np.zeros_like(t)], 1)
    return np.stack([_look_at(e + s, s * 0.5) for e, s in zip(eyes, shift)]).astype(np.float32)


def _intersect(origins: np.ndarray, dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest hit of rays with the head ellipsoid: ``(t [M], hit [M] bool)``."""
    o = origins / HEAD_AXES
    d = dirs / HEAD_AXES
    a = (d * d).sum(-1)
    b = 2.0 * (o * d).sum(-1)
    c = (o * o).sum(-1) - 1.0
    disc = b * b - 4.0 * a * c
    hit = disc > 0
    t = np.where(hit, (-b - np.sqrt(np.maximum(disc, 0.0))) / (2.0 * a), np.inf)
    return t, hit & (t > 0)


def _surface_point(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Face coordinates (u right, v up) to points on the front of the ellipsoid ``[..., 3]``."""
    x = u * FACE_SPAN[0]
    y = v * FACE_SPAN[1]
    inside = np.clip(1.0 - (x / HEAD_AXES[0]) ** 2 - (y / HEAD_AXES[1]) ** 2, 0.0, None)
    return np.stack([x, y, HEAD_AXES[2] * np.sqrt(inside)], -1)


def _face_coords(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return points[..., 0] / FACE_SPAN[0], points[..., 1] / FACE_SPAN[1]


# ------------------------------------------------------------------------------------------------- shading
def _head_colour(points: np.ndarray, mouth_open: float, blink: float) -> np.ndarray:
    """Colour ``[M, 3]`` (0..1) of head surface points ``[M, 3]``."""
    u, v = _face_coords(points)
    n = points / HEAD_AXES
    skin = np.array([0.86, 0.64, 0.52]) + 0.06 * np.stack(
        [np.sin(9 * n[:, 0]) * np.cos(7 * n[:, 1]), np.sin(5 * n[:, 1] + 1), np.cos(8 * n[:, 2])], 1)
    colour = skin * (0.85 + 0.15 * n[:, 2:3].clip(0, 1))
    hair = (n[:, 1] > 0.55) | ((n[:, 2] < -0.2) & (n[:, 1] > -0.2))
    colour[hair] = np.array([0.30, 0.20, 0.12]) + 0.05 * np.sin(40 * n[hair, 0:1])
    front = n[:, 2] > 0.3
    for eye_u in (-0.38, 0.38):
        eye = front & ((u - eye_u) ** 2 / 0.15 ** 2 + (v - 0.28) ** 2 / 0.07 ** 2 < 1.0)
        colour[eye] = (1.0 - blink) * np.array([0.12, 0.10, 0.12]) + blink * np.array([0.78, 0.56, 0.46])
    mouth_h = 0.05 + 0.17 * mouth_open
    lips = front & ((u - MOUTH_CENTRE[0]) ** 2 / 0.33 ** 2 + (v - MOUTH_CENTRE[1] + 0.03) ** 2 / (mouth_h + 0.07) ** 2 < 1)
    colour[lips] = np.array([0.72, 0.25, 0.28])
    inner = front & ((u - MOUTH_CENTRE[0]) ** 2 / 0.25 ** 2 + (v - MOUTH_CENTRE[1] + 0.03) ** 2 / mouth_h ** 2 < 1)
    colour[inner] = np.array([0.18, 0.04, 0.06])
    return colour.clip(0, 1)


def _background(height: int, width: int) -> np.ndarray:
    rows, cols = np.mgrid[0:height, 0:width] / np.array([height, width])[:, None, None]
    bg = np.stack([0.25 + 0.5 * cols, 0.45 + 0.2 * rows, 0.65 - 0.3 * cols], -1)
    bg[int(0.1 * height):int(0.3 * height), int(0.05 * width):int(0.2 * width)] = (0.9, 0.85, 0.2)
    bg[int(0.15 * height):int(0.45 * height), int(0.82 * width):int(0.95 * width)] = (0.2, 0.6, 0.3)
    # static torso block
    bg[int(0.86 * height):, int(0.22 * width):int(0.78 * width)] = (0.15, 0.2, 0.45)
    return bg


def _render(c2w: np.ndarray, focal: float, height: int, width: int, bg: np.ndarray, mouth_open: float,
            blink: float, supersample: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Frame ``[H, W, 3]`` float 0..1 and head silhouette ``[H, W]`` bool (pixel centre hits the head)."""
    s = supersample
    offs = (np.arange(s) + 0.5) / s
    rows = (np.arange(height)[:, None] + offs[None, :]).reshape(-1)
    cols = (np.arange(width)[:, None] + offs[None, :]).reshape(-1)
    rr, cc = np.meshgrid(rows, cols, indexing="ij")
    d_cam = np.stack([(cc - width / 2) / focal, -(rr - height / 2) / focal, -np.ones_like(cc)], -1).reshape(-1, 3)
    dirs = d_cam @ c2w[:3, :3].T
    dirs /= np.linalg.norm(dirs, axis=-1, keepdims=True)
    origins = np.broadcast_to(c2w[:3, 3], dirs.shape)
    t, hit = _intersect(origins, dirs)
    colour = np.repeat(np.repeat(bg, s, 0), s, 1).reshape(-1, 3).copy()
    points = origins[hit] + t[hit, None] * dirs[hit]
    colour[hit] = _head_colour(points, mouth_open, blink)
    img = colour.reshape(height, s, width, s, 3).mean(axis=(1, 3))
    # silhouette at pixel centres
    d_c = np.stack([((np.arange(width)[None] + 0.5) - width / 2).repeat(height, 0) / focal,
                    -((np.arange(height)[:, None] + 0.5) - height / 2).repeat(width, 1) / focal,
                    -np.ones((height, width))], -1).reshape(-1, 3) @ c2w[:3, :3].T
    _, centre_hit = _intersect(np.broadcast_to(c2w[:3, 3], d_c.shape), d_c)
    return img, centre_hit.reshape(height, width)


# ----------------------------------------------------------------------------------------------- landmarks
def _canonical_landmarks(mouth_open: float) -> np.ndarray:
    """Face coordinates ``[478, 2]`` (u right in the image, v up) of every MediaPipe index."""
    uv = np.full((478, 2), np.nan)

    def ring(ids, centre, ru, rv_up, rv_down):
        # ids go from one corner over the lower arc to the other corner, then back over the upper arc
        k = len(ids) // 2
        lower = np.linspace(np.pi, 2 * np.pi, k + 1)[:-1]
        upper = np.linspace(0.0, np.pi, len(ids) - k + 1)[:-1]
        angles = np.concatenate([lower, upper])
        for i, a in zip(ids, angles):
            rv = rv_down if np.sin(a) < 0 else rv_up
            uv[i] = (centre[0] + ru * np.cos(a), centre[1] + rv * np.sin(a))

    # face oval: from the top (10) clockwise in the image (over the image's right side) to the chin (152)
    for k, i in enumerate(R.FACE_OVAL):
        a = np.pi / 2 - 2 * np.pi * k / len(R.FACE_OVAL)
        uv[i] = (0.95 * np.cos(a), 0.92 * np.sin(a) - 0.05)
    h = 0.05 + 0.17 * mouth_open
    ring(R.LIPS_OUTER, (MOUTH_CENTRE[0], MOUTH_CENTRE[1] - 0.03), 0.33, 0.06 + 0.04, h + 0.07)
    ring(R.LIPS_INNER, (MOUTH_CENTRE[0], MOUTH_CENTRE[1] - 0.03), 0.25, 0.03, h)
    for ids, cu in ((R.RIGHT_EYE, -0.38), (R.LEFT_EYE, 0.38)):
        a = np.linspace(0, 2 * np.pi, len(ids), endpoint=False)
        uv[list(ids)] = np.stack([cu + 0.15 * np.cos(a), 0.28 + 0.07 * np.sin(a)], 1)
    for ids, cu in ((R.RIGHT_BROW, -0.38), (R.LEFT_BROW, 0.38)):
        a = np.linspace(-0.8, 0.8, len(ids))
        uv[list(ids)] = np.stack([cu + 0.2 * np.sin(a), 0.47 + 0.03 * np.cos(a)], 1)
    for ids, cu in (((468, 469, 470, 471, 472), -0.38), ((473, 474, 475, 476, 477), 0.38)):
        a = np.linspace(0, 2 * np.pi, len(ids) - 1, endpoint=False)
        uv[ids[0]] = (cu, 0.28)
        uv[list(ids[1:])] = np.stack([cu + 0.04 * np.cos(a), 0.28 + 0.04 * np.sin(a)], 1)
    uv[R.NOSE_TIP] = (0.0, -0.15)
    # every other point: a deterministic spread over the face inside the oval
    rest = np.flatnonzero(np.isnan(uv[:, 0]))
    golden = np.pi * (3.0 - np.sqrt(5.0))
    k = np.arange(len(rest))
    radius = 0.85 * np.sqrt((k + 0.5) / len(rest))
    uv[rest] = np.stack([radius * np.cos(k * golden), radius * np.sin(k * golden) - 0.05], 1)
    return uv


def _project(points: np.ndarray, c2w: np.ndarray, focal: float, cx: float, cy: float) -> np.ndarray:
    """World points ``[K, 3]`` to pixels ``[K, 3]`` (x, y, relative depth in pixels)."""
    w2c = np.linalg.inv(c2w)
    cam = points @ w2c[:3, :3].T + w2c[:3, 3]
    depth = -cam[:, 2]
    x = focal * cam[:, 0] / depth + cx
    y = -focal * cam[:, 1] / depth + cy
    z = (depth - depth.mean()) * focal / depth.mean()
    return np.stack([x, y, z], 1)


# ----------------------------------------------------------------------------------------------------- main
def speech_like_audio(mouth_open: np.ndarray, fps: float = 25.0, sample_rate: int = 16000) -> np.ndarray:
    """``[1, T]`` float32: a voiced buzz whose loudness follows the mouth opening of each frame."""
    samples = int(round(len(mouth_open) / fps * sample_rate))
    t = np.arange(samples) / sample_rate
    envelope = np.interp(t * fps, np.arange(len(mouth_open)), mouth_open)
    buzz = sum(np.sin(2 * np.pi * f * t) / k for k, f in enumerate((140.0, 280.0, 420.0, 700.0, 1100.0), 1))
    return (0.25 * envelope * buzz).astype(np.float32)[None]


def make_subject(root: Path, *, num_frames: int = 36, size: int = 64, feature_dim: int = 8,
                 seed: int = 0, audio: str = "synthetic") -> SyntheticSubject:
    """Build and save the synthetic subject under ``root`` (clip cache folder ``root/clip``).

    ``audio="synthetic"``: features = the mouth opening plus noise (``feature_dim`` columns, encoder id
    ``synthetic:test``), no sound. ``audio="mel"``: the clip gets a speech-like sound whose loudness follows the
    mouth, encoded with the weight-free ``mel`` encoder (so the CLI can encode new audio the same way).
    """
    rng = np.random.default_rng(seed)
    focal = 1.55 * size
    cx = cy = size / 2.0
    c2w = _camera_path(num_frames)
    t = np.arange(num_frames)
    mouth_open = (0.5 + 0.45 * np.sin(0.9 * t + rng.uniform(0, 6))).astype(np.float32)
    blink = np.zeros(num_frames, np.float32)
    blink[np.arange(5, num_frames, 12)] = 1.0
    bg = _background(size, size)
    frames = np.zeros((num_frames, size, size, 3), np.uint8)
    masks = np.zeros((num_frames, size, size), bool)
    landmarks = np.zeros((num_frames, 478, 3), np.float32)
    for i in range(num_frames):
        img, sil = _render(c2w[i].astype(np.float64), focal, size, size, bg, float(mouth_open[i]), float(blink[i]))
        frames[i] = np.round(img * 255).astype(np.uint8)
        masks[i] = sil
        uv = _canonical_landmarks(float(mouth_open[i]))
        landmarks[i] = _project(_surface_point(uv[:, 0], uv[:, 1]), c2w[i].astype(np.float64), focal, cx, cy)
    wave = speech_like_audio(mouth_open) if audio == "mel" else None
    clip = clip_from_arrays(Path(root) / "clip", frames, 25.0, audio=wave, sample_rate=16000 if wave is not None else 0)
    blend = np.zeros((num_frames, 52), np.float32)
    blend[:, BLENDSHAPE_NAMES.index("jawOpen")] = mouth_open
    blend[:, BLENDSHAPE_NAMES.index("eyeBlinkLeft")] = blink
    blend[:, BLENDSHAPE_NAMES.index("eyeBlinkRight")] = blink
    expression = np.zeros((num_frames, 7), np.float32)
    expression[:, 0] = expression[:, 1] = blink
    track = FaceTrack(landmarks=landmarks, blendshapes=blend, blendshape_names=BLENDSHAPE_NAMES,
                      face_found=np.ones(num_frames, bool), transforms=np.tile(np.eye(4, dtype=np.float32),
                                                                               (num_frames, 1, 1)),
                      expression=expression, expression_names=EXPRESSION_NAMES, width=size, height=size, fps=25.0)
    pose = HeadPose(focal=float(focal), cx=cx, cy=cy, width=size, height=size, c2w=c2w,
                    keypoints=_surface_point(np.zeros(4), np.linspace(-0.5, 0.5, 4)).astype(np.float32),
                    reproj_error=np.zeros(num_frames, np.float32))
    if audio == "mel":
        from synctalk_lib.audio.features import encode_audio

        encoded = encode_audio(wave, 16000, fps=25.0, encoder="mel")
        features = np.zeros((num_frames, encoded.dim), np.float32)
        features[:min(num_frames, encoded.num_frames)] = encoded.features[:num_frames]
        audio_features = AudioFeatures(features=features, fps=25.0, encoder_id=encoded.encoder_id)
    else:
        features = rng.normal(0.0, 0.1, (num_frames, feature_dim)).astype(np.float32)
        features[:, 0] = mouth_open
        audio_features = AudioFeatures(features=features, fps=25.0, encoder_id="synthetic:test")
    return SyntheticSubject(clip=clip, track=track, pose=pose, audio=audio_features,
                            background=np.round(bg * 255).astype(np.uint8), head_masks=masks, mouth_open=mouth_open)


def write_subject_dir(subject: SyntheticSubject, folder: Path) -> Path:
    """Save the subject as a ``preprocess``-style subject folder (``synctalk_lib.subject.SubjectDir``)."""
    from synctalk_lib.subject import SubjectDir

    target = SubjectDir(folder)
    target.root.mkdir(parents=True, exist_ok=True)
    target.save_clip_ref(subject.clip, {"source": "synthetic"})
    subject.track.save(target.path(SubjectDir.FACE_TRACK))
    subject.pose.save(target.path(SubjectDir.HEAD_POSE))
    target.save_audio_features(subject.audio)
    if subject.clip.has_audio:
        target.save_audio_wav(subject.clip.audio_waveform(), subject.clip.sample_rate)
    target.write_report({"audio_features": {"encoder_id": subject.audio.encoder_id, "fps": subject.audio.fps}})
    return target.root


def train_tiny_model(subject: SyntheticSubject, *, steps: int = 8, name: str = "tiny"):
    """A quickly trained ``SyncTalkModel`` of the synthetic subject (a few steps, 32^3 occupancy grid)."""
    from synctalk_lib.nerf.trainer import train_subject

    model, _ = train_subject(subject.clip, subject.track, subject.pose, subject.audio, preset="quick", name=name,
                             iterations=steps, resolution=0, perceptual_loss="none", rays_per_step=256,
                             patch_size=16, patches_per_step=1, checkpoint_every=0, log_every=1000,
                             val_frames=0.15, nerf={"grid_resolution": 32})
    return model
