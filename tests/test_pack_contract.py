"""The pack as ComfyUI sees it: cheap import, every node well-formed, documented and consistently typed."""
from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path

import pytest

from pack_loader import PACK_DIR, load_pack
CORE_TYPES = {"IMAGE", "MASK", "AUDIO", "VIDEO", "INT", "FLOAT", "STRING", "BOOLEAN", "LATENT"}
PACK_TYPES = {"SYNCTALK_CLIP", "SYNCTALK_FACE_TRACK", "SYNCTALK_HEAD_POSE", "SYNCTALK_AUDIO_FEATURES", "SYNCTALK_MODEL"}
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}


PACK = load_pack()
NODES = sorted(PACK.NODE_CLASS_MAPPINGS.items())


def test_pack_registers_nodes_with_display_names():
    assert NODES, "the pack registers no nodes"
    assert set(PACK.NODE_DISPLAY_NAME_MAPPINGS) == set(PACK.NODE_CLASS_MAPPINGS)


def test_import_is_cheap_and_lazy():
    """Importing the pack takes < 2 s and loads no heavy optional package.

    torch is imported first, as ComfyUI does before it loads custom nodes."""
    code = (
        "import torch, importlib.util, sys, time; t = time.perf_counter();"
        f"spec = importlib.util.spec_from_file_location('pack', r'{PACK_DIR / '__init__.py'}',"
        f" submodule_search_locations=[r'{PACK_DIR}']);"
        "m = importlib.util.module_from_spec(spec); sys.modules['pack'] = m; spec.loader.exec_module(m);"
        "dt = time.perf_counter() - t;"
        "heavy = sorted(k for k in ('mediapipe', 'cv2', 'lpips', 'tinycudann', 'triton', 'librosa', 'av') if k in sys.modules);"
        "print(dt, len(m.NODE_CLASS_MAPPINGS), ','.join(heavy) or '-')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd="/")
    seconds, count, heavy = out.stdout.split()
    assert float(seconds) < 2.0, f"pack import took {seconds} s"
    assert int(count) == len(NODES)
    assert heavy == "-", f"heavy packages imported at pack import: {heavy}"


def test_import_survives_missing_optional_packages():
    """With mediapipe/cv2/lpips/av unimportable the pack still registers every node."""
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in {'mediapipe', 'cv2', 'lpips', 'av', 'tinycudann', 'librosa', 'scipy'}:\n"
        "            raise ImportError('blocked for test: ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import importlib.util\n"
        f"spec = importlib.util.spec_from_file_location('pack', r'{PACK_DIR / '__init__.py'}',"
        f" submodule_search_locations=[r'{PACK_DIR}'])\n"
        "m = importlib.util.module_from_spec(spec); sys.modules['pack'] = m; spec.loader.exec_module(m)\n"
        "for cls in m.NODE_CLASS_MAPPINGS.values(): cls.INPUT_TYPES()\n"
        "print(len(m.NODE_CLASS_MAPPINGS))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/")
    assert out.returncode == 0, out.stderr
    assert int(out.stdout.strip()) == len(NODES)


