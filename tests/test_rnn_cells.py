"""Fused recurrent cells (nk.lstm_cell, gru_cell, rnn_cell and their backward passes) against the
NumPy twins, finite differences, torch, and for out= buffers, accumulation, threads and SIMD paths."""

import numpy as np
import pytest

import nnkern as nk
from nnkern import reference as ref
from conftest import assert_bitwise_equal, nan_filled, num_threads, numerical_grad, requires_torch, torch

# (kind, option): option is the GRU variant or the RNN nonlinearity
CELLS = [("lstm", None), ("gru", "torch"), ("gru", "cho2014"), ("rnn", "tanh"), ("rnn", "relu")]
CELL_IDS = ["lstm", "gru", "gru-cho2014", "rnn-tanh", "rnn-relu"]
GATES = {"lstm": 4, "gru": 3, "rnn": 1}
WS_WIDTH = {"lstm": 5, "gru": 4, "rnn": 1}


def make(rng, kind, N, F, H, dtype, bias=True, h0=True):
    G = GATES[kind]
    s = 1.0 / np.sqrt(max(H, 1))
    p = dict(
        x=rng.standard_normal((N, F)).astype(dtype),
        h0=rng.standard_normal((N, H)).astype(dtype) if h0 else None,
        c0=rng.standard_normal((N, H)).astype(dtype) if (h0 and kind == "lstm") else None,
        w_ih=(rng.uniform(-2, 2, (G * H, F)) * s).astype(dtype),
        w_hh=(rng.uniform(-2, 2, (G * H, H)) * s).astype(dtype),
        b_ih=rng.uniform(-1, 1, G * H).astype(dtype) if bias else None,
        b_hh=rng.uniform(-1, 1, G * H).astype(dtype) if bias else None,
    )
    return p


