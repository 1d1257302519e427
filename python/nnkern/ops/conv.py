"""Convolution (NCHW, torch's layouts and maths): conv2d/conv1d forward and backward, im2col, col2im.

im2col + GEMM in C++ (csrc/nnkern/conv.cc): columns are built per image in reusable per-thread
scratch, so memory stays bounded by ``nk.set_workspace_limit`` whatever the batch size; results are
bitwise identical for any thread count.

Spatial options follow torch: ``stride``, ``padding``, ``dilation`` are an int or one int per
spatial dim; ``padding`` may also be ``'valid'`` (no padding) or ``'same'`` (stride 1; output as
large as the input; when the total padding ``dilation*(k-1)`` is odd the extra element goes after
the input, as torch does).
"""

import numbers

import numpy as np

from .. import _core

__all__ = [
    "conv2d", "conv2d_backward", "conv1d", "conv1d_backward", "im2col", "col2im",
]


# ---------------------------------------------------------------------------------------------
# Argument normalisation (shared with nnkern.reference.conv and nnkern.nn.conv)


def _is_int(v):
    return isinstance(v, (numbers.Integral, np.integer)) and not isinstance(v, (bool, np.bool_))


# Largest stride/padding/dilation/kernel size accepted (the kernels' BLAS dims are 32-bit).
_MAX_OPTION = 2**31 - 1


def _ntuple(value, n, fn, name):
    """An int or a sequence of n ints -> tuple of n Python ints (each at most 2**31 - 1)."""
    if _is_int(value):
        out = (int(value),) * n
    elif isinstance(value, (tuple, list)) and len(value) == n and all(_is_int(v) for v in value):
        out = tuple(int(v) for v in value)
    else:
        want = "an int" if n == 1 else f"an int or a tuple of {n} ints"
        raise TypeError(f"{fn}: {name} must be {want}, got {value!r}")
    if any(v > _MAX_OPTION for v in out):
        raise ValueError(f"{fn}: {name} must be at most {_MAX_OPTION}, got {value!r}")
    return out


