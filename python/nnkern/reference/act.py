"""NumPy twins of the activation kernels (same signatures and maths, plain vectorised NumPy).

Written as a careful NumPy user would: numerically stable forms (no overflow in sigmoid, softplus
or softmax), results in the input's dtype, ``out=`` honoured. They make several passes and
temporaries where the kernels make one.
"""

import numpy as np

__all__ = [
    "sigmoid", "sigmoid_backward",
    "tanh", "tanh_backward",
    "relu", "relu_backward",
    "leaky_relu", "leaky_relu_backward",
    "prelu", "prelu_backward",
    "softplus", "softplus_backward",
    "silu", "silu_backward",
    "softmax", "softmax_backward",
    "log_softmax", "log_softmax_backward",
]


def _result(r, like, out):
    if out is None:
        return np.asarray(r, dtype=like.dtype)
    out[...] = r
    return out


def _sigmoid(x):
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1, e) / (1 + e)


def sigmoid(x, out=None):
    return _result(_sigmoid(x), x, out)


def sigmoid_backward(dy, y, out=None):
    return _result(dy * (1 - y) * y, dy, out)


def tanh(x, out=None):
    return _result(np.tanh(x), x, out)


def tanh_backward(dy, y, out=None):
    return _result(dy * (1 - y * y), dy, out)


def relu(x, out=None):
    return _result(np.where(x < 0, 0, x), x, out)


def relu_backward(dy, y, out=None):
    return _result(np.where(y <= 0, 0, dy), dy, out)


def leaky_relu(x, negative_slope=0.01, out=None):
    return _result(np.where(x > 0, x, x * negative_slope), x, out)


def leaky_relu_backward(dy, x, negative_slope=0.01, out=None):
    return _result(np.where(x > 0, dy, dy * negative_slope), dy, out)


def _channel_view(w, x):
    """weight (C,) or (1,) shaped to broadcast over dim 1 of x."""
    if w.size == 1 or x.ndim < 2:
        return w.reshape(())
    return w.reshape((1, -1) + (1,) * (x.ndim - 2))


def prelu(x, weight, out=None):
    return _result(np.where(x > 0, x, _channel_view(weight, x) * x), x, out)


def prelu_backward(dy, x, weight, out=None):
    wv = _channel_view(weight, x)
    dx = _result(np.where(x > 0, dy, wv * dy), dy, out)
    contrib = np.where(x > 0, 0, x * dy)
    if weight.size == 1 or x.ndim < 2:
        dw = np.asarray(contrib.sum(dtype=np.float64)).reshape(weight.shape)
    else:
        axes = (0,) + tuple(range(2, x.ndim))
        dw = contrib.sum(axis=axes, dtype=np.float64)
    return dx, dw.astype(weight.dtype)


def softplus(x, beta=1.0, threshold=20.0, out=None):
    z = x * beta
    soft = (np.maximum(z, 0) + np.log1p(np.exp(-np.abs(z)))) / beta
    return _result(np.where(z > threshold, x, soft), x, out)


def softplus_backward(dy, x, beta=1.0, threshold=20.0, out=None):
    z = x * beta
    return _result(np.where(z > threshold, dy, dy * _sigmoid(z)), dy, out)


def silu(x, out=None):
    return _result(x * _sigmoid(x), x, out)


def silu_backward(dy, x, out=None):
    s = _sigmoid(x)
    return _result(dy * s * (1 + x * (1 - s)), dy, out)


def softmax(x, dim=-1, out=None):
    e = np.exp(x - x.max(axis=dim, keepdims=True, initial=-np.inf))  # initial: empty dims
    e /= e.sum(axis=dim, keepdims=True)
    return _result(e, x, out)


def softmax_backward(dy, y, dim=-1, out=None):
    return _result(y * (dy - (dy * y).sum(axis=dim, keepdims=True)), dy, out)


def log_softmax(x, dim=-1, out=None):
    t = x - x.max(axis=dim, keepdims=True, initial=-np.inf)
    with np.errstate(divide="ignore"):  # an empty dim sums to 0 (the result is empty anyway)
        t -= np.log(np.exp(t).sum(axis=dim, keepdims=True))
    return _result(t, x, out)


def log_softmax_backward(dy, y, dim=-1, out=None):
    return _result(dy - np.exp(y) * dy.sum(axis=dim, keepdims=True), dy, out)
