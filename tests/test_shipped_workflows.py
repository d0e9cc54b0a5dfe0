"""The workflows users open from ComfyUI's template browser: generated from the node definitions and complete.

What the real frontend makes of them (every widget value in its widget, links, no missing node, a run to the
end) is checked in a real browser by ``test_browser_workflows.py``; this file needs no ComfyUI.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import build_workflows
from workflow_builder import NOTE_TYPE, core_node_defs, pack_node_defs

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "workflows"


def test_committed_workflows_match_the_node_definitions():
    expected = build_workflows.render_all()
    committed = {p.name for p in SHIPPED.glob("*.json")}
    assert committed == set(expected), "workflows/ holds other files: run python tools/build_workflows.py"
    for name, text in expected.items():
        assert (SHIPPED / name).read_text(encoding="utf-8") == text, \
            f"workflows/{name} is stale: run python tools/build_workflows.py"


@pytest.mark.parametrize("stem", list(build_workflows.WORKFLOWS))
def test_each_template_has_a_thumbnail(stem):
    """The template browser shows ``<name>.jpg`` beside ``<name>.json`` as the card's picture."""
    thumbnail = SHIPPED / f"{stem}.jpg"
    assert thumbnail.is_file(), f"{thumbnail.name} is missing (the browser test writes it: see README, Workflows)"
    data = thumbnail.read_bytes()
    assert data[:3] == b"\xff\xd8\xff" and 5_000 < len(data) < 150_000, "a small real JPEG"


@pytest.mark.parametrize("stem", list(build_workflows.WORKFLOWS))
def test_shipped_graph_is_complete_and_explained(stem):
    workflow = json.loads((SHIPPED / f"{stem}.json").read_text(encoding="utf-8"))
    defs = {**core_node_defs(), **pack_node_defs()}
    nodes = {n["id"]: n for n in workflow["nodes"]}
    notes = [n for n in nodes.values() if n["type"] == NOTE_TYPE]
    assert len(notes) == 1 and notes[0]["widgets_values"][0].startswith("## "), "one Markdown note explains it"
    assert all(n["type"] in defs or n["type"] == NOTE_TYPE for n in nodes.values())
    for link_id, src, slot, dst, dst_slot, kind in workflow["links"]:
        output = nodes[src]["outputs"][slot]
        socket = nodes[dst]["inputs"][dst_slot]
        assert output["type"] == socket["type"] == kind and link_id in output["links"] and socket["link"] == link_id
    for node in nodes.values():
        if node["type"] == NOTE_TYPE:
            continue
        required = defs[node["type"]]["input"].get("required", {})
        for socket in node["inputs"]:
            if socket["name"] in required:
                assert socket["link"] is not None, f"{node['type']}.{socket['name']} is required but not connected"
    assert workflow["groups"], "the steps are framed in titled groups"