def _spatial_options(fn, nd, kernel, stride, padding, dilation):
    """(stride, padding, dilation) as the kernels take them: stride/dilation one int per spatial
    dim, padding (before, after) per dim. `kernel` is the kernel size per dim, or None when the
    weight is malformed (the kernel then reports it; 'same' needs the kernel size)."""
    stride_arg, dilation_arg = stride, dilation
    stride = _ntuple(stride, nd, fn, "stride")
    dilation = _ntuple(dilation, nd, fn, "dilation")
    if any(s < 1 for s in stride):
        raise ValueError(f"{fn}: stride must be >= 1, got {stride_arg!r}")
    if any(d < 1 for d in dilation):
        raise ValueError(f"{fn}: dilation must be >= 1, got {dilation_arg!r}")
    if isinstance(padding, str):
        if padding == "valid":
            pads = (0,) * (2 * nd)
        elif padding == "same":
            if any(s != 1 for s in stride):
                raise ValueError(f"{fn}: padding='same' needs stride 1, got stride={stride_arg!r}")
            pads = []
            for i in range(nd):
                total = dilation[i] * (kernel[i] - 1) if kernel is not None and kernel[i] >= 1 else 0
                pads += [total // 2, total - total // 2]  # the odd element goes after, as torch
            pads = tuple(pads)
        else:
            raise ValueError(f"{fn}: padding must be an int, a tuple of ints, 'same' or 'valid', got {padding!r}")
    else:
        p = _ntuple(padding, nd, fn, "padding")
        if any(v < 0 for v in p):
            raise ValueError(f"{fn}: padding must be >= 0, got {padding!r}")
        pads = tuple(v for v in p for _ in range(2))
    return stride, pads, dilation


def _groups(groups, fn):
    if not _is_int(groups):
        raise TypeError(f"{fn}: groups must be an int, got {groups!r}")
    if groups < 1 or groups > _MAX_OPTION:
        raise ValueError(f"{fn}: groups must be in [1, {_MAX_OPTION}], got {groups}")
    return int(groups)


def _kernel_of(w, nd):
    shape = getattr(w, "shape", None)
    if shape is None or len(shape) != nd + 2:
        return None
    return tuple(int(k) for k in shape[2:])


def normalize(fn, nd, w, stride, padding, dilation, groups):
    """Public for the reference twins and layers: (stride, padding pairs, dilation, groups)."""
    s, p, d = _spatial_options(fn, nd, _kernel_of(w, nd), stride, padding, dilation)
    return s, p, d, _groups(groups, fn)


def _bool(v, fn, name):
    if not isinstance(v, (bool, np.bool_)):
        raise TypeError(f"{fn}: {name} must be a bool, got {v!r}")
    return bool(v)


# ---------------------------------------------------------------------------------------------
# conv2d


def conv2d(x, w, b=None, stride=1, padding=0, dilation=1, groups=1, out=None):
    """2-D convolution (cross-correlation, as torch.nn.functional.conv2d).

    x (N, C, H, W); w (out_channels, C/groups, kH, kW); b (out_channels,) or None; float32 or
    float64, one dtype. Returns y (N, out_channels, OH, OW), written into ``out`` if given
    (C-contiguous, writeable, exact shape and dtype)::

        OH = (H + pad_top + pad_bottom - dilation_h*(kH-1) - 1) // stride_h + 1
    """
    s, p, d, g = normalize("conv2d", 2, w, stride, padding, dilation, groups)
    return _core._conv2d(x, w, b, s, p, d, g, out)


def conv2d_backward(dy, x, w, stride=1, padding=0, dilation=1, groups=1, need_dx=True, need_dw=True,
                    need_db=True, *, dx_out=None, dw_out=None, db_out=None, accumulate=False):
    """Gradients of conv2d: returns (dx, dw, db), None for the ones not asked for.

    dy (N, out_channels, OH, OW) is the gradient of the output; x and w are the forward's inputs
    (the columns are rebuilt from x, never stored). db = dy summed over (N, OH, OW): the bias
    gradient. ``dx_out``/``dw_out``/``db_out`` receive the results in place; with
    ``accumulate=True`` dw and db are added into ``dw_out``/``db_out`` (a parameter's .grad) instead
    of overwriting them. Bitwise identical for any thread count.
    """
    fn = "conv2d_backward"
    s, p, d, g = normalize(fn, 2, w, stride, padding, dilation, groups)
    return _core._conv2d_backward(dy, x, w, s, p, d, g, _bool(need_dx, fn, "need_dx"),
                                  _bool(need_dw, fn, "need_dw"), _bool(need_db, fn, "need_db"),
                                  dx_out, dw_out, db_out, _bool(accumulate, fn, "accumulate"))


# ---------------------------------------------------------------------------------------------
# conv1d (the same kernel with H = kH = 1)


def conv1d(x, w, b=None, stride=1, padding=0, dilation=1, groups=1, out=None):
    """1-D convolution (as torch.nn.functional.conv1d): x (N, C, L), w (out_channels, C/groups, kL),
    b (out_channels,) or None; returns (N, out_channels, OL)."""
    s, p, d, g = normalize("conv1d", 1, w, stride, padding, dilation, groups)
    return _core._conv1d(x, w, b, s, p, d, g, out)


def conv1d_backward(dy, x, w, stride=1, padding=0, dilation=1, groups=1, need_dx=True, need_dw=True,
                    need_db=True, *, dx_out=None, dw_out=None, db_out=None, accumulate=False):
    """Gradients of conv1d: (dx, dw, db) as conv2d_backward."""
    fn = "conv1d_backward"
    s, p, d, g = normalize(fn, 1, w, stride, padding, dilation, groups)
    return _core._conv1d_backward(dy, x, w, s, p, d, g, _bool(need_dx, fn, "need_dx"),
                                  _bool(need_dw, fn, "need_dw"), _bool(need_db, fn, "need_db"),
                                  dx_out, dw_out, db_out, _bool(accumulate, fn, "accumulate"))


# ---------------------------------------------------------------------------------------------
# im2col / col2im (torch.nn.functional.unfold / fold)


def im2col(x, kernel_size, stride=1, padding=0, dilation=1, out=None):
    """Sliding-window columns of x (N, C, H, W): (N, C*kH*kW, OH*OW), row (c, ki, kj), column
    (oh, ow), zeros where the window overlaps the padding. Same layout as torch's F.unfold."""
    fn = "im2col"
    k = _ntuple(kernel_size, 2, fn, "kernel_size")
    s, p, d = _spatial_options(fn, 2, k, stride, padding, dilation)
    return _core._im2col(x, k, s, p, d, out)


def col2im(cols, output_size, kernel_size, stride=1, padding=0, dilation=1, out=None):
    """Inverse scatter of im2col: sums every column entry into the input position it came from.
    cols (N, C*kH*kW, L) -> (N, C, H, W) with (H, W) = output_size. Same as torch's F.fold; it is
    the adjoint of im2col (col2im(dcols) is the gradient of im2col)."""
    fn = "col2im"
    size = _ntuple(output_size, 2, fn, "output_size")
    k = _ntuple(kernel_size, 2, fn, "kernel_size")
    s, p, d = _spatial_options(fn, 2, k, stride, padding, dilation)
    return _core._col2im(cols, size, k, s, p, d, out)
