"""Loss kernels: MSE, softmax cross-entropy on logits, binary cross-entropy with logits.

Each loss has ``<loss>(...)`` (the value: a Python float for reduction 'mean'/'sum', an array for
'none'), ``<loss>_backward(..., grad_output=1.0, out=None)`` (the gradient with respect to the
prediction) and ``<loss>_forward_backward(...) -> (loss, grad)``, which computes both in one pass
(what a training step wants). Formulas, defaults and reductions follow torch.nn.functional.
"""

import numpy as np

from .. import _core
from .._core import (
    cross_entropy,
    cross_entropy_backward,
    cross_entropy_forward_backward,
    mse_loss,
    mse_loss_backward,
    mse_loss_forward_backward,
)

__all__ = [
    "mse_loss", "mse_loss_backward", "mse_loss_forward_backward",
    "cross_entropy", "cross_entropy_backward", "cross_entropy_forward_backward",
    "binary_cross_entropy_with_logits", "binary_cross_entropy_with_logits_backward",
    "binary_cross_entropy_with_logits_forward_backward",
]


def _trailing_broadcast(w, x, name, fn):
    """weight/pos_weight in a form the kernel takes: its shape (leading 1s dropped) equal to the
    trailing dims of x, or one element. Other shapes that broadcast to x are expanded (one copy).
    As in torch, the broadcast of w and x must have x's shape: a w with more dims than x (even
    leading 1s, e.g. (1, N, C) for x (N, C)) is refused; torch raises "output with shape ...
    doesn't match the broadcast shape"."""
    if w is None or not isinstance(x, np.ndarray):
        return w
    if not isinstance(w, np.ndarray):
        w = np.asarray(w, dtype=x.dtype)
    try:
        full = np.broadcast_shapes(w.shape, x.shape)
    except ValueError:
        full = None
    if full != x.shape:
        raise ValueError(f"{fn}: {name} has shape {w.shape}, which does not broadcast to the shape of x {x.shape}")
    shape = w.shape
    while shape and shape[0] == 1:
        shape = shape[1:]
    if w.size == 1 or tuple(x.shape[x.ndim - len(shape):]) == shape:
        return w
    return np.ascontiguousarray(np.broadcast_to(w, x.shape))


def binary_cross_entropy_with_logits(x, target, weight=None, pos_weight=None, reduction="mean"):
    """torch.nn.functional.binary_cross_entropy_with_logits on logits ``x`` and targets in [0, 1]:
    loss = weight * ((1 - t) x + (1 + (pos_weight - 1) t) log(1 + exp(-x))), evaluated stably.
    weight and pos_weight broadcast to x (e.g. pos_weight (C,) for x (N, C)). Returns a Python
    float for 'mean'/'sum', an array shaped like x for 'none'."""
    fn = "binary_cross_entropy_with_logits"
    return _core.binary_cross_entropy_with_logits(
        x, target, _trailing_broadcast(weight, x, "weight", fn), _trailing_broadcast(pos_weight, x, "pos_weight", fn),
        reduction)


def binary_cross_entropy_with_logits_backward(x, target, weight=None, pos_weight=None, reduction="mean",
                                              grad_output=1.0, out=None):
    """Gradient of binary_cross_entropy_with_logits with respect to x:
    weight * ((1 + (pos_weight - 1) t) sigmoid(x) - pos_weight t) * grad_output (/ x.size for
    'mean'). grad_output is a number, or for 'none' an array shaped like x. out= may be x."""
    fn = "binary_cross_entropy_with_logits_backward"
    return _core.binary_cross_entropy_with_logits_backward(
        x, target, _trailing_broadcast(weight, x, "weight", fn), _trailing_broadcast(pos_weight, x, "pos_weight", fn),
        reduction, grad_output, out)


def binary_cross_entropy_with_logits_forward_backward(x, target, weight=None, pos_weight=None, reduction="mean",
                                                      grad_output=1.0, out=None):
    """(loss, dx) of binary_cross_entropy_with_logits in one pass over x and target."""
    fn = "binary_cross_entropy_with_logits_forward_backward"
    return _core.binary_cross_entropy_with_logits_forward_backward(
        x, target, _trailing_broadcast(weight, x, "weight", fn), _trailing_broadcast(pos_weight, x, "pos_weight", fn),
        reduction, grad_output, out)
