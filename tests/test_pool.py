"""Pooling kernels (max/avg, fixed and adaptive windows, forward and backward) against the NumPy
twins in nnkern.reference and against torch's CPU kernels (values, indices, tie and NaN rules,
autograd gradients)."""

import zlib

import numpy as np
import pytest

import nnkern as nk
from nnkern import reference as ref
from conftest import (assert_bitwise_equal, assert_close, nan_filled, num_threads, numerical_grad,
                      requires_torch, torch)

if torch is not None:
    import torch.nn.functional as F


# ---------------------------------------------------------------------------------------------
# Random configurations (torch's validity rules)


def _empty_window(n, out, k, s, p, d):
    for i in range(out):
        start = i * s - p
        first = -(-(-start) // d) if start < 0 else 0
        if first >= k or start + first * d >= n:
            return True
    return False


def _valid(cfg):
    N, C, H, W = cfg["shape"]
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = cfg["k"], cfg["s"], cfg["p"], cfg["d"]
    if ph > kh // 2 or pw > kw // 2:
        return False
    oh = ref.pool_output_size(H, kh, sh, ph, dh, cfg["ceil"])
    ow = ref.pool_output_size(W, kw, sw, pw, dw, cfg["ceil"])
    if oh < 1 or ow < 1:
        return False
    return not (_empty_window(H, oh, kh, sh, ph, dh) or _empty_window(W, ow, kw, sw, pw, dw))


def random_configs(n, seed, dilation=True):
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < n:
        kh = int(rng.integers(1, 6))
        kw = kh if rng.random() < 0.4 else int(rng.integers(1, 6))
        sh = int(rng.integers(1, 7)) if rng.random() < 0.7 else kh
        sw = sh if rng.random() < 0.5 else int(rng.integers(1, 7))
        ph, pw = int(rng.integers(0, kh // 2 + 1)), int(rng.integers(0, kw // 2 + 1))
        if dilation and rng.random() < 0.3:
            dh, dw = int(rng.integers(1, 4)), int(rng.integers(1, 4))
        else:
            dh = dw = 1
        shape = (int(rng.choice([1, 1, 2, 3])), int(rng.choice([1, 2, 3, 5])), int(rng.integers(1, 26)),
                 int(rng.choice([1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 33, 40, 65])))
        cfg = dict(shape=shape, k=(kh, kw), s=(sh, sw), p=(ph, pw), d=(dh, dw), ceil=bool(rng.random() < 0.5),
                   cip=bool(rng.random() < 0.5), div=None if rng.random() < 0.8 else int(rng.integers(1, 10)),
                   dtype=np.float64 if len(out) % 2 else np.float32)
        if _valid(cfg):
            out.append(cfg)
    return out


def _max_args(c):
    return dict(kernel_size=c["k"], stride=c["s"], padding=c["p"], dilation=c["d"], ceil_mode=c["ceil"])


def _avg_args(c):
    return dict(kernel_size=c["k"], stride=c["s"], padding=c["p"], ceil_mode=c["ceil"],
                count_include_pad=c["cip"], divisor_override=c["div"])


MAX_CONFIGS = random_configs(220, 1)
AVG_CONFIGS = random_configs(220, 2, dilation=False)


def _ids(cfgs):
    return [f"{c['shape']}-k{c['k']}-s{c['s']}-p{c['p']}-d{c['d']}-{'ceil' if c['ceil'] else 'floor'}-"
            f"{np.dtype(c['dtype']).name}" for c in cfgs]


# ---------------------------------------------------------------------------------------------
# Max pooling sweep: twin and torch, forward (values and indices, exactly) and backward


@pytest.mark.parametrize("cfg", MAX_CONFIGS, ids=_ids(MAX_CONFIGS))
def test_max_pool2d_sweep(cfg):
    rng = np.random.default_rng(zlib.crc32(str(cfg).encode()))
    x = rng.standard_normal(cfg["shape"]).astype(cfg["dtype"])
    if rng.random() < 0.3:  # many ties
        x = np.round(x).astype(cfg["dtype"])
    args = _max_args(cfg)
    y_ref, i_ref = ref.max_pool2d(x, **args)
    out = nan_filled(y_ref.shape, cfg["dtype"])
    iout = np.full(y_ref.shape, -7, np.int64)
    y, idx = nk.max_pool2d(x, **args, out=out, indices_out=iout)
    assert y is out and idx is iout
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(idx, i_ref)
    dy = rng.standard_normal(y.shape).astype(cfg["dtype"])
    dx = nk.max_pool2d_backward(dy, idx, x.shape, out=nan_filled(x.shape, cfg["dtype"]))
    assert_close(dx, ref.max_pool2d_backward(dy, i_ref, x.shape), cfg["dtype"])
    if torch is not None:
        tx = torch.from_numpy(x).requires_grad_(True)
        ty, ti = F.max_pool2d(tx, return_indices=True, **args)
        np.testing.assert_array_equal(y, ty.detach().numpy())
        np.testing.assert_array_equal(idx, ti.numpy())
        (tdx,) = torch.autograd.grad(ty, tx, torch.from_numpy(dy))
        assert_close(dx, tdx.numpy(), cfg["dtype"])


@pytest.mark.parametrize("cfg", AVG_CONFIGS, ids=_ids(AVG_CONFIGS))
def test_avg_pool2d_sweep(cfg):
    rng = np.random.default_rng(zlib.crc32(str(cfg).encode()))
    x = rng.standard_normal(cfg["shape"]).astype(cfg["dtype"])
    args = _avg_args(cfg)
    y_ref = ref.avg_pool2d(x, **args)
    y = nk.avg_pool2d(x, **args, out=nan_filled(y_ref.shape, cfg["dtype"]))
    assert_close(y, y_ref, cfg["dtype"])
    dy = rng.standard_normal(y.shape).astype(cfg["dtype"])
    dx = nk.avg_pool2d_backward(dy, x.shape, **args, out=nan_filled(x.shape, cfg["dtype"]))
    assert_close(dx, ref.avg_pool2d_backward(dy, x.shape, **args), cfg["dtype"])
    if torch is not None:
        tx = torch.from_numpy(x).requires_grad_(True)
        ty = F.avg_pool2d(tx, **args)
        assert_close(y, ty.detach().numpy(), cfg["dtype"])
        (tdx,) = torch.autograd.grad(ty, tx, torch.from_numpy(dy))
        assert_close(dx, tdx.numpy(), cfg["dtype"])


# ---------------------------------------------------------------------------------------------
# Adaptive pooling

ADAPTIVE = [((2, 3, 10, 12), (5, 6)), ((2, 3, 10, 12), (3, 5)), ((1, 2, 7, 7), (7, 7)), ((1, 2, 5, 6), (7, 9)),
            ((2, 3, 10, 12), 1), ((3, 2, 9, 33), (4, 16)), ((1, 1, 1, 1), (3, 2)), ((2, 2, 13, 17), (13, 1)),
            ((1, 4, 32, 32), (2, 2)), ((2, 3, 8, 8), (None, 3)), ((1, 2, 6, 40), (1, 40))]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,osize", ADAPTIVE)
def test_adaptive_avg_pool2d(shape, osize, dtype):
    rng = np.random.default_rng(3)
    x = rng.standard_normal(shape).astype(dtype)
    y_ref = ref.adaptive_avg_pool2d(x, osize)
    y = nk.adaptive_avg_pool2d(x, osize, out=nan_filled(y_ref.shape, dtype))
    assert_close(y, y_ref, dtype)
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx = nk.adaptive_avg_pool2d_backward(dy, x.shape, out=nan_filled(x.shape, dtype))
    assert_close(dx, ref.adaptive_avg_pool2d_backward(dy, x.shape), dtype)
    if torch is not None:
        tx = torch.from_numpy(x).requires_grad_(True)
        ty = F.adaptive_avg_pool2d(tx, osize)
        assert_close(y, ty.detach().numpy(), dtype)
        (tdx,) = torch.autograd.grad(ty, tx, torch.from_numpy(dy))
        assert_close(dx, tdx.numpy(), dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,osize", ADAPTIVE)
def test_adaptive_max_pool2d(shape, osize, dtype):
    rng = np.random.default_rng(4)
    x = np.round(rng.standard_normal(shape) * 2).astype(dtype)  # ties
    x.flat[:: 7] = rng.standard_normal(x.size)[:: 7]
    y_ref, i_ref = ref.adaptive_max_pool2d(x, osize)
    y, idx = nk.adaptive_max_pool2d(x, osize, out=nan_filled(y_ref.shape, dtype),
                                    indices_out=np.full(y_ref.shape, -3, np.int64))
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(idx, i_ref)
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx = nk.adaptive_max_pool2d_backward(dy, idx, x.shape, out=nan_filled(x.shape, dtype))
    assert_close(dx, ref.adaptive_max_pool2d_backward(dy, i_ref, x.shape), dtype)
    if torch is not None:
        tx = torch.from_numpy(x).requires_grad_(True)
        ty, ti = F.adaptive_max_pool2d(tx, osize, return_indices=True)
        np.testing.assert_array_equal(y, ty.detach().numpy())
        np.testing.assert_array_equal(idx, ti.numpy())
        (tdx,) = torch.autograd.grad(ty, tx, torch.from_numpy(dy))
        assert_close(dx, tdx.numpy(), dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(2, 3, 5, 7), (1, 2, 32, 32), (2, 1, 1, 1), (1, 3, 3, 70), (1, 2, 40, 41)])
def test_global_pooling(shape, dtype):
    rng = np.random.default_rng(5)
    x = rng.standard_normal(shape).astype(dtype)
    x[..., -1, -1] = x[..., 0, 0]  # a tie: the first occurrence wins
    y = nk.global_avg_pool2d(x, out=nan_filled(shape[:2] + (1, 1), dtype))
    assert_close(y, x.mean(axis=(2, 3), keepdims=True), dtype, scale=10)
    ym, im = nk.global_max_pool2d(x)
    flat = x.reshape(shape[0], shape[1], -1)
    np.testing.assert_array_equal(ym[..., 0, 0], flat.max(axis=2))
    np.testing.assert_array_equal(im[..., 0, 0], flat.argmax(axis=2))
    dy = rng.standard_normal(ym.shape).astype(dtype)
    dxa = nk.global_avg_pool2d_backward(dy, shape)
    assert_close(dxa, np.broadcast_to(dy / (shape[2] * shape[3]), shape), dtype)
    dxm = nk.global_max_pool2d_backward(dy, im, shape)
    assert_close(dxm, ref.max_pool2d_backward(dy, im, shape), dtype)
    # the equivalent fixed-window calls take the same path and agree
    y2 = nk.avg_pool2d(x, shape[2:])
    assert_close(y2, y, dtype)
    ym2, im2 = nk.max_pool2d(x, shape[2:])
    np.testing.assert_array_equal(ym2, ym)
    np.testing.assert_array_equal(im2, im)
    np.testing.assert_array_equal(ref.global_max_pool2d(x)[1], im)


# ---------------------------------------------------------------------------------------------
# NaN, infinities and ties follow torch exactly


def _nan_inputs(rng, shape, dtype):
    x = rng.standard_normal(shape).astype(dtype)
    mask = rng.random(shape) < 0.08
    x[mask] = np.nan
    x[rng.random(shape) < 0.05] = -np.inf
    x[rng.random(shape) < 0.03] = np.inf
    return x


NAN_CASES = [dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1), dict(kernel_size=3, stride=1, padding=1),
             dict(kernel_size=(2, 3), stride=(1, 2), padding=(1, 1), ceil_mode=True),
             dict(kernel_size=3, stride=2, dilation=2, padding=1), dict(kernel_size=4, stride=3, padding=2)]


@requires_torch
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("args", NAN_CASES)
def test_max_nan_inf_like_torch(args, dtype):
    rng = np.random.default_rng(6)
    x = _nan_inputs(rng, (2, 3, 13, 37), dtype)
    y, idx = nk.max_pool2d(x, **args)
    ty, ti = F.max_pool2d(torch.from_numpy(x), return_indices=True, **args)
    np.testing.assert_array_equal(y, ty.numpy())  # NaN == NaN for assert_array_equal
    np.testing.assert_array_equal(idx, ti.numpy())
    y_ref, i_ref = ref.max_pool2d(x, **args)
    np.testing.assert_array_equal(idx, i_ref)
    assert np.isnan(y).any() and np.isneginf(y).sum() >= 0


@requires_torch
@pytest.mark.parametrize("args", NAN_CASES)
def test_max_all_neg_inf_windows(args):
    # windows of -inf only: the index is the first real element (never padding)
    x = np.full((1, 2, 9, 11), -np.inf, np.float32)
    x[0, 1, 4, 5] = 1.0
    y, idx = nk.max_pool2d(x, **args)
    ty, ti = F.max_pool2d(torch.from_numpy(x), return_indices=True, **args)
    np.testing.assert_array_equal(y, ty.numpy())
    np.testing.assert_array_equal(idx, ti.numpy())


@requires_torch
@pytest.mark.parametrize("osize", [(3, 4), (2, 2), 1, (5, 7)])
def test_adaptive_max_nan_like_torch(osize):
    rng = np.random.default_rng(7)
    x = _nan_inputs(rng, (2, 3, 10, 14), np.float32)
    y, idx = nk.adaptive_max_pool2d(x, osize)
    ty, ti = F.adaptive_max_pool2d(torch.from_numpy(x), osize, return_indices=True)
    np.testing.assert_array_equal(y, ty.numpy())
    np.testing.assert_array_equal(idx, ti.numpy())


def test_nan_propagates_in_avg():
    x = np.ones((1, 1, 4, 4), np.float32)
    x[0, 0, 0, 0] = np.nan
    y = nk.avg_pool2d(x, 2)
    assert np.isnan(y[0, 0, 0, 0]) and np.isfinite(y[0, 0].ravel()[1:]).all()
    dx = nk.max_pool2d_backward(np.full((1, 1, 2, 2), np.nan, np.float32), nk.max_pool2d(x, 2)[1], x.shape)
    assert np.isnan(dx).sum() == 4


def test_ties_first_in_scan_order():
    # all equal: every window picks its first element in row-major order, also with padding
    x = np.zeros((1, 1, 6, 6), np.float64)
    y, idx = nk.max_pool2d(x, 3, 2, 1)
    h0 = np.maximum(np.arange(3) * 2 - 1, 0)
    np.testing.assert_array_equal(idx[0, 0], h0[:, None] * 6 + h0[None, :])
    # -0.0 and 0.0 compare equal: the first one wins
    x = np.array([[[[0.0, -0.0], [-0.0, 0.0]]]])
    assert nk.max_pool2d(x, 2)[1].item() == 0
    x = np.array([[[[-0.0, 0.0], [0.0, 0.0]]]])
    y, idx = nk.max_pool2d(x, 2)
    assert idx.item() == 0 and np.signbit(y.item())


# ---------------------------------------------------------------------------------------------
# Finite differences (float64)

FD_CASES = [dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1),
            dict(kernel_size=(3, 2), stride=(1, 2), padding=(1, 0), ceil_mode=True),
            dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False),
            dict(kernel_size=2, stride=3, divisor_override=3)]


