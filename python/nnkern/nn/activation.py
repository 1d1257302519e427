"""Activation layers, as torch.nn: forward(x) keeps what backward needs (the output y for
ReLU/Sigmoid/Tanh/Softmax/LogSoftmax, the input x for LeakyReLU/PReLU/Softplus/SiLU, like torch's
autograd); backward(dy) returns dx (PReLU also adds its weight gradient into weight.grad)."""

import warnings

import numpy as np

from .. import _core
from .module import Module
from .parameter import Parameter

__all__ = ["ReLU", "LeakyReLU", "PReLU", "Sigmoid", "Tanh", "Softplus", "SiLU", "Softmax", "LogSoftmax"]


def _as_float_array(x, layer):
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{layer}: input must be a numpy.ndarray, got {type(x).__name__}")
    return x


class _Activation(Module):
    """Shared bookkeeping: the saved array and the checks on dy."""

    def __init__(self):
        super().__init__()
        self._saved = None

    def _name(self):
        return type(self).__name__

    def _saved_for_backward(self, dy, what):
        if self._saved is None:
            raise RuntimeError(f"{self._name()}.backward called before forward")
        if not isinstance(dy, np.ndarray):
            raise TypeError(f"{self._name()}.backward: dy must be a numpy.ndarray, got {type(dy).__name__}")
        if dy.shape != self._saved.shape:
            raise ValueError(f"{self._name()}.backward: dy has shape {dy.shape}, expected {self._saved.shape} "
                             f"(the shape of the last forward {what})")
        return self._saved


class ReLU(_Activation):
    """y = max(x, 0). ``inplace=True`` writes y over x (backward needs only y)."""

    def __init__(self, inplace=False):
        super().__init__()
        self.inplace = bool(inplace)

    def forward(self, x):
        x = _as_float_array(x, "ReLU")
        y = _core.relu(x, out=x if self.inplace else None)
        self._saved = y
        return y

    def backward(self, dy):
        return _core.relu_backward(dy, self._saved_for_backward(dy, "output"))

    def extra_repr(self):
        return "inplace=True" if self.inplace else ""


class LeakyReLU(_Activation):
    """y = x if x > 0 else negative_slope * x. ``inplace=True`` writes y over x; its backward then
    uses y, which has the sign of x when negative_slope >= 0 (a negative slope is refused, as torch)."""

    def __init__(self, negative_slope=0.01, inplace=False):
        super().__init__()
        self.negative_slope = float(negative_slope)
        self.inplace = bool(inplace)
        if self.inplace and self.negative_slope < 0:
            raise ValueError(f"LeakyReLU: inplace=True needs negative_slope >= 0 (the backward reads the output), "
                             f"got {self.negative_slope}")

    def forward(self, x):
        x = _as_float_array(x, "LeakyReLU")
        if self.inplace:
            self._saved = _core.leaky_relu(x, self.negative_slope, out=x)
            return self._saved
        self._saved = x
        return _core.leaky_relu(x, self.negative_slope)

    def backward(self, dy):
        what = "output" if self.inplace else "input"
        return _core.leaky_relu_backward(dy, self._saved_for_backward(dy, what), self.negative_slope)

    def extra_repr(self):
        return f"negative_slope={self.negative_slope}" + (", inplace=True" if self.inplace else "")


