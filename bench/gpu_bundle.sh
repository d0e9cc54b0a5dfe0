#!/usr/bin/env bash
# Fill the GPU check's bundle (git-ignored; carried to the GPU machine with carry=["bench/.gpu_bundle"]):
#   wheels/av-*.whl   PyAV for CPython 3.12 on manylinux x86_64 (abi3 wheel, about 35 MB): the GPU machine has none
#   may_short.mp4     the reference clip (0.8 MB)
#   subject/          the preprocessed subject (mel features; MediaPipe face track; head pose), about 4 MB
#   manifest.json     clip settings and a sha256 per decoded frame (the GPU machine checks its own decode)
#
#   bash bench/gpu_bundle.sh [--dry-run] [DIR]       (DIR default bench/.gpu_bundle; SYNCTALK_SHARED default ../shared)
#
# --dry-run: the first 2.4 s of the clip and no wheel (the CPU dry run uses the installed PyAV); a few seconds.
# Ends by checking that the working tree plus the bundle stay under the device tool's 64 MiB (55 MiB wanted).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
SHARED="${SYNCTALK_SHARED:-../shared}"
dry=0
dir=bench/.gpu_bundle
for arg in "$@"; do
  case "$arg" in
    --dry-run) dry=1 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) dir="$arg" ;;
  esac
done
mkdir -p "$dir"

if [[ $dry -eq 1 ]]; then
  "$PYTHON" bench/gpu_bundle.py --shared "$SHARED" --out "$dir" --max-duration 2.4
  exit 0
fi

# The PyAV release installed here, so both machines decode the clip with the same FFmpeg build.
av_version=$("$PYTHON" -c "import av; print(av.__version__)")
rm -rf "$dir/wheels" && mkdir -p "$dir/wheels"
"$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d "$dir/wheels" "av==$av_version"
"$PYTHON" bench/gpu_bundle.py --shared "$SHARED" --out "$dir"

# What the device tool sends: tracked files, untracked files git does not ignore, and the carried bundle.
tree=$(git ls-files -co --exclude-standard -z | xargs -0 du -cb 2>/dev/null | tail -n 1 | cut -f 1)
carried=$(du -sb "$dir" | cut -f 1)
total=$((tree + carried))
echo "working tree $((tree / 1024)) KiB + bundle $((carried / 1024)) KiB = $((total / 1048576)) MiB (device limit 64 MiB)"
if ((total > 55 * 1048576)); then
  echo "error: more than 55 MiB would travel; remove untracked files or shrink the bundle" >&2
  exit 1
fi
