"""Recurrent layers: RNN, LSTM, GRU (whole sequences) and RNNCell, LSTMCell, GRUCell.

Torch's arguments, maths, parameter names and default initialisation (every parameter
U(-1/sqrt(hidden_size), 1/sqrt(hidden_size))), so a torch ``state_dict`` converted with
``{k: v.numpy()}`` loads unchanged. Each layer and direction runs in one C++ call (input
projection as one GEMM, one recurrent GEMM plus a fused gate pass per step, weight gradients as
single GEMMs over all steps).
"""

import math
import warnings

import numpy as np

from .. import _core
from .. import init
from ..random import default_generator
from .module import Module
from .parameter import Parameter

__all__ = ["RNNBase", "RNN", "LSTM", "GRU", "RNNCellBase", "RNNCell", "LSTMCell", "GRUCell"]

_GATES = {"lstm": 4, "gru": 3, "rnn": 1}


def _check_sizes(name, input_size, hidden_size):
    if int(input_size) != input_size or input_size < 0:
        raise ValueError(f"{name}: input_size must be an integer >= 0, got {input_size!r}")
    if int(hidden_size) != hidden_size or hidden_size < 1:
        raise ValueError(f"{name}: hidden_size must be an integer >= 1, got {hidden_size!r}")


def _grad_targets(params):
    """(buffers, accumulate flags) for the kernels: Parameter.grad (added into) or a fresh buffer
    (overwritten); None for absent or frozen parameters."""
    bufs, acc = [], []
    for p in params:
        if p is None or not p.requires_grad:
            bufs.append(None)
            acc.append(False)
        else:
            g, a = p.grad_target()
            bufs.append(g)
            acc.append(a)
    return tuple(bufs), tuple(acc)


