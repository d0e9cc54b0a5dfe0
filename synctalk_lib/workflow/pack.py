"""The node registry of the headless runner: the pack's own nodes plus the core stand-ins.

The pack is imported from its folder exactly like ComfyUI imports a custom-node pack (``spec_from_file_location``
on its ``__init__.py`` with the folder as the package's search path, registered in ``sys.modules`` under the
folder's path), so the headless runner exercises the same import path and the same relative imports as ComfyUI.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Mapping

from synctalk_lib.errors import SyncTalkError

PACK_DIR = Path(__file__).resolve().parents[2]


class Registry(dict):
    """Node type id -> node class, with ``display_names`` (id -> title) and ``sources`` (id -> where from)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.display_names: dict[str, str] = {}
        self.sources: dict[str, str] = {}

    def add(self, mappings: Mapping[str, type], display_names: Mapping[str, str], source: str) -> None:
        """Add node classes; ids already present win (like ComfyUI, a pack cannot replace a core node)."""
        for node_id, cls in mappings.items():
            if node_id in self:
                continue
            self[node_id] = cls
            self.sources[node_id] = source
            if node_id in display_names:
                self.display_names[node_id] = display_names[node_id]


_loaded: dict[Path, object] = {}


def _module_name(pack_dir: Path) -> str:
    # ComfyUI's name for a pack module: its full path with dots replaced (so folder names need not be identifiers).
    return str(pack_dir).replace(".", "_x_")


def load_pack_module(pack_dir: Path | str | None = None):
    """Import the pack (``pack_dir/__init__.py``, default: this repository) the way ComfyUI does; cached."""
    pack_dir = Path(pack_dir or PACK_DIR).resolve()
    if pack_dir in _loaded:
        return _loaded[pack_dir]
    init = pack_dir / "__init__.py"
    if not init.is_file():
        raise SyncTalkError(f"no node pack at {pack_dir} (missing __init__.py)")
    name = _module_name(pack_dir)
    spec = importlib.util.spec_from_file_location(name, init, submodule_search_locations=[str(pack_dir)])
    if spec is None or spec.loader is None:
        raise SyncTalkError(f"cannot import the node pack at {pack_dir}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(name, None)
        raise SyncTalkError(f"importing the node pack at {pack_dir} failed: {type(exc).__name__}: {exc}") from exc
    _loaded[pack_dir] = module
    return module


def load_pack_nodes(pack_dir: Path | str | None = None) -> dict[str, type]:
    """The pack's ``NODE_CLASS_MAPPINGS`` (node id -> class)."""
    return dict(getattr(load_pack_module(pack_dir), "NODE_CLASS_MAPPINGS", {}) or {})


def build_registry(pack_dir: Path | str | None = None, *, extra: Mapping[str, type] | None = None) -> Registry:
    """Core stand-ins + the pack's nodes (+ ``extra`` classes, e.g. test nodes)."""
    from synctalk_lib.workflow import core_nodes

    registry = Registry()
    registry.add(core_nodes.NODE_CLASS_MAPPINGS, core_nodes.NODE_DISPLAY_NAME_MAPPINGS, "core stand-in")
    module = load_pack_module(pack_dir)
    registry.add(getattr(module, "NODE_CLASS_MAPPINGS", {}) or {},
                 getattr(module, "NODE_DISPLAY_NAME_MAPPINGS", {}) or {}, "pack")
    if extra:
        registry.add(extra, {}, "extra")
    return registry
