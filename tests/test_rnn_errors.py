"""Bad inputs to the recurrent kernels and layers raise the documented errors (never a crash)."""

import numpy as np
import pytest

import nnkern as nk

f32 = np.float32


def lstm_args(N=3, F=4, H=5, dtype=f32):
    rng = np.random.default_rng(0)
    return dict(x=rng.standard_normal((N, F)).astype(dtype), h0=np.zeros((N, H), dtype), c0=np.zeros((N, H), dtype),
                w_ih=np.zeros((4 * H, F), dtype), w_hh=np.zeros((4 * H, H), dtype), b_ih=np.zeros(4 * H, dtype),
                b_hh=np.zeros(4 * H, dtype))


def call_lstm(**over):
    a = lstm_args()
    a.update(over)
    out = a.pop("out", None)
    return nk.lstm_cell(a["x"], a["h0"], a["c0"], a["w_ih"], a["w_hh"], a["b_ih"], a["b_hh"], out=out)


@pytest.mark.parametrize("over,exc,msg", [
    (dict(x=np.zeros((3, 4), np.int64)), TypeError, r"lstm_cell: x has dtype int64, expected float32 or float64"),
    (dict(x=[[1.0]]), TypeError, r"lstm_cell: x must be a numpy.ndarray, got list"),
    (dict(h0=np.zeros((3, 5))), TypeError, r"lstm_cell: h0 has dtype float64, expected float32 \(the dtype of x\)"),
    (dict(x=np.zeros(4, f32)), ValueError, r"lstm_cell: x has 1 dims, expected 2 \(batch, input_size\)"),
    (dict(h0=np.zeros((3, 6), f32)), ValueError, r"lstm_cell: h0 has shape \(3, 6\), expected \(3, 5\)"),
    (dict(c0=np.zeros((2, 5), f32)), ValueError, r"lstm_cell: c0 has shape \(2, 5\), expected \(3, 5\)"),
    (dict(w_hh=np.zeros((15, 5), f32)), ValueError,
     r"lstm_cell: w_hh has shape \(15, 5\), expected \(20, 5\) \(4\*hidden_size, hidden_size\) for gates i, f, g, o"),
    (dict(w_ih=np.zeros((20, 3), f32)), ValueError, r"lstm_cell: w_ih has shape \(20, 3\), expected \(20, 4\)"),
    (dict(w_ih=np.zeros((15, 4), f32)), ValueError, r"lstm_cell: w_ih has shape \(15, 4\), expected \(20, 4\)"),
    (dict(b_ih=np.zeros(15, f32)), ValueError, r"lstm_cell: b_ih has shape \(15,\), expected \(20,\)"),
    (dict(w_hh=np.zeros((0, 0), f32)), ValueError, r"lstm_cell: w_hh has shape \(0, 0\): hidden_size .* must be >= 1"),
    (dict(w_hh=np.zeros(20, f32)), ValueError, r"lstm_cell: w_hh has 1 dims, expected 2"),
    (dict(out=(np.zeros((3, 5), np.float64), None, None)), TypeError,
     r"lstm_cell: out\[0\] \(h1\) has dtype float64, expected float32"),
    (dict(out=(np.zeros((5, 3), f32).T, None, None)), ValueError, r"lstm_cell: out\[0\] \(h1\) must be C-contiguous"),
    (dict(out=(None, np.zeros((3, 4), f32), None)), ValueError,
     r"lstm_cell: out\[1\] \(c1\) has shape \(3, 4\), expected \(3, 5\)"),
    (dict(out=(None, None, np.zeros((3, 20), f32))), ValueError,
     r"lstm_cell: out\[2\] \(ws\) has shape \(3, 20\), expected \(3, 25\)"),
    (dict(out=(None, None)), ValueError, r"lstm_cell: out must have 3 entries, got 2"),
    (dict(out=np.zeros(3)), TypeError, r"lstm_cell: out must be None or a tuple of 3 arrays"),
])
def test_lstm_cell_errors(over, exc, msg):
    with pytest.raises(exc, match=msg):
        call_lstm(**over)


