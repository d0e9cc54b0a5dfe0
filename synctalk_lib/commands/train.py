"""``train SUBJECT_DIR --preset quick --out MODEL_DIR``: train the subject's head NeRF and save the model folder.

Reads the subject folder written by ``preprocess`` (clip, face track, head pose, audio features), trains with a
preset (every number can be changed with ``--set key=value``), saves MODEL_DIR (``model.safetensors``,
``config.json``, ``subject/``) and writes ``MODEL_DIR/train_report.json``: steps, seconds, final losses, held-out
PSNR. Checkpoints go to ``--work-dir`` (default ``MODEL_DIR.training`` beside it); a run continues from a matching
one there (``--no-resume``: start over; a checkpoint of another subject or other settings is set aside, not lost).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from synctalk_lib.progress import cli_progress

NAME = "train"
HELP = "train a subject's SyncTalk head NeRF from a preprocessed subject folder"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("subject", type=Path, help="subject folder written by `preprocess`")
    parser.add_argument("--out", type=Path, required=True, help="model folder to write (replaced if it exists)")
    parser.add_argument("--preset", choices=["auto", "quick", "standard", "paper"], default="auto",
                        help="auto (default): standard on a CUDA device, quick elsewhere; quick: CPU, 128 px, "
                             "minutes; standard: GPU, 512 px; paper: 100k + 25k steps")
    parser.add_argument("--iterations", type=int, default=0, help="total steps (0 = the preset's)")
    parser.add_argument("--resolution", type=int, default=0, help="longer training side in pixels (0 = preset)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or a torch device")
    parser.add_argument("--perceptual-loss", choices=["lpips", "none"], default=None,
                        help="fine-stage perceptual loss (default: the preset's, lpips)")
    parser.add_argument("--photometric", choices=["l1", "mse"], default=None, help="per-ray colour loss")
    parser.add_argument("--val-frames", default=None, help="held-out frames: '300:331', a fraction, or 0")
    parser.add_argument("--name", default=None, help="model name (default: the output folder's name)")
    parser.add_argument("--work-dir", type=Path, default=None, help="checkpoint folder (default MODEL_DIR.training)")
    parser.add_argument("--no-resume", action="store_true",
                        help="start over instead of continuing from the checkpoint in the work folder")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override any training setting, e.g. --set rays_per_step=4096 --set nerf.max_steps=32")
    parser.add_argument("--models-dir", action="append", default=None, help="models folder(s) (LPIPS weights)")


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["a=1", "nerf.max_steps=32"]`` -> ``{"a": 1, "nerf": {"max_steps": 32}}`` (values parsed as JSON when
    they are JSON, else kept as strings)."""
    from synctalk_lib.errors import InputError

    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"--set expects KEY=VALUE, got {item!r}")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        if key.startswith("nerf."):
            out.setdefault("nerf", {})[key[5:]] = value
        else:
            out[key.strip()] = value
    return out


def run(args: argparse.Namespace) -> int:
    import torch

    from synctalk_lib import pipeline
    from synctalk_lib.errors import InputError
    from synctalk_lib.subject import SubjectDir

    if args.threads:
        torch.set_num_threads(int(args.threads))
    folder = SubjectDir(args.subject)
    if not folder.root.is_dir():
        raise InputError(f"subject folder {folder.root} does not exist; run `python -m synctalk_lib preprocess "
                         f"VIDEO --out {folder.root}` first")
    overrides = parse_overrides(args.set)
    if args.photometric:
        overrides["photometric"] = args.photometric
    if args.val_frames is not None:
        overrides["val_frames"] = args.val_frames

    def on_status(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    with cli_progress(f"Training ({args.preset})") as on_step:
        model = pipeline.train(folder.load_subject(), args.out, preset=args.preset, iterations=args.iterations,
                               resolution=args.resolution, perceptual_loss=args.perceptual_loss,
                               device=args.device, name=args.name, work_dir=args.work_dir, resume=not args.no_resume,
                               reuse=False, models_dirs=args.models_dir, overrides=overrides, on_step=on_step,
                               on_status=on_status)
    summary = model.summary
    psnr = summary.get("heldout_psnr")
    print(f"trained {summary['steps']} steps in {summary['seconds']:.0f} s; held-out PSNR "
          f"{'n/a' if psnr is None else f'{psnr:.2f} dB'}; model folder {args.out}")
    return 0
