#!/usr/bin/env bash
# The GPU check: kernels' tests, 512x512 render and training speed, and a time-boxed standard-preset training with
# its held-out evaluation, in one unattended command of at most 8 minutes (bench/gpu_check.py says what each step
# does). Writes gpu_check.md / .json / .log and the held-out renders to $OUT (or --out DIR).
#
# On the GPU machine (H200, Python 3.12, torch 2.11, triton 3.6; no PyAV, no MediaPipe, no network), through the
# device tool, from the repository root, after `bash bench/gpu_bundle.sh` filled bench/.gpu_bundle here:
#
#     run(command="bash bench/gpu_check.sh", carry=["bench/.gpu_bundle"], timeout_s=600)
#
# The check itself stops after 480 s (each step has its own limit), so the 600 s leave room for Python start-up
# and copying $OUT back. Afterwards, on a CPU machine with MediaPipe, the LMD of the returned renders:
#
#     python bench/gpu_check_finish.py /work/.device/<files_at folder>      (prints the LMD rows)
#
# CPU dry run (CI runs it through tests/test_gpu_check.py; about a minute):
#
#     bash bench/gpu_bundle.sh --dry-run /tmp/gpu_bundle_dry && bash bench/gpu_check.sh --dry-run --bundle /tmp/gpu_bundle_dry --out /tmp/gpu_check_dry
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"

bundle=bench/.gpu_bundle
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  if [[ "${args[i]}" == "--bundle" && $((i + 1)) -lt ${#args[@]} ]]; then bundle="${args[i + 1]}"; fi
done

# PyAV (video decoding) from the bundle's wheel where the machine has none; nothing else is installed.
if ! "$PYTHON" -c "import av" 2>/dev/null; then
  wheel=$(ls "$bundle"/wheels/av-*.whl 2>/dev/null | head -n 1)
  if [[ -n "$wheel" ]]; then
    site="${TMPDIR:-/tmp}/gpu_check_site"
    if PIP_ROOT_USER_ACTION=ignore "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --disable-pip-version-check --target "$site" "$wheel"; then
      export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
      echo "PyAV installed from $wheel into $site"
    fi
  else
    echo "warning: PyAV is not installed and $bundle/wheels has no av wheel: the training step will fail" >&2
  fi
fi
exec "$PYTHON" bench/gpu_check.py "$@"
