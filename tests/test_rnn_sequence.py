"""Whole-sequence recurrent kernels (nk.lstm_sequence, gru_sequence, rnn_sequence and their backward
passes; the C++ time loops the nn layers run) against the NumPy twins (hoisted and naive),
finite differences, thread counts, SIMD paths, NaN-prefilled buffers and workspace misuse."""

import numpy as np
import pytest

import nnkern as nk
from nnkern import _core
from nnkern import reference as ref
from conftest import assert_bitwise_equal, nan_filled, num_threads, numerical_grad

SEQS = [("lstm", None), ("gru", "torch"), ("gru", "cho2014"), ("rnn", "tanh"), ("rnn", "relu")]
SEQ_IDS = ["lstm", "gru", "gru-cho2014", "rnn-tanh", "rnn-relu"]
GATES = {"lstm": 4, "gru": 3, "rnn": 1}


def make(rng, kind, T, N, F, H, dtype, batch_first=False, bias=True, states=True):
    G = GATES[kind]
    s = 1.0 / np.sqrt(H)
    return dict(
        x=rng.standard_normal((N, T, F) if batch_first else (T, N, F)).astype(dtype),
        h0=rng.standard_normal((N, H)).astype(dtype) if states else None,
        c0=rng.standard_normal((N, H)).astype(dtype) if (states and kind == "lstm") else None,
        w_ih=(rng.uniform(-1.5, 1.5, (G * H, F)) * s).astype(dtype),
        w_hh=(rng.uniform(-1.5, 1.5, (G * H, H)) * s).astype(dtype),
        b_ih=rng.uniform(-1, 1, G * H).astype(dtype) if bias else None,
        b_hh=rng.uniform(-1, 1, G * H).astype(dtype) if bias else None,
    )


