"""End to end against torch: small models (CNN, LSTM language model, BatchNorm + Dropout CNN)
trained from identical initial weights with Adam / SGD-momentum follow torch's loss trajectory and
end at the same parameters; state_dicts load both ways and give identical outputs; nk.train.fit and
fit_sequence take the same steps as a torch loop.

Tolerances: float64 losses and parameters 1e-10 relative (the two sides differ only in summation
order); float32 losses 1e-4 and parameters 1e-4 relative to their scale (20 Adam steps amplify
rounding of near-zero gradients up to about lr * rounding).
"""

import numpy as np
import pytest

import nnkern as nk
from conftest import requires_torch, torch

pytestmark = [requires_torch, pytest.mark.torch]

STEPS = 20
V, E, HID = 11, 6, 8  # LSTM model: vocabulary, embedding, hidden size
T, B = 7, 4  # LSTM chunk: sequence length, batch


def _tol(dtype):
    # (loss rtol, parameter rtol): parameter errors are measured relative to max |p|.
    return (1e-10, 1e-10) if dtype == np.float64 else (1e-4, 1e-4)


def _to_torch(state):
    return {k: torch.from_numpy(np.array(v, copy=True)) for k, v in state.items()}


# ---------------------------------------------------------------------------------------------
# The models, built twice


def nk_cnn(dtype, seed=0):
    nk.manual_seed(seed)
    m = nk.nn.Sequential(nk.nn.Conv2d(1, 4, 3, padding=1), nk.nn.ReLU(), nk.nn.MaxPool2d(2), nk.nn.Flatten(),
                         nk.nn.Linear(4 * 4 * 4, 5))
    return m.to(dtype)


def torch_cnn(dtype):
    tn = torch.nn
    m = tn.Sequential(tn.Conv2d(1, 4, 3, padding=1), tn.ReLU(), tn.MaxPool2d(2), tn.Flatten(), tn.Linear(64, 5))
    return m.to(torch.float64 if dtype == np.float64 else torch.float32)


class NkLM(nk.nn.Module):
    def __init__(self, dtype):
        super().__init__()
        self.embed = nk.nn.Embedding(V, E, dtype=dtype)
        self.lstm = nk.nn.LSTM(E, HID, dtype=dtype)
        self.head = nk.nn.Linear(HID, V, dtype=dtype)

    def forward(self, x, state=None):
        out, state = self.lstm(self.embed(x), state)
        return self.head(out), state

    def backward(self, dlogits):
        self.embed.backward(self.lstm.backward(self.head.backward(dlogits)))


def nk_lm(dtype, seed=0):
    nk.manual_seed(seed)
    return NkLM(dtype)


class TorchLM(torch.nn.Module if torch is not None else object):
    def __init__(self, dtype):
        super().__init__()
        td = torch.float64 if dtype == np.float64 else torch.float32
        self.embed = torch.nn.Embedding(V, E, dtype=td)
        self.lstm = torch.nn.LSTM(E, HID, dtype=td)
        self.head = torch.nn.Linear(HID, V, dtype=td)

    def forward(self, x, state=None):
        out, state = self.lstm(self.embed(x), state)
        return self.head(out), state


def twins(kind, dtype, seed=0):
    """(nnkern model, torch model with the same weights)."""
    if kind == "cnn":
        m, tm = nk_cnn(dtype, seed), torch_cnn(dtype)
    else:
        m, tm = nk_lm(dtype, seed), TorchLM(dtype)
    tm.load_state_dict(_to_torch(m.state_dict()))
    return m, tm


def optimizers(name, m, tm):
    if name == "adam":
        return nk.optim.Adam(m.parameters(), lr=1e-2), torch.optim.Adam(tm.parameters(), lr=1e-2)
    kw = dict(lr=0.05, momentum=0.9, weight_decay=1e-3)
    return nk.optim.SGD(m.parameters(), **kw), torch.optim.SGD(tm.parameters(), **kw)


