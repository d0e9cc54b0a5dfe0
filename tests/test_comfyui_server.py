"""The node contract, checked against a real ComfyUI server over HTTP (``$COMFYUI_DIR``; see ``real_comfyui.py``).

The server imports the pack like any custom-node pack; the tests read its import log and ``/object_info``,
compare the core-node definitions the workflow builder uses (``tools/core_nodes.json``) with the server's, let
``/prompt`` validate good and bad values, and run LoadReferenceVideo into the core CreateVideo and SaveVideo
nodes. The shipped workflows themselves are run through the real frontend by ``test_browser_workflows.py``.
"""
from __future__ import annotations

import json

import pytest

from pack_loader import load_pack
from real_comfyui import PACK_FOLDER
from synctalk_lib.media.video_file import read_frames
from synctalk_lib.media.video_writer import video_duration
from workflow_builder import core_node_defs, trim_core_def

pytestmark = pytest.mark.comfyui


def test_pack_imports_cleanly(comfyui) -> None:
    ours = [line for line in comfyui.log_text().splitlines() if f"custom_nodes/{PACK_FOLDER}" in line]
    assert not [line for line in ours if "IMPORT FAILED" in line or "Cannot import" in line], "\n".join(ours)
    summary = [line.strip() for line in ours if "seconds" in line]
    assert summary, f"the pack is not in the import summary:\n{comfyui.log_tail()}"
    print(f"ComfyUI answered after {comfyui.start_seconds:.1f} s; " + "; ".join(summary))


def test_object_info_describes_every_pack_node_as_declared(comfyui) -> None:
    pack = load_pack()
    info = comfyui.get("/object_info")
    missing = sorted(set(pack.NODE_CLASS_MAPPINGS) - set(info))
    assert not missing, f"not in /object_info: {missing}"
    for node_id, cls in pack.NODE_CLASS_MAPPINGS.items():
        entry = info[node_id]
        declared = cls.INPUT_TYPES()
        assert entry["python_module"] == f"custom_nodes.{PACK_FOLDER}"
        assert entry["display_name"] == pack.NODE_DISPLAY_NAME_MAPPINGS.get(node_id, node_id)
        assert entry["category"].startswith("SyncTalk/") and entry["description"]
        for section in ("required", "optional"):
            assert entry["input_order"].get(section, []) == list(declared.get(section, {})), (node_id, section)
        assert entry["output"] == list(cls.RETURN_TYPES) and entry["output_name"] == list(cls.RETURN_NAMES)
        assert entry["output_tooltips"] == list(cls.OUTPUT_TOOLTIPS)
    print(f"/object_info: {len(info)} node types, {len(pack.NODE_CLASS_MAPPINGS)} from this pack")


def test_core_node_definitions_of_the_builder_are_the_servers(comfyui) -> None:
    """``tools/core_nodes.json`` (what the workflow builder knows of LoadAudio, PreviewImage, SaveVideo) is what
    this ComfyUI declares; refresh it from ``/object_info`` when ComfyUI changes them."""
    info = comfyui.get("/object_info")
    for node_id, known in core_node_defs().items():
        assert node_id in info, f"core node {node_id} is gone from this ComfyUI"
        assert trim_core_def(info[node_id]) == known, f"{node_id} changed in ComfyUI: refresh tools/core_nodes.json"


def _reference_prompt(file: str, **changes) -> dict:
    load = {"video": file, "fps": 25.0, "start_time": 1.0, "max_duration": 2.0, "crop": "face", "size": 256,
            "preview_memory_mb": 64, **changes}
    return {
        "1": {"class_type": "SyncTalkLoadReferenceVideo", "inputs": load},
        "2": {"class_type": "CreateVideo", "inputs": {"images": ["1", 1], "fps": ["1", 3], "audio": ["1", 2]}},
        "3": {"class_type": "SaveVideo", "inputs": {"video": ["2", 0], "filename_prefix": "contract/reference",
                                                    "format": "auto", "codec": "auto"}},
    }


@pytest.fixture()
def contract_video(comfyui, may_video) -> str:
    link = comfyui.input_dir / "contract.mp4"
    if not link.exists():
        link.symlink_to(may_video)
    return link.name


def test_pack_outputs_feed_core_video_nodes(comfyui, contract_video) -> None:
    """LoadReferenceVideo's IMAGE, AUDIO and FLOAT outputs into core CreateVideo -> SaveVideo, through /prompt."""
    entry = comfyui.wait_success(comfyui.queue(_reference_prompt(contract_video)))
    saved = entry["outputs"]["3"]["images"][0]
    path = comfyui.output_dir / saved["subfolder"] / saved["filename"]
    assert saved["type"] == "output" and saved["filename"] == "reference_00001_.mp4" and path.is_file()
    video_s, audio_s = video_duration(path)
    assert video_s == pytest.approx(2.0, abs=0.01) and audio_s == pytest.approx(2.0, abs=0.05)
    frames, rate = read_frames(path)
    assert rate == 25 and frames.shape == (50, 256, 256, 3)


@pytest.mark.parametrize("change,error_type,words", [
    ({"crop": "bogus"}, "value_not_in_list", "crop: 'bogus' not in"),
    ({"size": 4096}, "value_bigger_than_max", "size"),
    ({"video": "no_such_file.mp4"}, "custom_validation_failed", "video file not found: no_such_file.mp4"),
])
def test_prompt_validation_names_the_bad_input(comfyui, contract_video, change, error_type, words) -> None:
    status, answer = comfyui.post("/prompt", {"prompt": _reference_prompt(contract_video, **change)})
    assert status == 400, answer
    errors = answer["node_errors"]["1"]["errors"]
    assert [e["type"] for e in errors] == [error_type] and words in json.dumps(errors), errors
