"""Elementwise activation kernels (sigmoid, tanh, relu, leaky_relu, softplus, silu) and prelu:
forward and backward against the NumPy twins, finite differences, torch, NaN-prefilled and in-place
outputs, thread counts, SIMD levels, extreme values and bad inputs."""

import functools
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nnkern as nk
from conftest import (assert_bitwise_equal, assert_close, nan_filled, num_threads, numerical_grad, requires_torch,
                      torch)
from nnkern import reference as ref


@dataclass
class Op:
    name: str
    fwd: Callable  # fwd(x, out=None)
    bwd: Callable  # bwd(dy, saved, out=None)
    ref_fwd: Callable
    ref_bwd: Callable
    saved: str  # "y" (output) or "x" (input)
    torch_fn: Optional[Callable] = None  # torch_fn(tensor) -> tensor
    kink: Optional[float] = None  # a point where the function is not differentiable


def _op(name, saved, torch_name=None, kink=None, **kw):
    f = getattr(nk, name)
    b = getattr(nk, name + "_backward")
    rf = getattr(ref, name)
    rb = getattr(ref, name + "_backward")
    if kw:
        f, b = functools.partial(f, **kw), functools.partial(b, **kw)
        rf, rb = functools.partial(rf, **kw), functools.partial(rb, **kw)

    def torch_fn(t):
        import torch.nn.functional as F

        if name == "sigmoid":
            return torch.sigmoid(t)
        if name == "tanh":
            return torch.tanh(t)
        if name == "relu":
            return torch.relu(t)
        if name == "leaky_relu":
            return F.leaky_relu(t, **kw)
        if name == "softplus":
            return F.softplus(t, **kw)
        if name == "silu":
            return F.silu(t)
        raise AssertionError(name)

    label = name + ("" if not kw else "(" + ",".join(f"{k}={v}" for k, v in kw.items()) + ")")
    return Op(label, f, b, rf, rb, saved, torch_fn, kink)


OPS = [
    _op("sigmoid", "y"),
    _op("tanh", "y"),
    _op("relu", "y", kink=0.0),
    _op("leaky_relu", "x", kink=0.0),
    _op("leaky_relu", "x", kink=0.0, negative_slope=0.2),
    _op("leaky_relu", "x", kink=0.0, negative_slope=-1.5),
    _op("softplus", "x"),
    _op("softplus", "x", kink=1.5, beta=2.0, threshold=3.0),
    _op("softplus", "x", kink=-1.0, beta=-0.5, threshold=0.5),
    _op("silu", "x"),
]
OP_IDS = [op.name for op in OPS]

SIZES = [0, 1, 2, 7, 8, 9, 15, 16, 17, 31, 33, 63, 65, 127, 1000, 4099]
SHAPES = [(0, 3), (3, 0, 2), (1, 1), (3, 5, 7), (2, 3, 4, 5)]
DTYPES = [np.float32, np.float64]


def _x(rng, shape, dtype, op=None, scale=3.0):
    x = np.asarray(rng.standard_normal(shape) * scale, dtype=dtype)  # 0-d stays an array
    if op is not None and op.kink is not None:  # keep finite differences away from the kink
        near = np.abs(x - op.kink) < 1e-3
        x[near] += 0.01
    return x


def _saved(op, x, y):
    return y if op.saved == "y" else x


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op", OPS, ids=OP_IDS)
def test_matches_twin(rng, op, dtype):
    for shape in [(n,) for n in SIZES] + SHAPES:
        x = _x(rng, shape, dtype)
        y = op.fwd(x)
        assert y.dtype == dtype and y.shape == x.shape
        assert_close(y, op.ref_fwd(x), dtype, err_msg=f"{op.name} forward {shape}")
        dy = rng.standard_normal(shape).astype(dtype)
        s = _saved(op, x, y)
        dx = op.bwd(dy, s)
        assert dx.dtype == dtype and dx.shape == x.shape
        assert_close(dx, op.ref_bwd(dy, s), dtype, err_msg=f"{op.name} backward {shape}")


@pytest.mark.parametrize("op", OPS, ids=OP_IDS)
def test_backward_finite_differences(rng, op):
    x = _x(rng, (4, 5), np.float64, op, scale=2.0)
    dy = rng.standard_normal(x.shape)
    dx = op.bwd(dy, _saved(op, x, op.fwd(x)))
    num = numerical_grad(lambda: float((op.fwd(x) * dy).sum()), x)
    np.testing.assert_allclose(dx, num, rtol=1e-6, atol=1e-8)


