"""The GPU check's markdown report, built from its JSON (``gpu_check.json``); every part tolerates a step that
failed or never ran (its cells say n/a)."""
from __future__ import annotations

from typing import Any

TARGETS = {"head_fps": 150.0, "portrait_fps": 120.0, "speedup": 5.0, "standard_minutes": 30.0}
"""The issue's targets: head-only >= 150 FPS and portrait >= 120 FPS at 512 x 512, cuda_ext >= 5x torch, the
standard preset in <= 30 minutes."""


def _get(data: Any, *keys: Any, default: Any = None) -> Any:
    for key in keys:
        if isinstance(data, dict) and key in data:
            data = data[key]
        elif isinstance(data, list) and isinstance(key, int) and -len(data) <= key < len(data):
            data = data[key]
        else:
            return default
    return data


def _num(value: Any, fmt: str = ".1f", unit: str = "") -> str:
    return "n/a" if value is None else f"{value:{fmt}}{unit}"


def _result(report: dict, step: str) -> dict:
    return _get(report, "steps", step, "result", default={}) or {}


def _by_backend(results: list[dict]) -> dict[str, dict]:
    return {r["backend"]: r for r in results or []}


# ------------------------------------------------------------------------------------------------ summaries
def _summary_env(r: dict) -> str:
    pk = r.get("packages", {})
    gpu = r.get("gpu") or "no CUDA GPU"
    return (f"{gpu} (sm {r.get('capability', '-')}, {r.get('gpu_memory_gib', '-')} GiB); torch {pk.get('torch')} "
            f"(CUDA {r.get('torch_cuda')}), triton {pk.get('triton')}, PyAV {pk.get('av') or 'absent'}, "
            f"MediaPipe {pk.get('mediapipe') or 'absent'}")


def _summary_tests(r: dict) -> str:
    counts = r.get("counts", {})
    return ", ".join(f"{v} {k}" for k, v in counts.items() if v) or "no tests ran"


def _summary_render(r: dict) -> str:
    parts = [f"{b} head {_num(x.get('head_fps'))} / portrait {_num(x.get('portrait_fps'))} FPS"
             for b, x in _by_backend(r.get("results")).items()]
    parts += [f"{b} skipped ({why})" for b, why in (r.get("skipped") or {}).items()]
    return "; ".join(parts)


def _summary_train_speed(r: dict) -> str:
    parts = [f"{b} {_num(x.get('it_per_s'), '.2f')} it/s at {x.get('rays')} rays"
             for b, x in _by_backend(r.get("results")).items()]
    parts += [f"{b} skipped" for b in (r.get("skipped") or {})]
    return "; ".join(parts)


def _summary_train_eval(r: dict) -> str:
    t, e = r.get("training", {}), r.get("evaluation", {})
    projected = t.get("projected_full_standard_seconds")
    return (f"{t.get('steps_reached')} / {t.get('planned_steps')} steps in {_num(t.get('train_seconds'))} s; "
            f"held-out PSNR head {_num(_get(e, 'head', 'psnr'), '.2f')} / portrait "
            f"{_num(_get(e, 'portrait', 'psnr'), '.2f')} dB; full standard preset projected "
            f"{_num(projected / 60 if projected else None)} min")


def _summary_variants(r: dict) -> str:
    rows = [x for run in r.get("runs", []) for x in run.get("results", [])]
    return "; ".join(f"{x['backend']} {'fp16' if x.get('amp') else 'fp32'} chunk {x.get('chunk') or 'default'}: "
                     f"head {_num(x.get('head_fps'))} FPS" for x in rows)


SUMMARIES = {"env": _summary_env, "tests": _summary_tests, "render": _summary_render,
             "train_speed": _summary_train_speed, "train_eval": _summary_train_eval,
             "render_variants": _summary_variants}


def _steps_table(report: dict) -> list[str]:
    rows = ["| step | status | seconds (limit) | summary |", "| --- | --- | --- | --- |"]
    for name, rec in report.get("steps", {}).items():
        result = rec.get("result") or {}
        try:
            summary = SUMMARIES[name](result) if result else ""
        except (KeyError, TypeError, ValueError) as exc:  # a partial result: say so instead of failing the report
            summary = f"(incomplete result: {exc!r})"
        rows.append(f"| {name} | **{rec.get('status')}** | {rec.get('seconds', '-')} ({rec.get('limit_s', '-')}) | "
                    f"{summary} |")
    return rows


