"""The shipped workflows in the real ComfyUI frontend, in headless Chromium, against the real server.

As a user would: the three templates are opened from Workflow -> Browse Templates (title and thumbnail on each
card); every widget value is read back from the canvas and compared with what ``tools/build_workflows.py``
meant, the graph the editor would save and the prompt it would queue are compared with the file; the quickstart
runs at a tiny size (2 s of video, 100 training steps at 64 px, 0.6 s of new speech) to a saved MP4, the render
template runs on the model the quickstart trained, the train template is queued and cancelled, and two bad
inputs each show one clear message in the error dialog. Screenshots go to ``$SYNCTALK_ARTIFACTS/browser``
(default ``test-artifacts/browser``); with ``SYNCTALK_UPDATE_SCREENSHOTS=1`` the template thumbnails and the
README's picture of the quickstart are written into the repository.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path

import pytest

import build_workflows
from browser import CHROMIUM_FLAGS, VIEWPORT, ComfyPage, chromium_path, save_json, sync_playwright
from real_comfyui import PACK_FOLDER, REPO

pytestmark = pytest.mark.comfyui

SHIPPED = REPO / "workflows"
ARTIFACTS = Path(os.environ.get("SYNCTALK_ARTIFACTS") or REPO / "test-artifacts") / "browser"
UPDATE = os.environ.get("SYNCTALK_UPDATE_SCREENSHOTS") == "1"
BUILT = build_workflows.build_all()
QUICKSTART, TRAIN, RENDER = build_workflows.QUICKSTART, build_workflows.TRAIN, build_workflows.RENDER
SPEECH_SECONDS = 0.6  # 15 frames at 25 fps
TINY_CLIP = {"max_duration": 2.0, "size": 256}
TINY_TRAINING = {"iterations": 100, "resolution": 64}  # iterations go in steps of 100
THUMBNAIL_WIDTH = 480
README_PICTURE = REPO / "docs" / "quickstart.png"


# ------------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def page(comfyui, tmp_path_factory):
    """The frontend, opened on an empty input folder (a new user's; nothing from the test clip in the pictures)."""
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=chromium_path(), headless=True,
            args=CHROMIUM_FLAGS, viewport=VIEWPORT)
        try:
            yield ComfyPage(context, comfyui.url)
        finally:
            context.close()


@pytest.fixture(scope="module")
def inputs(comfyui, page, may_video, shared_dir) -> dict[str, str]:
    """The files the templates expect in ComfyUI's input folder, plus a text file posing as a video; then R
    (refresh), as a user does after copying files into the input folder."""
    from synctalk_lib.media.audio import load_audio
    from synctalk_lib.subject import write_wav

    reference = comfyui.input_dir / build_workflows.REFERENCE_VIDEO
    if not reference.exists():
        reference.symlink_to(may_video)
    wave, rate = load_audio(shared_dir / "data" / "speech_other_speaker.wav", start=1.0, duration=SPEECH_SECONDS)
    write_wav(comfyui.input_dir / build_workflows.DRIVING_AUDIO, wave, rate)
    (comfyui.input_dir / "meeting_notes.mp4").write_text("Agenda: 1. budget 2. holidays\n")
    page.refresh_combos()
    return {"text_as_video": "meeting_notes.mp4"}


def _shipped(stem: str) -> dict:
    return json.loads((SHIPPED / f"{stem}.json").read_text(encoding="utf-8"))


def _node_id(stem: str, node_type: str, title: str | None = None) -> int:
    return next(n["id"] for n in _shipped(stem)["nodes"]
                if n["type"] == node_type and (title is None or n.get("title") == title))


# ------------------------------------------------------------------------------------------------ templates
def _show_pack_templates(page: ComfyPage) -> None:
    """Workflow -> Browse Templates, then the pack's category under Custom Nodes."""
    page.close_dialogs()
    page.command("Comfy.BrowseTemplates")
    category = page.page.locator(".p-dialog li.p-listbox-option").filter(
        has_text=re.compile(rf"^\s*{re.escape(PACK_FOLDER)}\s*$"))
    category.first.click(timeout=20_000)
    for stem in BUILT:
        page.page.locator(f'[data-testid="template-workflow-{stem}"]').wait_for(timeout=15_000)