def batches(kind, dtype, n=STEPS, seed=1):
    """n steps cycling over two fixed random batches (so that the loss can go down)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(min(n, 2)):
        if kind == "cnn":
            x = rng.standard_normal((8, 1, 8, 8)).astype(dtype)
            y = rng.integers(0, 5, 8)
        else:
            ids = rng.integers(0, V, (T + 1, B))
            x, y = ids[:-1].copy(), ids[1:].copy()
        out.append((x, y))
    return [out[i % len(out)] for i in range(n)]


def train_both(kind, opt_name, dtype, steps=STEPS):
    """Trains the twins side by side; the LSTM carries its state across chunks (truncated BPTT:
    detached in torch, a plain array in nnkern). Returns the two loss lists and the models."""
    m, tm = twins(kind, dtype)
    opt, topt = optimizers(opt_name, m, tm)
    crit, tcrit = nk.nn.CrossEntropyLoss(), torch.nn.CrossEntropyLoss()
    losses, tlosses = [], []
    state = tstate = None
    for x, y in batches(kind, dtype, steps):
        opt.zero_grad()
        if kind == "cnn":
            loss = crit(m(x), y)
            m.backward(crit.backward())
        else:
            logits, state = m(x, state)
            loss = crit(logits.reshape(-1, V), y.reshape(-1))
            m.backward(crit.backward().reshape(logits.shape))
        opt.step()
        losses.append(float(loss))

        topt.zero_grad()
        tx, ty = torch.from_numpy(x), torch.from_numpy(y)
        if kind == "cnn":
            tl = tcrit(tm(tx), ty)
        else:
            tlogits, tstate = tm(tx, tstate)
            tstate = tuple(s.detach() for s in tstate)
            tl = tcrit(tlogits.reshape(-1, V), ty.reshape(-1))
        tl.backward()
        topt.step()
        tlosses.append(tl.item())
    return losses, tlosses, m, tm


def assert_params_match(m, tm, rtol, what=""):
    tparams = dict(tm.named_parameters())
    names = [n for n, _ in m.named_parameters()]
    assert sorted(names) == sorted(tparams), what
    for name, p in m.named_parameters():
        tp = tparams[name].detach().numpy()
        scale = max(1.0, float(np.abs(tp).max()))
        np.testing.assert_allclose(p.data, tp, rtol=0, atol=rtol * scale, err_msg=f"{what} {name}")


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("opt_name", ["adam", "sgd"])
@pytest.mark.parametrize("kind", ["cnn", "lstm"])
def test_training_follows_torch(kind, opt_name, dtype):
    losses, tlosses, m, tm = train_both(kind, opt_name, dtype)
    loss_rtol, param_rtol = _tol(dtype)
    np.testing.assert_allclose(losses, tlosses, rtol=loss_rtol, atol=0)
    assert_params_match(m, tm, param_rtol, f"{kind}/{opt_name}")
    assert losses[-1] < losses[0]  # it learns (the data are random: memorising is enough)


# ---------------------------------------------------------------------------------------------
# BatchNorm2d + Dropout: the dropout mask nnkern draws is applied in torch too


class _MaskedDropout(torch.nn.Module if torch is not None else object):
    """torch's inverted dropout with a given 0/1 mask (the one nnkern drew for this step)."""

    def __init__(self, p):
        super().__init__()
        self.p = p
        self.mask = None

    def forward(self, x):
        if not self.training:
            return x
        return x * self.mask / (1 - self.p)


