"""Authoring UI-format workflows (what ComfyUI's editor saves and opens by drag and drop) from code.

The shipped workflows in ``workflows/`` are generated with this builder from the node classes' own declarations, so
widget order, socket types and output slots can never drift from the nodes: ``workflows/build.py`` rewrites them and
a test checks the committed files are up to date.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from synctalk_lib.errors import InputError
from synctalk_lib.workflow.specs import input_specs, return_names, return_types

COLUMN_WIDTH = 380
ROW_GAP = 40


@dataclass
class _Node:
    id: int
    type: str
    title: str | None
    column: int
    widgets: dict[str, Any]
    size: tuple[int, int]
    inputs: list[dict] = field(default_factory=list)
    outputs: list[dict] = field(default_factory=list)
    pos: tuple[int, int] = (0, 0)


@dataclass(frozen=True)
class NodeRef:
    """A node added to a builder; pass it to ``connect``."""

    id: int
    type: str


class WorkflowBuilder:
    """Build a UI-format workflow: nodes in columns (left to right = data flow), links by input/output name."""

    def __init__(self, registry: Mapping[str, type]):
        self.registry = registry
        self._nodes: list[_Node] = []
        self._links: list[list] = []

    def node(self, node_type: str, *, column: int, title: str | None = None, height: int | None = None,
             **widgets: Any) -> NodeRef:
        """Add a node; ``widgets`` set widget values by input name (others keep their declared defaults)."""
        cls = self.registry.get(node_type)
        if cls is None:
            raise InputError(f"unknown node type {node_type!r}")
        specs = input_specs(cls)
        unknown = set(widgets) - {s.name for s in specs if s.is_widget}
        if unknown:
            raise InputError(f"{node_type} has no widget named {', '.join(sorted(unknown))}")
        sockets = [s for s in specs if not s.is_widget and s.category != "hidden"]
        outputs = list(zip(return_names(cls), return_types(cls)))
        rows = max(len(sockets), len(outputs)) + len([s for s in specs if s.is_widget])
        node = _Node(id=len(self._nodes) + 1, type=node_type, title=title, column=column, widgets=dict(widgets),
                     size=(COLUMN_WIDTH - 60, height or 60 + 26 * rows))
        node.inputs = [{"name": s.name, "type": s.type_name, "link": None} for s in sockets]
        node.outputs = [{"name": name, "type": kind, "links": [], "slot_index": i}
                        for i, (name, kind) in enumerate(outputs)]
        self._nodes.append(node)
        return NodeRef(node.id, node_type)

    def note(self, text: str, *, column: int, title: str = "Note", height: int = 160) -> NodeRef:
        """A Note node (frontend only: never executed, dropped from the API form)."""
        node = _Node(id=len(self._nodes) + 1, type="Note", title=title, column=column, widgets={"text": text},
                     size=(COLUMN_WIDTH - 60, height))
        self._nodes.append(node)
        return NodeRef(node.id, "Note")

    def connect(self, source: NodeRef, output: str, target: NodeRef, input_name: str) -> None:
        src, dst = self._nodes[source.id - 1], self._nodes[target.id - 1]
        slot = next((o for o in src.outputs if o["name"] == output), None)
        if slot is None:
            raise InputError(f"{src.type} has no output {output!r} (outputs: {[o['name'] for o in src.outputs]})")
        entry = next((i for i in dst.inputs if i["name"] == input_name), None)
        if entry is None:
            raise InputError(f"{dst.type} has no socket input {input_name!r}")
        if entry["link"] is not None:
            raise InputError(f"{dst.type}.{input_name} is already connected")
        link_id = len(self._links) + 1
        self._links.append([link_id, src.id, slot["slot_index"], dst.id, dst.inputs.index(entry), slot["type"]])
        slot["links"].append(link_id)
        entry["link"] = link_id

    # --------------------------------------------------------------------------------------------- output
    def _widget_values(self, node: _Node) -> list:
        if node.type == "Note":
            return [node.widgets["text"]]
        values = []
        for spec in input_specs(self.registry[node.type]):
            if not spec.is_widget:
                continue
            values.append(node.widgets.get(spec.name, spec.default()))
            if spec.has_control_widget:
                values.append("fixed")
            if spec.upload == "audio":  # what ComfyUI's editor saves after an audio upload combo
                values.extend([None, None])
            elif spec.upload:
                values.append("image")
        return values

    def _place(self) -> None:
        heights: dict[int, int] = {}
        for node in self._nodes:
            y = heights.get(node.column, 0)
            node.pos = (40 + node.column * COLUMN_WIDTH, 40 + y)
            heights[node.column] = y + node.size[1] + ROW_GAP

    def to_ui(self, *, title: str = "") -> dict:
        """The workflow as ComfyUI's editor saves it (schema 0.4)."""
        self._place()
        nodes = []
        for order, node in enumerate(sorted(self._nodes, key=lambda n: (n.column, n.pos[1]))):
            entry: dict[str, Any] = {
                "id": node.id, "type": node.type, "pos": list(node.pos), "size": list(node.size), "flags": {},
                "order": order, "mode": 0, "inputs": node.inputs,
                "outputs": [{**o, "links": o["links"] or None} for o in node.outputs],
                "properties": {"Node name for S&R": node.type}, "widgets_values": self._widget_values(node),
            }
            if node.title:
                entry["title"] = node.title
            if node.type == "Note":
                entry["color"], entry["bgcolor"] = "#432", "#653"
            nodes.append(entry)
        nodes.sort(key=lambda n: n["id"])
        return {"last_node_id": len(self._nodes), "last_link_id": len(self._links), "nodes": nodes,
                "links": self._links, "groups": [], "config": {},
                "extra": {"ds": {"scale": 0.75, "offset": [0, 0]}, "info": {"name": title}}, "version": 0.4}