@pytest.mark.parametrize("args", FD_CASES)
def test_avg_backward_finite_differences(args):
    rng = np.random.default_rng(8)
    x = rng.standard_normal((2, 2, 7, 6))
    y = nk.avg_pool2d(x, **args)
    dy = rng.standard_normal(y.shape)
    num = numerical_grad(lambda: float((nk.avg_pool2d(x, **args) * dy).sum()), x)
    np.testing.assert_allclose(nk.avg_pool2d_backward(dy, x.shape, **args), num, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("osize", [(3, 4), (2, 3), 1, (8, 5)])
def test_adaptive_avg_backward_finite_differences(osize):
    rng = np.random.default_rng(9)
    x = rng.standard_normal((1, 2, 7, 6))
    dy = rng.standard_normal(nk.adaptive_avg_pool2d(x, osize).shape)
    num = numerical_grad(lambda: float((nk.adaptive_avg_pool2d(x, osize) * dy).sum()), x)
    np.testing.assert_allclose(nk.adaptive_avg_pool2d_backward(dy, x.shape), num, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("args", [dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1),
                                  dict(kernel_size=3, stride=1, padding=1), dict(kernel_size=2, dilation=2),
                                  "adaptive"])
def test_max_backward_finite_differences(args):
    # distinct, well separated values: no window is near a tie, so the max is differentiable
    rng = np.random.default_rng(10)
    x = rng.permutation(2 * 2 * 7 * 8).reshape(2, 2, 7, 8).astype(np.float64)
    if args == "adaptive":
        def fwd():
            return nk.adaptive_max_pool2d(x, (3, 5))

        def bwd(dy, idx):
            return nk.adaptive_max_pool2d_backward(dy, idx, x.shape)
    else:
        def fwd():
            return nk.max_pool2d(x, **args)

        def bwd(dy, idx):
            return nk.max_pool2d_backward(dy, idx, x.shape)
    y, idx = fwd()
    dy = rng.standard_normal(y.shape)
    num = numerical_grad(lambda: float((fwd()[0] * dy).sum()), x, eps=1e-3)
    np.testing.assert_allclose(bwd(dy, idx), num, rtol=1e-7, atol=1e-9)


# ---------------------------------------------------------------------------------------------
# Threads, SIMD levels, layouts


THREAD_CASES = [("max", dict(kernel_size=2)), ("max", dict(kernel_size=3, stride=2, padding=1)),
                ("max", dict(kernel_size=(2, 4), stride=(3, 1), dilation=(2, 1), padding=(1, 2))),
                ("avg", dict(kernel_size=2)), ("avg", dict(kernel_size=3, stride=2, padding=1)),
                ("avg", dict(kernel_size=(4, 3), stride=(3, 1), padding=(2, 1), count_include_pad=False)),
                ("amax", (5, 7)), ("aavg", (5, 7)), ("amax", 1), ("aavg", 1), ("aavg", (20, 10))]


def _run(op, args, x):
    if op == "max":
        y, idx = nk.max_pool2d(x, **args)
        return y, idx, nk.max_pool2d_backward(y, idx, x.shape)
    if op == "avg":
        y = nk.avg_pool2d(x, **args)
        return y, nk.avg_pool2d_backward(y, x.shape, **args)
    if op == "amax":
        y, idx = nk.adaptive_max_pool2d(x, args)
        return y, idx, nk.adaptive_max_pool2d_backward(y, idx, x.shape)
    y = nk.adaptive_avg_pool2d(x, args)
    return y, nk.adaptive_avg_pool2d_backward(y, x.shape)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("op,args", THREAD_CASES)
def test_thread_count_invariant(op, args, dtype):
    # 67 planes of 40x40: large enough that 2 and 3 threads really split the planes
    x = np.random.default_rng(11).standard_normal((67, 1, 40, 40)).astype(dtype)
    results = []
    for t in (1, 2, 3):
        with num_threads(t):
            results.append(_run(op, args, x))
    for r in results[1:]:
        for a, b in zip(results[0], r):
            assert_bitwise_equal(a, b)


SIMD_CASES = [("max", dict(kernel_size=2)), ("max", dict(kernel_size=3, stride=2, padding=1)),
              ("max", dict(kernel_size=3, stride=1, padding=1, ceil_mode=True)),
              ("max", dict(kernel_size=(2, 3), stride=(3, 3), dilation=(1, 2))),
              ("avg", dict(kernel_size=2)), ("avg", dict(kernel_size=3, stride=2, padding=1, count_include_pad=False)),
              ("avg", dict(kernel_size=(5, 4), stride=(2, 5), padding=(2, 1), ceil_mode=True)),
              ("amax", (5, 7)), ("aavg", (6, 9)), ("amax", 1), ("aavg", 1), ("aavg", (2, 3))]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("op,args", SIMD_CASES)
def test_simd_levels(simd_level, op, args, dtype):
    rng = np.random.default_rng(12)
    x = rng.standard_normal((2, 3, 19, 37)).astype(dtype)
    x[0, 0, 3, 4] = np.nan
    x[1, 2, 5] = -np.inf
    got = _run(op, args, x)
    if op == "max":
        y, idx = ref.max_pool2d(x, **args)
        want = (y, idx, ref.max_pool2d_backward(y, idx, x.shape))
    elif op == "avg":
        y = ref.avg_pool2d(x, **args)
        want = (y, ref.avg_pool2d_backward(y, x.shape, **args))
    elif op == "amax":
        y, idx = ref.adaptive_max_pool2d(x, args)
        want = (y, idx, ref.adaptive_max_pool2d_backward(y, idx, x.shape))
    else:
        y = ref.adaptive_avg_pool2d(x, args)
        want = (y, ref.adaptive_avg_pool2d_backward(y, x.shape))
    for g, w in zip(got, want):
        if g.dtype == np.int64:
            np.testing.assert_array_equal(g, w)
        else:
            np.testing.assert_allclose(g, w, **dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else {})


@pytest.mark.parametrize("op", ["max", "avg", "amax", "aavg"])
def test_three_dim_input(op):
    x = np.random.default_rng(13).standard_normal((3, 9, 10)).astype(np.float32)
    args = dict(kernel_size=3, stride=2, padding=1) if op in ("max", "avg") else (4, 3)
    got = _run(op, args, x)
    want = _run(op, args, x[None])
    for g, w in zip(got, want):
        assert g.shape == w.shape[1:]
        np.testing.assert_array_equal(g, w[0])
    if torch is not None and op == "max":
        ty, ti = F.max_pool2d(torch.from_numpy(x), return_indices=True, **args)
        np.testing.assert_array_equal(got[1], ti.numpy())


def test_non_contiguous_inputs_are_read_correctly():
    x = np.random.default_rng(14).standard_normal((2, 3, 12, 16))
    xt = np.ascontiguousarray(x.transpose(0, 1, 3, 2)).transpose(0, 1, 3, 2)  # F-ordered planes
    y, idx = nk.max_pool2d(xt, 2)
    y2, idx2 = nk.max_pool2d(x, 2)
    np.testing.assert_array_equal(y, y2)
    np.testing.assert_array_equal(idx, idx2)
    np.testing.assert_array_equal(nk.avg_pool2d(x[:, :, ::2], 2), nk.avg_pool2d(np.ascontiguousarray(x[:, :, ::2]), 2))


def test_empty_batch_and_channels():
    for shape in [(0, 3, 8, 8), (2, 0, 8, 8)]:
        x = np.zeros(shape, np.float32)
        y, idx = nk.max_pool2d(x, 2)
        assert y.shape == shape[:2] + (4, 4) and idx.shape == y.shape
        assert nk.max_pool2d_backward(y, idx, shape).shape == shape
        assert nk.avg_pool2d(x, 2).shape == y.shape
        assert nk.avg_pool2d_backward(y, shape, 2).shape == shape
        assert nk.adaptive_avg_pool2d(x, 3).shape == shape[:2] + (3, 3)
        assert nk.adaptive_max_pool2d(x, 3)[0].shape == shape[:2] + (3, 3)
    # adaptive output size 0 is an empty output (as torch); its backward is all zeros
    x = np.ones((1, 2, 4, 4), np.float32)
    assert nk.adaptive_avg_pool2d(x, (0, 2)).shape == (1, 2, 0, 2)
    dx = nk.adaptive_avg_pool2d_backward(np.zeros((1, 2, 0, 2), np.float32), x.shape, out=nan_filled(x.shape, np.float32))
    np.testing.assert_array_equal(dx, 0)


def test_overlapping_windows_accumulate_in_backward():
    # stride 1, kernel 3: the global maximum is the max of 9 windows; its gradient is their sum
    x = np.zeros((1, 1, 5, 5))
    x[0, 0, 2, 2] = 1.0
    y, idx = nk.max_pool2d(x, 3, 1, 1)
    assert (idx == 12).sum() == 9
    dx = nk.max_pool2d_backward(np.ones_like(y), idx, x.shape)
    assert dx[0, 0, 2, 2] == 9.0


@pytest.fixture
def wide_indices():
    """The 64-bit index variants (used for planes whose index offsets exceed int32) on small inputs."""
    nk._core._pool_force_wide_indices(True)
    try:
        yield
    finally:
        nk._core._pool_force_wide_indices(False)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("args", [dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1),
                                  dict(kernel_size=(2, 3), stride=(1, 3), dilation=(2, 1), padding=(1, 1)),
                                  dict(kernel_size=(19, 37)), "adaptive"])
