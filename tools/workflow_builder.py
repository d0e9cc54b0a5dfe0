"""Writing editor-format ComfyUI workflows (what users drag onto the canvas) from node definitions.

Node definitions have the shape of ComfyUI's ``GET /object_info`` entries: the pack's own nodes are read from their
classes (:func:`pack_node_defs`), the core nodes the shipped workflows use from ``core_nodes.json`` beside this
file, a copy of the real server's answer that ``tests/test_comfyui_server.py`` compares with the live server.

How the editor lays out a node's widgets, and so the order of ``widgets_values``, is the frontend's business
(``comfyui-frontend-package``). :func:`frontend_widgets` states the rules seen in the pinned frontend, and
``tests/test_browser_workflows.py`` asks the real frontend: for every node type used it compares these rules with
the widgets of a freshly created node, and for every shipped file it reads every widget back from the canvas.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CORE_NODES_FILE = Path(__file__).resolve().with_name("core_nodes.json")

WIDGET_TYPES = frozenset({"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"})
SEED_NAMES = frozenset({"seed", "noise_seed"})
NOTE_TYPE = "MarkdownNote"  # the frontend renders its text as Markdown; a plain "Note" shows the raw text

COLUMN_WIDTH = 360
NODE_WIDTH = 320
MARGIN = 40
GAP = 36
GROUP_PAD = 16
GROUP_TITLE = 46
TITLE_HEIGHT = 30
SLOT_HEIGHT = 20
WIDGET_HEIGHT = 24
BODY_PAD = 14


# ------------------------------------------------------------------------------------------ node definitions
def pack_node_defs() -> dict[str, dict]:
    """The pack's nodes as ``/object_info`` entries, read from their classes (the pack is not imported by
    ComfyUI here: ``nodes/`` is imported as a plain package from the repository root)."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

    defs = {}
    for node_id, cls in NODE_CLASS_MAPPINGS.items():
        declared = cls.INPUT_TYPES()
        sections = {k: declared[k] for k in ("required", "optional") if declared.get(k)}
        defs[node_id] = {
            "input": {k: {name: list(spec) for name, spec in v.items()} for k, v in sections.items()},
            "input_order": {k: list(v) for k, v in sections.items()},
            "output": list(cls.RETURN_TYPES), "output_name": list(getattr(cls, "RETURN_NAMES", cls.RETURN_TYPES)),
            "display_name": NODE_DISPLAY_NAME_MAPPINGS.get(node_id, node_id), "category": cls.CATEGORY,
        }
    return defs


def core_node_defs() -> dict[str, dict]:
    """The core nodes the shipped workflows use, as the real ComfyUI's ``/object_info`` describes them."""
    return json.loads(CORE_NODES_FILE.read_text(encoding="utf-8"))


def trim_core_def(entry: dict) -> dict:
    """An ``/object_info`` entry reduced to what the builder reads, with upload combos' file lists emptied (they
    list the server's input folder)."""
    inputs = {}
    for section, specs in entry["input"].items():
        if section not in ("required", "optional"):
            continue
        inputs[section] = {}
        for name, spec in specs.items():
            options = spec[1] if len(spec) > 1 else {}
            if isinstance(spec[0], list) and _upload_kind(options):
                spec = [[], *spec[1:]]
            inputs[section][name] = spec
    order = {k: v for k, v in entry.get("input_order", {}).items() if k in inputs}
    return {"input": inputs, "input_order": order, "output": entry["output"], "output_name": entry["output_name"],
            "display_name": entry["display_name"], "category": entry["category"]}


# ------------------------------------------------------------------------------------------ the frontend's widgets
@dataclass(frozen=True)
class Widget:
    """One widget of a node in the editor: ``input`` is the node input it edits (None for a companion widget,
    such as an upload button), ``default`` the value a new node gets."""

    name: str
    input: str | None
    default: Any


def _upload_kind(options: dict) -> str | None:
    for kind in ("image", "video", "audio"):
        if options.get(f"{kind}_upload"):
            return kind
    return None


def _declared_inputs(defn: dict) -> list[tuple[str, list]]:
    out = []
    for section in ("required", "optional"):
        specs = defn["input"].get(section, {})
        for name in defn.get("input_order", {}).get(section, list(specs)):
            out.append((name, specs[name]))
    return out


def _is_widget(spec: list) -> bool:
    kind, options = spec[0], (spec[1] if len(spec) > 1 else {})
    if options.get("forceInput"):
        return False
    return isinstance(kind, list) or kind in WIDGET_TYPES


