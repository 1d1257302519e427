"""Recurrent kernels: fused LSTM / GRU / vanilla-RNN cells and whole-sequence passes.

Cells (the C++ functions themselves, so a Python loop pays no wrapper overhead)::

    h1, c1, ws = nk.lstm_cell(x, h0, c0, w_ih, w_hh, b_ih=None, b_hh=None, *, out=None)
    dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh = nk.lstm_cell_backward(dh1, dc1, ws, x, h0, c0, w_ih, w_hh)
    h1, ws = nk.gru_cell(x, h0, w_ih, w_hh, b_ih=None, b_hh=None, variant="torch", *, out=None)
    dx, dh0, dw_ih, dw_hh, db_ih, db_hh = nk.gru_cell_backward(dh1, ws, x, h0, w_ih, w_hh, variant="torch")
    h1, ws = nk.rnn_cell(x, h0, w_ih, w_hh, b_ih=None, b_hh=None, nonlinearity="tanh", *, out=None)
    dx, dh0, dw_ih, dw_hh, db_ih, db_hh = nk.rnn_cell_backward(dh1, ws, x, h0, w_ih, w_hh, nonlinearity="tanh")

Shapes: x (N, F); h0, c0, h1, c1 (N, H); w_ih (G*H, F); w_hh (G*H, H); biases (G*H,) with
G = 4 (LSTM gates i, f, g, o), 3 (GRU r, z, n) or 1 (RNN), exactly torch's packing. h0, c0,
biases, dh1 and dc1 may be None (zeros / no bias). ``ws`` holds the activated gates for the backward
pass: LSTM (N, 5H) = i, f, g, o, tanh(c1); GRU (N, 4H) = r, z, n, W_hn h + b_hn (torch) or r*h
(cho2014); RNN (N, H) = the activated output. Pass the same ``variant``/``nonlinearity`` to the
backward call as to the forward.

``out=(h1, c1, ws)`` (LSTM) or ``out=(h1, ws)`` reuses buffers (C-contiguous, writeable, exact
dtype and shape; None entries are allocated), so a loop need not allocate. The backward calls take
``dw_ih=, dw_hh=, db_ih=, db_hh=`` buffers and ``accumulate=True`` to add the weight gradients into
existing arrays (e.g. ``Parameter.grad``) instead of returning fresh ones.

Whole sequences (one layer, one direction; what ``nnkern.nn.LSTM/GRU/RNN`` run per layer)::

    y, h_n, c_n, ws = nk.lstm_sequence(x, h0, c0, w_ih, w_hh, b_ih=None, b_hh=None, *,
                                       lengths=None, reverse=False, batch_first=False)
    dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh = nk.lstm_sequence_backward(dy, dh_n, dc_n, ws, x)
    y, h_n, ws = nk.gru_sequence(x, h0, w_ih, w_hh, b_ih=None, b_hh=None, *, variant="torch", ...)
    dx, dh0, dw_ih, dw_hh, db_ih, db_hh = nk.gru_sequence_backward(dy, dh_n, ws, x)
    y, h_n, ws = nk.rnn_sequence(x, h0, w_ih, w_hh, b_ih=None, b_hh=None, *, nonlinearity="tanh", ...)
    dx, dh0, dw_ih, dw_hh, db_ih, db_hh = nk.rnn_sequence_backward(dy, dh_n, ws, x)

x is (T, N, F) or, with batch_first, (N, T, F); y has the same leading dims and H columns. The
time loop runs in C++: the input projection of all steps is one GEMM, every step one recurrent
GEMM plus a fused gate pass, and the weight gradients are single GEMMs over all steps. ``ws`` is
an opaque 1-D workspace that holds everything backward needs (one backward per forward: backward
overwrites it). ``lengths`` (int, shape (N,), values in [0, T], any order): steps past a sequence's
length leave its state unchanged and its output zero; the returned state is the one at its last
valid step (for reverse=True, after step 0). Padding positions of x must hold finite values.
"""

import numpy as np

from .. import _core
from .._core import (
    gru_cell,
    gru_cell_backward,
    lstm_cell,
    lstm_cell_backward,
    rnn_cell,
    rnn_cell_backward,
)

__all__ = [
    "lstm_cell", "lstm_cell_backward", "gru_cell", "gru_cell_backward", "rnn_cell", "rnn_cell_backward",
    "lstm_sequence", "lstm_sequence_backward", "gru_sequence", "gru_sequence_backward", "rnn_sequence",
    "rnn_sequence_backward",
]

_VARIANT = {"torch": 0, "cho2014": 1}
_NONLIN = {"tanh": 0, "relu": 1}


def _seq_dims(fn, x, w_hh, batch_first):
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{fn}: x must be a numpy.ndarray, got {type(x).__name__}")
    if x.ndim != 3:
        want = "(batch, seq_len, input_size)" if batch_first else "(seq_len, batch, input_size)"
        raise ValueError(f"{fn}: x has {x.ndim} dims, expected 3 {want}")
    if not isinstance(w_hh, np.ndarray) or w_hh.ndim != 2:
        raise ValueError(f"{fn}: w_hh must be a 2-D numpy.ndarray (gates*hidden_size, hidden_size)")
    T, N = (x.shape[1], x.shape[0]) if batch_first else (x.shape[0], x.shape[1])
    return T, N, x.shape[2], w_hh.shape[1]