def _open_template(page: ComfyPage, stem: str) -> None:
    """Open a template from the template browser, as a user does."""
    _show_pack_templates(page)
    page.page.locator(f'[data-testid="template-workflow-{stem}"]').click()
    count = len(_shipped(stem)["nodes"])
    page.page.wait_for_function("(n) => app.graph._nodes.length === n && !document.querySelector('.p-dialog')",
                                arg=count, timeout=15_000)
    page.page.wait_for_timeout(500)


def test_templates_show_each_workflow_with_title_and_thumbnail(comfyui, page):
    assert sorted(comfyui.get("/workflow_templates")[PACK_FOLDER]) == sorted(BUILT)
    _show_pack_templates(page)
    cards = page.page.wait_for_function("""(stems) => {
        const out = {};
        for (const stem of stems) {
          const card = document.querySelector(`[data-testid="template-workflow-${stem}"]`);
          const img = card?.querySelector('img');
          if (!img || !img.complete || img.naturalWidth === 0) return false;
          out[stem] = {text: card.innerText, width: img.naturalWidth, height: img.naturalHeight};
        }
        return out; }""", arg=list(BUILT), timeout=15_000).json_value()
    page.screenshot(ARTIFACTS / "templates.png")
    for stem, card in cards.items():
        assert card["text"].splitlines()[0].strip() == stem, "the card's title is the file name"
        assert card["width"] == THUMBNAIL_WIDTH, f"{stem}: the thumbnail shown is not workflows/{stem}.jpg"
    page.close_dialogs()


# ------------------------------------------------------------------------------------------------ widgets
def _same(seen, intended) -> bool:
    if isinstance(intended, float) or isinstance(seen, float):
        return isinstance(seen, (int, float)) and not isinstance(seen, bool) and abs(seen - intended) < 1e-6
    return seen == intended


def _check_nodes(page: ComfyPage, stem: str) -> None:
    shipped, intended = _shipped(stem), BUILT[stem].intended_values()
    seen = {n["id"]: n for n in page.nodes()}
    assert set(seen) == {n["id"] for n in shipped["nodes"]}
    for node in shipped["nodes"]:
        on_canvas = seen[node["id"]]
        label = f"{stem}: {node['type']} #{node['id']}"
        assert on_canvas["registered"] and not on_canvas["has_errors"], f"{label} is missing in this ComfyUI"
        widgets = dict(on_canvas["widgets"])
        for name, value in intended[node["id"]].items():
            assert name in widgets, f"{label} has no widget {name!r} on the canvas"
            assert _same(widgets[name], value), f"{label}.{name}: the canvas shows {widgets[name]!r}, not {value!r}"
        assert on_canvas["saved_values"] == node["widgets_values"], f"{label}: the editor would save other values"
        width, height = on_canvas["size"]
        needed = on_canvas["needed"]
        assert width + 1 >= needed[0] and height + 1 >= needed[1], f"{label} is smaller than a new one {needed}"


def _check_note_fits(page: ComfyPage, stem: str) -> None:
    """The note's Markdown, as the frontend renders it, fits its box without a big empty part."""
    boxes = page.js("""() => app.graph._nodes.filter((n) => n.type === 'MarkdownNote').map((n) => {
        const box = n.widgets[0].element, text = box.querySelector('.ProseMirror') ?? box;
        return [box.clientHeight, Math.max(...Array.from(text.children).map((c) => c.offsetTop + c.offsetHeight))];
    })""")
    assert boxes, f"{stem} has no Markdown note"
    for box, text in boxes:
        assert text <= box and box - text < 100, f"{stem}: the note's text is {text} px high in a {box} px box"


