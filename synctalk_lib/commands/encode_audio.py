"""``encode-audio``: an audio (or video) file -> ``FEATURES.npy`` ``[N, D]``, one row per video frame.

The whole audio track is encoded: ``N`` = video frames its duration covers at ``--fps`` (rounded half up). For a
video file that can be a frame or two more than the video has (AAC tracks are padded to whole 1024-sample
packets); ``preprocess`` cuts the audio to the video instead.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

NAME = "encode-audio"
HELP = "encode a driving audio into per-frame audio features ([frames, D] .npy)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("audio", metavar="AUDIO_FILE", help="any file PyAV reads (wav, mp3, flac, m4a, mp4, ...); "
                                                            "any rate, mono or stereo")
    parser.add_argument("--out", required=True, metavar="FEATURES.npy",
                        help="output: a .npy holding [frames, D] float32 (a .json with the encoder id, fps and "
                             "warnings is written beside it); a .npz path saves the full AudioFeatures record")
    parser.add_argument("--audio-encoder", default="auto", metavar="auto|ave|ave-file:PATH|mel",
                        help="ave: official audio-visual encoder (CC BY-NC 4.0 weights, non-commercial); "
                             "ave-file:PATH: your own AVE weights (e.g. from ave-train); mel: no weights; "
                             "auto: ave when available, else mel with a warning. Default auto")
    parser.add_argument("--fps", type=float, default=25.0, help="video frame rate of the render (default 25)")
    parser.add_argument("--models-dir", action="append", default=None, metavar="DIR",
                        help="models folder(s) holding audio_visual_encoder.pth (repeatable)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="default auto")


def run(args: argparse.Namespace) -> int:
    from synctalk_lib.audio.features import encode_audio
    from synctalk_lib.media.audio import load_audio
    from synctalk_lib.paths import atomic_path, write_json

    import numpy as np

    out = Path(args.out)
    started = time.perf_counter()
    wave, rate = load_audio(args.audio)
    features = encode_audio(wave, rate, fps=args.fps, encoder=args.audio_encoder, models_dirs=args.models_dir,
                            device=args.device)
    facts = {"source": str(args.audio), "encoder_id": features.encoder_id, "fps": features.fps,
             "shape": list(features.features.shape), "audio_seconds": round(wave.shape[1] / rate, 4),
             "sample_rate": rate, "channels": int(wave.shape[0]), "notes": list(features.notes),
             "seconds": round(time.perf_counter() - started, 3)}
    if out.suffix == ".npz":
        features.save(out)
    else:
        if out.suffix != ".npy":
            out = out.with_name(out.name + ".npy")
        with atomic_path(out) as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, features.features)
        write_json(out.with_suffix(".json"), facts)
    print(f"{out}: {features.num_frames} frames x {features.dim} ({features.encoder_id}, {features.fps:g} fps, "
          f"{facts['audio_seconds']:.2f} s of audio, {facts['seconds']:.2f} s)")
    return 0
