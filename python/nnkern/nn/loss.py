"""Loss modules, as torch.nn: ``loss = crit(pred, target)`` returns a Python float (reduction
'mean'/'sum') or an array ('none'); ``dpred = crit.backward()`` returns the gradient of the last
call's loss with respect to pred.

In training mode the forward runs the fused forward+backward kernel (one pass over pred), so the
backward only hands back the gradient it already has; in eval mode the forward computes the loss
alone and a later backward computes the gradient from the saved inputs.
"""

import numpy as np

from .. import _core
from ..ops import loss as _ops
from .module import Module

__all__ = ["MSELoss", "CrossEntropyLoss", "BCEWithLogitsLoss"]

_REDUCTIONS = ("mean", "sum", "none")


class _Loss(Module):
    def __init__(self, reduction="mean"):
        super().__init__()
        if reduction not in _REDUCTIONS:
            raise ValueError(f"{type(self).__name__}: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
        self.reduction = reduction
        self._inputs = None  # what the last forward saw, for a backward that must recompute
        self._grad = None  # the gradient the fused forward produced (for grad_output = 1)

    def __call__(self, pred, target):
        return self.forward(pred, target)

    def _check_arrays(self, pred, target):
        name = type(self).__name__
        if not isinstance(pred, np.ndarray):
            raise TypeError(f"{name}: input must be a numpy.ndarray, got {type(pred).__name__}")
        if not isinstance(target, np.ndarray):
            raise TypeError(f"{name}: target must be a numpy.ndarray, got {type(target).__name__}")

    def _buffer_as(self, name, dtype):
        """A weight buffer in the computing dtype (converted, and kept, when it differs)."""
        b = getattr(self, name)
        if b is not None and b.dtype != dtype:
            b = b.astype(dtype)
            self.register_buffer(name, b)
        return b

    def forward(self, pred, target):
        self._check_arrays(pred, target)
        self._check_shapes(pred, target)
        args = self._kernel_args(pred)
        self._inputs = (pred, target, args)
        if self.training:
            loss, self._grad = self._fused(pred, target, *args)
        else:
            loss, self._grad = self._loss(pred, target, *args), None
        return loss

    def backward(self, grad_output=None):
        """Gradient of the last forward's loss with respect to pred, times grad_output (a number;
        for reduction='none' also an array shaped like the loss; None means 1)."""
        if self._inputs is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before forward")
        pred, target, args = self._inputs
        grad, self._grad = self._grad, None  # handed out once; a second call recomputes
        if grad is None:
            g = 1.0 if grad_output is None else grad_output
            return self._backward(pred, target, *args, g)
        if grad_output is None:
            return grad
        g = np.asarray(grad_output, dtype=grad.dtype)
        if g.ndim == 0:
            if g != 1:
                grad *= g
            return grad
        if self.reduction != "none":
            raise ValueError(f"{type(self).__name__}.backward: grad_output must be a scalar for "
                             f"reduction={self.reduction!r}, got an array of shape {g.shape}")
        return self._scale_by_loss_shaped(grad, g)

    def _scale_by_loss_shaped(self, grad, g):
        if g.shape != grad.shape:
            raise ValueError(f"{type(self).__name__}.backward: grad_output has shape {g.shape}, expected "
                             f"{grad.shape} (the shape of the loss for reduction='none')")
        grad *= g
        return grad

    def extra_repr(self):
        return f"reduction={self.reduction!r}"


class MSELoss(_Loss):
    """mean((pred - target)^2) (or the sum, or elementwise for reduction='none')."""

    def _check_shapes(self, pred, target):
        if pred.shape != target.shape:
            raise ValueError(f"MSELoss: target has shape {target.shape}, expected {pred.shape} "
                             f"(the shape of the input)")

    def _kernel_args(self, pred):
        return ()

    def _fused(self, pred, target):
        return _core.mse_loss_forward_backward(pred, target, self.reduction)

    def _loss(self, pred, target):
        return _core.mse_loss(pred, target, self.reduction)

    def _backward(self, pred, target, g):
        return _core.mse_loss_backward(pred, target, self.reduction, g)


class CrossEntropyLoss(_Loss):
    """Softmax cross-entropy on logits (N, C) or (N, C, d1, ...) with int64 class targets (N,) or
    (N, d1, ...), as torch.nn.CrossEntropyLoss: class ``weight`` (C,), ``ignore_index``,
    ``label_smoothing``. The forward in training mode also computes the gradient (fused kernel)."""

    def __init__(self, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0):
        super().__init__(reduction)
        self.register_buffer("weight", None if weight is None else np.array(weight, copy=True))
        self.ignore_index = int(ignore_index)
        self.label_smoothing = float(label_smoothing)
        if not 0.0 <= self.label_smoothing <= 1.0:
            raise ValueError(f"CrossEntropyLoss: label_smoothing must be in [0.0, 1.0], got {label_smoothing}")

    def _check_shapes(self, logits, target):
        if logits.ndim == 1:
            expected = ()
        elif logits.ndim >= 2:
            expected = (logits.shape[0],) + tuple(logits.shape[2:])
        else:
            raise ValueError(f"CrossEntropyLoss: input has shape {logits.shape}, expected (N, C), (N, C, d1, ...) "
                             f"or (C,)")
        if target.shape != expected:
            raise ValueError(f"CrossEntropyLoss: target has shape {target.shape}, expected {expected} for input of "
                             f"shape {logits.shape}")

    def _kernel_args(self, logits):
        return (self._buffer_as("weight", logits.dtype),)

    def _fused(self, logits, target, weight):
        return _core.cross_entropy_forward_backward(logits, target, weight, self.ignore_index, self.reduction,
                                                    self.label_smoothing)

    def _loss(self, logits, target, weight):
        return _core.cross_entropy(logits, target, weight, self.ignore_index, self.reduction, self.label_smoothing)

    def _backward(self, logits, target, weight, g):
        return _core.cross_entropy_backward(logits, target, weight, self.ignore_index, self.reduction,
                                            self.label_smoothing, g)

    def _scale_by_loss_shaped(self, grad, g):
        pred, target, _ = self._inputs
        if g.shape != target.shape:
            raise ValueError(f"CrossEntropyLoss.backward: grad_output has shape {g.shape}, expected {target.shape} "
                             f"(the shape of the loss for reduction='none')")
        grad *= g.reshape(g.shape[:1] + (1,) + g.shape[1:]) if grad.ndim > 1 else g
        return grad

    def extra_repr(self):
        extra = f", ignore_index={self.ignore_index}" if self.ignore_index != -100 else ""
        if self.label_smoothing:
            extra += f", label_smoothing={self.label_smoothing}"
        return super().extra_repr() + extra


class BCEWithLogitsLoss(_Loss):
    """Binary cross-entropy on logits, as torch.nn.BCEWithLogitsLoss: ``weight`` and ``pos_weight``
    broadcast against the input (e.g. pos_weight (C,) for input (N, C))."""

    def __init__(self, weight=None, reduction="mean", pos_weight=None):
        super().__init__(reduction)
        self.register_buffer("weight", None if weight is None else np.array(weight, copy=True))
        self.register_buffer("pos_weight", None if pos_weight is None else np.array(pos_weight, copy=True))

    def _check_shapes(self, pred, target):
        if pred.shape != target.shape:
            raise ValueError(f"BCEWithLogitsLoss: target has shape {target.shape}, expected {pred.shape} "
                             f"(the shape of the input)")

    def _kernel_args(self, pred):
        return (self._buffer_as("weight", pred.dtype), self._buffer_as("pos_weight", pred.dtype))

    def _fused(self, pred, target, weight, pos_weight):
        return _ops.binary_cross_entropy_with_logits_forward_backward(pred, target, weight, pos_weight,
                                                                      self.reduction)

    def _loss(self, pred, target, weight, pos_weight):
        return _ops.binary_cross_entropy_with_logits(pred, target, weight, pos_weight, self.reduction)

    def _backward(self, pred, target, weight, pos_weight, g):
        return _ops.binary_cross_entropy_with_logits_backward(pred, target, weight, pos_weight, self.reduction, g)
