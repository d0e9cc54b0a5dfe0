"""How the kernels load (``synctalk_lib.nerf.backends``): nothing heavy at import, honest availability answers,
one warning and the PyTorch twin whenever the kernels cannot run — never a crash; and only this pack's ``cuda_ext``
is ever used. These tests need no GPU and (mostly) no triton.
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


def test_importing_the_library_imports_no_triton_and_cpu_without_interpreter_is_unavailable():
    out = run_python(
        "import os; os.environ.pop('TRITON_INTERPRET', None)\n"
        "import sys, torch, synctalk_lib.nerf.model\n"
        "from synctalk_lib.nerf import backends\n"
        "backends.twins()\n"
        "kernels = [k for k in sys.modules if k.startswith(backends.CUDA_EXT_NAME + '.triton_')]\n"
        "print('triton' in sys.modules, bool(kernels))\n"
        "ok, reason = backends.availability('composite', 'cpu')\n"
        "print(ok); print(reason)\n"
        "print('triton' in sys.modules)\n")
    assert out.returncode == 0, out.stderr
    imported, ok, reason, imported_after = out.stdout.strip().split("\n", 3)
    assert imported.split() == ["False", "False"], "importing the library must not import triton or the kernels"
    assert ok == "False"
    assert "CUDA" in reason and "TRITON_INTERPRET" in reason
    assert imported_after == "False", "asking about the CPU without the interpreter needs no triton"


def test_another_cuda_ext_first_on_sys_path_is_never_used(tmp_path):
    """ComfyUI puts every pack's folder on sys.path; a generic ``cuda_ext`` of another pack placed before ours must
    not stand in for the pack's kernels (the library loads them by file location under a private name)."""
    fake = tmp_path / "cuda_ext"
    fake.mkdir()
    for name in ("__init__", "march", "composite", "hashgrid"):
        (fake / f"{name}.py").write_text("raise RuntimeError('the wrong cuda_ext was imported')\n")
    out = run_python(
        f"import sys; sys.path.insert(0, {str(tmp_path)!r})\n"
        "from pathlib import Path\n"
        "import torch\n"
        "from synctalk_lib.nerf import backends\n"
        "from synctalk_lib.nerf.field import FieldOutputs\n"
        "from synctalk_lib.nerf.renderer import volume_render\n"
        "def field(p, d, r):\n"
        "    m = len(p)\n"
        "    return FieldOutputs(torch.full((m,), 50.0), torch.ones(m, 3), torch.ones(m), torch.ones(m), torch.ones(m))\n"
        "o = torch.tensor([[0.0, 0.0, -2.0]]); d = torch.tensor([[0.0, 0.0, 1.0]])\n"
        "out = volume_render(field, o, d, torch.zeros(3), aabb=(-1, -1, -1, 1, 1, 1), step=0.01, max_steps=16)\n"
        "print(round(float(out.alpha), 4))\n"
        "print(Path(backends.cuda_ext_module('march').__file__).resolve())\n"
        "print(any(name == 'cuda_ext' or name.startswith('cuda_ext.') for name in sys.modules))\n")
    assert out.returncode == 0, out.stderr
    alpha, path, imported_fake = out.stdout.strip().splitlines()
    assert alpha == "0.9997"  # 16 samples of density 50, 0.01 apart: 1 - exp(-8)
    assert Path(path) == PACK_DIR / "cuda_ext" / "march.py"
    assert imported_fake == "False"


