"""The pack inside a real ComfyUI server, over HTTP (runs when ``$COMFYUI_DIR`` points at a ComfyUI checkout).

Set ``COMFYUI_DIR`` (the folder with ``main.py``) and, if ComfyUI has its own environment, ``COMFYUI_PYTHON``
(default: this interpreter). The test starts ``main.py --cpu`` on a free loopback port with temporary input,
output, temp and user folders, loads only this pack (through a temporary ``custom_nodes`` folder given in an
``extra_model_paths.yaml``, so whatever else is installed in that ComfyUI stays out), checks the import log and
``/object_info``, then queues a UI workflow (LoadReferenceVideo -> core CreateVideo -> core SaveVideo) converted by
our own converter through ``/prompt`` with the workflow as ``extra_pnginfo``, waits on ``/history`` and checks the
file. It also compares our headless stand-ins with the real core nodes' ``/object_info`` and the headless run's
output with the server's, and runs the shipped ``workflows/synctalk_render.json`` (LoadSyncTalkModel + core
LoadAudio -> EncodeAudioAV -> RenderTriPlane -> PortraitSyncBlend -> core SaveVideo) on a tiny model it trains.
``bench/comfyui_smoke.sh`` shows how such a ComfyUI was set up on this CPU-only machine.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import numpy as np
import pytest

from synctalk_lib.media.video_file import read_frames
from synctalk_lib.media.video_writer import video_duration

pytestmark = pytest.mark.comfyui

REPO = Path(__file__).resolve().parents[1]
DATA = Path(__file__).parent / "data" / "workflows"
PACK_FOLDER = "synctalk_under_test"
START_TIMEOUT = 180  # s: imports torch, all core nodes, this pack
RUN_TIMEOUT = 300  # s for one prompt
CORE_IDS = ("LoadAudio", "SaveAudio", "LoadVideo", "CreateVideo", "GetVideoComponents", "SaveVideo", "SaveImage",
            "PreviewImage")


def _comfyui_dir() -> Path:
    root = os.environ.get("COMFYUI_DIR")
    if not root:
        pytest.skip("set COMFYUI_DIR to a ComfyUI checkout to run the real-server test")
    root_path = Path(root)
    if not (root_path / "main.py").is_file():
        pytest.fail(f"COMFYUI_DIR={root} has no main.py", pytrace=False)
    return root_path


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """A ComfyUI process on loopback with its own folders; ``get``/``post`` speak JSON to it."""

    def __init__(self, root: Path, work: Path, shared_models: Path):
        self.root, self.work = root, work
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        for name in ("input", "output", "temp", "user", "custom_nodes", "cache"):
            (work / name).mkdir(parents=True, exist_ok=True)
        (work / "custom_nodes" / PACK_FOLDER).symlink_to(REPO, target_is_directory=True)
        config = work / "extra_model_paths.yaml"
        # models/synctalk: the shared weights plus an empty folder of this run where tests put trained models.
        self.models_dir = work / "models"
        self.models_dir.mkdir(exist_ok=True)
        config.write_text(f"synctalk_test:\n  custom_nodes: {work / 'custom_nodes'}\n"
                          f"  synctalk: |\n    {shared_models}\n    {self.models_dir}\n")
        self.log_path = work / "server.log"
        python = os.environ.get("COMFYUI_PYTHON") or sys.executable
        command = [python, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(self.port),
                   "--disable-auto-launch", "--output-directory", str(work / "output"),
                   "--input-directory", str(work / "input"), "--temp-directory", str(work / "temp"),
                   "--user-directory", str(work / "user"), "--extra-model-paths-config", str(config),
                   "--database-url", "sqlite:///:memory:", "--disable-all-custom-nodes",
                   "--whitelist-custom-nodes", PACK_FOLDER]
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "SYNCTALK_CACHE_DIR": str(work / "cache"),
               "PYTHONUNBUFFERED": "1"}
        self.log = open(self.log_path, "wb")
        self.started = time.monotonic()
        self.process = subprocess.Popen(command, cwd=root, stdout=self.log, stderr=subprocess.STDOUT, env=env)
        self.start_seconds = self._wait_until_up()

    def _wait_until_up(self) -> float:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"ComfyUI exited with code {self.process.returncode}:\n{self.log_tail()}", pytrace=False)
            try:
                self.get("/system_stats")
                return time.monotonic() - self.started
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.5)
        pytest.fail(f"ComfyUI did not answer within {START_TIMEOUT} s:\n{self.log_tail()}", pytrace=False)

    def log_text(self) -> str:
        self.log.flush()
        return self.log_path.read_text(errors="replace")

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def get(self, route: str):
        with urllib.request.urlopen(self.url + route, timeout=30) as answer:
            return json.load(answer)

    def post(self, route: str, body: dict):
        request = urllib.request.Request(self.url + route, data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                return json.load(answer)
        except urllib.error.HTTPError as exc:  # 400 carries node_errors worth showing
            pytest.fail(f"POST {route} -> {exc.code}: {exc.read().decode(errors='replace')}", pytrace=False)

    def run_prompt(self, prompt: dict, workflow: dict | None) -> tuple[dict, float]:
        """Queue a prompt, wait for its history entry; returns (entry, seconds)."""
        body = {"prompt": prompt, "client_id": uuid.uuid4().hex}
        if workflow is not None:
            body["extra_data"] = {"extra_pnginfo": {"workflow": workflow}}
        started = time.monotonic()
        answer = self.post("/prompt", body)
        assert answer.get("node_errors") == {}, answer
        prompt_id = answer["prompt_id"]
        deadline = started + RUN_TIMEOUT
        while time.monotonic() < deadline:
            history = self.get(f"/history/{prompt_id}")
            if prompt_id in history and history[prompt_id].get("status", {}).get("completed") is not None:
                entry = history[prompt_id]
                if entry["status"]["status_str"] != "success" or entry["status"].get("completed") is False:
                    pytest.fail(f"prompt failed: {json.dumps(entry['status'])[:3000]}\n{self.log_tail()}",
                                pytrace=False)
                return entry, time.monotonic() - started
            if self.process.poll() is not None:
                pytest.fail(f"ComfyUI died while running the prompt:\n{self.log_tail()}", pytrace=False)
            time.sleep(0.5)
        pytest.fail(f"the prompt did not finish within {RUN_TIMEOUT} s:\n{self.log_tail()}", pytrace=False)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.log.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest):
    root = _comfyui_dir()  # skip first: without ComfyUI the reference data does not matter
    shared_dir = request.getfixturevalue("shared_dir")
    instance = Server(root, tmp_path_factory.mktemp("comfyui"), shared_dir / "models")
    try:
        yield instance
    finally:
        instance.stop()


def test_pack_imports_cleanly(server: Server) -> None:
    log = server.log_text()
    ours = [line for line in log.splitlines() if PACK_FOLDER in line]
    assert not [line for line in ours if "IMPORT FAILED" in line or "Cannot import" in line], "\n".join(ours)
    assert any("seconds" in line for line in ours), f"the pack is not in the import summary:\n{server.log_tail()}"
    print(f"ComfyUI answered after {server.start_seconds:.1f} s; " + "; ".join(line.strip() for line in ours))


def test_object_info_lists_every_pack_node(server: Server) -> None:
    from synctalk_lib.workflow.pack import load_pack_module

    pack = load_pack_module()
    info = server.get("/object_info")
    missing = sorted(set(pack.NODE_CLASS_MAPPINGS) - set(info))
    assert not missing, f"not in /object_info: {missing}"
    for node_id, cls in pack.NODE_CLASS_MAPPINGS.items():
        entry = info[node_id]
        declared = cls.INPUT_TYPES()
        assert entry["python_module"] == f"custom_nodes.{PACK_FOLDER}"
        assert entry["display_name"] == pack.NODE_DISPLAY_NAME_MAPPINGS.get(node_id, node_id)
        for category in ("required", "optional"):
            assert list(entry["input"].get(category, {})) == list(declared.get(category, {})), (node_id, category)
        assert entry["output"] == list(cls.RETURN_TYPES) and entry["output_name"] == list(cls.RETURN_NAMES)
    print(f"/object_info: {len(info)} node types, {len(pack.NODE_CLASS_MAPPINGS)} from this pack")


def test_headless_stand_ins_match_the_real_core_nodes(server: Server) -> None:
    """Same ids, input names and order, widget defaults/ranges/choices and outputs as ComfyUI's core nodes."""
    from synctalk_lib.workflow import core_nodes
    from synctalk_lib.workflow.specs import input_specs

    info = server.get("/object_info")
    compared = [node_id for node_id in CORE_IDS if node_id in info]  # nodes_audio.py needs torchaudio
    assert {"CreateVideo", "SaveVideo", "GetVideoComponents", "SaveImage", "PreviewImage"} <= set(compared)
    print(f"stand-ins checked against the real core nodes: {', '.join(compared)}")
    for node_id in compared:
        real, ours = info[node_id], core_nodes.NODE_CLASS_MAPPINGS[node_id]
        assert real["output"] == list(ours.RETURN_TYPES), node_id
        for category in ("required", "optional"):
            real_inputs = real["input"].get(category, {})
            specs = [s for s in input_specs(ours) if s.category == category]
            assert [s.name for s in specs] == list(real_inputs), (node_id, category)
            for spec in specs:
                real_type, real_options = real_inputs[spec.name][0], (real_inputs[spec.name] + [{}])[1]
                if spec.upload:  # file lists differ by folder; the upload kind must not
                    assert real_options.get(f"{spec.upload}_upload"), (node_id, spec.name)
                    continue
                if spec.combo_values is not None:
                    real_choices = real_type if isinstance(real_type, list) else real_options.get("options")
                    assert spec.combo_values == real_choices, (node_id, spec.name)
                else:
                    assert spec.type == real_type, (node_id, spec.name)
                for key in ("default", "min", "max", "step"):
                    if key in real_options or key in spec.options:
                        assert spec.options.get(key) == real_options.get(key), (node_id, spec.name, key)


