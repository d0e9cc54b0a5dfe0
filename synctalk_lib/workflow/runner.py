"""Running an API-format prompt without a ComfyUI server, with ComfyUI's execution rules.

Only output nodes (``OUTPUT_NODE = True``) and the nodes they depend on run, each once, ancestors first. Each node
gets a fresh instance; its ``FUNCTION`` is called with keyword arguments named like its inputs (optional inputs
that are absent are not passed; hidden ``PROMPT``/``EXTRA_PNGINFO``/``UNIQUE_ID`` are filled in). Results are
tuples, or ``{"ui": ..., "result": ...}`` dicts. Lists follow ComfyUI: every output slot carries a list of values,
a node is called once per element when an input list has several (shorter lists repeat their last element),
``INPUT_IS_LIST`` nodes get whole lists in one call, ``OUTPUT_IS_LIST`` slots fan their list out. Node expansion
(``{"expand": ...}``) is not supported and says so. Everything runs under ``torch.inference_mode()``, as in
ComfyUI, so nodes behave the same in both.

Before anything runs, the prompt is validated (:func:`synctalk_lib.workflow.validate.validate`, including each
node's ``VALIDATE_INPUTS``); all problems are reported together.
"""
from __future__ import annotations

import asyncio
import copy
import inspect
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from synctalk_lib.errors import InputError, SyncTalkError
from synctalk_lib.workflow.specs import coerce, input_specs, return_types
from synctalk_lib.workflow.validate import Problem, is_link, output_nodes, reachable, validate

NodeCallback = Callable[[str, str, int, int], None]


class WorkflowError(SyncTalkError):
    """The workflow cannot run as it is (validation problems); ``problems`` lists them all."""

    def __init__(self, problems: list[Problem], what: str = "the workflow"):
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{what} has {len(problems)} problem(s):\n{lines}")


class NodeExecutionError(SyncTalkError):
    """A node raised while running; the message names the node, the original exception is the cause."""

    def __init__(self, node_id: str, class_type: str, title: str | None, exc: BaseException):
        self.node_id, self.class_type, self.title = node_id, class_type, title
        label = f"node {node_id} ({class_type}" + (f" '{title}'" if title and title != class_type else "") + ")"
        detail = str(exc) if isinstance(exc, SyncTalkError) else f"{type(exc).__name__}: {exc}"
        super().__init__(f"{label} failed: {detail}")


@dataclass
class NodeRun:
    """What one node produced.

    Attributes:
        node_id, class_type: which node.
        outputs: per output slot, the list of values it produced (one value unless lists are involved).
        ui: the merged ``ui`` dict of an output node (``{"images": [{"filename", "subfolder", "type"}], ...}``).
        seconds: wall time of the node's calls.
    """

    node_id: str
    class_type: str
    outputs: tuple[list, ...] = ()
    ui: dict | None = None
    seconds: float = 0.0
    title: str | None = None

    @property
    def result(self) -> tuple:
        """Per slot: the single value, or the list when the slot holds several."""
        return tuple(v[0] if len(v) == 1 else v for v in self.outputs)


@dataclass
class _Context:
    prompt: dict
    extra_pnginfo: Any
    results: dict[str, NodeRun] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------------ overrides
def find_node(prompt: Mapping[str, Mapping], ref: str) -> str:
    """The id of the node ``ref`` names: an id, a title (``_meta.title``), or a node type used once."""
    ref = str(ref)
    if ref in prompt:
        return ref
    for matches in ([k for k, v in prompt.items() if (v.get("_meta") or {}).get("title") == ref],
                    [k for k, v in prompt.items() if str((v.get("_meta") or {}).get("title", "")).lower()
                     == ref.lower()],
                    [k for k, v in prompt.items() if v.get("class_type") == ref]):
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise InputError(f"'{ref}' names {len(matches)} nodes ({', '.join(sorted(matches))}); use a node id")
    names = ", ".join(f"{k} ({(v.get('_meta') or {}).get('title') or v.get('class_type')})"
                      for k, v in sorted(prompt.items(), key=lambda kv: (len(kv[0]), kv[0])))
    raise InputError(f"no node '{ref}' in the workflow; nodes are: {names}")