class RNNBase(Module):
    """Shared implementation of RNN, LSTM and GRU (multi-layer, optionally bidirectional).

    Call like torch: ``out, (h_n, c_n) = lstm(x, (h0, c0))``, ``out, h_n = gru(x, h0)``, ``rnn(x)``
    (zero initial state). x is (T, N, input_size), (N, T, input_size) with batch_first=True, or
    (T, input_size) unbatched; states are (num_layers * num_directions, N, hidden_size) (without N
    when unbatched); out has num_directions * hidden_size features, the forward direction first.

    ``lengths=`` (int array (N,), values in [0, T], any order) runs a padded batch without
    packing: past its length a sequence's state stays unchanged and its outputs are zero; h_n
    (and c_n) are the states at each sequence's last valid step (the reverse direction starts at
    it). Padding positions of x must hold finite values (e.g. zeros).

    ``dx = layer.backward(dy, dh_n=None, dc_n=None)`` takes the gradient of ``out`` (None = zero,
    e.g. when only h_n is used) and of the final states, returns dx shaped like x, adds every
    parameter's gradient into its ``.grad`` and stores the gradients of the initial states in
    ``layer.dh0`` (and ``layer.dc0`` for LSTM), shaped like h0. One backward per forward.

    Truncated BPTT: the states returned are plain arrays, so feeding them into the next call
    carries the state without carrying gradients across the boundary (torch's ``detach``)::

        state = None
        for k in range(0, T_total, K):
            out, state = lstm(x[k:k + K], state)
            loss = crit(head(out), target[k:k + K])
            model.zero_grad()
            lstm.backward(head.backward(crit.backward()))
            opt.step()

    Dropout (p = ``dropout``) applies to the outputs of every layer but the last in training mode
    (inverted dropout; masks from ``nnkern.random.default_generator()``); eval() disables it.
    """

    _kind = "rnn"

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, *, dtype=np.float32, rng=None):
        super().__init__()
        name = type(self).__name__
        _check_sizes(name, input_size, hidden_size)
        if int(num_layers) != num_layers or num_layers < 1:
            raise ValueError(f"{name}: num_layers must be an integer >= 1, got {num_layers!r}")
        if not isinstance(dropout, (int, float)) or isinstance(dropout, bool) or not 0 <= dropout <= 1:
            raise ValueError(f"{name}: dropout must be a number in [0, 1], got {dropout!r}")
        if dropout > 0 and num_layers == 1:
            warnings.warn(f"{name}: dropout={dropout} has no effect with num_layers=1 (it applies between layers)")
        if np.dtype(dtype) not in (np.float32, np.float64):
            raise TypeError(f"{name}: dtype must be float32 or float64, got {np.dtype(dtype)}")
        self.input_size = int(input_size)
        self.hidden_size = int(hidden_size)
        self.num_layers = int(num_layers)
        self.bias = bool(bias)
        self.batch_first = bool(batch_first)
        self.dropout = float(dropout)
        self.bidirectional = bool(bidirectional)
        G = _GATES[self._kind]
        D = 2 if bidirectional else 1
        H = self.hidden_size
        for layer in range(self.num_layers):
            in_l = self.input_size if layer == 0 else H * D
            for d in range(D):
                sfx = f"_l{layer}" + ("_reverse" if d == 1 else "")
                setattr(self, "weight_ih" + sfx, Parameter(np.empty((G * H, in_l), dtype=dtype)))
                setattr(self, "weight_hh" + sfx, Parameter(np.empty((G * H, H), dtype=dtype)))
                if self.bias:
                    setattr(self, "bias_ih" + sfx, Parameter(np.empty((G * H,), dtype=dtype)))
                    setattr(self, "bias_hh" + sfx, Parameter(np.empty((G * H,), dtype=dtype)))
        self.reset_parameters(rng)
        self.dh0 = None
        self.dc0 = None
        self._ctx = None
        self._ws = {}

    # -- parameters ----------------------------------------------------------------------------

    @property
    def num_directions(self):
        return 2 if self.bidirectional else 1

    def reset_parameters(self, rng=None):
        """torch's default: every parameter U(-1/sqrt(hidden_size), 1/sqrt(hidden_size))."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            init.uniform_(p, -bound, bound, rng=rng)

    def _layer_params(self, layer, d):
        sfx = f"_l{layer}" + ("_reverse" if d == 1 else "")
        return (getattr(self, "weight_ih" + sfx), getattr(self, "weight_hh" + sfx),
                getattr(self, "bias_ih" + sfx, None), getattr(self, "bias_hh" + sfx, None))

    def _variant(self):
        return 0

    def extra_repr(self):
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if not self.bias:
            s += ", bias=False"
        if self.batch_first:
            s += ", batch_first=True"
        if self.dropout:
            s += f", dropout={self.dropout}"
        if self.bidirectional:
            s += ", bidirectional=True"
        return s

    # -- forward -------------------------------------------------------------------------------

    def _workspace(self, key, T, N, F, dtype):
        size = _core._rnn_seq_ws_size(self._kind, T, N, F, self.hidden_size, dtype)
        ws = self._ws.get(key)
        if ws is None or ws.size != size or ws.dtype != dtype:
            ws = np.empty(size, dtype=dtype)
            self._ws[key] = ws
        return ws

    def _split_hx(self, hx):
        """(h0, c0) from the user's hx (LSTM: tuple (h0, c0); others: h0)."""
        if hx is None:
            return None, None
        return hx, None

    def _pack_state(self, h_n, c_n):
        return h_n

    def _state(self, s, name, shape, dtype, unbatched):
        if s is None:
            return None
        fn = type(self).__name__
        if not isinstance(s, np.ndarray):
            raise TypeError(f"{fn}: {name} must be a numpy.ndarray or None, got {type(s).__name__}")
        if s.dtype != dtype:
            raise TypeError(f"{fn}: {name} has dtype {s.dtype}, expected {dtype} (the dtype of the parameters)")
        want = (shape[0], shape[2]) if unbatched else shape
        if s.shape != want:
            what = "(num_layers*num_directions, hidden_size)" if unbatched else \
                "(num_layers*num_directions, batch, hidden_size)"
            raise ValueError(f"{fn}: {name} has shape {s.shape}, expected {want} {what}")
        return s.reshape(shape)

    def forward(self, x, hx=None, lengths=None):
        fn = type(self).__name__
        if not isinstance(x, np.ndarray):
            raise TypeError(f"{fn}: input must be a numpy.ndarray, got {type(x).__name__}")
        w0 = self.weight_ih_l0.data
        if x.dtype != w0.dtype:
            raise TypeError(f"{fn}: input has dtype {x.dtype}, expected {w0.dtype} (the dtype of the parameters)")
        unbatched = x.ndim == 2
        if x.ndim not in (2, 3):
            raise ValueError(f"{fn}: input has {x.ndim} dims, expected 3 "
                             f"({'(batch, seq_len, input_size)' if self.batch_first else '(seq_len, batch, input_size)'})"
                             " or 2 (seq_len, input_size) unbatched")
        if x.shape[-1] != self.input_size:
            raise ValueError(f"{fn}: input has shape {x.shape}, expected input_size={self.input_size} in its last dim")
        batch_first = self.batch_first and not unbatched
        x3 = x[:, None, :] if unbatched else x
        x3 = np.ascontiguousarray(x3)
        T, N = (x3.shape[1], x3.shape[0]) if batch_first else (x3.shape[0], x3.shape[1])
        if unbatched and lengths is not None:
            raise ValueError(f"{fn}: lengths needs a batched input (one length per batch element)")
        if lengths is not None:
            lengths = np.asarray(lengths)
            if lengths.dtype.kind not in "iu":
                raise TypeError(f"{fn}: lengths has dtype {lengths.dtype}, expected an integer dtype (int64)")
            if lengths.shape != (N,):
                raise ValueError(f"{fn}: lengths has shape {lengths.shape}, expected ({N},) (one per batch element)")
            if lengths.size and (lengths.min() < 0 or lengths.max() > T):
                raise ValueError(f"{fn}: lengths must be in [0, seq_len={T}], got values in "
                                 f"[{lengths.min()}, {lengths.max()}]")
            lengths = np.ascontiguousarray(lengths, dtype=np.int64)
        L, D, H = self.num_layers, self.num_directions, self.hidden_size
        dtype = w0.dtype
        h0, c0 = self._split_hx(hx)
        sshape = (L * D, N, H)
        h0 = self._state(h0, "h0", sshape, dtype, unbatched)
        c0 = self._state(c0, "c0", sshape, dtype, unbatched)
        lstm = self._kind == "lstm"
        h_n = np.empty(sshape, dtype)
        c_n = np.empty(sshape, dtype) if lstm else None
        variant = self._variant()
        inputs, masks = [], []
        inp = x3
        dropout = self.dropout if (self.training and self.dropout > 0) else 0.0
        for layer in range(L):
            lead = inp.shape[:2]
            y = np.empty(lead + (D * H,), dtype)
            for d in range(D):
                k = layer * D + d
                w_ih, w_hh, b_ih, b_hh = self._layer_params(layer, d)
                ws = self._workspace((layer, d), T, N, inp.shape[2], dtype)
                _core._rnn_seq_forward(
                    self._kind, inp, None if h0 is None else h0[k], None if c0 is None else c0[k], w_ih.data,
                    w_hh.data, None if b_ih is None else b_ih.data, None if b_hh is None else b_hh.data, lengths,
                    d == 1, batch_first, variant, y, d * H, h_n[k], c_n[k] if lstm else None, ws)
            inputs.append(inp)
            if dropout > 0 and layer < L - 1:
                if dropout >= 1.0:
                    mask = np.zeros(y.shape, dtype)
                else:
                    keep = default_generator().random(y.shape) >= dropout
                    mask = keep.astype(dtype) * dtype.type(1.0 / (1.0 - dropout))
                masks.append(mask)
                inp = y * mask
            else:
                masks.append(None)
                inp = y
        self._ctx = dict(inputs=inputs, masks=masks, lengths=lengths, shape=x.shape, unbatched=unbatched,
                         N=N, dtype=dtype, used=False)
        out = inp
        if unbatched:
            out = out[:, 0, :]
            h_n = h_n[:, 0, :]
            c_n = c_n[:, 0, :] if lstm else None
        return out, self._pack_state(h_n, c_n)

    # -- backward ------------------------------------------------------------------------------

    def backward(self, dy=None, dh_n=None, dc_n=None):
        fn = type(self).__name__ + ".backward"
        ctx = self._ctx
        if ctx is None:
            raise RuntimeError(f"{fn} called before forward")
        if ctx["used"]:
            raise RuntimeError(f"{fn}: backward was already called for the last forward (one backward per "
                               "forward: the saved activations are consumed)")
        L, D, H, N, dtype = self.num_layers, self.num_directions, self.hidden_size, ctx["N"], ctx["dtype"]
        unbatched = ctx["unbatched"]
        out_lead = ctx["inputs"][-1].shape[:2] if L > 0 else None
        sshape = (L * D, N, H)
        if dy is not None:
            dy = np.asarray(dy)
            want = ctx["shape"][:-1] + (D * H,)
            if dy.shape != want:
                raise ValueError(f"{fn}: dy has shape {dy.shape}, expected {want} (the shape of the output)")
            if dy.dtype != dtype:
                raise TypeError(f"{fn}: dy has dtype {dy.dtype}, expected {dtype}")
            dy = np.ascontiguousarray(dy).reshape(out_lead + (D * H,))
        dh_n = self._state(dh_n, "dh_n", sshape, dtype, unbatched)
        lstm = self._kind == "lstm"
        dc_n = self._state(dc_n, "dc_n", sshape, dtype, unbatched) if lstm else None
        ctx["used"] = True
        dh0 = np.empty(sshape, dtype)
        dc0 = np.empty(sshape, dtype) if lstm else None
        dout = dy
        dx = None
        for layer in reversed(range(L)):
            inp = ctx["inputs"][layer]
            dx = np.empty(inp.shape, dtype)
            for d in range(D):
                k = layer * D + d
                params = self._layer_params(layer, d)
                grads, acc = _grad_targets(params)
                _core._rnn_seq_backward(
                    self._kind, self._ws[(layer, d)], inp, dout, d * H, None if dh_n is None else dh_n[k],
                    None if dc_n is None else dc_n[k], dx, d == 1, dh0[k], dc0[k] if lstm else None, grads, acc)
            if layer > 0:
                mask = ctx["masks"][layer - 1]
                if mask is not None:
                    dx *= mask
            dout = dx
        if unbatched:
            dx = dx[:, 0, :]
            dh0 = dh0[:, 0, :]
            dc0 = dc0[:, 0, :] if lstm else None
        self.dh0, self.dc0 = dh0, dc0
        return dx.reshape(ctx["shape"])