def test_cell_output_rules():
    ro = np.zeros((3, 5), f32)
    ro.setflags(write=False)
    with pytest.raises(ValueError, match=r"lstm_cell: out\[0\] \(h1\) is read-only"):
        call_lstm(out=(ro, None, None))
    a = lstm_args()
    with pytest.raises(ValueError, match=r"lstm_cell: h1 shares memory with h0"):
        nk.lstm_cell(a["x"], a["h0"], a["c0"], a["w_ih"], a["w_hh"], out=(a["h0"], None, None))
    buf = np.zeros((3, 10), f32)
    with pytest.raises(ValueError, match=r"must be C-contiguous"):
        nk.lstm_cell(a["x"], a["h0"], a["c0"], a["w_ih"], a["w_hh"], out=(buf[:, :5], buf[:, 5:], None))
    # non-contiguous or Fortran *inputs* are fine (copied once)
    h1 = nk.lstm_cell(np.asfortranarray(a["x"]), a["h0"], a["c0"], a["w_ih"], a["w_hh"])[0]
    np.testing.assert_array_equal(h1, nk.lstm_cell(a["x"], a["h0"], a["c0"], a["w_ih"], a["w_hh"])[0])


def test_cell_backward_errors():
    a = lstm_args()
    h1, c1, ws = nk.lstm_cell(a["x"], a["h0"], a["c0"], a["w_ih"], a["w_hh"])
    with pytest.raises(ValueError, match=r"lstm_cell_backward: ws has shape \(3, 20\), expected \(3, 25\)"):
        nk.lstm_cell_backward(h1, c1, ws[:, :20].copy(), a["x"], a["h0"], a["c0"], a["w_ih"], a["w_hh"])
    with pytest.raises(ValueError, match=r"lstm_cell_backward: dh1 has shape \(3, 4\), expected \(3, 5\)"):
        nk.lstm_cell_backward(h1[:, :4].copy(), c1, ws, a["x"], a["h0"], a["c0"], a["w_ih"], a["w_hh"])
    with pytest.raises(ValueError, match=r"lstm_cell_backward: dw_ih has shape \(20, 5\), expected \(20, 4\)"):
        nk.lstm_cell_backward(h1, c1, ws, a["x"], a["h0"], a["c0"], a["w_ih"], a["w_hh"], dw_ih=np.zeros((20, 5), f32))
    with pytest.raises(ValueError, match=r"lstm_cell_backward: dw_ih shares memory with w_ih"):
        nk.lstm_cell_backward(h1, c1, ws, a["x"], a["h0"], a["c0"], a["w_ih"], a["w_hh"], dw_ih=a["w_ih"])
    g = np.random.default_rng(0).standard_normal((12, 4)).astype(f32)
    w_ih = np.zeros((12, 4), f32)
    w_hh = np.zeros((12, 4), f32)
    h1, ws = nk.gru_cell(a["x"], None, w_ih, w_hh)
    with pytest.raises(ValueError, match=r"gru_cell_backward: variant must be 'torch' or 'cho2014', got 'cho'"):
        nk.gru_cell_backward(h1, ws, a["x"], None, w_ih, w_hh, "cho")
    with pytest.raises(ValueError, match=r"gru_cell: w_hh has shape \(12, 4\), expected \(12, 4\)|gru_cell: w_hh"):
        nk.gru_cell(a["x"], None, g, np.zeros((11, 4), f32))
    with pytest.raises(ValueError, match=r"rnn_cell: nonlinearity must be 'tanh' or 'relu', got 'sigmoid'"):
        nk.rnn_cell(a["x"], None, np.zeros((4, 4), f32), np.zeros((4, 4), f32), None, None, "sigmoid")
    with pytest.raises(ValueError, match=r"gru_cell: h0 has shape \(3, 5\), expected \(3, 4\) \(batch, hidden_size\)"):
        nk.gru_cell(a["x"], np.zeros((3, 5), f32), w_ih, w_hh)


def seq_args(T=4, N=3, F=4, H=5, dtype=f32):
    rng = np.random.default_rng(0)
    return dict(x=rng.standard_normal((T, N, F)).astype(dtype), h0=None, c0=None,
                w_ih=np.zeros((4 * H, F), dtype), w_hh=np.zeros((4 * H, H), dtype))


