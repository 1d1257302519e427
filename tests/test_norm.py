"""nk.batch_norm / nk.batch_norm_backward against the NumPy twin, torch, finite differences."""

import numpy as np
import pytest

import nnkern as nk
from nnkern import reference as ref
from conftest import assert_bitwise_equal, assert_close, nan_filled, num_threads, numerical_grad, requires_torch, torch

# (N, C, *) shapes covering both reduction paths: tiles of 256 rows (S < 64: (N, C), small L / H*W) and
# planes (S >= 64), batch 1, primes and sizes around the SIMD widths.
SHAPES = [(2, 1), (3, 5), (7, 17), (64, 3), (65, 8), (129, 2), (600, 5), (513, 3, 7), (2, 3, 1), (5, 2, 7),
          (4, 3, 63), (3, 2, 64), (2, 3, 65), (1, 2, 9, 9), (3, 4, 7, 9), (2, 3, 8, 8), (9, 2, 4, 17), (1, 1, 1, 2)]


def make(rng, shape, dtype, affine=True, offset=0.0):
    c = shape[1]
    x = (rng.standard_normal(shape) * 2.0 + offset + rng.standard_normal((1, c) + (1,) * (len(shape) - 2)))
    w = rng.standard_normal(c) if affine else None
    b = rng.standard_normal(c) if affine else None
    cast = (lambda a: None if a is None else a.astype(dtype))
    return cast(x), cast(w), cast(b)


def running(rng, c, dtype):
    return rng.standard_normal(c).astype(dtype), rng.uniform(0.5, 2.0, c).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("shape", SHAPES)
def test_train_forward_matches_twin(rng, shape, dtype, affine):
    x, w, b = make(rng, shape, dtype, affine)
    rm, rv = running(rng, shape[1], dtype)
    rm2, rv2 = rm.copy(), rv.copy()
    y, sm, si = nk.batch_norm(x, rm, rv, w, b, training=True, momentum=0.3)
    ye, sme, sie = ref.batch_norm(x, rm2, rv2, w, b, training=True, momentum=0.3)
    scale = 10 if dtype == np.float32 else 1
    assert y.dtype == dtype and sm.dtype == dtype and si.dtype == dtype
    assert_close(sm, sme, dtype, scale)
    assert_close(si, sie, dtype, scale)
    assert_close(y, ye, dtype, scale)
    assert_close(rm, rm2, dtype, scale)
    assert_close(rv, rv2, dtype, scale)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", SHAPES[::2])
def test_eval_forward_matches_twin(rng, shape, dtype):
    x, w, b = make(rng, shape, dtype)
    rm, rv = running(rng, shape[1], dtype)
    rm0, rv0 = rm.copy(), rv.copy()
    y, sm, si = nk.batch_norm(x, rm, rv, w, b, training=False)
    ye, sme, sie = ref.batch_norm(x, rm, rv, w, b, training=False)
    assert_close(y, ye, dtype, 10)
    assert_bitwise_equal(sm, rm)
    assert_close(si, sie, dtype)
    assert_bitwise_equal(rm, rm0)  # eval mode leaves the running statistics alone
    assert_bitwise_equal(rv, rv0)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("shape", SHAPES)
def test_backward_matches_twin(rng, shape, dtype, training):
    x, w, b = make(rng, shape, dtype)
    rm, rv = running(rng, shape[1], dtype)
    _, sm, si = nk.batch_norm(x, rm, rv, w, b, training=training)
    dy = rng.standard_normal(shape).astype(dtype)
    dx, dw, db = nk.batch_norm_backward(dy, x, w, sm, si, training)
    dxe, dwe, dbe = ref.batch_norm_backward(dy, x, w, sm, si, training)
    scale = 30 if dtype == np.float32 else 10
    assert_close(db, dbe, dtype, scale)
    assert_close(dw, dwe, dtype, scale)
    # dx in training is a difference of O(1) terms: compare relative to its scale
    np.testing.assert_allclose(dx, dxe, rtol=0, atol=scale * nk_tol(dtype) * max(1.0, np.abs(dxe).max()))


