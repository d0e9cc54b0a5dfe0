"""``evaluate MODEL_DIR --subject SUBJECT_DIR --json OUT.json``: quality and lip-sync numbers of a trained model.

A thin caller of ``synctalk_lib.pipeline.evaluation.evaluate_model`` (its docstring says what each number is):

* held-out frames (default: those the model was not trained on), head render and Portrait-Sync blend (unless
  ``--no-portrait``): PSNR, SSIM, LPIPS (null without its weights), LMD, jawOpen r, Laplacian-variance ratio and
  high-pass correlation; ``--heldout-audio own,reversed,silent`` renders them with the clip's own audio and with
  that stretch time-reversed or silenced;
* ``--audio SPEECH`` (repeatable) and ``--silence``: frames driven by new speech / by silence, measured for mouth
  opening: the lip-sync proxy r against the speech envelope, the reference leak, jawOpen mean / std, Laplacian
  ratio; next to the real clip's own values and its closed-mouth jawOpen range.

The JSON holds every number (``EvaluationReport.to_dict``) plus "model" and "subject"; ``--save-frames DIR`` writes a
few output frames as PNGs to look at.
"""
from __future__ import annotations

import argparse
from pathlib import Path

NAME = "evaluate"
HELP = "held-out PSNR / SSIM / LPIPS / LMD / sharpness and drive lip-sync metrics of a trained model"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="model folder, a name in the models folder, or a Hub repo id")
    parser.add_argument("--subject", type=Path, required=True, help="subject folder written by `preprocess`")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--frames", default=None,
                        help="held-out frames: 'start:stop' (default: the model's held-out frames)")
    parser.add_argument("--heldout-audio", default="own",
                        help="comma-separated audio variants for the held-out frames: own, reversed, silent "
                             "('none' skips the held-out part)")
    parser.add_argument("--audio", type=Path, action="append", default=[],
                        help="speech file to drive the model with (repeatable): lip-sync proxy, reference leak, "
                             "jawOpen statistics")
    parser.add_argument("--silence", action="store_true", help="also drive with silence")
    parser.add_argument("--max-frames", type=int, default=0, help="frames rendered per drive (0 = the whole speech; "
                                                                   "silence: as many as the clip)")
    parser.add_argument("--max-lag", type=int, default=2, help="lip-sync proxy: best lag searched within +-frames")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or a torch device")
    parser.add_argument("--no-lpips", action="store_true", help="skip LPIPS (reported as null)")
    parser.add_argument("--no-lmd", action="store_true", help="skip the mouth landmark distance and jawOpen r (null)")
    parser.add_argument("--no-portrait", action="store_true",
                        help="skip the portrait entries (renders blended into their original frames)")
    parser.add_argument("--save-frames", type=Path, default=None, help="write a few output frames here as PNGs")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    parser.add_argument("--models-dir", action="append", default=None, help="models folder(s)")


def speech_names(paths: list[Path]) -> dict[str, Path]:
    """Drive names from speech files: the file stem, made unique with a number where stems repeat."""
    names: dict[str, Path] = {}
    for path in paths:
        name, k = path.stem, 2
        while name in names or name == "silence":
            name, k = f"{path.stem}_{k}", k + 1
        names[name] = path
    return names


def save_frames(samples: dict, folder: Path) -> list[Path]:
    """Write ``report.samples`` as PNGs named by their keys."""
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, frame in samples.items():
        path = folder / f"{name}.png"
        cv2.imwrite(str(path), frame[..., ::-1])
        written.append(path)
    return written


def run(args: argparse.Namespace) -> int:
    import torch

    from synctalk_lib.devices import resolve_device
    from synctalk_lib.errors import InputError
    from synctalk_lib.pipeline.evaluation import evaluate_model, report_tables
    from synctalk_lib.nerf.dataset import split_frames
    from synctalk_lib.nerf.model_folder import SyncTalkModel
    from synctalk_lib.paths import write_json
    from synctalk_lib.progress import cli_progress
    from synctalk_lib.subject import SubjectDir

    if args.threads:
        torch.set_num_threads(int(args.threads))
    variants = [] if args.heldout_audio.strip() == "none" else \
        [v.strip() for v in args.heldout_audio.split(",") if v.strip()]
    device = resolve_device(args.device)
    model = SyncTalkModel.from_pretrained(args.model, models_dirs=args.models_dir, device=device)
    subject = SubjectDir(args.subject).load_subject()
    frames = split_frames(subject.num_frames, args.frames)[1].tolist() if args.frames else None
    for path in args.audio:
        if not path.is_file():
            raise InputError(f"speech file not found: {path}")
    report = evaluate_model(model, subject, frames=frames, heldout_audio=variants,
                            speech=speech_names(args.audio), silence=args.silence, portrait=not args.no_portrait,
                            max_frames=args.max_frames, with_lpips=not args.no_lpips, with_lmd=not args.no_lmd,
                            max_lag=args.max_lag, device=device, models_dirs=args.models_dir,
                            samples=4 if args.save_frames else 0, progress=cli_progress)
    data = report.to_dict()
    data["model"] = str(model.folder) if model.folder else model.name
    data["subject"] = str(args.subject)
    if args.json:
        write_json(args.json, data)
    print(report_tables(data))
    if args.save_frames:
        print(f"wrote {len(save_frames(report.samples, args.save_frames))} frames to {args.save_frames}")
    for note in report.notes:
        print(f"note: {note}")
    return 0