def test_sequence_errors():
    a = seq_args()
    x, w_ih, w_hh = a["x"], a["w_ih"], a["w_hh"]
    with pytest.raises(ValueError, match=r"lstm_sequence: x has 2 dims, expected 3 \(seq_len, batch, input_size\)"):
        nk.lstm_sequence(x[0], None, None, w_ih, w_hh)
    with pytest.raises(ValueError, match=r"x has 2 dims, expected 3 \(batch, seq_len, input_size\)"):
        nk.lstm_sequence(x[0], None, None, w_ih, w_hh, batch_first=True)
    with pytest.raises(TypeError, match=r"lstm_sequence: x has dtype int32, expected float32 or float64"):
        nk.lstm_sequence(x.astype(np.int32), None, None, w_ih, w_hh)
    with pytest.raises(ValueError, match=r"lstm_sequence: w_ih has shape \(20, 4\), expected \(20, 3\)"):
        nk.lstm_sequence(x[:, :, :3].copy(), None, None, w_ih, w_hh)
    with pytest.raises(ValueError, match=r"lstm_sequence: h0 has shape \(2, 5\), expected \(3, 5\)"):
        nk.lstm_sequence(x, np.zeros((2, 5), f32), None, w_ih, w_hh)
    with pytest.raises(ValueError, match=r"lstm_sequence: lengths\[1\] = 5 is out of range: lengths must be in \[0, seq_len=4\]"):
        nk.lstm_sequence(x, None, None, w_ih, w_hh, lengths=np.array([1, 5, 2]))
    with pytest.raises(ValueError, match=r"lstm_sequence: lengths\[0\] = -1 is out of range"):
        nk.lstm_sequence(x, None, None, w_ih, w_hh, lengths=np.array([-1, 1, 2]))
    with pytest.raises(ValueError, match=r"lstm_sequence: lengths has shape \(2,\), expected \(3,\)"):
        nk.lstm_sequence(x, None, None, w_ih, w_hh, lengths=np.array([1, 2]))
    with pytest.raises(TypeError, match=r"lstm_sequence: lengths has dtype float64, expected an integer dtype"):
        nk.lstm_sequence(x, None, None, w_ih, w_hh, lengths=np.array([1.0, 2.0, 3.0]))
    # unsorted lengths are fine
    nk.lstm_sequence(x, None, None, w_ih, w_hh, lengths=np.array([1, 4, 2]))
    with pytest.raises(ValueError, match=r"gru_sequence: variant must be 'torch' or 'cho2014'"):
        nk.gru_sequence(x, None, w_ih[:15], w_hh[:15], variant="x")
    with pytest.raises(ValueError, match=r"gru_sequence: w_hh has shape \(20, 5\), expected \(15, 5\)"):
        nk.gru_sequence(x, None, w_ih[:15], w_hh)
    with pytest.raises(ValueError, match=r"sizes .* are too large"):
        nk._core._rnn_seq_ws_size("lstm", 1 << 40, 1 << 30, 1, 1 << 20, np.float32)


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_sequence_backward_gradient_shapes(kind):
    """dy, dh_n and dc_n must have the output's shapes (fuzz finding: dy (T, N, H + 1) was accepted)."""
    T, N, F, H = 4, 3, 4, 5
    G = {"lstm": 4, "gru": 3, "rnn": 1}[kind]
    rng = np.random.default_rng(1)
    x = rng.standard_normal((T, N, F)).astype(f32)
    w_ih, w_hh = rng.standard_normal((G * H, F)).astype(f32), rng.standard_normal((G * H, H)).astype(f32)
    fwd, bwd = getattr(nk, f"{kind}_sequence"), getattr(nk, f"{kind}_sequence_backward")
    fn = f"{kind}_sequence_backward"

    def run(dy, dh_n, dc_n=None):
        out = fwd(x, None, None, w_ih, w_hh) if kind == "lstm" else fwd(x, None, w_ih, w_hh)
        ws = out[-1]
        return bwd(dy, dh_n, dc_n, ws, x) if kind == "lstm" else bwd(dy, dh_n, ws, x)

    good_dy, good_dh = np.ones((T, N, H), f32), np.ones((N, H), f32)
    run(good_dy, good_dh, good_dh if kind == "lstm" else None)
    for bad in ((T, N, H + 1), (T, N, 2 * H), (T, N, H - 1), (T, N + 1, H), (T, N)):
        want = r"expected \(4, 3, 5\) like the output" if len(bad) == 3 and bad[:2] == (T, N) else r"expected \(4, 3, "
        with pytest.raises(ValueError, match=rf"{fn}: dy has shape \({', '.join(map(str, bad))}\), {want}"):
            run(np.ones(bad, f32), None)
    with pytest.raises(ValueError, match=rf"{fn}: dh_n has shape \(3, 6\), expected \(3, 5\) \(batch, hidden_size\)"):
        run(None, np.ones((N, H + 1), f32))
    if kind == "lstm":
        with pytest.raises(ValueError, match=rf"{fn}: dc_n has shape \(2, 5\), expected \(3, 5\)"):
            run(None, None, np.ones((N - 1, H), f32))
    # the private entry used by bidirectional layers takes a (T, N, 2H) dy and a column offset of H,
    # but no other width or offset
    out = fwd(x, None, None, w_ih, w_hh) if kind == "lstm" else fwd(x, None, w_ih, w_hh)
    grads = (np.empty((G * H, F), f32), np.empty((G * H, H), f32), np.empty(G * H, f32), np.empty(G * H, f32))
    lstm = kind == "lstm"

    def private(dy, col):
        nk._core._rnn_seq_backward(kind, out[-1].copy(), x, dy, col, None, None, np.empty_like(x), False,
                                   np.empty((N, H), f32), np.empty((N, H), f32) if lstm else None, grads,
                                   (False,) * 4)

    private(np.ones((T, N, 2 * H), f32), H)
    with pytest.raises(ValueError, match=rf"{fn}: dy has shape \(4, 3, 11\), expected \(4, 3, 5\) like the output "
                                         r"\(last dim = hidden_size, or 2 \* hidden_size when bidirectional\)"):
        private(np.ones((T, N, 2 * H + 1), f32), 0)
    with pytest.raises(ValueError, match=rf"{fn}: dy_col=2 with hidden_size 5 does not fit dy's last dim 10"):
        private(np.ones((T, N, 2 * H), f32), 2)


