"""How ``cuda_ext`` loads: nothing heavy at import, honest availability answers, one warning and the PyTorch twin
whenever the kernels cannot run — never a crash. These tests need no GPU and (mostly) no triton.
"""
from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

PACK_DIR = Path(__file__).resolve().parents[1]
BLOCK_TRITON = (
    "import sys\n"
    "class Block:\n"
    "    def find_spec(self, name, path=None, target=None):\n"
    "        if name.split('.')[0] == 'triton':\n"
    "            raise ImportError('blocked for test: ' + name)\n"
    "sys.meta_path.insert(0, Block())\n"
)


def run_python(code: str) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(PACK_DIR), "SYNCTALK_QUIET": "1"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=str(PACK_DIR), env=env)


def test_importing_cuda_ext_imports_no_triton_and_cpu_without_interpreter_is_unavailable():
    out = run_python(
        "import os; os.environ.pop('TRITON_INTERPRET', None)\n"
        "import sys, torch, cuda_ext, cuda_ext.renderer, cuda_ext.torch_twins, synctalk_lib.nerf.model\n"
        "print('triton' in sys.modules, any(k.startswith('cuda_ext.triton_') for k in sys.modules))\n"
        "ok, reason = cuda_ext.availability('composite', 'cpu')\n"
        "print(ok); print(reason)\n")
    assert out.returncode == 0, out.stderr
    imported, ok, reason = out.stdout.strip().split("\n", 2)
    assert imported.split() == ["False", "False"], "importing cuda_ext must not import triton or the kernels"
    assert ok == "False"
    assert "CUDA" in reason or "triton" in reason  # no GPU kernels on the CPU (or triton absent)


def test_another_cuda_ext_first_on_sys_path_is_never_used(tmp_path):
    """ComfyUI puts every pack's folder on sys.path; a generic ``cuda_ext`` of another pack placed before ours must
    not stand in for the pack's kernels (the library loads them by file location under a private name)."""
    fake = tmp_path / "cuda_ext"
    fake.mkdir()
    (fake / "__init__.py").write_text("raise RuntimeError('the wrong cuda_ext was imported')\n")
    (fake / "torch_twins.py").write_text("raise RuntimeError('the wrong cuda_ext was imported')\n")
    out = run_python(
        f"import sys; sys.path.insert(0, {str(tmp_path)!r})\n"
        "from pathlib import Path\n"
        "from synctalk_lib.nerf import backends\n"
        "module = backends.cuda_ext_module('torch_twins')\n"
        "print(Path(module.__file__).resolve())\n"
        "print(any(name == 'cuda_ext' or name.startswith('cuda_ext.') for name in sys.modules))\n")
    assert out.returncode == 0, out.stderr
    path, imported_fake = out.stdout.strip().splitlines()
    assert Path(path) == PACK_DIR / "cuda_ext" / "torch_twins.py"
    assert imported_fake == "False"


def test_without_triton_everything_falls_back_with_one_warning():
    """triton blocked: availability says why and how to fix it; the wrappers run the PyTorch twin; on a CUDA
    device the reason is warned exactly once (here simulated: the warning path does not need a GPU)."""
    out = run_python(BLOCK_TRITON + (
        "import warnings, torch, cuda_ext\n"
        "from cuda_ext import _backend\n"
        "from synctalk_lib.nerf.hashgrid import hash_grid_2d_torch, level_table\n"
        "ok, reason = cuda_ext.availability()\n"
        "print('AVAILABLE', ok)\n"
        "print('REASON', reason)\n"
        "t = level_table(3, 4, 6, 16)\n"
        "args = (torch.rand(10, 2), torch.randn(t.offsets[-1], 1), torch.tensor(t.offsets, dtype=torch.int32),\n"
        "        torch.tensor(t.scales), torch.tensor(t.strides), torch.tensor(t.dense))\n"
        "with warnings.catch_warnings():\n"
        "    warnings.simplefilter('error')  # CPU tensors: the twin is the normal path, no warning\n"
        "    print('EQUAL', torch.equal(cuda_ext.hash_grid_2d(*args), hash_grid_2d_torch(*args)))\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    for family in ('hashgrid', 'march', 'composite', 'hashgrid'):\n"
        "        _backend.usable(family, 'cuda')\n"
        "print('WARNINGS', len(caught))\n"
        "print('MESSAGE', caught[0].message)\n"
        "import sys; print('TRITON', 'triton' in sys.modules)\n"))
    assert out.returncode == 0, out.stderr
    lines = dict(line.split(" ", 1) for line in out.stdout.strip().splitlines())
    assert lines["AVAILABLE"] == "False"
    assert "triton" in lines["REASON"] and "pip install triton" in lines["REASON"]
    assert lines["EQUAL"] == "True"
    assert lines["WARNINGS"] == "1", "a missing triton must be warned about once, not once per kernel family"
    assert "falling back to the PyTorch" in lines["MESSAGE"]
    assert lines["TRITON"] == "False"


def test_a_kernel_that_fails_at_run_time_falls_back_once():
    from cuda_ext import _backend

    _backend.reset()
    state = dict(_backend._family_state)
    try:
        _backend._family_state[("hashgrid", "cuda")] = (True, "pretend it loaded")

        def broken():
            raise RuntimeError("ptxas fatal: pretend the compiler failed")

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            first = _backend.run_or_fallback("hashgrid", "cuda", broken, lambda: "twin")
            second = _backend.run_or_fallback("hashgrid", "cuda", broken, lambda: "twin")
        assert (first, second) == ("twin", "twin")
        assert len(caught) == 1 and "ptxas fatal" in str(caught[0].message)
        assert _backend.availability("hashgrid", "cuda")[0] is False
    finally:
        _backend.reset()
        _backend._family_state.update(state)


def test_out_of_memory_is_not_hidden():
    from cuda_ext import _backend

    _backend.reset()
    try:
        _backend._family_state[("march", "cuda")] = (True, "pretend it loaded")

        def oom():
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")

        with pytest.raises(torch.cuda.OutOfMemoryError):
            _backend.run_or_fallback("march", "cuda", oom, lambda: "twin")
    finally:
        _backend.reset()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the report of a machine without CUDA")
def test_backends_report_cuda_ext_unusable_without_cuda():
    from synctalk_lib.nerf.backends import available_backends

    report = available_backends()
    assert report["torch"] is True and report["cuda_ext"] is False


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_ext_loads_on_a_gpu():
    pytest.importorskip("triton", reason="triton is not installed")
    import cuda_ext
    from synctalk_lib.nerf.backends import available_backends, resolve_backend

    ok, reason = cuda_ext.availability()
    assert ok, reason
    assert available_backends()["cuda_ext"] is True
    assert resolve_backend("auto") == "cuda_ext"
