"""Fill the GPU check's bundle: what ``bench/gpu_check.sh`` needs on a GPU machine that has no network, no PyAV
and no MediaPipe. ``bench/gpu_bundle.sh`` calls this after downloading the PyAV wheel.

    python bench/gpu_bundle.py --shared ../shared --out bench/.gpu_bundle [--max-duration 2.4]

Writes into ``--out``:

- ``may_short.mp4``: the reference clip (0.8 MB), decoded again there with the carried PyAV wheel;
- ``subject/``: the subject folder of ``python -m synctalk_lib preprocess`` (mel audio features, since the AVE
  weights are absent; MediaPipe face track; head pose), about 4 MB. Its clip is prepared with ``--crop none``: the
  reference clip is already a 512 x 512 face crop (``crop face`` finds the box (0, 0, 512, 512) and gives the same
  frames), and ``none`` lets the GPU machine rebuild the clip cache without MediaPipe;
- ``manifest.json``: the clip settings and a sha256 per decoded frame and of the audio, so the GPU machine can prove
  that its decode of the clip is the one the subject was prepared from;
- the LPIPS weights when they are in ``--models-dir`` (they are not offline here; LPIPS is then reported as null).

The clip cache itself (260 MB of uint8 frames) stays out of the bundle: it is rebuilt there in seconds.
``--max-duration`` makes the small bundle of the CPU dry run (the first seconds of the clip).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

BUNDLE_FORMAT = 1
LPIPS_FILES = ("alexnet-owt-7be5be79.pth", "lpips_v0.1_alex.pth")


def frame_digests(clip) -> list[str]:
    """sha256 of every frame's uint8 bytes."""
    return [hashlib.sha256(clip.frame(i).tobytes()).hexdigest() for i in range(clip.num_frames)]


def audio_digest(clip) -> str | None:
    """sha256 of the clip's float32 audio samples (None without audio)."""
    if not clip.has_audio:
        return None
    import numpy as np

    return hashlib.sha256(np.ascontiguousarray(clip.audio_waveform(), np.float32).tobytes()).hexdigest()


def preprocess(video: Path, subject_dir: Path, models_dir: Path, cache_dir: Path, max_duration: float) -> None:
    """``python -m synctalk_lib preprocess`` with the bundle's settings (raises on failure)."""
    from synctalk_lib.cli import main

    argv = ["preprocess", str(video), "--out", str(subject_dir), "--models-dir", str(models_dir),
            "--cache-dir", str(cache_dir), "--crop", "none", "--size", "512", "--audio-encoder", "mel",
            "--device", "cpu"]
    if max_duration:
        argv += ["--max-duration", str(max_duration)]
    code = main(argv)
    if code != 0:
        raise SystemExit(f"preprocess failed (exit code {code})")


def make_bundle(shared: Path, out: Path, *, models_dir: Path | None = None, max_duration: float = 0.0) -> dict:
    """Write the bundle into ``out`` (its subject folder and manifest are replaced); returns the manifest."""
    from synctalk_lib.subject import SubjectDir

    source = shared / "data" / "may_short.mp4"
    if not source.is_file():
        raise SystemExit(f"the reference clip {source} is missing (set --shared or SYNCTALK_SHARED)")
    models_dir = models_dir or shared / "models"
    out.mkdir(parents=True, exist_ok=True)
    video = out / source.name
    shutil.copyfile(source, video)
    subject_dir = out / "subject"
    shutil.rmtree(subject_dir, ignore_errors=True)
    with tempfile.TemporaryDirectory(prefix="gpu_bundle_cache_") as cache:
        preprocess(video, subject_dir, models_dir, Path(cache), max_duration)
        subject = SubjectDir(subject_dir)
        clip = subject.load_clip()
        settings = subject.clip_ref()["settings"]
        manifest = {"format": BUNDLE_FORMAT, "video": video.name, "subject": subject_dir.name,
                    "clip_settings": settings, "frames": clip.num_frames, "height": clip.height,
                    "width": clip.width, "fps": clip.fps, "frame_sha256": frame_digests(clip),
                    "audio_sha256": audio_digest(clip), "max_duration": max_duration}
    lpips = [name for name in LPIPS_FILES if (models_dir / name).is_file()]
    if lpips:
        (out / "models").mkdir(exist_ok=True)
        for name in lpips:
            shutil.copyfile(models_dir / name, out / "models" / name)
    manifest["lpips_weights"] = lpips
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def main(argv: list[str] | None = None) -> int:
    import os

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=Path(os.environ.get("SYNCTALK_SHARED", "../shared")))
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / ".gpu_bundle")
    parser.add_argument("--models-dir", type=Path, default=None, help="default: SHARED/models")
    parser.add_argument("--max-duration", type=float, default=0.0, help="seconds of the clip (0 = all)")
    args = parser.parse_args(argv)
    manifest = make_bundle(args.shared, args.out, models_dir=args.models_dir, max_duration=args.max_duration)
    size = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
    print(f"bundle {args.out}: {manifest['frames']} frames {manifest['width']}x{manifest['height']}, "
          f"LPIPS weights {manifest['lpips_weights'] or 'absent'}, {size / 2**20:.1f} MiB in all")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
