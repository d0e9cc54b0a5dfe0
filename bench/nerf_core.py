"""Speed of the NeRF core on this machine: tri-plane encoder and field (samples/s), render (rays/s), training step.

    python bench/nerf_core.py                 # 1 and 2 threads, CPU (and CUDA when present)
    python bench/nerf_core.py --threads 1 --repeats 5 --json out.json

Numbers are the best of ``--repeats`` runs after a warm-up (the machine may be shared). The render scenes:
``fresh`` = an untrained model whose occupancy grid is all occupied (worst case: 16 samples on every ray that
crosses the box); ``head`` = the occupancy grid of a head-sized ellipsoid (what a trained model looks like: rays
that miss the head get no samples). The image is 512 x 512 from a camera 0.6 m in front of the head.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from synctalk_lib.nerf import NerfConfig, SyncTalkNeRF, head_pose_to_ngp, image_rays  # noqa: E402


def best_time(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return min(times)


def head_occupancy(model: SyncTalkNeRF) -> None:
    """Occupy an ellipsoid of about a head's size (NGP units: 0.25 m per unit)."""
    centres = model.occupancy.cell_centres()
    radii = torch.tensor([0.55, 0.4, 0.45], device=centres.device)
    inside = ((centres / radii) ** 2).sum(-1) < 1
    model.occupancy.occupied.copy_(inside.reshape(model.occupancy.occupied.shape))


def camera(size: int, device: torch.device):
    pose = np.eye(4, dtype=np.float32)
    pose[2, 3] = 0.6
    ngp = head_pose_to_ngp(pose).to(device)
    return image_rays(ngp, 1.2 * size, size / 2, size / 2, size, size)


def run(device: torch.device, threads: int, repeats: int, size: int) -> dict:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = SyncTalkNeRF(NerfConfig(num_codes=300)).to(device).eval()
    code, expr = torch.randn(32, device=device), torch.rand(7, device=device)
    results: dict = {"device": str(device), "threads": threads}
    m = 65536
    x = torch.rand(m, 3, device=device) * 2 - 1
    d = torch.nn.functional.normalize(torch.randn(m, 3, device=device), dim=-1)
    latent = model.latent_code(0)
    with torch.no_grad():
        t = best_time(lambda: model.field.encoder(x), repeats)
        results["triplane_samples_per_s"] = m / t
        t = best_time(lambda: model.field(x, d, code, expr, latent), repeats)
        results["field_samples_per_s"] = m / t

    def field_step():
        out = model.field(x, d, code, expr, latent)
        (out.rgb.sum() + out.sigma.sum()).backward()

    t = best_time(field_step, repeats)
    results["field_train_samples_per_s"] = m / t

    o, dirs = camera(size, device)
    bg = torch.ones(len(o), 3, device=device)
    lip = torch.ones(len(o), device=device)
    kwargs = dict(audio_code=code, expression=expr, code_index=None, bg=bg, lip_mask=lip, expr_mask=lip)
    for scene in ("fresh", "head"):
        if scene == "head":
            head_occupancy(model)
        with torch.no_grad():
            t = best_time(lambda: model.render(o, dirs, **kwargs), max(1, repeats // 2))
            out = model.render(o, dirs, **kwargs)
        results[f"render_{scene}_rays_per_s"] = len(o) / t
        results[f"render_{scene}_fps_{size}"] = 1.0 / t
        results[f"render_{scene}_rays_with_samples"] = float((out.alpha > 0).float().mean())

    # one training step on 4096 random rays of the frame (head occupancy), forward + backward + AdamW
    model.train()
    opt = torch.optim.AdamW(model.param_groups(), betas=(0.0, 0.99), eps=1e-8)
    gen = torch.Generator(device=device).manual_seed(0)
    pick = torch.randint(0, len(o), (4096,), generator=gen, device=device)
    target = torch.rand(4096, 3, device=device)

    def train_step():
        out = model.render(o[pick], dirs[pick], audio_code=code, expression=expr, code_index=3, bg=bg[pick],
                           lip_mask=lip[pick], expr_mask=lip[pick], perturb=True, generator=gen)
        loss = (out.rgb - target).abs().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    t = best_time(train_step, repeats)
    results["train_step_4096_rays_s"] = t
    results["train_rays_per_s"] = 4096 / t

    t = best_time(lambda: model.update_occupancy(code, expr), 1)
    results["occupancy_update_s"] = t
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, nargs="*", default=[1, 2], help="CPU thread counts to measure")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--size", type=int, default=512, help="render width = height")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    rows = [run(torch.device("cpu"), n, args.repeats, args.size) for n in args.threads]
    if torch.cuda.is_available():
        rows.append(run(torch.device("cuda"), torch.get_num_threads(), args.repeats, args.size))
    for row in rows:
        print(f"--- {row['device']}, {row['threads']} thread(s)")
        for key, value in row.items():
            if key not in ("device", "threads"):
                print(f"  {key:34s} {value:,.3f}" if isinstance(value, float) else f"  {key:34s} {value}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