def fwd(mod, kind, opt, p, **kw):
    if kind == "lstm":
        return mod.lstm_cell(p["x"], p["h0"], p["c0"], p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"], **kw)
    f = mod.gru_cell if kind == "gru" else mod.rnn_cell
    return f(p["x"], p["h0"], p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"], opt, **kw)


def bwd(mod, kind, opt, p, ws, dh1, dc1=None, **kw):
    if kind == "lstm":
        return mod.lstm_cell_backward(dh1, dc1, ws, p["x"], p["h0"], p["c0"], p["w_ih"], p["w_hh"], **kw)
    f = mod.gru_cell_backward if kind == "gru" else mod.rnn_cell_backward
    return f(dh1, ws, p["x"], p["h0"], p["w_ih"], p["w_hh"], opt, **kw)


def tol(dtype, K):
    # GEMM sums of K terms, then a few transcendental ulps.
    if dtype == np.float64:
        return dict(rtol=1e-12, atol=1e-13 * max(K, 1))
    return dict(rtol=2e-5, atol=2e-6 * max(K, 1) ** 0.5)


SHAPES = [(1, 1, 1), (1, 32, 64), (3, 7, 9), (5, 16, 17), (8, 33, 31), (2, 1, 15), (17, 3, 65)]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("N,F,H", SHAPES)
@pytest.mark.parametrize("kind,opt", CELLS, ids=CELL_IDS)
def test_matches_twin(rng, kind, opt, N, F, H, dtype):
    p = make(rng, kind, N, F, H, dtype)
    got = fwd(nk, kind, opt, p)
    want = fwd(ref, kind, opt, p)
    t = tol(dtype, F + H)
    for g, w in zip(got, want):
        assert g.dtype == dtype and g.shape == w.shape
        np.testing.assert_allclose(g, w, **t)
    dh1 = rng.standard_normal((N, H)).astype(dtype)
    dc1 = rng.standard_normal((N, H)).astype(dtype) if kind == "lstm" else None
    gb = bwd(nk, kind, opt, p, got[-1], dh1, dc1)
    wb = bwd(ref, kind, opt, p, want[-1], dh1, dc1)
    assert len(gb) == len(wb) == (7 if kind == "lstm" else 6)
    for g, w in zip(gb, wb):
        assert g.dtype == dtype and g.shape == w.shape
        np.testing.assert_allclose(g, w, **tol(dtype, max(N, GATES[kind] * H)))


@pytest.mark.parametrize("kind,opt", CELLS, ids=CELL_IDS)
@pytest.mark.parametrize("bias,h0", [(True, True), (False, True), (True, False)])
def test_finite_differences(rng, kind, opt, bias, h0):
    N, F, H = 3, 4, 5
    p = make(rng, kind, N, F, H, np.float64, bias=bias, h0=h0)
    if kind == "rnn" and opt == "relu":
        p["x"] += 0.5  # keep pre-activations away from the kink at 0
    A = rng.standard_normal((N, H))
    B = rng.standard_normal((N, H))

    def loss():
        out = fwd(nk, kind, opt, p)
        val = np.sum(out[0] * A)
        if kind == "lstm":
            val += np.sum(out[1] * B)
        return val

    out = fwd(nk, kind, opt, p)
    grads = bwd(nk, kind, opt, p, out[-1], A, B if kind == "lstm" else None)
    names = ["x", "h0", "c0", "w_ih", "w_hh", "b_ih", "b_hh"] if kind == "lstm" else \
        ["x", "h0", "w_ih", "w_hh", "b_ih", "b_hh"]
    for name, g in zip(names, grads):
        if p[name] is None:
            continue
        num = numerical_grad(loss, p[name])
        np.testing.assert_allclose(g, num, rtol=1e-6, atol=1e-7, err_msg=f"{kind}/{opt} d{name}")


@requires_torch
@pytest.mark.parametrize("kind,opt", [c for c in CELLS if c[1] != "cho2014"])
@pytest.mark.parametrize("bias", [True, False])
def test_matches_torch(rng, kind, opt, bias):
    N, F, H = 4, 6, 5
    p = make(rng, kind, N, F, H, np.float64, bias=bias)
    if kind == "lstm":
        cell = torch.nn.LSTMCell(F, H, bias=bias)
    elif kind == "gru":
        cell = torch.nn.GRUCell(F, H, bias=bias)
    else:
        cell = torch.nn.RNNCell(F, H, bias=bias, nonlinearity=opt)
    cell = cell.double()
    with torch.no_grad():
        cell.weight_ih.copy_(torch.from_numpy(p["w_ih"]))
        cell.weight_hh.copy_(torch.from_numpy(p["w_hh"]))
        if bias:
            cell.bias_ih.copy_(torch.from_numpy(p["b_ih"]))
            cell.bias_hh.copy_(torch.from_numpy(p["b_hh"]))
    tx = torch.tensor(p["x"], requires_grad=True)
    th = torch.tensor(p["h0"], requires_grad=True)
    dh1 = rng.standard_normal((N, H))
    if kind == "lstm":
        tc = torch.tensor(p["c0"], requires_grad=True)
        h1, c1 = cell(tx, (th, tc))
        dc1 = rng.standard_normal((N, H))
        (h1 * torch.tensor(dh1) + c1 * torch.tensor(dc1)).sum().backward()
        out = fwd(nk, kind, opt, p)
        np.testing.assert_allclose(out[1], c1.detach().numpy(), rtol=1e-12, atol=1e-13)
        g = bwd(nk, kind, opt, p, out[-1], dh1, dc1)
        np.testing.assert_allclose(g[2], tc.grad.numpy(), rtol=1e-11, atol=1e-12)
        wgrads = g[3:]
    else:
        h1 = cell(tx, th)
        (h1 * torch.tensor(dh1)).sum().backward()
        out = fwd(nk, kind, opt, p)
        g = bwd(nk, kind, opt, p, out[-1], dh1)
        wgrads = g[2:]
    np.testing.assert_allclose(out[0], h1.detach().numpy(), rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(g[0], tx.grad.numpy(), rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(g[1], th.grad.numpy(), rtol=1e-11, atol=1e-12)
    tparams = [cell.weight_ih, cell.weight_hh] + ([cell.bias_ih, cell.bias_hh] if bias else [])
    for mine, tp in zip(wgrads, tparams):
        np.testing.assert_allclose(mine, tp.grad.numpy(), rtol=1e-11, atol=1e-12)


@pytest.mark.parametrize("kind,opt", CELLS, ids=CELL_IDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_out_buffers_nan_prefilled(rng, kind, opt, dtype):
    N, F, H = 6, 5, 19
    p = make(rng, kind, N, F, H, dtype)
    fresh = fwd(nk, kind, opt, p)
    bufs = tuple(nan_filled(a.shape, dtype) for a in fresh)
    got = fwd(nk, kind, opt, p, out=bufs)
    for g, b, f in zip(got, bufs, fresh):
        assert g is b
        np.testing.assert_array_equal(b, f)
    # partial out=: None entries are allocated
    part = (None,) + bufs[1:]
    got = fwd(nk, kind, opt, p, out=part)
    np.testing.assert_array_equal(got[0], fresh[0])
    # weight-gradient buffers: overwritten (NaN-filled) or accumulated into
    dh1 = rng.standard_normal((N, H)).astype(dtype)
    base = bwd(nk, kind, opt, p, fresh[-1], dh1)
    k = 3 if kind == "lstm" else 2
    gb = [nan_filled(a.shape, dtype) for a in base[k:]]
    res = bwd(nk, kind, opt, p, fresh[-1], dh1, dw_ih=gb[0], dw_hh=gb[1], db_ih=gb[2], db_hh=gb[3])
    for r, b, want in zip(res[k:], gb, base[k:]):
        assert r is b
        np.testing.assert_array_equal(b, want)
    acc = [np.ones_like(a) for a in base[k:]]
    bwd(nk, kind, opt, p, fresh[-1], dh1, dw_ih=acc[0], dw_hh=acc[1], db_ih=acc[2], db_hh=acc[3], accumulate=True)
    for a, want in zip(acc, base[k:]):
        np.testing.assert_allclose(a, want + 1, rtol=1e-6 if dtype == np.float32 else 1e-14, atol=1e-6)


@pytest.mark.parametrize("kind,opt", CELLS, ids=CELL_IDS)
def test_none_means_zero(rng, kind, opt):
    N, F, H = 3, 4, 6
    p = make(rng, kind, N, F, H, np.float64, bias=False, h0=False)
    q = dict(p)
    q["h0"] = np.zeros((N, H))
    q["c0"] = np.zeros((N, H)) if kind == "lstm" else None
    q["b_ih"] = np.zeros(GATES[kind] * H)
    q["b_hh"] = np.zeros(GATES[kind] * H)
    a, b = fwd(nk, kind, opt, p), fwd(nk, kind, opt, q)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    dh1 = rng.standard_normal((N, H))
    ga = bwd(nk, kind, opt, p, a[-1], dh1)
    gb = bwd(nk, kind, opt, q, b[-1], dh1)
    for x, y in zip(ga, gb):
        np.testing.assert_allclose(x, y, rtol=1e-14, atol=1e-15)
    # dh1 / dc1 None mean zero upstream gradient
    z = bwd(nk, kind, opt, q, b[-1], None, None)
    zz = bwd(nk, kind, opt, q, b[-1], np.zeros((N, H)), np.zeros((N, H)) if kind == "lstm" else None)
    for x, y in zip(z, zz):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("kind,opt", CELLS, ids=CELL_IDS)
def test_threads_bitwise(rng, kind, opt):
    N, F, H = 160, 96, 128  # rows split over threads, GEMMs split
    p = make(rng, kind, N, F, H, np.float32)
    dh1 = rng.standard_normal((N, H)).astype(np.float32)
    runs = []
    for t in (1, 2, 3):
        with num_threads(t):
            out = fwd(nk, kind, opt, p)
            runs.append(out + bwd(nk, kind, opt, p, out[-1], dh1, dh1 if kind == "lstm" else None))
    for r in runs[1:]:
        for a, b in zip(runs[0], r):
            assert_bitwise_equal(a, b)


@pytest.mark.parametrize("kind,opt", CELLS, ids=CELL_IDS)
def test_simd_levels(rng, simd_level, kind, opt):
    N, F, H = 5, 9, 37  # a vector main loop plus a tail
    for dtype in (np.float32, np.float64):
        p = make(rng, kind, N, F, H, dtype)
        got = fwd(nk, kind, opt, p)
        want = fwd(ref, kind, opt, p)
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, **tol(dtype, F + H))
        dh1 = rng.standard_normal((N, H)).astype(dtype)
        for g, w in zip(bwd(nk, kind, opt, p, got[-1], dh1), bwd(ref, kind, opt, p, want[-1], dh1)):
            np.testing.assert_allclose(g, w, **tol(dtype, 4 * H))


@pytest.mark.parametrize("kind,opt", CELLS, ids=CELL_IDS)
def test_empty_batch(rng, kind, opt):
    p = make(rng, kind, 0, 4, 3, np.float32)
    out = fwd(nk, kind, opt, p)
    assert out[0].shape == (0, 3) and out[-1].shape == (0, WS_WIDTH[kind] * 3)
    g = bwd(nk, kind, opt, p, out[-1], np.zeros((0, 3), np.float32))
    k = 3 if kind == "lstm" else 2
    for a in g[k:]:
        assert not a.any()


@pytest.mark.parametrize("kind,opt", CELLS, ids=CELL_IDS)
def test_nan_stays_in_its_row(rng, kind, opt):
    p = make(rng, kind, 4, 5, 6, np.float64)
    p["x"][2, 1] = np.nan
    out = fwd(nk, kind, opt, p)
    assert np.isnan(out[0][2]).all()
    assert np.isfinite(out[0][[0, 1, 3]]).all()
    p["x"][2, 1] = np.inf
    out = fwd(nk, kind, opt, p)
    assert np.isfinite(out[0][[0, 1, 3]]).all()


@pytest.mark.parametrize("kind,opt", CELLS, ids=CELL_IDS)
def test_fast_and_general_paths_agree(rng, kind, opt):
    """Unusual inputs (non-contiguous, Fortran-ordered) take the general path: same results."""
    N, F, H = 4, 6, 5
    p = make(rng, kind, N, F, H, np.float64)
    fast = fwd(nk, kind, opt, p)
    q = dict(p)
    q["x"] = np.asfortranarray(p["x"])
    q["w_hh"] = np.asfortranarray(p["w_hh"])
    q["h0"] = np.repeat(p["h0"], 2, axis=1)[:, ::2]
    general = fwd(nk, kind, opt, q)
    for a, b in zip(fast, general):
        np.testing.assert_array_equal(a, b)
    dh1 = rng.standard_normal((N, H))
    for a, b in zip(bwd(nk, kind, opt, p, fast[-1], dh1), bwd(nk, kind, opt, q, general[-1].copy(order="F"), dh1)):
        np.testing.assert_array_equal(a, b)


def test_twin_sigmoid_is_exactly_zero_at_minus_inf():
    """reference rnn sigmoid clipped its exp argument, so sigmoid(-inf) was 1e-304 and z * (h - n)
    gave -inf where torch's 0 * inf gives NaN (fuzz finding, gru_cell with an infinite h0)."""
    from nnkern.reference import rnn as rnn_ref
    for dt in (np.float32, np.float64):
        s = rnn_ref._sigmoid(np.array([-np.inf, -1000.0, 0.0, np.inf, np.nan], dt))
        np.testing.assert_array_equal(s[:4], np.array([0.0, 0.0, 0.5, 1.0], dt))
        assert np.isnan(s[4])
    rng = np.random.default_rng(5)
    x, h0 = rng.standard_normal((2, 3)), rng.standard_normal((2, 4))
    h0[0, 0], h0[1, 2] = -np.inf, np.inf
    w_ih, w_hh = rng.standard_normal((12, 3)), rng.standard_normal((12, 4))
    with np.errstate(invalid="ignore"):
        a, b = nk.gru_cell(x, h0, w_ih, w_hh)[0], ref.gru_cell(x, h0, w_ih, w_hh)[0]
    np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
    np.testing.assert_array_equal(a[np.isinf(a)], b[np.isinf(a)])
