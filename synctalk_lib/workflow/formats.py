"""ComfyUI's two workflow formats, and turning the editor's (UI) format into the executable (API) one.

* **API ("prompt") format** — what ``POST /prompt`` runs: ``{"<id>": {"class_type": T, "inputs": {name: literal |
  ["<source id>", output_index]}, "_meta": {"title": ...}}}``.
* **UI format** — what the editor saves and users share: ``nodes`` (with positional ``widgets_values``), ``links``
  (``[id, from_node, from_slot, to_node, to_slot, type]``), groups, notes.

The conversion follows what ComfyUI's editor does when it queues a workflow:

* widget values are positional over the node's widget inputs, required then optional (from the node class's
  ``INPUT_TYPES``), with extra entries for the editor's companion widgets: the "control after generate" mode
  after a seed-like INT (``seed``/``noise_seed`` or ``control_after_generate``), and the upload widget(s) after
  an upload combo (one for images and videos; audio saves two, the player and the upload button). Workflows
  saved by other editor versions with fewer companions are recognised by their value count;
* frontend-only nodes (Note, MarkdownNote, Reroute, PrimitiveNode) are not executed: Reroutes are followed to
  their source, a PrimitiveNode's value is written into every input it feeds;
* muted nodes (mode 2) are left out, and inputs they fed disappear;
* bypassed nodes (mode 4) are left out and pass data through: a link from a bypassed node continues from the
  first of its inputs (the same slot first, then in order) whose type equals the type the consumer expects;
* subgraphs and legacy group nodes are refused with an explanation (unpack them in the editor first).
"""
from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from synctalk_lib.errors import InputError
from synctalk_lib.workflow.specs import CONTROL_VALUES, InputSpec, input_specs

NOTE_TYPES = frozenset({"Note", "MarkdownNote"})
FRONTEND_ONLY_TYPES = NOTE_TYPES | {"Reroute", "PrimitiveNode"}
MODE_MUTED = 2
MODE_BYPASSED = 4
_UPLOAD_COMPANION_VALUES = (None, "", "image", "video", "audio")


def detect_format(data: Any) -> str:
    """``"ui"`` for an editor workflow, ``"api"`` for a prompt; raises InputError for anything else."""
    if isinstance(data, Mapping):
        if isinstance(data.get("nodes"), list):
            return "ui"
        if data and all(isinstance(v, Mapping) and "class_type" in v for v in data.values()):
            return "api"
        if isinstance(data.get("prompt"), Mapping):  # a saved /prompt request body
            return "api"
    raise InputError("this JSON is not a ComfyUI workflow: expected the editor format (with 'nodes' and 'links') "
                     "or the API format ({\"<id>\": {\"class_type\": ..., \"inputs\": {...}}})")


def load_json(path: Path | str) -> Any:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"workflow file not found: {path}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path.name} is not valid JSON ({exc})") from exc


def to_api(data: Mapping, registry: Mapping[str, type]) -> dict:
    """The API-format prompt of a workflow in either format (a copy; the input is not modified)."""
    if detect_format(data) == "ui":
        return ui_to_api(data, registry)
    is_prompt = all(isinstance(v, Mapping) and "class_type" in v for v in data.values())
    prompt = data if is_prompt else data["prompt"]
    return {str(k): json.loads(json.dumps(v)) for k, v in prompt.items()}


# ------------------------------------------------------------------------------------------- UI -> API
@dataclass(frozen=True)
class _Link:
    origin: str
    origin_slot: int
    target: str
    target_slot: int
    type: Any


@dataclass(frozen=True)
class _Literal:
    """A value a PrimitiveNode feeds into an input."""

    value: Any


def _links(workflow: Mapping) -> dict[Any, _Link]:
    links: dict[Any, _Link] = {}
    for raw in workflow.get("links") or []:
        if isinstance(raw, Mapping):  # schema 1.0 stores links as objects
            link_id = raw.get("id")
            link = _Link(str(raw.get("origin_id")), int(raw.get("origin_slot", 0)), str(raw.get("target_id")),
                         int(raw.get("target_slot", 0)), raw.get("type"))
        elif isinstance(raw, (list, tuple)) and len(raw) >= 5:
            link_id = raw[0]
            link = _Link(str(raw[1]), int(raw[2]), str(raw[3]), int(raw[4]), raw[5] if len(raw) > 5 else None)
        else:
            raise InputError(f"malformed link in the workflow: {raw!r}")
        links[link_id] = link
    return links


def _reject_subgraphs(workflow: Mapping, nodes: Mapping[str, Mapping]) -> None:
    subgraphs = {s.get("id"): s.get("name") or s.get("id")
                 for s in ((workflow.get("definitions") or {}).get("subgraphs") or []) if isinstance(s, Mapping)}
    for node_id, node in nodes.items():
        kind = str(node.get("type", ""))
        if kind in subgraphs:
            raise InputError(
                f"node {node_id} is a subgraph ('{subgraphs[kind]}'); the headless runner cannot run subgraphs. "
                "Open the workflow in ComfyUI, right-click the subgraph node and choose 'Unpack Subgraph', then "
                "save it again")
        if kind.startswith(("workflow>", "workflow/")):
            raise InputError(
                f"node {node_id} is a group node ('{kind}'); the headless runner cannot run group nodes. Convert it "
                "back to nodes in ComfyUI (right-click > Convert to nodes) and save again")


