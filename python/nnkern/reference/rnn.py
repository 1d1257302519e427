"""NumPy twins of the recurrent kernels: LSTM, GRU (torch and Cho-2014 forms) and vanilla RNN
cells, and whole-sequence forward/backward loops.

Same signatures, layouts and maths as ``nnkern.lstm_cell`` & co. Cell workspaces have the
kernels' layout, so tests can compare them too:

* LSTM ``ws`` (N, 5H): activated gates i, f, g, o, then tanh(c1).
* GRU ``ws`` (N, 4H): r, z, n, then W_hn h + b_hn (torch form) or r*h (Cho 2014).
* RNN ``ws`` (N, H): the activated output.

The sequence twins come in two flavours, the baselines the benchmarks compare against:
``hoisted=True`` (default) computes the input projection of all steps as one GEMM and dX, dW_ih,
dW_hh as one GEMM each after the loop; ``hoisted=False`` is the naive loop with per-step
``x_t @ W_ih.T`` and per-step weight-gradient GEMMs. Their workspace is a dict.
"""

import numpy as np

__all__ = [
    "lstm_cell", "lstm_cell_backward", "gru_cell", "gru_cell_backward", "rnn_cell",
    "rnn_cell_backward", "lstm_sequence", "lstm_sequence_backward", "gru_sequence", "gru_sequence_backward",
    "rnn_sequence", "rnn_sequence_backward",
]


def _sigmoid(x):
    """1 / (1 + exp(-x)), exactly 0 at -inf as torch.sigmoid (exp overflows to inf: no warning). Clipping
    the exp argument instead gave sigmoid(-inf) = 1e-304, and then z * inf = inf where torch has
    0 * inf = NaN (fuzz finding, gru_cell)."""
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-x))


def _zeros_like_state(x, h):
    return np.zeros((x.shape[0], h), dtype=x.dtype)


def _bias_sum(b_ih, b_hh, n, dtype):
    b = np.zeros(n, dtype)
    if b_ih is not None:
        b = b + b_ih
    if b_hh is not None:
        b = b + b_hh
    return b


# ---------------------------------------------------------------------------------------------
# LSTM


def lstm_cell(x, h0, c0, w_ih, w_hh, b_ih=None, b_hh=None):
    """Returns h1, c1, ws (ws = [i, f, g, o, tanh(c1)] along the last axis)."""
    H = w_hh.shape[1]
    h0 = _zeros_like_state(x, H) if h0 is None else h0
    c0 = _zeros_like_state(x, H) if c0 is None else c0
    g = x @ w_ih.T + h0 @ w_hh.T + _bias_sum(b_ih, b_hh, 4 * H, x.dtype)
    i, f, o = _sigmoid(g[:, :H]), _sigmoid(g[:, H:2 * H]), _sigmoid(g[:, 3 * H:])
    gg = np.tanh(g[:, 2 * H:3 * H])
    c1 = f * c0 + i * gg
    tc = np.tanh(c1)
    h1 = o * tc
    return h1, c1, np.concatenate([i, f, gg, o, tc], axis=1)


def _lstm_gate_grads(dh, dc, i, f, gg, o, tc, c0):
    dc = dc + dh * o * (1 - tc * tc)
    dG = np.concatenate([dc * gg * i * (1 - i), dc * c0 * f * (1 - f), dc * i * (1 - gg * gg),
                         dh * tc * o * (1 - o)], axis=1)
    return dG, dc * f


def lstm_cell_backward(dh1, dc1, ws, x, h0, c0, w_ih, w_hh):
    """Returns dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh."""
    H = w_hh.shape[1]
    N = x.shape[0]
    z = np.zeros((N, H), x.dtype)
    dh1 = z if dh1 is None else dh1
    dc1 = z if dc1 is None else dc1
    h0 = z if h0 is None else h0
    c0 = z if c0 is None else c0
    i, f, gg, o, tc = (ws[:, k * H:(k + 1) * H] for k in range(5))
    dG, dc0 = _lstm_gate_grads(dh1, dc1, i, f, gg, o, tc, c0)
    db = dG.sum(axis=0)
    return dG @ w_ih, dG @ w_hh, dc0, dG.T @ x, dG.T @ h0, db, db.copy()