def test_reference_video_workflow_runs_through_prompt_and_history(server: Server, tmp_path: Path, monkeypatch,
                                                                  request: pytest.FixtureRequest) -> None:
    from synctalk_lib.workflow import build_registry, load_workflow, run_workflow

    may_video = request.getfixturevalue("may_video")
    (server.work / "input" / "may_short.mp4").symlink_to(may_video)
    registry = build_registry()
    prompt, workflow = load_workflow(DATA / "reference_video_ui.json", registry)
    entry, seconds = server.run_prompt(prompt, workflow)
    saved = entry["outputs"]["3"]["images"][0]
    assert saved["type"] == "output" and saved["subfolder"] == "synctalk"
    path = server.work / "output" / saved["subfolder"] / saved["filename"]
    assert saved["filename"] == "reference_00001_.mp4" and path.is_file()
    assert video_duration(path) == (pytest.approx(2.0, abs=0.01), pytest.approx(2.0, abs=0.03))
    frames, rate = read_frames(path)
    assert rate == 25 and frames.shape == (50, 256, 256, 3)
    import av

    with av.open(str(path)) as container:  # the file reloads into ComfyUI as this workflow
        assert json.loads(container.metadata["workflow"])["last_node_id"] == workflow["last_node_id"]
    print(f"/prompt -> /history in {seconds:.1f} s: {path.name}, {frames.shape[0]} frames "
          f"{frames.shape[2]}x{frames.shape[1]}, {video_duration(path)}")

    # The headless runner gives the same clip (its CreateVideo encodes at a higher quality than core's default).
    monkeypatch.setenv("SYNCTALK_INPUT_DIR", str(server.work / "input"))
    monkeypatch.setenv("SYNCTALK_OUTPUT_DIR", str(tmp_path / "headless"))
    monkeypatch.setenv("SYNCTALK_CACHE_DIR", str(server.work / "cache"))
    monkeypatch.setenv("SYNCTALK_MODELS_DIR", str(may_video.parents[1] / "models"))
    run_workflow(prompt, registry, extra_pnginfo={"workflow": workflow})
    headless, _ = read_frames(tmp_path / "headless" / "synctalk" / "reference_00001_.mp4")
    difference = np.abs(headless.astype(np.float32) - frames.astype(np.float32)).mean()
    assert headless.shape == frames.shape and difference < 3.0, f"mean difference {difference:.2f} levels"