def _check_links(page: ComfyPage, stem: str) -> None:
    shipped = _shipped(stem)
    nodes = {n["id"]: n for n in shipped["nodes"]}
    expected = sorted((s, nodes[s]["outputs"][so]["name"], d, nodes[d]["inputs"][di]["name"], kind)
                      for _, s, so, d, di, kind in shipped["links"])
    seen = sorted((link["from"][0], link["from"][1], link["to"][0], link["to"][1], link["type"])
                  for link in page.links())
    assert seen == expected


def _check_prompt(page: ComfyPage, stem: str) -> dict:
    """The prompt the frontend builds when it queues (its own UI -> API conversion) holds the intended values."""
    prompt = page.js("async () => (await app.graphToPrompt()).output")
    intended = BUILT[stem].intended_values()
    executable = {n["id"] for n in _shipped(stem)["nodes"] if n["type"] != "MarkdownNote"}
    assert {int(k) for k in prompt} == executable
    for node_id, entry in prompt.items():
        for name, value in intended[int(node_id)].items():
            assert _same(entry["inputs"].get(name), value), f"{stem}: prompt {entry['class_type']}.{name}"
    return prompt


@pytest.mark.parametrize("stem", list(BUILT))
def test_template_opens_with_every_widget_in_place(page, stem):
    _open_template(page, stem)
    assert page.dialogs() == [], "opening the template showed a dialog (missing nodes?)"
    _check_nodes(page, stem)
    _check_note_fits(page, stem)
    _check_links(page, stem)
    save_json(ARTIFACTS / f"{stem}.prompt.json", _check_prompt(page, stem))
    _pictures(page, stem)


@pytest.mark.parametrize("stem", list(BUILT))
def test_builder_widget_rules_are_the_frontends(comfyui, page, stem):
    """For every node type of the pack and every core node a template uses, a new node in the real frontend has
    the widgets, in the order and with the defaults, that ``workflow_builder.frontend_widgets`` predicts."""
    from workflow_builder import frontend_widgets

    info = comfyui.get("/object_info")
    pack_types = [k for k, v in info.items() if v["python_module"] == f"custom_nodes.{PACK_FOLDER}"]
    types = sorted(set(pack_types) | {n["type"] for n in _shipped(stem)["nodes"]} - {"MarkdownNote"})
    fresh = page.js("""(types) => Object.fromEntries(types.map((t) => {
        const node = LiteGraph.createNode(t);
        const out = [t, [(node.widgets || []).map((w) => w.name), node.serialize().widgets_values ?? []]];
        return out; }))""", types)
    for node_type in types:
        predicted = frontend_widgets(info[node_type])
        names, values = fresh[node_type]
        assert names == [w.name for w in predicted], node_type
        # The values of companions (upload buttons) depend on the node's state, and a combo without choices (an
        # empty input folder) has none: the shipped files hold what the editor saves after opening them (checked
        # by test_template_opens_with_every_widget_in_place).
        for value, widget in zip(values, predicted):
            if widget.input and widget.default is not None:
                assert _same(value, widget.default), (node_type, widget.name, value, widget.default)


# ------------------------------------------------------------------------------------------------ pictures
def _fit_graph(page: ComfyPage, margin: int = 24) -> None:
    """Focus mode (no menus), no level-of-detail shortcuts, and the whole graph scaled into the window."""
    for key, value in (("LiteGraph.Canvas.MinFontSizeForLOD", 0), ("Comfy.Graph.CanvasInfo", False),
                       ("Comfy.Graph.CanvasMenu", False)):
        page.set_setting(key, value)
    if not page.js("() => document.body.classList.contains('focus-mode') || !!window.__synctalk.focus"):
        page.command("Workspace.ToggleFocusMode")
        page.js("() => { window.__synctalk.focus = true; }")
    page.js("""(margin) => {
        const boxes = app.graph._nodes.map((n) => [n.pos[0], n.pos[1] - LiteGraph.NODE_TITLE_HEIGHT,
                                                   n.pos[0] + n.size[0], n.pos[1] + n.size[1]]);
        for (const g of app.graph._groups) boxes.push([g.pos[0], g.pos[1], g.pos[0] + g.size[0], g.pos[1] + g.size[1]]);
        const x0 = Math.min(...boxes.map((b) => b[0])), y0 = Math.min(...boxes.map((b) => b[1]));
        const x1 = Math.max(...boxes.map((b) => b[2])), y1 = Math.max(...boxes.map((b) => b[3]));
        const w = window.innerWidth - 2 * margin, h = window.innerHeight - 2 * margin;
        const ds = app.canvas.ds;
        ds.scale = Math.min(w / (x1 - x0), h / (y1 - y0));
        ds.offset[0] = window.innerWidth / (2 * ds.scale) - (x0 + x1) / 2;
        ds.offset[1] = window.innerHeight / (2 * ds.scale) - (y0 + y1) / 2;
        app.canvas.setDirty(true, true); }""", margin)
    page.page.wait_for_timeout(600)