def _default(spec: list) -> Any:
    kind, options = spec[0], (spec[1] if len(spec) > 1 else {})
    if "default" in options:
        return options["default"]
    choices = kind if isinstance(kind, list) else options.get("options")
    if choices or isinstance(kind, list):
        return choices[0] if choices else None
    return {"INT": 0, "FLOAT": 0.0, "STRING": "", "BOOLEAN": False}.get(kind)


def frontend_widgets(defn: dict) -> list[Widget]:
    """The editor's widgets of a node, in the order its ``widgets_values`` lists them.

    Widget inputs come in declaration order (required, then optional); a seed-like INT is followed by its
    "control after generate" combo; upload combos get their companions after all other widgets: an ``upload``
    button (saved as "image" for image and video uploads) or, for audio, a player and the button (both saved as
    null once a file is chosen).
    """
    widgets: list[Widget] = []
    uploads: list[str] = []
    for name, spec in _declared_inputs(defn):
        if not _is_widget(spec):
            continue
        options = spec[1] if len(spec) > 1 else {}
        widgets.append(Widget(name, name, _default(spec)))
        control = options.get("control_after_generate")
        if spec[0] == "INT" and (control or name in SEED_NAMES):
            widgets.append(Widget("control_after_generate", None, control if isinstance(control, str) else "randomize"))
        if _upload_kind(options):
            uploads.append(_upload_kind(options))
    for kind in uploads:
        if kind == "audio":
            widgets += [Widget("audioUI", None, None), Widget("upload", None, None)]
        else:
            widgets.append(Widget("upload", None, "image"))
    return widgets


def socket_inputs(defn: dict) -> list[tuple[str, str]]:
    """``(name, type)`` of the inputs drawn as sockets (not widgets), in the editor's order."""
    return [(name, spec[0]) for name, spec in _declared_inputs(defn) if not _is_widget(spec)]


def node_height(defn: dict) -> int:
    """The body height the editor computes for a node of plain widgets (title bar excluded)."""
    rows = max(len(socket_inputs(defn)), len(defn["output"]))
    return BODY_PAD + SLOT_HEIGHT * rows + WIDGET_HEIGHT * len(frontend_widgets(defn))


# ------------------------------------------------------------------------------------------ the builder
@dataclass
class _Node:
    id: int
    type: str
    defn: dict | None
    title: str | None
    column: int
    row: int
    values: dict[str, Any]
    size: tuple[int, int]
    pos: tuple[int, int] = (0, 0)
    inputs: list[dict] = field(default_factory=list)
    outputs: list[dict] = field(default_factory=list)


@dataclass(frozen=True)
class NodeRef:
    """A node added to a :class:`WorkflowBuilder`; pass it to ``connect``."""

    id: int
    type: str


