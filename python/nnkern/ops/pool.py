"""2-D pooling (NCHW, float32/float64): max with torch's indices, average, adaptive and global.

All functions take ``x`` shaped (N, C, H, W) or (C, H, W) and follow torch.nn.functional's
arguments and output-size rules (``kernel_size``/``stride``/``padding``/``dilation`` as an int or an
(h, w) pair, ``stride=None`` meaning ``kernel_size``, ``padding <= kernel_size // 2``,
``ceil_mode``). Max pooling returns ``(y, indices)`` with int64 indices ``h*W + w`` within each
(n, c) plane, which the backward pass consumes. Optional ``out=`` (and ``indices_out=``) take
preallocated C-contiguous buffers. Each call runs in parallel over the N*C planes; results do
not depend on the thread count.
"""

import numpy as np

from .._core import (
    adaptive_avg_pool2d,
    adaptive_avg_pool2d_backward,
    adaptive_max_pool2d,
    adaptive_max_pool2d_backward,
    avg_pool2d,
    avg_pool2d_backward,
    max_pool2d,
    max_pool2d_backward,
)

__all__ = [
    "max_pool2d",
    "max_pool2d_backward",
    "avg_pool2d",
    "avg_pool2d_backward",
    "adaptive_avg_pool2d",
    "adaptive_avg_pool2d_backward",
    "adaptive_max_pool2d",
    "adaptive_max_pool2d_backward",
    "global_avg_pool2d",
    "global_avg_pool2d_backward",
    "global_max_pool2d",
    "global_max_pool2d_backward",
]


def global_avg_pool2d(x, *, out=None):
    """Mean over H and W: (N, C, H, W) -> (N, C, 1, 1) (adaptive_avg_pool2d(x, 1))."""
    return adaptive_avg_pool2d(x, 1, out=out)


def _check_global_dy(fn, dy):
    # The adaptive backward takes any output size; the global one's dy is (N, C, 1, 1) or (C, 1, 1).
    # (N, C against x_shape and everything else are checked by the adaptive binding.)
    if isinstance(dy, np.ndarray) and dy.ndim in (3, 4) and dy.shape[-2:] != (1, 1):
        want = ", ".join(str(v) for v in dy.shape[:-2] + (1, 1))
        dims = "(N, C, 1, 1)" if dy.ndim == 4 else "(C, 1, 1)"
        raise ValueError(f"{fn}: dy has shape {dy.shape}, expected ({want}) {dims}: the global pool output is 1x1")


def global_avg_pool2d_backward(dy, x_shape, *, out=None):
    """Gradient of global_avg_pool2d: every element of a plane gets dy / (H*W)."""
    _check_global_dy("global_avg_pool2d_backward", dy)
    return adaptive_avg_pool2d_backward(dy, x_shape, out=out)


def global_max_pool2d(x, *, out=None, indices_out=None):
    """Max over H and W with its index h*W + w: (N, C, H, W) -> (y, indices), each (N, C, 1, 1)."""
    return adaptive_max_pool2d(x, 1, out=out, indices_out=indices_out)


def global_max_pool2d_backward(dy, indices, x_shape, *, out=None):
    """Gradient of global_max_pool2d (same rule as max_pool2d_backward)."""
    _check_global_dy("global_max_pool2d_backward", dy)
    return adaptive_max_pool2d_backward(dy, indices, x_shape, out=out)
