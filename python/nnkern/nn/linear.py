"""Linear (dense) layer: y = x W^T + b, as torch.nn.Linear."""

import math

import numpy as np

from .. import init
from .._core import matmul
from .module import Module
from .parameter import Parameter

__all__ = ["Linear", "Identity"]


class Linear(Module):
    """y = x @ weight.T + bias; weight (out_features, in_features), bias (out_features,).

    Default init as torch: kaiming_uniform_(a=sqrt(5)) for the weight (bound 1/sqrt(in_features)),
    U(-1/sqrt(in), 1/sqrt(in)) for the bias. Input (..., in_features), any leading dims.
    """

    def __init__(self, in_features, out_features, bias=True, dtype=np.float32, rng=None):
        super().__init__()
        if in_features < 0 or out_features < 0:
            raise ValueError(f"Linear: sizes must be >= 0, got in_features={in_features}, out_features={out_features}")
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        self.weight = Parameter(np.empty((out_features, in_features), dtype=dtype))
        if bias:
            self.bias = Parameter(np.empty((out_features,), dtype=dtype))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters(rng)
        self._x = None

    def reset_parameters(self, rng=None):
        init.kaiming_uniform_(self.weight, a=math.sqrt(5), rng=rng)
        if self.bias is not None:
            bound = 1.0 / math.sqrt(self.in_features) if self.in_features > 0 else 0.0
            init.uniform_(self.bias, -bound, bound, rng=rng)

    def forward(self, x):
        w = self.weight.data
        if x.ndim < 1 or x.shape[-1] != self.in_features:
            raise ValueError(f"Linear: input has shape {x.shape}, expected (..., {self.in_features}) "
                             f"(in_features={self.in_features})")
        if x.dtype != w.dtype:
            raise TypeError(f"Linear: input has dtype {x.dtype}, expected {w.dtype} (the dtype of the weight)")
        lead = x.shape[:-1]
        x2 = np.ascontiguousarray(x).reshape(-1, self.in_features)
        y = np.empty((x2.shape[0], self.out_features), dtype=w.dtype)
        if self.bias is not None:
            y[...] = self.bias.data  # the GEMM then adds x W^T on top (beta=1): one pass over y
            matmul(x2, w, out=y, trans_b=True, beta=1.0)
        else:
            matmul(x2, w, out=y, trans_b=True)
        self._x = x2
        return y.reshape(*lead, self.out_features)

    def backward(self, dy):
        if self._x is None:
            raise RuntimeError("Linear.backward called before forward")
        x2 = self._x
        dy2 = np.ascontiguousarray(dy).reshape(-1, self.out_features)
        if dy2.shape[0] != x2.shape[0]:
            raise ValueError(f"Linear.backward: dy has shape {dy.shape}, expected (..., {self.out_features}) "
                             f"with {x2.shape[0]} rows like the last input")
        if self.weight.requires_grad:
            g, acc = self.weight.grad_target()
            matmul(dy2, x2, out=g, trans_a=True, beta=1.0 if acc else 0.0)
        if self.bias is not None and self.bias.requires_grad:
            self.bias.accumulate_grad(dy2.sum(axis=0))
        dx = matmul(dy2, self.weight.data)
        return dx.reshape(*dy.shape[:-1], self.in_features)

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Identity(Module):
    def forward(self, x):
        return x

    def backward(self, dy):
        return dy