def apply_overrides(prompt: Mapping[str, Mapping], overrides: Mapping[str, Any] | None,
                    registry: Mapping[str, type]) -> dict:
    """A copy of ``prompt`` with ``{"NODE.INPUT": value}`` set (NODE: id, title or unique type)."""
    prompt = copy.deepcopy(dict(prompt))
    for key, value in (overrides or {}).items():
        node_ref, sep, name = str(key).rpartition(".")
        if not sep or not node_ref or not name:
            raise InputError(f"override '{key}' must look like NODE.INPUT (a node id or title, a dot, an input name)")
        node_id = find_node(prompt, node_ref)
        node = prompt[node_id]
        cls = registry.get(node.get("class_type"))
        if cls is not None:
            names = [s.name for s in input_specs(cls, node["class_type"])]
            if name not in names:
                raise InputError(f"node {node_id} ({node['class_type']}) has no input '{name}'; its inputs are: "
                                 f"{', '.join(names)}")
        node.setdefault("inputs", {})[name] = value
    return prompt


# -------------------------------------------------------------------------------------------------- running
def execution_order(prompt: Mapping[str, Mapping], roots: list[str]) -> list[str]:
    """Node ids so that every node comes after the nodes it reads from (depth first from each output)."""
    order: list[str] = []
    state: dict[str, int] = {}  # 1 = visiting, 2 = done

    def visit(node_id: str, path: list[str]) -> None:
        if state.get(node_id) == 2:
            return
        if state.get(node_id) == 1:
            raise WorkflowError([Problem(node_id, prompt[node_id].get("class_type", "?"), "dependency_cycle",
                                         "the links form a cycle: " + " -> ".join(path + [node_id]))])
        state[node_id] = 1
        inputs = prompt[node_id].get("inputs") or {}
        for value in inputs.values():
            if is_link(value) and str(value[0]) in prompt:
                visit(str(value[0]), path + [node_id])
        state[node_id] = 2
        order.append(node_id)

    for root in roots:
        visit(root, [])
    return order


def run_workflow(prompt: Mapping[str, Mapping], registry: Mapping[str, type], *,
                 overrides: Mapping[str, Any] | None = None, on_node: NodeCallback | None = None,
                 extra_pnginfo: Any = None, check_files: bool = True) -> dict[str, NodeRun]:
    """Validate and run an API-format prompt; returns what every executed node produced.

    Args:
        prompt: ``{"<id>": {"class_type", "inputs", "_meta"?}}`` (see ``formats.to_api`` for UI workflows).
        registry: node type id -> node class.
        overrides: ``{"NODE.INPUT": value}`` applied first (NODE: node id, title or a type used once).
        on_node: called as ``on_node(node_id, class_type, index, total)`` before each node runs.
        extra_pnginfo: given to nodes that ask for ``EXTRA_PNGINFO`` (normally ``{"workflow": <UI json>}``,
            which save nodes embed so the files load back into ComfyUI as workflows).
        check_files: see ``validate``.

    Raises:
        WorkflowError: the prompt has problems (all listed); nothing ran.
        NodeExecutionError: a node failed (its id, type and the original error).
    """
    prompt = apply_overrides(prompt, overrides, registry)
    roots = sorted(output_nodes(prompt, registry), key=lambda k: (len(k), k))
    needed = reachable(prompt, roots)
    problems = validate(prompt, registry, check_files=check_files, only=needed)
    if problems:
        raise WorkflowError(problems)
    order = execution_order(prompt, roots)
    context = _Context(prompt=prompt, extra_pnginfo=extra_pnginfo)
    import torch

    with torch.inference_mode():
        for index, node_id in enumerate(order):
            class_type = prompt[node_id]["class_type"]
            if on_node is not None:
                on_node(node_id, class_type, index, len(order))
            context.results[node_id] = _run_node(node_id, registry[class_type], context)
    return context.results


