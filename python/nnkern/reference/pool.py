"""NumPy twins of the pooling kernels: what a careful NumPy user writes.

Fixed windows loop over the kH*kW kernel offsets, each a strided view of a padded copy of x
(N, C, OH, OW), combined with whole-array ufuncs; the maths and tie rules are torch's (first
maximum in row-major window order, a NaN propagates with the index of the last NaN; avg divisors
clipped to the padded input or the input, or divisor_override). Adaptive windows loop over the
offsets of the largest window with fancy indexing. Same signatures as the kernels.
"""

import numpy as np

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
    "pool_output_size",
]


def _pair(v, name):
    if isinstance(v, (tuple, list)):
        if len(v) == 1:
            return int(v[0]), int(v[0])
        if len(v) == 2:
            return int(v[0]), int(v[1])
        raise ValueError(f"{name} must be an int or a pair of ints")
    return int(v), int(v)


def pool_output_size(n, k, s, p, d, ceil_mode):
    """torch's pooling_output_shape for one dimension."""
    out = (n + 2 * p - d * (k - 1) - 1 + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode and (out - 1) * s >= n + p:
        out -= 1
    return out


def _as4d(x):
    if x.ndim == 4:
        return x, True
    if x.ndim == 3:
        return x[None], False
    raise ValueError(f"x has {x.ndim} dims, expected 4 (N, C, H, W) or 3 (C, H, W)")


def _geometry(shape, kernel_size, stride, padding, dilation, ceil_mode):
    H, W = shape[-2:]
    k = _pair(kernel_size, "kernel_size")
    s = k if stride is None or (isinstance(stride, (tuple, list)) and len(stride) == 0) else _pair(stride, "stride")
    p = _pair(padding, "padding")
    d = _pair(dilation, "dilation")
    if min(k) < 1 or min(s) < 1 or min(d) < 1 or min(p) < 0:
        raise ValueError("kernel_size, stride, dilation must be >= 1 and padding >= 0")
    if p[0] > k[0] // 2 or p[1] > k[1] // 2:
        raise ValueError("padding must be at most half of kernel_size")
    OH = pool_output_size(H, k[0], s[0], p[0], d[0], ceil_mode)
    OW = pool_output_size(W, k[1], s[1], p[1], d[1], ceil_mode)
    if OH < 1 or OW < 1:
        raise ValueError(f"output size ({OH}, {OW}) is too small")
    return k, s, p, d, OH, OW


def _padded(x4, p, k, s, d, OH, OW, fill):
    """x4 with the padding (and any ceil_mode overhang) materialised as `fill`."""
    N, C, H, W = x4.shape
    Hp = max((OH - 1) * s[0] + (k[0] - 1) * d[0] + 1, p[0] + H)
    Wp = max((OW - 1) * s[1] + (k[1] - 1) * d[1] + 1, p[1] + W)
    if p == (0, 0) and Hp == H and Wp == W:
        return x4, False
    xp = np.full((N, C, Hp, Wp), fill, dtype=x4.dtype)
    xp[:, :, p[0]:p[0] + H, p[1]:p[1] + W] = x4
    return xp, True


def _tap(xp, i, j, s, d, OH, OW):
    """The (N, C, OH, OW) strided view of kernel offset (i, j)."""
    r0, c0 = i * d[0], j * d[1]
    return xp[:, :, r0:r0 + (OH - 1) * s[0] + 1:s[0], c0:c0 + (OW - 1) * s[1] + 1:s[1]]


def _store(res, out):
    if out is None:
        return res
    np.copyto(out, res)
    return out


def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, *, out=None,
               indices_out=None):
    x4, batched = _as4d(np.asarray(x))
    N, C, H, W = x4.shape
    k, s, p, d, OH, OW = _geometry(x4.shape, kernel_size, stride, padding, dilation, ceil_mode)
    xp, padded = _padded(x4, p, k, s, d, OH, OW, -np.inf)
    rows0 = np.arange(OH) * s[0] - p[0]
    cols0 = np.arange(OW) * s[1] - p[1]
    best = np.full((N, C, OH, OW), -np.inf, dtype=x4.dtype)
    idx = np.full((N, C, OH, OW), -1, dtype=np.int64)
    take = np.empty((N, C, OH, OW), dtype=bool)
    for i in range(k[0]):
        r = rows0 + i * d[0]
        for j in range(k[1]):
            c = cols0 + j * d[1]
            v = _tap(xp, i, j, s, d, OH, OW)
            # torch: the first valid element starts the window; later ones replace it when larger,
            # and any NaN replaces it (so the last NaN wins).
            np.greater(v, best, out=take)
            take |= np.isnan(v)
            take |= idx < 0
            if padded:
                take &= ((r >= 0) & (r < H))[:, None] & ((c >= 0) & (c < W))[None, :]
            np.copyto(best, v, where=take)
            np.copyto(idx, np.broadcast_to(r[:, None] * W + c[None, :], idx.shape), where=take)
    if not batched:
        best, idx = best[0], idx[0]
    return _store(best, out), _store(idx, indices_out)


