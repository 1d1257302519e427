"""NumPy twin of nk.matmul."""

import numpy as np

__all__ = ["matmul"]


def matmul(a, b, out=None, trans_a=False, trans_b=False, *, alpha=1.0, beta=0.0):
    """out = alpha * op(a) @ op(b) + beta * out, with NumPy's matmul."""
    opa = a.T if trans_a else a
    opb = b.T if trans_b else b
    if out is None:
        if beta != 0.0:
            raise ValueError(f"matmul: beta={beta} needs out=")
        res = np.matmul(opa, opb)
        if alpha != 1.0:
            res *= alpha
        return res
    prod = np.matmul(opa, opb)
    if beta == 0.0:
        np.multiply(prod, alpha, out=out)
    else:
        out *= beta
        out += alpha * prod
    return out
