"""Full training steps of the two example models (issue 5): one step = zero_grad, forward, loss,
backward, Adam step, float32, on a fixed batch.

Models:
  digits-cnn   examples/digits_cnn.build_model (Conv 1->16, ReLU, Conv 16->32, ReLU, MaxPool 2,
               Flatten, Linear 512->64, ReLU, Dropout 0.25, Linear 64->10), batch 32 of 1x8x8,
               CrossEntropyLoss, Adam(lr=2e-3)
  char-lstm    examples/char_lstm.CharLSTM at its defaults (Embedding V->48, LSTM 48->256, Linear
               256->V, V = the bundled text's vocabulary), seq_len 64, batch 32 (T, B) token ids,
               CrossEntropyLoss over the T*B positions, Adam(lr=3e-3); the state starts at zero
               every step (the example carries it between chunks: same cost). No gradient clipping
               (the example clips at 5.0; that is one more pass over the gradients in every impl).

Implementations side by side:
  nnkern         the nk.nn model, nk.nn.CrossEntropyLoss, nk.optim.Adam; zero_grad(set_to_none=False)
                 as nk.train.fit does (gradient buffers kept)
  torch          the same architecture in torch.nn with the nnkern weights copied in,
                 torch.optim.Adam with its defaults (single-tensor loop on CPU), zero_grad() (None)
  torch-foreach  the same with Adam(foreach=True) (torch's multi-tensor path): the best torch
                 variant is the one the ratio is taken against
  numpy          the same step in plain NumPy with the nnkern.reference twins: im2col conv2d and
                 its backward, max-pool with indices, the hoisted NumPy LSTM sequence and its
                 backward, np.take/np.add.at embedding, the cross-entropy twin, Adam twin per tensor
GFLOP/s counts the GEMM-equivalent work of forward + backward (3x the forward's multiply-adds).
"""

import numpy as np

from . import Case, Impl, torch_or_none

CNN_BATCH = 32
LSTM_SEQ, LSTM_BATCH, LSTM_EMBED, LSTM_HIDDEN = 64, 32, 48, 256


def _cnn_flops(n):
    conv1 = 2.0 * n * 16 * 64 * 1 * 9
    conv2 = 2.0 * n * 32 * 64 * 16 * 9
    fc = 2.0 * n * (512 * 64 + 64 * 10)
    return 3 * (conv1 + conv2 + fc)


def _lstm_flops(T, B, V, E, H):
    return 3 * (2.0 * T * B * 4 * H * (E + H) + 2.0 * T * B * H * V)


def _digits_batch(n):
    import nnkern as nk

    x, y = nk.datasets.load_digits()
    return np.ascontiguousarray(x[:n], dtype=np.float32), np.ascontiguousarray(y[:n], dtype=np.int64)


def _char_batch(T, B):
    import nnkern as nk
    from nnkern.data import sequence_streams
    from nnkern.examples.char_lstm import Vocab

    text = nk.datasets.load_text()
    vocab = Vocab(text)
    x, y = next(iter(sequence_streams(vocab.encode(text), B, T)))
    return len(vocab.chars), np.ascontiguousarray(x), np.ascontiguousarray(y)


# ---------------------------------------------------------------------------------------------
# NumPy training steps


class _NumpyAdam:
    """The Adam twin over a list of arrays (state kept like nk.optim.Adam / torch)."""

    def __init__(self, params, lr):
        from nnkern import reference as ref

        self.params = params
        self.lr = lr
        self.m = [np.zeros_like(p) for p in params]
        self.v = [np.zeros_like(p) for p in params]
        self.t = 0
        self._step = ref.adam_step

    def step(self, grads):
        self.t += 1
        for p, g, m, v in zip(self.params, grads, self.m, self.v):
            self._step(p, g, m, v, self.t, lr=self.lr)


