"""Accuracy of the vectorised sigmoid/tanh the recurrent kernels use (csrc/nnkern/rnn_common.h, on vmath.h),
against float64 (float32 path) and NumPy (float64 path), on every SIMD code path."""

import numpy as np
import pytest

import nnkern as nk

act = nk._core._rnn_activation


def exact(kind, x64):
    if kind == "tanh":
        return np.tanh(x64)
    e = np.exp(-np.abs(x64))  # no overflow; exact for large negative x too
    return np.where(x64 < 0, e, 1.0) / (1.0 + e)


def ulp_error(got, want64, dtype):
    """|got - want| in units of the spacing of want rounded to dtype (subnormal spacing at the bottom)."""
    w = want64.astype(dtype)
    spacing = np.spacing(np.abs(w)).astype(np.float64)
    spacing = np.maximum(spacing, np.finfo(dtype).smallest_subnormal)
    return np.abs(got.astype(np.float64) - want64) / spacing


def sweep(dtype):
    rng = np.random.default_rng(7)
    pts = [np.linspace(-30, 30, 200001), rng.standard_normal(100000) * 3, rng.standard_normal(50000) * 1e-3,
           np.geomspace(1e-30, 1e-2, 2000), -np.geomspace(1e-30, 1e-2, 2000), np.linspace(-100, 100, 10001),
           np.array([0.0, -0.0, 1e-45 if dtype == np.float32 else 5e-324, 0.5, -0.5, 0.625, 8.0, 9.0, 9.5, 10.0,
                     20.0, 80.0, 87.0, 88.0, 89.0, 700.0, 708.0, 710.0, -87.0, -88.0, -89.0, -700.0, -710.0])]
    return np.concatenate(pts).astype(dtype)


@pytest.mark.parametrize("kind", ["sigmoid", "tanh"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_accuracy(simd_level, kind, dtype):
    x = sweep(dtype)
    got = act(x, kind)
    assert got.dtype == dtype and got.shape == x.shape
    want = exact(kind, x.astype(np.float64))
    err = ulp_error(got, want, dtype)
    if kind == "sigmoid":
        # results below the normal range flush to 0, as torch's float sigmoid and nk.sigmoid
        # (vmath.exp_nonpositive); everything else stays within a few ulp
        flushed = (want < np.finfo(dtype).tiny) & (got == 0)
        assert np.all(got[want >= np.finfo(dtype).tiny] > 0)
        err = np.where(flushed, 0.0, err)
    # float32: a few ulp everywhere. float64: the reference is NumPy's own float64 result, itself
    # within ~1 ulp of the truth.
    limit = 4.0
    worst = np.argmax(err)
    assert err.max() <= limit, f"{kind} {dtype.__name__}: {err.max():.1f} ulp at x={x[worst]!r}"
    # saturation and symmetry
    assert np.all((got >= -1) & (got <= 1))
    if kind == "tanh":
        np.testing.assert_array_equal(act(-x, kind), -got)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_special_values(dtype):
    x = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0], dtype)
    s = act(x, "sigmoid")
    t = act(x, "tanh")
    assert np.isnan(s[0]) and np.isnan(t[0])
    np.testing.assert_array_equal(s[1:3], [1.0, 0.0 if dtype == np.float64 else s[2]])
    assert 0 <= s[2] < 1e-37
    np.testing.assert_array_equal(t[1:], [1.0, -1.0, 0.0, -0.0])
    assert np.signbit(t[4])
    assert s[3] == 0.5


def test_threads_and_empty():
    x = np.linspace(-5, 5, 100003).astype(np.float32)
    from conftest import num_threads
    with num_threads(1):
        a = act(x, "tanh")
    with num_threads(2):
        b = act(x, "tanh")
    np.testing.assert_array_equal(a, b)
    assert act(np.zeros(0, np.float32), "sigmoid").shape == (0,)
    with pytest.raises(ValueError, match="kind must be 'sigmoid' or 'tanh'"):
        act(x, "relu")
