"""softmax / log_softmax over any dim, forward and backward: against the NumPy twins, finite
differences, torch, NaN-prefilled and in-place outputs, thread counts, SIMD levels, extreme values
and bad inputs."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nnkern as nk
from conftest import (assert_bitwise_equal, assert_close, nan_filled, num_threads, numerical_grad, requires_torch,
                      torch)
from nnkern import reference as ref

KINDS = {
    "softmax": (nk.softmax, nk.softmax_backward, ref.softmax, ref.softmax_backward),
    "log_softmax": (nk.log_softmax, nk.log_softmax_backward, ref.log_softmax, ref.log_softmax_backward),
}
DTYPES = [np.float32, np.float64]

# (shape, dim): contiguous rows of SIMD-width neighbours, strided dims, size-1 and empty dims
CASES = [((n,), -1) for n in (1, 2, 7, 8, 9, 15, 16, 17, 31, 33, 63, 65, 1000, 3001)] + [
    ((5, 10), -1), ((5, 10), 0), ((5, 10), 1), ((3, 4, 5), 0), ((3, 4, 5), 1), ((3, 4, 5), 2), ((3, 4, 5), -2),
    ((2, 3, 17, 5), 1), ((2, 70, 40), 1), ((1, 1), 0), ((4, 1), 1), ((4, 1), 0), ((0, 5), 1), ((5, 0), 1),
    ((5, 0), 0), ((2, 0, 3), 2), ((300, 7), -1), ((7, 300), 0), ((2, 3000, 3), 1), ((1, 5000), 1), ((), 0),
    ((), -1),
]


def _data(rng, shape, dtype, scale=3.0):
    return np.asarray(rng.standard_normal(shape) * scale, dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", list(KINDS))
def test_matches_twin(rng, kind, dtype):
    fwd, bwd, rfwd, rbwd = KINDS[kind]
    for shape, dim in CASES:
        x = _data(rng, shape, dtype)
        y = fwd(x, dim)
        assert y.shape == x.shape and y.dtype == dtype
        assert_close(y, rfwd(x, dim), dtype, err_msg=f"{kind} {shape} dim={dim}")
        dy = _data(rng, shape, dtype, 1.0)
        assert_close(bwd(dy, y, dim), rbwd(dy, y, dim), dtype, scale=4, err_msg=f"{kind} bwd {shape} dim={dim}")


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("shape,dim", [((3, 6), 1), ((3, 6), 0), ((2, 3, 4), 1), ((5,), 0)])
def test_backward_finite_differences(rng, kind, shape, dim):
    fwd, bwd, _, _ = KINDS[kind]
    x = rng.standard_normal(shape)
    dy = rng.standard_normal(shape)
    dx = bwd(dy, fwd(x, dim), dim)
    np.testing.assert_allclose(dx, numerical_grad(lambda: float((fwd(x, dim) * dy).sum()), x), rtol=1e-6, atol=1e-8)


@requires_torch
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("shape,dim", [((64, 10), -1), ((16, 1000), 1), ((8, 5, 6, 7), 1), ((8, 5, 6), 0)])
def test_matches_torch(rng, kind, shape, dim, dtype):
    import torch.nn.functional as F

    fwd, bwd, _, _ = KINDS[kind]
    x = _data(rng, shape, dtype, 5.0)
    dy = _data(rng, shape, dtype, 1.0)
    t = torch.from_numpy(x.copy()).requires_grad_(True)
    ty = (F.softmax if kind == "softmax" else F.log_softmax)(t, dim)
    ty.backward(torch.from_numpy(dy))
    y = fwd(x, dim)
    assert_close(y, ty.detach().numpy(), dtype, scale=2)
    assert_close(bwd(dy, y, dim), t.grad.numpy(), dtype, scale=4)


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("shape,dim", [((9, 33), -1), ((5, 33, 7), 1)])
def test_out_nan_prefilled_and_inplace(rng, kind, shape, dim):
    fwd, bwd, _, _ = KINDS[kind]
    x = _data(rng, shape, np.float32)
    y = fwd(x, dim)
    out = nan_filled(shape, np.float32)
    assert fwd(x, dim, out=out) is out
    assert_bitwise_equal(out, y)
    xi = x.copy()
    assert fwd(xi, dim, out=xi) is xi
    assert_bitwise_equal(xi, y)
    dy = _data(rng, shape, np.float32, 1.0)
    dx = bwd(dy, y, dim)
    out = nan_filled(shape, np.float32)
    bwd(dy, y, dim, out=out)
    assert_bitwise_equal(out, dx)
    dyi, yi = dy.copy(), y.copy()
    bwd(dyi, y, dim, out=dyi)
    bwd(dy, yi, dim, out=yi)
    assert_bitwise_equal(dyi, dx)
    assert_bitwise_equal(yi, dx)


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("shape,dim", [((3001, 100), -1), ((65536, 10), -1), ((2001, 3), 1), ((50, 70, 40), 1),
                                       ((400, 30, 5), 1), ((3, 20000), 1)])
def test_threads_bitwise(rng, kind, shape, dim):
    fwd, bwd, _, _ = KINDS[kind]
    x = _data(rng, shape, np.float32)
    dy = _data(rng, shape, np.float32, 1.0)
    res = []
    for t in (1, 2, 3):
        with num_threads(t):
            y = fwd(x, dim)
            res.append((y, bwd(dy, y, dim)))
    for y, dx in res[1:]:
        assert_bitwise_equal(y, res[0][0])
        assert_bitwise_equal(dx, res[0][1])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", list(KINDS))
def test_every_simd_level(simd_level, rng, kind, dtype):
    fwd, bwd, rfwd, rbwd = KINDS[kind]
    for shape, dim in [((7, 9), -1), ((3, 17), 1), ((4, 33), 0), ((3, 5, 19), 1), ((2, 1000), -1)]:
        x = _data(rng, shape, dtype)
        y = fwd(x, dim)
        assert_close(y, rfwd(x, dim), dtype)
        dy = _data(rng, shape, dtype, 1.0)
        assert_close(bwd(dy, y, dim), rbwd(dy, y, dim), dtype, scale=4)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("dim", [0, 1])
def test_extreme_values(dtype, dim):
    big = np.finfo(dtype).max
    x = np.array([[1e4, -1e4, 0.0, 3.0],
                  [-np.inf, 0.0, 1.0, -np.inf],
                  [np.inf, 0.0, 1.0, 2.0],
                  [np.nan, 0.0, 1.0, 2.0],
                  [big, big, -big, 0.0],
                  [-np.inf, -np.inf, -np.inf, -np.inf]], dtype)
    xx = x if dim == 1 else np.ascontiguousarray(x.T)
    with np.errstate(all="ignore"):
        for kind in KINDS:
            fwd, _, rfwd, _ = KINDS[kind]
            y = fwd(xx, dim)
            np.testing.assert_allclose(y, rfwd(xx, dim), rtol=1e-6, atol=1e-30, equal_nan=True, err_msg=kind)
    sm = nk.softmax(x, 1)
    assert np.allclose(sm[0], [1, 0, 0, 0]) and np.allclose(sm[4], [0.5, 0.5, 0, 0])
    assert sm[1, 0] == 0 and sm[1, 3] == 0 and np.isclose(sm[1, 1:3].sum(), 1)
    assert np.isnan(sm[2]).all() and np.isnan(sm[3]).all() and np.isnan(sm[5]).all()  # as torch
    ls = nk.log_softmax(x, 1)
    assert ls[1, 0] == -np.inf and np.isfinite(ls[1, 1:3]).all()
    assert np.isclose(ls[0, 1], -2e4, rtol=1e-6)  # no underflow to -inf
    assert np.isnan(ls[3]).all()


@settings(max_examples=50, deadline=None)
@given(shape=st.lists(st.integers(0, 12), min_size=1, max_size=4), data=st.data(), f64=st.booleans(),
       log=st.booleans(), seed=st.integers(0, 2**31 - 1))
def test_hypothesis_shapes_and_dims(shape, data, f64, log, seed):
    dim = data.draw(st.integers(-len(shape), len(shape) - 1))
    dtype = np.float64 if f64 else np.float32
    fwd, bwd, rfwd, rbwd = KINDS["log_softmax" if log else "softmax"]
    rng = np.random.default_rng(seed)
    x = _data(rng, tuple(shape), dtype)
    y = fwd(x, dim)
    assert_close(y, rfwd(x, dim), dtype)
    dy = _data(rng, tuple(shape), dtype, 1.0)
    assert_close(bwd(dy, y, dim), rbwd(dy, y, dim), dtype, scale=4)


def test_errors():
    x = np.ones((3, 4), np.float32)
    with pytest.raises(ValueError, match=r"softmax: dim 2 is out of range for x with 2 dims \(expected -2 <= dim < 2\)"):
        nk.softmax(x, 2)
    with pytest.raises(ValueError, match=r"log_softmax: dim -3 is out of range for x with 2 dims"):
        nk.log_softmax(x, -3)
    with pytest.raises(ValueError, match=r"softmax_backward: dim 5 is out of range"):
        nk.softmax_backward(x, x, 5)
    with pytest.raises(ValueError, match=r"softmax: dim 1 is out of range for x with 0 dims \(expected -1 <= dim < 1\)"):
        nk.softmax(np.array(1.0), 1)
    # dim must be an int: bools, floats and strings are refused (fuzz finding: dim=True was taken as 1)
    for f, args in ((nk.softmax, (x,)), (nk.log_softmax, (x,)), (nk.softmax_backward, (x, x)),
                    (nk.log_softmax_backward, (x, x))):
        for bad, tname in ((True, "bool"), (1.0, "float"), ("1", "str"), (None, "NoneType")):
            with pytest.raises(TypeError, match=rf"{f.__name__}: dim must be an int, got {tname}"):
                f(*args, bad)
        with pytest.raises(ValueError, match=rf"{f.__name__}: dim {2**64 + 5} is out of range"):
            f(*args, 2**64 + 5)
        np.testing.assert_array_equal(f(*args, np.int64(0)), f(*args, 0))
    with pytest.raises(TypeError, match=r"softmax: x has dtype int32, expected float32 or float64"):
        nk.softmax(np.ones(3, np.int32))
    with pytest.raises(TypeError, match=r"log_softmax_backward: y has dtype float64, expected float32 \(the dtype of dy\)"):
        nk.log_softmax_backward(x, np.ones((3, 4)))
    with pytest.raises(ValueError, match=r"softmax_backward: y has shape \(4, 3\), expected \(3, 4\)"):
        nk.softmax_backward(x, np.ones((4, 3), np.float32))
    with pytest.raises(ValueError, match=r"softmax: out must be C-contiguous"):
        nk.softmax(x, out=np.ones((4, 3), np.float32).T)
    ro = np.ones((3, 4), np.float32)
    ro.setflags(write=False)
    with pytest.raises(ValueError, match=r"log_softmax: out is read-only"):
        nk.log_softmax(x, out=ro)
    buf = np.ones(20, np.float32)
    with pytest.raises(ValueError, match=r"softmax: out partially overlaps x"):
        nk.softmax(buf[:12].reshape(3, 4), out=buf[4:16].reshape(3, 4))
    with pytest.raises(TypeError, match=r"softmax: dim must be an int, got float"):
        nk.softmax(x, dim=1.5)


def test_scalar_input():
    assert nk.softmax(np.array(3.0)) == 1.0 and nk.log_softmax(np.array(3.0)) == 0.0