def _workspace(kind, T, N, F, H, dtype):
    return np.empty(_core._rnn_seq_ws_size(kind, T, N, F, H, dtype), dtype=dtype)


def _sequence(kind, fn, x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths, reverse, batch_first, variant):
    T, N, F, H = _seq_dims(fn, x, w_hh, batch_first)
    # native float32/float64 outputs for an x of that type in any byte order (x itself is converted)
    dtype = {4: np.float32, 8: np.float64}.get(x.dtype.itemsize, np.float32) if x.dtype.kind == "f" else np.float32
    y = np.empty(x.shape[:2] + (H,), dtype=dtype)
    h_n = np.empty((N, H), dtype=dtype)
    c_n = np.empty((N, H), dtype=dtype) if kind == "lstm" else None
    ws = _workspace(kind, T, N, F, H, dtype)
    _core._rnn_seq_forward(kind, x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths, bool(reverse), bool(batch_first),
                           variant, y, 0, h_n, c_n, ws)
    return y, h_n, c_n, ws


def _header(fn, ws):
    if not isinstance(ws, np.ndarray) or ws.ndim != 1 or ws.dtype not in (np.float32, np.float64) \
            or ws.nbytes < 64 or not ws.flags.c_contiguous:
        raise ValueError(f"{fn}: ws is not a workspace returned by the forward call")
    hdr = ws[: 64 // ws.itemsize].view(np.int64)
    return [int(v) for v in hdr[1:5]]  # T, N, F, H


def _sequence_backward(kind, fn, dy, dh_n, dc_n, ws, x):
    T, N, F, H = _header(fn, ws)
    G = {"lstm": 4, "gru": 3, "rnn": 1}[kind]
    dtype = ws.dtype
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{fn}: x must be a numpy.ndarray, got {type(x).__name__}")
    dx = np.empty(x.shape, dtype=dtype) if x.ndim == 3 else None
    dh0 = np.empty((N, H), dtype=dtype)
    dc0 = np.empty((N, H), dtype=dtype) if kind == "lstm" else None
    grads = (np.empty((G * H, F), dtype), np.empty((G * H, H), dtype), np.empty(G * H, dtype),
             np.empty(G * H, dtype))
    _core._rnn_seq_backward(kind, ws, x, dy, 0, dh_n, dc_n, dx, False, dh0, dc0, grads,
                            (False, False, False, False), dy_exact=True)
    return dx, dh0, dc0, grads


def lstm_sequence(x, h0, c0, w_ih, w_hh, b_ih=None, b_hh=None, *, lengths=None, reverse=False, batch_first=False):
    """One LSTM layer, one direction, over a whole sequence. Returns (y, h_n, c_n, ws)."""
    return _sequence("lstm", "lstm_sequence", x, h0, c0, w_ih, w_hh, b_ih, b_hh, lengths, reverse, batch_first, 0)


def lstm_sequence_backward(dy, dh_n, dc_n, ws, x):
    """Gradients for lstm_sequence: (dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh). dy, dh_n, dc_n may be None."""
    dx, dh0, dc0, g = _sequence_backward("lstm", "lstm_sequence_backward", dy, dh_n, dc_n, ws, x)
    return (dx, dh0, dc0) + g


def gru_sequence(x, h0, w_ih, w_hh, b_ih=None, b_hh=None, *, variant="torch", lengths=None, reverse=False,
                 batch_first=False):
    """One GRU layer, one direction, over a whole sequence. Returns (y, h_n, ws)."""
    if variant not in _VARIANT:
        raise ValueError(f"gru_sequence: variant must be 'torch' or 'cho2014', got {variant!r}")
    y, h_n, _, ws = _sequence("gru", "gru_sequence", x, h0, None, w_ih, w_hh, b_ih, b_hh, lengths, reverse,
                              batch_first, _VARIANT[variant])
    return y, h_n, ws


def gru_sequence_backward(dy, dh_n, ws, x):
    """Gradients for gru_sequence: (dx, dh0, dw_ih, dw_hh, db_ih, db_hh)."""
    dx, dh0, _, g = _sequence_backward("gru", "gru_sequence_backward", dy, dh_n, None, ws, x)
    return (dx, dh0) + g


def rnn_sequence(x, h0, w_ih, w_hh, b_ih=None, b_hh=None, *, nonlinearity="tanh", lengths=None, reverse=False,
                 batch_first=False):
    """One vanilla-RNN layer, one direction, over a whole sequence. Returns (y, h_n, ws)."""
    if nonlinearity not in _NONLIN:
        raise ValueError(f"rnn_sequence: nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
    y, h_n, _, ws = _sequence("rnn", "rnn_sequence", x, h0, None, w_ih, w_hh, b_ih, b_hh, lengths, reverse,
                              batch_first, _NONLIN[nonlinearity])
    return y, h_n, ws


def rnn_sequence_backward(dy, dh_n, ws, x):
    """Gradients for rnn_sequence: (dx, dh0, dw_ih, dw_hh, db_ih, db_hh)."""
    dx, dh0, _, g = _sequence_backward("rnn", "rnn_sequence_backward", dy, dh_n, None, ws, x)
    return (dx, dh0) + g
