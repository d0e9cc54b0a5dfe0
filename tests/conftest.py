"""Shared fixtures.

Real data (the reference clip and weights) comes from ``$SYNCTALK_SHARED`` (``../shared`` in CI). Without it the
tests that need it skip; with ``SYNCTALK_REQUIRE_SHARED=1`` (set by ``.ci/run``) they fail instead, so CI can never
pass by skipping them.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("SYNCTALK_QUIET", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach the network


def _no_cuda() -> bool:
    import torch

    return not torch.cuda.is_available()


if _no_cuda():
    # Triton kernels run on the CPU through Triton's interpreter; it must be chosen before triton is imported.
    os.environ.setdefault("TRITON_INTERPRET", "1")


def _shared_or_skip() -> Path:
    root = os.environ.get("SYNCTALK_SHARED")
    if root and (Path(root) / "data" / "may_short.mp4").is_file():
        return Path(root).resolve()
    message = f"reference data not found (SYNCTALK_SHARED={root!r} has no data/may_short.mp4)"
    if os.environ.get("SYNCTALK_REQUIRE_SHARED") == "1":
        pytest.fail(message + " and SYNCTALK_REQUIRE_SHARED=1", pytrace=False)
    pytest.skip(message)


SHARED_FIXTURES = {"shared_dir", "may_video", "shared_models", "comfyui"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that reaches the shared data through a fixture as ``shared`` (``pytest -m shared``)."""
    for item in items:
        if SHARED_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.shared)


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    return _shared_or_skip()


@pytest.fixture(scope="session")
def may_video(shared_dir: Path) -> Path:
    return shared_dir / "data" / "may_short.mp4"


@pytest.fixture(scope="session")
def shared_models(shared_dir: Path) -> Path:
    return shared_dir / "models"


@pytest.fixture()
def one_thread():
    """Torch on one thread for the test: small tensors only add contention on a shared 2-core runner."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture()
def models_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty models folder used as ``$SYNCTALK_MODELS_DIR``."""
    folder = tmp_path / "models"
    folder.mkdir()
    monkeypatch.setenv("SYNCTALK_MODELS_DIR", str(folder))
    return folder


@pytest.fixture(scope="session")
def session_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clip cache shared by the whole test session (the reference clip is decoded once)."""
    folder = tmp_path_factory.mktemp("clip_cache")
    os.environ["SYNCTALK_CACHE_DIR"] = str(folder)
    return folder


@pytest.fixture(scope="session")
def comfyui(tmp_path_factory: pytest.TempPathFactory, shared_dir: Path):
    """A real ComfyUI server with this pack (``$COMFYUI_DIR``; see ``real_comfyui.py``), one per session."""
    from real_comfyui import ComfyUIServer, comfyui_dir

    server = ComfyUIServer(comfyui_dir(), tmp_path_factory.mktemp("comfyui"), shared_dir / "models")
    try:
        yield server
    finally:
        server.stop()