def max_pool2d_backward(dy, indices, x_shape, *, out=None):
    dy = np.asarray(dy)
    indices = np.asarray(indices)
    x_shape = tuple(int(v) for v in x_shape)
    H, W = x_shape[-2:]
    planes = int(np.prod(x_shape[:-2]))
    if indices.shape != dy.shape:
        raise ValueError(f"indices has shape {indices.shape}, expected {dy.shape}")
    ix = indices.reshape(planes, indices.size // planes if planes else 0)  # (-1 fails when planes == 0)
    if ix.size and (ix.min() < 0 or ix.max() >= H * W):
        raise ValueError(f"an index is out of range for an input plane of H*W = {H * W} elements")
    flat = (np.arange(planes, dtype=np.int64)[:, None] * (H * W) + ix).ravel()
    dx = np.bincount(flat, weights=dy.reshape(-1), minlength=planes * H * W)
    return _store(dx.astype(dy.dtype, copy=False).reshape(x_shape), out)


def _avg_divisors(H, W, k, s, p, OH, OW, count_include_pad, divisor_override):
    """(OH, OW) divisors with torch's rules."""

    def axis(n, kk, ss, pp, o):
        start = np.arange(o) * ss - pp
        end = np.minimum(start + kk, n + pp)
        with_pad = end - start
        inside = np.minimum(end, n) - np.maximum(start, 0)
        return with_pad, inside

    hp, hi = axis(H, k[0], s[0], p[0], OH)
    wp, wi = axis(W, k[1], s[1], p[1], OW)
    if divisor_override is not None:
        return np.full((OH, OW), divisor_override, dtype=np.int64)
    return np.outer(hp, wp) if count_include_pad else np.outer(hi, wi)


def avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None, *, out=None):
    x4, batched = _as4d(np.asarray(x))
    N, C, H, W = x4.shape
    k, s, p, d, OH, OW = _geometry(x4.shape, kernel_size, stride, padding, 1, ceil_mode)
    xp, _ = _padded(x4, p, k, s, d, OH, OW, 0)
    acc = np.zeros((N, C, OH, OW), dtype=x4.dtype)
    for i in range(k[0]):
        for j in range(k[1]):
            acc += _tap(xp, i, j, s, d, OH, OW)
    acc /= _avg_divisors(H, W, k, s, p, OH, OW, count_include_pad, divisor_override).astype(x4.dtype)
    return _store(acc if batched else acc[0], out)


def avg_pool2d_backward(dy, x_shape, kernel_size, stride=None, padding=0, ceil_mode=False,
                        count_include_pad=True, divisor_override=None, *, out=None):
    dy = np.asarray(dy)
    x_shape = tuple(int(v) for v in x_shape)
    shape4 = x_shape if len(x_shape) == 4 else (1,) + x_shape
    N, C, H, W = shape4
    k, s, p, d, OH, OW = _geometry(shape4, kernel_size, stride, padding, 1, ceil_mode)
    g = dy.reshape(N, C, OH, OW) / _avg_divisors(H, W, k, s, p, OH, OW, count_include_pad,
                                                 divisor_override).astype(dy.dtype)
    Hp = max((OH - 1) * s[0] + k[0], p[0] + H)
    Wp = max((OW - 1) * s[1] + k[1], p[1] + W)
    dxp = np.zeros((N, C, Hp, Wp), dtype=dy.dtype)
    for i in range(k[0]):
        for j in range(k[1]):
            # within one offset the windows never share an element (stride >= 1), so += is safe
            _tap(dxp, i, j, s, d, OH, OW)[...] += g
    dx = dxp[:, :, p[0]:p[0] + H, p[1]:p[1] + W]
    return _store(np.ascontiguousarray(dx).reshape(x_shape), out)


