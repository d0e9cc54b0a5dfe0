"""A real ComfyUI server with this pack, for the tests that check the pack against ComfyUI itself.

``$COMFYUI_DIR`` is a ComfyUI source tree (CI: ``../shared/comfyui``, read-only) and ``$COMFYUI_PYTHON`` the Python
that runs it (``tools/comfyui_venv.sh`` makes one; default: this interpreter). The server gets a temporary base
folder (``--base-directory``: input, output, temp, user, ``custom_nodes`` holding only a link to this repository,
``models/synctalk`` for models it trains), the shared weights through an ``extra_model_paths.yaml`` and a free
loopback port. Without ``$COMFYUI_DIR`` the tests skip, or fail when ``SYNCTALK_REQUIRE_SHARED=1`` (CI).
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

import pytest

REPO = Path(__file__).resolve().parents[1]
PACK_FOLDER = "synctalk"  # the pack's folder name in custom_nodes: the Templates category is named after it
START_TIMEOUT = 180  # s: imports torch, every core node, this pack
RUN_TIMEOUT = 420  # s for one prompt


def missing_setup(message: str) -> None:
    """Skip, or fail where the set-up is required (CI sets SYNCTALK_REQUIRE_SHARED=1)."""
    if os.environ.get("SYNCTALK_REQUIRE_SHARED") == "1":
        pytest.fail(message + " (and SYNCTALK_REQUIRE_SHARED=1)", pytrace=False)
    pytest.skip(message)


def comfyui_dir() -> Path:
    root = os.environ.get("COMFYUI_DIR")
    if not root:
        missing_setup("set COMFYUI_DIR to a ComfyUI source tree (and COMFYUI_PYTHON) to test against the real one")
    path = Path(root)
    if not (path / "main.py").is_file():
        pytest.fail(f"COMFYUI_DIR={root} has no main.py", pytrace=False)
    return path


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ComfyUIServer:
    """``main.py --cpu`` on loopback with its own folders; ``get``/``post`` speak JSON to it."""

    def __init__(self, root: Path, work: Path, shared_models: Path):
        self.root, self.work = root, work
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        for name in ("input", "output", "temp", "user", "custom_nodes", "cache", "models/synctalk"):
            (work / name).mkdir(parents=True, exist_ok=True)
        (work / "custom_nodes" / PACK_FOLDER).symlink_to(REPO, target_is_directory=True)
        self.input_dir, self.output_dir = work / "input", work / "output"
        self.models_dir = work / "models" / "synctalk"  # listed first: trained models and downloads go here
        config = work / "extra_model_paths.yaml"
        config.write_text(f"synctalk_test:\n  synctalk: |\n    {self.models_dir}\n    {shared_models}\n")
        self.log_path = work / "server.log"
        python = os.environ.get("COMFYUI_PYTHON") or sys.executable
        command = [python, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(self.port),
                   "--disable-auto-launch", "--base-directory", str(work), "--extra-model-paths-config", str(config),
                   "--database-url", "sqlite:///:memory:", "--disable-all-custom-nodes",
                   "--whitelist-custom-nodes", PACK_FOLDER]
        # One OpenMP thread unless asked otherwise: Chromium draws the canvas on the same 2 cores, and OpenMP
        # threads that spin-wait on a crowded machine stall (quickstart run: 439 s with 2 threads, 100 s with 1).
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "SYNCTALK_CACHE_DIR": str(work / "cache"),
               "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), "PYTHONUNBUFFERED": "1",
               "PYTHONDONTWRITEBYTECODE": "1"}  # the ComfyUI tree stays untouched
        env.pop("SYNCTALK_MODELS_DIR", None)
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

    def post(self, route: str, body: dict) -> tuple[int, dict]:
        request = urllib.request.Request(self.url + route, data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                return answer.status, json.load(answer)
        except urllib.error.HTTPError as exc:  # 400 carries node_errors worth showing
            return exc.code, json.loads(exc.read().decode(errors="replace") or "{}")

    def queue(self, prompt: dict) -> str:
        """POST an API-format prompt; returns its id (fails the test on a validation error)."""
        status, answer = self.post("/prompt", {"prompt": prompt, "client_id": uuid.uuid4().hex})
        if status != 200 or answer.get("node_errors"):
            pytest.fail(f"/prompt refused the prompt ({status}): {json.dumps(answer)[:3000]}", pytrace=False)
        return answer["prompt_id"]

    def wait(self, prompt_id: str, timeout: float = RUN_TIMEOUT) -> dict:
        """The prompt's ``/history`` entry once it finished (successfully or not)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            history = self.get(f"/history/{prompt_id}")
            entry = history.get(prompt_id)
            if entry and entry.get("status", {}).get("completed") is not None:
                return entry
            if self.process.poll() is not None:
                pytest.fail(f"ComfyUI died while running the prompt:\n{self.log_tail()}", pytrace=False)
            time.sleep(0.5)
        pytest.fail(f"the prompt did not finish within {timeout:.0f} s:\n{self.log_tail()}", pytrace=False)

    def wait_success(self, prompt_id: str, timeout: float = RUN_TIMEOUT) -> dict:
        entry = self.wait(prompt_id, timeout)
        if entry["status"]["status_str"] != "success":
            pytest.fail(f"prompt failed: {json.dumps(entry['status'])[:3000]}\n{self.log_tail()}", pytrace=False)
        return entry

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.log.close()
