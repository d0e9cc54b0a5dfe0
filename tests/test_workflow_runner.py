"""Headless execution: the API graph and its UI twin give the same files, with the right pixels, sound and names."""
from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from synctalk_lib import cli
from synctalk_lib.media.audio import load_audio
from synctalk_lib.media.video_file import read_frames
from synctalk_lib.media.video_writer import video_duration
from synctalk_lib.workflow import (NodeExecutionError, Registry, WorkflowError, build_registry, load_workflow, run_workflow)
from synctalk_lib.workflow.pack import PACK_DIR, load_pack_module
from tests.data.workflows.nodes_for_tests import registry_with_test_nodes, TestGradientFrames, gradient_frames, write_tone

DATA = Path(__file__).parent / "data" / "workflows"


@pytest.fixture()
def registry() -> Registry:
    return registry_with_test_nodes()


@pytest.fixture()
def folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SYNCTALK_INPUT_DIR", str(tmp_path / "input"))
    monkeypatch.setenv("SYNCTALK_OUTPUT_DIR", str(tmp_path / "output"))
    write_tone(tmp_path / "input" / "tone.wav", seconds=1.0)
    return tmp_path


def _run(name: str, registry: Registry, **kwargs):
    prompt, ui = load_workflow(DATA / name, registry)
    return run_workflow(prompt, registry, extra_pnginfo={"workflow": ui} if ui else None, **kwargs)


def test_api_graph_and_ui_twin_save_the_same_video(registry: Registry, folders: Path) -> None:
    api_results = _run("gradient_video_api.json", registry)
    ui_results = _run("gradient_video_ui.json", registry)
    out = folders / "output" / "twin"
    assert sorted(p.name for p in out.iterdir()) == ["video_00001_.mp4", "video_00002_.mp4"]  # ComfyUI's naming
    assert api_results["5"].ui == {"images": [{"filename": "video_00001_.mp4", "subfolder": "twin",
                                               "type": "output"}], "animated": [True]}
    assert ui_results["5"].ui["images"][0]["filename"] == "video_00002_.mp4"
    first, rate = read_frames(out / "video_00001_.mp4")
    second, _ = read_frames(out / "video_00002_.mp4")
    assert np.array_equal(first, second)
    assert np.array_equal(load_audio(out / "video_00001_.mp4")[0], load_audio(out / "video_00002_.mp4")[0])
    # And the content is the graph's: 12 frames of the red ramp at 25 fps (noise amount 0.05 -> +-3 levels),
    # with the tone cut to the video's 0.48 s.
    assert rate == 25 and first.shape == (12, 48, 64, 3)
    expected = gradient_frames(64, 48, 12, "red", 0.8) * 255
    error = np.abs(first.astype(np.float32) - expected)[:, 4:-4, 4:-4].mean()
    assert error < 3.0, f"mean error {error:.2f} levels"
    assert video_duration(out / "video_00001_.mp4") == (pytest.approx(0.48), pytest.approx(0.48, abs=0.01))
    wave, sample_rate = load_audio(out / "video_00001_.mp4")
    spectrum = np.abs(np.fft.rfft(wave[0]))
    assert sample_rate == 16000 and np.fft.rfftfreq(wave.shape[1], 1 / 16000)[spectrum.argmax()] == \
        pytest.approx(440, abs=5)


def test_saved_files_embed_the_prompt_and_the_ui_workflow(registry: Registry, folders: Path) -> None:
    results = _run("gradient_video_ui.json", registry)
    with av.open(str(folders / "output" / "twin" / "video_00001_.mp4")) as container:
        tags = dict(container.metadata)
    assert json.loads(tags["prompt"])["4"]["inputs"]["fps"] == 25
    assert json.loads(tags["workflow"])["last_node_id"] == 9  # drag the MP4 into ComfyUI to get the graph back
    previews = results["6"].ui["images"]
    assert len(previews) == 12 and all(p["type"] == "temp" for p in previews)
    from PIL import Image

    with Image.open(folders / "output" / "temp" / previews[0]["filename"]) as png:
        assert "workflow" in png.text and png.size == (64, 48)


def test_bypass_and_mute_run_as_in_comfyui(registry: Registry, folders: Path) -> None:
    results = _run("bypass_mute_ui.json", registry)
    assert sorted(results) == ["1", "3", "5"]
    saved = folders / "output" / "bypass" / "video_00001_.mp4"
    frames, rate = read_frames(saved)
    assert rate == 10 and frames.shape == (6, 16, 32, 3)
    expected = gradient_frames(32, 16, 6, "blue", 1.0) * 255  # not inverted: the bypassed node passed it through
    assert np.abs(frames.astype(np.float32) - expected)[:, 2:-2, 2:-2].mean() < 3.0
    assert video_duration(saved)[1] == 0.0  # the muted LoadAudio gave nothing, so no audio track