# ---------------------------------------------------------------------------------------------
# GRU


def _check_variant(variant):
    if variant not in ("torch", "cho2014"):
        raise ValueError(f"gru: variant must be 'torch' or 'cho2014', got {variant!r}")


def gru_cell(x, h0, w_ih, w_hh, b_ih=None, b_hh=None, variant="torch"):
    """Returns h1, ws (ws = [r, z, n, W_hn h + b_hn] (torch) or [r, z, n, r*h] (cho2014))."""
    _check_variant(variant)
    H = w_hh.shape[1]
    h0 = _zeros_like_state(x, H) if h0 is None else h0
    bi = np.zeros(3 * H, x.dtype) if b_ih is None else b_ih
    bh = np.zeros(3 * H, x.dtype) if b_hh is None else b_hh
    gi = x @ w_ih.T + bi
    if variant == "torch":
        gh = h0 @ w_hh.T + bh
        r = _sigmoid(gi[:, :H] + gh[:, :H])
        z = _sigmoid(gi[:, H:2 * H] + gh[:, H:2 * H])
        aux = gh[:, 2 * H:]
        n = np.tanh(gi[:, 2 * H:] + r * aux)
    else:
        grz = h0 @ w_hh[:2 * H].T + bh[:2 * H]
        r = _sigmoid(gi[:, :H] + grz[:, :H])
        z = _sigmoid(gi[:, H:2 * H] + grz[:, H:])
        aux = r * h0
        n = np.tanh(gi[:, 2 * H:] + aux @ w_hh[2 * H:].T + bh[2 * H:])
    h1 = n + z * (h0 - n)
    return h1, np.concatenate([r, z, n, aux], axis=1)


def _gru_gate_grads(dh, r, z, n, aux, h0, w_hh, variant):
    """(dgi, dgh, dh0): gradients of x W_ih^T + b_ih and of the recurrent pre-activations."""
    H = r.shape[1]
    dan = dh * (1 - z) * (1 - n * n)
    daz = dh * (h0 - n) * z * (1 - z)
    dh0 = dh * z
    if variant == "torch":
        dar = dan * aux * r * (1 - r)
        dgi = np.concatenate([dar, daz, dan], axis=1)
        dgh = np.concatenate([dar, daz, dan * r], axis=1)
        dh0 = dh0 + dgh @ w_hh
    else:
        drh = dan @ w_hh[2 * H:]
        dar = drh * h0 * r * (1 - r)
        dgi = np.concatenate([dar, daz, dan], axis=1)
        dgh = dgi
        dh0 = dh0 + drh * r + dgi[:, :2 * H] @ w_hh[:2 * H]
    return dgi, dgh, dh0


def gru_cell_backward(dh1, ws, x, h0, w_ih, w_hh, variant="torch"):
    """Returns dx, dh0, dw_ih, dw_hh, db_ih, db_hh."""
    _check_variant(variant)
    H = w_hh.shape[1]
    z0 = np.zeros((x.shape[0], H), x.dtype)
    dh1 = z0 if dh1 is None else dh1
    h0 = z0 if h0 is None else h0
    r, z, n, aux = (ws[:, k * H:(k + 1) * H] for k in range(4))
    dgi, dgh, dh0 = _gru_gate_grads(dh1, r, z, n, aux, h0, w_hh, variant)
    if variant == "torch":
        dw_hh = dgh.T @ h0
    else:
        dw_hh = np.concatenate([dgh[:, :2 * H].T @ h0, dgh[:, 2 * H:].T @ aux], axis=0)
    return dgi @ w_ih, dh0, dgi.T @ x, dw_hh, dgi.sum(axis=0), dgh.sum(axis=0)


# ---------------------------------------------------------------------------------------------
# Vanilla RNN


