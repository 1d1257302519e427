"""The classic perceptron learning rule (Rosenblatt), as a small estimator for teaching.

    clf = nk.Perceptron(lr=1.0, max_epochs=50).fit(x, y)
    clf.predict(x); clf.score(x, y)

Binary labels (any two values) use the step output sign(w.x + b) and the update
w += lr * y * x, b += lr * y on every misclassified sample (y in {-1, +1}). More than two classes
use the multi-class perceptron: one weight vector per class, prediction argmax_k(w_k.x + b_k), and
on a mistake w_true += lr * x, w_predicted -= lr * x. Training stops after an epoch without
mistakes (the data is linearly separable) or after max_epochs.
"""

import numpy as np

from .random import default_generator

__all__ = ["Perceptron"]


class Perceptron:
    def __init__(self, lr=1.0, max_epochs=100, shuffle=True, rng=None):
        if lr <= 0:
            raise ValueError(f"Perceptron: lr must be > 0, got {lr}")
        if max_epochs < 1:
            raise ValueError(f"Perceptron: max_epochs must be >= 1, got {max_epochs}")
        self.lr = float(lr)
        self.max_epochs = int(max_epochs)
        self.shuffle = shuffle
        self.rng = rng
        self.classes_ = None
        self.coef_ = None  # (n_features,) for binary, (n_classes, n_features) otherwise
        self.intercept_ = None
        self.errors_ = []  # mistakes per epoch
        self.converged_ = False

    def _check_x(self, x, fitted=True):
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2:
            raise ValueError(f"Perceptron: x has shape {x.shape}, expected (n_samples, n_features)")
        if fitted and self.coef_ is not None and x.shape[1] != self.coef_.shape[-1]:
            raise ValueError(f"Perceptron: x has {x.shape[1]} features, the model was fit on {self.coef_.shape[-1]}")
        return x

    def fit(self, x, y):
        x = self._check_x(x, fitted=False)
        y = np.asarray(y)
        if y.shape != (x.shape[0],):
            raise ValueError(f"Perceptron: y has shape {y.shape}, expected ({x.shape[0]},)")
        self.classes_ = np.unique(y)
        if len(self.classes_) < 2:
            raise ValueError("Perceptron: y needs at least two classes")
        rng = self.rng if self.rng is not None else default_generator()
        n, d = x.shape
        binary = len(self.classes_) == 2
        yi = np.searchsorted(self.classes_, y)
        if binary:
            w, b, sign = np.zeros(d), 0.0, np.where(yi == 1, 1.0, -1.0)
        else:
            w, b = np.zeros((len(self.classes_), d)), np.zeros(len(self.classes_))
        self.errors_ = []
        self.converged_ = False
        for _ in range(self.max_epochs):
            order = rng.permutation(n) if self.shuffle else np.arange(n)
            mistakes = 0
            for i in order:
                if binary:
                    if sign[i] * (x[i] @ w + b) <= 0:
                        w += self.lr * sign[i] * x[i]
                        b += self.lr * sign[i]
                        mistakes += 1
                else:
                    k = int(np.argmax(w @ x[i] + b))
                    if k != yi[i]:
                        w[yi[i]] += self.lr * x[i]
                        b[yi[i]] += self.lr
                        w[k] -= self.lr * x[i]
                        b[k] -= self.lr
                        mistakes += 1
            self.errors_.append(mistakes)
            if mistakes == 0:
                self.converged_ = True
                break
        self.coef_, self.intercept_ = w, b
        return self

    def decision_function(self, x):
        if self.coef_ is None:
            raise RuntimeError("Perceptron: call fit first")
        x = self._check_x(x)
        return x @ self.coef_.T + self.intercept_

    def predict(self, x):
        scores = self.decision_function(x)
        if scores.ndim == 1:  # binary: step function
            return self.classes_[(scores > 0).astype(np.int64)]
        return self.classes_[np.argmax(scores, axis=1)]

    def score(self, x, y):
        return float(np.mean(self.predict(x) == np.asarray(y)))
