"""Pooling layers (NCHW), as torch.nn: MaxPool2d, AvgPool2d, AdaptiveAvgPool2d, AdaptiveMaxPool2d.

They have no parameters. ``forward`` keeps what ``backward`` needs (the input shape, and the
argmax indices for max pooling); ``backward(dy)`` returns dx.
"""

from .. import _core
from .module import Module

__all__ = ["MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "AdaptiveMaxPool2d"]


def _tuple2(v):
    return tuple(v) if isinstance(v, (tuple, list)) else v


class _PoolBase(Module):
    def __init__(self):
        super().__init__()
        self._x_shape = None

    def _need_forward(self):
        if self._x_shape is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before forward")
        return self._x_shape


class MaxPool2d(_PoolBase):
    """2-D max pooling; ``forward`` returns y, or (y, indices) with ``return_indices=True``."""

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, return_indices=False, ceil_mode=False):
        super().__init__()
        self.kernel_size = _tuple2(kernel_size)
        self.stride = _tuple2(stride) if stride is not None else self.kernel_size
        self.padding = _tuple2(padding)
        self.dilation = _tuple2(dilation)
        self.return_indices = bool(return_indices)
        self.ceil_mode = bool(ceil_mode)
        self._indices = None

    def forward(self, x):
        y, idx = _core.max_pool2d(x, self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode)
        self._x_shape = x.shape
        self._indices = idx
        return (y, idx) if self.return_indices else y

    def backward(self, dy):
        x_shape = self._need_forward()
        return _core.max_pool2d_backward(dy, self._indices, x_shape)

    def extra_repr(self):
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"dilation={self.dilation}, ceil_mode={self.ceil_mode}")


class AvgPool2d(_PoolBase):
    """2-D average pooling with torch's divisor rules."""

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
                 divisor_override=None):
        super().__init__()
        self.kernel_size = _tuple2(kernel_size)
        self.stride = _tuple2(stride) if stride is not None else self.kernel_size
        self.padding = _tuple2(padding)
        self.ceil_mode = bool(ceil_mode)
        self.count_include_pad = bool(count_include_pad)
        self.divisor_override = divisor_override

    def _args(self):
        return (self.kernel_size, self.stride, self.padding, self.ceil_mode, self.count_include_pad,
                self.divisor_override)

    def forward(self, x):
        y = _core.avg_pool2d(x, *self._args())
        self._x_shape = x.shape
        return y

    def backward(self, dy):
        x_shape = self._need_forward()
        return _core.avg_pool2d_backward(dy, x_shape, *self._args())

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class AdaptiveAvgPool2d(_PoolBase):
    """Average pooling to a fixed output size (int, (h, w), None keeps that input size)."""

    def __init__(self, output_size):
        super().__init__()
        self.output_size = _tuple2(output_size)

    def forward(self, x):
        y = _core.adaptive_avg_pool2d(x, self.output_size)
        self._x_shape = x.shape
        return y

    def backward(self, dy):
        x_shape = self._need_forward()
        return _core.adaptive_avg_pool2d_backward(dy, x_shape)

    def extra_repr(self):
        return f"output_size={self.output_size}"


class AdaptiveMaxPool2d(_PoolBase):
    """Max pooling to a fixed output size; (y, indices) with ``return_indices=True``."""

    def __init__(self, output_size, return_indices=False):
        super().__init__()
        self.output_size = _tuple2(output_size)
        self.return_indices = bool(return_indices)
        self._indices = None

    def forward(self, x):
        y, idx = _core.adaptive_max_pool2d(x, self.output_size)
        self._x_shape = x.shape
        self._indices = idx
        return (y, idx) if self.return_indices else y

    def backward(self, dy):
        x_shape = self._need_forward()
        return _core.adaptive_max_pool2d_backward(dy, self._indices, x_shape)

    def extra_repr(self):
        return f"output_size={self.output_size}"
