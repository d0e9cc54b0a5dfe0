"""Training speed of the head NeRF per backend: iterations per second at 65,536 rays per step, and the projected
time of a training preset.

    python bench/train_speed.py                                      # every backend that works here
    python bench/train_speed.py --rays 2048 --steps 5 --warmup 1 --preset-steps 3   # CPU smoke test

One iteration is what ``Trainer.train_step`` does in the coarse stage: (every ``occupancy_interval`` = 16 steps) an
occupancy-grid update from the current density, then a render of ``--rays`` random rays of a frame with jittered
samples (``perturb=True``), an L1 colour loss plus the uncertainty/attention terms' inputs, backward, and an AdamW
step over the model's parameter groups (the original's learning rates). The scene is the synthetic head of
``bench/render_fps.py`` (density fitted to an opaque ellipsoid, so samples stop at the surface as in training).
Timing starts after ``--warmup`` iterations and covers ``--steps`` iterations (device synchronised);
it/s = steps / seconds, occupancy updates included.

``--preset standard`` also measures at that preset's rays per step (unless ``--rays`` is already that) and projects
the preset's wall time:
(coarse + fine steps) / it/s. This leaves out data loading, checkpoints, LPIPS in the fine stage and the held-out
evaluation — a lower bound; the real number comes from ``python -m synctalk_lib train SUBJECT --preset standard``
(its ``train_report.json`` has the seconds). The last lines are markdown table rows for BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from render_fps import (BACKENDS, backend_status, device_name, grid_override, peak_memory_mib,  # noqa: E402
                        reset_peak_memory, sync, synthetic_frames, synthetic_model)

from synctalk_lib.nerf.presets import get_preset  # noqa: E402


def iterations_per_second(backend: str, device: torch.device, *, rays: int, steps: int, warmup: int,
                          fit_steps: int, fit_points: int, size: int, occupancy_interval: int = 16,
                          grid_resolution: int | None = None) -> dict:
    reset_peak_memory(device)
    model = synthetic_model(backend, device, fit_steps=fit_steps, fit_points=fit_points, seed=0,
                            config_overrides=grid_override(grid_resolution))
    frames = synthetic_frames(model, 4, size, device, seed=1)
    model.train()
    optimizer = torch.optim.AdamW(model.param_groups(), betas=(0.9, 0.99), eps=1e-8)
    gen = torch.Generator(device=device).manual_seed(0)
    cpu_gen = torch.Generator().manual_seed(0)
    targets = [torch.rand(len(o), 3, device=device) for o in frames.rays_o]

    def step(i: int) -> None:
        f = i % len(frames.rays_o)
        code, expr = frames.codes[f], frames.expression[f]
        if occupancy_interval > 0 and i % occupancy_interval == 0:
            model.update_occupancy(code, expr, generator=gen)
        pick = torch.randint(0, len(frames.rays_o[f]), (rays,), generator=gen, device=device)
        out = model.render(frames.rays_o[f][pick], frames.rays_d[f][pick], audio_code=code, expression=expr,
                           code_index=f, bg=torch.zeros(rays, 3, device=device), lip_mask=frames.lip[f][pick],
                           expr_mask=frames.eye[f][pick], perturb=True, generator=cpu_gen)
        loss = (out.rgb - targets[f][pick]).abs().mean() + 1e-4 * (out.amb_aud.mean() + out.amb_eye.mean())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for i in range(warmup):
        step(i)
    sync(device)
    start = time.perf_counter()
    for i in range(warmup, warmup + steps):
        step(i)
    sync(device)
    seconds = time.perf_counter() - start
    return {"backend": backend, "rays": rays, "steps": steps, "seconds": seconds, "it_per_s": steps / seconds,
            "peak_gpu_mib": peak_memory_mib(device)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backends", default=",".join(BACKENDS),
                        help="comma-separated subset of " + ", ".join(BACKENDS))
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    parser.add_argument("--rays", type=int, default=65536, help="rays per iteration")
    parser.add_argument("--steps", type=int, default=100, help="timed iterations")
    parser.add_argument("--warmup", type=int, default=10, help="untimed iterations first")
    parser.add_argument("--size", type=int, default=512, help="frame size the rays are drawn from")
    parser.add_argument("--fit-steps", type=int, default=300, help="density fitting steps of the synthetic head")
    parser.add_argument("--fit-points", type=int, default=65536, help="points per fitting step")
    parser.add_argument("--grid-resolution", type=int, default=None,
                        help="occupancy grid cells per axis (default: the model's, 128)")
    parser.add_argument("--preset", default="standard", help="preset whose wall time is projected ('' = none)")
    parser.add_argument("--preset-steps", type=int, default=50, help="timed iterations at the preset's ray count")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    status = backend_status(device)
    preset = get_preset(args.preset) if args.preset else None
    common = dict(warmup=args.warmup, fit_steps=args.fit_steps, fit_points=args.fit_points, size=args.size,
                  grid_resolution=args.grid_resolution)
    results, skipped = [], {}
    print(f"device: {device_name(device)}; torch {torch.__version__}")
    for backend in [b.strip() for b in args.backends.split(",") if b.strip()]:
        if backend not in status:
            raise SystemExit(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
        if status[backend] is not None:
            print(f"{backend:10s} skipped: {status[backend]}")
            skipped[backend] = status[backend]
            continue
        result = iterations_per_second(backend, device, rays=args.rays, steps=args.steps, **common)
        line = f"{backend:10s} {result['it_per_s']:.2f} it/s at {args.rays} rays/step"
        if preset is not None:
            at_preset = result if args.rays == preset.rays_per_step else iterations_per_second(
                backend, device, rays=preset.rays_per_step, steps=args.preset_steps, **common)
            result["preset"] = preset.preset
            result["preset_rays"] = preset.rays_per_step
            result["preset_it_per_s"] = at_preset["it_per_s"]
            result["preset_projected_s"] = preset.total_steps / at_preset["it_per_s"]
            line += (f"; {at_preset['it_per_s']:.2f} it/s at {preset.rays_per_step} rays -> '{preset.preset}' "
                     f"({preset.total_steps} steps) projected {result['preset_projected_s'] / 60:.1f} min")
        results.append(result)
        print(line)
    today = datetime.date.today().isoformat()
    name = device_name(device)
    print()
    print("| date | device | backend | rays/step | it/s | preset | projected preset time |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in results:
        projected = f"{r['preset_projected_s'] / 60:.1f} min (lower bound)" if "preset_projected_s" in r else "-"
        print(f"| {today} | {name} | {r['backend']} | {r['rays']} | {r['it_per_s']:.2f} | {r.get('preset', '-')} | "
              f"{projected} |")
    if args.json:
        args.json.write_text(json.dumps({"device": name, "date": today, "torch": torch.__version__,
                                         "results": results, "skipped": skipped}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