def _downscale(png: Path, width: int, target: Path) -> Path:
    import cv2

    image = cv2.imread(str(png))
    height = round(image.shape[0] * width / image.shape[1])
    small = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
    target.parent.mkdir(parents=True, exist_ok=True)
    params = [cv2.IMWRITE_JPEG_QUALITY, 82] if target.suffix == ".jpg" else [cv2.IMWRITE_PNG_COMPRESSION, 9]
    assert cv2.imwrite(str(target), small, params)
    return target


def _pictures(page: ComfyPage, stem: str) -> None:
    """A screenshot of the opened template, the thumbnail the template browser shows for it and, for the
    quickstart, the README's picture (taken before any input file exists, so no test media is in them)."""
    _fit_graph(page)
    shot = page.screenshot(ARTIFACTS / f"{stem}.png")
    thumbnail = _downscale(shot, THUMBNAIL_WIDTH, ARTIFACTS / "thumbnails" / f"{stem}.jpg")
    picture = _downscale(shot, 1280, ARTIFACTS / "readme" / README_PICTURE.name) if stem == QUICKSTART else None
    if UPDATE:
        shutil.copy(thumbnail, SHIPPED / thumbnail.name)
        if picture is not None:
            README_PICTURE.parent.mkdir(exist_ok=True)
            shutil.copy(picture, README_PICTURE)


# ------------------------------------------------------------------------------------------------ running
def _run(page: ComfyPage, comfyui, timeout_s: float) -> tuple[str, dict]:
    status, answer = page.queue()
    assert status == 200 and answer.get("node_errors") == {}, f"the frontend's prompt was refused: {answer}"
    prompt_id = answer["prompt_id"]
    entry = comfyui.wait(prompt_id, timeout=timeout_s)
    page.wait_for_event(("execution_success", "execution_error", "execution_interrupted"), prompt_id, 30)
    return prompt_id, entry


def _check_video(comfyui, entry: dict, save_id: int, seconds: float, side: int) -> Path:
    from synctalk_lib.media.video_file import read_frames
    from synctalk_lib.media.video_writer import video_duration

    saved = entry["outputs"][str(save_id)]["images"][0]
    path = comfyui.output_dir / saved["subfolder"] / saved["filename"]
    assert saved["type"] == "output" and saved["subfolder"] == "synctalk" and path.is_file()
    video_s, audio_s = video_duration(path)
    assert video_s == pytest.approx(seconds, abs=0.05) and audio_s == pytest.approx(seconds, abs=0.05)
    frames, fps = read_frames(path)
    assert float(fps) == 25.0 and frames.shape == (round(seconds * 25), side, side, 3)
    assert frames.std() > 10, "the video has a picture"
    return path