def _numpy_cnn_step(state, x, y, p_drop, rng):
    """One training step of the digits CNN in NumPy; `state` holds the parameter arrays (torch names)."""
    from nnkern import reference as ref

    w1, b1, w2, b2, w3, b3, w4, b4 = (state[k] for k in ("0.weight", "0.bias", "2.weight", "2.bias",
                                                        "6.weight", "6.bias", "9.weight", "9.bias"))
    # forward
    a1 = np.maximum(ref.conv2d(x, w1, b1, 1, 1), 0)
    a2 = np.maximum(ref.conv2d(a1, w2, b2, 1, 1), 0)
    pooled, idx = ref.max_pool2d(a2, 2)
    f = pooled.reshape(len(x), -1)
    h = np.maximum(f @ w3.T + b3, 0)
    if p_drop > 0:
        mask = (rng.random(h.shape, dtype=np.float32) >= p_drop).astype(np.float32) * np.float32(1 / (1 - p_drop))
    else:
        mask = np.float32(1)
    hd = h * mask
    logits = hd @ w4.T + b4
    loss, dlogits = ref.cross_entropy_forward_backward(logits, y)
    # backward
    g4, gb4 = dlogits.T @ hd, dlogits.sum(0)
    dh = (dlogits @ w4) * mask
    dh *= h > 0
    g3, gb3 = dh.T @ f, dh.sum(0)
    dpool = (dh @ w3).reshape(pooled.shape)
    da2 = ref.max_pool2d_backward(dpool, idx, a2.shape)
    da2 *= a2 > 0
    da1, g2, gb2 = ref.conv2d_backward(da2, a1, w2, 1, 1)
    da1 *= a1 > 0
    _, g1, gb1 = ref.conv2d_backward(da1, x, w1, 1, 1, need_dx=False)
    return loss, [g1, gb1, g2, gb2, g3, gb3, g4, gb4]


def _numpy_lstm_step(state, x, y):
    """One training step of the char-LSTM in NumPy (embedding -> LSTM -> linear -> cross-entropy)."""
    from nnkern import reference as ref

    emb, w_ih, w_hh, b_ih, b_hh, wo, bo = (state[k] for k in (
        "embed.weight", "lstm.weight_ih_l0", "lstm.weight_hh_l0", "lstm.bias_ih_l0", "lstm.bias_hh_l0",
        "head.weight", "head.bias"))
    T, B = x.shape
    e = ref.embedding(x, emb)
    out, _, _, ws = ref.lstm_sequence(e, None, None, w_ih, w_hh, b_ih, b_hh, hoisted=True)
    o2 = out.reshape(T * B, -1)
    logits = o2 @ wo.T + bo
    loss, dlogits = ref.cross_entropy_forward_backward(logits, y.reshape(-1))
    g_wo, g_bo = dlogits.T @ o2, dlogits.sum(0)
    dout = (dlogits @ wo).reshape(out.shape)
    de, _, _, g_wih, g_whh, g_bih, g_bhh = ref.lstm_sequence_backward(dout, None, None, ws, e)
    g_emb = ref.embedding_backward(de, x, emb.shape[0])
    return loss, [g_emb, g_wih, g_whh, g_bih, g_bhh, g_wo, g_bo]


# ---------------------------------------------------------------------------------------------
# torch twins of the models


def _torch_cnn(torch, dropout=0.25):
    nn = torch.nn
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
        nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(32 * 4 * 4, 64), nn.ReLU(),
        nn.Dropout(dropout),
        nn.Linear(64, 10),
    )


def _torch_char_lstm(torch, V, E, H):
    nn = torch.nn

    class CharLSTM(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(V, E)
            self.lstm = nn.LSTM(E, H)
            self.head = nn.Linear(H, V)

        def forward(self, x):
            out, _ = self.lstm(self.embed(x))
            return self.head(out)

    return CharLSTM()


def _torch_impls(torch, make_model, nk_state, lr, x, y, flat_logits):
    impls = []
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    for name, kwargs, note in (("torch", {}, "torch.nn + torch.optim.Adam defaults (single-tensor on CPU)"),
                               ("torch-foreach", {"foreach": True}, "torch.optim.Adam(foreach=True)")):
        model = make_model()
        model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in nk_state.items()})
        model.train()
        opt = torch.optim.Adam(model.parameters(), lr=lr, **kwargs)
        ce = torch.nn.functional.cross_entropy

        def step(model=model, opt=opt):
            opt.zero_grad()
            logits = model(tx)
            loss = ce(logits.reshape(-1, logits.shape[-1]), ty.reshape(-1)) if flat_logits else ce(logits, ty)
            loss.backward()
            opt.step()
            return loss.detach()

        impls.append(Impl(name, step, note))
    return impls


# ---------------------------------------------------------------------------------------------
# Cases