@requires_torch
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op", OPS, ids=OP_IDS)
def test_matches_torch(rng, op, dtype):
    x = _x(rng, (33, 17), dtype, op, scale=4.0)
    dy = rng.standard_normal(x.shape).astype(dtype)
    t = torch.from_numpy(x.copy()).requires_grad_(True)
    ty = op.torch_fn(t)
    ty.backward(torch.from_numpy(dy))
    y = op.fwd(x)
    assert_close(y, ty.detach().numpy(), dtype, scale=2)
    assert_close(op.bwd(dy, _saved(op, x, y)), t.grad.numpy(), dtype, scale=2)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op", OPS, ids=OP_IDS)
def test_out_nan_prefilled_and_inplace(rng, op, dtype):
    x = _x(rng, (9, 65), dtype)
    expected = op.fwd(x)
    out = nan_filled(x.shape, dtype)
    assert op.fwd(x, out=out) is out
    assert_bitwise_equal(out, expected)
    # in place: out=x
    xi = x.copy()
    assert op.fwd(xi, out=xi) is xi
    assert_bitwise_equal(xi, expected)
    # backward into NaN-filled out, and in place over dy and over the saved array
    dy = rng.standard_normal(x.shape).astype(dtype)
    s = _saved(op, x, expected)
    dx = op.bwd(dy, s)
    out = nan_filled(x.shape, dtype)
    assert op.bwd(dy, s, out=out) is out
    assert_bitwise_equal(out, dx)
    dyi = dy.copy()
    op.bwd(dyi, s, out=dyi)
    assert_bitwise_equal(dyi, dx)
    si = s.copy()
    op.bwd(dy, si, out=si)
    assert_bitwise_equal(si, dx)


