"""NumPy twins of the conv kernels.

``conv2d`` / ``conv2d_backward`` are the im2col + GEMM version a careful NumPy user would write:
the padded input's ``sliding_window_view`` copied into one column matrix (C*kH*kW, N*OH*OW), one
2-D GEMM per group over the whole batch (BLAS), and col2im as a loop over kernel offsets adding
strided slices. ``conv2d_naive`` /
``conv2d_backward_naive`` are an independent formulation (one einsum per kernel offset and group,
no columns) that the tests use to check the twin itself.
"""

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..ops.conv import _ntuple, _spatial_options, normalize

__all__ = [
    "conv2d", "conv2d_backward", "conv1d", "conv1d_backward", "im2col", "col2im", "conv2d_naive",
    "conv2d_backward_naive",
]


def _out_size(n, k, s, pb, pa, d):
    return (n + pb + pa - d * (k - 1) - 1) // s + 1


def _pad(x, p):
    pt, pb, pl, pr = p
    if not any(p):
        return x
    return np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))


def _windows(xp, kh, kw, s, d, oh, ow):
    """Strided view (N, C, kh, kw, OH, OW) of the padded input: element (ki, kj, oh, ow) is
    xp[:, :, oh*sh + ki*dh, ow*sw + kj*dw]."""
    span_h, span_w = d[0] * (kh - 1) + 1, d[1] * (kw - 1) + 1
    win = sliding_window_view(xp, (span_h, span_w), axis=(2, 3))  # (N, C, Hp-sh+1, Wp-sw+1, span_h, span_w)
    win = win[:, :, : (oh - 1) * s[0] + 1: s[0], : (ow - 1) * s[1] + 1: s[1], :: d[0], :: d[1]]
    return win.transpose(0, 1, 4, 5, 2, 3)


def _col2im_add(dxp, dcols, kh, kw, s, d, oh, ow):
    """dxp (N, C, Hp, Wp) += the scatter of dcols (N, C, kh, kw, OH, OW): one strided slice per offset."""
    for ki in range(kh):
        for kj in range(kw):
            h0, w0 = ki * d[0], kj * d[1]
            dxp[:, :, h0: h0 + (oh - 1) * s[0] + 1: s[0], w0: w0 + (ow - 1) * s[1] + 1: s[1]] += dcols[:, :, ki, kj]


def _write(out, value):
    if out is None:
        return np.ascontiguousarray(value)
    out[...] = value
    return out


def _geometry(x, w, s, p, d):
    n, c, h, wd = x.shape
    oc, _, kh, kw = w.shape
    oh = _out_size(h, kh, s[0], p[0], p[1], d[0])
    ow = _out_size(wd, kw, s[1], p[2], p[3], d[1])
    if oh < 1 or ow < 1:
        raise ValueError("conv2d: the kernel must fit inside the padded input")
    return n, c, h, wd, oc, kh, kw, oh, ow


# ---------------------------------------------------------------------------------------------
# im2col + GEMM twin


def im2col(x, kernel_size, stride=1, padding=0, dilation=1, out=None):
    k = _ntuple(kernel_size, 2, "im2col", "kernel_size")
    s, p, d = _spatial_options("im2col", 2, k, stride, padding, dilation)
    n, c = x.shape[:2]
    oh = _out_size(x.shape[2], k[0], s[0], p[0], p[1], d[0])
    ow = _out_size(x.shape[3], k[1], s[1], p[2], p[3], d[1])
    cols = _windows(_pad(x, p), k[0], k[1], s, d, oh, ow).reshape(n, c * k[0] * k[1], oh * ow)
    return _write(out, cols)


def col2im(cols, output_size, kernel_size, stride=1, padding=0, dilation=1, out=None):
    size = _ntuple(output_size, 2, "col2im", "output_size")
    k = _ntuple(kernel_size, 2, "col2im", "kernel_size")
    s, p, d = _spatial_options("col2im", 2, k, stride, padding, dilation)
    n = cols.shape[0]
    c = cols.shape[1] // (k[0] * k[1])
    oh = _out_size(size[0], k[0], s[0], p[0], p[1], d[0])
    ow = _out_size(size[1], k[1], s[1], p[2], p[3], d[1])
    dxp = np.zeros((n, c, size[0] + p[0] + p[1], size[1] + p[2] + p[3]), dtype=cols.dtype)
    _col2im_add(dxp, cols.reshape(n, c, k[0], k[1], oh, ow), k[0], k[1], s, d, oh, ow)
    return _write(out, dxp[:, :, p[0]: p[0] + size[0], p[2]: p[2] + size[1]])


