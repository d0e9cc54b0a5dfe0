"""AVE pre-training on the reference clip: losses and the held-out lip-sync AUC.

    SYNCTALK_SHARED=/work/shared python bench/ave_pretrain.py [--steps 300] [--threads 1] [--out DIR]

Trains on frames 0-299 of may_short.mp4 (random initial weights, default settings) and evaluates on frames
300-330, which training never sees: for every held-out frame, the discriminator scores its mouth window against
its own audio (synced) and against the audio of every other held-out frame at least 3 frames away (shifted).
AUC = P(score of a synced pair > score of a shifted pair); 0.5 is chance. ``auc_near`` counts only shifts of 3-7
frames (120-280 ms: same head pose and lighting, only the lips can tell). Prints the loss curve, the AUCs before
and after training, and the time per step; the weights go to ``--out`` (a temporary folder by default).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from synctalk_lib.audio.ave_train import AVETrainConfig, train_ave  # noqa: E402
from synctalk_lib.media.prepare import prepare_clip  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    shared = Path(os.environ.get("SYNCTALK_SHARED", "../shared"))
    parser.add_argument("--video", type=Path, default=shared / "data" / "may_short.mp4")
    parser.add_argument("--models-dir", type=Path, default=shared / "models")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=AVETrainConfig.batch_size)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=None, help="folder for ave.safetensors and its report")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        out_dir = args.out or Path(tmp)
        started = time.perf_counter()
        # the reference video is already a 512x512 face-centred 25 fps clip: keep its frames as they are
        clip = prepare_clip(args.video, Path(tmp) / "cache", fps=25.0, crop="none", models_dirs=[args.models_dir])
        config = AVETrainConfig(batch_size=args.batch_size, seed=args.seed, eval_every=25)
        report = train_ave([clip], out_dir / "ave.safetensors", steps=args.steps, train_frames=(0, 299),
                           val_frames=(300, 330), models_dirs=[args.models_dir], device=args.device, config=config,
                           resume=False)
        total = time.perf_counter() - started
        (out_dir / "ave_pretrain_report.json").write_text(json.dumps(report, indent=2, default=str))

    print(f"clip {report['clips'][0]['name']}: train frames 0-299 ({report['clips'][0]['train_used']} used), "
          f"held-out 300-330 ({report['clips'][0]['val_used']} used); {args.steps} steps, batch {args.batch_size}, "
          f"{torch.get_num_threads()} thread(s), device {report['device']}")
    print("step  sync-BCE  recon-L1  held-out-AUC")
    for entry in report["history"]:
        if "val_auc" in entry:
            print(f"{entry['step']:4d}  {entry['sync']:.4f}    {entry['recon']:.4f}    {entry['val_auc']:.3f}")
    losses = report["losses"]
    print(f"sync loss (mean of first/last 10% of steps): {losses['sync']['start']:.4f} -> {losses['sync']['end']:.4f}")
    print(f"reconstruction L1:                           {losses['recon']['start']:.4f} -> "
          f"{losses['recon']['end']:.4f}")
    val = report["val"]
    print(f"held-out AUC: {report['val_auc_start']:.3f} before -> {report['val_auc']:.3f} after "
          f"(near shifts 3-7 frames: {val['auc_near']:.3f}; synced mean {val['synced_mean']:.3f}, "
          f"shifted mean {val['shifted_mean']:.3f}, {val['frames']} frames, {val['pairs']} shifted pairs)")
    print(f"train AUC: {report['train']['auc']:.3f}")
    print(f"time: {report['seconds']['prepare']:.1f} s landmarks + crops, {report['seconds']['train']:.1f} s training "
          f"({report['seconds']['per_step']:.3f} s/step), {total:.1f} s in all")


if __name__ == "__main__":
    main()