class RNN(RNNBase):
    """Elman RNN, h' = tanh(x W_ih^T + b_ih + h W_hh^T + b_hh) (or relu), as torch.nn.RNN."""

    _kind = "rnn"

    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh", bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, *, dtype=np.float32, rng=None):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"RNN: nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         dtype=dtype, rng=rng)
        self.nonlinearity = nonlinearity

    def _variant(self):
        return 1 if self.nonlinearity == "relu" else 0

    def extra_repr(self):
        s = super().extra_repr()
        return s + (", nonlinearity='relu'" if self.nonlinearity == "relu" else "")


class LSTM(RNNBase):
    """LSTM with torch's gate packing (i, f, g, o). ``out, (h_n, c_n) = lstm(x, (h0, c0))``.
    (torch's proj_size is not supported.)"""

    _kind = "lstm"

    def _split_hx(self, hx):
        if hx is None:
            return None, None
        if not isinstance(hx, (tuple, list)) or len(hx) != 2:
            raise TypeError(f"LSTM: hx must be a tuple (h0, c0) or None, got {type(hx).__name__}")
        return hx[0], hx[1]

    def _pack_state(self, h_n, c_n):
        return h_n, c_n


class GRU(RNNBase):
    """GRU, gates r, z, n. ``variant="torch"`` (default, torch/cuDNN: n = tanh(W_in x + b_in +
    r*(W_hn h + b_hn))) or ``"cho2014"`` (n = tanh(W_in x + b_in + W_hn (r*h) + b_hn)).
    ``out, h_n = gru(x, h0)``."""

    _kind = "gru"

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, *, variant="torch", dtype=np.float32, rng=None):
        if variant not in ("torch", "cho2014"):
            raise ValueError(f"GRU: variant must be 'torch' or 'cho2014', got {variant!r}")
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         dtype=dtype, rng=rng)
        self.variant = variant

    def _variant(self):
        return 1 if self.variant == "cho2014" else 0

    def extra_repr(self):
        s = super().extra_repr()
        return s + (", variant='cho2014'" if self.variant == "cho2014" else "")