class PReLU(_Activation):
    """y = x if x > 0 else weight[c] * x, c along dim 1 (channels); weight (num_parameters,)
    initialised to ``init`` as torch.nn.PReLU (num_parameters is 1 or the number of channels)."""

    def __init__(self, num_parameters=1, init=0.25, dtype=np.float32):
        super().__init__()
        if int(num_parameters) < 1:
            raise ValueError(f"PReLU: num_parameters must be >= 1, got {num_parameters}")
        self.num_parameters = int(num_parameters)
        self.weight = Parameter(np.full((self.num_parameters,), init, dtype=dtype))

    def forward(self, x):
        x = _as_float_array(x, "PReLU")
        w = self.weight.data
        if x.dtype != w.dtype:
            raise TypeError(f"PReLU: input has dtype {x.dtype}, expected {w.dtype} (the dtype of the weight)")
        channels = x.shape[1] if x.ndim >= 2 else 1
        if self.num_parameters != 1 and self.num_parameters != channels:
            raise ValueError(f"PReLU: input has shape {x.shape} with {channels} channels in dim 1, expected "
                             f"{self.num_parameters} (num_parameters) or num_parameters=1")
        self._saved = x
        return _core.prelu(x, w)

    def backward(self, dy):
        x = self._saved_for_backward(dy, "input")
        dx, dw = _core.prelu_backward(dy, x, self.weight.data)
        if self.weight.requires_grad:
            self.weight.accumulate_grad(dw)
        return dx

    def extra_repr(self):
        return f"num_parameters={self.num_parameters}"


class Sigmoid(_Activation):
    """y = 1 / (1 + exp(-x))."""

    def forward(self, x):
        self._saved = _core.sigmoid(_as_float_array(x, "Sigmoid"))
        return self._saved

    def backward(self, dy):
        return _core.sigmoid_backward(dy, self._saved_for_backward(dy, "output"))


class Tanh(_Activation):
    """y = tanh(x)."""

    def forward(self, x):
        self._saved = _core.tanh(_as_float_array(x, "Tanh"))
        return self._saved

    def backward(self, dy):
        return _core.tanh_backward(dy, self._saved_for_backward(dy, "output"))


class Softplus(_Activation):
    """y = log(1 + exp(beta x)) / beta, and y = x where beta x > threshold (torch's rule)."""

    def __init__(self, beta=1.0, threshold=20.0):
        super().__init__()
        self.beta = float(beta)
        self.threshold = float(threshold)

    def forward(self, x):
        x = _as_float_array(x, "Softplus")
        self._saved = x
        return _core.softplus(x, self.beta, self.threshold)

    def backward(self, dy):
        return _core.softplus_backward(dy, self._saved_for_backward(dy, "input"), self.beta, self.threshold)

    def extra_repr(self):
        return f"beta={self.beta}, threshold={self.threshold}"


class SiLU(_Activation):
    """y = x * sigmoid(x) (swish)."""

    def forward(self, x):
        x = _as_float_array(x, "SiLU")
        self._saved = x
        return _core.silu(x)

    def backward(self, dy):
        return _core.silu_backward(dy, self._saved_for_backward(dy, "input"))


def _legacy_softmax_dim(ndim, name):
    # torch.nn.Softmax(dim=None): the implicit choice torch still makes (with a warning).
    warnings.warn(f"{name}: implicit dimension choice (dim=None) is deprecated, as in torch; pass dim",
                  UserWarning, stacklevel=3)
    return 0 if ndim in (0, 1, 3) else 1


class Softmax(_Activation):
    """y = softmax(x) along ``dim``. dim=None picks torch's legacy implicit dim (with a warning)."""

    def __init__(self, dim=None):
        super().__init__()
        self.dim = dim

    def _dim(self, x):
        return _legacy_softmax_dim(x.ndim, type(self).__name__) if self.dim is None else self.dim

    def forward(self, x):
        x = _as_float_array(x, type(self).__name__)
        self._dim_used = self._dim(x)
        self._saved = _core.softmax(x, self._dim_used)
        return self._saved

    def backward(self, dy):
        y = self._saved_for_backward(dy, "output")
        return _core.softmax_backward(dy, y, self._dim_used)

    def extra_repr(self):
        return f"dim={self.dim}"


class LogSoftmax(Softmax):
    """y = log_softmax(x) along ``dim`` (dim=None: torch's legacy implicit dim, with a warning)."""

    def forward(self, x):
        x = _as_float_array(x, type(self).__name__)
        self._dim_used = self._dim(x)
        self._saved = _core.log_softmax(x, self._dim_used)
        return self._saved

    def backward(self, dy):
        y = self._saved_for_backward(dy, "output")
        return _core.log_softmax_backward(dy, y, self._dim_used)
