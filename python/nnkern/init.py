"""Weight initializers (``nk.init``), with torch's formulas and defaults.

Every function fills its array in place (a Parameter's ``.data`` or a plain array) and returns it;
``rng`` defaults to nnkern's generator (``nk.manual_seed``). Fan computation follows torch:
fan_in = shape[1] * prod(shape[2:]), fan_out = shape[0] * prod(shape[2:]).
"""

import math

import numpy as np

from .random import default_generator

__all__ = [
    "calculate_gain", "uniform_", "normal_", "constant_", "zeros_", "ones_", "xavier_uniform_",
    "xavier_normal_", "kaiming_uniform_", "kaiming_normal_", "he_uniform_", "he_normal_", "lecun_uniform_",
    "lecun_normal_", "orthogonal_",
]


def _array(t):
    arr = getattr(t, "data", t)
    if not isinstance(arr, np.ndarray):
        raise TypeError(f"init: expected a numpy.ndarray or Parameter, got {type(t).__name__}")
    return arr


def _fans(arr):
    if arr.ndim < 2:
        raise ValueError(f"init: fan in/out need at least 2 dims, got shape {arr.shape}")
    receptive = int(np.prod(arr.shape[2:])) if arr.ndim > 2 else 1
    return arr.shape[1] * receptive, arr.shape[0] * receptive


def calculate_gain(nonlinearity, param=None):
    """torch.nn.init.calculate_gain."""
    linear = ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
              "conv_transpose3d", "sigmoid")
    if nonlinearity in linear:
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else float(param)
        return math.sqrt(2.0 / (1 + slope ** 2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"init.calculate_gain: unsupported nonlinearity {nonlinearity!r}")


def uniform_(t, a=0.0, b=1.0, rng=None):
    arr = _array(t)
    arr[...] = (rng or default_generator()).uniform(a, b, size=arr.shape)
    return t


def normal_(t, mean=0.0, std=1.0, rng=None):
    arr = _array(t)
    arr[...] = (rng or default_generator()).normal(mean, std, size=arr.shape)
    return t


def constant_(t, val):
    _array(t)[...] = val
    return t


def zeros_(t):
    return constant_(t, 0.0)


def ones_(t):
    return constant_(t, 1.0)


def xavier_uniform_(t, gain=1.0, rng=None):
    fan_in, fan_out = _fans(_array(t))
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return uniform_(t, -bound, bound, rng)


def xavier_normal_(t, gain=1.0, rng=None):
    fan_in, fan_out = _fans(_array(t))
    return normal_(t, 0.0, gain * math.sqrt(2.0 / (fan_in + fan_out)), rng)


def _kaiming_std(arr, a, mode, nonlinearity):
    fan_in, fan_out = _fans(arr)
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"init: mode must be 'fan_in' or 'fan_out', got {mode!r}")
    fan = fan_in if mode == "fan_in" else fan_out
    return calculate_gain(nonlinearity, a) / math.sqrt(fan)


def kaiming_uniform_(t, a=0.0, mode="fan_in", nonlinearity="leaky_relu", rng=None):
    """He uniform; torch's Linear/Conv default is kaiming_uniform_(w, a=sqrt(5))."""
    bound = math.sqrt(3.0) * _kaiming_std(_array(t), a, mode, nonlinearity)
    return uniform_(t, -bound, bound, rng)


def kaiming_normal_(t, a=0.0, mode="fan_in", nonlinearity="leaky_relu", rng=None):
    return normal_(t, 0.0, _kaiming_std(_array(t), a, mode, nonlinearity), rng)


def he_uniform_(t, rng=None):
    return kaiming_uniform_(t, 0.0, "fan_in", "relu", rng)


def he_normal_(t, rng=None):
    return kaiming_normal_(t, 0.0, "fan_in", "relu", rng)


def lecun_uniform_(t, rng=None):
    fan_in, _ = _fans(_array(t))
    bound = math.sqrt(3.0 / fan_in)
    return uniform_(t, -bound, bound, rng)


def lecun_normal_(t, rng=None):
    fan_in, _ = _fans(_array(t))
    return normal_(t, 0.0, math.sqrt(1.0 / fan_in), rng)


def orthogonal_(t, gain=1.0, rng=None):
    """(Semi-)orthogonal matrix via QR of a Gaussian matrix, as torch.nn.init.orthogonal_."""
    arr = _array(t)
    if arr.ndim < 2:
        raise ValueError(f"init.orthogonal_: needs at least 2 dims, got shape {arr.shape}")
    rows = arr.shape[0]
    cols = arr.size // rows
    flat = (rng or default_generator()).normal(0.0, 1.0, size=(rows, cols))
    if rows < cols:
        flat = flat.T
    q, r = np.linalg.qr(flat)
    q *= np.sign(np.diag(r))
    if rows < cols:
        q = q.T
    arr[...] = (gain * q).reshape(arr.shape)
    return t
