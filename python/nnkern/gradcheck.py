"""``nk.gradcheck``: compares analytic gradients with central finite differences in float64.

    report = nk.gradcheck(layer, x)                      # a Module: checks dx and every parameter
    report = nk.gradcheck(nk.sigmoid, [x],                # a kernel: give its backward
                          backward=lambda dy, y, x: (nk.sigmoid_backward(dy, y),))

The scalar checked is L = sum(dy * f(inputs)) for a fixed random dy, so every output element
contributes. Inputs and parameters must be float64 (the check is meaningless in float32): convert
a layer with ``layer.to(np.float64)``.
"""

import numpy as np

__all__ = ["gradcheck", "GradcheckReport"]


class GradcheckReport:
    """Per-input (and per-parameter) errors; ``ok`` is True when all are within tolerance."""

    def __init__(self, rows, rtol, atol):
        self.rows = rows  # (name, shape, max_abs_err, max_rel_err, ok)
        self.rtol, self.atol = rtol, atol

    @property
    def ok(self):
        return all(r[4] for r in self.rows)

    def __bool__(self):
        return self.ok

    def __str__(self):
        lines = [f"gradcheck (rtol={self.rtol:g}, atol={self.atol:g}): {'OK' if self.ok else 'FAILED'}",
                 f"{'name':<24} {'shape':<18} {'max abs err':>12} {'max rel err':>12}  ok"]
        for name, shape, abs_err, rel_err, ok in self.rows:
            lines.append(f"{name:<24} {str(shape):<18} {abs_err:12.3e} {rel_err:12.3e}  {'yes' if ok else 'NO'}")
        return "\n".join(lines)

    __repr__ = __str__


def _first(out):
    return out[0] if isinstance(out, tuple) else out


def _numeric(loss, arr, eps):
    g = np.zeros_like(arr)
    flat, gflat = arr.reshape(-1), g.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        fp = loss()
        flat[i] = old - eps
        fm = loss()
        flat[i] = old
        gflat[i] = (fp - fm) / (2 * eps)
    return g


def _compare(name, analytic, numeric, rtol, atol):
    analytic = np.asarray(analytic, dtype=np.float64)
    if analytic.shape != numeric.shape:
        return (name, numeric.shape, np.inf, np.inf, False)
    err = np.abs(analytic - numeric)
    abs_err = float(err.max()) if err.size else 0.0
    rel = err / np.maximum(np.abs(numeric), 1e-12)
    rel_err = float(rel.max()) if rel.size else 0.0
    ok = bool(np.all(err <= atol + rtol * np.abs(numeric)))
    return (name, numeric.shape, abs_err, rel_err, ok)


def gradcheck(fn, inputs, backward=None, eps=1e-6, rtol=1e-4, atol=1e-6, seed=0, raise_exception=False,
              check_params=True):
    """Checks gradients of ``fn`` at ``inputs`` against central differences.

    fn: a Module (its forward/backward are used, and with check_params each parameter's .grad is
        checked too) or a callable ``fn(*inputs) -> output``.
    inputs: an array or a list of arrays (float64); integer arrays (e.g. class targets) are passed
        through unchecked.
    backward: for a plain callable, ``backward(dy, output, *inputs) -> tuple of gradients`` (one per
        float input, None to skip one).
    Returns a GradcheckReport; with raise_exception, raises AssertionError if it is not ok.
    """
    from .nn.module import Module

    if isinstance(inputs, np.ndarray):
        inputs = [inputs]
    inputs = list(inputs)
    float_idx = [i for i, a in enumerate(inputs) if isinstance(a, np.ndarray) and a.dtype.kind == "f"]
    for i in float_idx:
        if inputs[i].dtype != np.float64:
            raise TypeError(f"gradcheck: input {i} has dtype {inputs[i].dtype}; finite differences need float64")
    rng = np.random.default_rng(seed)
    is_module = isinstance(fn, Module)
    forward = fn.forward if is_module else fn

    out = _first(forward(*inputs))
    dy = rng.standard_normal(np.shape(out))

    def loss():
        return float(np.sum(dy * _first(forward(*inputs))))

    params = []
    if is_module:
        params = [(name, p) for name, p in fn.named_parameters() if p.requires_grad]
        for name, p in params:
            if p.data.dtype != np.float64:
                raise TypeError(f"gradcheck: parameter {name} is {p.data.dtype}; call module.to(np.float64) first")
            p.grad = None
        forward(*inputs)
        dx = fn.backward(dy)
        grads = dx if isinstance(dx, tuple) else (dx,)
    else:
        if backward is None:
            raise TypeError("gradcheck: a plain function needs backward=(dy, output, *inputs) -> grads")
        out_full = forward(*inputs)
        grads = backward(dy, out_full, *inputs)
        if not isinstance(grads, tuple):
            grads = (grads,)

    rows = []
    for k, i in enumerate(float_idx):
        if k >= len(grads) or grads[k] is None:
            continue
        num = _numeric(loss, inputs[i], eps)
        rows.append(_compare(f"input {i}", grads[k], num, rtol, atol))
    if is_module and check_params:
        analytic = {name: (None if p.grad is None else p.grad.copy()) for name, p in params}
        for name, p in params:
            num = _numeric(loss, p.data, eps)
            a = analytic[name] if analytic[name] is not None else np.zeros_like(num)
            rows.append(_compare(name, a, num, rtol, atol))
    report = GradcheckReport(rows, rtol, atol)
    if raise_exception and not report.ok:
        raise AssertionError(str(report))
    return report
