"""NumPy twins of the loss kernels (same signatures, maths and reductions as nnkern's, which
follow torch.nn.functional)."""

import numpy as np

__all__ = [
    "mse_loss", "mse_loss_backward", "mse_loss_forward_backward",
    "cross_entropy", "cross_entropy_backward", "cross_entropy_forward_backward",
    "binary_cross_entropy_with_logits", "binary_cross_entropy_with_logits_backward",
    "binary_cross_entropy_with_logits_forward_backward",
]

_REDUCTIONS = ("mean", "sum", "none")


def _check_reduction(reduction, fn):
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{fn}: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def _reduce(loss, reduction, denom=None):
    if reduction == "none":
        return loss
    total = loss.sum(dtype=np.float64)
    if reduction == "sum":
        return float(loss.dtype.type(total))
    d = loss.size if denom is None else denom
    with np.errstate(invalid="ignore", divide="ignore"):
        return float(loss.dtype.type(total / d))


def _grad_scale(grad_output, reduction, n, dtype):
    g = np.asarray(grad_output, dtype=dtype)
    if reduction == "mean":
        with np.errstate(divide="ignore", invalid="ignore"):
            g = (g / np.float64(n)).astype(dtype)
    return g


def _put(r, out):
    if out is None:
        return r
    out[...] = r
    return out


# --- MSE ---------------------------------------------------------------------------------------


def mse_loss(pred, target, reduction="mean"):
    _check_reduction(reduction, "mse_loss")
    d = pred - target
    return _reduce(d * d, reduction)


def mse_loss_backward(pred, target, reduction="mean", grad_output=1.0, out=None):
    _check_reduction(reduction, "mse_loss_backward")
    g = _grad_scale(grad_output, reduction, pred.size, pred.dtype)
    return _put((2 * (pred - target) * g).astype(pred.dtype, copy=False), out)


def mse_loss_forward_backward(pred, target, reduction="mean", grad_output=1.0, out=None):
    loss = mse_loss(pred, target, reduction)
    return loss, mse_loss_backward(pred, target, reduction, grad_output, out)


# --- cross-entropy -----------------------------------------------------------------------------


def _ce_rows(logits, target):
    """(rows (M, C), targets (M,), restore) with the class dim moved last."""
    if logits.ndim == 1:
        z = logits[None, :]
        t = np.asarray(target).reshape(1)

        def restore(a):
            return a.reshape(logits.shape)

        return z, t, restore, ()
    C = logits.shape[1]
    moved = np.moveaxis(logits, 1, -1)
    z = moved.reshape(-1, C)
    t = np.asarray(target).reshape(-1)

    def restore(a):
        return np.moveaxis(a.reshape(moved.shape), -1, 1)

    return z, t, restore, target.shape


def _ce_check_targets(t, C, ignore_index, tshape, fn):
    bad = np.flatnonzero(((t < 0) | (t >= C)) & (t != ignore_index))
    if bad.size:
        pos = np.unravel_index(bad[0], tshape) if tshape else ()
        where = "target[" + ", ".join(str(int(i)) for i in pos) + "]" if tshape else "target"
        raise ValueError(f"{fn}: {where} = {int(t[bad[0]])} is out of range for {C} classes "
                         f"(expected 0 <= target < {C} or ignore_index={ignore_index})")


def _ce_core(logits, target, weight, ignore_index, label_smoothing, fn):
    z, t, restore, tshape = _ce_rows(logits, target)
    M, C = z.shape
    _ce_check_targets(t, C, ignore_index, tshape, fn)
    dtype = logits.dtype
    w = np.ones(C, dtype) if weight is None else weight
    valid = t != ignore_index
    tc = np.where(valid, t, 0)
    shifted = z - z.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    s = e.sum(axis=1, keepdims=True)
    logp = shifted - np.log(s)
    wt = np.where(valid, w[tc], 0).astype(dtype)
    rows = np.arange(M)
    eps = dtype.type(label_smoothing)
    # ignored rows give 0 even when their logits are NaN (torch gathers only the target's log-prob)
    loss = np.where(valid, (1 - eps) * wt * -logp[rows, tc], 0)
    if label_smoothing:
        smooth = -(logp * w).sum(axis=1)
        loss = loss + eps / C * np.where(valid, smooth, 0)
    return dict(loss=loss.astype(dtype), p=e / s, w=w, wt=wt, valid=valid, tc=tc, rows=rows, eps=eps, C=C,
                restore=restore, tshape=tshape)


def _ce_reduce(c, reduction):
    loss = c["loss"]
    if reduction == "none":
        return loss.reshape(c["tshape"])
    return _reduce(loss, reduction, denom=c["wt"].sum(dtype=np.float64))


