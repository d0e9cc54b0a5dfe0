"""Render speed of the head NeRF per backend: head-only and portrait frames per second.

    python bench/render_fps.py                                   # 512 x 512, every backend that works here
    python bench/render_fps.py --size 64 --frames 2 --repeats 3  # CPU smoke test
    python bench/render_fps.py --model models/synctalk/may       # a trained model folder (its poses and masks)

What is timed (per backend, after ``--warmup`` untimed passes, median of ``--repeats`` passes):

- **head**: ``SyncTalkNeRF.render`` of a batch of ``--frames`` frames at ``--size`` x ``--size`` (one render call
  per frame, each with its own pose, lip code and expression); rays, codes and masks are prepared on the device
  beforehand and the images stay there. FPS = frames / seconds.
- **portrait**: the same render, then the library's portrait blend of every frame into its reference frame
  (``synctalk_lib.portrait.blend.prepare_render`` + mask blend, as ``blend_stream`` does; NumPy on the CPU, so
  this includes the device-to-host copy). Uses the model's face geometry with ``--model``, else the alpha-based mask.

Scenes: with ``--model`` the trained subject (its first frames' poses). Without it a synthetic head: the full-size
model (official grid and MLP sizes) whose density is fitted for ``--fit-steps`` steps to an opaque head-sized
ellipsoid and whose occupancy grid comes from that density — like a trained model, rays stop at the surface, which
is what the early ray termination of the fast path exploits. Each backend fits its own copy from the same seed.

Backends: ``torch`` (PyTorch reference), ``cuda_ext`` (Triton kernels: hash grid, marching, compositing, until-opaque
inference loop), ``tinycudann`` (tiny-cuda-nn hash grids + PyTorch renderer). Backends that cannot run here are
listed with the reason. The last lines are markdown table rows for BENCHMARKS.md (device, date, settings).
"""
from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from synctalk_lib.nerf import NerfConfig, SyncTalkNeRF, head_pose_to_ngp, image_rays  # noqa: E402

BACKENDS = ("torch", "cuda_ext", "tinycudann")
HEAD_RADII = (0.55, 0.4, 0.45)
"""Ellipsoid of the synthetic head, NGP units (x, y = depth axis, z); 1 NGP unit = 0.25 m."""


# ------------------------------------------------------------------------------------------------ environment
def device_name(device: torch.device) -> str:
    """GPU model, or the CPU model and thread count."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"CPU {name} ({torch.get_num_threads()} threads)"


def backend_status(device: torch.device) -> dict[str, str | None]:
    """``{backend: None if usable, else the reason}`` for the rendering device."""
    status: dict[str, str | None] = {"torch": None}
    if device.type != "cuda":
        status["cuda_ext"] = "needs a CUDA GPU"
        status["tinycudann"] = "needs a CUDA GPU"
        return status
    from synctalk_lib.nerf import backends

    ok, reason = backends.availability("all", device)
    status["cuda_ext"] = None if ok else reason
    status["tinycudann"] = None if backends.tcnn_module() is not None else \
        "tinycudann is not installed (see cuda_ext/README.md)"
    return status


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak_memory(device: torch.device) -> None:
    """Start a new peak-memory window on a CUDA device (no-op elsewhere)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_mib(device: torch.device) -> float | None:
    """Peak memory PyTorch allocated on a CUDA device since :func:`reset_peak_memory`, MiB (None elsewhere)."""
    if device.type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / 2**20


