"""Inputs that name files stay inside their folders (ComfyUI started with --listen takes inputs from anyone who
reaches it): no absolute paths or '..' unless SYNCTALK_ALLOW_ABSOLUTE_PATHS=1, Hub ids only through repo_id, and
a folder in the current directory never shadows a model name."""
from __future__ import annotations

from pathlib import Path

import pytest

from synctalk_lib.errors import InputError
from synctalk_lib.nerf.model_folder import resolve_model_folder
from synctalk_lib.paths import confine
from tests.pack_loader import load_pack

pack = load_pack()
bridge = pack.nodes.bridge

ESCAPES = ["../secret.mp4", "sub/../../secret.mp4", "/etc/passwd", "~/secret.mp4", "", "."]


def _stub_model(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"")
    return folder


@pytest.fixture()
def dirs(tmp_path, monkeypatch):
    for name in ("input", "output", "models", "cache"):
        (tmp_path / name).mkdir()
    monkeypatch.setenv("SYNCTALK_INPUT_DIR", str(tmp_path / "input"))
    monkeypatch.setenv("SYNCTALK_OUTPUT_DIR", str(tmp_path / "output"))
    monkeypatch.setenv("SYNCTALK_MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("SYNCTALK_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("SYNCTALK_ALLOW_ABSOLUTE_PATHS", raising=False)
    (tmp_path / "secret.mp4").write_bytes(b"x")
    return tmp_path


@pytest.mark.parametrize("name", ESCAPES)
def test_names_cannot_leave_their_folder(dirs, name):
    with pytest.raises(InputError, match="outside the allowed folders.*SYNCTALK_ALLOW_ABSOLUTE_PATHS=1"):
        confine(name, [dirs / "input"], "input file")


def test_names_inside_the_folder_and_annotations(dirs):
    (dirs / "input" / "sub").mkdir()
    (dirs / "input" / "sub" / "talk.mp4").write_bytes(b"x")
    (dirs / "output" / "render.mp4").write_bytes(b"x")
    assert bridge.resolve_input_path("sub/talk.mp4") == dirs / "input" / "sub" / "talk.mp4"
    assert bridge.resolve_input_path("render.mp4 [output]") == dirs / "output" / "render.mp4"
    with pytest.raises(InputError):
        bridge.resolve_input_path("../secret.mp4 [output]")


def test_opt_in_allows_absolute_paths(dirs, monkeypatch):
    monkeypatch.setenv("SYNCTALK_ALLOW_ABSOLUTE_PATHS", "1")
    assert bridge.resolve_input_path(str(dirs / "secret.mp4")) == dirs / "secret.mp4"


def test_load_reference_video_refuses_paths_outside_the_input_folder(dirs):
    node = pack.nodes.video.SyncTalkLoadReferenceVideo
    for name in (str(dirs / "secret.mp4"), "../secret.mp4"):
        message = node.VALIDATE_INPUTS(video=name)
        assert isinstance(message, str) and "outside the allowed folders" in message
        with pytest.raises(InputError, match="outside the allowed folders"):
            node().load(name, 25.0, 0.0, 0.0, "none", 512, 64)


def test_load_model_refuses_paths_and_hub_ids_in_the_name(dirs, monkeypatch):
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda *a, **k: pytest.fail("no download"))
    _stub_model(dirs / "elsewhere" / "tiny")
    node = pack.nodes.nerf.LoadSyncTalkModel()
    for name in (str(dirs / "elsewhere" / "tiny"), "../elsewhere/tiny", "someone/synctalk-may"):
        with pytest.raises(InputError, match="path, which is not accepted here"):
            node.load(name, device="cpu")
    with pytest.raises(InputError, match="not a Hugging Face Hub repo id"):
        node.load("ignored", device="cpu", repo_id="../../etc")


def test_a_folder_in_the_current_directory_does_not_shadow_a_model_name(dirs, monkeypatch):
    mine = _stub_model(dirs / "models" / "may")
    _stub_model(dirs / "cwd" / "may")
    monkeypatch.chdir(dirs / "cwd")
    assert resolve_model_folder("may", models_dirs=[dirs / "models"]) == mine
    with pytest.raises(InputError, match="no SyncTalk model named 'other'"):
        _stub_model(dirs / "cwd" / "other")
        resolve_model_folder("other", models_dirs=[dirs / "models"])
    assert resolve_model_folder("./other", models_dirs=[dirs / "models"]) == Path("./other")


def test_ave_file_stays_in_the_models_folders(dirs):
    encode = pack.nodes.audio.SyncTalkEncodeAudioAV
    (dirs / "models" / "my_ave.safetensors").write_bytes(b"")
    assert encode._resolve("my_ave.safetensors") == dirs / "models" / "my_ave.safetensors"
    for name in ("../secret.mp4", str(dirs / "secret.mp4")):
        with pytest.raises(InputError, match="ave_file"):
            encode._resolve(name)
