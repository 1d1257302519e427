"""Fused optimizer steps and gradient clipping (functional API, in place on NumPy arrays).

Every step function updates the parameter ``p`` and its state buffers in place, in one pass over
memory, with torch.optim's formulas and defaults (torch 2.13). Conventions shared by all of them:

* ``p`` and every state buffer must be C-contiguous, aligned, writeable arrays of the same float
  dtype (float32 or float64) and the same shape; they are never copied, so a wrong dtype, a
  strided view or a read-only array raises instead of silently updating a copy. ``g`` (the
  gradient) is only read: it must have ``p``'s dtype and shape (a strided ``g`` is copied once).
* No two arguments may share memory (a ``ValueError`` names the pair).
* ``step`` is the 1-based number of the step being taken: torch's ``state['step']`` after its
  increment (1 on the first call).
* State buffers are passed explicitly, under torch's names where the maths needs them: Adam's
  ``m``/``v``/``v_max`` are torch's ``exp_avg``/``exp_avg_sq``/``max_exp_avg_sq``. Start them at
  zero (Adagrad's ``state_sum`` at ``initial_accumulator_value``), as torch does.
* Hyperparameters are checked like torch.optim checks them (``lr >= 0``, ``0 <= beta < 1``, ...)
  and must be finite; a ``ValueError`` names the argument and the value.
* NaN and Inf in the data propagate as IEEE arithmetic says; empty arrays are fine.
* Results are bitwise identical for any thread count and between a ``*_multi`` call and the same
  tensors stepped one by one.

The ``*_multi`` variants take lists (or tuples) of arrays in place of each array argument and
update all tensors in one call (one GIL release; the work of all tensors is split evenly over the
threads). Their ``step`` is one integer or a list with one per tensor. All tensors of one call
share one dtype. A flat arena (one big array holding many parameters) is just a single-tensor call.
"""

from .. import _core

__all__ = [
    "adam_step",
    "adamw_step",
    "sgd_step",
    "adagrad_step",
    "rmsprop_step",
    "adadelta_step",
    "adam_step_multi",
    "adamw_step_multi",
    "sgd_step_multi",
    "adagrad_step_multi",
    "rmsprop_step_multi",
    "adadelta_step_multi",
    "grad_norm",
    "clip_grad_norm",
    "clip_grad_value",
]


def _betas(fn, betas):
    try:
        beta1, beta2 = betas
    except (TypeError, ValueError):
        raise TypeError(f"{fn}: betas must be a pair (beta1, beta2), got {betas!r}") from None
    return beta1, beta2


def adam_step(p, g, m, v, step, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
              decoupled=False, amsgrad=False, v_max=None, maximize=False):
    """One Adam step (torch.optim.Adam), in place on ``p``, ``m``, ``v`` (and ``v_max``).

    ::

        g' = -g if maximize else g
        g' = g' + weight_decay * p                        (Adam: coupled decay, if weight_decay)
        p  = p * (1 - lr * weight_decay)                  (decoupled=True: AdamW's decay instead)
        m  = lerp(m, g', 1 - beta1)                       (exp_avg)
        v  = beta2 * v + (1 - beta2) * g'**2              (exp_avg_sq)
        v_max = max(v_max, v); use v_max for v below     (amsgrad: max over the uncorrected v)
        p  = p - lr / (1 - beta1**step) * m / (sqrt(v) * (1 / sqrt(1 - beta2**step)) + eps)

    (torch divides by ``sqrt(1 - beta2**step)``; multiplying by the reciprocal saves a division
    per element and differs by at most an ulp of the denominator.)

    Args:
        p, g, m, v: parameter, gradient, first and second moment (same shape and dtype).
        step: 1-based number of this step (1 on the first call).
        lr, betas, eps, weight_decay: torch's hyperparameters; eps is added outside the sqrt.
        decoupled: AdamW-style weight decay (see also :func:`adamw_step`).
        amsgrad: keep the running maximum of ``v`` in ``v_max`` (required then, refused otherwise).
        maximize: ascend the objective instead of descending it.
    """
    beta1, beta2 = _betas("adam_step", betas)
    _core._adam_step(p, g, m, v, step, lr, beta1, beta2, eps, weight_decay, decoupled, amsgrad, v_max,
                     maximize)


def adamw_step(p, g, m, v, step, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False,
               v_max=None, maximize=False):
    """One AdamW step (torch.optim.AdamW): :func:`adam_step` with decoupled weight decay
    ``p = p * (1 - lr * weight_decay)`` and torch's AdamW default ``weight_decay=1e-2``."""
    beta1, beta2 = _betas("adamw_step", betas)
    _core._adamw_step(p, g, m, v, step, lr, beta1, beta2, eps, weight_decay, amsgrad, v_max, maximize)


