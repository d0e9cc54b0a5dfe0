"""Hub asset registry: local files win, checksums are enforced, offline errors say what to do."""
from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest
import torch

from synctalk_lib import hub
from synctalk_lib.errors import InputError, MissingWeightsError


def _fake_asset(monkeypatch, payload: bytes, name: str = "fake") -> hub.Asset:
    asset = hub.Asset(name=name, filename=f"{name}.bin", sha256=hashlib.sha256(payload).hexdigest(), size=len(payload),
                      licence="MIT", description="test weights",
                      locations=(hub.HubLocation("org/repo", f"weights/{name}.bin"),))
    monkeypatch.setitem(hub.ASSETS, name, asset)
    return asset


def test_registry_has_required_assets_with_pinned_checksums():
    for name in ("face_landmarker", "ave", "raft_small"):
        asset = hub.get_asset(name)
        assert len(asset.sha256) == 64 and asset.licence and asset.locations
    assert hub.get_asset("ave").non_commercial and not hub.get_asset("face_landmarker").non_commercial
    with pytest.raises(InputError, match="unknown asset"):
        hub.get_asset("nope")


def test_present_file_is_used_without_network(shared_models, models_dir):
    shutil.copy(shared_models / "face_landmarker.task", models_dir / "face_landmarker.task")
    assert hub.fetch("face_landmarker", [models_dir]) == models_dir / "face_landmarker.task"
    # second folder in the search list works too, and the first folder is only where downloads would go
    empty = models_dir / "empty"
    empty.mkdir()
    assert hub.fetch("raft_small", [empty, shared_models]) == shared_models / "raft-small.pth"


