"""nk.nn.RNN / LSTM / GRU and RNNCell / LSTMCell / GRUCell: torch parity (outputs, final states,
dx, initial-state gradients, every parameter gradient) over layers, directions, layouts, biases,
initial states and variable lengths; state_dict names and init; dropout; truncated BPTT."""

import itertools

import numpy as np
import pytest

import nnkern as nk
from conftest import numerical_grad, requires_torch, torch

KINDS = ["lstm", "gru", "rnn"]
NK = {"lstm": lambda *a, **k: nk.nn.LSTM(*a, **k), "gru": lambda *a, **k: nk.nn.GRU(*a, **k),
      "rnn": lambda *a, **k: nk.nn.RNN(*a, **k)}


def torch_layer(kind, *args, **kw):
    return {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[kind](*args, **kw)


def torch_sd(m):
    return {k: v.detach().numpy().copy() for k, v in m.state_dict().items()}


def pair(kind, I, H, dtype=np.float64, **kw):
    tm = torch_layer(kind, I, H, **kw)
    tm = tm.double() if dtype == np.float64 else tm.float()
    m = NK[kind](I, H, dtype=dtype, **kw)
    m.load_state_dict(torch_sd(tm))
    return m, tm


def run_torch(kind, tm, x, h0, c0, dy, dhn, dcn, lengths, batch_first):
    """Torch outputs and gradients; with lengths, one torch call per sequence (its valid prefix)."""
    N = x.shape[0] if batch_first else x.shape[1]
    T = x.shape[1] if batch_first else x.shape[0]
    D = 2 if tm.bidirectional else 1
    H = tm.hidden_size
    out = np.zeros(x.shape[:2] + (D * H,))
    hn = np.zeros((tm.num_layers * D, N, H))
    cn = np.zeros_like(hn)
    dx = np.zeros(x.shape)
    dh0 = np.zeros_like(hn)
    dc0 = np.zeros_like(hn)
    for p in tm.parameters():
        p.grad = None
    groups = [(slice(None), T)] if lengths is None else [(slice(n, n + 1), int(lengths[n])) for n in range(N)]
    for sl, ln in groups:
        if ln == 0:  # an empty sequence: state passes through
            hn[:, sl] = 0 if h0 is None else h0[:, sl]
            dh0[:, sl] = 0 if dhn is None else dhn[:, sl]
            if kind == "lstm":
                cn[:, sl] = 0 if c0 is None else c0[:, sl]
                dc0[:, sl] = 0 if dcn is None else dcn[:, sl]
            continue
        idx = (sl, slice(0, ln)) if batch_first else (slice(0, ln), sl)
        xt = torch.tensor(x[idx], requires_grad=True)
        th0 = None if h0 is None else torch.tensor(h0[:, sl], requires_grad=True)
        tc0 = None if c0 is None else torch.tensor(c0[:, sl], requires_grad=True)
        hx = (th0, tc0) if kind == "lstm" and th0 is not None else th0
        o, st = tm(xt, hx)
        loss = (o * torch.tensor(dy[idx])).sum()
        if kind == "lstm":
            loss = loss + (st[0] * torch.tensor(dhn[:, sl])).sum() + (st[1] * torch.tensor(dcn[:, sl])).sum()
            hn[:, sl], cn[:, sl] = st[0].detach().numpy(), st[1].detach().numpy()
        else:
            loss = loss + (st * torch.tensor(dhn[:, sl])).sum()
            hn[:, sl] = st.detach().numpy()
        loss.backward()
        out[idx] = o.detach().numpy()
        dx[idx] = xt.grad.numpy()
        if th0 is not None:
            dh0[:, sl] = th0.grad.numpy()
            if kind == "lstm":
                dc0[:, sl] = tc0.grad.numpy()
    grads = {k: (p.grad.numpy() if p.grad is not None else np.zeros(tuple(p.shape)))
             for k, p in tm.named_parameters()}
    return out, hn, cn, dx, dh0, dc0, grads


GRID = list(itertools.product([1, 2, 3], [False, True], [False, True], [True, False], [None, "lengths"],
                              [True, False]))
# keep the grid small but covering: every value of every option, with all pairs for the cheap ones
GRID = [g for i, g in enumerate(GRID) if i % 3 == 0 or g[0] == 1]


@requires_torch
@pytest.mark.parametrize("L,bi,bf,bias,lmode,with_hx", GRID)
@pytest.mark.parametrize("kind", KINDS)
def test_matches_torch(rng, kind, L, bi, bf, bias, lmode, with_hx):
    I, H, T, N = 5, 7, 6, 4
    m, tm = pair(kind, I, H, num_layers=L, bias=bias, batch_first=bf, bidirectional=bi)
    D = 2 if bi else 1
    x = rng.standard_normal((N, T, I) if bf else (T, N, I))
    h0 = rng.standard_normal((L * D, N, H)) if with_hx else None
    c0 = rng.standard_normal((L * D, N, H)) if with_hx else None
    lengths = np.array([6, 2, 0, 5]) if lmode else None
    dy = rng.standard_normal(x.shape[:2] + (D * H,))
    dhn = rng.standard_normal((L * D, N, H))
    dcn = rng.standard_normal((L * D, N, H))
    hx = ((h0, c0) if kind == "lstm" else h0) if with_hx else None
    out, st = m(x, hx, lengths=lengths)
    dx = m.backward(dy, dhn, dcn if kind == "lstm" else None)
    t_out, t_hn, t_cn, t_dx, t_dh0, t_dc0, t_grads = run_torch(kind, tm, x, h0, c0, dy, dhn,
                                                               dcn if kind == "lstm" else None, lengths, bf)
    close = dict(rtol=1e-10, atol=1e-11)
    np.testing.assert_allclose(out, t_out, **close)
    np.testing.assert_allclose(st[0] if kind == "lstm" else st, t_hn, **close)
    if kind == "lstm":
        np.testing.assert_allclose(st[1], t_cn, **close)
    np.testing.assert_allclose(dx, t_dx, **close)
    if with_hx:
        np.testing.assert_allclose(m.dh0, t_dh0, **close)
        if kind == "lstm":
            np.testing.assert_allclose(m.dc0, t_dc0, **close)
    for name, p in m.named_parameters():
        np.testing.assert_allclose(p.grad, t_grads[name], err_msg=name, **close)


@requires_torch
@pytest.mark.parametrize("kind", KINDS)
def test_matches_torch_float32(rng, kind):
    I, H, T, N = 32, 64, 10, 8
    m, tm = pair(kind, I, H, dtype=np.float32, num_layers=2, bidirectional=True)
    x = rng.standard_normal((T, N, I)).astype(np.float32)
    dy = rng.standard_normal((T, N, 2 * H)).astype(np.float32)
    out, _ = m(x)
    dx = m.backward(dy)
    xt = torch.tensor(x, requires_grad=True)
    o, _ = tm(xt)
    o.backward(torch.tensor(dy))
    np.testing.assert_allclose(out, o.detach().numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-3, atol=1e-4)
    for (name, p), (tname, tp) in zip(m.named_parameters(), tm.named_parameters()):
        assert name == tname
        np.testing.assert_allclose(p.grad, tp.grad.numpy(), rtol=1e-3, atol=2e-4 * np.abs(tp.grad.numpy()).max())


@requires_torch
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("bi,bias", [(False, True), (True, False)])
def test_state_dict_names_and_init(kind, bi, bias):
    I, H, L = 6, 9, 3
    tm = torch_layer(kind, I, H, num_layers=L, bias=bias, bidirectional=bi)
    nk.manual_seed(3)
    m = NK[kind](I, H, num_layers=L, bias=bias, bidirectional=bi)
    sd, tsd = m.state_dict(), tm.state_dict()
    assert list(sd) == list(tsd)
    for k in sd:
        assert sd[k].shape == tuple(tsd[k].shape) and sd[k].dtype == np.float32
        bound = 1 / np.sqrt(H)
        assert np.all(np.abs(sd[k]) <= bound) and np.abs(sd[k]).max() > 0.8 * bound
    m.load_state_dict(torch_sd(tm))
    for k in sd:
        np.testing.assert_array_equal(m.state_dict()[k], tsd[k].numpy())
    nk.manual_seed(3)
    m2 = NK[kind](I, H, num_layers=L, bias=bias, bidirectional=bi)
    nk.manual_seed(3)
    m3 = NK[kind](I, H, num_layers=L, bias=bias, bidirectional=bi)
    for a, b in zip(m2.parameters(), m3.parameters()):
        np.testing.assert_array_equal(a.data, b.data)


@pytest.mark.parametrize("kind", KINDS)
def test_unbatched_matches_batch_of_one(rng, kind):
    m = NK[kind](4, 5, num_layers=2, bidirectional=True, dtype=np.float64)
    x = rng.standard_normal((7, 4))
    h0 = rng.standard_normal((4, 5))
    hx = (h0, h0 * 0.5) if kind == "lstm" else h0
    out, st = m(x, hx)
    dy = rng.standard_normal(out.shape)
    dx = m.backward(dy)
    g1 = [p.grad.copy() for p in m.parameters()]
    m.zero_grad()
    hx3 = (h0[:, None], 0.5 * h0[:, None]) if kind == "lstm" else h0[:, None]
    out3, st3 = m(x[:, None], hx3)
    dx3 = m.backward(dy[:, None])
    np.testing.assert_allclose(out, out3[:, 0], rtol=1e-14)
    np.testing.assert_allclose(dx, dx3[:, 0], rtol=1e-14)
    assert (st[0] if kind == "lstm" else st).shape == (4, 5)
    for a, p in zip(g1, m.parameters()):
        np.testing.assert_allclose(a, p.grad, rtol=1e-14)


@pytest.mark.parametrize("kind", KINDS)
def test_dropout_train_eval_and_gradients(kind):
    I, H, T, N = 3, 4, 5, 2
    m = NK[kind](I, H, num_layers=3, dropout=0.4, bidirectional=True, dtype=np.float64)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((T, N, I))
    A = rng.standard_normal((T, N, 2 * H))
    # eval: no dropout, equal to the same weights with dropout=0
    m.eval()
    ref_m = NK[kind](I, H, num_layers=3, dropout=0.0, bidirectional=True, dtype=np.float64)
    ref_m.load_state_dict(m.state_dict())
    np.testing.assert_array_equal(m(x)[0], ref_m(x)[0])
    # train: masks from nnkern's generator, reproducible by seed, and really dropping
    m.train()
    nk.manual_seed(5)
    y1 = m(x)[0]
    nk.manual_seed(5)
    y2 = m(x)[0]
    np.testing.assert_array_equal(y1, y2)
    assert not np.allclose(y1, ref_m(x)[0])

    def loss():
        nk.manual_seed(5)
        return np.sum(m(x)[0] * A)

    loss()
    m.zero_grad()
    dx = m.backward(A)
    np.testing.assert_allclose(dx, numerical_grad(loss, x), rtol=1e-6, atol=1e-8)
    w = m.weight_hh_l0.data
    gw = m.weight_hh_l0.grad.copy()
    np.testing.assert_allclose(gw, numerical_grad(loss, w), rtol=1e-6, atol=1e-8)


@requires_torch
@pytest.mark.parametrize("kind", KINDS)
def test_truncated_bptt_state_handoff(rng, kind):
    """Chunks fed their predecessor's final state reproduce one long forward; backward stops at the
    chunk boundary (the state is a plain array) and matches torch with a detached state."""
    I, H, T, N, K = 3, 5, 12, 2, 4
    m, tm = pair(kind, I, H, num_layers=2)
    x = rng.standard_normal((T, N, I))
    full, _ = m(x)
    state, tstate = None, None
    outs = []
    for k in range(0, T, K):
        out, state = m(x[k:k + K], state)
        outs.append(out)
        m.zero_grad()
        dy = rng.standard_normal(out.shape)
        dx = m.backward(dy)
        xt = torch.tensor(x[k:k + K], requires_grad=True)
        to, tstate_new = tm(xt, tstate)
        tm.zero_grad()
        to.backward(torch.tensor(dy))
        tstate = tuple(s.detach() for s in tstate_new) if kind == "lstm" else tstate_new.detach()
        np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-10, atol=1e-12)
        for name, p in m.named_parameters():
            np.testing.assert_allclose(p.grad, dict(tm.named_parameters())[name].grad.numpy(), rtol=1e-10,
                                       atol=1e-12)
    np.testing.assert_allclose(np.concatenate(outs), full, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("kind", KINDS)
def test_grad_accumulates_and_frozen_parameters(rng, kind):
    m = NK[kind](3, 4, dtype=np.float64)
    x = rng.standard_normal((5, 2, 3))
    dy = rng.standard_normal((5, 2, 4))
    m(x)
    m.backward(dy)
    once = {n: p.grad.copy() for n, p in m.named_parameters()}
    m(x)
    m.backward(dy)
    for n, p in m.named_parameters():
        np.testing.assert_allclose(p.grad, 2 * once[n], rtol=1e-14)
    with pytest.raises(RuntimeError, match="backward was already called"):
        m.backward(dy)
    m.zero_grad()
    m.weight_hh_l0.requires_grad = False
    m(x)
    m.backward(dy)
    assert m.weight_hh_l0.grad is None
    np.testing.assert_allclose(m.weight_ih_l0.grad, once["weight_ih_l0"], rtol=1e-14)
    # gradient clipping works on the layer's parameters like on any other module
    params = [p for p in m.parameters() if p.grad is not None]
    assert all(p.grad.shape == p.shape for p in params)
    clip = getattr(getattr(nk.nn, "utils", None), "clip_grad_norm_", None)
    if clip is not None:
        clip(params, 1e-3)
        total = np.sqrt(sum(float(np.sum(p.grad ** 2)) for p in params))
        assert total <= 1e-3 * (1 + 1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_to_float64_and_dtype_errors(rng, kind):
    m = NK[kind](3, 4)
    x = rng.standard_normal((5, 2, 3))
    with pytest.raises(TypeError, match=r"input has dtype float64, expected float32"):
        m(x)
    m.to(np.float64)
    out, _ = m(x)
    assert out.dtype == np.float64


# ---------------------------------------------------------------------------------------------
# Cell modules


@requires_torch
@pytest.mark.parametrize("kind,opt", [("lstm", None), ("gru", None), ("rnn", "tanh"), ("rnn", "relu")])
@pytest.mark.parametrize("bias", [True, False])
def test_cell_modules_loop_matches_torch(rng, kind, opt, bias):
    I, H, T, N = 4, 6, 5, 3
    if kind == "lstm":
        cell, tcell = nk.nn.LSTMCell(I, H, bias, dtype=np.float64), torch.nn.LSTMCell(I, H, bias).double()
    elif kind == "gru":
        cell, tcell = nk.nn.GRUCell(I, H, bias, dtype=np.float64), torch.nn.GRUCell(I, H, bias).double()
    else:
        cell = nk.nn.RNNCell(I, H, bias, nonlinearity=opt, dtype=np.float64)
        tcell = torch.nn.RNNCell(I, H, bias, nonlinearity=opt).double()
    assert list(cell.state_dict()) == list(tcell.state_dict())
    cell.load_state_dict(torch_sd(tcell))
    x = rng.standard_normal((T, N, I))
    dy = rng.standard_normal((T, N, H))
    h = c = None
    hs = []
    for t in range(T):
        if kind == "lstm":
            h, c = cell(x[t], None if h is None else (h, c))
        else:
            h = cell(x[t], h)
        hs.append(h)
    dx = np.zeros_like(x)
    dh, dc = np.zeros((N, H)), None
    for t in reversed(range(T)):
        if kind == "lstm":
            dx[t] = cell.backward(dh + dy[t], dc)
            dh, dc = cell.dh0, cell.dc0
        else:
            dx[t] = cell.backward(dh + dy[t])
            dh = cell.dh0
    xt = torch.tensor(x, requires_grad=True)
    st = None
    outs = []
    for t in range(T):
        st = tcell(xt[t], st)
        outs.append(st[0] if kind == "lstm" else st)
    torch.stack(outs).backward(torch.tensor(dy))
    np.testing.assert_allclose(np.stack(hs), torch.stack(outs).detach().numpy(), rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-10, atol=1e-12)
    for name, p in cell.named_parameters():
        np.testing.assert_allclose(p.grad, dict(tcell.named_parameters())[name].grad.numpy(), rtol=1e-10,
                                   atol=1e-12, err_msg=name)
    with pytest.raises(RuntimeError, match="no recorded forward step"):
        cell.backward(dh)


def test_cell_modules_eval_unbatched_and_cho(rng):
    cell = nk.nn.GRUCell(3, 4, variant="cho2014", dtype=np.float64)
    x = rng.standard_normal(3)
    h = cell(x)
    assert h.shape == (4,)
    dx = cell.backward(np.ones(4))
    assert dx.shape == (3,) and cell.dh0.shape == (4,)
    want = nk.gru_cell(x[None], None, cell.weight_ih.data, cell.weight_hh.data, cell.bias_ih.data,
                       cell.bias_hh.data, "cho2014")[0][0]
    np.testing.assert_array_equal(h, want)
    cell.eval()
    cell(x)
    assert not cell._tape
    cell.train()
    cell(x)
    cell.clear()
    assert not cell._tape
    lstm = nk.nn.LSTMCell(3, 4)
    with pytest.raises(TypeError, match=r"LSTMCell: hx must be a tuple \(h0, c0\) or None"):
        lstm(x.astype(np.float32), np.zeros(4, np.float32))
