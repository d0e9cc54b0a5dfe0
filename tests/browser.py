"""The real ComfyUI frontend in headless Chromium, driven through Playwright, for the browser tests.

Chromium is Debian's (``apt-get install chromium``; ``$SYNCTALK_CHROMIUM`` overrides the path): Playwright's own
browser download is not used. Everything the tests read comes from the page itself: the graph through
``window.app.graph`` (widgets, links, sizes the frontend computes), the prompt the frontend builds when it queues,
the websocket events it receives and the dialogs it shows.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from real_comfyui import missing_setup

CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-default-apps", "--disable-extensions", "--mute-audio"]
VIEWPORT = {"width": 1600, "height": 1000}
LOAD_TIMEOUT_MS = 120_000

# Installed once per page: records the websocket events the frontend receives and reads the graph.
PAGE_HELPERS = """
() => {
  const api = window.comfyAPI.api.api;
  window.__synctalk = {events: []};
  for (const kind of ["execution_start", "executing", "progress", "executed", "execution_success",
                      "execution_error", "execution_interrupted", "execution_cached"]) {
    api.addEventListener(kind, (e) => window.__synctalk.events.push({type: kind, detail: e.detail}));
  }
}
"""

READ_GRAPH = """
() => app.graph._nodes.map((n) => ({
  id: n.id, type: n.type, title: n.title,
  registered: !!LiteGraph.registered_node_types[n.type], has_errors: !!n.has_errors,
  widgets: (n.widgets || []).map((w) => [w.name, w.value === undefined ? null : w.value]),
  saved_values: n.serialize().widgets_values ?? [],
  size: [n.size[0], n.size[1]], needed: Array.from(LiteGraph.createNode(n.type)?.computeSize() ?? [0, 0]),
  inputs: (n.inputs || []).map((i) => ({name: i.name, type: i.type, link: i.link, widget: i.widget?.name ?? null})),
}))
"""

READ_LINKS = """
() => {
  const out = [];
  const links = app.graph.links instanceof Map ? Array.from(app.graph.links.values()) : Object.values(app.graph.links);
  for (const l of links) {
    const src = app.graph.getNodeById(l.origin_id), dst = app.graph.getNodeById(l.target_id);
    out.push({from: [l.origin_id, src.outputs[l.origin_slot].name], to: [l.target_id, dst.inputs[l.target_slot].name],
              type: l.type});
  }
  return out;
}
"""


def chromium_path() -> str:
    path = os.environ.get("SYNCTALK_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).is_file():
        missing_setup(f"Chromium not found at {path} (apt-get install chromium, or set SYNCTALK_CHROMIUM)")
    return path


def sync_playwright():
    try:
        from playwright.sync_api import sync_playwright as start
    except ImportError:
        missing_setup("the 'playwright' package is not installed (pip install -r tests/requirements.txt)")
    return start()


class ComfyPage:
    """One tab of the ComfyUI frontend served by ``url``."""

    def __init__(self, context, url: str):
        self.url = url
        self.page = context.new_page()
        self.console: list[str] = []
        self.page.on("console", lambda m: self.console.append(f"{m.type}: {m.text}"))
        self.page.on("pageerror", lambda e: self.console.append(f"pageerror: {e}"))
        self.not_found: list[str] = []  # URLs answered 404 (a missing thumbnail, a file not in the input folder)
        self.page.on("response", lambda r: self.not_found.append(r.url) if r.status == 404 else None)
        self.page.goto(url)
        self.page.wait_for_function("() => window.app?.graph && window.app.canvas && window.comfyAPI?.api?.api",
                                    timeout=LOAD_TIMEOUT_MS)
        self.page.evaluate(PAGE_HELPERS)
        self.started = len(self.console)  # what the frontend logged while starting is its own business
        self.set_setting("Comfy.Minimap.Visible", False)
        self.set_setting("LiteGraph.Canvas.MaximumFps", 10)  # progress redraws share the CPU with the server

    def js(self, code: str, arg: Any = None) -> Any:
        return self.page.evaluate(code, arg)

    def set_setting(self, key: str, value: Any) -> None:
        self.js("([k, v]) => app.extensionManager.setting.set(k, v)", [key, value])

    def command(self, name: str) -> None:
        self.js("(c) => app.extensionManager.command.execute(c)", name)

    # ---------------------------------------------------------------------------------------------- graph
    def load(self, workflow: dict, name: str | None = None) -> None:
        """Open a workflow as the editor does when a file is opened or dropped."""
        self.js("([wf, name]) => app.loadGraphData(wf, true, true, name)", [workflow, name])
        self.page.wait_for_timeout(500)

    def nodes(self) -> list[dict]:
        return self.js(READ_GRAPH)

    def links(self) -> list[dict]:
        return self.js(READ_LINKS)

    def set_widget(self, node_id: int, name: str, value: Any) -> None:
        """Change a widget on the canvas the way its editor does (value, then the widget's callback)."""
        found = self.js("""([id, name, value]) => {
            const node = app.graph.getNodeById(id);
            const w = node?.widgets?.find((x) => x.name === name);
            if (!w) return false;
            w.value = value; w.callback?.(w.value, app.canvas, node);
            node.setDirtyCanvas?.(true, true);
            return [w.value]; }""", [node_id, name, value])
        assert found, f"node {node_id} has no widget {name!r}"
        assert found[0] == value, f"the {name} widget took {found[0]!r} instead of {value!r} (min, max, step?)"

    def refresh_combos(self) -> None:
        """What pressing R does: reload the node definitions, so new files and models appear in the lists."""
        self.js("() => app.refreshComboInNodes()")
        self.page.wait_for_timeout(500)

    # ---------------------------------------------------------------------------------------------- running
    def queue(self) -> tuple[int, dict]:
        """Queue the graph as the Run button does; returns the server's answer to the frontend's /prompt."""
        with self.page.expect_response(lambda r: r.url.endswith("/prompt") and r.request.method == "POST") as info:
            self.js("() => { app.queuePrompt(0, 1); }")
        response = info.value
        return response.status, response.json()

    def events(self, prompt_id: str | None = None) -> list[dict]:
        """Websocket events received so far (those of ``prompt_id`` only, when given)."""
        events = self.js("() => window.__synctalk.events")
        if prompt_id is None:
            return events
        return [e for e in events if isinstance(e.get("detail"), dict) and e["detail"].get("prompt_id") == prompt_id]

    def wait_for_event(self, kinds: tuple[str, ...], prompt_id: str, timeout_s: float) -> dict:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for event in self.events(prompt_id):
                if event["type"] in kinds:
                    return event
            self.page.wait_for_timeout(500)
        pytest.fail(f"no {'/'.join(kinds)} for prompt {prompt_id} within {timeout_s:.0f} s", pytrace=False)

    def dialogs(self) -> list[str]:
        """The text of every open dialog (error dialogs, missing-node warnings, ...)."""
        return self.js("() => Array.from(document.querySelectorAll('.p-dialog')).map((d) => d.innerText.trim())")

    def close_dialogs(self) -> None:
        """Close open dialogs with their close button, as a user would."""
        for _ in range(5):
            buttons = self.page.locator(".p-dialog .p-dialog-close-button")
            if not buttons.count():
                return
            buttons.first.click()
            self.page.wait_for_timeout(400)
        raise AssertionError(f"dialogs do not close: {self.dialogs()}")

    # ---------------------------------------------------------------------------------------------- pictures
    def fit_view(self) -> None:
        self.command("Comfy.Canvas.FitView")
        self.page.wait_for_timeout(400)

    def screenshot(self, path: Path, *, canvas_only: bool = False) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        target = self.page.locator("#graph-canvas") if canvas_only else self.page
        target.screenshot(path=str(path))
        return path


def save_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1, default=str))