def test_missing_file_offline_names_file_url_and_folder(models_dir, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(MissingWeightsError) as err:
        hub.fetch("ave", [models_dir])
    message = str(err.value)
    assert "audio_visual_encoder.pth" in message
    assert "HF_HUB_OFFLINE" in message
    assert "https://huggingface.co/ameerazam08/SyncTalk/resolve/main/nerf_triplane/checkpoints/audio_visual_encoder.pth" in message
    assert str(models_dir / "audio_visual_encoder.pth") in message
    assert "CC BY-NC 4.0" in message


def test_bad_checksum_is_refused(models_dir, monkeypatch):
    asset = _fake_asset(monkeypatch, b"the real weights")
    (models_dir / asset.filename).write_bytes(b"the real weightz")
    with pytest.raises(MissingWeightsError, match="does not match"):
        hub.fetch("fake", [models_dir])


@pytest.mark.parametrize("content,phrase", [
    (b"version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 12\n", "Git LFS pointer"),
    (b"<!DOCTYPE html><html><body>Not found</body></html>", "HTML page"),
])
def test_wrong_file_kinds_are_recognised(models_dir, monkeypatch, content, phrase):
    asset = _fake_asset(monkeypatch, b"x" * len(content))
    (models_dir / asset.filename).write_bytes(content)
    with pytest.raises(MissingWeightsError, match=phrase):
        hub.fetch("fake", [models_dir])


def test_download_goes_through_hf_hub_download_and_is_verified(models_dir, tmp_path, monkeypatch):
    """A fake Hub: hf_hub_download returns a cached file; it is copied into the models folder after the check."""
    payload = b"weights from the hub"
    asset = _fake_asset(monkeypatch, payload)
    calls = []

    def fake_download(repo_id, filename, revision=None, repo_type=None):
        calls.append((repo_id, filename, revision, repo_type))
        cached = tmp_path / "hf_cache" / filename
        cached.parent.mkdir(parents=True, exist_ok=True)
        cached.write_bytes(payload)
        return str(cached)

    import huggingface_hub

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(hub, "_hub_unreachable", lambda timeout=3.0: None)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    path = hub.fetch("fake", [models_dir])
    assert path == models_dir / asset.filename and path.read_bytes() == payload
    assert calls == [("org/repo", "weights/fake.bin", "main", "model")]
    assert not [p for p in models_dir.iterdir() if p.name.startswith(".")], "no temporary files left behind"


def test_corrupt_download_is_refused_and_not_kept(models_dir, tmp_path, monkeypatch):
    _fake_asset(monkeypatch, b"good")

    def fake_download(repo_id, filename, revision=None, repo_type=None):
        bad = tmp_path / "bad.bin"
        bad.write_bytes(b"evil")
        return str(bad)

    import huggingface_hub

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(hub, "_hub_unreachable", lambda timeout=3.0: None)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    with pytest.raises(MissingWeightsError, match="downloaded file refused"):
        hub.fetch("fake", [models_dir])
    assert list(models_dir.iterdir()) == []


def test_network_error_becomes_actionable(models_dir, monkeypatch):
    _fake_asset(monkeypatch, b"good")

    def no_network(*args, **kwargs):
        raise ConnectionError("Name or service not known")

    import huggingface_hub

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(hub, "_hub_unreachable", lambda timeout=3.0: None)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", no_network)
    with pytest.raises(MissingWeightsError, match=r"ConnectionError.*put it at"):
        hub.fetch("fake", [models_dir])


def test_load_state_dict_never_unpickles_and_keeps_safetensors_copy(tmp_path):
    weights = {"layer.weight": torch.arange(6, dtype=torch.float32).reshape(2, 3), "layer.bias": torch.ones(2)}
    pth = tmp_path / "w.pth"
    torch.save(weights, pth)
    loaded = hub.load_state_dict(pth)
    assert torch.equal(loaded["layer.weight"], weights["layer.weight"])
    assert (tmp_path / "w.safetensors").is_file()
    again = hub.load_state_dict(pth)  # served from the safetensors copy
    assert torch.equal(again["layer.bias"], weights["layer.bias"])

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    evil = tmp_path / "evil.pth"
    torch.save({"x": Evil()}, evil)
    with pytest.raises(InputError, match="nothing is unpickled"):
        hub.load_state_dict(evil)


def test_checksum_cache_does_not_write_into_model_folders(shared_models):
    before = sorted(p.name for p in Path(shared_models).iterdir())
    hub.find_local("raft_small", [shared_models])
    assert sorted(p.name for p in Path(shared_models).iterdir()) == before


def test_unreachable_hub_fails_fast_without_calling_the_downloader(models_dir, monkeypatch):
    _fake_asset(monkeypatch, b"good")
    import time

    import huggingface_hub

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # discard port: connection refused at once
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", lambda *a, **k: pytest.fail("must not be called"))
    start = time.perf_counter()
    with pytest.raises(MissingWeightsError, match="no network connection to 127.0.0.1"):
        hub.fetch("fake", [models_dir])
    assert time.perf_counter() - start < 5


def test_no_safetensors_copy_in_a_read_only_folder(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    torch.save({"w": torch.ones(2)}, folder / "w.pth")
    folder.chmod(0o555)
    try:
        assert torch.equal(hub.load_state_dict(folder / "w.pth")["w"], torch.ones(2))
        assert sorted(p.name for p in folder.iterdir()) == ["w.pth"]
    finally:
        folder.chmod(0o755)


def test_an_unverified_safetensors_beside_a_pth_is_not_loaded_in_its_place(tmp_path):
    pth = tmp_path / "w.pth"
    torch.save({"w": torch.ones(3)}, pth)
    from safetensors.torch import save_file

    planted = tmp_path / "w.safetensors"
    save_file({"w": torch.full((3,), 7.0)}, str(planted))  # newer than the .pth, but not made from it
    assert torch.equal(hub.load_state_dict(pth)["w"], torch.ones(3))
    from safetensors import safe_open

    with safe_open(str(planted), framework="pt") as handle:  # replaced by a real copy that says where it came from
        assert handle.metadata()["source_sha256"] == hub.sha256_of(pth)
    torch.save({"w": torch.zeros(3)}, pth)  # the .pth changes: its old copy is stale
    assert torch.equal(hub.load_state_dict(pth)["w"], torch.zeros(3))


def test_remembered_checksums_notice_a_rewrite_that_keeps_size_and_mtime(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    path = tmp_path / "weights.bin"
    path.write_bytes(b"a" * 100)
    stat = path.stat()
    assert hub._cached_sha256(path) == hashlib.sha256(b"a" * 100).hexdigest()
    import time

    time.sleep(0.02)
    path.write_bytes(b"b" * 100)  # same size ...
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # ... and the old mtime
    assert hub._cached_sha256(path) == hashlib.sha256(b"b" * 100).hexdigest()


class _Sibling:
    def __init__(self, name: str, size: int):
        self.rfilename, self.size = name, size


def _fake_model_repo(monkeypatch, sizes: dict[str, int], calls: list):
    import huggingface_hub

    class Info:
        sha = "0123456789abcdef0123456789abcdef01234567"
        siblings = [_Sibling(n, s) for n, s in sizes.items()]

    class Api:
        def model_info(self, repo_id, revision=None, files_metadata=False):
            calls.append(("info", repo_id, revision, files_metadata))
            return Info()

    def snapshot_download(repo_id, revision=None, allow_patterns=None, **kwargs):
        calls.append(("download", repo_id, revision, sorted(allow_patterns)))
        return str(Path("/nonexistent"))

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(hub, "_hub_unreachable", lambda: None)
    monkeypatch.setattr(huggingface_hub, "HfApi", Api)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)


MODEL_FILES = ("config.json", "model.safetensors", "subject/subject.json", "subject/reference.mp4")


def test_model_repos_fetch_only_the_folder_files_at_the_resolved_commit(monkeypatch, caplog):
    calls: list = []
    _fake_model_repo(monkeypatch, {"config.json": 2_000, "model.safetensors": 40_000_000, "huge.bin": 10**12,
                                   "subject/reference.mp4": 5_000_000}, calls)
    with caplog.at_level("INFO", logger="synctalk"):
        hub.download_model_folder("someone/may", revision="main", local_files_only=False, files=MODEL_FILES)
    assert calls[0] == ("info", "someone/may", "main", True)
    assert calls[1] == ("download", "someone/may", "0123456789abcdef0123456789abcdef01234567", sorted(MODEL_FILES))
    assert "0123456789abcdef0123456789abcdef01234567" in caplog.text, "the commit is logged"


def test_model_repos_over_the_size_cap_are_refused_before_downloading(monkeypatch):
    from synctalk_lib import paths

    monkeypatch.setattr(paths, "free_bytes", lambda folder: 100 * 10**9)  # the disk holds the 30 GB
    calls: list = []
    _fake_model_repo(monkeypatch, {"config.json": 2_000, "model.safetensors": 30 * 10**9}, calls)
    with pytest.raises(InputError, match=r"30\.00 GB, more than the 20\.00 GB allowed.*SYNCTALK_HUB_MAX_GB"):
        hub.download_model_folder("someone/may", revision=None, local_files_only=False, files=MODEL_FILES)
    assert [c[0] for c in calls] == ["info"]
    monkeypatch.setenv("SYNCTALK_HUB_MAX_GB", "50")
    hub.download_model_folder("someone/may", revision=None, local_files_only=False, files=MODEL_FILES)
    assert calls[-1][0] == "download"


def test_model_repo_ids_are_checked(monkeypatch):
    for bad in ("../etc", "/abs/path", "a/b/c", "someone/.."):
        with pytest.raises(InputError, match="not a Hugging Face Hub repo id"):
            hub.download_model_folder(bad, revision=None, local_files_only=False, files=MODEL_FILES)