def test_without_triton_everything_falls_back_with_one_warning():
    """triton blocked: availability says why and how to fix it; the twins render; an explicit ``cuda_ext`` request
    that cannot run is warned about exactly once; ``auto`` falls back silently."""
    out = run_python(BLOCK_TRITON + (
        "import os; os.environ['TRITON_INTERPRET'] = '1'\n"
        "import warnings, torch\n"
        "from synctalk_lib.nerf import backends\n"
        "from synctalk_lib.nerf.hashgrid import level_table\n"
        "ok, reason = backends.availability('all', 'cpu')\n"
        "print('AVAILABLE', ok)\n"
        "print('REASON', reason)\n"
        "t = level_table(3, 4, 6, 16)\n"
        "args = (torch.rand(10, 2), torch.randn(t.offsets[-1], 1), torch.tensor(t.offsets, dtype=torch.int32),\n"
        "        torch.tensor(t.scales), torch.tensor(t.strides), torch.tensor(t.dense))\n"
        "with warnings.catch_warnings():\n"
        "    warnings.simplefilter('error')  # CPU tensors: the twin is the normal path, no warning\n"
        "    fast = backends.triton_kernels().hash_grid_2d(*args)\n"
        "    print('EQUAL', torch.equal(fast, backends.twins().hash_grid_2d(*args)))\n"
        "    print('AUTO', backends.kernels_for('cuda', 'auto').name)\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    names = {backends.kernels_for('cuda', 'cuda_ext').name for _ in range(3)}\n"
        "print('CHOSEN', ' '.join(sorted(names)))\n"
        "print('WARNINGS', len(caught))\n"
        "print('MESSAGE', caught[0].message)\n"
        "import sys; print('TRITON', 'triton' in sys.modules)\n"))
    assert out.returncode == 0, out.stderr
    lines = dict(line.split(" ", 1) for line in out.stdout.strip().splitlines())
    assert lines["AVAILABLE"] == "False"
    assert "triton" in lines["REASON"] and "pip install triton" in lines["REASON"]
    assert lines["EQUAL"] == "True"
    assert lines["AUTO"] == "torch" and lines["CHOSEN"] == "torch"
    assert lines["WARNINGS"] == "1", "an unusable cuda_ext must be warned about once, not once per call"
    assert "falling back to the PyTorch" in lines["MESSAGE"]
    assert lines["TRITON"] == "False"


@pytest.fixture()
def fresh_backends():
    from synctalk_lib.nerf import backends

    saved = dict(backends._family_state)
    backends.reset()
    yield backends
    backends.reset()
    backends._family_state.update(saved)


def test_a_kernel_that_fails_at_run_time_falls_back_once(fresh_backends):
    backends = fresh_backends
    backends._family_state[("hashgrid", "cuda")] = (True, "pretend it loaded")

    def broken():
        raise RuntimeError("ptxas fatal: pretend the compiler failed")

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = backends._run("hashgrid", "cuda", broken, lambda: "twin")
        second = backends._run("hashgrid", "cuda", broken, lambda: "twin")
    assert (first, second) == ("twin", "twin")
    assert len(caught) == 1 and "ptxas fatal" in str(caught[0].message)
    assert backends.availability("hashgrid", "cuda")[0] is False


def test_out_of_memory_is_not_hidden(fresh_backends):
    backends = fresh_backends
    backends._family_state[("march", "cuda")] = (True, "pretend it loaded")

    def oom():
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    with pytest.raises(torch.cuda.OutOfMemoryError):
        backends._run("march", "cuda", oom, lambda: "twin")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the report of a machine without CUDA")
def test_backends_report_cuda_ext_unusable_without_cuda():
    from synctalk_lib.nerf.backends import available_backends, kernels_for

    report = available_backends()
    assert report["torch"] is True and report["cuda_ext"] is False
    assert kernels_for("cpu", "cuda_ext").name == "torch"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_ext_loads_on_a_gpu():
    pytest.importorskip("triton", reason="triton is not installed")
    from synctalk_lib.nerf.backends import availability, available_backends, kernels_for, resolve_backend

    ok, reason = availability()
    assert ok, reason
    assert available_backends()["cuda_ext"] is True
    assert resolve_backend("auto") == "cuda_ext"
    assert kernels_for("cuda", "auto").name == "cuda_ext" and kernels_for("cuda", "torch").name == "torch"