# ---------------------------------------------------------------------------------------------
# Cells


class RNNCellBase(Module):
    """One time step. ``forward`` records what its backward needs on a tape (training mode only),
    so a Python loop of forwards is followed by the backwards in reverse order::

        h = c = None
        for t in range(T):
            h, c = cell(x[t], None if h is None else (h, c))
        dh, dc = dh_T, None
        for t in reversed(range(T)):
            dx[t] = cell.backward(dh + dy[t], dc)      # pops step t
            dh, dc = cell.dh0, cell.dc0

    ``backward(dh1, dc1=None)`` returns dx, adds the parameter gradients into ``.grad`` and
    stores the gradients of the step's initial states in ``cell.dh0`` (and ``cell.dc0``).
    In eval mode nothing is recorded; ``clear()`` drops the tape.
    """

    _kind = "rnn"

    def __init__(self, input_size, hidden_size, bias=True, *, dtype=np.float32, rng=None):
        super().__init__()
        name = type(self).__name__
        _check_sizes(name, input_size, hidden_size)
        if np.dtype(dtype) not in (np.float32, np.float64):
            raise TypeError(f"{name}: dtype must be float32 or float64, got {np.dtype(dtype)}")
        self.input_size = int(input_size)
        self.hidden_size = int(hidden_size)
        self.bias = bool(bias)
        G = _GATES[self._kind]
        H = self.hidden_size
        self.weight_ih = Parameter(np.empty((G * H, self.input_size), dtype=dtype))
        self.weight_hh = Parameter(np.empty((G * H, H), dtype=dtype))
        if self.bias:
            self.bias_ih = Parameter(np.empty((G * H,), dtype=dtype))
            self.bias_hh = Parameter(np.empty((G * H,), dtype=dtype))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters(rng)
        self.dh0 = None
        self.dc0 = None
        self._tape = []

    def reset_parameters(self, rng=None):
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            init.uniform_(p, -bound, bound, rng=rng)

    def clear(self):
        """Drops the recorded steps (e.g. after an inference loop run in training mode)."""
        self._tape.clear()

    def extra_repr(self):
        return f"{self.input_size}, {self.hidden_size}" + ("" if self.bias else ", bias=False")

    def _params(self):
        return (self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)

    def _prep(self, x, states):
        fn = type(self).__name__
        if not isinstance(x, np.ndarray):
            raise TypeError(f"{fn}: input must be a numpy.ndarray, got {type(x).__name__}")
        dtype = self.weight_ih.data.dtype
        if x.dtype != dtype:
            raise TypeError(f"{fn}: input has dtype {x.dtype}, expected {dtype} (the dtype of the parameters)")
        if x.ndim not in (1, 2):
            raise ValueError(f"{fn}: input has {x.ndim} dims, expected 2 (batch, input_size) or 1 (input_size,)")
        unbatched = x.ndim == 1
        x2 = x[None, :] if unbatched else x
        out = []
        for name, s in states:
            if s is not None:
                if not isinstance(s, np.ndarray):
                    raise TypeError(f"{fn}: {name} must be a numpy.ndarray or None, got {type(s).__name__}")
                if s.ndim != x.ndim:
                    raise ValueError(f"{fn}: {name} has {s.ndim} dims but the input has {x.ndim}")
                s = s[None, :] if unbatched else s
            out.append(s)
        return x2, out, unbatched

    def _grad_kwargs(self):
        bufs, acc = _grad_targets(self._params())
        flags = {a for b, a in zip(bufs, acc) if b is not None}
        if len(flags) > 1:
            # Some gradients exist and some are fresh: zero the fresh ones and add into all.
            for b, a in zip(bufs, acc):
                if b is not None and not a:
                    b.fill(0)
        return dict(dw_ih=bufs[0], dw_hh=bufs[1], db_ih=bufs[2], db_hh=bufs[3], accumulate=True in flags)