def _check_nonlinearity(nonlinearity):
    if nonlinearity not in ("tanh", "relu"):
        raise ValueError(f"rnn: nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")


def rnn_cell(x, h0, w_ih, w_hh, b_ih=None, b_hh=None, nonlinearity="tanh"):
    """Returns h1, ws (ws = the activated output)."""
    _check_nonlinearity(nonlinearity)
    H = w_hh.shape[1]
    h0 = _zeros_like_state(x, H) if h0 is None else h0
    a = x @ w_ih.T + h0 @ w_hh.T + _bias_sum(b_ih, b_hh, H, x.dtype)
    h1 = np.tanh(a) if nonlinearity == "tanh" else np.maximum(a, 0)
    return h1, h1.copy()


def _rnn_act_grad(dh, a, nonlinearity):
    return dh * (1 - a * a) if nonlinearity == "tanh" else np.where(a > 0, dh, 0).astype(a.dtype)


def rnn_cell_backward(dh1, ws, x, h0, w_ih, w_hh, nonlinearity="tanh"):
    """Returns dx, dh0, dw_ih, dw_hh, db_ih, db_hh."""
    _check_nonlinearity(nonlinearity)
    H = w_hh.shape[1]
    z0 = np.zeros((x.shape[0], H), x.dtype)
    dh1 = z0 if dh1 is None else dh1
    h0 = z0 if h0 is None else h0
    da = _rnn_act_grad(dh1, ws, nonlinearity)
    db = da.sum(axis=0)
    return da @ w_ih, da @ w_hh, da.T @ x, da.T @ h0, db, db.copy()


# ---------------------------------------------------------------------------------------------
# Sequences. Internally time-major; batch_first inputs/outputs are transposed at the edges.


def _seq_setup(x, h0, H, lengths, batch_first):
    xt = np.swapaxes(x, 0, 1) if batch_first else x
    T, N, _ = xt.shape
    if lengths is not None:
        lengths = np.asarray(lengths, dtype=np.int64)
        if lengths.shape != (N,) or (lengths < 0).any() or (lengths > T).any():
            raise ValueError(f"lengths must be shape ({N},) with values in [0, {T}]")
    h = np.zeros((N, H), x.dtype) if h0 is None else np.array(h0, dtype=x.dtype)
    return xt, T, N, h, lengths


def _mask(lengths, t):
    return None if lengths is None else (t < lengths)[:, None]


def _steps(T, reverse):
    return range(T - 1, -1, -1) if reverse else range(T)


def _out(y, batch_first):
    return np.ascontiguousarray(np.swapaxes(y, 0, 1)) if batch_first else y


def lstm_sequence(x, h0, c0, w_ih, w_hh, b_ih=None, b_hh=None, *, lengths=None, reverse=False,
                  batch_first=False, hoisted=True):
    """One LSTM layer in one direction over a whole sequence: returns y, h_n, c_n, ws."""
    H = w_hh.shape[1]
    xt, T, N, h, lengths = _seq_setup(x, h0, H, lengths, batch_first)
    c = np.zeros((N, H), x.dtype) if c0 is None else np.array(c0, dtype=x.dtype)
    b = _bias_sum(b_ih, b_hh, 4 * H, x.dtype)
    gx = (xt.reshape(T * N, xt.shape[2]) @ w_ih.T + b).reshape(T, N, 4 * H) if hoisted else None
    acts = np.zeros((T, N, 5 * H), x.dtype)
    hprev = np.zeros((T, N, H), x.dtype)
    cprev = np.zeros((T, N, H), x.dtype)
    y = np.zeros((T, N, H), x.dtype)
    for t in _steps(T, reverse):
        pre = gx[t] if hoisted else xt[t] @ w_ih.T + b
        g = pre + h @ w_hh.T
        i, f, o = _sigmoid(g[:, :H]), _sigmoid(g[:, H:2 * H]), _sigmoid(g[:, 3 * H:])
        gg = np.tanh(g[:, 2 * H:3 * H])
        c_new = f * c + i * gg
        tc = np.tanh(c_new)
        h_new = o * tc
        hprev[t], cprev[t] = h, c
        acts[t] = np.concatenate([i, f, gg, o, tc], axis=1)
        m = _mask(lengths, t)
        if m is None:
            h, c, y[t] = h_new, c_new, h_new
        else:
            h, c, y[t] = np.where(m, h_new, h), np.where(m, c_new, c), np.where(m, h_new, 0)
    ws = dict(kind="lstm", w_ih=w_ih, w_hh=w_hh, acts=acts, hprev=hprev, cprev=cprev, lengths=lengths,
              reverse=reverse, batch_first=batch_first, hoisted=hoisted)
    return _out(y, batch_first), h, c, ws