def conv2d(x, w, b=None, stride=1, padding=0, dilation=1, groups=1, out=None):
    s, p, d, g = normalize("conv2d", 2, w, stride, padding, dilation, groups)
    return _write(out, _conv2d(x, w, b, s, p, d, g))


def _conv2d(x, w, b, s, p, d, g):
    n, c, h, wd, oc, kh, kw, oh, ow = _geometry(x, w, s, p, d)
    kg, og = (c // g) * kh * kw, oc // g
    # Columns (K, N*OH*OW): rows (c, ki, kj), one 2-D GEMM per group over the whole batch.
    cols = _windows(_pad(x, p), kh, kw, s, d, oh, ow).transpose(1, 2, 3, 0, 4, 5).reshape(c * kh * kw, n * oh * ow)
    wm = w.reshape(oc, kg)
    y = np.empty((oc, n * oh * ow), dtype=np.result_type(x, w))
    for gi in range(g):
        np.matmul(wm[gi * og:(gi + 1) * og], cols[gi * kg:(gi + 1) * kg], out=y[gi * og:(gi + 1) * og])
    if b is not None:
        y += b.reshape(oc, 1)
    return y.reshape(oc, n, oh, ow).transpose(1, 0, 2, 3)


def conv2d_backward(dy, x, w, stride=1, padding=0, dilation=1, groups=1, need_dx=True, need_dw=True,
                    need_db=True, *, dx_out=None, dw_out=None, db_out=None, accumulate=False):
    s, p, d, g = normalize("conv2d_backward", 2, w, stride, padding, dilation, groups)
    return _conv2d_backward(dy, x, w, s, p, d, g, need_dx, need_dw, need_db, dx_out, dw_out, db_out, accumulate)


def _conv2d_backward(dy, x, w, s, p, d, g, need_dx, need_dw, need_db, dx_out, dw_out, db_out, accumulate):
    n, c, h, wd, oc, kh, kw, oh, ow = _geometry(x, w, s, p, d)
    kg, og = (c // g) * kh * kw, oc // g
    dx = dw = db = None
    if need_db:
        db = dy.sum(axis=(0, 2, 3))
        if db_out is not None:
            db = _accumulate(db_out, db, accumulate)
    if not (need_dw or need_dx):
        return dx, dw, db
    dym = dy.transpose(1, 0, 2, 3).reshape(oc, n * oh * ow)  # (OC, N*P): one copy
    if need_dw:
        cols = _windows(_pad(x, p), kh, kw, s, d, oh, ow).transpose(1, 2, 3, 0, 4, 5).reshape(c * kh * kw, n * oh * ow)
        dw = np.empty((oc, kg), dtype=dy.dtype)
        for gi in range(g):  # dW_g = dy_g cols_g^T: one GEMM per group over the whole batch
            np.matmul(dym[gi * og:(gi + 1) * og], cols[gi * kg:(gi + 1) * kg].T, out=dw[gi * og:(gi + 1) * og])
        dw = dw.reshape(w.shape)
        if dw_out is not None:
            dw = _accumulate(dw_out, dw, accumulate)
    if need_dx:
        wm = w.reshape(oc, kg)
        dcols = np.empty((c * kh * kw, n * oh * ow), dtype=dy.dtype)
        for gi in range(g):  # dcols_g = W_g^T dy_g
            np.matmul(wm[gi * og:(gi + 1) * og].T, dym[gi * og:(gi + 1) * og], out=dcols[gi * kg:(gi + 1) * kg])
        dxp = np.zeros((n, c, h + p[0] + p[1], wd + p[2] + p[3]), dtype=dy.dtype)
        _col2im_add(dxp, dcols.reshape(c, kh, kw, n, oh, ow).transpose(3, 0, 1, 2, 4, 5), kh, kw, s, d, oh, ow)
        dx = _write(dx_out, dxp[:, :, p[0]: p[0] + h, p[2]: p[2] + wd])
    return dx, dw, db


def _accumulate(buf, value, accumulate):
    if accumulate:
        buf += value
    else:
        buf[...] = value
    return buf


# ---------------------------------------------------------------------------------------------
# conv1d through the 2-D twin


def _as2d_options(fn, w, stride, padding, dilation, groups):
    s, p, d, g = normalize(fn, 1, w, stride, padding, dilation, groups)
    return (1, s[0]), (0, 0, p[0], p[1]), (1, d[0]), g


def conv1d(x, w, b=None, stride=1, padding=0, dilation=1, groups=1, out=None):
    s, p, d, g = _as2d_options("conv1d", w, stride, padding, dilation, groups)
    y = _conv2d(x[:, :, None, :], w[:, :, None, :], b, s, p, d, g)
    return _write(out, y[:, :, 0, :])


def conv1d_backward(dy, x, w, stride=1, padding=0, dilation=1, groups=1, need_dx=True, need_dw=True,
                    need_db=True, *, dx_out=None, dw_out=None, db_out=None, accumulate=False):
    s, p, d, g = _as2d_options("conv1d_backward", w, stride, padding, dilation, groups)
    dx, dw, db = _conv2d_backward(dy[:, :, None, :], x[:, :, None, :], w[:, :, None, :], s, p, d, g, need_dx,
                                  need_dw, need_db, None, None, None, False)
    if dx is not None:
        dx = _write(dx_out, dx[:, :, 0, :])
    if dw is not None:
        dw = dw[:, :, 0, :]
        if dw_out is not None:
            dw = _accumulate(dw_out, dw, accumulate)
    if db is not None and db_out is not None:
        db = _accumulate(db_out, db, accumulate)
    return dx, dw, db


# ---------------------------------------------------------------------------------------------
# Naive twin: one einsum per kernel offset and group, no column matrix


def conv2d_naive(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
    s, p, d, g = normalize("conv2d", 2, w, stride, padding, dilation, groups)
    n, c, h, wd, oc, kh, kw, oh, ow = _geometry(x, w, s, p, d)
    xp = _pad(x, p)
    cg, og = c // g, oc // g
    y = np.zeros((n, oc, oh, ow), dtype=np.result_type(x, w))
    for gi in range(g):
        for ki in range(kh):
            for kj in range(kw):
                xs = xp[:, gi * cg:(gi + 1) * cg, ki * d[0]: ki * d[0] + (oh - 1) * s[0] + 1: s[0],
                        kj * d[1]: kj * d[1] + (ow - 1) * s[1] + 1: s[1]]
                y[:, gi * og:(gi + 1) * og] += np.einsum("oc,nchw->nohw", w[gi * og:(gi + 1) * og, :, ki, kj], xs)
    if b is not None:
        y += b.reshape(1, oc, 1, 1)
    return y


def conv2d_backward_naive(dy, x, w, stride=1, padding=0, dilation=1, groups=1):
    s, p, d, g = normalize("conv2d_backward", 2, w, stride, padding, dilation, groups)
    n, c, h, wd, oc, kh, kw, oh, ow = _geometry(x, w, s, p, d)
    xp = _pad(x, p)
    cg, og = c // g, oc // g
    dxp = np.zeros_like(xp)
    dw = np.zeros_like(w)
    for gi in range(g):
        dyg = dy[:, gi * og:(gi + 1) * og]
        for ki in range(kh):
            for kj in range(kw):
                sl = (slice(None), slice(gi * cg, (gi + 1) * cg),
                      slice(ki * d[0], ki * d[0] + (oh - 1) * s[0] + 1, s[0]),
                      slice(kj * d[1], kj * d[1] + (ow - 1) * s[1] + 1, s[1]))
                dw[gi * og:(gi + 1) * og, :, ki, kj] = np.einsum("nohw,nchw->oc", dyg, xp[sl])
                dxp[sl] += np.einsum("oc,nohw->nchw", w[gi * og:(gi + 1) * og, :, ki, kj], dyg)
    dx = dxp[:, :, p[0]: p[0] + h, p[2]: p[2] + wd]
    return dx, dw, dy.sum(axis=(0, 2, 3))
