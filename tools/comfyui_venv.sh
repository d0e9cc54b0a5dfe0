#!/usr/bin/env bash
# A virtual environment that runs a real ComfyUI source tree with its pinned frontend, for the tests that check
# the pack against ComfyUI itself (tests/test_comfyui_server.py, tests/test_browser_workflows.py). pip only.
#
#   bash tools/comfyui_venv.sh COMFYUI_DIR VENV      # then: COMFYUI_DIR=... COMFYUI_PYTHON=VENV/bin/python
#
# The venv reuses the installed torch (--system-site-packages) and pip may never replace it (constraint
# torch==<installed version>); it gets ComfyUI's requirements.txt, which pins comfyui-frontend-package. Idempotent:
# a second run only checks.
#
# What is specific to a CPU-only torch whose version PyPI only has CUDA builds of torchvision/torchaudio for (this
# project's CI): those wheels fail to load on it, and ComfyUI imports both at start-up (torchvision in comfy/sd.py,
# torchaudio in comfy_extras/nodes_audio.py). They are then installed without their dependencies and without their
# compiled libraries, so they import as pure Python:
#   - torchaudio: its lib/*.so removed; it then runs without its extension (resample etc. are pure PyTorch);
#   - torchvision: _C.so / image.so / bundled CUDA libraries removed, plus a 20-line import hook in the venv that
#     declares the two operator schemas (nms, qnms) torchvision registers fake kernels for at import time.
# On a normal ComfyUI install (torch, torchvision and torchaudio from the same PyTorch index) none of this applies.
set -euo pipefail

COMFYUI_DIR="$(cd "${1:?usage: $0 COMFYUI_DIR VENV}" && pwd)"
VENV="${2:?usage: $0 COMFYUI_DIR VENV}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

[ -x "$VENV/bin/python" ] || python -m venv --system-site-packages "$VENV"
PY="$VENV/bin/python"
TORCH_VERSION="$("$PY" -c 'import torch; print(torch.__version__.split("+")[0])')"
echo "torch==$TORCH_VERSION" > "$WORK/constraints.txt"

# ComfyUI's requirements without the torch family (and spandrel, which pulls torchvision as a dependency).
grep -v -E '^(torch|torchvision|torchaudio|spandrel)([^a-z_-]|$)|^#|^$' "$COMFYUI_DIR/requirements.txt" > "$WORK/requirements.txt"
"$PY" -m pip install -q -c "$WORK/constraints.txt" -r "$WORK/requirements.txt"
"$PY" -m pip install -q --no-deps spandrel

SITE="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
if ! "$PY" -c 'import torchaudio' 2>/dev/null; then
  "$PY" -m pip install -q --no-deps torchaudio
  rm -f "$SITE"/torchaudio/lib/*.so
fi
if ! "$PY" -c 'import torchvision' 2>/dev/null; then
  TV_VERSION="$("$PY" - <<EOF
major, minor = map(int, "$TORCH_VERSION".split(".")[:2])
print(f"0.{minor + 15}.0" if major == 2 else "")  # torch 2.N pairs with torchvision 0.(N+15)
EOF
)"
  "$PY" -m pip install -q --no-deps "torchvision==$TV_VERSION"
  rm -rf "$SITE"/torchvision/_C.so "$SITE"/torchvision/image.so "$SITE"/torchvision.libs
  cat > "$SITE/synctalk_torchvision_cpu_shim.py" <<'EOF'
"""Lets a CUDA-only torchvision wheel import as pure Python on a CPU-only torch (ComfyUI check venv only).

torchvision registers fake kernels for its 'nms'/'qnms' operators at import time without checking that its
compiled extension (which defines them) loaded. Declaring the two schemas first lets the import finish; the
operators themselves stay unavailable (calling them raises), which ComfyUI's core does not need on CPU.
"""
import importlib.abc
import sys

_LIB = None


class _DeclareTorchvisionOps(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        global _LIB
        if name != "torchvision":
            return None
        sys.meta_path.remove(self)
        import torch

        _LIB = torch.library.Library("torchvision", "DEF")
        for op in ("nms", "qnms"):
            _LIB.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        return None  # the normal finders import torchvision itself


sys.meta_path.insert(0, _DeclareTorchvisionOps())
EOF
  echo "import synctalk_torchvision_cpu_shim" > "$SITE/synctalk_torchvision_cpu_shim.pth"
fi
"$PY" -c 'import torch, torchvision, torchaudio, comfyui_frontend_package; print("ComfyUI venv ready: torch", torch.__version__, "| frontend", __import__("importlib.metadata").metadata.version("comfyui-frontend-package"))'