def sgd_step(p, g, momentum_buffer=None, step=None, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0,
             nesterov=False, maximize=False):
    """One SGD step (torch.optim.SGD), in place on ``p`` (and ``momentum_buffer``).

    ::

        g' = -g if maximize else g
        g' = g' + weight_decay * p                        (if weight_decay)
        buf = g'                                          (momentum != 0, step == 1)
        buf = momentum * buf + (1 - dampening) * g'       (momentum != 0, step > 1)
        d = g' + momentum * buf if nesterov else buf      (momentum != 0; else d = g')
        p = p - lr * d

    ``momentum_buffer`` and ``step`` are needed exactly when ``momentum != 0``: on step 1 the
    buffer's old contents are ignored (it may be uninitialised) and it is set to the gradient,
    as torch does when it creates the buffer. Nesterov needs momentum > 0 and dampening == 0.
    """
    _core._sgd_step(p, g, momentum_buffer, step, lr, momentum, dampening, weight_decay, nesterov, maximize)


def adagrad_step(p, g, state_sum, step, lr=1e-2, lr_decay=0.0, weight_decay=0.0, eps=1e-10, maximize=False):
    """One Adagrad step (torch.optim.Adagrad), in place on ``p`` and ``state_sum``.

    ::

        g' = -g if maximize else g
        g' = g' + weight_decay * p                        (if weight_decay)
        state_sum = state_sum + g'**2
        p = p - lr / (1 + (step - 1) * lr_decay) * g' / (sqrt(state_sum) + eps)

    Start ``state_sum`` at torch's ``initial_accumulator_value`` (default 0).
    """
    _core._adagrad_step(p, g, state_sum, step, lr, lr_decay, weight_decay, eps, maximize)


def rmsprop_step(p, g, square_avg, momentum_buffer=None, grad_avg=None, lr=1e-2, alpha=0.99, eps=1e-8,
                 weight_decay=0.0, momentum=0.0, centered=False, maximize=False):
    """One RMSprop step (torch.optim.RMSprop), in place on ``p`` and the state buffers.

    ::

        g' = -g if maximize else g
        g' = g' + weight_decay * p                        (if weight_decay)
        square_avg = alpha * square_avg + (1 - alpha) * g'**2
        grad_avg = lerp(grad_avg, g', 1 - alpha)          (centered)
        avg = sqrt(square_avg - grad_avg**2) + eps        (centered; else sqrt(square_avg) + eps)
        buf = momentum * buf + g' / avg; p = p - lr * buf (momentum > 0)
        p = p - lr * g' / avg                             (otherwise)

    ``momentum_buffer`` is needed exactly when ``momentum > 0``, ``grad_avg`` exactly when
    ``centered``. torch's step counter does not enter RMSprop's maths, so there is no ``step``.
    """
    _core._rmsprop_step(p, g, square_avg, momentum_buffer, grad_avg, lr, alpha, eps, weight_decay, momentum,
                        centered, maximize)


def adadelta_step(p, g, square_avg, acc_delta, lr=1.0, rho=0.9, eps=1e-6, weight_decay=0.0, maximize=False):
    """One Adadelta step (torch.optim.Adadelta), in place on ``p``, ``square_avg``, ``acc_delta``.

    ::

        g' = -g if maximize else g
        g' = g' + weight_decay * p                        (if weight_decay)
        square_avg = rho * square_avg + (1 - rho) * g'**2
        delta = sqrt(acc_delta + eps) / sqrt(square_avg + eps) * g'
        acc_delta = rho * acc_delta + (1 - rho) * delta**2
        p = p - lr * delta

    torch's step counter does not enter Adadelta's maths, so there is no ``step``.
    """
    _core._adadelta_step(p, g, square_avg, acc_delta, lr, rho, eps, weight_decay, maximize)


def adam_step_multi(p, g, m, v, step, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                    decoupled=False, amsgrad=False, v_max=None, maximize=False):
    """:func:`adam_step` over lists of tensors in one call (``step``: an int or one per tensor)."""
    beta1, beta2 = _betas("adam_step_multi", betas)
    _core._adam_step_multi(p, g, m, v, step, lr, beta1, beta2, eps, weight_decay, decoupled, amsgrad, v_max,
                           maximize)