def test_private_sequence_buffers():
    a = seq_args()
    T, N, F, H = 4, 3, 4, 5
    size = nk._core._rnn_seq_ws_size("lstm", T, N, F, H, f32)
    fwd = nk._core._rnn_seq_forward
    good = dict(y=np.zeros((T, N, H), f32), h_n=np.zeros((N, H), f32), c_n=np.zeros((N, H), f32),
                ws=np.zeros(size, f32))

    def call(**over):
        b = dict(good)
        b.update(over)
        fwd("lstm", a["x"], None, None, a["w_ih"], a["w_hh"], None, None, None, False, False, 0, b["y"],
            b.get("y_col", 0), b["h_n"], b["c_n"], b["ws"])

    call()
    with pytest.raises(ValueError, match=r"lstm_sequence: ws has shape \(\d+,\), expected \(\d+,\)"):
        call(ws=np.zeros(size - 1, f32))
    with pytest.raises(ValueError, match=r"y_col=1 with hidden_size 5 does not fit y's last dim 5"):
        call(y_col=1)
    with pytest.raises(ValueError, match=r"lstm_sequence: y has shape \(3, 3, 5\), expected \(4, 3, >= hidden_size\)"):
        call(y=np.zeros((3, 3, 5), f32))
    ro = np.zeros((N, H), f32)
    ro.setflags(write=False)
    with pytest.raises(ValueError, match=r"lstm_sequence: h_n is read-only"):
        call(h_n=ro)
    with pytest.raises(ValueError, match=r"lstm_sequence: h_n shares memory with c_n"):
        call(c_n=good["h_n"])
    with pytest.raises(TypeError, match=r"lstm_sequence: ws has dtype float64, expected float32"):
        call(ws=np.zeros(size, np.float64))
    with pytest.raises(ValueError, match=r"rnn sequence: kind must be 'lstm', 'gru' or 'rnn', got 'elman'"):
        fwd("elman", a["x"], None, None, a["w_ih"], a["w_hh"], None, None, None, False, False, 0, good["y"], 0,
            good["h_n"], good["c_n"], good["ws"])


