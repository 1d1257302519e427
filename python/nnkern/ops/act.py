"""Activation kernels: forward and backward passes with torch's formulas and conventions.

Backward passes take what torch's autograd saves: the output ``y`` for sigmoid, tanh, relu,
softmax and log_softmax; the input ``x`` for leaky_relu, prelu, softplus and silu. Every function
takes float32 or float64 arrays, accepts ``out=`` (which may be the input itself for an in-place
activation, or ``dy`` for an in-place backward) and gives identical bits for any thread count.
The exp/log/tanh used inside are nnkern's own vectorised versions (a few ulp from libm).
"""

from .._core import (
    leaky_relu,
    leaky_relu_backward,
    log_softmax,
    log_softmax_backward,
    prelu,
    prelu_backward,
    relu,
    relu_backward,
    sigmoid,
    sigmoid_backward,
    silu,
    silu_backward,
    softmax,
    softmax_backward,
    softplus,
    softplus_backward,
    tanh,
    tanh_backward,
)

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