def adamw_step_multi(p, g, m, v, step, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
                     amsgrad=False, v_max=None, maximize=False):
    """:func:`adamw_step` over lists of tensors in one call (``step``: an int or one per tensor)."""
    beta1, beta2 = _betas("adamw_step_multi", betas)
    _core._adamw_step_multi(p, g, m, v, step, lr, beta1, beta2, eps, weight_decay, amsgrad, v_max, maximize)


def sgd_step_multi(p, g, momentum_buffer=None, step=None, lr=1e-3, momentum=0.0, dampening=0.0,
                   weight_decay=0.0, nesterov=False, maximize=False):
    """:func:`sgd_step` over lists of tensors in one call (``step``: an int or one per tensor;
    tensors whose step is 1 get their momentum buffer initialised to the gradient)."""
    _core._sgd_step_multi(p, g, momentum_buffer, step, lr, momentum, dampening, weight_decay, nesterov,
                          maximize)


def adagrad_step_multi(p, g, state_sum, step, lr=1e-2, lr_decay=0.0, weight_decay=0.0, eps=1e-10,
                       maximize=False):
    """:func:`adagrad_step` over lists of tensors in one call (``step``: an int or one per tensor)."""
    _core._adagrad_step_multi(p, g, state_sum, step, lr, lr_decay, weight_decay, eps, maximize)


def rmsprop_step_multi(p, g, square_avg, momentum_buffer=None, grad_avg=None, lr=1e-2, alpha=0.99, eps=1e-8,
                       weight_decay=0.0, momentum=0.0, centered=False, maximize=False):
    """:func:`rmsprop_step` over lists of tensors in one call."""
    _core._rmsprop_step_multi(p, g, square_avg, momentum_buffer, grad_avg, lr, alpha, eps, weight_decay,
                              momentum, centered, maximize)


def adadelta_step_multi(p, g, square_avg, acc_delta, lr=1.0, rho=0.9, eps=1e-6, weight_decay=0.0,
                        maximize=False):
    """:func:`adadelta_step` over lists of tensors in one call."""
    _core._adadelta_step_multi(p, g, square_avg, acc_delta, lr, rho, eps, weight_decay, maximize)


def _array_list(grads):
    # One array is a list of one (an ndarray is a sequence too, so test it first).
    import numpy as np

    if isinstance(grads, np.ndarray):
        return [grads]
    return grads if isinstance(grads, (list, tuple)) else list(grads)


def _real(fn, name, value):
    # float() would also parse strings ('0.1') and take bools: a clip threshold must be a real number.
    if isinstance(value, (str, bytes, bool)) or not hasattr(type(value), "__float__"):
        raise TypeError(f"{fn}: {name} must be a real number, got {type(value).__name__}")
    return float(value)


def grad_norm(grads, norm_type=2.0):
    """The norm of order ``norm_type`` of all elements of ``grads`` (an array or a list of arrays of
    one dtype), as ``torch.nn.utils.clip_grad_norm_`` computes it: the norm of the per-array norms.

    ``norm_type`` is any p torch accepts: ``2.0``, ``1.0``, ``float('inf')`` (max |x|), other
    p > 0, and also ``0`` (number of arrays with a non-zero element, torch's rule), negative p and
    ``-inf`` (min |x|). Sums are accumulated in float64 over fixed chunks combined in order, so the
    result is deterministic for any thread count (and does not overflow for large float32 values,
    where torch's float32 accumulation returns inf). An empty list gives 0.0.
    """
    return _core._grad_norm(_array_list(grads), float(norm_type))


def clip_grad_norm(grads, max_norm, norm_type=2.0, error_if_nonfinite=False):
    """Scales ``grads`` in place so that their total norm is at most ``max_norm``; returns the total
    norm before clipping (a float).

    torch's rule: ``clip_coef = max_norm / (total_norm + 1e-6)`` clamped to at most 1, computed in
    the gradients' dtype, and every gradient multiplied by it. A NaN norm makes every gradient NaN
    (as in torch) unless ``error_if_nonfinite=True``, which raises ``RuntimeError`` on a NaN or
    infinite norm and leaves the gradients untouched. ``grads`` must be writeable C-contiguous
    arrays of one dtype that do not overlap; ``max_norm`` must be >= 0 (inf: never clip).
    """
    return _core._clip_grad_norm(_array_list(grads), _real("clip_grad_norm", "max_norm", max_norm), float(norm_type), bool(error_if_nonfinite))


def clip_grad_value(grads, clip_value):
    """Clamps every element of ``grads`` (an array or a list of arrays, in place) to
    ``[-clip_value, clip_value]``; NaN stays NaN (torch.clamp). ``clip_value`` must be >= 0."""
    _core._clip_grad_value(_array_list(grads), _real("clip_grad_value", "clip_value", clip_value))
