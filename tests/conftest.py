"""Shared test helpers (DESIGN.md section 5): thread switching, tolerances, NaN-prefilled outputs,
finite differences, optional torch, SIMD levels."""

import contextlib
import os

import numpy as np
import pytest

import nnkern as nk

try:  # torch is an optional peer: tests that need it skip cleanly when it is absent
    import torch
except ImportError:  # pragma: no cover - depends on the environment
    torch = None

requires_torch = pytest.mark.skipif(torch is None, reason="torch is not installed")

# float64 comparisons against the NumPy twins are tight; float32 ones allow a few ulp of
# reassociation (FMA, vector accumulation order).
TOL = {
    np.float64: dict(rtol=1e-12, atol=1e-12),
    np.float32: dict(rtol=1e-5, atol=1e-6),
}


def tol(dtype, scale=1.0):
    t = TOL[np.dtype(dtype).type]
    return dict(rtol=t["rtol"] * scale, atol=t["atol"] * scale)


def assert_close(actual, expected, dtype=None, scale=1.0, err_msg=""):
    dtype = dtype or np.asarray(expected).dtype
    np.testing.assert_allclose(actual, expected, err_msg=err_msg, **tol(dtype, scale))


def assert_bitwise_equal(a, b, err_msg=""):
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape and a.dtype == b.dtype, err_msg
    assert np.array_equal(a.view(np.uint8), b.view(np.uint8)), f"not bitwise equal {err_msg}"


@contextlib.contextmanager
def num_threads(n):
    old = nk.get_num_threads()
    nk.set_num_threads(n)
    try:
        yield
    finally:
        nk.set_num_threads(old)


def nan_filled(shape, dtype):
    """An out= buffer every element of which must be written (NaN survives otherwise)."""
    return np.full(shape, np.nan, dtype=dtype)


def numerical_grad(f, x, eps=1e-6):
    """Central finite differences of scalar f() with respect to float64 array x (in place)."""
    assert x.dtype == np.float64
    g = np.zeros_like(x)
    flat, gflat = x.reshape(-1), g.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        fp = f()
        flat[i] = old - eps
        fm = f()
        flat[i] = old
        gflat[i] = (fp - fm) / (2 * eps)
    return g


def available_simd_levels():
    order = ["baseline", "avx2", "avx512"]
    best = nk._core._detected_simd_level()
    return order[: order.index(best) + 1]


@pytest.fixture(params=available_simd_levels())
def simd_level(request):
    """Runs a test once per SIMD code path this CPU can execute, restoring the default after."""
    old = nk.simd_level()
    nk._core._set_simd_level(request.param)
    try:
        yield request.param
    finally:
        nk._core._set_simd_level(old)


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


@pytest.fixture(autouse=True)
def _restore_threads():
    old = nk.get_num_threads()
    yield
    nk.set_num_threads(old)


def pytest_report_header(config):
    return (f"nnkern {nk.__version__}: simd={nk.simd_level()} blas={nk.blas_corename()} "
            f"threads={nk.get_num_threads()} torch={'absent' if torch is None else torch.__version__} "
            f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}")


def pytest_configure(config):
    # Also registered in pyproject.toml; repeated here for runs outside the source tree (the wheel
    # test copies tests/ to a temporary directory, where pyproject's settings are not read).
    config.addinivalue_line("markers", "slow: long-running tests (deselect with -m 'not slow')")
    config.addinivalue_line("markers", "torch: compares against PyTorch (skipped when torch is absent)")