def test_only_output_nodes_and_their_ancestors_run(registry: Registry, folders: Path) -> None:
    TestGradientFrames.CALLS.clear()
    prompt = {"1": {"class_type": "TestGradientFrames", "inputs": {"width": 8, "height": 8, "frames": 2,
                                                                   "colour": "red", "brightness": 1.0}},
              "2": {"class_type": "TestGradientFrames", "inputs": {"width": 16, "height": 8, "frames": 2,
                                                                   "colour": "red", "brightness": 1.0}},
              "3": {"class_type": "TestSum", "inputs": {"image": ["1", 0]}},
              "4": {"class_type": "TestFail", "inputs": {"image": ["2", 0]}}}  # dangling: never runs
    results = run_workflow(prompt, registry)
    assert sorted(results) == ["1", "3"]
    assert TestGradientFrames.CALLS == [{"width": 8, "frames": 2, "inference": True}]  # under inference_mode
    expected = float(gradient_frames(8, 8, 2, "red", 1.0).sum())
    assert results["3"].result == (pytest.approx(expected, rel=1e-5),)
    # hidden UNIQUE_ID and PROMPT arrive; the absent optional input is not passed at all
    assert results["3"].ui == {"text": [f"3:{expected:.3f}:False:4"]}


def test_overrides_by_id_title_and_type(registry: Registry, folders: Path) -> None:
    prompt, _ = load_workflow(DATA / "gradient_video_api.json", registry)
    results = run_workflow(prompt, registry, overrides={"Gradient.frames": 5, "4.fps": 10,
                                                        "SaveVideo.filename_prefix": "other/clip"})
    saved = folders / "output" / "other" / "clip_00001_.mp4"
    assert results["5"].ui["images"][0]["subfolder"] == "other" and saved.is_file()
    assert video_duration(saved)[0] == pytest.approx(0.5)
    with pytest.raises(Exception, match="no node 'Nope'.*1 \\(Gradient\\)"):
        run_workflow(prompt, registry, overrides={"Nope.frames": 5})
    with pytest.raises(Exception, match="has no input 'frame'; its inputs are: width, height, frames"):
        run_workflow(prompt, registry, overrides={"1.frame": 5})


def test_invalid_workflow_lists_every_problem_before_running(registry: Registry, folders: Path) -> None:
    prompt, _ = load_workflow(DATA / "gradient_video_api.json", registry)
    prompt["1"]["inputs"]["frames"] = 0
    prompt["5"]["inputs"]["format"] = "mkv"
    with pytest.raises(WorkflowError) as info:
        run_workflow(prompt, registry)
    assert [p.kind for p in info.value.problems] == ["value_smaller_than_min", "value_not_in_list"]
    assert "has 2 problem(s)" in str(info.value)
    assert not (folders / "output").exists()  # nothing ran


def test_node_errors_name_the_node(registry: Registry, folders: Path) -> None:
    prompt = {"1": {"class_type": "TestGradientFrames", "_meta": {"title": "Frames"},
                    "inputs": {"width": 8, "height": 8, "frames": 2, "colour": "red", "brightness": 1.0}},
              "2": {"class_type": "TestFail", "_meta": {"title": "Boom"}, "inputs": {"image": ["1", 0]}},
              "3": {"class_type": "TestSum", "inputs": {"image": ["2", 0]}}}
    with pytest.raises(NodeExecutionError, match="node 2 \\(TestFail 'Boom'\\) failed: ZeroDivisionError: the "
                                                 "test node always fails") as info:
        run_workflow(prompt, registry)
    assert isinstance(info.value.__cause__, ZeroDivisionError) and info.value.node_id == "2"


def test_output_and_input_lists(registry: Registry) -> None:
    """OUTPUT_IS_LIST fans out (TestBrightness runs once per frame), INPUT_IS_LIST gathers them in one call."""
    prompt = {"1": {"class_type": "TestGradientFrames", "inputs": {"width": 8, "height": 8, "frames": 3,
                                                                   "colour": "green", "brightness": 1.0}},
              "2": {"class_type": "TestSplit", "inputs": {"images": ["1", 0]}},
              "3": {"class_type": "TestBrightness", "inputs": {"image": ["2", 0]}},
              "4": {"class_type": "TestCollect", "inputs": {"values": ["3", 0]}}}
    results = run_workflow(prompt, registry)
    frames = gradient_frames(8, 8, 3, "green", 1.0)
    assert len(results["2"].outputs[0]) == 3
    assert results["4"].ui == {"values": [round(float(f.mean()), 6) for f in frames]}


