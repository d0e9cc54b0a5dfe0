"""The ComfyUI bridge, outside ComfyUI and inside a stand-in ComfyUI (fake folder_paths / comfy modules)."""
from __future__ import annotations

import importlib
import types
from pathlib import Path

import pytest
import torch

from pack_loader import load_pack

bridge = importlib.import_module(load_pack().__name__ + ".nodes.bridge")


@pytest.fixture()
def outside(monkeypatch):
    monkeypatch.setattr(bridge, "_comfy", lambda: None)
    return bridge


class FakeInterrupt(Exception):
    pass


@pytest.fixture()
def inside(monkeypatch, tmp_path):
    """A minimal ComfyUI: folder_paths with registered folders, ProgressBar, model_management."""
    state = {"paths": {}, "progress": [], "interrupt": False}
    folder_paths = types.SimpleNamespace(
        models_dir=str(tmp_path / "models"),
        folder_names_and_paths=state["paths"],
        add_model_folder_path=lambda name, path, is_default=False: state["paths"].setdefault(name, ([], set()))[0].append(path),
        get_folder_paths=lambda name: list(state["paths"][name][0]),
        get_input_directory=lambda: str(tmp_path / "input"),
        get_output_directory=lambda: str(tmp_path / "output"),
        get_temp_directory=lambda: str(tmp_path / "temp"),
        get_user_directory=lambda: str(tmp_path / "user"),
        get_annotated_filepath=lambda name: str(tmp_path / "input" / name),
        filter_files_content_types=lambda files, kinds: [f for f in files if f.endswith(".mp4")],
    )

    class ProgressBar:
        def __init__(self, total):
            self.total = total

        def update_absolute(self, value, total=None, preview=None):
            state["progress"].append((value, total))

    def throw_if_interrupted():
        if state["interrupt"]:
            state["interrupt"] = False
            raise FakeInterrupt("cancelled")

    utils = types.SimpleNamespace(ProgressBar=ProgressBar)
    mm = types.SimpleNamespace(throw_exception_if_processing_interrupted=throw_if_interrupted,
                               get_torch_device=lambda: torch.device("cpu"), soft_empty_cache=lambda: None)
    monkeypatch.setattr(bridge, "_comfy", lambda: (folder_paths, utils, mm))
    monkeypatch.delenv("SYNCTALK_CACHE_DIR", raising=False)
    return bridge, state, tmp_path


def test_outside_comfyui_defaults(outside, monkeypatch, tmp_path):
    monkeypatch.setenv("SYNCTALK_MODELS_DIR", str(tmp_path / "m"))
    monkeypatch.setenv("SYNCTALK_CACHE_DIR", str(tmp_path / "c"))
    assert not outside.in_comfyui()
    assert outside.models_dirs() == [tmp_path / "m"]
    assert outside.cache_dir() == tmp_path / "c"
    assert outside.device("cpu") == torch.device("cpu")
    assert outside.device("auto").type in {"cpu", "cuda"}
    with pytest.raises(ValueError, match="auto, cpu, cuda"):
        outside.device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="no CUDA GPU"):
            outside.device("cuda")
    with outside.progress("test", total=3) as on_step:
        for i in range(3):
            on_step(i + 1, 3)
    outside.check_interrupted()  # no-op


def test_resolve_input_path_outside(outside, monkeypatch, tmp_path):
    monkeypatch.setenv("SYNCTALK_INPUT_DIR", str(tmp_path))
    (tmp_path / "clip.mp4").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("x")
    assert outside.resolve_input_path("clip.mp4") == tmp_path / "clip.mp4"
    with pytest.raises(ValueError, match="SYNCTALK_ALLOW_ABSOLUTE_PATHS"):
        outside.resolve_input_path(str(tmp_path / "notes.txt"))
    monkeypatch.setenv("SYNCTALK_ALLOW_ABSOLUTE_PATHS", "1")
    assert outside.resolve_input_path(str(tmp_path / "notes.txt")) == tmp_path / "notes.txt"
    assert outside.list_input_files("video") == ["clip.mp4"]


def test_inside_comfyui_registers_model_folder_once(inside):
    b, state, tmp_path = inside
    first = b.models_dirs()
    second = b.models_dirs()
    assert first == second == [Path(tmp_path / "models" / "synctalk")]
    assert state["paths"]["synctalk"][0] == [str(tmp_path / "models" / "synctalk")]
    assert b.cache_dir() == tmp_path / "user" / "synctalk_cache"
    assert b.input_dir() == tmp_path / "input"


def test_inside_comfyui_progress_and_cancel(inside):
    b, state, _ = inside
    with pytest.raises(FakeInterrupt):
        with b.progress("work", total=4) as on_step:
            on_step(1, 4)
            on_step(2, 4)
            state["interrupt"] = True  # the user presses Cancel
            on_step(3, 4)
    assert state["progress"] == [(1, 4), (2, 4)]


def test_inside_comfyui_device_is_comfyuis(inside):
    b, _, _ = inside
    assert b.device("auto") == torch.device("cpu")
