"""nk.matmul (the GEMM wrapper under every GEMM-based kernel) against NumPy."""

import itertools

import numpy as np
import pytest

import nnkern as nk
from conftest import assert_bitwise_equal, assert_close, nan_filled, num_threads

SHAPES = [(1, 1, 1), (1, 7, 3), (5, 1, 9), (3, 4, 1), (17, 13, 11), (64, 64, 64), (63, 65, 129),
          (128, 300, 257), (257, 33, 500), (1, 1024, 64), (700, 600, 50)]


def op(x, t):
    return x.T if t else x


def make(rng, m, n, k, ta, tb, dtype):
    a = rng.standard_normal((k, m) if ta else (m, k)).astype(dtype)
    b = rng.standard_normal((n, k) if tb else (k, n)).astype(dtype)
    return a, b


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("ta,tb", list(itertools.product([False, True], repeat=2)))
@pytest.mark.parametrize("m,n,k", SHAPES)
def test_matches_numpy(rng, m, n, k, ta, tb, dtype):
    a, b = make(rng, m, n, k, ta, tb, dtype)
    ref = op(a, ta).astype(np.float64) @ op(b, tb).astype(np.float64)
    out = nan_filled((m, n), dtype)
    res = nk.matmul(a, b, out=out, trans_a=ta, trans_b=tb)
    assert res is out or np.shares_memory(res, out)
    scale = 10 * np.sqrt(k)  # error grows with the length of the dot products
    np.testing.assert_allclose(out, ref, rtol=1e-6 * scale if dtype == np.float32 else 1e-13 * scale,
                               atol=1e-6 * scale if dtype == np.float32 else 1e-13 * scale)
    assert_close(nk.matmul(a, b, trans_a=ta, trans_b=tb), out, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_alpha_beta_accumulate(rng, dtype):
    a, b = make(rng, 40, 70, 30, False, False, dtype)
    c0 = rng.standard_normal((40, 70)).astype(dtype)
    c = c0.copy()
    nk.matmul(a, b, out=c, alpha=0.5, beta=2.0)
    assert_close(c, 0.5 * (a @ b) + 2.0 * c0, dtype, scale=10)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("ta,tb", list(itertools.product([False, True], repeat=2)))
@pytest.mark.parametrize("m,n,k", [(1, 37, 20), (29, 1, 20), (29, 37, 1), (1, 1, 20), (1, 37, 1)])
def test_vector_paths_alpha_beta(rng, m, n, k, ta, tb, dtype):
    # one row, one column or K = 1 go to gemv/ger: C is scaled by beta first (beta = 0 must not
    # read a NaN-filled C), then the product is added
    a, b = make(rng, m, n, k, ta, tb, dtype)
    prod = op(a, ta).astype(np.float64) @ op(b, tb).astype(np.float64)
    c0 = rng.standard_normal((m, n)).astype(dtype)
    for beta in (0.0, 1.0, -2.0):
        c = nan_filled((m, n), dtype) if beta == 0.0 else c0.copy()
        nk.matmul(a, b, out=c, alpha=0.5, beta=beta, trans_a=ta, trans_b=tb)
        assert_close(c, 0.5 * prod + (beta * c0 if beta else 0.0), dtype, scale=10)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fortran_and_strided_inputs(rng, dtype):
    a, b = make(rng, 50, 60, 70, False, False, dtype)
    expected = nk.matmul(a, b)
    # Fortran order is used without a copy (flag flipped), strided views are copied: same values
    assert_close(nk.matmul(np.asfortranarray(a), np.asfortranarray(b)), expected, dtype)
    big = np.zeros((100, 140), dtype)
    big[::2, ::2] = a
    assert_close(nk.matmul(big[::2, :140:2], b), expected, dtype)
    assert_close(nk.matmul(a.T, b, trans_a=True), expected, dtype)


@pytest.mark.parametrize("m,n,k", [(0, 5, 3), (4, 0, 3), (4, 5, 0), (0, 0, 0)])
def test_empty(m, n, k):
    a = np.ones((m, k), np.float32)
    b = np.ones((k, n), np.float32)
    res = nk.matmul(a, b)
    assert res.shape == (m, n)
    assert np.all(res == 0)
    c = np.full((m, n), 3.0, np.float32)
    nk.matmul(a, b, out=c, beta=1.0)  # K == 0: out = beta * out
    assert np.all(c == 3.0)


def test_nan_propagates():
    a = np.ones((3, 4))
    a[1, 2] = np.nan
    b = np.ones((4, 2))
    res = nk.matmul(a, b)
    assert np.isnan(res[1]).all() and np.isfinite(res[[0, 2]]).all()


@pytest.mark.parametrize("m,n,k", [(512, 512, 512), (64, 1024, 256), (2240, 1024, 128), (40, 8192, 100),
                                   (8192, 40, 100)])
def test_thread_count_invariant(rng, m, n, k):
    a, b = make(rng, m, n, k, False, False, np.float32)
    results = []
    for t in (1, 2, 3):
        with num_threads(t):
            results.append(nk.matmul(a, b))
    assert nk._core._gemm_split(m, n, k)[0] > 1  # the shapes really are split
    for r in results[1:]:
        assert_bitwise_equal(results[0], r)


def test_errors():
    a = np.ones((3, 4), np.float32)
    with pytest.raises(ValueError, match=r"matmul: inner dimensions differ"):
        nk.matmul(a, np.ones((5, 2), np.float32))
    with pytest.raises(TypeError, match=r"matmul: b has dtype float64, expected float32 \(the dtype of a\)"):
        nk.matmul(a, np.ones((4, 2)))
    with pytest.raises(TypeError, match=r"matmul: a has dtype int64, expected float32 or float64"):
        nk.matmul(np.ones((3, 4), np.int64), a)
    with pytest.raises(TypeError, match=r"matmul: a must be a numpy.ndarray, got list"):
        nk.matmul([[1.0]], a)
    with pytest.raises(ValueError, match=r"matmul: a has 1 dims, expected 2"):
        nk.matmul(np.ones(3, np.float32), a)
    b = np.ones((4, 2), np.float32)
    with pytest.raises(ValueError, match=r"matmul: out has shape \(3, 3\), expected \(3, 2\)"):
        nk.matmul(a, b, out=np.empty((3, 3), np.float32))
    with pytest.raises(TypeError, match=r"matmul: out has dtype float64, expected float32"):
        nk.matmul(a, b, out=np.empty((3, 2)))
    with pytest.raises(ValueError, match=r"matmul: out must be C-contiguous"):
        nk.matmul(a, b, out=np.empty((2, 3), np.float32).T)
    ro = np.empty((3, 2), np.float32)
    ro.setflags(write=False)
    with pytest.raises(ValueError, match=r"matmul: out is read-only"):
        nk.matmul(a, b, out=ro)
    with pytest.raises(ValueError, match=r"matmul: beta=1.0 needs out="):
        nk.matmul(a, b, beta=1.0)
    sq = np.ones((4, 4), np.float32)
    with pytest.raises(ValueError, match=r"matmul: out shares memory with a"):
        nk.matmul(sq, sq.copy(), out=sq)