def test_dependency_cycles_are_reported(registry: Registry) -> None:
    prompt = {"1": {"class_type": "TestNoise", "inputs": {"image": ["2", 0], "seed": 1, "amount": 0.0}},
              "2": {"class_type": "TestNoise", "inputs": {"image": ["1", 0], "seed": 1, "amount": 0.0}},
              "3": {"class_type": "TestSum", "inputs": {"image": ["2", 0]}}}
    with pytest.raises(WorkflowError, match="cycle"):
        run_workflow(prompt, registry)


def test_core_stand_ins_video_round_trip(registry: Registry, folders: Path) -> None:
    """LoadVideo -> GetVideoComponents -> CreateVideo (with the audio) -> SaveVideo keeps frames, fps and sound."""
    from synctalk_lib.media.video_writer import write_video

    frames = (gradient_frames(32, 24, 10, "blue", 1.0) * 255).astype(np.uint8)
    tone = load_audio(folders / "input" / "tone.wav")[0]
    write_video(folders / "input" / "clip.mp4", frames, 20, audio=tone, sample_rate=16000)
    prompt = {"1": {"class_type": "LoadVideo", "inputs": {"file": "clip.mp4"}},
              "2": {"class_type": "GetVideoComponents", "inputs": {"video": ["1", 0]}},
              "3": {"class_type": "CreateVideo", "inputs": {"images": ["2", 0], "fps": ["2", 2], "audio": ["2", 1]}},
              "4": {"class_type": "SaveVideo", "inputs": {"video": ["3", 0], "filename_prefix": "round/trip",
                                                          "format": "mp4", "codec": "h264"}},
              "5": {"class_type": "SaveAudio", "inputs": {"audio": ["2", 1], "filename_prefix": "round/sound"}}}
    results = run_workflow(prompt, registry)
    images = results["2"].result[0]
    assert isinstance(images, torch.Tensor) and images.shape == (10, 24, 32, 3)
    assert results["2"].result[2] == 20.0
    saved, rate = read_frames(folders / "output" / "round" / "trip_00001_.mp4")
    assert rate == 20 and np.abs(saved.astype(int) - frames.astype(int)).mean() < 3
    assert video_duration(folders / "output" / "round" / "trip_00001_.mp4")[1] == pytest.approx(0.5, abs=0.01)
    flac, flac_rate = load_audio(folders / "output" / "round" / "sound_00001_.flac")
    assert flac_rate == 16000 and flac.shape[1] == pytest.approx(8000, abs=1100)  # AAC-decoded, 0.5 s


# -------------------------------------------------------------------------------------------- pack and CLI
def test_pack_is_imported_like_comfyui_and_joins_the_stand_ins() -> None:
    module = load_pack_module()
    assert module.__name__ == str(PACK_DIR).replace(".", "_x_")
    registry = build_registry()
    pack_ids = [k for k, source in registry.sources.items() if source == "pack"]
    assert pack_ids and all("SyncTalk" in k for k in pack_ids)
    assert registry.sources["SaveVideo"] == "core stand-in"
    assert registry.display_names["CreateVideo"] == "Create Video"


def test_cli_run_validate_and_to_api(folders: Path, capsys: pytest.CaptureFixture) -> None:
    from synctalk_lib.media.video_writer import write_video

    write_video(folders / "input" / "clip.mp4", (gradient_frames(32, 24, 5, "red", 1.0) * 255).astype(np.uint8), 25)
    workflow = folders / "flow.json"
    workflow.write_text(json.dumps({
        "1": {"class_type": "LoadVideo", "_meta": {"title": "Source"}, "inputs": {"file": "missing.mp4"}},
        "2": {"class_type": "SaveVideo", "inputs": {"video": ["1", 0], "filename_prefix": "cli/out",
                                                    "format": "auto", "codec": "auto"}}}))
    assert cli.main(["workflow", "validate", str(workflow)]) == 1
    assert "Invalid video file: missing.mp4" in capsys.readouterr().out
    code = cli.main(["workflow", "run", str(workflow), "--set", "Source.file=clip.mp4",
                     "--output-dir", str(folders / "cli_out")])
    assert code == 0
    saved = folders / "cli_out" / "cli" / "out_00001_.mp4"
    assert f"saved {saved}" in capsys.readouterr().out and saved.is_file()
    assert cli.main(["workflow", "to-api", str(DATA / "bypass_mute_ui.json")]) == 0
    captured = capsys.readouterr()
    printed = json.loads(captured.out)
    assert sorted(printed) == ["1", "3", "5"] and printed["3"]["inputs"] == {"fps": 10, "images": ["1", 0]}
    # The test node types are not in the CLI's registry: their widget values cannot be named, and it says so.
    assert "node 1: unknown node type 'TestGradientFrames'" in captured.err
