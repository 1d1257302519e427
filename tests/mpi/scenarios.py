"""Models and data for the data-parallel equivalence tests: the same 20 steps run as one process with
global batch W*B (reference) and as W ranks with batch B each (tests/mpi/worker.py)."""

import numpy as np

import nnkern as nk

STEPS = 20


class Spec:
    def __init__(self, build, optimizer, data, step, batch):
        self.build, self.optimizer, self._data, self.step, self.batch = build, optimizer, data, step, batch

    def global_batches(self, world):
        x, y = self._data()
        gb = self.batch * world
        return [(x[s * gb:(s + 1) * gb], y[s * gb:(s + 1) * gb]) for s in range(STEPS)]

    def rank_batches(self, rank, world):
        from nnkern.distributed import shard

        x, y = self._data()
        n = STEPS * self.batch * world
        xr, yr = shard((x[:n], y[:n]), rank, world, batch_size=self.batch)
        return [(xr[s * self.batch:(s + 1) * self.batch], yr[s * self.batch:(s + 1) * self.batch])
                for s in range(STEPS)]


def _classify_step(model, opt, xb, yb):
    crit = nk.nn.CrossEntropyLoss()
    model.zero_grad(set_to_none=False)
    crit(model(xb), yb)
    model.backward(crit.backward())
    opt.step()


def _mlp(seed=0):
    nk.manual_seed(seed)
    return nk.nn.Sequential(nk.nn.Linear(64, 32), nk.nn.Tanh(), nk.nn.Linear(32, 10))


def _cnn(seed=0):
    from nnkern.examples.digits_cnn import build_model

    m = build_model(seed)
    return nk.nn.Sequential(*[l for l in m if not isinstance(l, nk.nn.Dropout)])  # deterministic


def _digits(flat):
    def load():
        x, y = nk.datasets.load_digits(as_images=not flat)
        return (x.reshape(len(x), -1) if flat else x), y
    return load


class _LM(nk.nn.Module):
    def __init__(self, seed=0):
        super().__init__()
        from nnkern.examples.char_lstm import CharLSTM

        nk.manual_seed(seed)
        self.net = CharLSTM(40, embed_dim=16, hidden_size=32)

    def forward(self, x):  # x (B, T) ids -> logits (B*T, V)
        logits, _ = self.net(np.ascontiguousarray(x.T), None)
        self._shape = logits.shape
        return np.ascontiguousarray(logits.transpose(1, 0, 2)).reshape(-1, logits.shape[-1])

    def backward(self, d):
        T, B, V = self._shape
        self.net.backward(np.ascontiguousarray(d.reshape(B, T, V).transpose(1, 0, 2)))


def _text():
    ids = np.frombuffer(nk.datasets.load_text()[:20000].encode("ascii", "replace"), np.uint8) % 40
    ids = ids.astype(np.int64)
    T = 16
    n = (len(ids) - 1) // T
    x = ids[: n * T].reshape(n, T)
    y = ids[1: n * T + 1].reshape(n, T)
    return x, y


def _lm_step(model, opt, xb, yb):
    crit = nk.nn.CrossEntropyLoss()
    model.zero_grad(set_to_none=False)
    crit(model(xb), yb.reshape(-1))
    model.backward(crit.backward())
    opt.step()


SCENARIOS = {
    "mlp": Spec(_mlp, lambda m: nk.optim.SGD(m.parameters(), lr=0.1, momentum=0.9), _digits(True), _classify_step, 16),
    "cnn": Spec(_cnn, lambda m: nk.optim.Adam(m.parameters(), lr=1e-3), _digits(False), _classify_step, 16),
    "lstm": Spec(lambda seed=0: _LM(seed), lambda m: nk.optim.Adam(m.parameters(), lr=3e-3), _text, _lm_step, 8),
}


def reference_params(name, world):
    """Parameters after STEPS single-process steps with global batch world*B (seed 1 = rank 0's init)."""
    spec = SCENARIOS[name]
    model = spec.build(seed=1)
    opt = spec.optimizer(model)
    for xb, yb in spec.global_batches(world):
        spec.step(model, opt, xb, yb)
    return {k: np.asarray(v).copy() for k, v in model.state_dict().items()}