def lstm_sequence_backward(dy, dh_n, dc_n, ws, x):
    """Returns dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh for lstm_sequence's call."""
    w_ih, w_hh, acts, lengths = ws["w_ih"], ws["w_hh"], ws["acts"], ws["lengths"]
    T, N, H5 = acts.shape
    H = H5 // 5
    xt = np.swapaxes(x, 0, 1) if ws["batch_first"] else x
    dyt = None if dy is None else (np.swapaxes(dy, 0, 1) if ws["batch_first"] else dy)
    dh = np.zeros((N, H), x.dtype) if dh_n is None else np.array(dh_n, dtype=x.dtype)
    dc = np.zeros((N, H), x.dtype) if dc_n is None else np.array(dc_n, dtype=x.dtype)
    dG = np.zeros((T, N, 4 * H), x.dtype)
    hoisted = ws["hoisted"]
    dx = np.zeros(xt.shape, x.dtype)
    dw_ih = np.zeros_like(w_ih)
    dw_hh = np.zeros_like(w_hh)
    for t in reversed(list(_steps(T, ws["reverse"]))):
        i, f, gg, o, tc = (acts[t][:, k * H:(k + 1) * H] for k in range(5))
        dht = dh if dyt is None else dh + dyt[t]
        g, dc_prev = _lstm_gate_grads(dht, dc, i, f, gg, o, tc, ws["cprev"][t])
        m = _mask(lengths, t)
        if m is not None:
            g = np.where(m, g, 0)
        dG[t] = g
        dh_prev = g @ w_hh
        if m is None:
            dh, dc = dh_prev, dc_prev
        else:
            dh, dc = np.where(m, dh_prev, dh), np.where(m, dc_prev, dc)
        if not hoisted:
            dw_ih += g.T @ xt[t]
            dw_hh += g.T @ ws["hprev"][t]
            dx[t] = g @ w_ih
    if hoisted:
        G2 = dG.reshape(T * N, 4 * H)
        dw_ih = G2.T @ xt.reshape(T * N, xt.shape[2])
        dw_hh = G2.T @ ws["hprev"].reshape(T * N, H)
        dx = (G2 @ w_ih).reshape(xt.shape)
    db = dG.sum(axis=(0, 1))
    return _out(dx, ws["batch_first"]), dh, dc, dw_ih, dw_hh, db, db.copy()


