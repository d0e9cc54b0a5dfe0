"""ComfyUI workflows without a ComfyUI server: the two file formats, validation and headless execution.

    from synctalk_lib.workflow import build_registry, load_workflow, run_workflow
    registry = build_registry()                      # core stand-ins + this pack's nodes
    prompt, ui = load_workflow("workflows/synctalk_render.json", registry)
    results = run_workflow(prompt, registry, overrides={"LoadAudio.audio": "speech.wav"},
                           extra_pnginfo={"workflow": ui} if ui else None)

Modules: ``formats`` (UI <-> API), ``validate`` (ComfyUI's /prompt checks), ``runner`` (execution),
``core_nodes`` (stand-ins for the core nodes our workflows use), ``pack`` (importing the pack like ComfyUI).
Importing this package is cheap; torch and PyAV load when a workflow runs.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from synctalk_lib.workflow.formats import detect_format, load_json, to_api, ui_to_api
from synctalk_lib.workflow.pack import Registry, build_registry, load_pack_nodes
from synctalk_lib.workflow.runner import NodeExecutionError, NodeRun, WorkflowError, apply_overrides, run_workflow
from synctalk_lib.workflow.validate import Problem, validate


def load_workflow(source: Path | str | Mapping[str, Any], registry: Mapping[str, type]) -> tuple[dict, dict | None]:
    """``(API prompt, UI workflow or None)`` from a workflow file or already-parsed JSON in either format."""
    data = source if isinstance(source, Mapping) else load_json(source)
    ui = dict(data) if detect_format(data) == "ui" else None
    return to_api(data, registry), ui


__all__ = ["NodeExecutionError", "NodeRun", "Problem", "Registry", "WorkflowError", "apply_overrides",
           "build_registry", "detect_format", "load_json", "load_pack_nodes", "load_workflow", "run_workflow",
           "to_api", "ui_to_api", "validate"]