@pytest.mark.parametrize("cls", [nk.nn.LSTM, nk.nn.GRU, nk.nn.RNN])
def test_layer_errors(cls):
    with pytest.raises(ValueError, match=r"hidden_size must be an integer >= 1, got 0"):
        cls(3, 0)
    with pytest.raises(ValueError, match=r"num_layers must be an integer >= 1, got 0"):
        cls(3, 4, num_layers=0)
    with pytest.raises(ValueError, match=r"dropout must be a number in \[0, 1\], got 1.5"):
        cls(3, 4, num_layers=2, dropout=1.5)
    with pytest.warns(UserWarning, match="dropout=0.5 has no effect with num_layers=1"):
        cls(3, 4, dropout=0.5)
    m = cls(3, 4, num_layers=2)
    name = cls.__name__
    x = np.zeros((5, 2, 3), f32)
    with pytest.raises(ValueError, match=rf"{name}: input has shape \(5, 2, 4\), expected input_size=3"):
        m(np.zeros((5, 2, 4), f32))
    with pytest.raises(ValueError, match=rf"{name}: input has 4 dims, expected 3"):
        m(np.zeros((5, 2, 3, 1), f32))
    with pytest.raises(ValueError, match=rf"{name}: lengths has shape \(3,\), expected \(2,\)"):
        m(x, lengths=np.array([1, 2, 3]))
    with pytest.raises(ValueError, match=rf"{name}: lengths must be in \[0, seq_len=5\]"):
        m(x, lengths=np.array([1, 6]))
    bad_h = np.zeros((1, 2, 4), f32)
    hx = (bad_h, bad_h) if cls is nk.nn.LSTM else bad_h
    with pytest.raises(ValueError, match=rf"{name}: h0 has shape \(1, 2, 4\), expected \(2, 2, 4\)"):
        m(x, hx)
    with pytest.raises(RuntimeError, match=rf"{name}.backward called before forward"):
        cls(3, 4).backward(np.zeros((5, 2, 4), f32))
    m(x)
    with pytest.raises(ValueError, match=rf"{name}.backward: dy has shape \(5, 2, 3\), expected \(5, 2, 4\)"):
        m.backward(np.zeros((5, 2, 3), f32))
    if cls is nk.nn.RNN:
        with pytest.raises(ValueError, match="nonlinearity must be 'tanh' or 'relu'"):
            cls(3, 4, nonlinearity="gelu")
    if cls is nk.nn.GRU:
        with pytest.raises(ValueError, match="variant must be 'torch' or 'cho2014'"):
            cls(3, 4, variant="cuDNN")


def test_cell_argument_parsing():
    a = lstm_args()
    args = (a["x"], a["h0"], a["c0"], a["w_ih"], a["w_hh"], a["b_ih"], a["b_hh"])
    ref = nk.lstm_cell(*args)
    kw = nk.lstm_cell(x=a["x"], h0=a["h0"], c0=a["c0"], w_ih=a["w_ih"], w_hh=a["w_hh"], b_hh=a["b_hh"], b_ih=a["b_ih"])
    for r, k in zip(ref, kw):
        np.testing.assert_array_equal(r, k)
    with pytest.raises(TypeError, match=r"lstm_cell\(\) got an unexpected keyword argument 'bias'"):
        nk.lstm_cell(*args[:5], bias=None)
    with pytest.raises(TypeError, match=r"lstm_cell\(\) takes at most 7 positional arguments \(8 given\)"):
        nk.lstm_cell(*args, None)
    with pytest.raises(TypeError, match=r"lstm_cell\(\) missing required argument 'w_hh'"):
        nk.lstm_cell(*args[:4])
    with pytest.raises(TypeError, match=r"lstm_cell\(\) got multiple values for argument 'x'"):
        nk.lstm_cell(*args, x=a["x"])
    with pytest.raises(TypeError, match=r"lstm_cell_backward\(\) missing required argument 'c0'"):
        nk.lstm_cell_backward(None, None, ref[2], a["x"], a["h0"])
    with pytest.raises(TypeError, match=r"gru_cell_backward\(\) got an unexpected keyword argument 'out'"):
        nk.gru_cell_backward(None, None, None, None, None, None, out=None)