class LSTMCell(RNNCellBase):
    """``h1, c1 = cell(x, (h0, c0))`` (hx None = zeros), as torch.nn.LSTMCell."""

    _kind = "lstm"

    def forward(self, x, hx=None):
        if hx is not None and (not isinstance(hx, (tuple, list)) or len(hx) != 2):
            raise TypeError(f"LSTMCell: hx must be a tuple (h0, c0) or None, got {type(hx).__name__}")
        h0, c0 = (None, None) if hx is None else hx
        x2, (h0, c0), unbatched = self._prep(x, [("h0", h0), ("c0", c0)])
        w_ih, w_hh, b_ih, b_hh = self._params()
        h1, c1, ws = _core.lstm_cell(x2, h0, c0, w_ih.data, w_hh.data, None if b_ih is None else b_ih.data,
                                     None if b_hh is None else b_hh.data)
        if self.training:
            self._tape.append((x2, h0, c0, ws, unbatched))
        return (h1[0], c1[0]) if unbatched else (h1, c1)

    def backward(self, dh1, dc1=None):
        if not self._tape:
            raise RuntimeError("LSTMCell.backward: no recorded forward step (call forward in training mode first)")
        x2, h0, c0, ws, unbatched = self._tape.pop()
        if unbatched:
            dh1 = None if dh1 is None else np.asarray(dh1)[None, :]
            dc1 = None if dc1 is None else np.asarray(dc1)[None, :]
        dx, dh0, dc0, *_ = _core.lstm_cell_backward(dh1, dc1, ws, x2, h0, c0, self.weight_ih.data,
                                                   self.weight_hh.data, **self._grad_kwargs())
        if unbatched:
            dx, dh0, dc0 = dx[0], dh0[0], dc0[0]
        self.dh0, self.dc0 = dh0, dc0
        return dx


