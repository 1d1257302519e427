"""NumPy twins of the optim kernels: same signatures and maths, plain NumPy.

Written the way a careful NumPy user would: in place with ``out=`` ufuncs and one scratch array
(``scratch=``, allocated if not given), about a dozen passes over memory per Adam step where the
fused kernel makes one. The effective gradient ``g' = (-g if maximize else g) + weight_decay * p``
is a fresh array only when it differs from ``g``. Rounding may differ from the kernels by a few
ulp (e.g. ``lerp`` is evaluated as ``g' + beta1 * (m - g')``); the maths is the same.
"""

import math

import numpy as np

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


def _effective_grad(p, g, weight_decay, maximize):
    """g' = (-g if maximize else g) + weight_decay * p; g itself when nothing changes."""
    # np.asarray: for a 0-d p, numpy returns a scalar, which cannot be an out= array
    if weight_decay != 0:
        gp = np.asarray(np.multiply(p, weight_decay))
        return np.subtract(gp, g, out=gp) if maximize else np.add(gp, g, out=gp)
    return np.asarray(np.negative(g)) if maximize else g


def _lerp_(a, b, w, s):
    """a = torch.lerp(a, b, w) in place, with torch's two formulas: a + w * (b - a) for |w| < 0.5,
    else b - (b - a) * (1 - w). (The one-formula b + (1 - w) * (a - b) gives inf - inf = NaN for
    a finite a and an infinite b where torch gives the infinity.) s: scratch of a's shape."""
    np.subtract(b, a, out=s)
    if abs(w) < 0.5:
        s *= w
        a += s
    else:
        s *= 1 - w
        np.subtract(b, s, out=a)


def _scratch(p, scratch):
    return np.empty_like(p) if scratch is None else scratch


def adam_step(p, g, m, v, step, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, decoupled=False,
              amsgrad=False, v_max=None, maximize=False, *, scratch=None):
    beta1, beta2 = betas
    s = _scratch(p, scratch)
    gp = _effective_grad(p, g, 0.0 if decoupled else weight_decay, maximize)
    if decoupled and weight_decay != 0:
        p *= 1 - lr * weight_decay
    _lerp_(m, gp, 1 - beta1, s)  # m = lerp(m, g', 1 - beta1)
    # v = beta2 * v + (1 - beta2) * g'^2
    v *= beta2
    np.multiply(gp, gp, out=s)
    s *= 1 - beta2
    v += s
    if amsgrad:
        np.maximum(v_max, v, out=v_max)
        v = v_max
    # p -= lr / bc1 * m / (sqrt(v) * (1 / sqrt(bc2)) + eps)
    np.sqrt(v, out=s)
    s *= 1 / math.sqrt(1 - beta2**step)
    s += eps
    np.divide(m, s, out=s)
    s *= lr / (1 - beta1**step)
    p -= s


def adamw_step(p, g, m, v, step, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False,
               v_max=None, maximize=False, *, scratch=None):
    adam_step(p, g, m, v, step, lr, betas, eps, weight_decay, True, amsgrad, v_max, maximize, scratch=scratch)


def sgd_step(p, g, momentum_buffer=None, step=None, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0,
             nesterov=False, maximize=False, *, scratch=None):
    s = _scratch(p, scratch)
    gp = _effective_grad(p, g, weight_decay, maximize)
    d = gp
    if momentum != 0:
        buf = momentum_buffer
        if step == 1:
            np.copyto(buf, gp)
        else:
            buf *= momentum
            if dampening == 0:
                buf += gp
            else:
                np.multiply(gp, 1 - dampening, out=s)
                buf += s
        if nesterov:
            d = np.asarray(np.multiply(buf, momentum))
            d += gp
        else:
            d = buf
    np.multiply(d, lr, out=s)
    p -= s


def adagrad_step(p, g, state_sum, step, lr=1e-2, lr_decay=0.0, weight_decay=0.0, eps=1e-10, maximize=False, *,
                 scratch=None):
    s = _scratch(p, scratch)
    gp = _effective_grad(p, g, weight_decay, maximize)
    np.multiply(gp, gp, out=s)
    state_sum += s
    np.sqrt(state_sum, out=s)
    s += eps
    np.divide(gp, s, out=s)
    s *= lr / (1 + (step - 1) * lr_decay)
    p -= s


def rmsprop_step(p, g, square_avg, momentum_buffer=None, grad_avg=None, lr=1e-2, alpha=0.99, eps=1e-8,
                 weight_decay=0.0, momentum=0.0, centered=False, maximize=False, *, scratch=None):
    s = _scratch(p, scratch)
    gp = _effective_grad(p, g, weight_decay, maximize)
    square_avg *= alpha
    np.multiply(gp, gp, out=s)
    s *= 1 - alpha
    square_avg += s
    if centered:
        _lerp_(grad_avg, gp, 1 - alpha, s)  # grad_avg = lerp(grad_avg, g', 1 - alpha)
        np.multiply(grad_avg, grad_avg, out=s)
        np.subtract(square_avg, s, out=s)
        np.sqrt(s, out=s)
    else:
        np.sqrt(square_avg, out=s)
    s += eps
    np.divide(gp, s, out=s)
    if momentum > 0:
        momentum_buffer *= momentum
        momentum_buffer += s
        np.multiply(momentum_buffer, lr, out=s)
    else:
        s *= lr
    p -= s


