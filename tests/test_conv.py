"""nk.conv2d / conv2d_backward / conv1d / conv1d_backward / im2col / col2im against the NumPy twins,
the naive twin, torch, finite differences; NaN-prefilled outputs, thread counts, SIMD levels, bad input."""

import math

import numpy as np
import pytest

import nnkern as nk
from nnkern import reference as ref
from conftest import (assert_bitwise_equal, nan_filled, num_threads, numerical_grad, requires_torch,
                      torch)

# torch warns that it pads a copy for 'same' with even kernels; that is torch's business.
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same'")

F = torch.nn.functional if torch is not None else None


@pytest.fixture(autouse=True, scope="module")
def _torch_one_thread():
    """torch is only a reference here: one thread keeps its tiny calls from waiting on a busy
    machine's OpenMP team."""
    if torch is None:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


# ---------------------------------------------------------------------------------------------
# Random configurations


def _fits(n, k, s, pb, pa, d):
    return n + pb + pa >= d * (k - 1) + 1


def random_config(rng, max_batch=4, max_channels=20, max_size=11):
    """A random valid conv2d configuration: dict of shapes and options (torch-expressible)."""
    while True:
        groups = int(rng.choice([1, 1, 1, 2, 3, 0]))  # 0 -> depthwise
        cg = int(rng.integers(1, 6))
        if groups == 0:
            c = int(rng.integers(1, max_channels + 1))
            groups, cg = c, 1
            oc = c * int(rng.choice([1, 1, 2]))
        else:
            c = groups * cg
            oc = groups * int(rng.integers(1, 6))
        if rng.random() < 0.25:  # wide inputs: exercise the channels-last column paths
            cg = int(rng.choice([16, 17, 20, 32, 32, 32, 48]))
            groups = int(rng.choice([1, 1, 2]))
            c, oc = groups * cg, groups * int(rng.integers(1, 24))
        n = int(rng.choice([1, 1, 2, 3, max_batch, 5]))
        h, w = (int(v) for v in rng.choice([1, 2, 3, 5, 7, 8, 11, 13, 16, 17], size=2))
        h, w = min(h, max_size + 6), min(w, max_size + 6)
        kh, kw = (int(v) for v in rng.choice([1, 1, 2, 3, 3, 4, 5], size=2))
        sh, sw = (int(v) for v in rng.choice([1, 1, 1, 2, 3, 5], size=2))
        dh, dw = (int(v) for v in rng.choice([1, 1, 1, 2, 3], size=2))
        if cg >= 16 and rng.random() < 0.5:
            dw = 1
        r = rng.random()
        if r < 0.15 and sh == sw == 1:
            padding = "same"
        elif r < 0.22:
            padding = "valid"
        elif r < 0.5:
            padding = 0
        elif r < 0.75:
            padding = int(rng.integers(0, 4))
        else:
            padding = (int(rng.integers(0, 3)), int(rng.integers(0, 4)))
        cfg = dict(n=n, c=c, h=h, w=w, oc=oc, kh=kh, kw=kw, stride=(sh, sw), padding=padding, dilation=(dh, dw),
                   groups=groups)
        s, p, d, _ = nk.ops.conv.normalize("t", 2, np.empty((oc, cg, kh, kw)), cfg["stride"], padding,
                                           cfg["dilation"], groups)
        if _fits(h, kh, sh, p[0], p[1], dh) and _fits(w, kw, sw, p[2], p[3], dw):
            return cfg