@pytest.fixture(scope="module")
def quickstart_run(comfyui, page, inputs):
    """The quickstart as shipped, with only its size made tiny on the canvas, run to the end."""
    page.load(_shipped(QUICKSTART), QUICKSTART)
    load = _node_id(QUICKSTART, "SyncTalkLoadReferenceVideo")
    train = _node_id(QUICKSTART, "TrainSyncTalk")
    for name, value in TINY_CLIP.items():
        page.set_widget(load, name, value)
    for name, value in TINY_TRAINING.items():
        page.set_widget(train, name, value)
    started = time.monotonic()
    prompt_id, entry = _run(page, comfyui, timeout_s=900)
    seconds = time.monotonic() - started
    page.page.wait_for_timeout(1000)  # let the previews draw
    _fit_graph(page)
    page.screenshot(ARTIFACTS / f"{QUICKSTART} - after the run.png")
    return {"prompt_id": prompt_id, "entry": entry, "events": page.events(prompt_id), "seconds": seconds,
            "dialogs": page.dialogs()}


def test_quickstart_runs_to_a_talking_head_video(comfyui, page, quickstart_run):
    entry, events = quickstart_run["entry"], quickstart_run["events"]
    assert entry["status"]["status_str"] == "success", json.dumps(entry["status"])[:3000]
    assert quickstart_run["dialogs"] == [], "a dialog popped up during the run"
    save = _node_id(QUICKSTART, "SaveVideo")
    path = _check_video(comfyui, entry, save, SPEECH_SECONDS, TINY_CLIP["size"])
    train = str(_node_id(QUICKSTART, "TrainSyncTalk"))
    steps = [e["detail"]["value"] for e in events if e["type"] == "progress" and e["detail"]["node"] == train]
    assert steps and max(steps) == TINY_TRAINING["iterations"], "training reports its progress to the UI"
    said = page.js("(id) => app.graph.getNodeById(id).widgets.find((w) => w.name === '$$node-text-preview')?.value",
                   int(train))
    assert said and said.startswith(f"Trained {TINY_TRAINING['iterations']} steps"), said
    previews = {e["detail"]["node"] for e in events if e["type"] == "executed" and e["detail"]["output"].get("images")}
    assert {str(_node_id(QUICKSTART, "PreviewImage", t)) for t in ("Landmarks and expression", "Head pose")} <= previews
    assert page.js("(name) => Array.from(document.querySelectorAll('video')).some((v) => v.src.includes(name))",
                   path.name), "SaveVideo shows the result on its node"
    log = comfyui.log_text()
    assert "the official AVE weights are unavailable" not in log, "the subject's own encoder: no fallback to mel"
    assert "NerfConfig" not in log
    print(f"quickstart at a tiny size: {quickstart_run['seconds']:.0f} s from Run to {path.name}")


def test_render_template_runs_on_the_trained_model(comfyui, page, quickstart_run):
    assert quickstart_run["entry"]["status"]["status_str"] == "success", "needs the model the quickstart trains"
    page.load(_shipped(RENDER), RENDER)
    page.refresh_combos()  # the R key: the new model appears in LoadSyncTalkModel's list
    model = _node_id(RENDER, "LoadSyncTalkModel")
    choices = page.js("(id) => app.graph.getNodeById(id).widgets[0].options.values", model)
    assert "quickstart" in choices
    page.set_widget(model, "name", "quickstart")
    started = time.monotonic()
    _, entry = _run(page, comfyui, timeout_s=600)
    assert entry["status"]["status_str"] == "success", json.dumps(entry["status"])[:3000]
    path = _check_video(comfyui, entry, _node_id(RENDER, "SaveVideo"), SPEECH_SECONDS, TINY_CLIP["size"])
    assert page.dialogs() == []
    print(f"render template: {time.monotonic() - started:.0f} s from Run to {path.name}")


def _error_dialog(page: ComfyPage, prompt_id: str) -> str:
    event = page.wait_for_event(("execution_error",), prompt_id, timeout_s=5)
    page.page.wait_for_function("() => document.querySelectorAll('.p-dialog').length > 0", timeout=10_000)
    dialogs = page.dialogs()
    assert len(dialogs) == 1, f"one dialog, not {len(dialogs)}: {dialogs}"
    text = dialogs[0]
    assert event["detail"]["exception_message"].strip() in text
    assert "Traceback" not in text and 'File "' not in text, "the dialog shows a traceback"
    return text