def _adaptive_output(output_size, H, W):
    if isinstance(output_size, (tuple, list)):
        oh, ow = (output_size[0], output_size[0]) if len(output_size) == 1 else output_size
    else:
        oh = ow = output_size
    return (H if oh is None else int(oh)), (W if ow is None else int(ow))


def _adaptive_windows(n, o):
    i = np.arange(o)
    start = (i * n) // o
    end = ((i + 1) * n + o - 1) // o
    return start, end


def _adaptive_taps(H, W, OH, OW):
    """Yields (rows, cols, valid) per window offset, in row-major order: rows (OH,), cols (OW,)
    clipped into the input, valid (OH, OW)."""
    hs, he = _adaptive_windows(H, OH)
    ws, we = _adaptive_windows(W, OW)
    for i in range(int((he - hs).max(initial=0))):
        rows = hs + i
        vr = rows < he
        for j in range(int((we - ws).max(initial=0))):
            cols = ws + j
            vc = cols < we
            yield np.minimum(rows, H - 1), np.minimum(cols, W - 1), vr[:, None] & vc[None, :]


def adaptive_avg_pool2d(x, output_size, *, out=None):
    x4, batched = _as4d(np.asarray(x))
    N, C, H, W = x4.shape
    OH, OW = _adaptive_output(output_size, H, W)
    acc = np.zeros((N, C, OH, OW), dtype=x4.dtype)
    for rows, cols, valid in _adaptive_taps(H, W, OH, OW):
        acc += np.where(valid, x4[:, :, rows[:, None], cols[None, :]], 0)
    hs, he = _adaptive_windows(H, OH)
    ws, we = _adaptive_windows(W, OW)
    acc /= np.outer(he - hs, we - ws).astype(x4.dtype)
    return _store(acc if batched else acc[0], out)


def adaptive_avg_pool2d_backward(dy, x_shape, *, out=None):
    dy = np.asarray(dy)
    x_shape = tuple(int(v) for v in x_shape)
    H, W = x_shape[-2:]
    OH, OW = dy.shape[-2:]
    planes = int(np.prod(x_shape[:-2]))
    hs, he = _adaptive_windows(H, OH)
    ws, we = _adaptive_windows(W, OW)
    g = dy.reshape(planes, OH, OW) / np.outer(he - hs, we - ws).astype(dy.dtype)
    dx = np.zeros((planes, H, W), dtype=dy.dtype)
    for rows, cols, valid in _adaptive_taps(H, W, OH, OW):
        rr, cc = np.broadcast_arrays(rows[:, None], cols[None, :])
        # windows may share elements (out > in): np.add.at sums repeated targets
        np.add.at(dx, (slice(None), rr[valid], cc[valid]), g[:, valid])
    return _store(dx.reshape(x_shape), out)


def adaptive_max_pool2d(x, output_size, *, out=None, indices_out=None):
    x4, batched = _as4d(np.asarray(x))
    N, C, H, W = x4.shape
    OH, OW = _adaptive_output(output_size, H, W)
    best = np.full((N, C, OH, OW), -np.inf, dtype=x4.dtype)
    idx = np.full((N, C, OH, OW), -1, dtype=np.int64)
    for rows, cols, valid in _adaptive_taps(H, W, OH, OW):
        v = x4[:, :, rows[:, None], cols[None, :]]
        take = ((v > best) | np.isnan(v) | (idx < 0)) & valid
        np.copyto(best, v, where=take)
        np.copyto(idx, np.broadcast_to(rows[:, None] * W + cols[None, :], idx.shape), where=take)
    if not batched:
        best, idx = best[0], idx[0]
    return _store(best, out), _store(idx, indices_out)


def adaptive_max_pool2d_backward(dy, indices, x_shape, *, out=None):
    return max_pool2d_backward(dy, indices, x_shape, out=out)


def global_avg_pool2d(x, *, out=None):
    return adaptive_avg_pool2d(x, 1, out=out)


def global_avg_pool2d_backward(dy, x_shape, *, out=None):
    return adaptive_avg_pool2d_backward(dy, x_shape, out=out)


def global_max_pool2d(x, *, out=None, indices_out=None):
    return adaptive_max_pool2d(x, 1, out=out, indices_out=indices_out)


def global_max_pool2d_backward(dy, indices, x_shape, *, out=None):
    return max_pool2d_backward(dy, indices, x_shape, out=out)