def gru_sequence(x, h0, w_ih, w_hh, b_ih=None, b_hh=None, *, variant="torch", lengths=None, reverse=False,
                 batch_first=False, hoisted=True):
    """One GRU layer in one direction over a whole sequence: returns y, h_n, ws."""
    _check_variant(variant)
    H = w_hh.shape[1]
    xt, T, N, h, lengths = _seq_setup(x, h0, H, lengths, batch_first)
    bi = np.zeros(3 * H, x.dtype) if b_ih is None else b_ih
    bh = np.zeros(3 * H, x.dtype) if b_hh is None else b_hh
    gx = (xt.reshape(T * N, xt.shape[2]) @ w_ih.T + bi).reshape(T, N, 3 * H) if hoisted else None
    acts = np.zeros((T, N, 4 * H), x.dtype)
    hprev = np.zeros((T, N, H), x.dtype)
    y = np.zeros((T, N, H), x.dtype)
    for t in _steps(T, reverse):
        gi = gx[t] if hoisted else xt[t] @ w_ih.T + bi
        if variant == "torch":
            gh = h @ w_hh.T + bh
            r = _sigmoid(gi[:, :H] + gh[:, :H])
            z = _sigmoid(gi[:, H:2 * H] + gh[:, H:2 * H])
            aux = gh[:, 2 * H:]
            n = np.tanh(gi[:, 2 * H:] + r * aux)
        else:
            grz = h @ w_hh[:2 * H].T + bh[:2 * H]
            r = _sigmoid(gi[:, :H] + grz[:, :H])
            z = _sigmoid(gi[:, H:2 * H] + grz[:, H:])
            aux = r * h
            n = np.tanh(gi[:, 2 * H:] + aux @ w_hh[2 * H:].T + bh[2 * H:])
        h_new = n + z * (h - n)
        hprev[t] = h
        acts[t] = np.concatenate([r, z, n, aux], axis=1)
        m = _mask(lengths, t)
        if m is None:
            h, y[t] = h_new, h_new
        else:
            h, y[t] = np.where(m, h_new, h), np.where(m, h_new, 0)
    ws = dict(kind="gru", variant=variant, w_ih=w_ih, w_hh=w_hh, acts=acts, hprev=hprev, lengths=lengths,
              reverse=reverse, batch_first=batch_first, hoisted=hoisted)
    return _out(y, batch_first), h, ws


def gru_sequence_backward(dy, dh_n, ws, x):
    """Returns dx, dh0, dw_ih, dw_hh, db_ih, db_hh for gru_sequence's call."""
    w_ih, w_hh, acts, lengths, variant = ws["w_ih"], ws["w_hh"], ws["acts"], ws["lengths"], ws["variant"]
    T, N, H4 = acts.shape
    H = H4 // 4
    xt = np.swapaxes(x, 0, 1) if ws["batch_first"] else x
    dyt = None if dy is None else (np.swapaxes(dy, 0, 1) if ws["batch_first"] else dy)
    dh = np.zeros((N, H), x.dtype) if dh_n is None else np.array(dh_n, dtype=x.dtype)
    dGi = np.zeros((T, N, 3 * H), x.dtype)
    dGh = np.zeros((T, N, 3 * H), x.dtype)
    hoisted = ws["hoisted"]
    dx = np.zeros(xt.shape, x.dtype)
    dw_ih = np.zeros_like(w_ih)
    dw_hh = np.zeros_like(w_hh)
    for t in reversed(list(_steps(T, ws["reverse"]))):
        r, z, n, aux = (acts[t][:, k * H:(k + 1) * H] for k in range(4))
        dht = dh if dyt is None else dh + dyt[t]
        gi, gh, dh_prev = _gru_gate_grads(dht, r, z, n, aux, ws["hprev"][t], w_hh, variant)
        m = _mask(lengths, t)
        if m is not None:
            gi, gh = np.where(m, gi, 0), np.where(m, gh, 0)
            dh_prev = np.where(m, dh_prev, dh)
        dGi[t], dGh[t] = gi, gh
        dh = dh_prev
        if not hoisted:
            dw_ih += gi.T @ xt[t]
            if variant == "torch":
                dw_hh += gh.T @ ws["hprev"][t]
            else:
                dw_hh[:2 * H] += gh[:, :2 * H].T @ ws["hprev"][t]
                dw_hh[2 * H:] += gh[:, 2 * H:].T @ aux
            dx[t] = gi @ w_ih
    if hoisted:
        Gi = dGi.reshape(T * N, 3 * H)
        Gh = dGh.reshape(T * N, 3 * H)
        hp = ws["hprev"].reshape(T * N, H)
        dw_ih = Gi.T @ xt.reshape(T * N, xt.shape[2])
        if variant == "torch":
            dw_hh = Gh.T @ hp
        else:
            dw_hh = np.concatenate([Gh[:, :2 * H].T @ hp,
                                    Gh[:, 2 * H:].T @ acts[:, :, 3 * H:].reshape(T * N, H)], axis=0)
        dx = (Gi @ w_ih).reshape(xt.shape)
    return _out(dx, ws["batch_first"]), dh, dw_ih, dw_hh, dGi.sum(axis=(0, 1)), dGh.sum(axis=(0, 1))