def test_text_file_as_the_video_shows_one_clear_message(comfyui, page, inputs):
    page.load(_shipped(TRAIN), TRAIN)
    page.set_widget(_node_id(TRAIN, "SyncTalkLoadReferenceVideo"), "video", inputs["text_as_video"])
    prompt_id, entry = _run(page, comfyui, timeout_s=180)
    assert entry["status"]["status_str"] == "error"
    text = _error_dialog(page, prompt_id)
    page.screenshot(ARTIFACTS / "error - text file as the video.png")
    assert "could not be opened as a video" in text and "text file" in text and inputs["text_as_video"] in text
    page.close_dialogs()


def test_missing_weights_show_one_clear_message(comfyui, page, quickstart_run):
    """The official AVE is not available offline: choosing it says which file, where to put it, and the way out."""
    page.load(_shipped(RENDER), RENDER)
    page.refresh_combos()
    page.set_widget(_node_id(RENDER, "LoadSyncTalkModel"), "name", "quickstart")
    encode = _node_id(RENDER, "SyncTalkEncodeAudioAV")
    # unplugged from the model, the node encodes with the encoder its widget names
    page.js("(id) => { const n = app.graph.getNodeById(id); n.disconnectInput(n.findInputSlot('model')); }", encode)
    page.set_widget(encode, "encoder", "ave")
    prompt_id, entry = _run(page, comfyui, timeout_s=300)
    assert entry["status"]["status_str"] == "error"
    text = _error_dialog(page, prompt_id)
    page.screenshot(ARTIFACTS / "error - missing weights.png")
    assert "audio_visual_encoder.pth" in text and str(comfyui.models_dir) in text and "encoder 'mel'" in text
    page.close_dialogs()


def test_cancel_during_training_stops_cleanly_and_keeps_a_checkpoint(comfyui, page, quickstart_run):
    """The train template (tiny settings) is accepted by /prompt as the frontend builds it; Cancel while it
    trains stops it without an error dialog, and the last step is kept for resume."""
    page.load(_shipped(TRAIN), TRAIN)
    load, train = _node_id(TRAIN, "SyncTalkLoadReferenceVideo"), _node_id(TRAIN, "TrainSyncTalk")
    for name, value in TINY_CLIP.items():
        page.set_widget(load, name, value)
    for name, value in {"preset": "quick", "iterations": 5000, "resolution": 64, "perceptual_loss": "none",
                        "name": "cancelled"}.items():
        page.set_widget(train, name, value)
    status, answer = page.queue()
    assert status == 200 and answer.get("node_errors") == {}, answer
    prompt_id = answer["prompt_id"]
    deadline = time.monotonic() + 600
    while not any(e["type"] == "progress" and e["detail"]["node"] == str(train) and e["detail"]["value"] >= 3
                  for e in page.events(prompt_id)):
        assert time.monotonic() < deadline, "training never started"
        page.page.wait_for_timeout(300)
    page.js("() => window.comfyAPI.api.api.interrupt(null)")
    page.wait_for_event(("execution_interrupted",), prompt_id, timeout_s=60)
    page.page.wait_for_timeout(1000)
    assert page.dialogs() == [], "Cancel is not an error"
    said = page.js("(id) => app.graph.getNodeById(id).widgets.find((w) => w.name === '$$node-text-preview')?.value",
                   train)
    assert said and said.startswith("Cancelled at step") and "checkpoint is kept" in said, said
    checkpoints = list((comfyui.work / "cache" / "training" / "cancelled").rglob("*.pt*"))
    assert checkpoints, "the training state is kept for resume"
    page.screenshot(ARTIFACTS / "cancelled training.png")


def test_no_uncaught_page_errors_after_start(page):
    save_json(ARTIFACTS / "console.json", {"console": page.console, "not_found": page.not_found})
    errors = [line for line in page.console[page.started:] if line.startswith("pageerror")]
    assert not errors, errors
    assert not [url for url in page.not_found if "/workflow_templates/" in url], "a template file or thumbnail 404"