def _cnn_setup(dropout=0.25):
    """The digits-CNN implementations; ``dropout`` overrides the Dropout layer's p in all of them
    (tests set it to 0 so that the implementations' losses can be compared step by step)."""
    import nnkern as nk
    from nnkern.examples.digits_cnn import build_model

    x, y = _digits_batch(CNN_BATCH)
    model = build_model(0)
    drops = [m for m in model.modules() if isinstance(m, nk.nn.Dropout)]
    assert len(drops) == 1, "the digits CNN has one Dropout layer"
    drops[0].p = float(dropout)
    init_state = {k: np.array(v, copy=True) for k, v in model.state_dict().items()}
    opt = nk.optim.Adam(model.parameters(), lr=2e-3)
    crit = nk.nn.CrossEntropyLoss()

    def nk_step():
        model.zero_grad(set_to_none=False)
        loss = crit(model(x), y)
        model.backward(crit.backward())
        opt.step()
        return loss

    np_state = {k: np.array(v, copy=True) for k, v in init_state.items()}
    order = ["0.weight", "0.bias", "2.weight", "2.bias", "6.weight", "6.bias", "9.weight", "9.bias"]
    np_opt = _NumpyAdam([np_state[k] for k in order], 2e-3)
    rng = np.random.default_rng(0)

    def np_step():
        loss, grads = _numpy_cnn_step(np_state, x, y, dropout, rng)
        np_opt.step(grads)
        return loss

    impls = [Impl("nnkern", nk_step, "nk.nn Sequential + nk.optim.Adam, as nk.train.fit's step"),
             Impl("numpy", np_step, "reference twins: im2col conv, pool with indices, CE, Adam per tensor")]
    torch = torch_or_none()
    if torch is not None:
        torch.manual_seed(0)
        impls += _torch_impls(torch, lambda: _torch_cnn(torch, dropout), init_state, 2e-3, x, y, flat_logits=False)
    return impls


def _lstm_setup():
    import nnkern as nk
    from nnkern.examples.char_lstm import CharLSTM

    V, x, y = _char_batch(LSTM_SEQ, LSTM_BATCH)
    nk.manual_seed(0)
    model = CharLSTM(V, embed_dim=LSTM_EMBED, hidden_size=LSTM_HIDDEN)
    init_state = {k: np.array(v, copy=True) for k, v in model.state_dict().items()}
    opt = nk.optim.Adam(model.parameters(), lr=3e-3)
    crit = nk.nn.CrossEntropyLoss()
    y_flat = y.reshape(-1)

    def nk_step():
        model.zero_grad(set_to_none=False)
        logits, _ = model(x)
        loss = crit(logits.reshape(-1, V), y_flat)
        model.backward(crit.backward().reshape(logits.shape))
        opt.step()
        return loss

    np_state = {k: np.array(v, copy=True) for k, v in init_state.items()}
    order = ["embed.weight", "lstm.weight_ih_l0", "lstm.weight_hh_l0", "lstm.bias_ih_l0", "lstm.bias_hh_l0",
             "head.weight", "head.bias"]
    np_opt = _NumpyAdam([np_state[k] for k in order], 3e-3)

    def np_step():
        loss, grads = _numpy_lstm_step(np_state, x, y)
        np_opt.step(grads)
        return loss

    impls = [Impl("nnkern", nk_step, "CharLSTM (nk.nn) + nk.optim.Adam, as nk.train.fit_sequence's step"),
             Impl("numpy", np_step, "reference twins: take/add.at embedding, hoisted LSTM sequence, CE, Adam")]
    torch = torch_or_none()
    if torch is not None:
        impls += _torch_impls(torch, lambda: _torch_char_lstm(torch, V, LSTM_EMBED, LSTM_HIDDEN), init_state,
                              3e-3, x, y, flat_logits=True)
    return impls


def cases(quick):
    torch = torch_or_none() is not None
    names = ["nnkern", "numpy"] + (["torch", "torch-foreach"] if torch else [])
    from nnkern.examples.char_lstm import Vocab
    import nnkern as nk

    V = len(Vocab(nk.datasets.load_text()).chars)
    return [
        Case("train", "digits-cnn", f"N{CNN_BATCH} 1x8x8", _cnn_setup, work=_cnn_flops(CNN_BATCH),
             unit="GFLOP/s", mode="step", impl_names=list(names)),
        Case("train", "char-lstm", f"T{LSTM_SEQ} B{LSTM_BATCH} V{V} E{LSTM_EMBED} H{LSTM_HIDDEN}", _lstm_setup,
             work=_lstm_flops(LSTM_SEQ, LSTM_BATCH, V, LSTM_EMBED, LSTM_HIDDEN), unit="GFLOP/s", mode="step",
             impl_names=list(names)),
    ]
