"""``ave-train``: pre-train the audio-visual encoder on talking-face videos; writes official-layout weights."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

NAME = "ave-train"
HELP = "pre-train the audio-visual encoder (lip-sync discriminator + reconstruction) on talking-face videos"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("clips", nargs="+", metavar="CLIP",
                        help="talking-face videos with speech (prepared at 25 fps with a face crop), or prepared "
                             "clip folders")
    parser.add_argument("--out", required=True, metavar="ave.safetensors",
                        help="weights to write (.safetensors or .pth) in the official AVE key layout; "
                             "use them with --audio-encoder ave-file:PATH or EncodeAudioAV's ave-file")
    parser.add_argument("--steps", type=int, default=300, help="training steps (default 300)")
    parser.add_argument("--train-frames", default=None, metavar="FIRST-LAST",
                        help="inclusive frame range used for training in every clip, e.g. 0-299 "
                             "(default: all but the held-out part)")
    parser.add_argument("--val-frames", default=None, metavar="FIRST-LAST",
                        help="inclusive held-out frame range for the sync AUC, e.g. 300-330 (default: the last "
                             "10%% of each clip when --train-frames is not given either)")
    parser.add_argument("--batch-size", type=int, default=32, help="frames per step (default 32)")
    parser.add_argument("--lr", type=float, default=2e-4, help="AdamW learning rate (default 2e-4)")
    parser.add_argument("--init", default=None, metavar="ave|PATH",
                        help="start from the official AVE (ave; CC BY-NC 4.0) or an AVE file instead of random "
                             "weights")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-resume", action="store_true", help="ignore an existing <out>.train.pt checkpoint")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--models-dir", action="append", default=None, metavar="DIR",
                        help="models folder(s) with face_landmarker.task (repeatable)")
    parser.add_argument("--cache-dir", default=None, help="clip cache folder; default $SYNCTALK_CACHE_DIR")


def load_clips(paths: list[str], cache_dir: Path, models_dirs) -> list:
    """Prepared clips for the given videos (25 fps, face crop 512) or prepared clip folders."""
    from synctalk_lib.errors import InputError
    from synctalk_lib.media.prepare import prepare_clip
    from synctalk_lib.types import Clip

    clips = []
    for text in paths:
        path = Path(text).expanduser()
        if path.is_dir():
            clips.append(Clip.load(path))
        elif path.is_file():
            clips.append(prepare_clip(path, cache_dir, fps=25.0, crop="face", size=512, models_dirs=models_dirs))
        else:
            raise InputError(f"clip not found: {path}")
    return clips


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from synctalk_lib.audio.ave_train import AVETrainConfig, train_ave
    from synctalk_lib.audio.ave_train_data import parse_range
    from synctalk_lib.paths import default_cache_dir, write_json

    config = dataclasses.replace(AVETrainConfig(), batch_size=args.batch_size, lr=args.lr, seed=args.seed)
    train_frames, val_frames = parse_range(args.train_frames), parse_range(args.val_frames)
    cache = Path(args.cache_dir) if args.cache_dir else default_cache_dir()
    clips = load_clips(args.clips, cache, args.models_dir)

    from tqdm.auto import tqdm

    with tqdm(desc="AVE training", unit="step") as bar:
        def on_step(done: int, total: int) -> None:
            bar.total = total
            bar.n = done
            bar.refresh()

        report = train_ave(clips, args.out, steps=args.steps, train_frames=train_frames, val_frames=val_frames,
                           models_dirs=args.models_dir, device=args.device, on_step=on_step, config=config,
                           init=args.init, resume=not args.no_resume)
    out = Path(args.out)
    write_json(out.with_name(out.name + ".json"), report)
    losses = report["losses"]
    print(f"{out}: {report['encoder_id']}, {report['steps']} steps in {report['seconds']['train']:.0f} s "
          f"({report['seconds']['per_step']:.2f} s/step)")
    print(f"sync loss {losses['sync']['start']:.4f} -> {losses['sync']['end']:.4f}; "
          f"reconstruction L1 {losses['recon']['start']:.4f} -> {losses['recon']['end']:.4f}")
    if report["val_auc"] is not None:
        print(f"held-out sync AUC {report['val_auc_start']:.3f} (start) -> {report['val_auc']:.3f}; "
              f"train AUC {report['train']['auc']:.3f}")
    print(json.dumps({k: report[k] for k in ("encoder_id", "val_auc", "losses")}))
    return 0