def nk_tol(dtype):
    return 1e-6 if dtype == np.float32 else 1e-13


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("shape", [(5, 3), (3, 2, 4), (2, 2, 3, 3), (2, 2, 70)])
def test_finite_differences(rng, shape, training):
    x, w, b = make(rng, shape, np.float64)
    rm, rv = running(rng, shape[1], np.float64)
    proj = rng.standard_normal(shape)

    def loss():
        y, _, _ = nk.batch_norm(x, rm.copy(), rv.copy(), w, b, training=training)
        return float((y * proj).sum())

    _, sm, si = nk.batch_norm(x, rm.copy(), rv.copy(), w, b, training=training)
    dx, dw, db = nk.batch_norm_backward(proj, x, w, sm, si, training)
    np.testing.assert_allclose(dx, numerical_grad(loss, x), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(dw, numerical_grad(loss, w), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(db, numerical_grad(loss, b), rtol=1e-6, atol=1e-7)


@requires_torch
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", [(16, 5), (8, 3, 10), (4, 6, 9, 9), (2, 3, 5, 5)])
def test_torch_functional_training_steps(rng, shape, dtype):
    import torch.nn.functional as F

    c = shape[1]
    w, b = rng.standard_normal(c).astype(dtype), rng.standard_normal(c).astype(dtype)
    rm, rv = np.zeros(c, dtype), np.ones(c, dtype)
    trm, trv = torch.zeros(c, dtype=torch.from_numpy(rm).dtype), torch.ones(c, dtype=torch.from_numpy(rv).dtype)
    tol = dict(rtol=1e-12, atol=1e-12) if dtype == np.float64 else dict(rtol=2e-5, atol=2e-5)
    for step in range(4):
        x = (rng.standard_normal(shape) * (step + 1) + step).astype(dtype)
        dy = rng.standard_normal(shape).astype(dtype)
        tx = torch.tensor(x, requires_grad=True)
        tw, tb = torch.tensor(w, requires_grad=True), torch.tensor(b, requires_grad=True)
        ty = F.batch_norm(tx, trm, trv, tw, tb, training=True, momentum=0.2, eps=1e-3)
        ty.backward(torch.from_numpy(dy))
        y, sm, si = nk.batch_norm(x, rm, rv, w, b, training=True, momentum=0.2, eps=1e-3)
        dx, dw, db = nk.batch_norm_backward(dy, x, w, sm, si, True)
        np.testing.assert_allclose(y, ty.detach().numpy(), **tol)
        np.testing.assert_allclose(rm, trm.numpy(), **tol)
        np.testing.assert_allclose(rv, trv.numpy(), **tol)
        np.testing.assert_allclose(dx, tx.grad.numpy(), **tol)
        np.testing.assert_allclose(dw, tw.grad.numpy(), rtol=tol["rtol"], atol=tol["atol"] * np.prod(shape))
        np.testing.assert_allclose(db, tb.grad.numpy(), rtol=tol["rtol"], atol=tol["atol"] * np.prod(shape))
    # eval mode with the accumulated running statistics, and its backward
    x = rng.standard_normal(shape).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    tx = torch.tensor(x, requires_grad=True)
    tw, tb = torch.tensor(w, requires_grad=True), torch.tensor(b, requires_grad=True)
    ty = F.batch_norm(tx, trm, trv, tw, tb, training=False, eps=1e-3)
    ty.backward(torch.from_numpy(dy))
    y, sm, si = nk.batch_norm(x, rm, rv, w, b, training=False, eps=1e-3)
    dx, dw, db = nk.batch_norm_backward(dy, x, w, sm, si, False)
    np.testing.assert_allclose(y, ty.detach().numpy(), **tol)
    np.testing.assert_allclose(dx, tx.grad.numpy(), **tol)
    np.testing.assert_allclose(dw, tw.grad.numpy(), rtol=tol["rtol"], atol=tol["atol"] * np.prod(shape))
    np.testing.assert_allclose(db, tb.grad.numpy(), rtol=tol["rtol"], atol=tol["atol"] * np.prod(shape))


@requires_torch
def test_torch_without_running_stats_or_affine(rng):
    import torch.nn.functional as F

    x = rng.standard_normal((6, 4, 5))
    y, _, _ = nk.batch_norm(x, None, None, training=True)
    np.testing.assert_allclose(y, F.batch_norm(torch.from_numpy(x), None, None, training=True).numpy(),
                               rtol=1e-12, atol=1e-12)


def test_float32_accuracy_with_large_mean(rng):
    # |mean| / std = 1e4: a one-pass E[x^2] - E[x]^2 in float32 would lose the variance entirely
    x64 = rng.standard_normal((64, 3, 100)) + 1e4
    x32 = x64.astype(np.float32)
    _, sm, si = nk.batch_norm(x32, None, None, training=True)
    _, sme, sie = ref.batch_norm(x32.astype(np.float64), None, None, training=True)
    np.testing.assert_allclose(si, sie, rtol=1e-6)
    np.testing.assert_allclose(sm, sme, rtol=1e-7)


@pytest.mark.parametrize("shape", [(32, 64, 16, 16), (4096, 48), (300, 40, 9), (64, 33, 70)])
def test_thread_count_invariant(rng, shape):
    x, w, b = make(rng, shape, np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    results = []
    for t in (1, 2, 3):
        with num_threads(t):
            rm, rv = np.zeros(shape[1], np.float32), np.ones(shape[1], np.float32)
            y, sm, si = nk.batch_norm(x, rm, rv, w, b, training=True)
            dx, dw, db = nk.batch_norm_backward(dy, x, w, sm, si, True)
            ye, _, _ = nk.batch_norm(x, rm, rv, w, b, training=False)
            dxe, dwe, dbe = nk.batch_norm_backward(dy, x, w, rm, 1 / np.sqrt(rv + 1e-5), False)
            results.append((y, sm, si, rm, rv, dx, dw, db, ye, dxe, dwe, dbe))
    for r in results[1:]:
        for a, e in zip(r, results[0]):
            assert_bitwise_equal(a, e)


@pytest.mark.parametrize("shape", [(5, 3), (3, 4, 80), (2, 3, 5, 5)])
def test_simd_levels(rng, simd_level, shape):
    for dtype in (np.float64, np.float32):
        x, w, b = make(rng, shape, dtype)
        rm, rv = running(rng, shape[1], dtype)
        rm2, rv2 = rm.copy(), rv.copy()
        y, sm, si = nk.batch_norm(x, rm, rv, w, b, training=True)
        ye, sme, sie = ref.batch_norm(x, rm2, rv2, w, b, training=True)
        assert_close(y, ye, dtype, 10)
        assert_close(rv, rv2, dtype, 10)
        dy = rng.standard_normal(shape).astype(dtype)
        dx, dw, db = nk.batch_norm_backward(dy, x, w, sm, si, True)
        dxe, dwe, dbe = ref.batch_norm_backward(dy, x, w, sm, si, True)
        np.testing.assert_allclose(dx, dxe, rtol=0, atol=30 * nk_tol(dtype) * max(1.0, np.abs(dxe).max()))
        assert_close(dw, dwe, dtype, 30)
        ye2, _, _ = nk.batch_norm(x, rm, rv, w, b, training=False)
        assert_close(ye2, ref.batch_norm(x, rm, rv, w, b, training=False)[0], dtype, 10)


@pytest.mark.parametrize("shape", [(6, 5), (2, 3, 70), (3, 2, 4, 4)])
def test_out_buffers_nan_filled_and_aliases(rng, shape):
    x, w, b = make(rng, shape, np.float64)
    c = shape[1]
    y0, sm0, si0 = nk.batch_norm(x, None, None, w, b, training=True)
    out, smo, sio = nan_filled(shape, np.float64), nan_filled(c, np.float64), nan_filled(c, np.float64)
    y, sm, si = nk.batch_norm(x, None, None, w, b, training=True, out=out, save_mean_out=smo, save_invstd_out=sio)
    assert y is out and sm is smo and si is sio
    assert_bitwise_equal(out, y0)
    assert_bitwise_equal(smo, sm0)
    assert_bitwise_equal(sio, si0)
    dy = rng.standard_normal(shape)
    dx0, dw0, db0 = nk.batch_norm_backward(dy, x, w, sm, si, True)
    outs = nan_filled(shape, np.float64), nan_filled(c, np.float64), nan_filled(c, np.float64)
    res = nk.batch_norm_backward(dy, x, w, sm, si, True, out=outs[0], dweight_out=outs[1], dbias_out=outs[2])
    for r, o, e in zip(res, outs, (dx0, dw0, db0)):
        assert r is o
        assert_bitwise_equal(o, e)
    # in place: out=x for the forward, out=dy for the backward
    xc = x.copy()
    nk.batch_norm(xc, None, None, w, b, training=True, out=xc)
    assert_bitwise_equal(xc, y0)
    dyc = dy.copy()
    nk.batch_norm_backward(dyc, x, w, sm, si, True, out=dyc)
    assert_bitwise_equal(dyc, dx0)


def test_strided_input_is_copied(rng):
    x, w, b = make(rng, (6, 4, 5, 6), np.float64)
    xs = np.ascontiguousarray(x.transpose(0, 1, 3, 2)).transpose(0, 1, 3, 2)  # F-ordered spatial dims
    assert not xs.flags.c_contiguous
    assert_bitwise_equal(nk.batch_norm(xs, None, None, w, b, training=True)[0],
                         nk.batch_norm(x, None, None, w, b, training=True)[0])


def test_empty_and_degenerate(rng):
    rm, rv = np.zeros(3), np.ones(3)
    y, sm, si = nk.batch_norm(np.zeros((0, 3)), rm, rv, training=True)
    assert y.shape == (0, 3) and np.all(rm == 0) and np.all(rv == 1)  # torch leaves them alone too
    # save statistics of an empty batch are zeros, in the twin too (it returned NaN: fuzz finding)
    assert np.all(sm == 0) and np.all(si == 0)
    rm2, rv2 = np.zeros(3), np.ones(3)
    ry, rsm, rsi = ref.batch_norm(np.zeros((0, 3, 5)), rm2, rv2, training=True)
    assert ry.shape == (0, 3, 5) and np.all(rsm == 0) and np.all(rsi == 0) and np.all(rm2 == 0) and np.all(rv2 == 1)
    dx, dw, db = nk.batch_norm_backward(np.zeros((0, 3)), np.zeros((0, 3)), None, sm, si, True)
    assert dx.shape == (0, 3) and np.all(dw == 0) and np.all(db == 0)
    y, sm, si = nk.batch_norm(np.zeros((4, 0, 2)), np.zeros(0), np.zeros(0), training=True)
    assert y.shape == (4, 0, 2) and sm.shape == (0,)
    y, _, _ = nk.batch_norm(np.zeros((0, 3, 2)), rm, rv, training=False)
    assert y.shape == (0, 3, 2)
    # a constant channel: variance 0, output = bias exactly
    x = np.full((5, 2), 3.0)
    y, sm, si = nk.batch_norm(x, None, None, np.ones(2), np.array([0.5, -1.0]), training=True)
    assert np.all(y == np.array([0.5, -1.0]))
    # NaN propagates to its channel only
    x = rng.standard_normal((4, 3))
    x[1, 2] = np.nan
    y, _, _ = nk.batch_norm(x, None, None, training=True)
    assert np.isnan(y[:, 2]).all() and np.isfinite(y[:, :2]).all()


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the twin computes inf - inf
@pytest.mark.parametrize("shape", [(4, 2, 4), (300, 2), (3, 2, 70)])  # tile and plane reductions
def test_infinite_inputs_give_torchs_statistics(rng, shape):
    # An infinite value makes its channel's mean +-inf (and inf - inf = NaN with both signs), as
    # torch's sum / n; merging partial means used to turn +inf into NaN (fuzz, batch_norm 1003138).
    x = rng.standard_normal(shape)
    x[(1, 1) + (0,) * (len(shape) - 2)] = np.inf
    x[(2, 0) + (0,) * (len(shape) - 2)] = -np.inf
    x[(3 % shape[0], 0) + (1 % shape[-1],) * (len(shape) - 2)] = np.inf
    _, sm, si = nk.batch_norm(x, None, None, training=True)
    _, sme, sie = ref.batch_norm(x, None, None, training=True)
    assert np.isnan(sm[0]) and sm[1] == np.inf and np.isnan(si).all()
    np.testing.assert_array_equal(sm, sme)
    np.testing.assert_array_equal(si, sie)
    if torch is not None:
        tm = torch.ops.aten.native_batch_norm(torch.from_numpy(x), None, None, None, None, True, 0.1, 1e-5)
        np.testing.assert_array_equal(sm, tm[1].numpy())
        np.testing.assert_array_equal(si, tm[2].numpy())


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_empty_batch_backward_ignores_nonfinite_statistics():
    # sum over an empty batch is 0 whatever save_invstd holds (it was 0 * inf = NaN: fuzz,
    # batch_norm_backward 1000259; torch 2.13 dies with SIGFPE on this input, so no torch check).
    si = np.array([np.inf, np.nan, 1.0])
    dx, dw, db = nk.batch_norm_backward(np.zeros((0, 3)), np.zeros((0, 3)), None, np.zeros(3), si, True)
    _, dwe, dbe = ref.batch_norm_backward(np.zeros((0, 3)), np.zeros((0, 3)), None, np.zeros(3), si, True)
    assert dx.shape == (0, 3)
    np.testing.assert_array_equal(dw, np.zeros(3))
    np.testing.assert_array_equal(dw, dwe)
    np.testing.assert_array_equal(db, dbe)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("shape", [(5, 3, 4), (6, 3), (2, 3, 80)])
@pytest.mark.parametrize("training", [True, False])
def test_backward_with_infinite_weight_or_invstd_follows_torch(rng, shape, training):
    # dx = (dy - (x - mean) k - mean(dy)) * weight * invstd in torch's order: an infinite weight or
    # invstd gives +-inf (a finite bracket times infinity), not the NaN of inf - inf that the folded
    # form k1 dy + k2 (x - mean) + k3 gave (fuzz, batch_norm_backward 18576 and 1001619).
    x, dy = rng.standard_normal(shape), rng.standard_normal(shape)
    sm, si = rng.standard_normal(3), rng.uniform(0.5, 2.0, 3)
    w = rng.standard_normal(3)
    w[0], si[1], si[2] = np.inf, np.inf, -np.inf
    got = nk.batch_norm_backward(dy, x, w, sm, si, training)
    want = ref.batch_norm_backward(dy, x, w, sm, si, training)
    assert np.isinf(got[0][:, 0]).all() and np.isinf(got[0][:, 1]).all()
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-12)
    if torch is not None and training:  # (eval mode: torch reads running statistics, none here)
        t = torch.ops.aten.native_batch_norm_backward(
            torch.from_numpy(dy), torch.from_numpy(x), torch.from_numpy(w), None, None, torch.from_numpy(sm),
            torch.from_numpy(si), training, 1e-5, [True, True, True])
        for a, b in zip(got, t):
            np.testing.assert_allclose(a, b.numpy(), rtol=1e-12)


def test_errors():
    x = np.ones((4, 3), np.float32)
    c32 = np.ones(3, np.float32)
    with pytest.raises(ValueError, match=r"batch_norm: x has 1 dims, expected at least 2 \(N, C, \.\.\.\)"):
        nk.batch_norm(np.ones(3, np.float32), c32, c32)
    with pytest.raises(TypeError, match=r"batch_norm: x has dtype int64, expected float32 or float64"):
        nk.batch_norm(np.ones((4, 3), np.int64), c32, c32)
    with pytest.raises(TypeError,
                       match=r"batch_norm: running_mean has dtype float64, expected float32 \(the dtype of x\)"):
        nk.batch_norm(x, np.zeros(3), c32.copy(), training=True)
    with pytest.raises(ValueError, match=r"batch_norm: running_mean has shape \(4,\), expected \(3,\)"):
        nk.batch_norm(x, np.zeros(4, np.float32), c32.copy())
    with pytest.raises(ValueError, match=r"batch_norm: weight has shape \(2,\), expected \(3,\)"):
        nk.batch_norm(x, c32, c32, weight=np.ones(2, np.float32))
    with pytest.raises(ValueError, match=r"running_mean and running_var are required when training=False"):
        nk.batch_norm(x, None, None)
    with pytest.raises(ValueError, match=r"must both be arrays or both be None"):
        nk.batch_norm(x, c32.copy(), None, training=True)
    with pytest.raises(ValueError,
                       match=r"expected more than 1 value per channel when training, got x of shape \(1, 3\)"):
        nk.batch_norm(np.ones((1, 3), np.float32), None, None, training=True)
    with pytest.raises(ValueError, match=r"batch_norm: momentum must be in \[0.0, 1.0\], got 1.5"):
        nk.batch_norm(x, c32.copy(), c32.copy(), training=True, momentum=1.5)
    with pytest.raises(ValueError,
                       match=r"momentum=None \(cumulative moving average\) is handled by the BatchNorm layers"):
        nk.batch_norm(x, c32.copy(), c32.copy(), training=True, momentum=None)
    with pytest.raises(ValueError, match=r"batch_norm: eps must be a finite number >= 0, got nan"):
        nk.batch_norm(x, c32, c32, eps=float("nan"))
    ro = np.zeros(3, np.float32)
    ro.setflags(write=False)
    with pytest.raises(ValueError, match=r"batch_norm: running_mean is read-only"):
        nk.batch_norm(x, ro, c32.copy(), training=True)
    nk.batch_norm(x, ro, c32, training=False)  # only read in eval mode: fine
    with pytest.raises(ValueError, match=r"batch_norm: running_var must be C-contiguous"):
        nk.batch_norm(x, c32.copy(), np.ones(6, np.float32)[::2], training=True)
    rm = np.zeros(3, np.float32)
    with pytest.raises(ValueError, match=r"batch_norm: running_mean shares memory with running_var"):
        nk.batch_norm(x, rm, rm, training=True)
    with pytest.raises(ValueError, match=r"batch_norm: out has shape \(3, 4\), expected \(4, 3\)"):
        nk.batch_norm(x, c32, c32, out=np.empty((3, 4), np.float32))
    with pytest.raises(TypeError, match=r"batch_norm: out has dtype float64, expected float32"):
        nk.batch_norm(x, c32, c32, out=np.empty((4, 3)))
    with pytest.raises(ValueError, match=r"batch_norm: out must be C-contiguous"):
        nk.batch_norm(x, c32, c32, out=np.empty((3, 4), np.float32).T)
    with pytest.raises(ValueError, match=r"batch_norm_backward: dweight_out is read-only"):
        ro3 = np.empty(3, np.float32)
        ro3.setflags(write=False)
        nk.batch_norm_backward(x, x, None, c32, c32, dweight_out=ro3)
    big = np.ones((5, 3), np.float32)
    with pytest.raises(ValueError, match=r"batch_norm: out partially overlaps x"):
        nk.batch_norm(big[:4], c32, c32, out=big[1:])
    with pytest.raises(ValueError, match=r"batch_norm: save_mean_out shares memory with x"):
        nk.batch_norm(x, c32, c32, save_mean_out=x[0])
    with pytest.raises(ValueError,
                       match=r"batch_norm_backward: x has shape \(4, 2\), expected \(4, 3\) \(the shape of dy\)"):
        nk.batch_norm_backward(x, np.ones((4, 2), np.float32), None, c32, c32)
    with pytest.raises(TypeError, match=r"batch_norm_backward: save_invstd has dtype float64, expected float32 "
                                        r"\(the dtype of dy\)"):
        nk.batch_norm_backward(x, x, None, c32, np.ones(3))
    with pytest.raises(ValueError, match=r"batch_norm_backward: save_mean has shape \(2,\), expected \(3,\)"):
        nk.batch_norm_backward(x, x, None, np.ones(2, np.float32), c32)
    with pytest.raises(TypeError, match=r"batch_norm: x must be a numpy.ndarray, got list"):
        nk.batch_norm([[1.0, 2.0]], None, None, training=True)


from hypothesis import given, settings, strategies as st  # noqa: E402


@settings(max_examples=40, deadline=None)
@given(n=st.integers(2, 300), c=st.integers(1, 6), spatial=st.sampled_from([(), (1,), (5,), (63,), (64,), (3, 30)]),
       affine=st.booleans(), training=st.booleans(), momentum=st.floats(0.0, 1.0), seed=st.integers(0, 2**32 - 1))
def test_hypothesis_against_twin(n, c, spatial, affine, training, momentum, seed):
    rng = np.random.default_rng(seed)
    shape = (n, c) + spatial
    x, w, b = make(rng, shape, np.float64, affine, offset=rng.uniform(-5, 5))
    rm, rv = running(rng, c, np.float64)
    rm2, rv2 = rm.copy(), rv.copy()
    y, sm, si = nk.batch_norm(x, rm, rv, w, b, training=training, momentum=momentum)
    ye, sme, sie = ref.batch_norm(x, rm2, rv2, w, b, training=training, momentum=momentum)
    assert_close(y, ye, np.float64, 100)
    assert_close(rm, rm2, np.float64, 10)
    assert_close(rv, rv2, np.float64, 10)
    dy = rng.standard_normal(shape)
    dx, dw, db = nk.batch_norm_backward(dy, x, w, sm, si, training)
    dxe, dwe, dbe = ref.batch_norm_backward(dy, x, w, sme, sie, training)
    np.testing.assert_allclose(dx, dxe, rtol=0, atol=1e-11 * max(1.0, np.abs(dxe).max()))
    assert_close(dw, dwe, np.float64, 1000)
    assert_close(db, dbe, np.float64, 1000)
