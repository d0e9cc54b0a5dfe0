"""Reusing finished work: the one rule every pipeline stage follows.

A stage records, in a JSON log beside its outputs, the settings its result depends on (everything: inputs'
identities, options, versions). It is reused when the record's settings equal the current ones and every output
file is still there; otherwise it runs again. The log is rewritten atomically after each stage, so an interrupted
run leaves a consistent folder and the next run carries on from the first unfinished stage.

    log = StageLog(folder / "report.json")
    if not log.is_done("pose", settings, [folder / "head_pose.npz"]):
        entries = compute_pose(...)
        log.mark_done("pose", settings, [folder / "head_pose.npz"], entries, seconds)

The clip cache is not a stage: its folders are named by a hash of the source file and the decoding settings, so a
prepared clip is found by its name (``media.prepare.clip_cache_path``).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Iterable

from synctalk_lib.paths import read_json, write_json


def as_json(value: Any) -> Any:
    """``value`` as plain JSON data (tuples become lists, paths and other objects strings)."""
    return json.loads(json.dumps(value, default=str))


def fingerprint(value: Any) -> str:
    """A short stable hash of JSON-able ``value`` (for identities of whole folders, e.g. a subject)."""
    text = json.dumps(as_json(value), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class StageLog:
    """The JSON log of one folder: ``{"steps": {name: {"settings", "outputs"}}, "seconds": {...}, ...}`` plus
    whatever entries the stages add (report numbers users read)."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self.data: dict[str, Any] = read_json(self.path) if self.path.is_file() else {}
        self.data.setdefault("steps", {})
        self.data.setdefault("seconds", {})

    def settings_of(self, name: str) -> dict[str, Any] | None:
        """The settings a finished stage was run with (None when it never finished)."""
        record = self.data["steps"].get(name)
        return None if not record else record.get("settings")

    def is_done(self, name: str, settings: dict[str, Any], outputs: Iterable[Path]) -> bool:
        """Whether stage ``name`` finished with exactly ``settings`` and its outputs all exist."""
        return self.settings_of(name) == as_json(settings) and all(Path(p).exists() for p in outputs)

    def mark_done(self, name: str, settings: dict[str, Any], outputs: Iterable[Path], entries: dict[str, Any],
                  seconds: float) -> None:
        """Record a finished stage with its report ``entries`` and write the log."""
        self.data.update(as_json(entries))
        self.data["seconds"][name] = round(float(seconds), 3)
        self.data["steps"][name] = {"settings": as_json(settings), "outputs": [Path(p).name for p in outputs]}
        self.write()

    def forget(self, name: str) -> None:
        """Drop a stage's record, so it runs again."""
        self.data["steps"].pop(name, None)

    def write(self) -> None:
        write_json(self.path, self.data)
