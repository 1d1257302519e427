"""Checkpoint round trip of model + optimizer resumes training bitwise: train 10 steps, nk.save,
train 10 more; a fresh model and optimizer loaded from the file and trained on the same 10 batches
end at bitwise identical parameters, optimizer state and buffers (test_checkpoint.py covers the
file format, atomicity and error messages)."""

import numpy as np
import pytest

import nnkern as nk


class LM(nk.nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nk.nn.Embedding(9, 5)
        self.lstm = nk.nn.LSTM(5, 7)
        self.head = nk.nn.Linear(7, 9)

    def forward(self, x, state=None):
        out, state = self.lstm(self.embed(x), state)
        return self.head(out), state

    def backward(self, dlogits):
        self.embed.backward(self.lstm.backward(self.head.backward(dlogits)))


def build(kind, seed):
    nk.manual_seed(seed)
    if kind == "cnn-bn":
        return nk.nn.Sequential(nk.nn.Conv2d(1, 4, 3, padding=1, bias=False), nk.nn.BatchNorm2d(4), nk.nn.ReLU(),
                                nk.nn.MaxPool2d(2), nk.nn.Flatten(), nk.nn.Linear(4 * 4 * 4, 3))
    return LM()


def make_opt(name, model):
    if name == "adam":
        return nk.optim.Adam(model.parameters(), lr=1e-2, weight_decay=1e-4)
    return nk.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)


def data(kind, n, seed):
    rng = np.random.default_rng(seed)
    if kind == "cnn-bn":
        return [(rng.standard_normal((6, 1, 8, 8)).astype(np.float32), rng.integers(0, 3, 6)) for _ in range(n)]
    out = []
    for _ in range(n):
        ids = rng.integers(0, 9, (6, 3))
        out.append((ids[:-1].copy(), ids[1:].copy()))
    return out


def train(kind, model, opt, batches):
    crit = nk.nn.CrossEntropyLoss()
    losses = []
    for x, y in batches:
        opt.zero_grad()
        if kind == "cnn-bn":
            losses.append(float(crit(model(x), y)))
            model.backward(crit.backward())
        else:
            logits, _ = model(x)
            losses.append(float(crit(logits.reshape(-1, 9), y.reshape(-1))))
            model.backward(crit.backward().reshape(logits.shape))
        opt.step()
    return losses


def flat_opt_state(opt):
    sd = opt.state_dict()
    return {f"{i}/{k}": np.asarray(v) for i, s in sd["state"].items() for k, v in s.items()}


@pytest.mark.parametrize("opt_name", ["adam", "sgd"])
@pytest.mark.parametrize("kind", ["cnn-bn", "lstm"])
def test_resume_from_checkpoint_is_bitwise_identical(tmp_path, kind, opt_name):
    first, second = data(kind, 10, 1), data(kind, 10, 2)
    model = build(kind, 0)
    opt = make_opt(opt_name, model)
    train(kind, model, opt, first)
    path = tmp_path / "ck.npz"
    nk.save(path, model, opt, step=10)
    losses = train(kind, model, opt, second)

    fresh = build(kind, 123)  # different initial weights: everything must come from the file
    fresh_opt = make_opt(opt_name, fresh)
    assert fresh_opt.state_dict()["state"] == {}
    extras = nk.load(path, fresh, fresh_opt)
    assert extras["step"] == 10
    resumed = train(kind, fresh, fresh_opt, second)

    assert resumed == losses  # exact float equality, step by step
    for (k, a), (k2, b) in zip(model.state_dict().items(), fresh.state_dict().items()):
        assert k == k2
        assert a.dtype == b.dtype and np.array_equal(np.asarray(a), np.asarray(b)), k
    sa, sb = flat_opt_state(opt), flat_opt_state(fresh_opt)
    assert sorted(sa) == sorted(sb) and sa
    for k in sa:
        assert sa[k].dtype == sb[k].dtype and np.array_equal(sa[k], sb[k]), k
    assert [g["lr"] for g in opt.param_groups] == [g["lr"] for g in fresh_opt.param_groups]


def test_resume_without_optimizer_state_differs(tmp_path):
    """The test above can fail: loading only the model (fresh Adam moments) changes the trajectory."""
    first, second = data("lstm", 10, 1), data("lstm", 10, 2)
    model = build("lstm", 0)
    opt = make_opt("adam", model)
    train("lstm", model, opt, first)
    nk.save(tmp_path / "ck.npz", model)
    losses = train("lstm", model, opt, second)
    fresh = build("lstm", 0)
    nk.load(tmp_path / "ck.npz", fresh)
    resumed = train("lstm", fresh, make_opt("adam", fresh), second)
    assert resumed[0] == losses[0]  # same weights: the first loss agrees
    assert resumed[1:] != losses[1:]