def timed(fn: Callable[[], object], device: torch.device, warmup: int, repeats: int) -> list[float]:
    """Seconds of ``repeats`` runs of ``fn`` after ``warmup`` untimed runs (device synchronised)."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return times


# ------------------------------------------------------------------------------------------------- scenes
@dataclass
class Frames:
    """Per-frame render inputs, already on the device."""

    rays_o: list[torch.Tensor]
    rays_d: list[torch.Tensor]
    codes: torch.Tensor
    """[F, A] lip codes."""
    expression: torch.Tensor
    """[F, E]."""
    lip: list[torch.Tensor]
    eye: list[torch.Tensor]
    height: int
    width: int
    originals: np.ndarray
    """[F, H, W, 3] float32 reference frames for the portrait blend."""
    masks: list | None
    """Per frame ``portrait.blend.BlendMasks`` (from the camera and face geometry), or None (alpha-based mask)."""


def synthetic_model(backend: str, device: torch.device, *, fit_steps: int, fit_points: int, seed: int,
                    config_overrides: dict | None = None) -> SyncTalkNeRF:
    """Full-size model fitted to an opaque head ellipsoid; occupancy grid from its density (the real update)."""
    torch.manual_seed(seed)
    config = NerfConfig(num_codes=16, backend=backend, **(config_overrides or {}))
    model = SyncTalkNeRF(config).to(device)
    gen = torch.Generator(device=device).manual_seed(seed)
    code = torch.zeros(config.audio_dim, device=device)
    expr = torch.zeros(config.expression_dim, device=device)
    radii = torch.tensor(HEAD_RADII, device=device)
    box = torch.tensor([1.0, 0.5, 1.0], device=device)
    optimizer = torch.optim.Adam(model.field.parameters(), lr=1e-2)
    for _ in range(fit_steps):
        x = (torch.rand(fit_points, 3, generator=gen, device=device) * 2 - 1) * box
        inside = ((x / radii) ** 2).sum(-1) < 1
        log_sigma = torch.log(model.field.density(x, code, expr).clamp(min=1e-6))
        loss = (log_sigma - torch.where(inside, 6.0, -4.0)).square().mean()  # sigma ~ 400 inside: opaque
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        model.update_occupancy(code, expr, decay=0.0, generator=gen)
    return model.eval()


def grid_override(resolution: int | None) -> dict | None:
    """NerfConfig overrides for a coarser occupancy grid (CPU smoke runs), or None for the model's own."""
    return {"grid_resolution": int(resolution)} if resolution else None