# -------------------------------------------------------------------------------------------------- sections
def _render_section(report: dict) -> list[str]:
    runs = [_result(report, "render")] + _get(_result(report, "render_variants"), "runs", default=[])
    rows = [x for run in runs for x in run.get("results", [])]
    if not rows:
        return []
    out = ["", f"### Render speed ({rows[0].get('scene')}, {rows[0].get('size')}, batches of {rows[0].get('frames')}"
           " frames resident on the device, median after warm-up)", "",
           "| backend | amp | chunk | head FPS | portrait FPS | peak GPU MiB | head covers |",
           "| --- | --- | --- | --- | --- | --- | --- |"]
    for x in rows:
        out.append(f"| {x['backend']} | {'fp16' if x.get('amp') else 'fp32'} | {x.get('chunk') or 'default'} | "
                   f"{_num(x.get('head_fps'))} | {_num(x.get('portrait_fps'))} | {_num(x.get('peak_gpu_mib'), '.0f')} |"
                   f" {_num(100 * x['head_coverage'] if 'head_coverage' in x else None, '.0f', ' %')} |")
    return out


def _train_speed_section(report: dict) -> list[str]:
    rows = _get(_result(report, "train_speed"), "results", default=[])
    if not rows:
        return []
    out = ["", "### Training speed (synthetic head, one frame per step)", "",
           "| backend | rays/step | it/s | peak GPU MiB | standard preset at this rate (lower bound) |",
           "| --- | --- | --- | --- | --- |"]
    for x in rows:
        projected = x.get("preset_projected_s")
        out.append(f"| {x['backend']} | {x['rays']} | {_num(x.get('it_per_s'), '.2f')} | "
                   f"{_num(x.get('peak_gpu_mib'), '.0f')} | {_num(projected / 60 if projected else None)} min |")
    return out


def _training_rows(r: dict) -> list[str]:
    t, cal = r.get("training", {}), _get(r, "training", "calibration", default={})
    projected = t.get("projected_full_standard_seconds")
    early = " - stopped early" if t.get("stopped_early") else ""
    clip = r.get("clip_check", {})
    return [
        "| measure | value |", "| --- | --- |",
        f"| steps reached / planned (full preset: 40000) | {t.get('steps_reached')} / {t.get('planned_steps')} "
        f"({t.get('coarse_steps')} coarse + {t.get('fine_steps')} fine){early} |",
        f"| training time / time box | {_num(t.get('train_seconds'))} s / {_num(t.get('time_box_seconds'))} s |",
        f"| seconds per step, coarse / fine (real trainer) | {_num(cal.get('coarse_s_per_step'), '.4f')} / "
        f"{_num(cal.get('fine_s_per_step'), '.4f')} |",
        f"| projected full standard preset (30k + 10k steps) | {_num(projected / 60 if projected else None)} min |",
        f"| peak GPU memory, training / whole step | {_num(t.get('peak_gpu_mib_training'), '.0f')} / "
        f"{_num(r.get('peak_gpu_mib'), '.0f')} MiB |",
        f"| clip decoded there vs bundle | {clip.get('frames_differing')} of {clip.get('frames')} frames differ; "
        f"audio identical: {clip.get('audio_identical')} |",
        f"| held-out render speed (evaluate, incl. compositing at the clip size) | "
        f"{_num(_get(r, 'evaluation', 'render_fps'))} fps |",
        f"| render path of the trained model (backend setting, hash grids, fast path available) | "
        f"{_get(r, 'evaluation', 'render_path', 'config_backend')}, "
        f"{_get(r, 'evaluation', 'render_path', 'hash_grids')}, "
        f"{_get(r, 'evaluation', 'render_path', 'fast_render_path_available')} |"]


