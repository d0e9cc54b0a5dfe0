"""UI -> API conversion (widgets, companions, links, Reroute, PrimitiveNode, Note, bypass, mute) and validation."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from synctalk_lib.errors import InputError
from synctalk_lib.workflow import Registry, detect_format, load_workflow, to_api, ui_to_api, validate
from synctalk_lib.workflow.formats import widget_values_by_name
from synctalk_lib.workflow.specs import input_specs, types_compatible
from tests.data.workflows.nodes_for_tests import registry_with_test_nodes, write_tone

DATA = Path(__file__).parent / "data" / "workflows"


@pytest.fixture()
def registry() -> Registry:
    return registry_with_test_nodes()


@pytest.fixture()
def folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SYNCTALK_INPUT_DIR", str(tmp_path / "input"))
    monkeypatch.setenv("SYNCTALK_OUTPUT_DIR", str(tmp_path / "output"))
    write_tone(tmp_path / "input" / "tone.wav")
    return tmp_path


def _load(name: str) -> dict:
    return json.loads((DATA / name).read_text())


def _inputs_only(prompt: dict) -> dict:
    return {k: {"class_type": v["class_type"], "inputs": v["inputs"]} for k, v in prompt.items()}


def test_detect_format() -> None:
    assert detect_format(_load("gradient_video_ui.json")) == "ui"
    assert detect_format(_load("gradient_video_api.json")) == "api"
    assert detect_format({"prompt": _load("gradient_video_api.json")}) == "api"
    with pytest.raises(InputError, match="not a ComfyUI workflow"):
        detect_format({"hello": 1})


def test_ui_twin_converts_to_the_api_file(registry: Registry) -> None:
    """Widgets by position (seed's control value and LoadAudio's two upload entries skipped), the Reroute
    followed, the PrimitiveNode's 25 replacing CreateVideo's saved 30, the Note dropped, titles kept."""
    converted = ui_to_api(_load("gradient_video_ui.json"), registry)
    assert _inputs_only(converted) == _inputs_only(_load("gradient_video_api.json"))
    assert converted["1"]["_meta"]["title"] == "Gradient"
    assert converted["4"]["_meta"]["title"] == "Create Video"  # no title: the display name, as the editor shows
    assert "7" not in converted and "8" not in converted and "9" not in converted


def test_bypassed_node_passes_through_by_type_and_muted_nodes_vanish(registry: Registry) -> None:
    prompt = ui_to_api(_load("bypass_mute_ui.json"), registry)
    assert sorted(prompt) == ["1", "3", "5"]
    # The bypassed TestMaskedInvert's IMAGE output continues from its IMAGE input (slot 1), not the MASK (slot 0).
    assert prompt["3"]["inputs"]["images"] == ["1", 0]
    assert "audio" not in prompt["3"]["inputs"]  # fed by the muted LoadAudio


def test_api_input_is_returned_as_a_copy(registry: Registry) -> None:
    api = _load("gradient_video_api.json")
    prompt = to_api(api, registry)
    prompt["1"]["inputs"]["width"] = 1
    assert api["1"]["inputs"]["width"] == 64


@pytest.mark.parametrize("values, expected", [
    (["tone.wav", None, None], {"audio": "tone.wav"}),  # current editor: player + upload button
    (["tone.wav", None], {"audio": "tone.wav"}),
    (["tone.wav"], {"audio": "tone.wav"}),
])
def test_upload_companions_of_any_editor_version(registry: Registry, values, expected) -> None:
    specs = input_specs(registry["LoadAudio"])
    assert widget_values_by_name(specs, values) == expected


def test_seed_control_value_is_optional_and_defaults_fill_missing_widgets(registry: Registry) -> None:
    specs = input_specs(registry["TestNoise"])
    assert widget_values_by_name(specs, [7, "fixed", 0.3]) == {"seed": 7, "amount": 0.3}
    assert widget_values_by_name(specs, [7, 0.3]) == {"seed": 7, "amount": 0.3}
    assert widget_values_by_name(specs, [7]) == {"seed": 7, "amount": 0.0}  # saved before 'amount' existed
    assert widget_values_by_name(specs, {"amount": 0.5}) == {"seed": 0, "amount": 0.5}  # dict-style values
    gradient = input_specs(registry["TestGradientFrames"])
    assert widget_values_by_name(gradient, [])["colour"] == "red"


def test_schema_1_links_as_objects(registry: Registry) -> None:
    ui = _load("gradient_video_ui.json")
    ui["links"] = [{"id": l[0], "origin_id": l[1], "origin_slot": l[2], "target_id": l[3], "target_slot": l[4],
                    "type": l[5]} for l in ui["links"]]
    assert _inputs_only(ui_to_api(ui, registry)) == _inputs_only(_load("gradient_video_api.json"))


def test_subgraphs_and_group_nodes_are_refused_clearly(registry: Registry) -> None:
    ui = _load("gradient_video_ui.json")
    ui["definitions"] = {"subgraphs": [{"id": "0b5c-sub", "name": "Make frames", "nodes": []}]}
    ui["nodes"][1]["type"] = "0b5c-sub"
    with pytest.raises(InputError, match="subgraph \\('Make frames'\\).*Unpack Subgraph"):
        ui_to_api(ui, registry)
    ui = _load("gradient_video_ui.json")
    ui["nodes"][1]["type"] = "workflow>My group"
    with pytest.raises(InputError, match="group node"):
        ui_to_api(ui, registry)


def test_unknown_types_are_kept_with_links_for_validation(registry: Registry, folders: Path) -> None:
    ui = _load("gradient_video_ui.json")
    ui["nodes"][2]["type"] = "FancyNoise"  # node 2, fed by link 1
    prompt = ui_to_api(ui, registry)
    assert prompt["2"] == {"class_type": "FancyNoise", "inputs": {"image": ["1", 0]}, "_meta": {"title": "Noise"}}
    problems = validate(prompt, registry)
    assert [p.kind for p in problems] == ["unknown_node_type"]
    assert "unknown node type 'FancyNoise'" in str(problems[0]) and "Install that pack" in str(problems[0])


# ------------------------------------------------------------------------------------------------ validation
def test_valid_workflows_have_no_problems(registry: Registry, folders: Path) -> None:
    for name in ("gradient_video_api.json", "gradient_video_ui.json", "bypass_mute_ui.json"):
        prompt, _ = load_workflow(DATA / name, registry)
        assert validate(prompt, registry) == [], name


def _problems(registry, prompt, **kwargs) -> list[str]:
    return [str(p) for p in validate(prompt, registry, **kwargs)]


def test_type_mismatch_is_reported_with_both_ends(registry: Registry, folders: Path) -> None:
    prompt = _load("gradient_video_api.json")
    prompt["4"]["inputs"]["images"] = ["3", 0]  # AUDIO into IMAGE
    assert _problems(registry, prompt) == [
        "node 4 (CreateVideo 'Create Video'), input 'images': expects IMAGE but is linked to output 0 'AUDIO' "
        "(AUDIO) of node 3 (LoadAudio)"]


def test_missing_required_input_and_dangling_links(registry: Registry, folders: Path) -> None:
    prompt = _load("gradient_video_api.json")
    del prompt["4"]["inputs"]["fps"]
    prompt["5"]["inputs"]["video"] = ["42", 0]
    prompt["6"]["inputs"]["images"] = ["1", 5]
    assert _problems(registry, prompt) == [
        "node 4 (CreateVideo 'Create Video'), input 'fps': required input (FLOAT) is missing: connect it or give "
        "it a value",
        "node 5 (SaveVideo 'Save Video'), input 'video': linked to node 42, which is not in the workflow",
        "node 6 (PreviewImage 'Preview Image'), input 'images': linked to output 5 of node 1 (TestGradientFrames), "
        "which has 2 output(s)"]


def test_widget_values_ranges_combos_and_types(registry: Registry, folders: Path) -> None:
    prompt = _load("gradient_video_api.json")
    prompt["1"]["inputs"].update(width=4, frames=101, colour="purple", brightness="bright")
    prompt["5"]["inputs"]["format"] = "webm"
    problems = validate(prompt, registry)
    assert [(p.node_id, p.input_name, p.kind) for p in problems] == [
        ("1", "width", "value_smaller_than_min"), ("1", "frames", "value_bigger_than_max"),
        ("1", "colour", "value_not_in_list"), ("1", "brightness", "invalid_input_type"),
        ("5", "format", "value_not_in_list")]
    text = [str(p) for p in problems]
    assert "4 is smaller than the minimum 8" in text[0]
    assert "101 is bigger than the maximum 100" in text[1]
    assert "'purple' is not one of the choices: 'red', 'green', 'blue'" in text[2]
    assert "'bright' is not a valid FLOAT" in text[3]
    assert text[4].endswith("'webm' is not one of the choices: 'auto', 'mp4'")


def test_coercion_like_comfyui_but_no_string_booleans(registry: Registry) -> None:
    prompt = {"1": {"class_type": "TestAnyOut", "inputs": {"flag": "false"}},
              "2": {"class_type": "TestGradientFrames", "inputs": {"width": "64", "height": 48.0, "frames": 3,
                                                                   "colour": "red", "brightness": 1}},
              "3": {"class_type": "TestSum", "inputs": {"image": ["2", 0]}}}
    problems = validate(prompt, registry)
    assert [(p.node_id, p.kind) for p in problems] == [("1", "invalid_input_type")]
    assert "use true or false" in str(problems[0])


def test_star_is_not_a_wildcard_but_unions_match(registry: Registry) -> None:
    prompt = {"1": {"class_type": "TestAnyOut", "inputs": {"flag": True}},
              "2": {"class_type": "TestSum", "inputs": {"image": ["1", 0]}},
              "3": {"class_type": "TestSum", "inputs": {"image": ["1", 1]}}}
    problems = validate(prompt, registry)
    assert [(p.node_id, p.kind) for p in problems] == [("2", "return_type_mismatch")]
    assert "a plain '*' type is not a wildcard" in str(problems[0])
    assert types_compatible("IMAGE,MASK", "MASK") and not types_compatible("IMAGE", "MASK")

    class AnyType(str):  # ComfyUI's IO.ANY: a str whose != accepts everything
        def __ne__(self, other):
            return False

    assert types_compatible(AnyType("*"), "IMAGE")


def test_validate_inputs_and_missing_input_files(registry: Registry, folders: Path) -> None:
    prompt = _load("gradient_video_api.json")
    prompt["3"]["inputs"]["audio"] = "missing.wav"
    prompt["7"] = {"class_type": "TestChecked", "inputs": {"image": ["1", 0], "number": 13}}  # > max, but odd
    prompt["8"] = {"class_type": "TestSum", "inputs": {"image": ["7", 0]}}
    text = _problems(registry, prompt)
    assert len(text) == 2
    # LoadAudio's VALIDATE_INPUTS takes over from the combo check for 'audio', as in ComfyUI.
    assert text[0] == (f"node 3 (LoadAudio 'Load Audio'): Invalid audio file: missing.wav (not in the input folder "
                       f"{folders / 'input'})")
    assert text[1] == "node 7 (TestChecked): number must be even, got 13"
    # Without the media: the file check is skipped, the node's own check too (it may look at files).
    assert _problems(registry, prompt, check_files=False) == []
    prompt["7"]["inputs"]["number"] = 12  # even, and VALIDATE_INPUTS replaces the max=10 check, like ComfyUI
    prompt["3"]["inputs"]["audio"] = "tone.wav"
    assert _problems(registry, prompt) == []


def test_no_output_node_and_unknown_types(registry: Registry) -> None:
    prompt = {"1": {"class_type": "TestGradientFrames", "inputs": {"width": 8, "height": 8, "frames": 1,
                                                                   "colour": "red", "brightness": 1.0}}}
    problems = validate(prompt, registry)
    assert [p.kind for p in problems] == ["prompt_no_outputs"]
    assert "no output node" in str(problems[0])
    prompt = {"1": {"class_type": "SyncTalkRenderTriPlan", "inputs": {}},
              "2": {"class_type": "KSampler", "inputs": {}},
              "3": {"class_type": "TestGradientFrame", "inputs": {}}}
    text = _problems(registry, prompt)
    assert len(text) == 3
    assert "named like a SyncTalk node but this version of the pack does not have it" in text[0]
    assert "ComfyUI core node that the headless runner has no stand-in for" in text[1]
    assert "Did you mean 'TestGradientFrames'?" in text[2]


def test_shipped_workflows_validate(registry: Registry) -> None:
    """Every UI workflow shipped in workflows/ converts and validates against the real pack (files not needed)."""
    from synctalk_lib.workflow import build_registry

    shipped = sorted((Path(__file__).resolve().parents[1] / "workflows").glob("*.json"))
    if not shipped:
        pytest.skip("no workflows shipped yet")
    full = build_registry()
    for path in shipped:
        prompt, _ = load_workflow(path, full)
        problems = validate(prompt, full, check_files=False)
        assert problems == [], f"{path.name}: " + "; ".join(map(str, problems))


def test_conversion_does_not_modify_the_workflow(registry: Registry) -> None:
    ui = _load("gradient_video_ui.json")
    before = copy.deepcopy(ui)
    ui_to_api(ui, registry)
    assert ui == before