def adadelta_step(p, g, square_avg, acc_delta, lr=1.0, rho=0.9, eps=1e-6, weight_decay=0.0, maximize=False, *,
                  scratch=None):
    s = _scratch(p, scratch)
    gp = _effective_grad(p, g, weight_decay, maximize)
    square_avg *= rho
    np.multiply(gp, gp, out=s)
    s *= 1 - rho
    square_avg += s
    # delta = sqrt(acc_delta + eps) / sqrt(square_avg + eps) * g'
    delta = np.asarray(np.add(acc_delta, eps))  # an array even for a 0-d acc_delta (out= below)
    np.sqrt(delta, out=delta)
    np.add(square_avg, eps, out=s)
    np.sqrt(s, out=s)
    delta /= s
    delta *= gp
    acc_delta *= rho
    np.multiply(delta, delta, out=s)
    s *= 1 - rho
    acc_delta += s
    delta *= lr
    p -= delta


def _per_tensor(step, k):
    return list(step) if isinstance(step, (list, tuple)) else [step] * k


def _none_list(x, k):
    return [None] * k if x is None else x


def adam_step_multi(p, g, m, v, step, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, decoupled=False,
                    amsgrad=False, v_max=None, maximize=False):
    for i, (pi, gi, mi, vi, si, xi) in enumerate(zip(p, g, m, v, _per_tensor(step, len(p)), _none_list(v_max, len(p)))):
        adam_step(pi, gi, mi, vi, si, lr, betas, eps, weight_decay, decoupled, amsgrad, xi, maximize)


def adamw_step_multi(p, g, m, v, step, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False,
                     v_max=None, maximize=False):
    adam_step_multi(p, g, m, v, step, lr, betas, eps, weight_decay, True, amsgrad, v_max, maximize)


def sgd_step_multi(p, g, momentum_buffer=None, step=None, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0,
                   nesterov=False, maximize=False):
    k = len(p)
    for pi, gi, bi, si in zip(p, g, _none_list(momentum_buffer, k), _per_tensor(step, k)):
        sgd_step(pi, gi, bi, si, lr, momentum, dampening, weight_decay, nesterov, maximize)


def adagrad_step_multi(p, g, state_sum, step, lr=1e-2, lr_decay=0.0, weight_decay=0.0, eps=1e-10, maximize=False):
    for pi, gi, si, ti in zip(p, g, state_sum, _per_tensor(step, len(p))):
        adagrad_step(pi, gi, si, ti, lr, lr_decay, weight_decay, eps, maximize)


def rmsprop_step_multi(p, g, square_avg, momentum_buffer=None, grad_avg=None, lr=1e-2, alpha=0.99, eps=1e-8,
                       weight_decay=0.0, momentum=0.0, centered=False, maximize=False):
    k = len(p)
    for pi, gi, qi, bi, ai in zip(p, g, square_avg, _none_list(momentum_buffer, k), _none_list(grad_avg, k)):
        rmsprop_step(pi, gi, qi, bi, ai, lr, alpha, eps, weight_decay, momentum, centered, maximize)


def adadelta_step_multi(p, g, square_avg, acc_delta, lr=1.0, rho=0.9, eps=1e-6, weight_decay=0.0, maximize=False):
    for pi, gi, qi, ai in zip(p, g, square_avg, acc_delta):
        adadelta_step(pi, gi, qi, ai, lr, rho, eps, weight_decay, maximize)


def _as_list(grads):
    return [grads] if isinstance(grads, np.ndarray) else list(grads)


def _vector_norm(x, p):
    """torch.linalg.vector_norm of a float64 vector (an empty one: 0, or inf for p = -inf or p < 0)."""
    if x.size == 0:
        return math.inf if (p < 0) else 0.0
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        return float(np.linalg.norm(x, ord=p))


def grad_norm(grads, norm_type=2.0):
    """Norm of the per-array norms (torch's clip_grad_norm_ rule), in float64."""
    grads = _as_list(grads)
    if not grads:
        return 0.0
    p = float(norm_type)
    norms = np.array([_vector_norm(np.asarray(x, dtype=np.float64).ravel(), p) for x in grads])
    return _vector_norm(norms, p)


def clip_grad_norm(grads, max_norm, norm_type=2.0, error_if_nonfinite=False):
    grads = _as_list(grads)
    if not grads:
        return 0.0
    total = grad_norm(grads, norm_type)
    if error_if_nonfinite and not math.isfinite(total):
        raise RuntimeError(f"clip_grad_norm: the total norm of order {float(norm_type)} of the gradients is "
                           f"{total} (non-finite)")
    t = grads[0].dtype.type
    with np.errstate(all="ignore"):
        coef = t(max_norm) / (t(total) + t(1e-6))
    if coef > 1:
        coef = t(1)
    for x in grads:
        x *= coef
    return total


def clip_grad_value(grads, clip_value):
    for x in _as_list(grads):
        np.clip(x, -clip_value, clip_value, out=x)