@pytest.mark.parametrize("op", OPS, ids=OP_IDS)
def test_threads_bitwise(rng, op):
    x = _x(rng, (200_003,), np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    res = []
    for t in (1, 2, 3):
        with num_threads(t):
            y = op.fwd(x)
            res.append((y, op.bwd(dy, _saved(op, x, y))))
    for y, dx in res[1:]:
        assert_bitwise_equal(y, res[0][0])
        assert_bitwise_equal(dx, res[0][1])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op", OPS, ids=OP_IDS)
def test_every_simd_level(simd_level, rng, op, dtype):
    for n in (1, 7, 9, 17, 33, 65, 1001):
        x = _x(rng, (n,), dtype)
        y = op.fwd(x)
        assert_close(y, op.ref_fwd(x), dtype, err_msg=f"{simd_level} {n}")
        dy = rng.standard_normal(n).astype(dtype)
        s = _saved(op, x, y)
        assert_close(op.bwd(dy, s), op.ref_bwd(dy, s), dtype, err_msg=f"{simd_level} {n}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op", OPS, ids=OP_IDS)
def test_extreme_values(op, dtype):
    big = np.finfo(dtype).max
    tiny = np.finfo(dtype).tiny  # sigmoid/silu flush results below the normal range to 0 (vmath.h)
    x = np.array([0.0, -0.0, 1e-30, -1e-30, 50, -50, 100, -100, 1e4, -1e4, 800, -800, big, -big,
                  np.inf, -np.inf, np.nan], dtype)
    with np.errstate(all="ignore"):
        expected = op.ref_fwd(x)
        y = op.fwd(x)
        np.testing.assert_allclose(y, expected, rtol=1e-6 if dtype == np.float32 else 1e-14, atol=tiny,
                                   equal_nan=True)
        assert np.isnan(y[-1])
        dy = np.ones_like(x)
        s = _saved(op, x, y)
        dx = op.bwd(dy, s)
        np.testing.assert_allclose(dx, op.ref_bwd(dy, s), rtol=1e-6 if dtype == np.float32 else 1e-14, atol=tiny,
                                   equal_nan=True)
        if op.kink is None or op.name.startswith("softplus"):
            assert np.isnan(dx[-1])  # NaN input (or output) propagates to the gradient
        else:  # relu/leaky_relu: a mask, as torch (relu: y <= 0 is False for NaN: dy passes)
            assert dx[-1] == (1.0 if op.name == "relu" else op.bwd(np.ones(1, dtype), np.ones(1, dtype) * -1)[0])
        # NaN in dy propagates wherever the gradient passes
        dyn = np.full_like(x, np.nan)
        assert np.isnan(op.bwd(dyn, s)[np.isfinite(x) & (x > 0)]).all()


def test_sigmoid_relative_accuracy_negative_tail():
    # sigmoid(x) for x << 0 is e^x, kept to a few ulp down to the normal range (not 1 - 1 = 0),
    # then flushed to 0 like torch's float sigmoid
    x = np.array([-30.0, -80.0, -87.0, -100.0], np.float32)
    exact = np.exp(x.astype(np.float64)) / (1 + np.exp(x.astype(np.float64)))
    np.testing.assert_allclose(nk.sigmoid(x)[:3], exact[:3], rtol=3e-7)
    assert nk.sigmoid(x)[3] == 0


def test_softplus_large_threshold_does_not_overflow():
    x = np.array([100.0, 200.0], np.float32)
    np.testing.assert_allclose(nk.softplus(x, threshold=1e9), x, rtol=1e-7)
    np.testing.assert_allclose(nk.softplus_backward(np.ones_like(x), x, threshold=1e9), [1.0, 1.0])


@settings(max_examples=40, deadline=None)
@given(shape=st.lists(st.integers(0, 9), min_size=0, max_size=4), op_i=st.integers(0, len(OPS) - 1),
       f64=st.booleans(), seed=st.integers(0, 2**31 - 1))
def test_hypothesis_shapes(shape, op_i, f64, seed):
    op = OPS[op_i]
    dtype = np.float64 if f64 else np.float32
    rng = np.random.default_rng(seed)
    x = _x(rng, tuple(shape), dtype)
    y = op.fwd(x)
    assert_close(y, op.ref_fwd(x), dtype)
    dy = np.asarray(rng.standard_normal(x.shape), dtype=dtype)
    s = _saved(op, x, y)
    assert_close(op.bwd(dy, s), op.ref_bwd(dy, s), dtype)


def test_noncontiguous_inputs_are_read_correctly(rng):
    x = rng.standard_normal((20, 30))
    xs = x[::2, 1::3]
    assert_close(nk.sigmoid(xs), ref.sigmoid(xs))
    assert_close(nk.leaky_relu_backward(xs.T, xs.T.copy(), 0.1), ref.leaky_relu_backward(xs.T, xs.T, 0.1))


# --- prelu ---------------------------------------------------------------------------------------

PRELU_CASES = [
    # (x shape, number of weights)
    ((0, 3), 3), ((5,), 1), ((), 1), ((4, 3), 1), ((4, 3), 3), ((2, 5, 7), 5), ((2, 5, 16), 5),
    ((3, 4, 17), 4), ((2, 3, 4, 5), 3), ((2, 3, 8, 8), 3), ((1, 65, 1), 65), ((7, 9, 2), 9), ((0, 4, 5), 4),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,nw", PRELU_CASES)
def test_prelu_matches_twin(rng, shape, nw, dtype):
    x = rng.standard_normal(shape).astype(dtype)
    w = rng.uniform(-0.5, 0.5, nw).astype(dtype)
    assert_close(nk.prelu(x, w), ref.prelu(x, w), dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    dx, dw = nk.prelu_backward(dy, x, w)
    rdx, rdw = ref.prelu_backward(dy, x, w)
    assert dw.shape == w.shape and dw.dtype == dtype
    assert_close(dx, rdx, dtype)
    assert_close(dw, rdw, dtype, scale=10)


@pytest.mark.parametrize("shape,nw", [((3, 4), 4), ((2, 3, 5), 3), ((2, 3, 17), 1), ((2, 2, 20), 2), ((6,), 1)])
def test_prelu_finite_differences(rng, shape, nw):
    x = rng.standard_normal(shape)
    x[np.abs(x) < 1e-3] += 0.01
    w = rng.uniform(-0.5, 0.5, nw)
    dy = rng.standard_normal(shape)
    dx, dw = nk.prelu_backward(dy, x, w)
    np.testing.assert_allclose(dx, numerical_grad(lambda: float((nk.prelu(x, w) * dy).sum()), x), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(dw, numerical_grad(lambda: float((nk.prelu(x, w) * dy).sum()), w), rtol=1e-6, atol=1e-8)


@requires_torch
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,nw", [((8, 5), 5), ((8, 5), 1), ((4, 6, 3, 3), 6), ((4, 6, 5, 5), 1), ((7,), 1)])
def test_prelu_matches_torch(rng, shape, nw, dtype):
    import torch.nn.functional as F

    x = rng.standard_normal(shape).astype(dtype)
    w = rng.uniform(-0.5, 0.5, nw).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    tx = torch.from_numpy(x.copy()).requires_grad_(True)
    tw = torch.from_numpy(w.copy()).requires_grad_(True)
    ty = F.prelu(tx, tw)
    ty.backward(torch.from_numpy(dy))
    assert_close(nk.prelu(x, w), ty.detach().numpy(), dtype)
    dx, dw = nk.prelu_backward(dy, x, w)
    assert_close(dx, tx.grad.numpy(), dtype)
    assert_close(dw, tw.grad.numpy(), dtype, scale=10)


@pytest.mark.parametrize("shape,nw", [((300_000,), 1), ((32, 8, 1024), 8), ((32, 8, 1024), 1), ((50_000, 10), 10),
                                      ((4000, 12, 3), 12), ((300, 3000), 3000)])
def test_prelu_threads_bitwise(rng, shape, nw):
    x = rng.standard_normal(shape).astype(np.float32)
    w = rng.uniform(-0.5, 0.5, nw).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    res = []
    for t in (1, 2, 3):
        with num_threads(t):
            res.append((nk.prelu(x, w),) + nk.prelu_backward(dy, x, w))
    for r in res[1:]:
        for a, b in zip(r, res[0]):
            assert_bitwise_equal(a, b)
    rdx, rdw = ref.prelu_backward(dy, x, w)
    assert_close(res[0][1], rdx)
    np.testing.assert_allclose(res[0][2], rdw, rtol=1e-4, atol=1e-3)  # float32 sums of ~1e5 terms


@pytest.mark.parametrize("dtype", DTYPES)
def test_prelu_every_simd_level(simd_level, rng, dtype):
    for shape, nw in [((5, 3, 17), 3), ((33, 7), 7), ((65,), 1), ((4, 5, 3), 5)]:
        x = rng.standard_normal(shape).astype(dtype)
        w = rng.uniform(-0.5, 0.5, nw).astype(dtype)
        dy = rng.standard_normal(shape).astype(dtype)
        assert_close(nk.prelu(x, w), ref.prelu(x, w), dtype)
        dx, dw = nk.prelu_backward(dy, x, w)
        rdx, rdw = ref.prelu_backward(dy, x, w)
        assert_close(dx, rdx, dtype)
        assert_close(dw, rdw, dtype, scale=10)


def test_prelu_out_and_inplace(rng):
    x = rng.standard_normal((4, 3, 5)).astype(np.float32)
    w = np.array([0.1, 0.2, 0.3], np.float32)
    y = nk.prelu(x, w)
    out = nan_filled(x.shape, np.float32)
    assert nk.prelu(x, w, out=out) is out
    assert_bitwise_equal(out, y)
    xi = x.copy()
    nk.prelu(xi, w, out=xi)
    assert_bitwise_equal(xi, y)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    dx, dw = nk.prelu_backward(dy, x, w)
    dyi = dy.copy()
    dx2, dw2 = nk.prelu_backward(dyi, x, w, out=dyi)
    assert dx2 is dyi
    assert_bitwise_equal(dyi, dx)
    assert_bitwise_equal(dw2, dw)


def test_prelu_nan_propagates():
    x = np.array([[1.0, -1.0], [np.nan, -2.0]])
    w = np.array([0.5, 0.25])
    y = nk.prelu(x, w)
    assert np.isnan(y[1, 0]) and y[1, 1] == -0.5
    dx, dw = nk.prelu_backward(np.ones_like(x), x, w)
    assert np.isnan(dw[0]) and dw[1] == -3.0


# --- bad inputs ------------------------------------------------------------------------------------


def test_errors_dtype_and_type():
    with pytest.raises(TypeError, match=r"sigmoid: x has dtype int64, expected float32 or float64"):
        nk.sigmoid(np.ones(3, np.int64))
    with pytest.raises(TypeError, match=r"relu: x must be a numpy.ndarray, got list"):
        nk.relu([1.0, 2.0])
    with pytest.raises(TypeError, match=r"tanh_backward: y has dtype float64, expected float32 \(the dtype of dy\)"):
        nk.tanh_backward(np.ones(3, np.float32), np.ones(3))
    with pytest.raises(TypeError, match=r"silu: out has dtype float64, expected float32"):
        nk.silu(np.ones(3, np.float32), out=np.ones(3))
    with pytest.raises(TypeError, match=r"prelu: weight has dtype float32, expected float64 \(the dtype of x\)"):
        nk.prelu(np.ones((2, 3)), np.ones(3, np.float32))


def test_errors_shapes():
    with pytest.raises(ValueError,
                       match=r"sigmoid_backward: y has shape \(3, 2\), expected \(2, 3\) \(the shape of dy\)"):
        nk.sigmoid_backward(np.ones((2, 3)), np.ones((3, 2)))
    with pytest.raises(ValueError, match=r"relu: out has shape \(4,\), expected \(3,\)"):
        nk.relu(np.ones(3), out=np.ones(4))
    with pytest.raises(ValueError, match=r"prelu: weight has 2 elements, expected 1 or 3 \(the size of dim 1 of x"):
        nk.prelu(np.ones((4, 3)), np.ones(2))
    with pytest.raises(ValueError,
                       match=r"prelu: weight has 5 elements, expected 1 \(x with 1 dims has no channel dim\)"):
        nk.prelu(np.ones(5), np.ones(5))
    with pytest.raises(ValueError, match=r"prelu_backward: weight has 2 dims, expected 1"):
        nk.prelu_backward(np.ones((4, 3)), np.ones((4, 3)), np.ones((1, 3)))
    with pytest.raises(ValueError, match=r"prelu_backward: x has shape \(4, 2\), expected \(4, 3\)"):
        nk.prelu_backward(np.ones((4, 3)), np.ones((4, 2)), np.ones(3))


def test_errors_out_buffers():
    x = np.ones((4, 6))
    with pytest.raises(ValueError, match=r"sigmoid: out must be C-contiguous"):
        nk.sigmoid(x, out=np.ones((6, 4)).T)
    ro = np.ones((4, 6))
    ro.setflags(write=False)
    with pytest.raises(ValueError, match=r"sigmoid: out is read-only"):
        nk.sigmoid(x, out=ro)
    big = np.ones(30)
    with pytest.raises(ValueError, match=r"tanh: out partially overlaps x"):
        nk.tanh(big[:20], out=big[10:30])
    with pytest.raises(ValueError, match=r"relu_backward: out partially overlaps dy"):
        nk.relu_backward(big[:20], np.ones(20), out=big[5:25])
    w = np.ones(3)
    with pytest.raises(ValueError, match=r"prelu: out shares memory with weight"):
        buf = np.ones(6)
        nk.prelu(np.ones((1, 3)), buf[:3], out=buf[:3].reshape(1, 3))
    _ = w


def test_errors_scalars():
    x = np.ones(3)
    with pytest.raises(ValueError, match=r"softplus: beta must be a finite nonzero number, got 0.0"):
        nk.softplus(x, beta=0.0)
    with pytest.raises(ValueError, match=r"softplus_backward: beta must be a finite nonzero number, got inf"):
        nk.softplus_backward(x, x, beta=float("inf"))
    with pytest.raises(ValueError, match=r"softplus: threshold must not be NaN"):
        nk.softplus(x, threshold=float("nan"))
    with pytest.raises(ValueError, match=r"leaky_relu: negative_slope must not be NaN"):
        nk.leaky_relu(x, float("nan"))


def test_empty_arrays():
    for f in (nk.sigmoid, nk.tanh, nk.relu, nk.silu, nk.softplus, nk.leaky_relu):
        assert f(np.ones((0, 5), np.float32)).shape == (0, 5)
    dx, dw = nk.prelu_backward(np.ones((0, 3)), np.ones((0, 3)), np.full(3, 0.5))
    assert dx.shape == (0, 3) and np.array_equal(dw, np.zeros(3))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_byte_swapped_inputs_are_converted(dtype):
    """Read-only inputs of non-native byte order are converted like any other layout (arrays.h);
    they used to raise TypeError. In-place buffers (out=) of non-native order are still refused."""
    x = np.linspace(-3, 3, 24, dtype=dtype).reshape(4, 6)
    sw = x.astype(x.dtype.newbyteorder())
    assert not sw.dtype.isnative
    for f in (nk.relu, nk.tanh, nk.sigmoid, nk.softmax, nk.log_softmax):
        y = f(sw)
        assert y.dtype == dtype and y.dtype.isnative
        assert_bitwise_equal(y, f(x))
    assert_bitwise_equal(nk.relu_backward(sw, sw), nk.relu_backward(x, x))
    with pytest.raises(TypeError, match=r"relu: out has a non-native dtype [<>]f\d; in-place buffers must be native"):
        nk.relu(x, out=np.empty_like(sw))