def test_wide_index_variants(wide_indices, args, dtype):
    rng = np.random.default_rng(15)
    x = np.round(rng.standard_normal((2, 3, 19, 37)) * 2).astype(dtype)  # ties
    x[0, 1, 2, 3] = np.nan
    if args == "adaptive":
        y, idx = nk.adaptive_max_pool2d(x, (4, 1))
        y_ref, i_ref = ref.adaptive_max_pool2d(x, (4, 1))
    else:
        y, idx = nk.max_pool2d(x, **args)
        y_ref, i_ref = ref.max_pool2d(x, **args)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(idx, i_ref)


# Stride-2 row kernels (sW == 2, kW 2 or 3, no dilation along W, at least one vector of outputs
# per row): widths around the vector lengths of every SIMD level, padding, ceil_mode, vertical
# stride/dilation, and the exact 2x2 tiling whose backward writes each element once.
S2_CASES = [
    ((2, 3, 32, 32), dict(kernel_size=2)),  # exact tiling
    ((1, 2, 16, 48), dict(kernel_size=2)),
    ((1, 2, 10, 34), dict(kernel_size=2)),  # OW 17: the last vector overlaps
    ((1, 2, 11, 33), dict(kernel_size=2)),  # odd H and W: a row and a column no window reaches
    ((2, 2, 32, 32), dict(kernel_size=3, stride=2, padding=1)),
    ((1, 2, 9, 31), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
    ((1, 2, 9, 33), dict(kernel_size=3, stride=2)),
    ((1, 2, 9, 34), dict(kernel_size=3, stride=2, ceil_mode=True)),
    ((1, 2, 12, 40), dict(kernel_size=(3, 2), stride=(1, 2), padding=(1, 1))),
    ((1, 2, 12, 20), dict(kernel_size=(2, 3), stride=(3, 2), padding=(0, 1))),
    ((1, 1, 13, 66), dict(kernel_size=(4, 2), stride=(2, 2), padding=(2, 1), ceil_mode=True)),
    ((1, 2, 7, 18), dict(kernel_size=(1, 2), stride=(1, 2))),
    ((1, 2, 15, 21), dict(kernel_size=(3, 3), stride=(2, 2), dilation=(2, 1))),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,args", S2_CASES)
def test_stride2_row_kernels(simd_level, shape, args, dtype):
    rng = np.random.default_rng(16)
    x = np.round(rng.standard_normal(shape) * 3).astype(dtype)  # ties
    x.flat[5] = np.nan
    y_ref, i_ref = ref.max_pool2d(x, **args)
    y, idx = nk.max_pool2d(x, **args, out=nan_filled(y_ref.shape, dtype),
                           indices_out=np.full(y_ref.shape, -5, np.int64))
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(idx, i_ref)
    if "dilation" in args:
        return
    x = rng.standard_normal(shape).astype(dtype)
    for extra in (dict(), dict(count_include_pad=False), dict(divisor_override=3)):
        a = dict(args, **extra)
        y_ref = ref.avg_pool2d(x, **a)
        y = nk.avg_pool2d(x, **a, out=nan_filled(y_ref.shape, dtype))
        np.testing.assert_allclose(y, y_ref, **(dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else {}))
        dy = rng.standard_normal(y.shape).astype(dtype)
        dx = nk.avg_pool2d_backward(dy, shape, **a, out=nan_filled(shape, dtype))
        np.testing.assert_allclose(dx, ref.avg_pool2d_backward(dy, shape, **a),
                                   **(dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else {}))


@pytest.mark.parametrize("x_shape", [(0, 3, 4, 5), (2, 0, 4, 5), (0, 4, 5)])
def test_max_backward_with_no_planes_matches_twin(x_shape):
    """N*C == 0: the twin used to fail (indices.reshape(planes, -1)); both return an empty dx."""
    dy = np.zeros(x_shape[:-2] + (2, 2), np.float32)
    idx = np.zeros(dy.shape, np.int64)
    for a, b in ((nk.max_pool2d_backward(dy, idx, x_shape), ref.max_pool2d_backward(dy, idx, x_shape)),
                 (nk.adaptive_max_pool2d_backward(dy, idx, x_shape), ref.adaptive_max_pool2d_backward(dy, idx, x_shape))):
        assert a.shape == b.shape == x_shape and a.dtype == b.dtype == np.float32
    g = np.zeros(x_shape[:-2] + (1, 1), np.float32)
    assert ref.global_max_pool2d_backward(g, g.astype(np.int64), x_shape).shape == x_shape