def _train_tiny_model(video: Path, shared_models: Path, model_dir: Path, work: Path) -> float:
    """Preprocess 2 s of ``video`` at 256 px (mel features) and train 30 quick steps at 64 px into ``model_dir``;
    returns the seconds it took (about 35 s on 2 CPU cores)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "SYNCTALK_MODELS_DIR": str(shared_models),
           "SYNCTALK_CACHE_DIR": str(work / "cache"), "SYNCTALK_QUIET": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    subject = work / "subject"
    commands = [
        ["preprocess", str(video), "--out", str(subject), "--max-duration", "2", "--size", "256",
         "--audio-encoder", "mel"],
        ["train", str(subject), "--out", str(model_dir), "--preset", "quick", "--iterations", "30",
         "--resolution", "64", "--perceptual-loss", "none", "--threads", "1", "--work-dir", str(work / "checkpoints")],
    ]
    started = time.monotonic()
    for args in commands:
        done = subprocess.run([sys.executable, "-m", "synctalk_lib", *args], check=False, cwd=REPO, env=env,
                              capture_output=True, text=True)
        assert done.returncode == 0, f"{args[0]} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return time.monotonic() - started


def test_shipped_render_workflow_runs_through_prompt_and_history(server: Server,
                                                                 request: pytest.FixtureRequest) -> None:
    """workflows/synctalk_render.json as a user queues it: a trained model, a speech file, an MP4 with its audio."""
    from synctalk_lib.media.audio import load_audio
    from synctalk_lib.subject import write_wav
    from synctalk_lib.workflow import apply_overrides, build_registry, load_workflow

    may_video = request.getfixturevalue("may_video")
    shared_models = request.getfixturevalue("shared_models")
    model_name = "server_test_subject"
    train_seconds = _train_tiny_model(may_video, shared_models, server.models_dir / model_name,
                                      server.work / "training")
    wave, rate = load_audio(may_video, start=5.0, duration=0.6)  # 0.6 s of real speech: 15 frames at 25 fps
    write_wav(server.work / "input" / "server_speech.wav", wave, rate)

    info = server.get("/object_info/LoadSyncTalkModel")["LoadSyncTalkModel"]
    assert model_name in info["input"]["required"]["name"][0], "the new model is not offered in the name list"

    registry = build_registry()
    prompt, workflow = load_workflow(REPO / "workflows" / "synctalk_render.json", registry)
    prompt = apply_overrides(prompt, {"LoadSyncTalkModel.name": model_name, "LoadAudio.audio": "server_speech.wav",
                                      "SyncTalkEncodeAudioAV.encoder": "mel",  # what the model was trained on
                                      "SaveVideo.filename_prefix": "synctalk/render_test"}, registry)
    save_id = next(i for i, node in prompt.items() if node["class_type"] == "SaveVideo")
    entry, seconds = server.run_prompt(prompt, workflow)

    saved = entry["outputs"][save_id]["images"][0]
    path = server.work / "output" / saved["subfolder"] / saved["filename"]
    assert saved["type"] == "output" and saved["filename"] == "render_test_00001_.mp4" and path.is_file()
    video_s, audio_s = video_duration(path)
    assert video_s == pytest.approx(0.6, abs=0.05) and audio_s == pytest.approx(0.6, abs=0.05)
    frames, fps = read_frames(path)
    assert float(fps) == 25.0 and frames.shape == (15, 256, 256, 3)
    import av

    with av.open(str(path)) as container:  # reloads into ComfyUI as this workflow, with its audio
        assert json.loads(container.metadata["workflow"])["last_node_id"] == workflow["last_node_id"]
        assert [s.type for s in container.streams] == ["video", "audio"]

    # Away from the face every output frame is the reference frame the timeline picked (the blend pasted only
    # the rendered head into real frames).
    from synctalk_lib.nerf.model_folder import SyncTalkModel
    from synctalk_lib.timeline import reference_indices

    model = SyncTalkModel.from_pretrained(str(server.models_dir / model_name), device="cpu",
                                          cache_dir=server.work / "cache")
    clip = model.subject.reference_clip()
    for k, j in enumerate(reference_indices(frames.shape[0], clip.num_frames)):
        corner = np.abs(frames[k, :40, :40].astype(np.float32) - clip.frame(int(j))[:40, :40]).mean()
        assert corner < 4.0, f"frame {k}: away from the face the output must be reference frame {j}"
    print(f"trained a tiny model in {train_seconds:.1f} s; {len(prompt)} nodes /prompt -> /history in "
          f"{seconds:.1f} s: {path.name}, {frames.shape[0]} frames {frames.shape[2]}x{frames.shape[1]}, "
          f"video {video_s:.3f} s, audio {audio_s:.3f} s")