def synthetic_frames(model: SyncTalkNeRF, count: int, size: int, device: torch.device, seed: int) -> Frames:
    """Cameras 0.6 m in front of the head with small head turns; random lip codes and expressions."""
    gen = np.random.default_rng(seed)
    rays_o, rays_d, lip, eye = [], [], [], []
    rows = torch.arange(size, device=device).repeat_interleave(size)
    lower = (rows >= size // 2).float()  # lip region: lower half of the image
    for _ in range(count):
        yaw, pitch = np.radians(gen.uniform(-8, 8)), np.radians(gen.uniform(-5, 5))
        rot_y = np.array([[np.cos(yaw), 0, np.sin(yaw)], [0, 1, 0], [-np.sin(yaw), 0, np.cos(yaw)]])
        rot_x = np.array([[1, 0, 0], [0, np.cos(pitch), -np.sin(pitch)], [0, np.sin(pitch), np.cos(pitch)]])
        pose = np.eye(4, dtype=np.float32)
        pose[:3, :3] = rot_y @ rot_x
        pose[:3, 3] = pose[:3, :3] @ np.array([0.0, 0.0, 0.6])
        o, d = image_rays(head_pose_to_ngp(pose).to(device), 1.2 * size, size / 2, size / 2, size, size)
        rays_o.append(o)
        rays_d.append(d)
        lip.append(lower)
        eye.append(1.0 - lower)
    cfg = model.config
    tgen = torch.Generator().manual_seed(seed)
    codes = (torch.randn(count, cfg.audio_dim, generator=tgen) * 0.5).to(device)
    expression = torch.rand(count, cfg.expression_dim, generator=tgen).to(device)
    originals = np.random.default_rng(seed).random((count, size, size, 3), dtype=np.float32)
    return Frames(rays_o, rays_d, codes, expression, lip, eye, size, size, originals, None)


def model_folder_frames(folder: str, backend: str, count: int, device: torch.device) -> tuple[SyncTalkNeRF, Frames]:
    """A trained model folder: its render size, intrinsics, first poses, expressions, region gates, landmarks."""
    from synctalk_lib.nerf.frame_rays import frame_rays
    from synctalk_lib.nerf.inference import model_ray_subject
    from synctalk_lib.nerf.model_folder import SyncTalkModel

    subject_model = SyncTalkModel.from_pretrained(folder)
    nerf = subject_model.nerf
    if nerf.config.backend != backend:
        rebuilt = SyncTalkNeRF(nerf.config.replace(backend=backend))
        if backend == "tinycudann":
            raise SystemExit("a trained model folder holds official-layout hash grids; tinycudann cannot load them")
        rebuilt.load_state_dict(nerf.state_dict())
        nerf = rebuilt
    nerf = nerf.to(device).eval()
    subject = subject_model.subject
    h, w = subject_model.render_height, subject_model.render_width
    ray_subject = model_ray_subject(subject_model)
    refs = np.arange(min(count, subject.num_frames))
    rays = [frame_rays(ray_subject, int(j), device=device) for j in refs]
    rays_o, rays_d = [r.rays_o for r in rays], [r.rays_d for r in rays]
    lip, eye = [r.lip_mask for r in rays], [r.expr_mask for r in rays]
    gen = torch.Generator().manual_seed(0)
    codes = (torch.randn(len(refs), nerf.config.audio_dim, generator=gen) * 0.5).to(device)
    expression = torch.from_numpy(np.ascontiguousarray(subject.expression[refs], np.float32)).to(device)
    import cv2

    originals = np.stack([cv2.resize(subject.frames.frame(int(j)), (w, h)).astype(np.float32) / 255.0
                          for j in refs])
    from synctalk_lib.portrait.blend import pose_masks
    from synctalk_lib.pose.face_geometry import FaceGeometry, PoseRegions

    regions = PoseRegions.for_size(FaceGeometry.from_track(subject.track, subject.pose), subject.pose, h, w)
    masks = [pose_masks(regions, subject.pose.c2w[int(j)]) for j in refs]
    return nerf, Frames(rays_o, rays_d, codes, expression, lip, eye, h, w, originals, masks)


# -------------------------------------------------------------------------------------------------- timing
def render_batch(model: SyncTalkNeRF, frames: Frames, *, amp: bool, chunk: int | None = None) -> list:
    """Render every frame (one render call per frame, ``chunk`` rays per internal chunk; None = the model's
    default); outputs stay on the device."""
    device = frames.codes.device
    outs = []
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.float16, enabled=amp):
        for f in range(len(frames.rays_o)):
            outs.append(model.render(frames.rays_o[f], frames.rays_d[f], audio_code=frames.codes[f],
                                     expression=frames.expression[f], code_index=None,
                                     bg=torch.zeros(3, device=device), lip_mask=frames.lip[f],
                                     expr_mask=frames.eye[f], chunk_size=chunk))
    return outs


def portrait_batch(model: SyncTalkNeRF, frames: Frames, *, amp: bool, chunk: int | None = None) -> list[np.ndarray]:
    """Head render, then the portrait blend of each frame into its reference frame (as ``blend_stream``)."""
    from synctalk_lib.portrait.blend import alpha_masks, blend_frame

    outs = render_batch(model, frames, amp=amp, chunk=chunk)
    blended = []
    for f, out in enumerate(outs):
        rgb = out.rgb.reshape(frames.height, frames.width, 3).float().cpu().numpy()
        alpha = out.alpha.reshape(frames.height, frames.width).float().clamp(0, 1).cpu().numpy()
        original = frames.originals[f]
        masks = frames.masks[f] if frames.masks is not None else alpha_masks(alpha)
        blended.append(blend_frame(rgb, alpha, original, masks))
    return blended