def _ce_grad(c, reduction, grad_output, dtype):
    eps, C, w, wt = c["eps"], c["C"], c["w"], c["wt"]
    go = np.asarray(grad_output, dtype)
    if reduction == "mean":
        with np.errstate(divide="ignore", invalid="ignore"):
            g = np.full(wt.shape, np.float64(go) / wt.sum(dtype=np.float64), dtype)
    elif go.ndim:
        g = go.reshape(-1)
    else:
        g = np.full(wt.shape, go, dtype)
    g = np.where(c["valid"], g, 0).astype(dtype)
    if eps:
        a = (1 - eps) * wt + eps / C * w.sum()
        grad = c["p"] * (g * a)[:, None] - (g * eps / C)[:, None] * w[None, :]
    else:  # no smoothing terms at all (0 * an infinite weight sum would make every element NaN)
        grad = c["p"] * (g * wt)[:, None]
    grad[c["rows"], c["tc"]] -= g * (1 - eps) * wt
    return c["restore"](grad.astype(dtype))


def cross_entropy(logits, target, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0):
    _check_reduction(reduction, "cross_entropy")
    c = _ce_core(logits, target, weight, ignore_index, label_smoothing, "cross_entropy")
    return _ce_reduce(c, reduction)


def cross_entropy_backward(logits, target, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0,
                           grad_output=1.0, out=None):
    _check_reduction(reduction, "cross_entropy_backward")
    c = _ce_core(logits, target, weight, ignore_index, label_smoothing, "cross_entropy_backward")
    return _put(_ce_grad(c, reduction, grad_output, logits.dtype), out)


def cross_entropy_forward_backward(logits, target, weight=None, ignore_index=-100, reduction="mean",
                                   label_smoothing=0.0, grad_output=1.0, out=None):
    _check_reduction(reduction, "cross_entropy_forward_backward")
    c = _ce_core(logits, target, weight, ignore_index, label_smoothing, "cross_entropy_forward_backward")
    return _ce_reduce(c, reduction), _put(_ce_grad(c, reduction, grad_output, logits.dtype), out)


# --- BCE with logits ---------------------------------------------------------------------------


def _bce_weights(x, weight, pos_weight, fn):
    """weight/pos_weight as arrays of x's dtype (lists are accepted, as by nnkern). torch: their
    broadcast with x must have x's shape (no extra dims)."""
    out = []
    for name, w in (("weight", weight), ("pos_weight", pos_weight)):
        if w is not None:
            w = np.asarray(w, dtype=x.dtype)
            if np.broadcast_shapes(w.shape, np.shape(x)) != np.shape(x):
                raise ValueError(f"{fn}: {name} has shape {w.shape}, which does not broadcast to the shape of x "
                                 f"{np.shape(x)}")
        out.append(w)
    return out


def _bce_loss(x, target, weight, pos_weight):
    sp = np.maximum(-x, 0) + np.log1p(np.exp(-np.abs(x)))  # softplus(-x) = -log(sigmoid(x))
    lw = 1 if pos_weight is None else 1 + (pos_weight - 1) * target
    loss = (1 - target) * x + lw * sp
    if weight is not None:
        loss = loss * weight
    return loss.astype(x.dtype, copy=False)


def _bce_grad(x, target, weight, pos_weight, reduction, grad_output):
    e = np.exp(-np.abs(x))
    sig = np.where(x >= 0, 1, e) / (1 + e)
    if pos_weight is None:
        grad = sig - target
    else:
        grad = (1 + (pos_weight - 1) * target) * sig - pos_weight * target
    if weight is not None:
        grad = grad * weight
    g = _grad_scale(grad_output, reduction, x.size, x.dtype)
    return (grad * g).astype(x.dtype, copy=False)


def binary_cross_entropy_with_logits(x, target, weight=None, pos_weight=None, reduction="mean"):
    _check_reduction(reduction, "binary_cross_entropy_with_logits")
    weight, pos_weight = _bce_weights(x, weight, pos_weight, "binary_cross_entropy_with_logits")
    return _reduce(_bce_loss(x, target, weight, pos_weight), reduction)


def binary_cross_entropy_with_logits_backward(x, target, weight=None, pos_weight=None, reduction="mean",
                                              grad_output=1.0, out=None):
    _check_reduction(reduction, "binary_cross_entropy_with_logits_backward")
    weight, pos_weight = _bce_weights(x, weight, pos_weight, "binary_cross_entropy_with_logits_backward")
    return _put(_bce_grad(x, target, weight, pos_weight, reduction, grad_output), out)


def binary_cross_entropy_with_logits_forward_backward(x, target, weight=None, pos_weight=None, reduction="mean",
                                                      grad_output=1.0, out=None):
    _check_reduction(reduction, "binary_cross_entropy_with_logits_forward_backward")
    weight, pos_weight = _bce_weights(x, weight, pos_weight, "binary_cross_entropy_with_logits_forward_backward")
    loss = _reduce(_bce_loss(x, target, weight, pos_weight), reduction)
    return loss, _put(_bce_grad(x, target, weight, pos_weight, reduction, grad_output), out)
