import numpy as np
import pytest

import nnkern as nk


def test_binary_separable_converges():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, 2))
    y = np.where(x @ np.array([2.0, -1.0]) + 0.3 > 0, "pos", "neg")
    clf = nk.Perceptron(max_epochs=200, rng=np.random.default_rng(1)).fit(x, y)
    assert clf.converged_ and clf.errors_[-1] == 0
    assert clf.score(x, y) == 1.0
    assert set(clf.predict(x)) == {"pos", "neg"}


def test_multiclass_digits_learns():
    x, y = nk.datasets.load_digits(as_images=False)
    clf = nk.Perceptron(max_epochs=20, rng=np.random.default_rng(0)).fit(x[:1400], y[:1400])
    assert clf.coef_.shape == (10, 64)
    assert clf.score(x[1400:], y[1400:]) > 0.85


def test_perceptron_rule_one_update():
    # one misclassified sample -> exactly one update w += lr * y * x
    clf = nk.Perceptron(lr=0.5, max_epochs=1, shuffle=False).fit(np.array([[1.0, 2.0], [-1.0, -2.0]]), np.array([1, 0]))
    np.testing.assert_allclose(clf.coef_, [0.5, 1.0])
    assert clf.intercept_ == 0.5


def test_errors():
    with pytest.raises(ValueError, match="lr must be > 0"):
        nk.Perceptron(lr=0)
    with pytest.raises(ValueError, match="at least two classes"):
        nk.Perceptron().fit(np.zeros((3, 2)), np.zeros(3))
    with pytest.raises(RuntimeError, match="call fit first"):
        nk.Perceptron().predict(np.zeros((1, 2)))
    clf = nk.Perceptron(max_epochs=1).fit(np.eye(2), np.array([0, 1]))
    with pytest.raises(ValueError, match="x has 3 features, the model was fit on 2"):
        clf.predict(np.zeros((1, 3)))
