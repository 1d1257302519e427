"""L1 and L2 penalties on parameters, added to the loss and to the gradients.

    penalty = nk.regularization.l2_penalty(model.parameters(), 1e-4)   # after model.backward(...)
    total_loss = loss + penalty

l2_penalty(params, lam) adds lam * w to each gradient and returns 0.5 * lam * sum(w**2), so it is
the same as weight_decay=lam in SGD/Adam (coupled); l1_penalty adds lam * sign(w) and returns
lam * sum(|w|). Call them after backward (gradients exist) and before the optimizer step.
``nk.train.fit(..., l1=..., l2=...)`` applies them to every parameter with more than one dimension
(weights, not biases).
"""

import numpy as np

__all__ = ["l1_penalty", "l2_penalty"]


def _grads(params, name):
    out = []
    for p in params:
        if not getattr(p, "requires_grad", True):
            continue
        g, acc = p.grad_target()
        if not acc:
            g.fill(0)
        out.append((p.data, g))
    return out


def l1_penalty(params, lam):
    """Adds lam * sign(w) to each parameter's gradient; returns lam * sum |w| (a float)."""
    if lam < 0:
        raise ValueError(f"l1_penalty: lam must be >= 0, got {lam}")
    total = 0.0
    for w, g in _grads(params, "l1_penalty"):
        total += float(np.abs(w).sum())
        g += lam * np.sign(w)
    return lam * total


def l2_penalty(params, lam):
    """Adds lam * w to each parameter's gradient; returns 0.5 * lam * sum w**2 (a float)."""
    if lam < 0:
        raise ValueError(f"l2_penalty: lam must be >= 0, got {lam}")
    total = 0.0
    for w, g in _grads(params, "l2_penalty"):
        total += float(np.vdot(w, w))
        g += lam * w
    return 0.5 * lam * total
