"""nn.utils: gradient clipping over Parameters, as torch.nn.utils (through nnkern's kernels)."""

import math

import numpy as np

from ..ops import optim as kernels
from .parameter import Parameter

__all__ = ["clip_grad_norm_", "clip_grad_value_"]


def _grads(parameters, fn):
    if isinstance(parameters, Parameter):
        parameters = [parameters]
    grads = []
    for p in parameters:
        if not isinstance(p, Parameter):
            raise TypeError(f"{fn}: parameters must be Parameters (or an iterable of them), got {type(p).__name__}")
        if p.grad is not None:
            grads.append(p.grad)
    return grads


def _by_dtype(grads):
    groups = {}
    for g in grads:
        groups.setdefault(np.asarray(g).dtype, []).append(g)
    return list(groups.values())


def _combine(norms, p):
    # The norm of per-dtype totals, by the rule of a norm of norms (torch's), with p = 0 counting
    # non-zero arrays, hence summing the per-dtype counts.
    if p == math.inf:
        return max(norms)
    if p == -math.inf:
        return min(norms)
    if p == 0:
        return float(sum(norms))
    return math.fsum(n**p for n in norms) ** (1.0 / p)


def clip_grad_norm_(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False, foreach=None):
    """Scales the gradients of ``parameters`` (a Parameter or an iterable of them; those with
    ``grad`` None are skipped) in place so that their total norm is at most ``max_norm``, and
    returns the total norm before clipping as a float (torch returns a 0-d tensor).

    torch's rule: ``clip_coef = max_norm / (total_norm + 1e-6)``, clamped to at most 1. The norm is
    that of the per-gradient norms, accumulated in float64 (see ``nk.clip_grad_norm``);
    ``error_if_nonfinite=True`` raises RuntimeError on a NaN/inf norm. ``foreach`` is accepted for
    torch compatibility and ignored (the kernel always handles all gradients in one call).
    """
    grads = _grads(parameters, "clip_grad_norm_")
    if not grads:
        return 0.0
    groups = _by_dtype(grads)
    if len(groups) == 1:
        return kernels.clip_grad_norm(grads, max_norm, norm_type, error_if_nonfinite)
    # Mixed float32/float64 gradients: one total over all of them, then one coefficient.
    p = float(norm_type)
    if not float(max_norm) >= 0.0:
        raise ValueError(f"clip_grad_norm_: max_norm must be >= 0 (inf disables clipping), got {max_norm}")
    total = _combine([kernels.grad_norm(g, p) for g in groups], p)
    if error_if_nonfinite and not math.isfinite(total):
        raise RuntimeError(f"clip_grad_norm_: the total norm of order {p} of the gradients is {total} (non-finite), "
                           "so they cannot be clipped; pass error_if_nonfinite=False to scale them by it anyway")
    coef = float(max_norm) / (total + 1e-6)
    if not coef >= 1.0:
        for g in grads:
            np.multiply(g, g.dtype.type(coef), out=g)
    return total


def clip_grad_value_(parameters, clip_value, foreach=None):
    """Clamps the gradients of ``parameters`` in place to ``[-clip_value, clip_value]`` (NaN stays
    NaN); parameters with ``grad`` None are skipped. ``foreach`` is accepted and ignored."""
    for group in _by_dtype(_grads(parameters, "clip_grad_value_")):
        kernels.clip_grad_value(group, clip_value)
