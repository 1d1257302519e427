"""Package-level behaviour: import, threads, SIMD level, which BLAS we use."""

import os
import subprocess
import sys

import numpy as np
import pytest

import nnkern as nk


def test_threads_roundtrip():
    old = nk.get_num_threads()
    nk.set_num_threads(1)
    assert nk.get_num_threads() == 1
    nk.set_num_threads(2)
    assert nk.get_num_threads() == min(2, max(2, old))
    nk.set_num_threads(old)


@pytest.mark.parametrize("bad", [0, -1, 100000])
def test_set_num_threads_rejects(bad):
    with pytest.raises(ValueError, match=r"set_num_threads: n must be in \[1, 1024\], got"):
        nk.set_num_threads(bad)


def test_set_num_threads_type():
    with pytest.raises(TypeError):
        nk.set_num_threads(1.5)


def test_default_threads_from_env():
    code = "import nnkern as nk; print(nk.get_num_threads(), nk.default_num_threads())"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["1", "1"]


def test_simd_level_env_override():
    code = "import nnkern as nk; print(nk.simd_level())"
    env = dict(os.environ, NNKERN_ISA="baseline")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "baseline"
    assert nk.simd_level() in ("baseline", "avx2", "avx512")


def test_uses_own_openblas_copy():
    cfg = nk.blas_config()
    assert cfg.startswith("OpenBLAS"), cfg
    # Our copy is scipy-openblas32 (32-bit ints), distinct from numpy's own BLAS library.
    import scipy_openblas32

    assert scipy_openblas32.get_openblas_config() == cfg


def test_version_and_api():
    assert nk.__version__
    for name in ["matmul", "set_num_threads", "get_num_threads", "reference", "ops"]:
        assert hasattr(nk, name), name
    with pytest.raises(AttributeError):
        nk.does_not_exist  # noqa: B018


def test_reference_matmul(rng):
    a = rng.standard_normal((5, 3))
    b = rng.standard_normal((4, 3))
    np.testing.assert_allclose(nk.reference.matmul(a, b, trans_b=True), a @ b.T)


def test_workspace_limit_roundtrip():
    old = nk.get_workspace_limit()
    try:
        nk.set_workspace_limit(8 << 20)
        assert nk.get_workspace_limit() == 8 << 20
        with pytest.raises(ValueError, match=r"set_workspace_limit: bytes must be >= 1048576"):
            nk.set_workspace_limit(10)
    finally:
        nk.set_workspace_limit(old)