@pytest.mark.parametrize("node_id,cls", NODES, ids=[n for n, _ in NODES])
def test_node_contract(node_id: str, cls: type):
    assert "SyncTalk" in node_id, "node ids carry the pack name to avoid collisions with other packs"
    spec = cls.INPUT_TYPES()
    assert isinstance(spec, dict) and set(spec) <= {"required", "optional", "hidden"}
    assert "required" in spec
    names = [n for section in ("required", "optional") for n in spec.get(section, {})]
    assert len(names) == len(set(names)), "duplicate input names"

    for section in ("required", "optional"):
        for name, entry in spec.get(section, {}).items():
            assert isinstance(entry, tuple) and 1 <= len(entry) <= 2, f"{name}: input spec must be (TYPE,) or (TYPE, opts)"
            kind, opts = entry[0], (entry[1] if len(entry) == 2 else {})
            assert isinstance(opts, dict)
            assert opts.get("tooltip"), f"{node_id}.{name} has no tooltip"
            if isinstance(kind, list):
                is_file_picker = any(opts.get(k) for k in ("image_upload", "video_upload", "audio_upload"))
                assert kind or is_file_picker, f"{name}: empty combo"
                if "default" in opts:
                    assert opts["default"] in kind, f"{name}: default not among the choices"
                continue
            assert isinstance(kind, str) and kind.upper() == kind
            assert kind in CORE_TYPES | PACK_TYPES | WIDGET_TYPES, f"{name}: unknown type {kind}"
            if kind in {"INT", "FLOAT"}:
                for key in ("default", "min", "max", "step"):
                    assert key in opts, f"{node_id}.{name} ({kind}) lacks {key}"
                assert opts["min"] <= opts["default"] <= opts["max"]
                assert name not in {"seed", "noise_seed"}, "an INT named seed gets randomised by the frontend"
            if kind in {"STRING", "BOOLEAN"}:
                assert "default" in opts

    assert isinstance(cls.RETURN_TYPES, tuple)
    names_out = getattr(cls, "RETURN_NAMES", cls.RETURN_TYPES)
    assert len(names_out) == len(cls.RETURN_TYPES)
    tooltips = getattr(cls, "OUTPUT_TOOLTIPS", None)
    if cls.RETURN_TYPES:
        assert tooltips is not None and len(tooltips) == len(cls.RETURN_TYPES), f"{node_id}: OUTPUT_TOOLTIPS"
    for kind in cls.RETURN_TYPES:
        assert kind in CORE_TYPES | PACK_TYPES, f"{node_id}: unknown output type {kind}"
    assert isinstance(cls.FUNCTION, str) and callable(getattr(cls, cls.FUNCTION, None))
    assert cls.CATEGORY.startswith("SyncTalk/")
    assert getattr(cls, "DESCRIPTION", ""), f"{node_id} has no DESCRIPTION"
    assert cls.RETURN_TYPES or getattr(cls, "OUTPUT_NODE", False), "a node without outputs must be an output node"

    # The function accepts every required input by name; optional inputs have defaults.
    params = inspect.signature(getattr(cls, cls.FUNCTION)).parameters
    has_kwargs = any(p.kind is p.VAR_KEYWORD for p in params.values())
    for name in spec["required"]:
        assert name in params or has_kwargs, f"{node_id}.{cls.FUNCTION} lacks parameter {name}"
    for name in spec.get("optional", {}):
        if name in params:
            assert params[name].default is not inspect.Parameter.empty, f"optional input {name} needs a default"
    for hook in ("IS_CHANGED", "VALIDATE_INPUTS"):
        if hasattr(cls, hook):
            assert isinstance(inspect.getattr_static(cls, hook), classmethod), f"{hook} must be a classmethod"


def test_custom_types_are_produced_and_consumed():
    """Every pack socket type that a node consumes is produced by some node (a graph can be built)."""
    produced = {t for _, cls in NODES for t in cls.RETURN_TYPES}
    consumed = set()
    for _, cls in NODES:
        for section in ("required", "optional"):
            for entry in cls.INPUT_TYPES().get(section, {}).values():
                if isinstance(entry[0], str) and entry[0] in PACK_TYPES:
                    consumed.add(entry[0])
    assert consumed <= produced, f"consumed but never produced: {consumed - produced}"


def test_library_never_imports_comfyui():
    offenders = []
    for path in (PACK_DIR / "synctalk_lib").rglob("*.py"):
        for line_no, line in enumerate(path.read_text().splitlines(), 1):
            stripped = line.strip()
            if stripped.startswith(("import ", "from ")):
                module = stripped.split()[1].split(".")[0]
                if module in {"comfy", "folder_paths", "nodes", "server", "execution", "comfy_api", "comfy_extras"}:
                    offenders.append(f"{path.relative_to(PACK_DIR)}:{line_no}: {stripped}")
    assert not offenders, "synctalk_lib must not import ComfyUI:\n" + "\n".join(offenders)


def test_only_the_bridge_touches_comfyui():
    offenders = []
    for path in (PACK_DIR / "nodes").glob("*.py"):
        if path.name == "bridge.py":
            continue
        for line in path.read_text().splitlines():
            stripped = line.strip()
            if stripped.startswith(("import ", "from ")):
                module = stripped.split()[1].split(".")[0]
                if module in {"comfy", "folder_paths", "server", "execution", "comfy_api", "comfy_extras"}:
                    offenders.append(f"{path.name}: {stripped}")
    assert not offenders, "\n".join(offenders)