def measure(backend: str, args: argparse.Namespace, device: torch.device) -> dict:
    reset_peak_memory(device)
    started = time.perf_counter()
    if args.model:
        model, frames = model_folder_frames(args.model, backend, args.frames, device)
        scene = f"model {Path(args.model).name}"
    else:
        model = synthetic_model(backend, device, fit_steps=args.fit_steps, fit_points=args.fit_points, seed=0,
                                config_overrides=grid_override(args.grid_resolution))
        frames = synthetic_frames(model, args.frames, args.size, device, seed=1)
        scene = f"synthetic head (fit {args.fit_steps} steps)"
    setup = time.perf_counter() - started
    count = len(frames.rays_o)
    head_times = timed(lambda: render_batch(model, frames, amp=args.amp, chunk=args.chunk), device, args.warmup,
                       args.repeats)
    outs = render_batch(model, frames, amp=args.amp, chunk=args.chunk)
    coverage = float(torch.stack([(o.alpha > 0.5).float().mean() for o in outs]).mean())
    result = {"backend": backend, "scene": scene, "frames": count, "size": f"{frames.width}x{frames.height}",
              "amp": args.amp, "chunk": args.chunk, "setup_s": setup, "head_s": head_times,
              "head_fps": count / statistics.median(head_times), "head_coverage": coverage}
    if not args.no_portrait:
        portrait_times = timed(lambda: portrait_batch(model, frames, amp=args.amp, chunk=args.chunk), device, 1,
                               args.repeats)
        result["portrait_s"] = portrait_times
        result["portrait_fps"] = count / statistics.median(portrait_times)
    result["peak_gpu_mib"] = peak_memory_mib(device)  # model, resident frames and rendering, the fit included
    return result


def markdown_rows(results: list[dict], device: torch.device) -> list[str]:
    today = datetime.date.today().isoformat()
    name = device_name(device)
    rows = ["| date | device | backend | scene | size | frames | amp | chunk | head FPS | portrait FPS "
            "| peak GPU MiB |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in results:
        portrait = f"{r['portrait_fps']:.1f}" if "portrait_fps" in r else "-"
        peak = f"{r['peak_gpu_mib']:.0f}" if r.get("peak_gpu_mib") is not None else "-"
        rows.append(f"| {today} | {name} | {r['backend']} | {r['scene']} | {r['size']} | {r['frames']} | "
                    f"{'fp16' if r['amp'] else 'fp32'} | {r['chunk'] or 'default'} | {r['head_fps']:.1f} | "
                    f"{portrait} | {peak} |")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backends", default=",".join(BACKENDS),
                        help="comma-separated subset of " + ", ".join(BACKENDS))
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    parser.add_argument("--size", type=int, default=512, help="image width = height (synthetic scene)")
    parser.add_argument("--frames", type=int, default=8, help="frames per timed batch")
    parser.add_argument("--warmup", type=int, default=2, help="untimed batches first")
    parser.add_argument("--repeats", type=int, default=10, help="timed batches (the median is reported)")
    parser.add_argument("--fit-steps", type=int, default=300, help="density fitting steps of the synthetic head")
    parser.add_argument("--fit-points", type=int, default=65536, help="points per fitting step")
    parser.add_argument("--grid-resolution", type=int, default=None,
                        help="occupancy grid cells per axis of the synthetic head (default: the model's, 128)")
    parser.add_argument("--model", default=None, help="trained model folder instead of the synthetic head")
    parser.add_argument("--amp", action="store_true", help="render under float16 autocast")
    parser.add_argument("--chunk", type=int, default=None,
                        help="rays per render chunk (default: the model's, 65536 on CUDA; a whole 512x512 frame "
                             "is 262144 and gives the until-opaque loop fewer rounds)")
    parser.add_argument("--no-portrait", action="store_true", help="skip the portrait measurement")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    status = backend_status(device)
    results, skipped = [], {}
    print(f"device: {device_name(device)}; torch {torch.__version__}")
    for backend in [b.strip() for b in args.backends.split(",") if b.strip()]:
        if backend not in status:
            raise SystemExit(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
        if status[backend] is not None:
            print(f"{backend:10s} skipped: {status[backend]}")
            skipped[backend] = status[backend]
            continue
        result = measure(backend, args, device)
        results.append(result)
        portrait = f", portrait {result['portrait_fps']:.2f} FPS" if "portrait_fps" in result else ""
        print(f"{backend:10s} head {result['head_fps']:.2f} FPS{portrait} ({result['frames']} frames "
              f"{result['size']}, median of {args.repeats}; head covers {result['head_coverage']:.0%} of the image; "
              f"scene setup {result['setup_s']:.1f} s)")
    print()
    print("\n".join(markdown_rows(results, device)))
    if args.json:
        args.json.write_text(json.dumps({"device": device_name(device), "date": datetime.date.today().isoformat(),
                                         "torch": torch.__version__, "results": results, "skipped": skipped},
                                        indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