class WorkflowBuilder:
    """An editor-format workflow: nodes on a grid (columns left to right = data flow; rows top to bottom, each
    row optionally framed by a titled group), links by output and input name."""

    def __init__(self, defs: dict[str, dict]):
        self.defs = defs
        self._nodes: list[_Node] = []
        self._links: list[list] = []
        self._groups: list[tuple[str, int, str]] = []

    def node(self, node_type: str, *, column: int, row: int = 0, title: str | None = None,
             height: int | None = None, **values: Any) -> NodeRef:
        """Add a node; ``values`` set widgets by input name, the others keep their declared defaults."""
        defn = self.defs.get(node_type)
        if defn is None:
            raise KeyError(f"unknown node type {node_type!r}")
        names = {w.input for w in frontend_widgets(defn) if w.input}
        unknown = set(values) - names
        if unknown:
            raise KeyError(f"{node_type} has no widget named {', '.join(sorted(unknown))}")
        node = _Node(len(self._nodes) + 1, node_type, defn, title, column, row, dict(values),
                     (NODE_WIDTH, height or node_height(defn)))
        node.inputs = [{"name": n, "type": t, "link": None} for n, t in socket_inputs(defn)]
        node.outputs = [{"name": n, "type": t, "links": [], "slot_index": i}
                        for i, (n, t) in enumerate(zip(defn["output_name"], defn["output"]))]
        self._nodes.append(node)
        return NodeRef(node.id, node_type)

    def note(self, markdown: str, *, column: int, row: int = 0, height: int = 200, width: int = NODE_WIDTH,
             title: str = "Read me") -> NodeRef:
        """A Markdown note (frontend only: never executed, left out of the prompt)."""
        node = _Node(len(self._nodes) + 1, NOTE_TYPE, None, title, column, row, {"text": markdown}, (width, height))
        self._nodes.append(node)
        return NodeRef(node.id, NOTE_TYPE)

    def group(self, title: str, *, row: int, color: str = "#3f789e") -> None:
        """Frame every node of ``row`` in a titled group."""
        self._groups.append((title, row, color))

    def connect(self, source: NodeRef, output: str, target: NodeRef, input_name: str) -> None:
        src, dst = self._nodes[source.id - 1], self._nodes[target.id - 1]
        slot = next((o for o in src.outputs if o["name"] == output), None)
        if slot is None:
            raise KeyError(f"{src.type} has no output {output!r} (outputs: {[o['name'] for o in src.outputs]})")
        entry = next((i for i in dst.inputs if i["name"] == input_name), None)
        if entry is None:
            raise KeyError(f"{dst.type} has no socket input {input_name!r}")
        if entry["link"] is not None:
            raise ValueError(f"{dst.type}.{input_name} is already connected")
        link_id = len(self._links) + 1
        self._links.append([link_id, src.id, slot["slot_index"], dst.id, dst.inputs.index(entry), slot["type"]])
        slot["links"].append(link_id)
        entry["link"] = link_id

    # -------------------------------------------------------------------------------------------- output
    def widget_values(self, node: _Node) -> list:
        if node.defn is None:
            return [node.values["text"]]
        return [node.values.get(w.input, w.default) if w.input else w.default for w in frontend_widgets(node.defn)]

    def intended_values(self) -> dict[int, dict[str, Any]]:
        """Node id -> widget name -> the value the canvas must show (for the browser test)."""
        out = {}
        for node in self._nodes:
            if node.defn is None:
                out[node.id] = {"text": node.values["text"]}
                continue
            widgets = frontend_widgets(node.defn)  # companions (upload buttons) are not the user's values
            out[node.id] = {w.name: v for w, v in zip(widgets, self.widget_values(node)) if w.input}
        return out

    def _place(self) -> dict[int, tuple[int, int]]:
        """Place the nodes; returns each row's vertical extent (top, bottom), notes left out."""
        rows = sorted({n.row for n in self._nodes})
        extents: dict[int, tuple[int, int]] = {}
        top = MARGIN
        for row in rows:
            framed = any(g[1] == row for g in self._groups)
            y0 = top + (GROUP_TITLE if framed else 0)
            bottom = y0
            heights: dict[int, int] = {}
            for node in (n for n in self._nodes if n.row == row):
                y = y0 + heights.get(node.column, 0)
                node.pos = (MARGIN + node.column * COLUMN_WIDTH, y + TITLE_HEIGHT)
                heights[node.column] = heights.get(node.column, 0) + node.size[1] + TITLE_HEIGHT + GAP
                if node.defn is not None:  # notes stand beside the groups and may be taller than a row
                    bottom = max(bottom, node.pos[1] + node.size[1])
            extents[row] = (top, bottom + (GROUP_PAD if framed else 0))
            top = extents[row][1] + GAP
        return extents

    def _group_entries(self, extents: dict[int, tuple[int, int]]) -> list[dict]:
        groups = []
        for title, row, color in self._groups:
            members = [n for n in self._nodes if n.row == row and n.defn is not None]
            left = min(n.pos[0] for n in members) - GROUP_PAD
            right = max(n.pos[0] + n.size[0] for n in members) + GROUP_PAD
            top, bottom = extents[row]
            groups.append({"title": title, "bounding": [left, top, right - left, bottom - top], "color": color,
                           "font_size": 24, "flags": {}})
        return groups

    def to_ui(self, *, title: str) -> dict:
        """The workflow as ComfyUI's editor saves it (schema 0.4)."""
        extents = self._place()
        order = {n.id: i for i, n in enumerate(sorted(self._nodes, key=lambda n: (n.column, n.row, n.pos[1])))}
        nodes = []
        for node in self._nodes:
            entry: dict[str, Any] = {
                "id": node.id, "type": node.type, "pos": list(node.pos), "size": list(node.size), "flags": {},
                "order": order[node.id], "mode": 0, "inputs": node.inputs,
                "outputs": [{**o, "links": o["links"] or None} for o in node.outputs],
                "properties": {"Node name for S&R": node.type} if node.defn else {},
                "widgets_values": self.widget_values(node),
            }
            if node.title:
                entry["title"] = node.title
            if node.defn is None:
                entry["color"], entry["bgcolor"] = "#432", "#653"
            nodes.append(entry)
        return {"last_node_id": len(self._nodes), "last_link_id": len(self._links), "nodes": nodes,
                "links": self._links, "groups": self._group_entries(extents), "config": {},
                "extra": {"ds": {"scale": 0.7, "offset": [0, 0]}, "info": {"name": title}}, "version": 0.4}
