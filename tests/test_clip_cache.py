"""The clip cache under concurrency and over time: two processes preparing the same clip, a clip already read by
someone is never replaced, leftovers of interrupted runs are swept, least-recently-used clips are evicted."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from synctalk_lib.media import clip_store
from synctalk_lib.media.clip_store import ClipWriter, clip_from_arrays, evict, sweep_temporaries
from tests.media_fixtures import write_video

REPO = Path(__file__).resolve().parents[1]

RACER = """
import json, os, sys, time
from pathlib import Path
from synctalk_lib.media.prepare import prepare_clip
video, cache, start = sys.argv[1], sys.argv[2], float(sys.argv[3])
time.sleep(max(0.0, start - time.time()))
clip = prepare_clip(video, cache, crop="none")
frames = clip.frames()
print(json.dumps({"root": str(clip.root), "inode": os.stat(Path(clip.root) / "frames.u8").st_ino,
                  "n": clip.num_frames, "sum": int(frames[::7].sum())}))
"""

READER = """
import sys, time
from pathlib import Path
from synctalk_lib.media.clip_store import load_cached_clip
target, stop = Path(sys.argv[1]), float(sys.argv[2])
reads = 0
while time.time() < stop:
    clip = load_cached_clip(target)
    if clip is not None:
        for i in range(0, clip.num_frames, 5):
            clip.frame(i)
        reads += 1
print(reads)
"""


def _frames(n: int, value: int, size: int = 16) -> np.ndarray:
    return np.full((n, size, size, 3), value, np.uint8)


def test_two_processes_preparing_one_clip_share_one_copy(tmp_path):
    """Both racers succeed with the same files (one decode, one rename); a reader never sees files vanish."""
    from synctalk_lib.media.prepare import clip_cache_path

    video = write_video(tmp_path / "talk.mp4", frames=240, fps=25.0, width=160, height=120,
                        frame_fn=lambda i: np.random.default_rng(i).integers(0, 255, (120, 160, 3), np.uint8))
    cache = tmp_path / "cache"
    start = time.time() + 4.0
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    target = clip_cache_path(video, cache, crop="none")
    reader = subprocess.Popen([sys.executable, "-c", READER, str(target), str(start + 8.0)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    racers = [subprocess.Popen([sys.executable, "-c", RACER, str(video), str(cache), str(start)], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = []
    for proc in racers:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    out, err = reader.communicate(timeout=120)
    assert reader.returncode == 0, err
    assert int(out.strip()) > 0, "the reader saw the clip"
    assert results[0] == results[1], "both prompts got the same clip, decoded once"
    assert results[0]["n"] == 240
    assert not [p for p in cache.iterdir() if p.name.endswith(".tmp")], "no temporaries are left behind"


def test_a_complete_clip_is_never_replaced(tmp_path):
    """Keep the winner: the second writer of a key returns the first one's clip, whose files stay in place."""
    target = tmp_path / "cache" / "clip-key"
    first = ClipWriter(target, height=16, width=16, fps=25.0)
    second = ClipWriter(target, height=16, width=16, fps=25.0)
    first.append(_frames(4, 10))
    second.append(_frames(4, 10))
    winner = first.finish()
    inode = os.stat(target / "frames.u8").st_ino
    reading = winner.frames()  # a reader holds the first clip's memory map
    loser = second.finish()
    assert loser.root == target and os.stat(target / "frames.u8").st_ino == inode
    assert int(reading[3, 0, 0, 0]) == 10
    assert sorted(p.name for p in target.parent.iterdir() if not p.name.startswith(".locks")) == ["clip-key"]


def test_an_incomplete_folder_at_the_target_is_replaced(tmp_path):
    target = tmp_path / "cache" / "clip-key"
    target.mkdir(parents=True)
    (target / "frames.u8").write_bytes(b"partial")  # no clip.json: an interrupted old version
    clip = clip_from_arrays(target, _frames(3, 7), 25.0)
    assert clip.num_frames == 3 and int(clip.frame(2)[0, 0, 0]) == 7


def test_stale_temporaries_are_swept_when_a_write_starts(tmp_path):
    cache = tmp_path / "cache"
    stale = cache / ".talk-abc.x1.tmp"
    fresh = cache / ".talk-def.x2.tmp"
    for folder in (stale, fresh):
        folder.mkdir(parents=True)
        (folder / "frames.u8").write_bytes(b"\0" * 1000)
    old = time.time() - clip_store.STALE_SECONDS - 60
    for path in (stale / "frames.u8", stale):
        os.utime(path, (old, old))
    clip_from_arrays(cache / "new", _frames(2, 1), 25.0)
    assert not stale.exists(), "a leftover of an interrupted run is removed"
    assert fresh.exists(), "a temporary another process is still writing stays"
    assert sweep_temporaries(cache) == []


def _age(folder: Path, seconds: float) -> None:
    when = time.time() - seconds
    os.utime(folder, (when, when))


def test_least_recently_used_clips_are_evicted_over_the_cap(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    one_clip = 20 * 32 * 32 * 3
    monkeypatch.setenv("SYNCTALK_CACHE_MAX_GB", str(3.5 * one_clip / 1e9))
    in_use = clip_from_arrays(cache / "a", _frames(20, 1, 32), 25.0)
    clip_from_arrays(cache / "b", _frames(20, 2, 32), 25.0)
    clip_from_arrays(cache / "c", _frames(20, 3, 32), 25.0)
    for name, age in (("a", 9000), ("b", 8000), ("c", 7000)):
        _age(cache / name, age)
    del_b = clip_from_arrays(cache / "d", _frames(20, 4, 32), 25.0)  # over the cap: the oldest unused goes
    left = sorted(p.name for p in cache.iterdir() if not p.name.startswith("."))
    assert left == ["a", "c", "d"], "b (least recently used, not in use) was evicted; a is in use"
    assert int(in_use.frame(0)[0, 0, 0]) == 1 and del_b.num_frames == 20
    # a clip used recently (by another process, say) is never evicted, even over the cap
    monkeypatch.setenv("SYNCTALK_CACHE_MAX_GB", str(0.5 * one_clip / 1e9))
    assert evict(cache) == [cache / "c"] and (cache / "d").is_dir()


def test_disk_shortage_names_the_folder(tmp_path, monkeypatch):
    from synctalk_lib.errors import InputError

    monkeypatch.setattr(clip_store, "free_bytes", lambda folder: 10 << 20)
    with pytest.raises(InputError, match=str(tmp_path / "cache")):
        clip_store.check_free_space(tmp_path / "cache", 1 << 30, "the reference frames")
