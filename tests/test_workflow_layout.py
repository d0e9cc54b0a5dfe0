"""The workflow builder writes UI-format graphs that convert back to the intended API prompt."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from synctalk_lib.errors import InputError
from synctalk_lib.workflow.formats import ui_to_api
from synctalk_lib.workflow.layout import WorkflowBuilder
from synctalk_lib.workflow.pack import Registry
from tests.data.workflows.nodes_for_tests import registry_with_test_nodes

DATA = Path(__file__).resolve().parent / "data" / "workflows"


@pytest.fixture()
def registry() -> Registry:
    return registry_with_test_nodes()


def _strip_meta(prompt: dict) -> dict:
    return {k: {"class_type": v["class_type"], "inputs": v["inputs"]} for k, v in prompt.items()}


def test_builder_graph_converts_to_the_expected_prompt(registry):
    b = WorkflowBuilder(registry)
    b.note("explains the graph", column=0)
    grad = b.node("TestGradientFrames", column=0, width=64, height=48, frames=12, colour="red", brightness=0.8)
    noise = b.node("TestNoise", column=1, seed=1234, amount=0.05)
    audio = b.node("LoadAudio", column=0, audio="tone.wav")
    video = b.node("CreateVideo", column=2, fps=25)
    save = b.node("SaveVideo", column=3, filename_prefix="twin/video")
    preview = b.node("PreviewImage", column=2)
    b.connect(grad, "images", noise, "image")
    b.connect(noise, "IMAGE", video, "images")
    b.connect(audio, "AUDIO", video, "audio")
    b.connect(video, "VIDEO", save, "video")
    b.connect(noise, "IMAGE", preview, "images")
    ui = json.loads(json.dumps(b.to_ui(title="t")))  # must be plain JSON
    expected = json.loads((DATA / "gradient_video_api.json").read_text())
    # the builder numbers nodes 1.. in creation order (the note is node 1)
    renumber = {str(i): str(i - 1) for i in range(2, 8)}
    got = _strip_meta(ui_to_api(ui, registry))
    got = {renumber[k]: {"class_type": v["class_type"],
                         "inputs": {n: ([renumber[x[0]], x[1]] if isinstance(x, list) else x)
                                    for n, x in v["inputs"].items()}} for k, v in got.items()}
    assert got == _strip_meta(expected)
    assert ui["nodes"][0]["type"] == "Note" and ui["nodes"][0]["widgets_values"] == ["explains the graph"]
    assert len(ui["links"]) == 5 and ui["last_link_id"] == 5
    xs = {n["type"]: n["pos"][0] for n in ui["nodes"]}
    assert xs["TestGradientFrames"] < xs["TestNoise"] < xs["CreateVideo"] < xs["SaveVideo"]


def test_builder_rejects_wrong_names(registry):
    b = WorkflowBuilder(registry)
    grad = b.node("TestGradientFrames", column=0)
    save = b.node("SaveVideo", column=1)
    with pytest.raises(InputError, match="no output 'VIDEO'"):
        b.connect(grad, "VIDEO", save, "video")
    with pytest.raises(InputError, match="no widget named colours"):
        b.node("TestGradientFrames", column=0, colours="red")
    with pytest.raises(InputError, match="unknown node type"):
        b.node("Nope", column=0)
