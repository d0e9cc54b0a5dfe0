"""Compile every Triton kernel specialisation the pack uses for a given NVIDIA architecture — no GPU needed.

Triton's interpreter (``TRITON_INTERPRET=1``) checks what the kernels compute, but it runs them as NumPy and
accepts code the GPU compiler rejects (e.g. a kernel reading a plain Python global). This module closes that gap:
it lowers each kernel through Triton's real pipeline (TTIR -> TTGIR -> LLVM IR -> PTX -> cubin with the ``ptxas``
that ships in the Triton wheel) for a target such as ``sm_90`` (H100) or ``sm_80`` (A100, RTX 30xx), on any
machine. CI runs it; ``python -m cuda_ext.compile_check --arch 86`` prints each kernel's registers and local
memory (spills).

    results = compile_all(arch=90)          # [KernelReport(name, registers, local_bytes, seconds), ...]
"""
from __future__ import annotations

import argparse
import re
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

TORCH_TO_TRITON = {"f32": "*fp32", "f16": "*fp16", "i32": "*i32", "i64": "*i64", "b": "*i1"}


@dataclass(frozen=True)
class KernelReport:
    """One compiled specialisation."""

    name: str
    """Kernel and specialisation, e.g. ``hashgrid_fwd[fp16,C=1]``."""
    registers: int
    """Registers per thread (0 when the backend does not report it)."""
    local_bytes: int
    """Thread-local memory (register spills; 0 is good)."""
    seconds: float
    """Compile time."""
    fused_multiply_adds: int
    """``fma.rn.f32`` instructions in the PTX (0 expected: kernels are compiled with ``enable_fp_fusion=False`` so
    positions round like PyTorch's separate multiply and add)."""


def _specs() -> list[tuple[str, object, dict[str, str], dict[str, object], int]]:
    """(name, kernel, runtime-argument types, constexpr values, warps) for every specialisation the wrappers
    launch."""
    from . import triton_composite as tc
    from . import triton_hashgrid as th
    from . import triton_march as tm

    specs = []
    for table in ("f32", "f16"):
        for channels in (1, 2):
            args = {"u_ptr": "*fp32", "emb_ptr": TORCH_TO_TRITON[table], "out_ptr": TORCH_TO_TRITON[table],
                    "offsets_ptr": "*i32", "scales_ptr": "*fp32", "strides_ptr": "*i64", "dense_ptr": "*i1",
                    "n_points": "i32", "n_levels": "i32"}
            specs.append((f"hashgrid_fwd[{table},C={channels}]", th._hashgrid_fwd_kernel, args,
                          {"C": channels, "BLOCK": th.BLOCK}, th.NUM_WARPS))
            for need_emb, need_u in ((True, False), (True, True), (False, True)):
                bargs = {"u_ptr": "*fp32", "emb_ptr": TORCH_TO_TRITON[table], "grad_out_ptr": TORCH_TO_TRITON[table],
                         "grad_emb_ptr": "*fp32", "grad_u_ptr": "*fp32", "offsets_ptr": "*i32", "scales_ptr": "*fp32",
                         "strides_ptr": "*i64", "dense_ptr": "*i1", "n_points": "i32", "n_levels": "i32"}
                specs.append((f"hashgrid_bwd[{table},C={channels},emb={need_emb},u={need_u}]",
                               th._hashgrid_bwd_kernel, bargs,
                               {"C": channels, "NEED_EMB": need_emb, "NEED_U": need_u, "BLOCK": th.BLOCK},
                               th.NUM_WARPS))
    march_args = {"o_ptr": "*fp32", "d_ptr": "*fp32", "near_ptr": "*fp32", "far_ptr": "*fp32", "jitter_ptr": "*fp32",
                  "grid_ptr": "*i1", "offset_ptr": "*i64", "pos_ptr": "*fp32", "t_ptr": "*fp32", "ray_ptr": "*i64",
                  "count_ptr": "*i32", "n_rays": "i32", "n_candidates": "i32", "max_steps": "i32", "step": "fp32",
                  "bound": "fp32", "half_res": "fp32"}
    for write in (False, True):
        specs.append((f"march[write={write}]", tm._march_kernel, march_args,
                      {"res": 128, "HAS_GRID": True, "WRITE": write, "BLOCK": tm.BLOCK}, tm.NUM_WARPS))
    for c, p, values in ((4, 2, "f32"), (4, 2, "f16"), (3, 0, "f32")):
        fargs = {"sigma_ptr": TORCH_TO_TRITON[values], "delta_ptr": "*fp32", "t_ptr": "*fp32",
                 "val_ptr": TORCH_TO_TRITON[values], "plain_ptr": TORCH_TO_TRITON[values], "start_ptr": "*i64",
                 "count_ptr": "*i32", "opacity_ptr": "*fp32", "depth_ptr": "*fp32", "weighted_ptr": "*fp32",
                 "plain_out_ptr": "*fp32", "n_rays": "i32", "max_count": "i32", "eps": "fp32"}
        const = {"C": c, "CP": tc._pow2(c), "P": p, "PP": tc._pow2(p), "BLOCK": tc.BLOCK}
        specs.append((f"composite_fwd[{values},C={c},P={p}]", tc._composite_fwd_kernel, fargs, const, tc.NUM_WARPS))
        bargs = {"sigma_ptr": TORCH_TO_TRITON[values], "delta_ptr": "*fp32", "t_ptr": "*fp32",
                 "val_ptr": TORCH_TO_TRITON[values], "start_ptr": "*i64", "count_ptr": "*i32", "g_opacity_ptr": "*fp32",
                 "g_depth_ptr": "*fp32", "g_weighted_ptr": "*fp32", "g_plain_ptr": "*fp32", "g_sigma_ptr": "*fp32",
                 "g_val_ptr": "*fp32", "g_plain_in_ptr": "*fp32", "n_rays": "i32", "max_count": "i32", "eps": "fp32"}
        specs.append((f"composite_bwd[{values},C={c},P={p}]", tc._composite_bwd_kernel, bargs, const, tc.NUM_WARPS))
    return specs


