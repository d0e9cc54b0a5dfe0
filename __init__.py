"""SyncTalk node pack for ComfyUI.

ComfyUI imports this file as a package (by path, not by name). It only defines things: node classes are
registered from ``nodes/``; heavy libraries (mediapipe, lpips, CUDA kernels) load when a node runs.
"""
import os
import sys

# The bundled library is imported as ``synctalk_lib`` everywhere (nodes, CLI, tests), so the pack folder must be
# importable. Appended, never prepended: ComfyUI's own top-level ``nodes`` module must keep winning.
_PACK_DIR = os.path.dirname(os.path.abspath(__file__))
if _PACK_DIR not in sys.path:
    sys.path.append(_PACK_DIR)

if __package__:  # ComfyUI (or any import as a package): register the nodes
    from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS  # noqa: E402
else:  # a lone module: pytest collecting a checkout whose folder name is not a Python identifier ("my-pack")
    NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS = {}, {}

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
