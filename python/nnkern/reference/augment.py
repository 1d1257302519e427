"""NumPy twin of nk.affine_warp (same conventions: see nnkern.ops.augment)."""

import numpy as np

__all__ = ["affine_warp", "theta_to_pixel"]


def theta_to_pixel(theta, in_hw, out_hw):
    """torch affine_grid thetas (N, 2, 3) (align_corners=False) -> pixel-index matrices."""
    (h, w), (ho, wo) = in_hw, out_hw
    ho, wo = max(ho, 1), max(wo, 1)
    t = np.array(theta, dtype=np.float64)
    a = np.empty_like(t)
    for r, s in ((0, float(w)), (1, float(h))):
        t0, t1, t2 = t[..., r, 0], t[..., r, 1], t[..., r, 2]
        a[..., r, 0] = s * t0 / wo
        a[..., r, 1] = s * t1 / ho
        a[..., r, 2] = 0.5 * s * (t0 * (1.0 / wo - 1.0) + t1 * (1.0 / ho - 1.0) + t2) + 0.5 * (s - 1.0)
    return a


def affine_warp(x, matrices, out_shape=None, fill=0.0, *, out=None, mode="bilinear", normalized=False,
                padding_mode="fill"):
    n, c, h, w = x.shape
    ho, wo = (h, w) if out_shape is None else out_shape
    a = np.broadcast_to(np.asarray(matrices, dtype=np.float64), (n, 2, 3))
    if normalized:
        a = theta_to_pixel(a, (h, w), (ho, wo))
    jj = np.arange(wo, dtype=np.float64)[None, None, :]
    ii = np.arange(ho, dtype=np.float64)[None, :, None]
    ix = a[:, 0, 0, None, None] * jj + (a[:, 0, 1, None, None] * ii + a[:, 0, 2, None, None])
    iy = a[:, 1, 0, None, None] * jj + (a[:, 1, 1, None, None] * ii + a[:, 1, 2, None, None])
    if padding_mode == "border" and h > 0 and w > 0:
        ix, iy = np.clip(ix, 0, w - 1), np.clip(iy, 0, h - 1)
    elif padding_mode not in ("fill", "border"):
        raise ValueError(f"affine_warp: padding_mode must be 'fill' or 'border', got {padding_mode!r}")
    if mode not in ("bilinear", "nearest"):
        raise ValueError(f"affine_warp: mode must be 'bilinear' or 'nearest', got {mode!r}")
    if h * w == 0:
        # an empty image: every output pixel lies outside it and reads as `fill`
        y = np.full((n, c, ho, wo), fill, dtype=x.dtype)
        if out is not None:
            out[...] = y
            return out
        return y
    flat = x.reshape(n, c, h * w)

    def sample(cx, cy):
        """Pixel values at integer (cx, cy) (N, Ho, Wo) for every channel, and where they exist."""
        valid = (cx >= 0) & (cx < w) & (cy >= 0) & (cy < h)
        off = np.where(valid, cy * w + cx, 0).astype(np.intp).reshape(n, 1, ho * wo)
        vals = np.take_along_axis(flat, np.broadcast_to(off, (n, c, ho * wo)), axis=2)
        return vals.reshape(n, c, ho, wo), valid[:, None]

    if mode == "nearest":
        vals, valid = sample(np.rint(ix), np.rint(iy))
        y = np.where(valid, vals, x.dtype.type(fill))
    elif mode == "bilinear":
        x0, y0 = np.floor(ix), np.floor(iy)
        fx, fy = ix - x0, iy - y0
        y = np.zeros((n, c, ho, wo), dtype=np.float64)
        for dx, dy, wgt in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)), (0, 1, (1 - fx) * fy),
                            (1, 1, fx * fy)):
            vals, valid = sample(x0 + dx, y0 + dy)
            wgt = wgt[:, None]
            y += np.where(valid, vals * wgt, fill * wgt)
    else:
        raise ValueError(f"affine_warp: mode must be 'bilinear' or 'nearest', got {mode!r}")
    y = y.astype(x.dtype, copy=False)
    if out is not None:
        out[...] = y
        return out
    return y
