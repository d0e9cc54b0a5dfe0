"""SubjectData on the synthetic subject: input checks, split, resolution, ray sampling, gates, memory."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from synctalk_lib.errors import InputError
from synctalk_lib.face import regions as R
from synctalk_lib.face.regions import Rect
from synctalk_lib.nerf.dataset import DataSettings, SubjectData, check_inputs, split_frames
from synctalk_lib.nerf.frame_rays import frame_rays
from synctalk_lib.nerf.rays import head_pose_to_ngp, pixel_rays
from synctalk_lib.types import AudioFeatures
from tests.nerf_fixtures import make_subject


@pytest.fixture(scope="module")
def subject(tmp_path_factory):
    return make_subject(tmp_path_factory.mktemp("data"), num_frames=24, size=64)


@pytest.fixture(scope="module")
def data(subject):
    return SubjectData(subject.clip, subject.track, subject.pose, subject.audio,
                       settings=DataSettings(val_frames="20:24"))


def test_split_like_the_original():
    train, val = split_frames(331)
    assert (train.min(), train.max(), val.min(), val.max()) == (0, 299, 300, 330)
    train, val = split_frames(331, "300:331")
    assert len(train) == 300 and val.tolist() == list(range(300, 331))
    train, val = split_frames(40, 0.25)
    assert val.tolist() == list(range(30, 40))
    train, val = split_frames(40, 0)
    assert len(val) == 0 and len(train) == 40
    assert split_frames(10, [2, 5])[1].tolist() == [2, 5]
    with pytest.raises(InputError, match="outside"):
        split_frames(10, "5:12")
    with pytest.raises(InputError, match="no training frames"):
        split_frames(3, [0, 1, 2])


def test_frame_counts_must_agree(subject):
    short = AudioFeatures(features=subject.audio.features[:20], fps=25.0, encoder_id="x")
    with pytest.raises(InputError, match=r"audio features have 20 rows but the clip has 24 frames"):
        check_inputs(subject.clip, subject.track, subject.pose, short)
    pose = dataclasses.replace(subject.pose, c2w=subject.pose.c2w[:23], reproj_error=subject.pose.reproj_error[:23])
    with pytest.raises(InputError, match=r"clip 24, face track 24, head pose 23"):
        check_inputs(subject.clip, subject.track, pose, subject.audio)
    slow = AudioFeatures(features=subject.audio.features, fps=30.0, encoder_id="x")
    with pytest.raises(InputError, match="30 fps"):
        check_inputs(subject.clip, subject.track, subject.pose, slow)
    # a few padding rows of the audio encoder are accepted
    longer = AudioFeatures(features=np.concatenate([subject.audio.features] * 2)[:26], fps=25.0, encoder_id="x")
    assert check_inputs(subject.clip, subject.track, subject.pose, longer) == 24


def test_rays_hit_what_the_pixels_show(data, subject):
    """The ray through the pixel where the head centre projects passes through the head centre (NGP origin)."""
    for index in (0, 7):
        c2w = subject.pose.c2w[index]
        w2c = np.linalg.inv(c2w)
        cam = w2c[:3, 3]  # the origin in camera coordinates (OpenGL)
        u = data.focal * cam[0] / -cam[2] + data.cx
        v = -data.focal * cam[1] / -cam[2] + data.cy
        row, col = int(v), int(u)
        o, d = pixel_rays(data.poses_ngp[index], data.focal, data.cx, data.cy, torch.tensor([row]), torch.tensor([col]))
        t = -(o[0] @ d[0])
        closest = o[0] + t * d[0]
        pixel_size = float(np.linalg.norm(c2w[:3, 3]) * 4.0 / data.focal)
        assert float(closest.norm()) < 1.0 * pixel_size


def test_reduced_resolution_scales_intrinsics(subject):
    half = SubjectData(subject.clip, subject.track, subject.pose, subject.audio,
                       settings=DataSettings(resolution=32, val_frames=0.1))
    assert (half.height, half.width) == (32, 32)
    assert half.focal == pytest.approx(subject.pose.focal / 2) and half.cx == pytest.approx(subject.pose.cx / 2)
    assert half.frame(3).shape == (32, 32, 3) and half.frame(3).dtype == np.uint8
    # the same 3D head centre projects to half the pixel coordinates
    w2c = np.linalg.inv(subject.pose.c2w[3])
    cam = w2c[:3, 3]
    u_full = subject.pose.focal * cam[0] / -cam[2] + subject.pose.cx
    u_half = half.focal * cam[0] / -cam[2] + half.cx
    assert u_half == pytest.approx(u_full / 2)
    # head regions follow
    full = int(half.regions.resized(64, 64).head_mask(3).sum())
    assert abs(int(half.head_mask(3).sum()) * 4 - full) < 0.08 * full


def test_random_rays_targets_and_backgrounds(data):
    g = torch.Generator().manual_seed(0)
    batch = data.random_rays(5, 1000, g)
    frame = data.frame(5).astype(np.float32) / 255.0
    bg = data.frame_background(5).astype(np.float32) / 255.0
    rows, cols = batch.rows.numpy(), batch.cols.numpy()
    assert torch.allclose(batch.target, torch.from_numpy(frame[rows, cols]))
    assert torch.allclose(batch.bg, torch.from_numpy(bg[rows, cols]))
    head = data.head_mask(5)[rows, cols]
    assert head.mean() >= data.settings.face_fraction - 0.02  # concentrated in the head region
    assert not head.all()  # and some elsewhere
    lips = data.regions.lips_rect(5).contains(rows, cols)
    assert torch.equal(batch.weight, torch.from_numpy(1.0 + data.settings.lip_weight * lips.astype(np.float32)))
    # outside the head region the background is the frame itself (torso, background stay real)
    outside = ~head
    assert torch.allclose(batch.bg[outside], batch.target[outside])


def test_patches_and_lips_square(data):
    g = torch.Generator().manual_seed(1)
    batch = data.patch_rays(4, 16, 3, g)
    assert batch.shape == (3, 16, 16) and len(batch) == 3 * 256
    rows = batch.rows.reshape(3, 16, 16)
    cols = batch.cols.reshape(3, 16, 16)
    assert torch.all(rows[:, 1:, :] - rows[:, :-1, :] == 1) and torch.all(cols[:, :, 1:] - cols[:, :, :-1] == 1)
    assert data.head_mask(4)[rows[:, 8, 8].numpy(), cols[:, 8, 8].numpy()].all(), "patches centred on the head"
    lips = data.lips_rays(4)
    rect = data.regions.lips_rect(4)
    assert lips.shape == (1, rect.height, rect.width) and len(lips) == rect.height * rect.width
    pts = data.regions.points(4, R.LIPS)
    assert rect.contains(np.floor(pts[:, 1]).astype(int), np.floor(pts[:, 0]).astype(int)).all()


def test_attention_gates(data):
    rays = frame_rays(data.ray_subject, 2)
    lip = rays.lip_mask.numpy().reshape(data.height, data.width)
    expr = rays.expr_mask.numpy().reshape(data.height, data.width)
    assert lip.min() >= 0 and expr.min() >= 0 and (lip + expr).max() <= 1.0 + 1e-6  # never both fully on
    pts = data.regions.points(2)
    lips = pts[list(R.LIPS_OUTER)]
    assert lip[np.floor(lips[:, 1]).astype(int), np.floor(lips[:, 0]).astype(int)].min() == 1.0
    eyes = pts[list(R.LEFT_EYE + R.RIGHT_EYE + R.LEFT_BROW + R.RIGHT_BROW)]
    assert expr[np.floor(eyes[:, 1]).astype(int), np.floor(eyes[:, 0]).astype(int)].min() >= 0.5
    # the gate reaches below the chin (room for a wider-opening jaw) but not up to the eyes
    chin_row = int(pts[R.CHIN, 1])
    assert lip[min(chin_row + 1, data.height - 1)].max() > 0
    assert lip[: int(pts[R.NOSE_TIP, 1]) - 2].max() == 0
    # soft edges: values strictly between 0 and 1 exist only in a thin band
    band = (lip > 0) & (lip < 1)
    assert 0 < band.sum() < 0.5 * (lip > 0).sum()
    # outside the face both gates are off (hair, background)
    assert lip[0].max() == 0 and expr[0].max() == 0


def test_frame_rays_of_pixel_subsets_boxes_poses_and_sizes(data, subject):
    """``frame_rays``: a pixel subset, a box and the frame's own pose given explicitly are the matching rays (up to
    float32 rounding of the rotation) and exactly the matching gates of the whole image; the training batches use
    the same rays; at twice the size the four sub-pixels of a pixel look where it looks (intrinsics scale)."""
    whole = frame_rays(data.ray_subject, 3)
    h, w = data.height, data.width
    assert whole.rays_o.shape == (h * w, 3) and whole.lip_mask.shape == (h * w,)
    rows, cols = np.array([5, 40, 17, 63]), np.array([0, 22, 31, 63])
    subset = frame_rays(data.ray_subject, 3, pixels=(rows, cols))
    box = frame_rays(data.ray_subject, 3, box=Rect(10, 30, 20, 44))
    posed = frame_rays(data.ray_subject, 3, pose=subject.pose.c2w[3])
    box_rows, box_cols = np.mgrid[10:30, 20:44]
    for part, flat in ((subset, rows * w + cols), (box, (box_rows * w + box_cols).ravel()), (posed, np.arange(h * w))):
        for name in ("rows", "cols", "lip_mask", "expr_mask"):
            assert torch.equal(getattr(part, name), getattr(whole, name)[flat]), name
        for name in ("rays_o", "rays_d"):
            assert torch.allclose(getattr(part, name), getattr(whole, name)[flat], rtol=0, atol=1e-6), name
    batch = data.rays_for_pixels(3, rows, cols)
    assert torch.equal(batch.rays_d, subset.rays_d) and torch.equal(batch.lip_mask, subset.lip_mask)
    double = frame_rays(data.ray_subject, 3, size=(2 * h, 2 * w))
    assert double.rays_d.shape == (4 * h * w, 3) and torch.allclose(double.rays_o[0], whole.rays_o[0])
    quads = double.rays_d.reshape(h, 2, w, 2, 3).mean(dim=(1, 3)).reshape(-1, 3)
    assert float((torch.nn.functional.normalize(quads, dim=-1) - whole.rays_d).abs().max()) < 1e-4
    lip_double = double.lip_mask.reshape(h, 2, w, 2).mean(dim=(1, 3)).reshape(-1)
    agree = ((lip_double > 0.5) == (whole.lip_mask > 0.5)).float().mean()
    assert float(agree) > 0.97 and float(whole.lip_mask.max()) == 1.0


def test_frames_stay_uint8_and_the_cache_is_bounded(subject):
    frame_bytes = 64 * 64 * 3
    data = SubjectData(subject.clip, subject.track, subject.pose, subject.audio,
                       settings=DataSettings(val_frames=0.1, cache_bytes=5 * frame_bytes))
    g = torch.Generator().manual_seed(0)
    for i in range(12):
        data.random_rays(i, 64, g)
    assert all(v.dtype == np.uint8 for v in data._cache.values())
    assert data._cache_bytes <= 5 * frame_bytes
    assert data.features.dtype == torch.float32 and data.features.shape == (24, 8)
