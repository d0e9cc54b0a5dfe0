#!/usr/bin/env bash
# The pack inside a real ComfyUI, outside CI: sets up a venv for a ComfyUI source tree you provide
# (tools/comfyui_venv.sh), then runs the real-server and real-browser tests against it and prints their timings.
#
#   bash bench/comfyui_smoke.sh /path/to/ComfyUI [/path/to/venv]
#
# Needs Chromium (apt-get install chromium) and the test requirements (pip install -r tests/requirements.txt).
# CI (.ci/run) does the same with ../shared/comfyui. Screenshots land in test-artifacts/browser/.
set -euo pipefail

COMFYUI_DIR="$(cd "${1:?usage: $0 COMFYUI_DIR [VENV]}" && pwd)"
REPO="$(cd "$(dirname "$0")/.." && pwd)"
VENV="${2:-$REPO/.venv-comfyui}"

bash "$REPO/tools/comfyui_venv.sh" "$COMFYUI_DIR" "$VENV"
cd "$REPO"
COMFYUI_DIR="$COMFYUI_DIR" COMFYUI_PYTHON="$VENV/bin/python" \
  SYNCTALK_SHARED="${SYNCTALK_SHARED:-$(cd "$REPO/.." && pwd)/shared}" \
  python -m pytest tests/test_comfyui_server.py tests/test_browser_workflows.py -q -s -p no:cacheprovider --durations=0