def test_batchnorm_dropout_model_follows_torch_and_evaluates_alike():
    # The conv has no bias: before a batch norm its gradient is exactly zero in theory, i.e.
    # rounding noise that Adam would normalise into steps, different on each side.
    dtype = np.float64
    nk.manual_seed(3)
    m = nk.nn.Sequential(nk.nn.Conv2d(2, 4, 3, padding=1, bias=False), nk.nn.BatchNorm2d(4), nk.nn.ReLU(), nk.nn.Dropout(0.3),
                         nk.nn.Flatten(), nk.nn.Linear(4 * 6 * 6, 3)).to(dtype)
    tn = torch.nn
    drop = _MaskedDropout(0.3)
    tm = tn.Sequential(tn.Conv2d(2, 4, 3, padding=1, bias=False), tn.BatchNorm2d(4), tn.ReLU(), drop, tn.Flatten(),
                       tn.Linear(4 * 6 * 6, 3)).double()
    sd = m.state_dict()
    assert "1.running_mean" in sd and "1.num_batches_tracked" in sd
    tm.load_state_dict(_to_torch(sd))
    opt, topt = nk.optim.Adam(m.parameters(), lr=1e-2), torch.optim.Adam(tm.parameters(), lr=1e-2)
    crit, tcrit = nk.nn.CrossEntropyLoss(), tn.CrossEntropyLoss()
    rng = np.random.default_rng(4)
    losses, tlosses = [], []
    for _ in range(STEPS):
        x, y = rng.standard_normal((6, 2, 6, 6)), rng.integers(0, 3, 6)
        opt.zero_grad()
        losses.append(float(crit(m(x), y)))
        m.backward(crit.backward())
        opt.step()
        drop.mask = torch.from_numpy(m[3]._mask.astype(np.float64))
        topt.zero_grad()
        tl = tcrit(tm(torch.from_numpy(x)), torch.from_numpy(y))
        tl.backward()
        topt.step()
        tlosses.append(tl.item())
    np.testing.assert_allclose(losses, tlosses, rtol=1e-10)
    assert_params_match(m, tm, 1e-10, "bn model")
    tsd = tm.state_dict()
    for k in ("1.running_mean", "1.running_var"):
        np.testing.assert_allclose(m.state_dict()[k], tsd[k].numpy(), rtol=1e-10, atol=1e-12, err_msg=k)
    assert int(m.state_dict()["1.num_batches_tracked"]) == int(tsd["1.num_batches_tracked"]) == STEPS
    # eval: running statistics, dropout is the identity (same output twice)
    m.eval()
    tm.eval()
    x = rng.standard_normal((5, 2, 6, 6))
    y1 = m(x)
    np.testing.assert_array_equal(y1, m(x))
    with torch.no_grad():
        np.testing.assert_allclose(y1, tm(torch.from_numpy(x)).numpy(), rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# state_dict interop both ways


def _outputs(kind, m, tm, dtype):
    x, _ = batches(kind, dtype, 1, seed=7)[0]
    if kind == "cnn":
        y = m(x)
        with torch.no_grad():
            ty = tm(torch.from_numpy(x)).numpy()
        return y, ty
    y, (h, c) = m(x)
    with torch.no_grad():
        ty, (th, tc) = tm(torch.from_numpy(x))
    return np.concatenate([y.ravel(), h.ravel(), c.ravel()]), np.concatenate(
        [ty.numpy().ravel(), th.numpy().ravel(), tc.numpy().ravel()])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kind", ["cnn", "lstm"])
def test_state_dict_interop_both_ways(kind, dtype):
    rtol = 1e-12 if dtype == np.float64 else 1e-5
    # nnkern -> torch: a trained nnkern model's weights in a freshly initialised torch model
    _, _, m, _ = train_both(kind, "adam", dtype, steps=3)
    fresh_t = TorchLM(dtype) if kind == "lstm" else torch_cnn(dtype)
    fresh_t.load_state_dict(_to_torch(m.state_dict()))
    y, ty = _outputs(kind, m, fresh_t, dtype)
    np.testing.assert_allclose(y, ty, rtol=rtol, atol=rtol)
    # torch -> nnkern: a torch model's own (different) init loaded into an nnkern model
    torch.manual_seed(11)
    tm = TorchLM(dtype) if kind == "lstm" else torch_cnn(dtype)
    m2 = nk_lm(dtype, seed=5) if kind == "lstm" else nk_cnn(dtype, seed=5)
    tsd = {k: v.numpy() for k, v in tm.state_dict().items()}
    assert not all(np.array_equal(tsd[k], v) for k, v in m2.state_dict().items())
    missing, unexpected = m2.load_state_dict(tsd)
    assert missing == [] and unexpected == []
    for k, v in m2.state_dict().items():
        np.testing.assert_array_equal(v, tsd[k], err_msg=k)
        assert v.dtype == dtype
    y, ty = _outputs(kind, m2, tm, dtype)
    np.testing.assert_allclose(y, ty, rtol=rtol, atol=rtol)


# ---------------------------------------------------------------------------------------------
# nk.train.fit / fit_sequence take torch's steps


def test_fit_follows_a_torch_loop():
    dtype = np.float64
    m, tm = twins("cnn", dtype)
    rng = np.random.default_rng(8)
    x, y = rng.standard_normal((24, 1, 8, 8)), rng.integers(0, 5, 24)
    opt, topt = optimizers("adam", m, tm)
    hist = nk.train.fit(m, nk.nn.CrossEntropyLoss(), opt, (x, y), epochs=3, batch_size=8, shuffle=False,
                        progress=False)
    tcrit = torch.nn.CrossEntropyLoss()
    tloss = []
    for _ in range(3):
        total = 0.0
        for i in range(0, 24, 8):
            topt.zero_grad()
            tl = tcrit(tm(torch.from_numpy(x[i:i + 8])), torch.from_numpy(y[i:i + 8]))
            tl.backward()
            topt.step()
            total += tl.item() * 8
        tloss.append(total / 24)
    np.testing.assert_allclose(hist["loss"], tloss, rtol=1e-10)
    assert_params_match(m, tm, 1e-10, "fit")


def test_fit_sequence_follows_a_torch_truncated_bptt_loop():
    from nnkern.data import sequence_streams

    dtype = np.float64
    m, tm = twins("lstm", dtype)
    ids = np.random.default_rng(9).integers(0, V, 4 * 3 * T + 1)
    opt, topt = optimizers("adam", m, tm)
    hist = nk.train.fit_sequence(m, nk.nn.CrossEntropyLoss(), opt, ids, epochs=2, seq_len=T, batch_size=B,
                                 clip_grad_norm=0.5, progress=False)
    tcrit = torch.nn.CrossEntropyLoss()
    tloss = []
    for _ in range(2):
        state, total, n = None, 0.0, 0
        for x, y in sequence_streams(ids, B, T):
            topt.zero_grad()
            logits, state = tm(torch.from_numpy(x), state)
            state = tuple(s.detach() for s in state)
            tl = tcrit(logits.reshape(-1, V), torch.from_numpy(y).reshape(-1))
            tl.backward()
            torch.nn.utils.clip_grad_norm_(tm.parameters(), 0.5)
            topt.step()
            total += tl.item() * y.size
            n += y.size
        tloss.append(total / n)
    np.testing.assert_allclose(hist["loss"], tloss, rtol=1e-10)
    assert_params_match(m, tm, 1e-10, "fit_sequence")
