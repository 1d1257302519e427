"""NumPy twins of the batch-norm and dropout kernels (and, re-exported, of the embedding and
affine-warp kernels in reference/embedding.py and reference/augment.py).

Same signatures and maths as ``nk.batch_norm`` / ``nk.dropout`` ...: what a careful NumPy user
would write (vectorised, in place where it helps). ``dropout`` reproduces the kernel's
counter-based mask exactly.
"""

import numpy as np

from .augment import *  # noqa: F401,F403
from .augment import __all__ as _augment_all
from .embedding import *  # noqa: F401,F403
from .embedding import __all__ as _embedding_all

__all__ = ["batch_norm", "batch_norm_backward", "dropout", "dropout_backward", "dropout_mask", "dropout_keys"] + \
    _embedding_all + _augment_all


def _channel_view(x):
    """(axes reduced per channel, broadcast shape of a per-channel vector, values per channel)."""
    if x.ndim < 2:
        raise ValueError(f"batch_norm: x has {x.ndim} dims, expected at least 2 (N, C, ...)")
    axes = (0,) + tuple(range(2, x.ndim))
    bshape = (1, x.shape[1]) + (1,) * (x.ndim - 2)
    count = x.size // x.shape[1] if x.shape[1] else 0
    return axes, bshape, count


def batch_norm(x, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5,
               *, out=None, save_mean_out=None, save_invstd_out=None):
    """Returns (y, save_mean, save_invstd); updates running_mean/running_var in place in training."""
    axes, bshape, count = _channel_view(x)
    if momentum is None:
        raise ValueError("batch_norm: momentum=None is handled by the BatchNorm layers")
    if training:
        if count == 1:
            raise ValueError("batch_norm: expected more than 1 value per channel when training")
        if count == 0:
            # empty batch: nothing to normalise; zero save_mean/save_invstd and the running statistics
            # left alone (torch.nn.functional.batch_norm accepts an empty batch and leaves them too)
            mean = np.zeros(x.shape[1], x.dtype)
            xmu = x - mean.reshape(bshape)
            invstd = np.zeros(x.shape[1], x.dtype)
        else:
            mean = x.mean(axis=axes)
            xmu = x - mean.reshape(bshape)
            var = np.square(xmu).mean(axis=axes)
            invstd = 1.0 / np.sqrt(var + eps)
        if running_mean is not None and count > 0:
            running_mean *= 1.0 - momentum
            running_mean += momentum * mean
            running_var *= 1.0 - momentum
            running_var += momentum * var * (count / (count - 1))
    else:
        if running_mean is None:
            raise ValueError("batch_norm: running_mean and running_var are required when training=False")
        mean = running_mean.copy()
        xmu = x - mean.reshape(bshape)
        invstd = 1.0 / np.sqrt(running_var + eps)
    mean = mean.astype(x.dtype, copy=False)
    invstd = invstd.astype(x.dtype, copy=False)
    scale = invstd if weight is None else invstd * weight
    y = np.multiply(xmu, scale.reshape(bshape), out=xmu)
    if bias is not None:
        y += bias.reshape(bshape)
    if out is not None:
        out[...] = y
        y = out
    if save_mean_out is not None:
        save_mean_out[...] = mean
        mean = save_mean_out
    if save_invstd_out is not None:
        save_invstd_out[...] = invstd
        invstd = save_invstd_out
    return y, mean, invstd


def batch_norm_backward(dy, x, weight, save_mean, save_invstd, training=True, *, out=None, dweight_out=None,
                        dbias_out=None):
    """Returns (dx, dweight, dbias) with torch's formulas (see nk.batch_norm_backward)."""
    # torch's evaluation order (it decides what NaN/Inf statistics or weights give):
    # dx = (dy - (x - mean) * k - mean(dy)) * weight * invstd, k = invstd^2 * sum(dy (x - mean)) / n.
    axes, bshape, count = _channel_view(x)
    xmu = x - save_mean.reshape(bshape)
    dbias = dy.sum(axis=axes)
    dotp = (dy * xmu).sum(axis=axes)
    # an empty batch has empty sums: dweight 0 whatever save_invstd holds
    dweight = dotp * save_invstd if count > 0 else np.zeros_like(dotp)
    s = save_invstd if weight is None else weight * save_invstd
    if training and count > 0:
        k = dotp * save_invstd * save_invstd / count
        dx = dy - xmu * k.reshape(bshape)
        dx -= (dbias / count).reshape(bshape)
        dx *= s.reshape(bshape)
    else:
        dx = dy * s.reshape(bshape)
    if out is not None:
        out[...] = dx
        dx = out
    if dweight_out is not None:
        dweight_out[...] = dweight
        dweight = dweight_out
    if dbias_out is not None:
        dbias_out[...] = dbias
        dbias = dbias_out
    return dx, dweight, dbias


_MASK64 = (1 << 64) - 1


def _splitmix_mix(z):
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def dropout_keys(seed, block):
    """(k0, k1): the two 32-bit keys of a 2**32-element block (see nk.dropout)."""
    key = _splitmix_mix((seed + (block + 1) * 0x9E3779B97F4A7C15) & _MASK64)
    return key & 0xFFFFFFFF, key >> 32


def _mix32(x):
    """lowbias32, in place on a uint32 array (multiplications wrap mod 2**32)."""
    x ^= x >> np.uint32(16)
    x *= np.uint32(0x7FEB352D)
    x ^= x >> np.uint32(15)
    x *= np.uint32(0x846CA68B)
    x ^= x >> np.uint32(16)
    return x


def _threshold(p):
    if p <= 0:
        return 0
    if p >= 1:
        return 1 << 32
    return int(np.floor(p * 4294967296.0 + 0.5))


def dropout_mask(shape, p, seed):
    """The kernel's keep-mask (True = kept): element i = block * 2**32 + c is dropped when
    mix32(mix32(c + k0) ^ k1) < round(p * 2**32), with (k0, k1) = dropout_keys(seed, block)."""
    n = int(np.prod(shape, dtype=np.int64))
    thr = _threshold(p)
    keep = np.zeros(n, dtype=bool)
    if thr >= 1 << 32:
        return keep.reshape(shape)
    for start in range(0, n, 1 << 32):
        k0, k1 = dropout_keys(int(seed), start >> 32)
        c = np.arange(min(n - start, 1 << 32), dtype=np.uint32)
        c += np.uint32(k0)
        bits = _mix32(c)
        bits ^= np.uint32(k1)
        bits = _mix32(bits)
        keep[start:start + bits.size] = bits >= np.uint32(thr)
    return keep.reshape(shape)


def dropout(x, p, seed, *, out=None, mask_out=None):
    """Returns (y, mask) with y = x * (mask ? 1/(1-p) : 0) (all zero scale when p == 1)."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout: p must be in [0.0, 1.0], got {p!r}")
    mask = dropout_mask(x.shape, p, seed)
    scale = x.dtype.type(0.0 if _threshold(p) >= 1 << 32 else 1.0 / (1.0 - p))
    y = np.multiply(x, np.where(mask, scale, x.dtype.type(0)), out=out)
    if mask_out is not None:
        mask_out[...] = mask
        mask = mask_out
    return y, mask


def dropout_backward(dy, mask, p, *, out=None):
    scale = dy.dtype.type(0.0 if _threshold(p) >= 1 << 32 else 1.0 / (1.0 - p))
    return np.multiply(dy, np.where(mask, scale, dy.dtype.type(0)), out=out)
