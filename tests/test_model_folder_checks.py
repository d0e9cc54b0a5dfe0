"""Model folders at their worst: damaged files, wrong types, huge declared sizes, NaN weights, full disks, local
paths in shared folders, and the reference frames decoded once into the clip cache."""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from synctalk_lib.errors import InputError
from synctalk_lib.media import clip_store
from synctalk_lib.nerf.model_folder import SyncTalkModel, copy_model_folder
from tests.nerf_fixtures import make_subject, train_tiny_model

SECRET = "/home/someone/private/talk_secret.mp4"


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A tiny model trained on a clip whose source is a local path (which must not travel with the folder)."""
    root = tmp_path_factory.mktemp("checks")
    subject = make_subject(root, num_frames=12, size=40)
    subject = dataclasses.replace(subject, clip=dataclasses.replace(subject.clip, source_path=SECRET,
                                                                    source_size=(640, 480),
                                                                    crop_box=(100, 20, 500, 420)))
    model = train_tiny_model(subject, steps=4)
    return model.save_pretrained(root / "models" / "tiny")


def _copy(saved: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "copy"
    shutil.copytree(saved, copy)
    return copy


def _edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def _truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)])


def _nan_weights(path: Path) -> None:
    from safetensors.torch import load_file, save_file

    state = load_file(str(path))
    key = next(k for k, v in state.items() if v.is_floating_point() and v.numel() > 4)
    state[key][0] = float("nan")
    save_file(state, str(path))


DAMAGES = {
    "truncated weights": ("model.safetensors", lambda f: _truncate(f / "model.safetensors")),
    "weights not safetensors": ("model.safetensors", lambda f: (f / "model.safetensors").write_bytes(b"\0" * 64)),
    "NaN weights": ("model.safetensors", lambda f: _nan_weights(f / "model.safetensors")),
    "config not JSON": ("config.json", lambda f: (f / "config.json").write_text("{ not json")),
    "config a list": ("config.json", lambda f: (f / "config.json").write_text("[1, 2]")),
    "nerf levels a string": ("config.json", lambda f: _edit_json(f / "config.json",
                                                                 lambda c: c["nerf"].update(levels="12"))),
    "huge occupancy grid": ("model.safetensors", lambda f: _edit_json(
        f / "config.json", lambda c: c["nerf"].update(grid_resolution=4096))),
    "huge render size": ("config.json", lambda f: _edit_json(f / "config.json",
                                                             lambda c: c["render"].update(height=100_000))),
    "huge max_steps": ("config.json", lambda f: _edit_json(f / "config.json",
                                                           lambda c: c["nerf"].update(max_steps=10**9))),
    "no audio section": ("config.json", lambda f: _edit_json(f / "config.json", lambda c: c.pop("audio"))),
    "frames a string": ("subject.json", lambda f: _edit_json(f / "subject" / "subject.json",
                                                             lambda m: m.update(num_frames="12"))),
    "index out of range": ("subject.json", lambda f: _edit_json(f / "subject" / "subject.json",
                                                                lambda m: m.update(val_indices=[5, 99999]))),
    "huge frame size": ("subject.json", lambda f: _edit_json(f / "subject" / "subject.json",
                                                             lambda m: m.update(height=10**6, width=10**6))),
    "truncated reference video": ("reference.mp4", lambda f: _truncate(f / "subject" / "reference.mp4", 0.3)),
    "truncated face track": ("face_track.npz", lambda f: _truncate(f / "subject" / "face_track.npz")),
    "background of another size": ("background.png", lambda f: _small_png(f / "subject" / "background.png")),
    "background not an image": ("background.png", lambda f: (f / "subject" / "background.png").write_text("x")),
}


def _small_png(path: Path) -> None:
    import cv2

    cv2.imwrite(str(path), np.zeros((8, 8, 3), np.uint8))


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_a_damaged_folder_is_one_clear_error_naming_the_file(saved, tmp_path, damage):
    culprit, make = DAMAGES[damage]
    folder = _copy(saved, tmp_path)
    make(folder)
    with pytest.raises(InputError) as info:
        SyncTalkModel.from_pretrained(folder, cache_dir=tmp_path / "cache")
    message = str(info.value)
    assert culprit in message, message
    assert any(fix in message for fix in ("copy the whole folder", "train the subject again", "train and save")), message


def test_nan_weights_are_never_saved(saved, tmp_path):
    model = SyncTalkModel.from_pretrained(saved, cache_dir=tmp_path / "cache")
    with __import__("torch").no_grad():
        model.nerf.individual_codes[0, 0] = float("inf")
    with pytest.raises(InputError, match="NaN or infinite"):
        model.save_pretrained(tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_shared_folders_hold_no_local_paths(saved, tmp_path):
    from synctalk_lib.pipeline.training import save_model

    model = SyncTalkModel.from_pretrained(saved, cache_dir=tmp_path / "cache")
    save_model(model, tmp_path / "again", model.summary, "quick")
    for folder in (saved, tmp_path / "again"):
        for path in folder.rglob("*.json"):
            text = path.read_text()
            assert "/home/someone" not in text and str(tmp_path) not in text, path
            assert str(saved.parent.parent) not in text, path
    source = json.loads((saved / "subject" / "subject.json").read_text())["source"]
    assert source == {"name": "talk_secret.mp4", "size": [640, 480], "crop_box": [100, 20, 500, 420],
                      "start_time": 0.0}


def test_an_old_folder_with_a_source_path_loads_without_it(saved, tmp_path):
    folder = _copy(saved, tmp_path)
    _edit_json(folder / "subject" / "subject.json",
               lambda m: m.update(source={"path": SECRET, "size": [640, 480], "crop_box": None, "start_time": 0}))
    model = SyncTalkModel.from_pretrained(folder, cache_dir=tmp_path / "cache")
    assert model.subject.source["name"] == "talk_secret.mp4" and "path" not in model.subject.source


def test_reference_frames_are_decoded_once_into_the_clip_cache(saved, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("TMPDIR", str(tmp_path / "no_tmp_use"))
    first = SyncTalkModel.from_pretrained(saved, cache_dir=cache)
    clip = first.subject.reference_clip()
    assert clip is first.subject.frames and Path(clip.root).parent == cache
    assert clip.source_path is None and clip.crop_box == (100, 20, 500, 420)
    inode = os.stat(Path(clip.root) / clip.FRAMES_FILE).st_ino
    second = SyncTalkModel.from_pretrained(saved, cache_dir=cache)
    assert os.stat(Path(second.subject.frames.root) / clip.FRAMES_FILE).st_ino == inode, "decoded only once"
    assert not (tmp_path / "no_tmp_use").exists()
    with pytest.raises(InputError, match="LoadReferenceVideo"):
        from synctalk_lib.pipeline.driving import full_resolution_clip

        full_resolution_clip(clip, cache)


def test_a_full_cache_disk_is_refused_before_decoding(saved, tmp_path, monkeypatch):
    monkeypatch.setattr(clip_store, "free_bytes", lambda folder: 1 << 20)
    with pytest.raises(InputError, match=f"not enough disk space in {tmp_path / 'cache'}"):
        SyncTalkModel.from_pretrained(saved, cache_dir=tmp_path / "cache")
    assert not [p for p in (tmp_path / "cache").iterdir() if not p.name.startswith(".")]


def test_saving_on_a_full_disk_names_the_folder(saved, tmp_path, monkeypatch):
    model = SyncTalkModel.from_pretrained(saved, cache_dir=tmp_path / "cache")
    target = tmp_path / "models" / "copy"
    monkeypatch.setattr(clip_store, "free_bytes", lambda folder: 1 << 20)
    with pytest.raises(InputError, match=f"not enough disk space in {tmp_path / 'models'}"):
        model.save_pretrained(target)
    with pytest.raises(InputError, match=f"not enough disk space in {tmp_path / 'models'}"):
        copy_model_folder(saved, target)
    monkeypatch.undo()

    def full(src, dst, **kwargs):
        Path(dst).mkdir()
        raise shutil.Error([(str(src), str(dst), "[Errno 28] No space left on device")])

    monkeypatch.setattr(shutil, "copytree", full)
    with pytest.raises(InputError, match=f"disk filled up while writing the model folder {target}"):
        copy_model_folder(saved, target)
    assert not target.exists() and not [p for p in target.parent.iterdir() if p.name.endswith(".tmp")]