class GRUCell(RNNCellBase):
    """``h1 = cell(x, h0)`` (h0 None = zeros), as torch.nn.GRUCell; ``variant="cho2014"`` applies the
    reset gate before the recurrent matmul."""

    _kind = "gru"

    def __init__(self, input_size, hidden_size, bias=True, *, variant="torch", dtype=np.float32, rng=None):
        if variant not in ("torch", "cho2014"):
            raise ValueError(f"GRUCell: variant must be 'torch' or 'cho2014', got {variant!r}")
        super().__init__(input_size, hidden_size, bias, dtype=dtype, rng=rng)
        self.variant = variant

    def forward(self, x, hx=None):
        x2, (h0,), unbatched = self._prep(x, [("h0", hx)])
        w_ih, w_hh, b_ih, b_hh = self._params()
        h1, ws = _core.gru_cell(x2, h0, w_ih.data, w_hh.data, None if b_ih is None else b_ih.data,
                                None if b_hh is None else b_hh.data, self.variant)
        if self.training:
            self._tape.append((x2, h0, ws, unbatched))
        return h1[0] if unbatched else h1

    def backward(self, dh1):
        if not self._tape:
            raise RuntimeError("GRUCell.backward: no recorded forward step (call forward in training mode first)")
        x2, h0, ws, unbatched = self._tape.pop()
        if unbatched and dh1 is not None:
            dh1 = np.asarray(dh1)[None, :]
        dx, dh0, *_ = _core.gru_cell_backward(dh1, ws, x2, h0, self.weight_ih.data, self.weight_hh.data,
                                              self.variant, **self._grad_kwargs())
        if unbatched:
            dx, dh0 = dx[0], dh0[0]
        self.dh0 = dh0
        return dx


class RNNCell(RNNCellBase):
    """``h1 = cell(x, h0)``, h1 = tanh (or relu) of x W_ih^T + b_ih + h0 W_hh^T + b_hh, as torch.nn.RNNCell."""

    _kind = "rnn"

    def __init__(self, input_size, hidden_size, bias=True, nonlinearity="tanh", *, dtype=np.float32, rng=None):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"RNNCell: nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        super().__init__(input_size, hidden_size, bias, dtype=dtype, rng=rng)
        self.nonlinearity = nonlinearity

    def forward(self, x, hx=None):
        x2, (h0,), unbatched = self._prep(x, [("h0", hx)])
        w_ih, w_hh, b_ih, b_hh = self._params()
        h1, ws = _core.rnn_cell(x2, h0, w_ih.data, w_hh.data, None if b_ih is None else b_ih.data,
                                None if b_hh is None else b_hh.data, self.nonlinearity)
        if self.training:
            self._tape.append((x2, h0, ws, unbatched))
        return h1[0] if unbatched else h1

    def backward(self, dh1):
        if not self._tape:
            raise RuntimeError("RNNCell.backward: no recorded forward step (call forward in training mode first)")
        x2, h0, ws, unbatched = self._tape.pop()
        if unbatched and dh1 is not None:
            dh1 = np.asarray(dh1)[None, :]
        dx, dh0, *_ = _core.rnn_cell_backward(dh1, ws, x2, h0, self.weight_ih.data, self.weight_hh.data,
                                              self.nonlinearity, **self._grad_kwargs())
        if unbatched:
            dx, dh0 = dx[0], dh0[0]
        self.dh0 = dh0
        return dx