def _score_rows(e: dict) -> list[str]:
    rows = [f"| held-out frames {_frames_label(e)} | PSNR dB | SSIM | LPIPS | LMD px | sharpness: Laplacian ratio | "
            "high-pass corr |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for mode in ("head", "portrait"):
        s, sh = e.get(mode, {}), _get(e, "sharpness", mode, default={})
        rows.append(f"| {mode} | {_num(s.get('psnr'), '.2f')} | {_num(s.get('ssim'), '.4f')} | "
                    f"{_num(s.get('lpips'), '.4f')} | {_num(s.get('lmd'), '.2f')} | "
                    f"{_num(sh.get('laplacian_ratio'), '.3f')} | {_num(sh.get('highpass_corr'), '.3f')} |")
    return rows


def _train_eval_section(report: dict) -> list[str]:
    r = _result(report, "train_eval")
    if not r:
        return []
    out = ["", "### Standard preset on the reference clip, time-boxed, then held-out frames", ""]
    out += _training_rows(r) + [""] + _score_rows(r.get("evaluation", {}))
    return out + [""] + [f"- {note}" for note in r.get("notes", [])]


def _frames_label(evaluation: dict) -> str:
    frames = evaluation.get("frames") or []
    return f"{frames[0]}-{frames[-1]}" if frames else ""


def targets(report: dict) -> list[tuple[str, str, str, bool | None]]:
    """(target, value, threshold, met) rows; met is None when the number is missing."""
    render = _by_backend(_result(report, "render").get("results"))
    speed = _by_backend(_result(report, "train_speed").get("results"))
    fast, ref = render.get("cuda_ext", {}), render.get("torch", {})
    rows: list[tuple[str, Any, float, bool]] = []

    def add(name: str, value: float | None, threshold: float, higher: bool = True, fmt: str = ".1f") -> None:
        met = None if value is None else (value >= threshold if higher else value <= threshold)
        rows.append((name, _num(value, fmt), f"{'>=' if higher else '<='} {threshold:g}", met))

    add("head-only FPS at 512x512 (cuda_ext)", fast.get("head_fps"), TARGETS["head_fps"])
    add("portrait FPS at 512x512 (cuda_ext)", fast.get("portrait_fps"), TARGETS["portrait_fps"])
    add("render speed-up cuda_ext / torch", _ratio(fast.get("head_fps"), ref.get("head_fps")), TARGETS["speedup"])
    add("training speed-up cuda_ext / torch", _ratio(_get(speed, "cuda_ext", "it_per_s"),
                                                     _get(speed, "torch", "it_per_s")), TARGETS["speedup"])
    projected = _get(_result(report, "train_eval"), "training", "projected_full_standard_seconds")
    add("standard preset, projected minutes", projected / 60 if projected else None, TARGETS["standard_minutes"],
        higher=False)
    path = _get(_result(report, "train_eval"), "evaluation", "render_path", default={})
    if not report.get("dry_run"):
        fast = None if not path else (path.get("hash_grids") == ["cuda_ext"] and path.get("fast_render_path_available"))
        rows.append(("a trained model (backend auto) renders with cuda_ext on CUDA", str(path.get("hash_grids")),
                     "cuda_ext", fast))
    counts = _get(_result(report, "tests"), "counts", default={})
    ok = None if not counts else counts.get("failed", 0) + counts.get("error", 0) == 0
    rows.append(("kernel and GPU parity tests pass", _summary_tests(_result(report, "tests")), "all", ok))
    return rows


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


def _targets_section(report: dict) -> list[str]:
    out = ["", "### Targets", "", "| target | value | wanted | met |", "| --- | --- | --- | --- |"]
    for name, value, threshold, met in targets(report):
        out.append(f"| {name} | {value} | {threshold} | {'n/a' if met is None else ('yes' if met else '**no**')} |")
    return out


def _failures_section(report: dict) -> list[str]:
    out = []
    for name, rec in report.get("steps", {}).items():
        if rec.get("error"):
            out += ["", f"### {name}: {rec.get('status')}", "", "```", rec["error"], "```"]
        for case in _get(rec, "result", "not_passed", default=[]) or []:
            if case["outcome"] in ("failed", "error"):
                out.append(f"- {case['test']}: {case['message']}")
    return out


def markdown_report(report: dict) -> str:
    env = _result(report, "env")
    title = "GPU check" + (" - DRY RUN on the CPU (tiny sizes: the numbers only show that the code paths work)"
                           if report.get("dry_run") else "")
    lines = [f"# {title}", "",
             f"{report.get('date')}; {_summary_env(env) if env else 'environment unknown'}; "
             f"{report.get('seconds', 0)} s of a {report.get('budget_s', 0):.0f} s budget.", "",
             f"Command: `{report.get('command')}`; on the device tool: `{report.get('device_run')}`.", ""]
    lines += _steps_table(report)
    for section in (_render_section, _train_speed_section, _train_eval_section, _targets_section,
                    _failures_section):
        lines += section(report)
    return "\n".join(lines) + "\n"