def _run_node(node_id: str, cls: type, context: _Context) -> NodeRun:
    node = context.prompt[node_id]
    class_type = node["class_type"]
    title = (node.get("_meta") or {}).get("title")
    start = time.perf_counter()
    try:
        kwargs = _gather_inputs(node_id, cls, context)
        calls = _call_node(cls, kwargs)
        outputs, ui = _collect(cls, calls)
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:
        raise NodeExecutionError(node_id, class_type, title, exc) from exc
    return NodeRun(node_id, class_type, outputs, ui, time.perf_counter() - start, title)


def _gather_inputs(node_id: str, cls: type, context: _Context) -> dict[str, list]:
    """Each input as a list of values (ComfyUI's internal form): links give the source slot's list."""
    inputs = context.prompt[node_id].get("inputs") or {}
    gathered: dict[str, list] = {}
    for spec in input_specs(cls, context.prompt[node_id]["class_type"], hidden=True):
        if spec.category == "hidden":
            gathered[spec.name] = [{"PROMPT": context.prompt, "EXTRA_PNGINFO": context.extra_pnginfo,
                                    "UNIQUE_ID": node_id}.get(str(spec.type))]
            continue
        if spec.name not in inputs:
            continue
        value = inputs[spec.name]
        if is_link(value):
            gathered[spec.name] = context.results[str(value[0])].outputs[int(value[1])]
        else:
            gathered[spec.name] = [coerce(spec, value)]
    return gathered


def _call_node(cls: type, inputs: dict[str, list]) -> list[Any]:
    """Call the node's function once (INPUT_IS_LIST) or once per list element; returns the raw results."""
    instance = cls()
    function = getattr(instance, cls.FUNCTION)
    if getattr(cls, "INPUT_IS_LIST", False):
        batches = [dict(inputs)]
    else:
        count = max((len(v) for v in inputs.values()), default=1)
        if any(len(v) == 0 for v in inputs.values()):
            count = 0
        batches = [{k: v[min(i, len(v) - 1)] for k, v in inputs.items()} for i in range(count)]
    results = []
    for kwargs in batches:
        result = function(**kwargs)
        if inspect.isawaitable(result):
            result = asyncio.run(_await(result))
        results.append(result)
    return results


async def _await(awaitable):
    return await awaitable


def _collect(cls: type, calls: list[Any]) -> tuple[tuple[list, ...], dict | None]:
    """Merge the results of the calls into per-slot lists and one ``ui`` dict."""
    types = return_types(cls)
    is_list = tuple(getattr(cls, "OUTPUT_IS_LIST", ()) or ())
    slots: list[list] = [[] for _ in types]
    ui: dict | None = None
    for raw in calls:
        values, part_ui = _split_result(raw)
        if len(values) != len(types) and types:
            raise InputError(f"returned {len(values)} value(s) but declares {len(types)} output(s) {list(types)}")
        for i, value in enumerate(values[:len(types)]):
            if i < len(is_list) and is_list[i]:
                slots[i].extend(value)
            else:
                slots[i].append(value)
        if part_ui:
            ui = ui or {}
            for key, items in part_ui.items():
                ui.setdefault(key, []).extend(items if isinstance(items, list) else [items])
    return tuple(slots), ui


def _split_result(raw: Any) -> tuple[tuple, dict | None]:
    if isinstance(raw, dict):
        if "expand" in raw:
            raise InputError("the node expands into a subgraph, which the headless runner does not support; run "
                             "this workflow inside ComfyUI")
        result = raw.get("result", ())
        return (tuple(result) if result is not None else ()), raw.get("ui")
    if hasattr(raw, "result") and hasattr(raw, "ui"):  # ComfyUI V3 io.NodeOutput
        ui = raw.ui.as_dict() if hasattr(raw.ui, "as_dict") else raw.ui
        return tuple(raw.result or ()), ui
    if raw is None:
        return (), None
    if isinstance(raw, (tuple, list)):
        return tuple(raw), None
    raise InputError(f"returned a {type(raw).__name__}; a node must return a tuple (e.g. `return (value,)`)")
