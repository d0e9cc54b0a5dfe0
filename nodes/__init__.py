"""Node classes of the pack: one module per pipeline stage, each exporting ``NODE_CLASS_MAPPINGS`` and
``NODE_DISPLAY_NAME_MAPPINGS``. Every module of this package except ``bridge`` is collected here, so a new stage
is added by adding its file."""
from __future__ import annotations

import importlib
import pkgutil

NODE_CLASS_MAPPINGS: dict[str, type] = {}
NODE_DISPLAY_NAME_MAPPINGS: dict[str, str] = {}

_NOT_NODE_MODULES = {"bridge"}

for _info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if _info.name in _NOT_NODE_MODULES or _info.name.startswith("_"):
        continue
    _module = importlib.import_module(f"{__name__}.{_info.name}")
    for _node_id, _cls in getattr(_module, "NODE_CLASS_MAPPINGS", {}).items():
        if _node_id in NODE_CLASS_MAPPINGS:
            raise RuntimeError(f"SyncTalk: node id {_node_id!r} is defined twice (second time in {_info.name}.py)")
        NODE_CLASS_MAPPINGS[_node_id] = _cls
    NODE_DISPLAY_NAME_MAPPINGS.update(getattr(_module, "NODE_DISPLAY_NAME_MAPPINGS", {}))