def seq_fwd(mod, kind, opt, p, **kw):
    """(y, h_n, c_n or None, ws) for either module."""
    if kind == "lstm":
        return mod.lstm_sequence(p["x"], p["h0"], p["c0"], p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"], **kw)
    if kind == "gru":
        y, h, ws = mod.gru_sequence(p["x"], p["h0"], p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"], variant=opt, **kw)
    else:
        y, h, ws = mod.rnn_sequence(p["x"], p["h0"], p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"], nonlinearity=opt,
                                    **kw)
    return y, h, None, ws


def seq_bwd(mod, kind, ws, x, dy, dh_n, dc_n):
    """(dx, dh0, dc0 or None, dw_ih, dw_hh, db_ih, db_hh)."""
    if kind == "lstm":
        return mod.lstm_sequence_backward(dy, dh_n, dc_n, ws, x)
    f = mod.gru_sequence_backward if kind == "gru" else mod.rnn_sequence_backward
    dx, dh0, *g = f(dy, dh_n, ws, x)
    return (dx, dh0, None, *g)


def tol(dtype, K):
    if dtype == np.float64:
        return dict(rtol=1e-11, atol=1e-12 * K)
    return dict(rtol=1e-4, atol=2e-5 * K ** 0.5)


def lengths_for(mode, rng, T, N):
    if mode is None:
        return None
    if mode == "full":
        return np.full(N, T, np.int64)
    L = rng.integers(0, T + 1, size=N).astype(np.int64)
    if N > 0:
        L[0] = T
    if N > 1:
        L[-1] = 0
    return L


def run_both(rng, kind, opt, T, N, F, H, dtype, reverse, batch_first, lmode, bias=True, states=True, hoisted=True):
    p = make(rng, kind, T, N, F, H, dtype, batch_first, bias, states)
    L = lengths_for(lmode, rng, T, N)
    kw = dict(lengths=L, reverse=reverse, batch_first=batch_first)
    got = seq_fwd(nk, kind, opt, p, **kw)
    want = seq_fwd(ref, kind, opt, p, hoisted=hoisted, **kw)
    dy = rng.standard_normal(got[0].shape).astype(dtype)
    dhn = rng.standard_normal((N, H)).astype(dtype)
    dcn = rng.standard_normal((N, H)).astype(dtype) if kind == "lstm" else None
    gb = seq_bwd(nk, kind, got[3], p["x"], dy, dhn, dcn)
    wb = seq_bwd(ref, kind, want[3], p["x"], dy, dhn, dcn)
    return p, L, got, want, gb, wb


# (3, 12, 6, 130): three hidden slices per step, the last one 2 units wide
CONFIGS = [(1, 1, 1, 1), (5, 3, 4, 7), (7, 9, 5, 17), (3, 12, 6, 130)]


TWIN_CASES = [(cfg, rb, lm, np.float64) for cfg in CONFIGS for rb in [(False, False), (True, False), (False, True),
                                                                       (True, True)] for lm in [None, "random"]]
TWIN_CASES += [(cfg, rb, "random", np.float32) for cfg in CONFIGS[1:] for rb in [(False, True), (True, False)]]


@pytest.mark.parametrize("cfg,rb,lmode,dtype", TWIN_CASES)
@pytest.mark.parametrize("kind,opt", SEQS, ids=SEQ_IDS)
def test_matches_twin(rng, kind, opt, cfg, rb, lmode, dtype):
    (T, N, F, H), (reverse, batch_first) = cfg, rb
    p, L, got, want, gb, wb = run_both(rng, kind, opt, T, N, F, H, dtype, reverse, batch_first, lmode)
    K = (F + H) * (1 + T // 4)
    for g, w, name in zip(got[:3], want[:3], ["y", "h_n", "c_n"]):
        if w is None:
            assert g is None
            continue
        assert g.dtype == dtype and g.shape == w.shape
        np.testing.assert_allclose(g, w, err_msg=name, **tol(dtype, K))
    for g, w, name in zip(gb, wb, ["dx", "dh0", "dc0", "dw_ih", "dw_hh", "db_ih", "db_hh"]):
        if w is None:
            assert g is None
            continue
        assert g.dtype == dtype and g.shape == w.shape, name
        np.testing.assert_allclose(g, w, err_msg=name, **tol(dtype, K * max(1, T * N // 8)))
    if L is not None:
        # padding: zero outputs and zero input gradients past each length
        y, dx = got[0], gb[0]
        for n, ln in enumerate(L):
            yp = y[n, ln:] if batch_first else y[ln:, n]
            dxp = dx[n, ln:] if batch_first else dx[ln:, n]
            assert not yp.any() and not dxp.any()


@pytest.mark.parametrize("kind,opt", SEQS, ids=SEQ_IDS)
def test_twins_naive_equals_hoisted(rng, kind, opt):
    p, L, got, want, gb, wb = run_both(rng, kind, opt, 6, 4, 5, 7, np.float64, True, False, "random", hoisted=False)
    for g, w in zip(list(got[:3]) + list(gb), list(want[:3]) + list(wb)):
        if w is not None:
            np.testing.assert_allclose(g, w, rtol=1e-11, atol=1e-12)


@pytest.mark.parametrize("kind,opt", SEQS, ids=SEQ_IDS)
@pytest.mark.parametrize("reverse,lmode,states", [(False, None, True), (True, "random", True), (False, "random", False)])
def test_finite_differences(rng, kind, opt, reverse, lmode, states):
    T, N, F, H = 4, 3, 3, 4
    p = make(rng, kind, T, N, F, H, np.float64, states=states)
    if kind == "rnn" and opt == "relu":
        p["b_ih"] += 0.3
    L = np.array([4, 2, 0]) if lmode else None
    kw = dict(lengths=L, reverse=reverse)
    A = rng.standard_normal((T, N, H))
    B = rng.standard_normal((N, H))
    C = rng.standard_normal((N, H))

    def loss():
        y, h, c, _ = seq_fwd(nk, kind, opt, p, **kw)
        return np.sum(y * A) + np.sum(h * B) + (np.sum(c * C) if c is not None else 0.0)

    y, h, c, ws = seq_fwd(nk, kind, opt, p, **kw)
    g = seq_bwd(nk, kind, ws, p["x"], A, B, C if kind == "lstm" else None)
    for name, gi in zip(["x", "h0", "c0", "w_ih", "w_hh", "b_ih", "b_hh"], g):
        if p[name] is None:
            continue
        num = numerical_grad(loss, p[name])
        np.testing.assert_allclose(gi, num, rtol=1e-6, atol=1e-7, err_msg=f"{kind}/{opt} d{name}")


def all_outputs(kind, opt, p, L, reverse, batch_first, dy, dhn):
    y, h, c, ws = seq_fwd(nk, kind, opt, p, lengths=L, reverse=reverse, batch_first=batch_first)
    g = seq_bwd(nk, kind, ws, p["x"], dy, dhn, dhn if kind == "lstm" else None)
    return [a for a in (y, h, c) + tuple(g) if a is not None]


@pytest.mark.parametrize("kind,opt", SEQS, ids=SEQ_IDS)
@pytest.mark.parametrize("T,N,F,H,lmode", [(4, 64, 32, 256, None), (5, 200, 16, 64, "random"),
                                           (3, 130, 8, 150, "random")])
def test_threads_bitwise(rng, kind, opt, T, N, F, H, lmode):
    # (64, 256): 4 hidden slices per step; (200, 64): 4 row blocks; (130, 150): a narrow last slice
    p = make(rng, kind, T, N, F, H, np.float32, batch_first=lmode is not None)
    L = lengths_for(lmode, rng, T, N)
    dy = rng.standard_normal((N, T, H) if lmode else (T, N, H)).astype(np.float32)
    dhn = rng.standard_normal((N, H)).astype(np.float32)
    runs = []
    for t in (1, 2, 3):
        with num_threads(t):
            runs.append(all_outputs(kind, opt, p, L, lmode is not None, lmode is not None, dy, dhn))
    for r in runs[1:]:
        for a, b in zip(runs[0], r):
            assert_bitwise_equal(a, b)


@pytest.mark.parametrize("kind,opt", SEQS, ids=SEQ_IDS)
def test_simd_levels(rng, simd_level, kind, opt):
    for dtype in (np.float32, np.float64):
        # 8 x 130: three hidden slices per step
        p, L, got, want, gb, wb = run_both(rng, kind, opt, 4, 8, 5, 130, dtype, False, True, "random")
        for g, w in zip(list(got[:3]) + list(gb), list(want[:3]) + list(wb)):
            if w is not None:
                np.testing.assert_allclose(g, w, **tol(dtype, 400))


@pytest.mark.parametrize("kind,opt", SEQS, ids=SEQ_IDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nan_prefilled_buffers(rng, kind, opt, dtype):
    """Every output element (and every workspace element backward reads) is written."""
    T, N, F, H = 5, 6, 4, 9
    D = 2
    p = make(rng, kind, T, N, F, H, dtype)
    L = np.array([5, 3, 0, 1, 5, 2])
    variant = {"torch": 0, "cho2014": 1, "tanh": 0, "relu": 1, None: 0}[opt]
    size = _core._rnn_seq_ws_size(kind, T, N, F, H, dtype)
    # the layer's bidirectional layout: both directions write one y, columns [d*H, (d+1)*H)
    y = nan_filled((T, N, D * H), dtype)
    hn = nan_filled((D, N, H), dtype)
    cn = nan_filled((D, N, H), dtype) if kind == "lstm" else None
    wss = [nan_filled(size, dtype) for _ in range(D)]
    for d in range(D):
        _core._rnn_seq_forward(kind, p["x"], p["h0"], p["c0"], p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"], L,
                               d == 1, False, variant, y, d * H, hn[d], None if cn is None else cn[d], wss[d])
    assert np.isfinite(y).all() and np.isfinite(hn).all()
    for d in range(D):
        want = seq_fwd(ref, kind, opt, p, lengths=L, reverse=d == 1)
        np.testing.assert_allclose(y[:, :, d * H:(d + 1) * H], want[0], **tol(dtype, 20))
        np.testing.assert_allclose(hn[d], want[1], **tol(dtype, 20))
    G = GATES[kind]
    dy = rng.standard_normal((T, N, D * H)).astype(dtype)
    dx = nan_filled(p["x"].shape, dtype)
    dh0 = nan_filled((D, N, H), dtype)
    dc0 = nan_filled((D, N, H), dtype) if kind == "lstm" else None
    grads = [tuple(nan_filled(s, dtype) for s in [(G * H, F), (G * H, H), (G * H,), (G * H,)]) for _ in range(D)]
    for d in range(D):
        _core._rnn_seq_backward(kind, wss[d], p["x"], dy, d * H, None, None, dx, d == 1, dh0[d],
                                None if dc0 is None else dc0[d], grads[d], (False,) * 4)
    assert np.isfinite(dx).all() and np.isfinite(dh0).all()
    for g in grads:
        for a in g:
            assert np.isfinite(a).all()
    # dx of both directions accumulated = sum of the twins' dx
    want_dx = 0
    for d in range(D):
        want = seq_fwd(ref, kind, opt, p, lengths=L, reverse=d == 1)
        want_dx = want_dx + seq_bwd(ref, kind, want[3], p["x"], np.ascontiguousarray(dy[:, :, d * H:(d + 1) * H]),
                                    None, None)[0]
    np.testing.assert_allclose(dx, want_dx, **tol(dtype, 40))


@pytest.mark.parametrize("kind,opt", SEQS, ids=SEQ_IDS)
def test_accumulate_flags(rng, kind, opt):
    T, N, F, H = 4, 3, 5, 6
    p = make(rng, kind, T, N, F, H, np.float64)
    G = GATES[kind]
    variant = {"torch": 0, "cho2014": 1, "tanh": 0, "relu": 1, None: 0}[opt]
    dy = rng.standard_normal((T, N, H))
    base = None
    for acc in [(False,) * 4, (True, False, True, False)]:
        y = np.empty((T, N, H))
        hn = np.empty((N, H))
        cn = np.empty((N, H))
        ws = np.empty(_core._rnn_seq_ws_size(kind, T, N, F, H, np.float64))
        _core._rnn_seq_forward(kind, p["x"], p["h0"], p["c0"], p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"], None,
                               False, False, variant, y, 0, hn, cn if kind == "lstm" else None, ws)
        grads = tuple(np.full(s, 2.0) for s in [(G * H, F), (G * H, H), (G * H,), (G * H,)])
        dx = np.full(p["x"].shape, 3.0)
        _core._rnn_seq_backward(kind, ws, p["x"], dy, 0, None, None, dx, True, np.empty((N, H)),
                                np.empty((N, H)) if kind == "lstm" else None, grads, acc)
        if base is None:
            base = grads, dx
            continue
        for a, b, flag in zip(grads, base[0], acc):
            np.testing.assert_allclose(a, b + 2.0 if flag else b, rtol=1e-14, atol=1e-14)
        np.testing.assert_array_equal(dx, base[1])  # dx_accumulate=True both times: 3 + dx


@pytest.mark.parametrize("kind,opt", SEQS, ids=SEQ_IDS)
def test_empty_time_and_batch(rng, kind, opt):
    for T, N in [(0, 3), (4, 0), (0, 0)]:
        p = make(rng, kind, T, N, 2, 5, np.float32)
        y, h, c, ws = seq_fwd(nk, kind, opt, p)
        assert y.shape == (T, N, 5)
        if T == 0:
            np.testing.assert_array_equal(h, p["h0"])
        g = seq_bwd(nk, kind, ws, p["x"], None, None, None)
        assert g[0].shape == p["x"].shape and g[1].shape == (N, 5)
        for a in g[3:]:
            assert not a.any()
        if T == 0 and N:
            np.testing.assert_array_equal(g[1], 0)


@pytest.mark.parametrize("kind,opt", SEQS, ids=SEQ_IDS)
def test_dy_none_and_final_state_only(rng, kind, opt):
    p = make(rng, kind, 5, 3, 4, 6, np.float64)
    y, h, c, ws = seq_fwd(nk, kind, opt, p)
    dhn = rng.standard_normal((3, 6))
    a = seq_bwd(nk, kind, ws, p["x"], None, dhn, None)
    y, h, c, ws = seq_fwd(nk, kind, opt, p)
    b = seq_bwd(nk, kind, ws, p["x"], np.zeros_like(y), dhn, np.zeros((3, 6)) if kind == "lstm" else None)
    for u, v in zip(a, b):
        if u is not None:
            np.testing.assert_array_equal(u, v)


def test_workspace_misuse(rng):
    p = make(rng, "lstm", 4, 3, 5, 6, np.float32)
    y, h, c, ws = nk.lstm_sequence(p["x"], p["h0"], p["c0"], p["w_ih"], p["w_hh"])
    nk.lstm_sequence_backward(None, None, None, ws, p["x"])
    with pytest.raises(ValueError, match="lstm_sequence_backward: ws was already used by a backward pass"):
        nk.lstm_sequence_backward(None, None, None, ws, p["x"])
    y, h, c, ws = nk.lstm_sequence(p["x"], p["h0"], p["c0"], p["w_ih"], p["w_hh"])
    with pytest.raises(ValueError, match="gru_sequence_backward: ws is not a workspace written by gru_sequence"):
        nk.gru_sequence_backward(None, None, ws, p["x"])
    with pytest.raises(ValueError, match=r"lstm_sequence_backward: x has shape \(4, 3, 4\), expected \(4, 3, 5\)"):
        nk.lstm_sequence_backward(None, None, None, ws, p["x"][:, :, :4].copy())
    with pytest.raises(ValueError, match="lstm_sequence_backward: ws is not a workspace written by lstm_sequence"):
        nk.lstm_sequence_backward(None, None, None, np.zeros_like(ws), p["x"])
    with pytest.raises(ValueError, match="ws has .* elements, which does not match its header"):
        nk.lstm_sequence_backward(None, None, None, np.concatenate([ws, ws[:16]]), p["x"])
    q = {k: (None if v is None else v.astype(np.float64)) for k, v in p.items()}
    wsd = nk.lstm_sequence(q["x"], q["h0"], q["c0"], q["w_ih"], q["w_hh"])[3]
    with pytest.raises(TypeError, match=r"lstm_sequence_backward: x has dtype float32, expected float64 \(the dtype of ws\)"):
        nk.lstm_sequence_backward(None, None, None, wsd, p["x"])
    with pytest.raises(ValueError, match=r"lstm_sequence_backward: dy has shape \(4, 3, 5\), expected \(4, 3, 6\) like "
                                         r"the output \(last dim = hidden_size\)"):
        nk.lstm_sequence_backward(np.zeros((4, 3, 5), np.float32), None, None, ws, p["x"])


try:
    from hypothesis import given, settings, strategies as st
except ImportError:  # pragma: no cover - hypothesis is a test dependency
    given = None

if given is not None:
    @settings(max_examples=30, deadline=None)
    @given(kind=st.sampled_from(range(len(SEQS))), T=st.integers(0, 6), N=st.integers(0, 9),
           F=st.integers(0, 7), H=st.integers(1, 70), reverse=st.booleans(), batch_first=st.booleans(),
           lengths=st.booleans(), seed=st.integers(0, 2 ** 16))
    def test_random_shapes_match_twin(kind, T, N, F, H, reverse, batch_first, lengths, seed):
        """Random small shapes and options (including empty T, N and F) against the twin, float64."""
        rng = np.random.default_rng(seed)
        kind, opt = SEQS[kind]
        p, L, got, want, gb, wb = run_both(rng, kind, opt, T, N, F, H, np.float64, reverse, batch_first,
                                           "random" if lengths else None)
        for g, w in zip(list(got[:3]) + list(gb), list(want[:3]) + list(wb)):
            if w is not None:
                assert g.shape == w.shape
                np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-10)