def _companion_choices(spec: InputSpec) -> tuple[int, ...]:
    """Possible numbers of companion values saved after this widget's value, most likely first."""
    if spec.has_control_widget:
        return (1, 0)
    if spec.upload == "audio":
        return (2, 1, 0)
    if spec.upload:
        return (1, 0)
    return (0,)


def _looks_like_companion(spec: InputSpec, value: Any) -> bool:
    if spec.has_control_widget:
        return value in CONTROL_VALUES
    return value in _UPLOAD_COMPANION_VALUES


def widget_values_by_name(specs: list[InputSpec], values: Any) -> dict[str, Any]:
    """Map a node's saved ``widgets_values`` onto its widget inputs.

    Args:
        specs: the node class's declared inputs (required then optional).
        values: ``widgets_values`` as saved: a list (positional) or a dict (by name, used by some packs).

    Widgets without a saved value (an older workflow saved before the input existed) get their default.
    """
    widgets = [s for s in specs if s.is_widget]
    if isinstance(values, Mapping):
        found = {s.name: values[s.name] for s in widgets if s.name in values}
    else:
        values = list(values or [])
        counts = _fit_companions(widgets, values)
        found, pos = {}, 0
        for spec, extra in zip(widgets, counts):
            if pos >= len(values):
                break
            found[spec.name] = values[pos]
            pos += 1 + extra
    for spec in widgets:
        if spec.name not in found and spec.default() is not None:
            found[spec.name] = spec.default()
    return found


def _fit_companions(widgets: list[InputSpec], values: list) -> tuple[int, ...]:
    """Companion counts per widget that explain ``len(values)`` (the editor version that saved it is unknown)."""
    choices = [_companion_choices(s) for s in widgets]
    default = tuple(c[0] for c in choices)
    if len(widgets) + sum(default) == len(values):
        return default
    fallback = None
    for n, counts in enumerate(itertools.product(*choices)):
        if n > 4096:
            break
        if len(widgets) + sum(counts) != len(values):
            continue
        fallback = fallback or counts
        pos, plausible = 0, True
        for spec, extra in zip(widgets, counts):
            plausible &= all(_looks_like_companion(spec, v) for v in values[pos + 1:pos + 1 + extra])
            pos += 1 + extra
        if plausible:
            return counts
    return fallback or default


def ui_to_api(workflow: Mapping, registry: Mapping[str, type]) -> dict:
    """Convert an editor workflow into an API prompt, as the editor does when you press Queue.

    Args:
        workflow: the UI-format JSON (``nodes``, ``links``, ...).
        registry: node type id -> node class; used to name widget values. Node types missing from it are kept
            with their linked inputs only, so validation can report them.

    Returns:
        ``{"<node id>": {"class_type", "inputs", "_meta": {"title"}}}``.
    """
    nodes = {str(n.get("id")): n for n in workflow.get("nodes") or [] if isinstance(n, Mapping)}
    _reject_subgraphs(workflow, nodes)
    links = _links(workflow)
    display_names = getattr(registry, "display_names", {}) or {}
    prompt: dict[str, dict] = {}
    for node_id in sorted(nodes, key=_id_sort_key):
        node = nodes[node_id]
        kind = str(node.get("type", ""))
        if kind in FRONTEND_ONLY_TYPES or node.get("mode") in (MODE_MUTED, MODE_BYPASSED):
            continue
        inputs: dict[str, Any] = {}
        cls = registry.get(kind)
        if cls is not None:
            inputs.update(widget_values_by_name(input_specs(cls, kind), node.get("widgets_values")))
        for slot in node.get("inputs") or []:
            if not isinstance(slot, Mapping) or slot.get("link") is None:
                continue
            source = _resolve(slot["link"], slot.get("type"), nodes, links, set())
            if isinstance(source, _Literal):
                inputs[slot["name"]] = source.value
            elif source is not None:
                inputs[slot["name"]] = list(source)
            elif slot.get("widget") is None:  # a socket fed by a muted/removed node: nothing arrives
                inputs.pop(slot["name"], None)
        title = node.get("title") or display_names.get(kind) or kind
        prompt[node_id] = {"class_type": kind, "inputs": inputs, "_meta": {"title": title}}
    return prompt


def _id_sort_key(node_id: str) -> tuple:
    return (0, int(node_id), "") if node_id.lstrip("-").isdigit() else (1, 0, node_id)


def _resolve(link_id: Any, want_type: Any, nodes: Mapping[str, Mapping], links: Mapping[Any, _Link],
             seen: set) -> tuple[str, int] | _Literal | None:
    """Where the data on ``link_id`` really comes from: ``(node id, output slot)``, a literal, or None."""
    if link_id in seen or link_id not in links:
        return None
    seen.add(link_id)
    link = links[link_id]
    origin = nodes.get(link.origin)
    if origin is None:
        return None
    kind = origin.get("type")
    if kind == "Reroute":
        slots = origin.get("inputs") or []
        upstream = slots[0].get("link") if slots else None
        return None if upstream is None else _resolve(upstream, want_type, nodes, links, seen)
    if kind == "PrimitiveNode":
        values = origin.get("widgets_values") or []
        return _Literal(values[0]) if values else None
    if kind in NOTE_TYPES or origin.get("mode") == MODE_MUTED:
        return None
    if origin.get("mode") == MODE_BYPASSED:
        slots = origin.get("inputs") or []
        for index in [link.origin_slot, *range(len(slots))]:
            if index < len(slots) and slots[index].get("type") == (want_type or link.type):
                upstream = slots[index].get("link")
                return None if upstream is None else _resolve(upstream, want_type, nodes, links, seen)
        return None
    return link.origin, link.origin_slot