def _plan(cfg, itemsize, backward=True):
    w_shape = (cfg["oc"], cfg["c"] // cfg["groups"], cfg["kh"], cfg["kw"])
    sp = nk.ops.conv.normalize("t", 2, np.empty(w_shape), cfg["stride"], cfg["padding"], cfg["dilation"],
                               cfg["groups"])
    return nk._core._conv2d_plan((cfg["n"], cfg["c"], cfg["h"], cfg["w"]), w_shape, *sp, itemsize, backward, True,
                                 True)


def make_arrays(rng, cfg, dtype, bias=True):
    x = rng.standard_normal((cfg["n"], cfg["c"], cfg["h"], cfg["w"])).astype(dtype)
    wt = rng.standard_normal((cfg["oc"], cfg["c"] // cfg["groups"], cfg["kh"], cfg["kw"])).astype(dtype)
    b = rng.standard_normal(cfg["oc"]).astype(dtype) if bias else None
    return x, wt, b


def opts(cfg):
    return dict(stride=cfg["stride"], padding=cfg["padding"], dilation=cfg["dilation"], groups=cfg["groups"])


SWEEP = [random_config(np.random.default_rng(1000 + i)) for i in range(220)]


def close(actual, expected, dtype, k=1):
    """Error bound for sums of k products of O(1) values."""
    scale = max(1.0, float(np.max(np.abs(expected))) if np.size(expected) else 1.0)
    eps = 1e-13 if dtype == np.float64 else 3e-6
    np.testing.assert_allclose(actual, expected, rtol=eps * math.sqrt(k) * 4, atol=eps * math.sqrt(k) * 4 * scale)


def test_sweep_covers_the_cases():
    """The seeded sweep really contains the configurations the issue asks for."""
    def has(pred):
        return sum(1 for c in SWEEP if pred(c))

    assert len(SWEEP) >= 200
    assert has(lambda c: c["n"] == 1) >= 20
    assert has(lambda c: c["groups"] > 1 and c["groups"] == c["c"]) >= 5  # depthwise
    assert has(lambda c: 1 < c["groups"] < c["c"]) >= 10
    assert has(lambda c: c["padding"] == "same" and (c["kh"] % 2 == 0 or c["kw"] % 2 == 0)) >= 3
    assert has(lambda c: max(c["stride"]) > max(c["kh"], c["kw"])) >= 10
    assert has(lambda c: max(c["dilation"]) > 1) >= 30
    assert has(lambda c: c["kh"] != c["kw"]) >= 50
    assert has(lambda c: c["kh"] == c["kw"] == 1) >= 5
    assert has(lambda c: c["c"] // c["groups"] >= 16) >= 20  # channels-last path


# ---------------------------------------------------------------------------------------------
# Against the NumPy twins (and the twins against each other)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_sweep_vs_twin(dtype):
    for i, cfg in enumerate(SWEEP):
        rng = np.random.default_rng(i)
        x, w, b = make_arrays(rng, cfg, dtype, bias=i % 3 != 0)
        k = cfg["c"] // cfg["groups"] * cfg["kh"] * cfg["kw"]
        y = nk.conv2d(x, w, b, **opts(cfg))
        y_ref = ref.conv2d(x, w, b, **opts(cfg))
        assert y.shape == y_ref.shape and y.dtype == dtype, cfg
        close(y, y_ref, dtype, k)
        dy = rng.standard_normal(y.shape).astype(dtype)
        dx, dw, db = nk.conv2d_backward(dy, x, w, **opts(cfg))
        rx, rw, rb = ref.conv2d_backward(dy, x, w, **opts(cfg))
        npix = y.shape[0] * y.shape[2] * y.shape[3]
        close(dx, rx, dtype, cfg["oc"] * cfg["kh"] * cfg["kw"])
        close(dw, rw, dtype, npix)
        close(db, rb, dtype, npix)


def test_twin_vs_naive_twin():
    for i, cfg in enumerate(SWEEP[::4]):
        rng = np.random.default_rng(i)
        x, w, b = make_arrays(rng, cfg, np.float64)
        y = ref.conv2d(x, w, b, **opts(cfg))
        np.testing.assert_allclose(y, ref.conv2d_naive(x, w, b, **opts(cfg)), rtol=1e-12, atol=1e-12)
        dy = rng.standard_normal(y.shape)
        for a, e in zip(ref.conv2d_backward(dy, x, w, **opts(cfg)), ref.conv2d_backward_naive(dy, x, w, **opts(cfg))):
            np.testing.assert_allclose(a, e, rtol=1e-12, atol=1e-12)


@requires_torch
def test_sweep_vs_torch():
    for i, cfg in enumerate(SWEEP):
        rng = np.random.default_rng(i)
        x, w, b = make_arrays(rng, cfg, np.float64, bias=i % 2 == 0)
        y = nk.conv2d(x, w, b, **opts(cfg))
        tx = torch.from_numpy(x).requires_grad_()
        tw = torch.from_numpy(w).requires_grad_()
        tb = torch.from_numpy(b).requires_grad_() if b is not None else None
        ty = F.conv2d(tx, tw, tb, **opts(cfg))
        np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-11, atol=1e-11, err_msg=str(cfg))
        dy = rng.standard_normal(y.shape)
        ty.backward(torch.from_numpy(dy))
        dx, dw, db = nk.conv2d_backward(dy, x, w, **opts(cfg))
        np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-11, atol=1e-11, err_msg=str(cfg))
        np.testing.assert_allclose(dw, tw.grad.numpy(), rtol=1e-11, atol=1e-11, err_msg=str(cfg))
        if tb is not None:
            np.testing.assert_allclose(db, tb.grad.numpy(), rtol=1e-11, atol=1e-11, err_msg=str(cfg))


@requires_torch
def test_float32_vs_torch():
    for i, cfg in enumerate(SWEEP[::5]):
        rng = np.random.default_rng(i)
        x, w, b = make_arrays(rng, cfg, np.float32)
        tx, tw, tb = (torch.from_numpy(a).requires_grad_() for a in (x, w, b))
        ty = F.conv2d(tx, tw, tb, **opts(cfg))
        dy = rng.standard_normal(ty.shape).astype(np.float32)
        ty.backward(torch.from_numpy(dy))
        k = cfg["c"] // cfg["groups"] * cfg["kh"] * cfg["kw"]
        close(nk.conv2d(x, w, b, **opts(cfg)), ty.detach().numpy(), np.float32, k)
        dx, dw, db = nk.conv2d_backward(dy, x, w, **opts(cfg))
        npix = dy.shape[0] * dy.shape[2] * dy.shape[3]
        close(dx, tx.grad.numpy(), np.float32, cfg["oc"] * cfg["kh"] * cfg["kw"])
        close(dw, tw.grad.numpy(), np.float32, npix)
        close(db, tb.grad.numpy(), np.float32, npix)


@requires_torch
@pytest.mark.parametrize("k,d", [((2, 2), 1), ((4, 3), 1), ((2, 5), (2, 1)), ((3, 3), 2), ((1, 2), 1)])
def test_same_padding_matches_torch(k, d):
    """padding='same' with even kernels pads one more element after the input, as torch does."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 7, 6))
    w = rng.standard_normal((4, 3) + k)
    y = nk.conv2d(x, w, padding="same", dilation=d)
    assert y.shape[2:] == x.shape[2:]
    np.testing.assert_allclose(y, F.conv2d(torch.from_numpy(x), torch.from_numpy(w), padding="same",
                                           dilation=d).numpy(), rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# Gradients by finite differences (float64, tiny shapes)


GRAD_CASES = [
    dict(n=2, c=2, h=4, w=5, oc=3, kh=3, kw=2, stride=(1, 1), padding=1, dilation=(1, 1), groups=1),
    dict(n=1, c=4, h=5, w=5, oc=2, kh=2, kw=2, stride=(2, 1), padding="valid", dilation=(1, 2), groups=2),
    dict(n=2, c=3, h=4, w=4, oc=3, kh=2, kw=3, stride=(1, 1), padding="same", dilation=(1, 1), groups=3),
    dict(n=2, c=1, h=3, w=4, oc=2, kh=1, kw=1, stride=(1, 1), padding=0, dilation=(1, 1), groups=1),
    dict(n=3, c=16, h=3, w=3, oc=2, kh=2, kw=2, stride=(1, 1), padding=(1, 0), dilation=(1, 1), groups=1),
]


@pytest.mark.parametrize("cfg", GRAD_CASES, ids=range(len(GRAD_CASES)))
def test_backward_finite_differences(cfg):
    rng = np.random.default_rng(5)
    x, w, b = make_arrays(rng, cfg, np.float64)
    dy = rng.standard_normal(nk.conv2d(x, w, b, **opts(cfg)).shape)

    def loss():
        return float(np.sum(nk.conv2d(x, w, b, **opts(cfg)) * dy))

    dx, dw, db = nk.conv2d_backward(dy, x, w, **opts(cfg))
    np.testing.assert_allclose(dx, numerical_grad(loss, x), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(dw, numerical_grad(loss, w), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(db, numerical_grad(loss, b), rtol=1e-6, atol=1e-7)


def test_conv1d_backward_finite_differences():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((2, 4, 7))
    w = rng.standard_normal((6, 2, 3))
    b = rng.standard_normal(6)
    o = dict(stride=2, padding=(2,), dilation=1, groups=2)
    dy = rng.standard_normal(nk.conv1d(x, w, b, **o).shape)

    def loss():
        return float(np.sum(nk.conv1d(x, w, b, **o) * dy))

    dx, dw, db = nk.conv1d_backward(dy, x, w, **o)
    np.testing.assert_allclose(dx, numerical_grad(loss, x), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(dw, numerical_grad(loss, w), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(db, numerical_grad(loss, b), rtol=1e-6, atol=1e-7)


# ---------------------------------------------------------------------------------------------
# conv1d, im2col, col2im


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_conv1d_sweep_vs_twin_and_torch(dtype):
    for i in range(60):
        rng = np.random.default_rng(500 + i)
        groups = int(rng.choice([1, 2, 3]))
        c, oc = groups * int(rng.integers(1, 7)), groups * int(rng.integers(1, 5))
        if i % 7 == 0:
            c, oc = groups * 20, groups * 3  # channels-last columns
        n, length, k = int(rng.integers(1, 5)), int(rng.integers(1, 30)), int(rng.integers(1, 6))
        s, d = int(rng.choice([1, 1, 2, 3, 7])), int(rng.choice([1, 1, 2]))
        p = "same" if (s == 1 and i % 5 == 0) else int(rng.integers(0, 3))
        _, pads, _, _ = nk.ops.conv.normalize("t", 1, np.empty((oc, c // groups, k)), s, p, d, groups)
        if length + pads[0] + pads[1] < d * (k - 1) + 1:
            continue
        x = rng.standard_normal((n, c, length)).astype(dtype)
        w = rng.standard_normal((oc, c // groups, k)).astype(dtype)
        b = rng.standard_normal(oc).astype(dtype)
        o = dict(stride=s, padding=p, dilation=d, groups=groups)
        y = nk.conv1d(x, w, b, **o)
        close(y, ref.conv1d(x, w, b, **o), dtype, c * k)
        dy = rng.standard_normal(y.shape).astype(dtype)
        got = nk.conv1d_backward(dy, x, w, **o)
        for a, e in zip(got, ref.conv1d_backward(dy, x, w, **o)):
            close(a, e, dtype, n * y.shape[2] + oc * k)
        if torch is not None and dtype == np.float64:
            tx, tw, tb = (torch.from_numpy(a).requires_grad_() for a in (x, w, b))
            ty = F.conv1d(tx, tw, tb, **o)
            ty.backward(torch.from_numpy(dy))
            np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-11, atol=1e-11)
            for a, e in zip(got, (tx.grad, tw.grad, tb.grad)):
                np.testing.assert_allclose(a, e.numpy(), rtol=1e-11, atol=1e-11)


IM2COL_CASES = [((2, 3, 6, 7), (3, 2), 1, 0, 1), ((1, 2, 5, 5), (2, 2), (2, 1), (1, 2), (1, 2)),
                ((3, 1, 9, 4), (3, 1), 3, 2, 1), ((2, 4, 4, 4), (1, 1), 1, 0, 1), ((1, 1, 1, 1), (1, 1), 5, 3, 1)]


@pytest.mark.parametrize("shape,k,s,p,d", IM2COL_CASES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_im2col_col2im(shape, k, s, p, d, dtype):
    rng = np.random.default_rng(3)
    x = rng.standard_normal(shape).astype(dtype)
    cols = nk.im2col(x, k, s, p, d, out=None)
    np.testing.assert_array_equal(cols, ref.im2col(x, k, s, p, d))  # pure copies: exact
    out = nan_filled(cols.shape, dtype)
    assert nk.im2col(x, k, s, p, d, out=out) is out
    np.testing.assert_array_equal(out, cols)
    dc = rng.standard_normal(cols.shape).astype(dtype)
    back = nan_filled(shape, dtype)
    nk.col2im(dc, shape[2:], k, s, p, d, out=back)
    close(back, ref.col2im(dc, shape[2:], k, s, p, d), dtype, 16)
    # col2im is the adjoint of im2col: <im2col(x), dc> == <x, col2im(dc)>
    assert np.isclose(np.vdot(cols, dc), np.vdot(x, back), rtol=1e-10 if dtype == np.float64 else 1e-4)
    if torch is not None:
        tcols = F.unfold(torch.from_numpy(x), k, dilation=d, padding=p, stride=s).numpy()
        np.testing.assert_array_equal(cols, tcols)
        tback = F.fold(torch.from_numpy(dc), shape[2:], k, dilation=d, padding=p, stride=s).numpy()
        close(back, tback, dtype, 16)


# ---------------------------------------------------------------------------------------------
# out= buffers, accumulation, flags, layouts of inputs


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cfg", [SWEEP[0], GRAD_CASES[1], GRAD_CASES[4],
                                 dict(n=3, c=32, h=6, w=6, oc=4, kh=3, kw=3, stride=(2, 2), padding=1,
                                      dilation=(1, 1), groups=1)])
def test_nan_prefilled_outputs(cfg, dtype):
    rng = np.random.default_rng(1)
    x, w, b = make_arrays(rng, cfg, dtype)
    y_ref = ref.conv2d(x, w, b, **opts(cfg))
    out = nan_filled(y_ref.shape, dtype)
    assert nk.conv2d(x, w, b, **opts(cfg), out=out) is out
    close(out, y_ref, dtype, 100)
    dy = rng.standard_normal(y_ref.shape).astype(dtype)
    bufs = [nan_filled(a.shape, dtype) for a in (x, w, b)]
    res = nk.conv2d_backward(dy, x, w, **opts(cfg), dx_out=bufs[0], dw_out=bufs[1], db_out=bufs[2])
    for got, buf, e in zip(res, bufs, ref.conv2d_backward(dy, x, w, **opts(cfg))):
        assert got is buf
        close(got, e, dtype, 500)


@pytest.mark.parametrize("n", [1, 6])  # split-GEMM mode and per-image mode
@pytest.mark.parametrize("c", [3, 24])  # NCHW and channels-last columns
def test_accumulate_into_grads(n, c):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((n, c, 6, 5))
    w = rng.standard_normal((4, c, 3, 3))
    dy = rng.standard_normal((n, 4, 6, 5))
    _, dw, db = nk.conv2d_backward(dy, x, w, padding=1, need_dx=False)
    gw, gb = rng.standard_normal(w.shape), rng.standard_normal(4)
    gw0, gb0 = gw.copy(), gb.copy()
    res = nk.conv2d_backward(dy, x, w, padding=1, need_dx=False, dw_out=gw, db_out=gb, accumulate=True)
    assert res[0] is None and res[1] is gw and res[2] is gb
    np.testing.assert_allclose(gw, gw0 + dw, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(gb, gb0 + db, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("flags", [(True, False, False), (False, True, False), (False, False, True),
                                   (True, True, False), (False, True, True), (False, False, False)])
def test_need_flags(flags):
    rng = np.random.default_rng(4)
    cfg = SWEEP[3]
    x, w, _ = make_arrays(rng, cfg, np.float64)
    dy = rng.standard_normal(ref.conv2d(x, w, **opts(cfg)).shape)
    full = nk.conv2d_backward(dy, x, w, **opts(cfg))
    got = nk.conv2d_backward(dy, x, w, **opts(cfg), need_dx=flags[0], need_dw=flags[1], need_db=flags[2])
    for want, g, f in zip(full, got, flags):
        if f:
            np.testing.assert_array_equal(g, want)
        else:
            assert g is None


def test_noncontiguous_and_fortran_inputs():
    rng = np.random.default_rng(8)
    x = rng.standard_normal((3, 5, 9, 8))
    w = rng.standard_normal((4, 5, 3, 2))
    dy = rng.standard_normal((3, 4, 7, 7))
    xs = np.asfortranarray(x)
    ws = np.ascontiguousarray(np.swapaxes(w, 2, 3)).swapaxes(2, 3)  # non-contiguous view
    np.testing.assert_array_equal(nk.conv2d(xs, ws), nk.conv2d(x, w))
    for a, e in zip(nk.conv2d_backward(dy[:, :, ::1, :], xs, ws), nk.conv2d_backward(dy, x, w)):
        np.testing.assert_array_equal(a, e)


def test_empty_and_degenerate_shapes():
    w = np.ones((4, 3, 2, 2))
    y = nk.conv2d(np.ones((0, 3, 5, 5)), w, np.ones(4))
    assert y.shape == (0, 4, 4, 4)
    dx, dw, db = nk.conv2d_backward(np.ones((0, 4, 4, 4)), np.ones((0, 3, 5, 5)), w)
    assert dx.shape == (0, 3, 5, 5) and np.all(dw == 0) and np.all(db == 0)
    # no input channels: the output is the bias
    y = nk.conv2d(np.ones((2, 0, 5, 5)), np.ones((4, 0, 3, 3)), np.arange(4.0))
    np.testing.assert_array_equal(y, np.broadcast_to(np.arange(4.0).reshape(1, 4, 1, 1), (2, 4, 3, 3)))
    dx, dw, db = nk.conv2d_backward(np.ones((2, 4, 3, 3)), np.ones((2, 0, 5, 5)), np.ones((4, 0, 3, 3)))
    assert dx.shape == (2, 0, 5, 5) and dw.shape == (4, 0, 3, 3) and np.all(db == 18)
    # no output channels
    y = nk.conv2d(np.ones((2, 3, 5, 5)), np.ones((0, 3, 3, 3)))
    assert y.shape == (2, 0, 3, 3)
    dx, _, _ = nk.conv2d_backward(np.ones((2, 0, 3, 3)), np.ones((2, 3, 5, 5)), np.ones((0, 3, 3, 3)))
    assert np.all(dx == 0)


def test_nan_and_inf_propagate():
    x = np.zeros((1, 1, 5, 5))
    x[0, 0, 2, 2] = np.nan
    x[0, 0, 0, 0] = np.inf
    y = nk.conv2d(x, np.ones((1, 1, 3, 3)))
    assert np.isnan(y).sum() == 9  # every window over (2, 2)
    assert np.isinf(y[0, 0, 0, 0]) or np.isnan(y[0, 0, 0, 0])


# ---------------------------------------------------------------------------------------------
# Threads: 1 == 2 == 3 bitwise, on shapes that really split


PARALLEL_CASES = [
    # per-image mode, NCHW columns, 13 images -> partial chunks of 2
    dict(n=13, c=3, h=20, w=19, oc=8, kh=3, kw=3, stride=(1, 1), padding=1, dilation=(1, 1), groups=1),
    # per-image mode, channels-last columns, stride 2
    dict(n=9, c=32, h=16, w=16, oc=16, kh=3, kw=3, stride=(2, 2), padding=1, dilation=(1, 1), groups=1),
    # per-image, grouped, pointwise
    dict(n=7, c=24, h=9, w=9, oc=12, kh=1, kw=1, stride=(1, 1), padding=0, dilation=(1, 1), groups=3),
    # one image: GEMMs split over threads (big enough for gemm()'s split), im2col split by channels
    dict(n=1, c=32, h=32, w=32, oc=64, kh=3, kw=3, stride=(1, 1), padding=1, dilation=(1, 1), groups=1),
    # one image, depthwise: groups spread over threads
    dict(n=1, c=16, h=20, w=20, oc=16, kh=3, kw=3, stride=(1, 1), padding=1, dilation=(1, 1), groups=16),
    # direct forward and direct dW (few input channels), 13 images in partial chunks
    dict(n=13, c=3, h=16, w=16, oc=16, kh=3, kw=3, stride=(1, 1), padding=1, dilation=(1, 1), groups=1),
    # direct dx and direct dW (12 channels: no fused path), 11 images
    dict(n=11, c=12, h=14, w=14, oc=16, kh=3, kw=3, stride=(1, 1), padding=1, dilation=(1, 1), groups=1),
]


@pytest.mark.parametrize("cfg", PARALLEL_CASES, ids=range(len(PARALLEL_CASES)))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_thread_count_invariance(cfg, dtype):
    rng = np.random.default_rng(9)
    x, w, b = make_arrays(rng, cfg, dtype)
    dy = rng.standard_normal(ref.conv2d(x, w, b, **opts(cfg)).shape).astype(dtype)
    plan = nk._core._conv2d_plan(x.shape, w.shape, *nk.ops.conv.normalize("t", 2, w, cfg["stride"], cfg["padding"],
                                                                         cfg["dilation"], cfg["groups"]),
                                 x.itemsize, True, True)
    if cfg["n"] > 1:
        assert plan["per_image"] and plan["red_chunks"] >= 2
    if nk.simd_level() == "avx512" and dtype == np.float32:
        idx = PARALLEL_CASES.index(cfg)
        assert plan["direct_dw"] == (idx in (5, 6))
        assert plan["direct_dx"] == (idx == 6)
        assert plan["fused"] == (idx == 1)
    results = []
    for t in (1, 2, 3):
        with num_threads(t):
            results.append((nk.conv2d(x, w, b, **opts(cfg)),) + nk.conv2d_backward(dy, x, w, **opts(cfg)))
    for other in results[1:]:
        for a, e in zip(other, results[0]):
            assert_bitwise_equal(a, e)
    close(results[0][0], ref.conv2d(x, w, b, **opts(cfg)), dtype, 300)


@pytest.mark.skipif(nk.simd_level() != "avx512", reason="the fused path needs the AVX-512 code path")
def test_fused_sweep_is_fused():
    assert sum(_plan(c, 4)["fused"] for c in FUSED_SWEEP) >= 24


def test_plans_cover_every_path():
    """The cases above (and the sweep) really reach the layouts and modes they are meant to."""
    def plan(x_shape, w_shape, s=1, p=1, n_dims=2, backward=True):
        sp = nk.ops.conv.normalize("t", 2, np.empty(w_shape), s, p, 1, x_shape[1] // w_shape[1])
        return nk._core._conv2d_plan(x_shape, w_shape, *sp, 4, backward, True)

    assert plan((9, 32, 16, 16), (16, 32, 3, 3), s=2)["layout"] == "nhwc"
    assert plan((32, 64, 16, 16), (128, 64, 3, 3))["layout"] == "nhwc"
    assert plan((32, 3, 32, 32), (32, 3, 3, 3))["layout"] == "nchw"
    assert plan((64, 1, 28, 28), (8, 1, 5, 5), p=0)["layout"] == "nchw"
    assert plan((7, 24, 9, 9), (12, 8, 1, 1), p=0)["layout"] == "pointwise"
    p1 = plan((1, 32, 32, 32), (64, 32, 3, 3))
    assert not p1["per_image"] and p1["layout"] == "nchw"
    assert nk._core._gemm_split(64, 1024, 32 * 9)[0] > 1  # the N=1 case above really splits its GEMM


FUSED_CASES = [
    # K = 288: two K blocks of the own SGEMM; 17 output channels: a partial 12-row tile
    dict(n=3, c=32, h=9, w=10, oc=17, kh=3, kw=3, stride=(1, 1), padding=1, dilation=(1, 1), groups=1),
    # stride 2, row dilation, asymmetric padding, 1 output column
    dict(n=2, c=32, h=70, w=5, oc=19, kh=2, kw=3, stride=(2, 3), padding=(2, 0), dilation=(2, 1), groups=1),
    # 'same' with an even kernel (extra padding after), C = 16, KW = 2: runs of 32
    dict(n=2, c=16, h=6, w=7, oc=21, kh=4, kw=2, stride=(1, 1), padding="same", dilation=(1, 1), groups=1),
    # 41 x 41 = 1681 pixels: more than one 1536-column block of the forward GEMM
    dict(n=2, c=32, h=41, w=41, oc=16, kh=1, kw=2, stride=(1, 1), padding=0, dilation=(1, 1), groups=1),
    # 300 output channels: the dcol GEMM has two K blocks, each added into the dx image
    dict(n=2, c=32, h=8, w=5, oc=300, kh=3, kw=1, stride=(1, 1), padding=(1, 0), dilation=(1, 1), groups=1),
]


def random_fused_config(rng):
    """Dense convolutions wide enough for the fused channels-last GEMMs: G = 1, column dilation 1,
    KW*C a multiple of 32, at least 16 output channels and 32 output pixels."""
    while True:
        c = int(rng.choice([16, 32, 48, 64]))
        kw = int(rng.choice([2, 4])) if c == 16 else int(rng.integers(1, 5))
        kh = int(rng.integers(1, 5))
        sh, sw = int(rng.choice([1, 1, 2, 3])), int(rng.choice([1, 1, 2]))
        dh = int(rng.choice([1, 1, 2]))
        padding = "same" if (sh == sw == 1 and rng.random() < 0.3) else (int(rng.integers(0, 3)), int(rng.integers(0, 3)))
        cfg = dict(n=int(rng.choice([2, 3])), c=c, h=int(rng.integers(5, 22)), w=int(rng.integers(5, 22)),
                   oc=int(rng.integers(16, 41)), kh=kh, kw=kw, stride=(sh, sw), padding=padding, dilation=(dh, 1),
                   groups=1)
        _, p, _, _ = nk.ops.conv.normalize("t", 2, np.empty((cfg["oc"], c, kh, kw)), cfg["stride"], padding,
                                           cfg["dilation"], 1)
        if not (_fits(cfg["h"], kh, sh, p[0], p[1], dh) and _fits(cfg["w"], kw, sw, p[2], p[3], 1)):
            continue
        oh = (cfg["h"] + p[0] + p[1] - dh * (kh - 1) - 1) // sh + 1
        ow = (cfg["w"] + p[2] + p[3] - kw) // sw + 1
        if oh * ow >= 32:
            return cfg


FUSED_SWEEP = [random_fused_config(np.random.default_rng(3000 + i)) for i in range(30)]


@pytest.mark.parametrize("cfg", FUSED_CASES + FUSED_SWEEP, ids=range(len(FUSED_CASES) + len(FUSED_SWEEP)))
def test_fused_channels_last_path(cfg):
    """float32 through the fused channels-last GEMMs (on AVX-512 machines) against float64 torch-checked maths."""
    plan = _plan(cfg, 4)
    if nk.simd_level() == "avx512" and cfg in FUSED_CASES:
        assert plan["fused"] and plan["layout"] == "nhwc" and plan["col_elems"] == 0
    rng = np.random.default_rng(12)
    x, w, b = make_arrays(rng, cfg, np.float32)
    x64, w64, b64 = (a.astype(np.float64) for a in (x, w, b))
    y = nk.conv2d(x, w, b, **opts(cfg))
    k = cfg["c"] * cfg["kh"] * cfg["kw"]
    close(y, ref.conv2d(x64, w64, b64, **opts(cfg)), np.float32, k)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    got = nk.conv2d_backward(dy, x, w, **opts(cfg))
    want = ref.conv2d_backward(dy.astype(np.float64), x64, w64, **opts(cfg))
    npix = y.shape[0] * y.shape[2] * y.shape[3]
    close(got[0], want[0], np.float32, cfg["oc"] * cfg["kh"] * cfg["kw"])
    close(got[1], want[1], np.float32, npix)
    close(got[2], want[2], np.float32, npix)
    out = nan_filled(got[0].shape, np.float32)
    nk.conv2d_backward(dy, x, w, **opts(cfg), need_dw=False, need_db=False, dx_out=out)
    assert_bitwise_equal(out, got[0])


def random_direct_config(rng):
    """Convolutions for the direct NCHW kernels: output rows of >= 10 pixels (the forward), stride 1
    with padding within the dilated kernel (dx); groups, depthwise, dilation, 'same'."""
    while True:
        groups = int(rng.choice([1, 1, 2, 3, 0]))
        cg = int(rng.choice([1, 3, 5, 8, 12, 13, 20]))
        if groups == 0:
            groups, cg = int(rng.integers(2, 9)), 1
        c, oc = groups * cg, groups * int(rng.integers(1, 20))
        kh, kw = int(rng.integers(1, 6)), int(rng.integers(1, 6))
        dh, dw = int(rng.choice([1, 1, 2])), int(rng.choice([1, 1, 2]))
        stride = (1, 1) if rng.random() < 0.75 else (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
        if stride == (1, 1) and rng.random() < 0.3:
            padding = "same"
        else:
            padding = (int(rng.integers(0, dh * (kh - 1) + 1)), int(rng.integers(0, dw * (kw - 1) + 1)))
        w = int(rng.choice([10, 11, 12, 13, 14, 15, 16, 21, 24, 27, 28, 30, 32, 40]))  # rows that fill the lanes
        cfg = dict(n=int(rng.choice([2, 3])), c=c, h=int(rng.integers(3, 20)), w=w, oc=oc,
                   kh=kh, kw=kw, stride=stride, padding=padding, dilation=(dh, dw), groups=groups)
        _, p, _, _ = nk.ops.conv.normalize("t", 2, np.empty((oc, cg, kh, kw)), stride, padding, (dh, dw), groups)
        if _fits(cfg["h"], kh, stride[0], p[0], p[1], dh) and _fits(cfg["w"], kw, stride[1], p[2], p[3], dw):
            ow = (cfg["w"] + p[2] + p[3] - dw * (kw - 1) - 1) // stride[1] + 1
            if ow >= 10:
                return cfg


DIRECT_SWEEP = [random_direct_config(np.random.default_rng(4000 + i)) for i in range(40)]


@pytest.mark.skipif(nk.simd_level() != "avx512", reason="the direct kernels need the AVX-512 code path")
def test_direct_sweep_is_direct():
    assert sum(_plan(c, 4, backward=False)["direct_fwd"] for c in DIRECT_SWEEP) >= 15
    assert sum(_plan(c, 4)["direct_dx"] for c in DIRECT_SWEEP) >= 8


@pytest.mark.parametrize("cfg", DIRECT_SWEEP, ids=range(len(DIRECT_SWEEP)))
def test_direct_kernels(cfg):
    """float32 through the direct NCHW kernels (on AVX-512 machines) against float64 maths."""
    rng = np.random.default_rng(14)
    x, w, b = make_arrays(rng, cfg, np.float32)
    x64, w64, b64 = (a.astype(np.float64) for a in (x, w, b))
    out = nan_filled(ref.conv2d(x64, w64, b64, **opts(cfg)).shape, np.float32)
    y = nk.conv2d(x, w, b, **opts(cfg), out=out)
    k = cfg["c"] // cfg["groups"] * cfg["kh"] * cfg["kw"]
    close(y, ref.conv2d(x64, w64, b64, **opts(cfg)), np.float32, k)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx = nan_filled(x.shape, np.float32)
    nk.conv2d_backward(dy, x, w, **opts(cfg), need_dw=False, need_db=False, dx_out=dx)
    want = ref.conv2d_backward(dy.astype(np.float64), x64, w64, **opts(cfg))[0]
    close(dx, want, np.float32, cfg["oc"] // cfg["groups"] * cfg["kh"] * cfg["kw"])
    with num_threads(2):
        assert_bitwise_equal(nk.conv2d(x, w, b, **opts(cfg)), y)


@pytest.mark.parametrize("m,n,k", [(1, 1, 1), (12, 32, 16), (13, 33, 17), (11, 31, 257), (25, 65, 600), (150, 1600, 7),
                                   (7, 3, 0)])
@pytest.mark.parametrize("ta,tb", [(False, False), (False, True), (True, False), (True, True)])
def test_conv_gemm_edges(m, n, k, ta, tb):
    """The per-image GEMM (nnkern's own AVX-512 SGEMM on such machines) on edge shapes, beta 0 and 1."""
    rng = np.random.default_rng(13)
    a = rng.standard_normal((k, m) if ta else (m, k)).astype(np.float32)
    b = rng.standard_normal((n, k) if tb else (k, n)).astype(np.float32)
    want = (a.T if ta else a).astype(np.float64) @ (b.T if tb else b).astype(np.float64)
    c = nan_filled((m, n), np.float32)
    nk._core._conv_gemm(a, b, c, ta, tb, False)
    tol_ = 1e-5 * max(1.0, math.sqrt(k)) * 4
    np.testing.assert_allclose(c, want, rtol=tol_, atol=tol_)
    c0 = rng.standard_normal((m, n)).astype(np.float32)
    c = c0.copy()
    nk._core._conv_gemm(a, b, c, ta, tb, True)
    np.testing.assert_allclose(c, want + c0, rtol=tol_, atol=tol_)


# ---------------------------------------------------------------------------------------------
# SIMD levels


@pytest.mark.parametrize("cfg", [PARALLEL_CASES[0], PARALLEL_CASES[1], SWEEP[7], SWEEP[11], GRAD_CASES[4], FUSED_CASES[1],
                                 dict(n=2, c=20, h=9, w=31, oc=5, kh=2, kw=3, stride=(1, 2), padding=(1, 2),
                                      dilation=(2, 1), groups=1)])
def test_simd_levels(simd_level, cfg):
    rng = np.random.default_rng(10)
    for dtype in (np.float32, np.float64):
        x, w, b = make_arrays(rng, cfg, dtype)
        y = nk.conv2d(x, w, b, **opts(cfg))
        close(y, ref.conv2d(x, w, b, **opts(cfg)), dtype, 300)
        dy = rng.standard_normal(y.shape).astype(dtype)
        for a, e in zip(nk.conv2d_backward(dy, x, w, **opts(cfg)), ref.conv2d_backward(dy, x, w, **opts(cfg))):
            close(a, e, dtype, 3000)
        cols = nk.im2col(x, (cfg["kh"], cfg["kw"]), cfg["stride"], cfg["padding"], cfg["dilation"])
        np.testing.assert_array_equal(cols, ref.im2col(x, (cfg["kh"], cfg["kw"]), cfg["stride"], cfg["padding"],
                                                       cfg["dilation"]))


# ---------------------------------------------------------------------------------------------
# Workspace limit (memory use is checked in a fresh process in test_conv_memory.py)


def test_small_workspace_limit_same_results():
    """A limit that only caps how many threads run at once (same plan otherwise) gives bitwise
    identical results; one that cuts images into pixel blocks or changes the path gives the same
    values up to summation order."""
    rng = np.random.default_rng(11)
    x = rng.standard_normal((12, 3, 16, 16)).astype(np.float32)
    w = rng.standard_normal((16, 3, 3, 3)).astype(np.float32)
    xb = rng.standard_normal((6, 24, 24, 24)).astype(np.float32)  # 216 x 576 columns per image: 486 KiB
    wb = rng.standard_normal((8, 24, 3, 3)).astype(np.float32)
    sp = ((1, 1), (1, 1, 1, 1), (1, 1), 1)
    old = nk.get_workspace_limit()

    def plans(xs, ws):
        return [nk._core._conv2d_plan(xs, ws, *sp, 4, bwd, True) for bwd in (False, True)]

    def run(xa, wa):
        y = nk.conv2d(xa, wa, padding=1)
        return [y] + list(nk.conv2d_backward(y, xa, wa, padding=1))

    try:
        full, fullb, plan_full = run(x, w), run(xb, wb), plans(x.shape, w.shape)
        nk.set_workspace_limit(1 << 20)
        plan_small = plans(x.shape, w.shape)
        assert nk._core._conv2d_plan(xb.shape, wb.shape, *sp, 4, True, True)["block_pixels"] < 24 * 24
        with num_threads(2):
            small, smallb = run(x, w), run(xb, wb)
    finally:
        nk.set_workspace_limit(old)
    for a, b in zip(plan_small, plan_full):
        assert {k: v for k, v in a.items() if k != "max_threads"} == {k: v for k, v in b.items() if k != "max_threads"}
    for a, e in zip(small, full):
        assert_bitwise_equal(a, e)
    for a, e in zip(smallb, fullb):
        np.testing.assert_allclose(a, e, rtol=1e-4, atol=1e-3)


# ---------------------------------------------------------------------------------------------
# Bad input


def _good():
    return np.zeros((2, 4, 6, 6), np.float32), np.zeros((6, 2, 3, 3), np.float32)


@pytest.mark.parametrize("call,exc,match", [
    (lambda x, w: nk.conv2d(x[0], w), ValueError, r"conv2d: x has 3 dims, expected 4 \(N, C, H, W\)"),
    (lambda x, w: nk.conv2d(x, w[0]), ValueError, r"conv2d: w has 3 dims, expected 4 \(out_channels"),
    (lambda x, w: nk.conv2d(x.astype(np.int32), w), TypeError, "conv2d: x has dtype int32, expected float32 or float64"),
    (lambda x, w: nk.conv2d(x, w.astype(np.float64)), TypeError, r"conv2d: w has dtype float64, expected float32 \(the dtype of x\)"),
    (lambda x, w: nk.conv2d(x.tolist(), w), TypeError, "conv2d: x must be a numpy.ndarray, got list"),
    (lambda x, w: nk.conv2d(x, w, groups=3), ValueError, "conv2d: x has 4 channels .* not divisible by groups=3"),
    (lambda x, w: nk.conv2d(x, w[:5], groups=2), ValueError, "conv2d: w has 5 output channels .* not divisible by groups=2"),
    (lambda x, w: nk.conv2d(x, w), ValueError, r"conv2d: w has shape \(6, 2, 3, 3\): dim 1 must be in_channels/groups = 4/1 = 4"),
    (lambda x, w: nk.conv2d(x, np.zeros((6, 2, 7, 3), np.float32), groups=2), ValueError,
     "conv2d: kernel size 7 with dilation 1 spans 7 rows .* more than the padded input"),
    (lambda x, w: nk.conv2d(x, w, groups=2, dilation=(1, 4)), ValueError, "spans 9 columns"),
    (lambda x, w: nk.conv2d(x, w, groups=2, stride=0), ValueError, "conv2d: stride must be >= 1, got 0"),
    (lambda x, w: nk.conv2d(x, w, groups=2, stride=(1, -2)), ValueError, r"conv2d: stride must be >= 1, got \(1, -2\)"),
    (lambda x, w: nk.conv2d(x, w, groups=2, dilation=0), ValueError, "conv2d: dilation must be >= 1, got 0"),
    (lambda x, w: nk.conv2d(x, w, groups=2, padding=-1), ValueError, "conv2d: padding must be >= 0, got -1"),
    (lambda x, w: nk.conv2d(x, w, groups=2, padding="full"), ValueError, "conv2d: padding must be an int, a tuple"),
    (lambda x, w: nk.conv2d(x, w, groups=2, padding="same", stride=2), ValueError,
     "conv2d: padding='same' needs stride 1, got stride=2"),
    (lambda x, w: nk.conv2d(x, w, groups=2, stride=(1, 2, 3)), TypeError, "conv2d: stride must be an int or a tuple of 2 ints"),
    (lambda x, w: nk.conv2d(x, w, groups=2, stride=1.5), TypeError, "conv2d: stride must be an int"),
    (lambda x, w: nk.conv2d(x, w, groups=0), ValueError, r"conv2d: groups must be in \[1, "),
    (lambda x, w: nk.conv2d(x, w, groups=2.0), TypeError, "conv2d: groups must be an int"),
    (lambda x, w: nk.conv2d(x, w, groups=2, padding=2**40), ValueError, "conv2d: padding must be at most"),
    (lambda x, w: nk.conv2d(x, w, np.zeros(5, np.float32), groups=2), ValueError, r"conv2d: b has shape \(5,\), expected \(6,\)"),
    (lambda x, w: nk.conv2d(x, w, np.zeros(6), groups=2), TypeError, r"conv2d: b has dtype float64, expected float32"),
    (lambda x, w: nk.conv2d(x, w, groups=2, out=np.zeros((2, 6, 4, 5), np.float32)), ValueError,
     r"conv2d: out has shape \(2, 6, 4, 5\), expected \(2, 6, 4, 4\)"),
    (lambda x, w: nk.conv2d(x, w, groups=2, out=np.zeros((2, 6, 4, 4))), TypeError, "conv2d: out has dtype float64"),
    (lambda x, w: nk.conv2d(x, w, groups=2, out=np.zeros((2, 6, 4, 8), np.float32)[..., ::2]), ValueError,
     "conv2d: out must be C-contiguous"),
    (lambda x, w: nk.conv2d(x, w, groups=2, out=_readonly((2, 6, 4, 4))), ValueError, r"conv2d: out is read-only"),
    (lambda x, w: nk.conv2d(x, w, groups=2, out=x.reshape(-1)[:192].reshape(2, 6, 4, 4)), ValueError,
     "conv2d: out shares memory with x"),
    (lambda x, w: nk.conv2d_backward(np.zeros((2, 6, 4, 5), np.float32), x, w, groups=2), ValueError,
     r"conv2d_backward: dy has shape \(2, 6, 4, 5\), expected \(2, 6, 4, 4\)"),
    (lambda x, w: nk.conv2d_backward(np.zeros((2, 6, 4, 4)), x, w, groups=2), TypeError,
     r"conv2d_backward: x has dtype float32, expected float64 \(the dtype of dy\)"),
    (lambda x, w: nk.conv2d_backward(np.zeros((2, 6, 4, 4), np.float32), x, w, groups=2, accumulate=True),
     ValueError, "conv2d_backward: accumulate=True needs dw_out="),
    (lambda x, w: nk.conv2d_backward(np.zeros((2, 6, 4, 4), np.float32), x, w, groups=2, need_dx=False,
                                     dx_out=np.zeros_like(x)), ValueError, "conv2d_backward: dx_out was given but need_dx=False"),
    (lambda x, w: nk.conv2d_backward(np.zeros((2, 6, 4, 4), np.float32), x, w, groups=2,
                                     dw_out=np.zeros((6, 2, 3, 3))), TypeError, "conv2d_backward: dw_out has dtype float64"),
    (lambda x, w: nk.conv2d_backward(np.zeros((2, 6, 4, 4), np.float32), x, w, groups=2,
                                     db_out=_readonly((6,))), ValueError, "conv2d_backward: db_out is read-only"),
    (lambda x, w: nk.conv2d_backward(np.zeros((2, 6, 4, 4), np.float32), x, w, groups=2, need_dx=1),
     TypeError, "conv2d_backward: need_dx must be a bool"),
    (lambda x, w: nk.conv1d(x, w, groups=2), ValueError, r"conv1d: x has 4 dims, expected 3 \(N, C, L\)"),
    (lambda x, w: nk.conv1d(x[0], w[..., 0], stride=(1, 1), groups=2), TypeError, "conv1d: stride must be an int"),
    (lambda x, w: nk.conv1d(x[0], w[..., 0, :], groups=2, padding="same", stride=3), ValueError,
     "conv1d: padding='same' needs stride 1, got stride=3"),
    (lambda x, w: nk.im2col(x, (7, 3)), ValueError, "im2col: kernel size 7 with dilation 1 spans 7 rows"),
    (lambda x, w: nk.im2col(x, (0, 3)), ValueError, r"im2col: kernel_size must be in \[1, "),
    (lambda x, w: nk.col2im(np.zeros((2, 10, 16), np.float32), (6, 6), (3, 3)), ValueError,
     r"col2im: cols has 10 rows \(dim 1\), not a multiple of kH\*kW"),
    (lambda x, w: nk.col2im(np.zeros((2, 18, 15), np.float32), (6, 6), (3, 3)), ValueError,
     r"col2im: cols has shape \(2, 18, 15\), expected \(2, 18, 16\)"),
])
def test_bad_input(call, exc, match):
    x, w = _good()
    with pytest.raises(exc, match=match):
        call(x, w)


def _readonly(shape):
    a = np.zeros(shape, np.float32)
    a.flags.writeable = False
    return a


def test_absurd_sizes_raise_cleanly():
    x = np.zeros((1, 1, 1, 1), np.float32)
    w = np.zeros((1, 1, 1, 1), np.float32)
    with pytest.raises(ValueError, match="conv2d: output has .* pixels per image, more than"):
        nk.conv2d(x, w, padding=2**16)
    with pytest.raises(ValueError, match="conv2d: output rows size 2147483649 exceeds 2147483647"):
        nk.conv2d(x, w, padding=2**30)
    with pytest.raises(ValueError, match="conv2d: stride must be at most"):
        nk.conv2d(x, w, stride=2**63)
    with pytest.raises(ValueError, match=r"conv2d: padding must be in \[0, 2147483647\], got \(-1, 0, 0, 0\)"):
        nk._core._conv2d(x, w, None, (1, 1), (-1, 0, 0, 0), (1, 1), 1)
