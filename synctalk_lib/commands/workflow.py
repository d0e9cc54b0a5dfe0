"""``workflow``: run, validate or convert ComfyUI workflows without a ComfyUI server.

    python -m synctalk_lib workflow run FILE.json [--set NODE.INPUT=VALUE ...] [--input-dir D] [--output-dir D]
    python -m synctalk_lib workflow validate FILE.json [MORE.json ...]
    python -m synctalk_lib workflow to-api FILE.json

Workflows may be in ComfyUI's editor (UI) format or its API format. NODE in ``--set`` is a node id, a node title,
or a node type used once in the workflow; VALUE is parsed as JSON when it can be (``25``, ``true``, ``"x"``),
else taken as text.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

NAME = "workflow"
HELP = "run, validate or convert ComfyUI workflows (UI or API format) without a ComfyUI server"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="workflow_command", metavar="ACTION")
    run = sub.add_parser("run", help="execute a workflow headless and print where its outputs were saved")
    run.add_argument("file", type=Path, help="workflow JSON (UI or API format)")
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="NODE.INPUT=VALUE",
                     help="change an input before running (repeatable); NODE is a node id, title or unique type")
    _folder_arguments(run)
    validate = sub.add_parser("validate", help="check workflows: node types, links, widget values")
    validate.add_argument("files", type=Path, nargs="+", help="workflow JSON files")
    validate.add_argument("--no-files", action="store_true",
                          help="do not check that input files (videos, audio) exist in the input folder")
    _folder_arguments(validate)
    to_api = sub.add_parser("to-api", help="print the API (prompt) form of a workflow")
    to_api.add_argument("file", type=Path, help="workflow JSON (UI or API format)")


def _folder_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input-dir", type=Path, help="folder of input files (default: $SYNCTALK_INPUT_DIR or .)")
    parser.add_argument("--output-dir", type=Path,
                        help="folder for results (default: $SYNCTALK_OUTPUT_DIR or ./output)")


def parse_override(text: str) -> tuple[str, Any]:
    """``"NODE.INPUT=VALUE"`` -> ``("NODE.INPUT", value)``, the value parsed as JSON when possible."""
    from synctalk_lib.errors import InputError

    key, sep, raw = text.partition("=")
    if not sep or "." not in key:
        raise InputError(f"--set {text!r}: expected NODE.INPUT=VALUE, e.g. --set SaveVideo.filename_prefix=out/demo")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key.strip(), value


def run(args: argparse.Namespace) -> int:
    if getattr(args, "input_dir", None):
        os.environ["SYNCTALK_INPUT_DIR"] = str(args.input_dir.resolve())
    if getattr(args, "output_dir", None):
        os.environ["SYNCTALK_OUTPUT_DIR"] = str(args.output_dir.resolve())
    action = {"run": _run, "validate": _validate, "to-api": _to_api}.get(args.workflow_command)
    if action is None:
        print("usage: python -m synctalk_lib workflow {run,validate,to-api} ...", file=sys.stderr)
        return 2
    return action(args)


def _run(args: argparse.Namespace) -> int:
    from synctalk_lib import paths
    from synctalk_lib.workflow import build_registry, load_workflow, run_workflow

    registry = build_registry()
    prompt, ui = load_workflow(args.file, registry)
    overrides = dict(parse_override(item) for item in args.overrides)
    started = time.perf_counter()

    def on_node(node_id: str, class_type: str, index: int, total: int) -> None:
        title = (prompt.get(node_id, {}).get("_meta") or {}).get("title") or class_type
        print(f"[{index + 1}/{total}] node {node_id} {class_type}" + (f" '{title}'" if title != class_type else ""),
              file=sys.stderr, flush=True)

    results = run_workflow(prompt, registry, overrides=overrides, on_node=on_node,
                           extra_pnginfo={"workflow": ui} if ui else None)
    folders = {"output": paths.default_output_dir(), "temp": paths.default_output_dir() / "temp",
               "input": paths.default_input_dir()}
    print(f"ran {len(results)} node(s) in {time.perf_counter() - started:.1f} s:", file=sys.stderr)
    for result in sorted(results.values(), key=lambda r: -r.seconds):
        print(f"  {result.seconds:8.2f} s  node {result.node_id} {result.class_type}", file=sys.stderr)
    for result in results.values():
        for item in _saved_items(result.ui):
            folder = folders.get(item.get("type", "output"), folders["output"])
            print(f"node {result.node_id} ({result.class_type}) saved {folder / item.get('subfolder', '') / item['filename']}")
        for text in (result.ui or {}).get("text", []):
            print(f"node {result.node_id} ({result.class_type}): {text}")
    return 0


def _saved_items(ui: dict | None) -> list[dict]:
    items = []
    for key, values in (ui or {}).items():
        if key == "text" or not isinstance(values, list):
            continue
        items.extend(v for v in values if isinstance(v, dict) and "filename" in v)
    return items


def _validate(args: argparse.Namespace) -> int:
    from synctalk_lib.errors import SyncTalkError
    from synctalk_lib.workflow import build_registry, load_workflow, validate

    registry = build_registry()
    failed = 0
    for path in args.files:
        try:
            prompt, _ = load_workflow(path, registry)
            problems = [str(p) for p in validate(prompt, registry, check_files=not args.no_files)]
        except SyncTalkError as exc:
            problems = [str(exc)]
        if problems:
            failed += 1
            print(f"{path}: {len(problems)} problem(s)")
            for problem in problems:
                print(f"  - {problem}")
        else:
            print(f"{path}: OK ({len(prompt)} nodes)")
    return 1 if failed else 0


def _to_api(args: argparse.Namespace) -> int:
    from synctalk_lib.workflow import build_registry, load_workflow

    registry = build_registry()
    prompt, ui = load_workflow(args.file, registry)
    for node_id, node in prompt.items():
        if node["class_type"] not in registry:
            print(f"warning: node {node_id}: unknown node type '{node['class_type']}'" +
                  ("; its widget values could not be named and are left out" if ui else ""), file=sys.stderr)
    print(json.dumps(prompt, indent=2))
    return 0