def rnn_sequence(x, h0, w_ih, w_hh, b_ih=None, b_hh=None, *, nonlinearity="tanh", lengths=None, reverse=False,
                 batch_first=False, hoisted=True):
    """One vanilla RNN layer in one direction over a whole sequence: returns y, h_n, ws."""
    _check_nonlinearity(nonlinearity)
    H = w_hh.shape[1]
    xt, T, N, h, lengths = _seq_setup(x, h0, H, lengths, batch_first)
    b = _bias_sum(b_ih, b_hh, H, x.dtype)
    gx = (xt.reshape(T * N, xt.shape[2]) @ w_ih.T + b).reshape(T, N, H) if hoisted else None
    acts = np.zeros((T, N, H), x.dtype)
    hprev = np.zeros((T, N, H), x.dtype)
    y = np.zeros((T, N, H), x.dtype)
    for t in _steps(T, reverse):
        a = (gx[t] if hoisted else xt[t] @ w_ih.T + b) + h @ w_hh.T
        h_new = np.tanh(a) if nonlinearity == "tanh" else np.maximum(a, 0)
        hprev[t], acts[t] = h, h_new
        m = _mask(lengths, t)
        if m is None:
            h, y[t] = h_new, h_new
        else:
            h, y[t] = np.where(m, h_new, h), np.where(m, h_new, 0)
    ws = dict(kind="rnn", nonlinearity=nonlinearity, w_ih=w_ih, w_hh=w_hh, acts=acts, hprev=hprev,
              lengths=lengths, reverse=reverse, batch_first=batch_first, hoisted=hoisted)
    return _out(y, batch_first), h, ws


def rnn_sequence_backward(dy, dh_n, ws, x):
    """Returns dx, dh0, dw_ih, dw_hh, db_ih, db_hh for rnn_sequence's call."""
    w_ih, w_hh, acts, lengths = ws["w_ih"], ws["w_hh"], ws["acts"], ws["lengths"]
    T, N, H = acts.shape
    xt = np.swapaxes(x, 0, 1) if ws["batch_first"] else x
    dyt = None if dy is None else (np.swapaxes(dy, 0, 1) if ws["batch_first"] else dy)
    dh = np.zeros((N, H), x.dtype) if dh_n is None else np.array(dh_n, dtype=x.dtype)
    dG = np.zeros((T, N, H), x.dtype)
    hoisted = ws["hoisted"]
    dx = np.zeros(xt.shape, x.dtype)
    dw_ih = np.zeros_like(w_ih)
    dw_hh = np.zeros_like(w_hh)
    for t in reversed(list(_steps(T, ws["reverse"]))):
        dht = dh if dyt is None else dh + dyt[t]
        g = _rnn_act_grad(dht, acts[t], ws["nonlinearity"])
        m = _mask(lengths, t)
        if m is not None:
            g = np.where(m, g, 0)
        dG[t] = g
        dh_prev = g @ w_hh
        dh = dh_prev if m is None else np.where(m, dh_prev, dh)
        if not hoisted:
            dw_ih += g.T @ xt[t]
            dw_hh += g.T @ ws["hprev"][t]
            dx[t] = g @ w_ih
    if hoisted:
        G2 = dG.reshape(T * N, H)
        dw_ih = G2.T @ xt.reshape(T * N, xt.shape[2])
        dw_hh = G2.T @ ws["hprev"].reshape(T * N, H)
        dx = (G2 @ w_ih).reshape(xt.shape)
    db = dG.sum(axis=(0, 1))
    return _out(dx, ws["batch_first"]), dh, dw_ih, dw_hh, db, db.copy()