def compile_all(arch: int = 90, only: str | None = None) -> list[KernelReport]:
    """Compile every specialisation for ``sm_<arch>`` (PTX and cubin); raises the compiler's error on failure.

    Args:
        arch: compute capability as an int (80 = A100/RTX 30xx, 86, 89 = RTX 40xx, 90 = H100/H200).
        only: compile only specialisations whose name contains this text.
    """
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    reports = []
    for name, kernel, args, constexprs, warps in _specs():
        if only and only not in name:
            continue
        signature = dict(args)
        signature.update({key: "constexpr" for key in constexprs})
        missing = [a for a in kernel.arg_names if a not in signature]
        if missing:
            raise ValueError(f"{name}: no type given for {missing}")
        start = time.perf_counter()
        compiled = triton.compile(ASTSource(fn=kernel, signature={a: signature[a] for a in kernel.arg_names},
                                            constexprs=constexprs),
                                  target=GPUTarget("cuda", arch, 32),
                                  options={"enable_fp_fusion": False, "num_warps": warps})
        if not compiled.asm.get("cubin"):
            raise RuntimeError(f"{name}: the compiler produced no cubin for sm_{arch}")
        registers, local = _resource_usage(compiled.asm["cubin"])
        fmas = len(re.findall(r"\bfma\.rn\.f32\b", compiled.asm["ptx"]))
        reports.append(KernelReport(name, registers, local, time.perf_counter() - start, fmas))
    return reports


def _resource_usage(cubin: bytes) -> tuple[int, int]:
    """(registers, local bytes) read from the cubin with the ``cuobjdump`` bundled in Triton; (-1, -1) if absent."""
    import triton

    tool = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"
    if not tool.is_file():
        return -1, -1
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "kernel.cubin"
        path.write_bytes(cubin)
        text = subprocess.run([str(tool), "--dump-resource-usage", str(path)], capture_output=True, text=True,
                              check=False).stdout
    registers = re.search(r"REG:(\d+)", text)
    local = re.search(r"LOCAL:(\d+)", text)
    return (int(registers.group(1)) if registers else -1, int(local.group(1)) if local else -1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Compile the cuda_ext Triton kernels for an NVIDIA architecture "
                                                 "(no GPU needed).")
    parser.add_argument("--arch", type=int, default=90, help="compute capability, e.g. 80, 86, 89, 90")
    parser.add_argument("--only", default=None, help="compile only kernels whose name contains this")
    args = parser.parse_args(argv)
    for report in compile_all(args.arch, args.only):
        print(f"sm_{args.arch}  {report.name:60s} registers={report.registers:3d} local={report.local_bytes}B "
              f"fma={report.fused_multiply_adds} {report.seconds:5.2f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
