"""Loss kernels (MSE, softmax cross-entropy, BCE with logits): forward, backward and fused forms
against the NumPy twins, finite differences, torch, NaN-prefilled and in-place outputs, thread
counts, SIMD levels, extreme values and bad inputs."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nnkern as nk
from conftest import (assert_bitwise_equal, assert_close, nan_filled, num_threads, numerical_grad, requires_torch,
                      torch)
from nnkern import reference as ref

DTYPES = [np.float32, np.float64]
REDUCTIONS = ["mean", "sum", "none"]


def close_loss(a, b, dtype, scale=1.0):
    if isinstance(b, float):
        assert isinstance(a, float), type(a)
    assert_close(np.asarray(a), np.asarray(b), dtype, scale=scale)


def bitwise(a, b):
    # conftest.assert_bitwise_equal cannot view a 0-d array as bytes: compare 1-d views
    assert_bitwise_equal(np.atleast_1d(np.asarray(a)), np.atleast_1d(np.asarray(b)))


def _arr(rng, shape, dtype, scale=1.0):
    return np.asarray(rng.standard_normal(shape) * scale, dtype=dtype)


# === MSE =========================================================================================

MSE_SHAPES = [(0,), (1,), (7,), (8,), (9,), (15,), (17,), (31,), (33,), (63,), (65,), (4099,), (3, 5, 7), (2, 0, 3)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_mse_matches_twin(rng, reduction, dtype):
    for shape in MSE_SHAPES:
        p, t = _arr(rng, shape, dtype), _arr(rng, shape, dtype)
        with np.errstate(invalid="ignore"):
            close_loss(nk.mse_loss(p, t, reduction), ref.mse_loss(p, t, reduction), dtype, scale=4)
            g = 0.7 if reduction != "none" else _arr(rng, shape, dtype)
            assert_close(nk.mse_loss_backward(p, t, reduction, g), ref.mse_loss_backward(p, t, reduction, g), dtype)
            loss, grad = nk.mse_loss_forward_backward(p, t, reduction, g)
            close_loss(loss, ref.mse_loss(p, t, reduction), dtype, scale=4)
            assert_close(grad, ref.mse_loss_backward(p, t, reduction, g), dtype)


def test_mse_empty_mean_is_nan():
    e = np.ones(0, np.float32)
    assert np.isnan(nk.mse_loss(e, e)) and nk.mse_loss(e, e, "sum") == 0.0


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_mse_finite_differences(rng, reduction):
    p, t = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    r = rng.standard_normal((3, 4))
    if reduction == "none":
        grad = nk.mse_loss_backward(p, t, "none", r)
        num = numerical_grad(lambda: float((nk.mse_loss(p, t, "none") * r).sum()), p)
    else:
        grad = nk.mse_loss_backward(p, t, reduction, 1.5)
        num = numerical_grad(lambda: 1.5 * nk.mse_loss(p, t, reduction), p)
    np.testing.assert_allclose(grad, num, rtol=1e-6, atol=1e-8)


@requires_torch
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_mse_matches_torch(rng, reduction, dtype):
    import torch.nn.functional as F

    p, t = _arr(rng, (33, 17), dtype), _arr(rng, (33, 17), dtype)
    tp = torch.from_numpy(p.copy()).requires_grad_(True)
    tl = F.mse_loss(tp, torch.from_numpy(t), reduction=reduction)
    g = _arr(rng, (33, 17), dtype) if reduction == "none" else np.asarray(0.5, dtype)
    tl.backward(torch.from_numpy(g))
    loss, grad = nk.mse_loss_forward_backward(p, t, reduction, g if reduction == "none" else 0.5)
    close_loss(loss, tl.detach().numpy(), dtype, scale=4)
    assert_close(grad, tp.grad.numpy(), dtype, scale=2)


# === cross-entropy ===============================================================================

def _ce_data(rng, shape, dtype, ignore_frac=0.0, ignore_index=-100, scale=3.0):
    x = _arr(rng, shape, dtype, scale)
    C = shape[0] if len(shape) == 1 else shape[1]
    tshape = () if len(shape) == 1 else (shape[0],) + tuple(shape[2:])
    t = np.asarray(rng.integers(0, max(C, 1), tshape), dtype=np.int64)
    if ignore_frac and t.size:
        t[rng.random(tshape) < ignore_frac] = ignore_index
    return x, t


CE_SHAPES = [(0, 5), (1, 1), (1, 7), (7, 2), (9, 8), (5, 16), (4, 17), (3, 31), (3, 33), (2, 65), (33, 10), (8, 1000),
             (6,), (4, 5, 3), (3, 7, 2, 5), (2, 3, 40), (2, 1, 9), (0, 3, 4), (2, 3, 0)]
CE_CONFIGS = [dict(), dict(weight=True), dict(ignore=0.3), dict(smoothing=0.1), dict(smoothing=1.0),
              dict(weight=True, ignore=0.3, smoothing=0.25), dict(ignore=0.3, ignore_index=2)]


def _ce_args(rng, shape, dtype, cfg):
    ignore_index = cfg.get("ignore_index", -100)
    x, t = _ce_data(rng, shape, dtype, cfg.get("ignore", 0.0), ignore_index)
    C = shape[0] if len(shape) == 1 else shape[1]
    w = rng.uniform(0.2, 2.0, C).astype(dtype) if cfg.get("weight") else None
    return x, t, dict(weight=w, ignore_index=ignore_index, label_smoothing=cfg.get("smoothing", 0.0))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("cfg", CE_CONFIGS, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()) or "plain")
def test_ce_matches_twin(rng, cfg, reduction, dtype):
    for shape in CE_SHAPES:
        x, t, kw = _ce_args(rng, shape, dtype, cfg)
        with np.errstate(invalid="ignore", divide="ignore"):
            expected = ref.cross_entropy(x, t, reduction=reduction, **kw)
            close_loss(nk.cross_entropy(x, t, reduction=reduction, **kw), expected, dtype, scale=8)
            g = _arr(rng, t.shape, dtype) if reduction == "none" else 0.8
            rgrad = ref.cross_entropy_backward(x, t, reduction=reduction, grad_output=g, **kw)
            assert_close(nk.cross_entropy_backward(x, t, reduction=reduction, grad_output=g, **kw), rgrad, dtype,
                         scale=4, err_msg=f"{shape}")
            loss, grad = nk.cross_entropy_forward_backward(x, t, reduction=reduction, grad_output=g, **kw)
            close_loss(loss, expected, dtype, scale=8)
            assert_close(grad, rgrad, dtype, scale=4)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("cfg", [dict(), dict(weight=True, ignore=0.3, smoothing=0.2), dict(smoothing=0.5)])
@pytest.mark.parametrize("shape", [(4, 5), (3, 4, 2), (5,)])
def test_ce_finite_differences(rng, shape, cfg, reduction):
    x, t, kw = _ce_args(rng, shape, np.float64, cfg)
    if reduction == "none":
        r = np.asarray(rng.standard_normal(t.shape))
        grad = nk.cross_entropy_backward(x, t, reduction="none", grad_output=r, **kw)
        num = numerical_grad(lambda: float((nk.cross_entropy(x, t, reduction="none", **kw) * r).sum()), x)
    else:
        grad = nk.cross_entropy_backward(x, t, reduction=reduction, grad_output=1.3, **kw)
        num = numerical_grad(lambda: 1.3 * nk.cross_entropy(x, t, reduction=reduction, **kw), x)
    np.testing.assert_allclose(grad, num, rtol=1e-6, atol=1e-8)


@requires_torch
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("cfg", CE_CONFIGS, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()) or "plain")
@pytest.mark.parametrize("shape", [(64, 10), (16, 1000), (4, 5, 3, 3), (7,)])
def test_ce_matches_torch(rng, shape, cfg, reduction, dtype):
    import torch.nn.functional as F

    x, t, kw = _ce_args(rng, shape, dtype, cfg)
    tx = torch.from_numpy(x.copy()).requires_grad_(True)
    tw = None if kw["weight"] is None else torch.from_numpy(kw["weight"])
    tl = F.cross_entropy(tx, torch.from_numpy(t), weight=tw, ignore_index=kw["ignore_index"], reduction=reduction,
                         label_smoothing=kw["label_smoothing"])
    g = _arr(rng, t.shape, dtype) if reduction == "none" else np.asarray(1.0, dtype)
    tl.backward(torch.from_numpy(g))
    loss, grad = nk.cross_entropy_forward_backward(x, t, reduction=reduction, grad_output=g if reduction == "none" else 1.0,
                                                   **kw)
    close_loss(loss, tl.detach().numpy(), dtype, scale=8)
    assert_close(grad, tx.grad.numpy(), dtype, scale=4)


@requires_torch
def test_ce_all_ignored_matches_torch():
    import torch.nn.functional as F

    x = np.ones((3, 4))
    t = np.full(3, -100)
    tx = torch.from_numpy(x).requires_grad_(True)
    tl = F.cross_entropy(tx, torch.from_numpy(t))
    tl.backward()
    loss, grad = nk.cross_entropy_forward_backward(x, t)
    assert np.isnan(loss) and np.isnan(tl.item())
    np.testing.assert_array_equal(grad, tx.grad.numpy())  # zeros
    assert nk.cross_entropy(x, t, reduction="sum") == 0.0


@pytest.mark.parametrize("shape", [(9, 33), (4, 7, 6)])
def test_ce_out_nan_prefilled_and_inplace(rng, shape):
    x, t, kw = _ce_args(rng, shape, np.float32, dict(weight=True, ignore=0.3, smoothing=0.1))
    loss, grad = nk.cross_entropy_forward_backward(x, t, **kw)
    out = nan_filled(shape, np.float32)
    loss2, g2 = nk.cross_entropy_forward_backward(x, t, out=out, **kw)
    assert g2 is out and loss2 == loss
    assert_bitwise_equal(out, grad)
    out = nan_filled(shape, np.float32)
    assert nk.cross_entropy_backward(x, t, out=out, **kw) is out
    assert_bitwise_equal(out, grad)
    xi = x.copy()  # dlogits written over the logits
    loss3, g3 = nk.cross_entropy_forward_backward(xi, t, out=xi, **kw)
    assert g3 is xi and loss3 == loss
    assert_bitwise_equal(xi, grad)


@pytest.mark.parametrize("shape", [(8192, 10), (512, 1000), (64, 10, 50), (3, 5, 20000)])
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_ce_threads_bitwise(rng, shape, reduction):
    x, t, kw = _ce_args(rng, shape, np.float32, dict(weight=True, ignore=0.1, smoothing=0.1))
    res = []
    for n in (1, 2, 3):
        with num_threads(n):
            res.append(nk.cross_entropy_forward_backward(x, t, reduction=reduction, **kw)
                       + (nk.cross_entropy(x, t, reduction=reduction, **kw),))
    for r in res[1:]:
        for a, b in zip(r, res[0]):
            bitwise(a, b)


@pytest.mark.parametrize("dtype", DTYPES)
def test_ce_every_simd_level(simd_level, rng, dtype):
    for shape in [(9, 17), (5, 33), (3, 1000), (4, 7, 19)]:
        for cfg in (dict(), dict(weight=True, ignore=0.3, smoothing=0.2)):
            x, t, kw = _ce_args(rng, shape, dtype, cfg)
            loss, grad = nk.cross_entropy_forward_backward(x, t, **kw)
            close_loss(loss, ref.cross_entropy(x, t, **kw), dtype, scale=8)
            assert_close(grad, ref.cross_entropy_backward(x, t, **kw), dtype, scale=4)


@pytest.mark.parametrize("dtype", DTYPES)
def test_ce_extreme_logits(dtype):
    x = np.array([[1e4, -1e4, 0.0], [0.0, -np.inf, 1.0], [-np.inf, 0.0, 1.0], [np.nan, 0.0, 1.0],
                  [np.inf, 0.0, 1.0]], dtype)
    t = np.array([1, 0, 0, 1, 2])
    loss = nk.cross_entropy(x, t, reduction="none")
    assert np.isclose(loss[0], 2e4, rtol=1e-6)  # large but finite, no overflow
    assert np.isclose(loss[1], np.log(1 + np.e) - 0.0, rtol=1e-6)
    assert loss[2] == np.inf  # the target has probability 0
    assert np.isnan(loss[3]) and np.isnan(loss[4])
    grad = nk.cross_entropy_backward(x, t, reduction="none")
    assert np.isfinite(grad[:3]).all() and np.isnan(grad[3]).all()
    np.testing.assert_allclose(grad[0], [1.0, -1.0, 0.0], atol=1e-6)


def test_ce_target_dtypes(rng):
    x, t, _ = _ce_args(rng, (6, 4), np.float64, {})
    expected = nk.cross_entropy(x, t)
    for dt in (np.int32, np.int16, np.uint8, np.uint64):
        assert nk.cross_entropy(x, t.astype(dt)) == expected
    assert nk.cross_entropy(x, t[::-1][::-1]) == expected  # any layout


@settings(max_examples=40, deadline=None)
@given(n=st.integers(0, 9), c=st.integers(1, 40), extra=st.lists(st.integers(1, 5), max_size=2),
       smoothing=st.sampled_from([0.0, 0.3]), weighted=st.booleans(), red=st.sampled_from(REDUCTIONS),
       seed=st.integers(0, 2**31 - 1))
def test_ce_hypothesis(n, c, extra, smoothing, weighted, red, seed):
    rng = np.random.default_rng(seed)
    cfg = dict(ignore=0.2, smoothing=smoothing, weight=weighted)
    x, t, kw = _ce_args(rng, (n, c) + tuple(extra), np.float64, cfg)
    with np.errstate(invalid="ignore", divide="ignore"):
        loss, grad = nk.cross_entropy_forward_backward(x, t, reduction=red, **kw)
        close_loss(loss, ref.cross_entropy(x, t, reduction=red, **kw), np.float64, scale=8)
        assert_close(grad, ref.cross_entropy_backward(x, t, reduction=red, **kw), np.float64, scale=4)


def test_ce_errors():
    x = np.zeros((4, 3), np.float32)
    t = np.array([0, 1, 2, 1])
    with pytest.raises(ValueError, match=r"cross_entropy: target\[2\] = 3 is out of range for 3 classes "
                                         r"\(expected 0 <= target < 3 or ignore_index=-100\)"):
        nk.cross_entropy(x, np.array([0, 1, 3, 1]))
    with pytest.raises(ValueError, match=r"cross_entropy_backward: target\[0\] = -1 is out of range"):
        nk.cross_entropy_backward(x, np.array([-1, 1, 0, 1]))
    nk.cross_entropy(x, np.array([-1, 1, 0, 1]), ignore_index=-1)  # fine: ignored
    with pytest.raises(ValueError, match=r"cross_entropy_forward_backward: target\[1, 2, 0\] = 7 is out of range"):
        tt = np.zeros((2, 3, 2), np.int64)
        tt[1, 2, 0] = 7
        nk.cross_entropy_forward_backward(np.zeros((2, 3, 3, 2)), tt)
    with pytest.raises(ValueError, match=r"cross_entropy: target = 5 is out of range for 3 classes"):
        nk.cross_entropy(np.zeros(3), np.array(5))
    with pytest.raises(TypeError, match=r"cross_entropy: target has dtype float32, expected an integer dtype"):
        nk.cross_entropy(x, t.astype(np.float32))
    with pytest.raises(TypeError, match=r"cross_entropy: target has dtype bool"):
        nk.cross_entropy(x, t > 0)
    with pytest.raises(ValueError, match=r"cross_entropy: target has shape \(3,\), expected \(4,\)"):
        nk.cross_entropy(x, t[:3])
    with pytest.raises(ValueError, match=r"cross_entropy: target has shape \(4, 1\), expected \(4, 2\)"):
        nk.cross_entropy(np.zeros((4, 3, 2)), np.zeros((4, 1), np.int64))
    with pytest.raises(ValueError, match=r"cross_entropy: logits has 0 dims"):
        nk.cross_entropy(np.array(1.0), np.array(0))
    with pytest.raises(ValueError, match=r"cross_entropy: logits has 0 classes"):
        nk.cross_entropy(np.zeros((4, 0)), np.zeros(4, np.int64))
    with pytest.raises(ValueError, match=r"cross_entropy: weight has shape \(2,\), expected \(3,\)"):
        nk.cross_entropy(x, t, weight=np.ones(2, np.float32))
    with pytest.raises(TypeError, match=r"cross_entropy: weight has dtype float64, expected float32 \(the dtype of logits\)"):
        nk.cross_entropy(x, t, weight=np.ones(3))
    with pytest.raises(ValueError, match=r"cross_entropy: label_smoothing must be in \[0.0, 1.0\], got 1.5"):
        nk.cross_entropy(x, t, label_smoothing=1.5)
    with pytest.raises(ValueError, match=r"cross_entropy: reduction must be 'mean', 'sum' or 'none', got 'avg'"):
        nk.cross_entropy(x, t, reduction="avg")
    with pytest.raises(ValueError, match=r"cross_entropy_backward: grad_output must be a scalar for reduction='mean'"):
        nk.cross_entropy_backward(x, t, grad_output=np.ones(4, np.float32))
    with pytest.raises(ValueError, match=r"cross_entropy_backward: grad_output has shape \(3,\), expected \(4,\)"):
        nk.cross_entropy_backward(x, t, reduction="none", grad_output=np.ones(3, np.float32))
    with pytest.raises(TypeError, match=r"cross_entropy_backward: grad_output must be a number or a numpy array"):
        nk.cross_entropy_backward(x, t, grad_output="one")
    with pytest.raises(ValueError, match=r"cross_entropy_backward: out has shape \(3, 4\), expected \(4, 3\)"):
        nk.cross_entropy_backward(x, t, out=np.zeros((3, 4), np.float32))
    with pytest.raises(ValueError, match=r"cross_entropy_backward: out must be C-contiguous"):
        nk.cross_entropy_backward(x, t, out=np.zeros((3, 4), np.float32).T)
    ro = np.zeros((4, 3), np.float32)
    ro.setflags(write=False)
    with pytest.raises(ValueError, match=r"cross_entropy_forward_backward: out is read-only"):
        nk.cross_entropy_forward_backward(x, t, out=ro)
    buf = np.zeros(20, np.float32)
    with pytest.raises(ValueError, match=r"cross_entropy_backward: out partially overlaps logits"):
        nk.cross_entropy_backward(buf[:12].reshape(4, 3), t, out=buf[3:15].reshape(4, 3))
    w = np.ones(12, np.float32)
    with pytest.raises(ValueError, match=r"cross_entropy_backward: out shares memory with weight"):
        nk.cross_entropy_backward(np.zeros((1, 12), np.float32), np.array([0]), weight=w, out=w.reshape(1, 12))


# === BCE with logits =============================================================================

def _bce_data(rng, shape, dtype, soft=False):
    x = _arr(rng, shape, dtype, 3.0)
    t = rng.random(shape) if soft else (rng.random(shape) > 0.5)
    return x, np.asarray(t, dtype=dtype)


def _weights(rng, shape, kind, dtype):
    """weight / pos_weight of a broadcast kind: None, one element, (C,), full, (N, 1) (expanded by
    the Python wrapper), or (1, C)."""
    if kind is None:
        return None
    if kind == "one":
        return np.asarray(rng.uniform(0.5, 2.0, (1,)), dtype)
    if kind == "last" and len(shape) >= 1:
        return np.asarray(rng.uniform(0.5, 2.0, shape[-1:]), dtype)
    if kind == "full":
        return np.asarray(rng.uniform(0.5, 2.0, shape), dtype)
    if kind == "lead" and len(shape) >= 2:
        return np.asarray(rng.uniform(0.5, 2.0, shape[:1] + (1,) * (len(shape) - 1)), dtype)
    if kind == "unit-lead" and len(shape) >= 2:
        return np.asarray(rng.uniform(0.5, 2.0, (1,) + shape[-1:]), dtype)
    return None


BCE_SHAPES = [(0,), (1,), (7,), (17,), (65,), (300,), (3, 5), (9, 33), (4, 3, 5), (2, 0)]
WKINDS = [None, "one", "last", "full", "lead", "unit-lead"]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("wkind,pkind", [(None, None), ("full", None), (None, "last"), ("lead", "one"),
                                         ("last", "last"), ("unit-lead", "full"), ("one", "lead")])
def test_bce_matches_twin(rng, wkind, pkind, reduction, dtype):
    for shape in BCE_SHAPES:
        x, t = _bce_data(rng, shape, dtype, soft=True)
        w, pw = _weights(rng, shape, wkind, dtype), _weights(rng, shape, pkind, dtype)
        with np.errstate(invalid="ignore"):
            expected = ref.binary_cross_entropy_with_logits(x, t, w, pw, reduction)
            close_loss(nk.binary_cross_entropy_with_logits(x, t, w, pw, reduction), expected, dtype, scale=8)
            g = _arr(rng, shape, dtype) if reduction == "none" else 0.6
            rgrad = ref.binary_cross_entropy_with_logits_backward(x, t, w, pw, reduction, g)
            assert_close(nk.binary_cross_entropy_with_logits_backward(x, t, w, pw, reduction, g), rgrad, dtype,
                         scale=4)
            loss, grad = nk.binary_cross_entropy_with_logits_forward_backward(x, t, w, pw, reduction, g)
            close_loss(loss, expected, dtype, scale=8)
            assert_close(grad, rgrad, dtype, scale=4)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("wkind,pkind", [(None, None), ("full", "last"), ("lead", "one")])
def test_bce_finite_differences(rng, wkind, pkind, reduction):
    shape = (4, 5)
    x, t = _bce_data(rng, shape, np.float64, soft=True)
    w, pw = _weights(rng, shape, wkind, np.float64), _weights(rng, shape, pkind, np.float64)
    if reduction == "none":
        r = rng.standard_normal(shape)
        grad = nk.binary_cross_entropy_with_logits_backward(x, t, w, pw, "none", r)
        num = numerical_grad(lambda: float((nk.binary_cross_entropy_with_logits(x, t, w, pw, "none") * r).sum()), x)
    else:
        grad = nk.binary_cross_entropy_with_logits_backward(x, t, w, pw, reduction, 2.0)
        num = numerical_grad(lambda: 2.0 * nk.binary_cross_entropy_with_logits(x, t, w, pw, reduction), x)
    np.testing.assert_allclose(grad, num, rtol=1e-6, atol=1e-8)


@requires_torch
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("wkind,pkind", [(None, None), ("full", None), (None, "last"), ("lead", "last"),
                                         ("one", "one")])
def test_bce_matches_torch(rng, wkind, pkind, reduction, dtype):
    import torch.nn.functional as F

    shape = (32, 7)
    x, t = _bce_data(rng, shape, dtype, soft=True)
    w, pw = _weights(rng, shape, wkind, dtype), _weights(rng, shape, pkind, dtype)
    tx = torch.from_numpy(x.copy()).requires_grad_(True)
    tl = F.binary_cross_entropy_with_logits(tx, torch.from_numpy(t), None if w is None else torch.from_numpy(w),
                                            reduction=reduction, pos_weight=None if pw is None else torch.from_numpy(pw))
    g = _arr(rng, shape, dtype) if reduction == "none" else np.asarray(1.0, dtype)
    tl.backward(torch.from_numpy(g))
    loss, grad = nk.binary_cross_entropy_with_logits_forward_backward(x, t, w, pw, reduction,
                                                                      g if reduction == "none" else 1.0)
    close_loss(loss, tl.detach().numpy(), dtype, scale=8)
    assert_close(grad, tx.grad.numpy(), dtype, scale=4)


@pytest.mark.parametrize("dtype", DTYPES)
def test_bce_extreme_values(dtype):
    x = np.array([1e4, -1e4, 100, -100, 0.0, np.inf, -np.inf, np.nan], dtype)
    t = np.array([1, 1, 0, 0, 1, 1, 0, 1], dtype)
    loss = nk.binary_cross_entropy_with_logits(x, t, reduction="none")
    np.testing.assert_allclose(loss[:5], [0.0, 1e4, 100.0, 0.0, np.log(2.0)], rtol=1e-6, atol=1e-30)
    # torch's formula gives (1 - t) * x = 0 * inf = NaN for infinite logits; so do we (the gradient is 0)
    assert np.isnan(loss[5]) and np.isnan(loss[6]) and np.isnan(loss[7])
    grad = nk.binary_cross_entropy_with_logits_backward(x, t, reduction="none")
    np.testing.assert_allclose(grad[:7], [0.0, -1.0, 1.0, 0.0, -0.5, 0.0, 0.0], atol=1e-30)
    assert np.isnan(grad[7])


@pytest.mark.parametrize("shape,wkind,pkind", [((300_001,), None, None), ((3000, 97), "last", "last"),
                                               ((500, 600), "full", "one"), ((4000, 10), "lead", "last")])
def test_bce_threads_bitwise(rng, shape, wkind, pkind):
    x, t = _bce_data(rng, shape, np.float32)
    w, pw = _weights(rng, shape, wkind, np.float32), _weights(rng, shape, pkind, np.float32)
    res = []
    for n in (1, 2, 3):
        with num_threads(n):
            res.append(nk.binary_cross_entropy_with_logits_forward_backward(x, t, w, pw)
                       + (nk.binary_cross_entropy_with_logits(x, t, w, pw, "sum"),))
    for r in res[1:]:
        for a, b in zip(r, res[0]):
            bitwise(a, b)


@pytest.mark.parametrize("shape", [(300_001,), (700, 300)])
def test_mse_threads_bitwise(rng, shape):
    p, t = _arr(rng, shape, np.float32), _arr(rng, shape, np.float32)
    res = []
    for n in (1, 2, 3):
        with num_threads(n):
            res.append(nk.mse_loss_forward_backward(p, t) + (nk.mse_loss(p, t, "sum"),))
    for r in res[1:]:
        for a, b in zip(r, res[0]):
            bitwise(a, b)


@pytest.mark.parametrize("dtype", DTYPES)
def test_bce_and_mse_every_simd_level(simd_level, rng, dtype):
    for shape in [(9,), (17, 3), (65,), (5, 33)]:
        x, t = _bce_data(rng, shape, dtype, soft=True)
        pw = _weights(rng, shape, "last", dtype)
        loss, grad = nk.binary_cross_entropy_with_logits_forward_backward(x, t, None, pw)
        close_loss(loss, ref.binary_cross_entropy_with_logits(x, t, None, pw), dtype, scale=8)
        assert_close(grad, ref.binary_cross_entropy_with_logits_backward(x, t, None, pw), dtype, scale=4)
        loss, grad = nk.mse_loss_forward_backward(x, t, "sum")
        close_loss(loss, ref.mse_loss(x, t, "sum"), dtype, scale=8)
        assert_close(grad, ref.mse_loss_backward(x, t, "sum"), dtype)


def test_loss_out_nan_prefilled_and_inplace(rng):
    x, t = _bce_data(rng, (7, 33), np.float32, soft=True)
    for fb, bw in [(nk.binary_cross_entropy_with_logits_forward_backward, nk.binary_cross_entropy_with_logits_backward),
                   (nk.mse_loss_forward_backward, nk.mse_loss_backward)]:
        loss, grad = fb(x, t)
        out = nan_filled(x.shape, np.float32)
        l2, g2 = fb(x, t, out=out)
        assert g2 is out and l2 == loss
        assert_bitwise_equal(out, grad)
        out = nan_filled(x.shape, np.float32)
        assert bw(x, t, out=out) is out
        assert_bitwise_equal(out, grad)
        for which in (0, 1):  # gradient written over the prediction, or over the target
            xi, ti = x.copy(), t.copy()
            dst = xi if which == 0 else ti
            l3, g3 = fb(xi, ti, out=dst)
            assert g3 is dst and l3 == loss
            assert_bitwise_equal(dst, grad)


def test_bce_errors():
    x = np.zeros((4, 3), np.float32)
    t = np.zeros((4, 3), np.float32)
    f = nk.binary_cross_entropy_with_logits
    with pytest.raises(ValueError, match=r"binary_cross_entropy_with_logits: target has shape \(3, 4\), expected \(4, 3\)"):
        f(x, t.T.copy())
    with pytest.raises(TypeError, match=r"binary_cross_entropy_with_logits: target has dtype float64, expected float32"):
        f(x, t.astype(np.float64))
    with pytest.raises(ValueError, match=r"binary_cross_entropy_with_logits: weight has shape \(2,\), which does not "
                                         r"broadcast to the shape of x \(4, 3\)"):
        f(x, t, weight=np.ones(2, np.float32))
    with pytest.raises(ValueError, match=r"binary_cross_entropy_with_logits: pos_weight has shape \(2, 4, 3\), which "
                                         r"does not broadcast to the shape of x \(4, 3\)"):
        f(x, t, pos_weight=np.ones((2, 4, 3), np.float32))
    # more dims than x, even leading 1s, as torch ("output with shape [4, 3] doesn't match the broadcast
    # shape [1, 4, 3]"); fuzz finding: a (1, 4, 3) weight gave a (4, 3) result for reduction='none'
    for fn in (f, nk.binary_cross_entropy_with_logits_backward, nk.binary_cross_entropy_with_logits_forward_backward,
               ref.binary_cross_entropy_with_logits, ref.binary_cross_entropy_with_logits_backward):
        for kw in (dict(weight=np.ones((1, 4, 3), np.float32)), dict(pos_weight=np.ones((1, 1, 3), np.float32)),
                   dict(weight=np.ones((1, 1, 1), np.float32))):
            name, w = next(iter(kw.items()))
            with pytest.raises(ValueError, match=rf"{fn.__name__}: {name} has shape \({', '.join(map(str, w.shape))}\), "
                                                 r"which does not broadcast to the shape of x \(4, 3\)"):
                fn(x, t, reduction="none", **kw)
    with pytest.raises(ValueError, match=r"binary_cross_entropy_with_logits: weight has shape \(4, 1\), which does not "
                                         r"match the trailing dims of x"):
        nk._core.binary_cross_entropy_with_logits(x, t, np.ones((4, 1), np.float32))
    with pytest.raises(ValueError, match=r"binary_cross_entropy_with_logits_backward: grad_output must be a scalar"):
        nk.binary_cross_entropy_with_logits_backward(x, t, reduction="sum", grad_output=np.ones((4, 3), np.float32))
    with pytest.raises(ValueError, match=r"reduction must be 'mean', 'sum' or 'none', got 'total'"):
        f(x, t, reduction="total")
    with pytest.raises(ValueError, match=r"binary_cross_entropy_with_logits_forward_backward: out shares memory with weight"):
        w = np.ones((4, 3), np.float32)
        nk.binary_cross_entropy_with_logits_forward_backward(x, t, w, out=w)


def test_mse_errors():
    p = np.zeros((4, 3), np.float32)
    with pytest.raises(ValueError, match=r"mse_loss: target has shape \(4,\), expected \(4, 3\) \(the shape of pred\)"):
        nk.mse_loss(p, np.zeros(4, np.float32))
    with pytest.raises(TypeError, match=r"mse_loss_backward: target has dtype float64, expected float32 \(the dtype of pred\)"):
        nk.mse_loss_backward(p, np.zeros((4, 3)))
    with pytest.raises(TypeError, match=r"mse_loss: pred has dtype int64, expected float32 or float64"):
        nk.mse_loss(np.zeros(3, np.int64), np.zeros(3, np.int64))
    with pytest.raises(ValueError, match=r"mse_loss_backward: grad_output has shape \(3,\), expected \(4, 3\)"):
        nk.mse_loss_backward(p, p, "none", np.ones(3, np.float32))
    with pytest.raises(TypeError, match=r"mse_loss_backward: grad_output has dtype float64, expected float32"):
        nk.mse_loss_backward(p, p, "none", np.ones((4, 3)))
    with pytest.raises(ValueError, match=r"mse_loss_forward_backward: out partially overlaps pred"):
        buf = np.zeros(20, np.float32)
        nk.mse_loss_forward_backward(buf[:12].reshape(4, 3), p, out=buf[2:14].reshape(4, 3))


@pytest.mark.parametrize("dtype", DTYPES)
def test_bce_infinite_target_without_pos_weight(dtype):
    """No pos_weight: loss = (1 - t) x + softplus(-x) exactly as torch, so t = +-inf gives +-inf, not
    NaN from 1 + 0 * t (fuzz finding: nnkern gave NaN, torch and the twin -inf)."""
    x = np.array([2.0, -1.5, 0.5, 3.0], dtype)
    t = np.array([np.inf, np.inf, -np.inf, 0.5], dtype)
    want = np.array([-np.inf, np.inf, np.inf], dtype)
    for f in (nk.binary_cross_entropy_with_logits, ref.binary_cross_entropy_with_logits):
        loss = f(x, t, reduction="none")
        np.testing.assert_array_equal(loss[:3], want)
        assert np.isfinite(loss[3])
    # with a pos_weight the factor 1 + (pw - 1) t is formed as torch forms it
    pw = np.full(4, 2.0, dtype)
    assert_close(nk.binary_cross_entropy_with_logits(x, t, pos_weight=pw, reduction="none"),
                 ref.binary_cross_entropy_with_logits(x, t, pos_weight=pw, reduction="none"), dtype)
    assert np.isinf(nk.binary_cross_entropy_with_logits(x[:1], t[:1], reduction="sum"))


@pytest.mark.parametrize("C", [5, 70])  # the block-wise and the fused row paths
def test_cross_entropy_ignored_rows_with_nan_logits(C):
    """An ignored row contributes 0 to the loss even with NaN logits, but its gradient is
    0 - softmax * 0: NaN across the row when its logits hold a NaN, as in torch (fuzz finding:
    nnkern gave 0, torch and the twin NaN)."""
    rng = np.random.default_rng(3)
    z = rng.standard_normal((4, C))
    z[1, 2] = np.nan
    z[2, 0] = -np.inf  # -inf alone is harmless: e^-inf = 0
    t = np.array([0, -100, -100, 1])
    for f, b in ((nk.cross_entropy, nk.cross_entropy_backward), (ref.cross_entropy, ref.cross_entropy_backward)):
        loss = f(z, t, reduction="none")
        assert loss[1] == 0 and loss[2] == 0 and np.isfinite(loss).all()
        g = b(z, t, reduction="sum")
        assert np.isnan(g[1]).all() and (g[2] == 0).all() and np.isfinite(g[[0, 3]]).all()
    # strided class dim (N, C, L) goes through the column path
    z3 = np.ascontiguousarray(np.repeat(z[:, :, None], 3, axis=2))
    t3 = np.repeat(t[:, None], 3, axis=1)
    g3 = nk.cross_entropy_backward(z3, t3, reduction="sum")
    assert np.isnan(g3[1]).all() and (g3[2] == 0).all() and np.isfinite(g3[[0, 3]]).all()
    np.testing.assert_array_equal(np.isnan(g3), np.isnan(ref.cross_entropy_backward(z3, t3, reduction="sum")))


@requires_torch
def test_nonfinite_bce_and_cross_entropy_match_torch():
    import torch.nn.functional as F
    x = np.array([2.0, -1.5, 0.5, 3.0])
    t = np.array([np.inf, np.inf, -np.inf, 0.5])
    want = F.binary_cross_entropy_with_logits(torch.from_numpy(x), torch.from_numpy(t), reduction="none").numpy()
    np.testing.assert_array_equal(nk.binary_cross_entropy_with_logits(x, t, reduction="none")[:3], want[:3])
    z = np.random.default_rng(1).standard_normal((3, 4))
    z[1, 1] = np.nan
    tgt = np.array([0, -100, 2])
    zt = torch.from_numpy(z).requires_grad_(True)
    F.cross_entropy(zt, torch.from_numpy(tgt), reduction="sum").backward()
    np.testing.assert_array_equal(np.isnan(nk.cross_entropy_backward(z, tgt, reduction="sum")), np.isnan(zt.grad.numpy()))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("C", [5, 70])  # the block-wise and the fused row paths
def test_cross_entropy_ignored_rows_with_nonfinite_weight_and_smoothing(C):
    """With label smoothing an ignored row's zero upstream gradient also meets every class weight
    (torch: 0 * w_c), so a NaN or infinite class weight makes the row's gradient NaN; without
    smoothing the row stays 0 (fuzz finding cross_entropy_forward_backward 1000912: nnkern gave 0)."""
    rng = np.random.default_rng(4)
    z = rng.standard_normal((4, C))
    t = np.array([0, -100, 2, 1])
    z3 = np.ascontiguousarray(np.repeat(z[:, :, None], 3, axis=2))  # strided class dim: column path
    t3 = np.repeat(t[:, None], 3, axis=1)
    for bad in (np.nan, np.inf, -np.inf):
        w = rng.uniform(0.5, 2.0, C)
        w[C - 1] = bad
        for smoothing in (0.0, 0.3):
            kw = dict(weight=w, label_smoothing=smoothing, reduction="sum")
            g = nk.cross_entropy_backward(z, t, **kw)
            _, g2 = nk.cross_entropy_forward_backward(z, t, **kw)
            ge = ref.cross_entropy_backward(z, t, **kw)
            assert np.isnan(g[1]).all() == (smoothing > 0) and (smoothing > 0 or (g[1] == 0).all())
            np.testing.assert_array_equal(np.isnan(g), np.isnan(ge))
            np.testing.assert_array_equal(np.isnan(g2), np.isnan(ge))
            g3 = nk.cross_entropy_backward(z3, t3, **kw)
            np.testing.assert_array_equal(np.isnan(g3), np.isnan(ref.cross_entropy_backward(z3, t3, **kw)))
            if torch is not None:
                zt = torch.from_numpy(z).requires_grad_(True)
                torch.nn.functional.cross_entropy(zt, torch.from_numpy(t), weight=torch.from_numpy(w),
                                                  label_smoothing=smoothing, reduction="sum").backward()
                np.testing.assert_array_equal(np.isnan(g[1]), np.isnan(zt.grad.numpy()[1]))
