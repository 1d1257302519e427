"""nk.train: fit loop, callbacks, penalties, truncated BPTT driver, plots."""

import numpy as np
import pytest

import nnkern as nk


class HalfMSE(nk.nn.Module):
    """0.5 * mean squared error, written here so the loop is tested independently of loss kernels."""

    def forward(self, pred, target):
        self._d = (pred - target) / pred.size
        return float(0.5 * np.sum((pred - target) ** 2) / pred.size)

    def backward(self):
        return self._d


class SGD:
    def __init__(self, params, lr):
        self.params = list(params)
        self.param_groups = [{"lr": lr}]

    def step(self):
        for p in self.params:
            p.data -= self.param_groups[0]["lr"] * p.grad


def regression_data(n=256, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 3)).astype(np.float32)
    w = np.array([[1.0], [-2.0], [0.5]], np.float32)
    return x, x @ w + 0.1


def test_fit_reduces_loss_and_records_history():
    nk.manual_seed(0)
    x, y = regression_data()
    model = nk.nn.Linear(3, 1)
    hist = nk.train.fit(model, HalfMSE(), SGD(model.parameters(), 0.5), (x, y), epochs=5, batch_size=32,
                        val_data=(x, y), progress=False, rng=np.random.default_rng(0))
    assert hist.epochs == 5
    assert hist["loss"][-1] < 0.01 * hist["loss"][0]
    assert set(hist) >= {"loss", "val_loss", "lr", "epoch_time", "samples_per_s"}
    np.testing.assert_allclose(model.weight.data.ravel(), [1.0, -2.0, 0.5], atol=0.05)


def test_fit_is_reproducible_with_seeded_rng():
    def run():
        nk.manual_seed(1)
        x, y = regression_data()
        model = nk.nn.Linear(3, 1)
        nk.train.fit(model, HalfMSE(), SGD(model.parameters(), 0.1), (x, y), epochs=2, batch_size=16,
                     progress=False, rng=np.random.default_rng(7))
        return model.weight.data.copy()

    np.testing.assert_array_equal(run(), run())


def test_early_stopping_restores_best():
    x, y = regression_data()
    model = nk.nn.Linear(3, 1)
    # lr so large the loss explodes after the first epoch: early stopping must restore epoch 0's weights
    es = nk.train.EarlyStopping(monitor="loss", patience=1, restore_best=True)
    hist = nk.train.fit(model, HalfMSE(), SGD(model.parameters(), 2.5), (x, y), epochs=50, batch_size=256,
                        callbacks=[es], progress=False)
    assert hist.epochs < 50
    assert es.stopped_epoch is not None
    assert es.best == min(hist["loss"])


def test_early_stopping_needs_logged_metric():
    x, y = regression_data()
    model = nk.nn.Linear(3, 1)
    with pytest.raises(KeyError, match="val_loss"):
        nk.train.fit(model, HalfMSE(), SGD(model.parameters(), 0.1), (x, y), epochs=2,
                     callbacks=[nk.train.EarlyStopping()], progress=False)


def test_nan_loss_raises():
    x, y = regression_data()
    y[0] = np.nan
    model = nk.nn.Linear(3, 1)
    with pytest.raises(FloatingPointError, match="loss became nan"):
        nk.train.fit(model, HalfMSE(), SGD(model.parameters(), 0.1), (x, y), epochs=1, batch_size=512,
                     progress=False)


def test_l2_penalty_equals_weight_decay_gradient():
    p = nk.nn.Parameter(np.array([[1.0, -2.0]]))
    p.grad = np.array([[0.5, 0.5]])
    val = nk.regularization.l2_penalty([p], 0.1)
    assert val == pytest.approx(0.5 * 0.1 * 5.0)
    np.testing.assert_allclose(p.grad, [[0.6, 0.3]])
    q = nk.nn.Parameter(np.array([[1.0, -2.0, 0.0]]))
    assert nk.regularization.l1_penalty([q], 0.5) == pytest.approx(1.5)
    np.testing.assert_allclose(q.grad, [[0.5, -0.5, 0.0]])
    with pytest.raises(ValueError, match="lam must be >= 0"):
        nk.regularization.l1_penalty([q], -1)


def test_plot_history(tmp_path):
    pytest.importorskip("matplotlib")
    hist = nk.train.History()
    for e in range(3):
        hist.add(loss=1.0 / (e + 1), val_loss=1.2 / (e + 1), accuracy=0.5 + 0.1 * e)
    out = nk.train.plot_history(hist, tmp_path / "curves.png")
    assert (tmp_path / "curves.png").stat().st_size > 1000
    assert str(out).endswith("curves.png")
