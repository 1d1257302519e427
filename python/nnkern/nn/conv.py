"""Convolution layers (Conv2d, Conv1d) and Flatten, as torch.nn with explicit backward.

``forward(x)`` keeps a reference to x (the columns are rebuilt from it in backward, never stored);
``backward(dy)`` returns dx and adds the weight and bias gradients into ``.grad`` (the GEMM adds
straight into an existing gradient buffer).
"""

import math

import numpy as np

from .. import _core, init
from ..ops.conv import _ntuple, _spatial_options
from ..ops import conv as F
from .module import Module
from .parameter import Parameter

__all__ = ["Conv2d", "Conv1d", "Flatten"]


class _ConvNd(Module):
    _nd = 2
    _fn = "Conv2d"

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 bias=True, padding_mode="zeros", dtype=np.float32, rng=None):
        super().__init__()
        fn, nd = self._fn, self._nd
        for name, v in (("in_channels", in_channels), ("out_channels", out_channels), ("groups", groups)):
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < (1 if name == "groups" else 0):
                raise ValueError(f"{fn}: {name} must be an int >= {1 if name == 'groups' else 0}, got {v!r}")
        if in_channels % groups != 0:
            raise ValueError(f"{fn}: in_channels={in_channels} is not divisible by groups={groups}")
        if out_channels % groups != 0:
            raise ValueError(f"{fn}: out_channels={out_channels} is not divisible by groups={groups}")
        if padding_mode != "zeros":
            raise ValueError(f"{fn}: padding_mode must be 'zeros' (the only mode nnkern implements), got {padding_mode!r}")
        k = _ntuple(kernel_size, nd, fn, "kernel_size")
        if any(v < 1 for v in k):
            raise ValueError(f"{fn}: kernel_size must be >= 1, got {kernel_size!r}")
        _spatial_options(fn, nd, k, stride, padding, dilation)  # validates the options now, as torch
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size = k
        self.stride = _ntuple(stride, nd, fn, "stride")
        self.padding = padding if isinstance(padding, str) else _ntuple(padding, nd, fn, "padding")
        self.dilation = _ntuple(dilation, nd, fn, "dilation")
        self.groups = int(groups)
        self.padding_mode = padding_mode
        self.weight = Parameter(np.empty((out_channels, in_channels // groups) + k, dtype=dtype))
        if bias:
            self.bias = Parameter(np.empty((out_channels,), dtype=dtype))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters(rng)
        self._x = None
        self._options_key = None
        self._kernel_options = None

    def reset_parameters(self, rng=None):
        """torch's default: kaiming_uniform_(a=sqrt(5)) for the weight, i.e. U(+-1/sqrt(fan_in)),
        and U(+-1/sqrt(fan_in)) for the bias, fan_in = in_channels/groups * prod(kernel_size)."""
        init.kaiming_uniform_(self.weight, a=math.sqrt(5), rng=rng)
        if self.bias is not None:
            fan_in = self.weight.data.size // max(1, self.out_channels)
            bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
            init.uniform_(self.bias, -bound, bound, rng=rng)

    def _normalized_options(self, w):
        """(stride, padding pairs, dilation, groups) as the kernels take them, normalised once and
        reused while the options and the weight shape stay the same (the normalisation is
        pure-Python argument checking: tens of microseconds, per call, on small layers)."""
        key = (self.stride, self.padding, self.dilation, self.groups, w.shape)
        if key != self._options_key:
            fn = "conv2d" if self._nd == 2 else "conv1d"
            self._kernel_options = F.normalize(fn, self._nd, w, self.stride, self.padding, self.dilation,
                                               self.groups)
            self._options_key = key
        return self._kernel_options

    def _check_input(self, x):
        w = self.weight.data
        if not isinstance(x, np.ndarray):
            raise TypeError(f"{self._fn}: input must be a numpy.ndarray, got {type(x).__name__}")
        dims = "(N, C, H, W)" if self._nd == 2 else "(N, C, L)"
        if x.ndim != self._nd + 2 or x.shape[1] != self.in_channels:
            raise ValueError(f"{self._fn}: input has shape {x.shape}, expected {dims} with C = in_channels = "
                             f"{self.in_channels}")
        if x.dtype != w.dtype:
            raise TypeError(f"{self._fn}: input has dtype {x.dtype}, expected {w.dtype} (the dtype of the weight)")

    def forward(self, x):
        self._check_input(x)
        w = self.weight.data
        b = self.bias.data if self.bias is not None else None
        conv = _core._conv2d if self._nd == 2 else _core._conv1d
        y = conv(x, w, b, *self._normalized_options(w), None)  # as F.conv2d / F.conv1d
        self._x = x
        return y

    def backward(self, dy):
        if self._x is None:
            raise RuntimeError(f"{self._fn}.backward called before forward")
        x, w = self._x, self.weight.data
        want_w = self.weight.requires_grad
        want_b = self.bias is not None and self.bias.requires_grad
        gw = gb = None
        acc_w = acc_b = False
        if want_w:
            gw, acc_w = self.weight.grad_target()
        if want_b:
            gb, acc_b = self.bias.grad_target()
        # One kernel call adds both gradients or overwrites both: a freshly installed (empty)
        # buffer next to an accumulating one is zeroed first.
        accumulate = acc_w or acc_b
        if accumulate:
            if want_w and not acc_w:
                gw.fill(0)
            if want_b and not acc_b:
                gb.fill(0)
        backward = _core._conv2d_backward if self._nd == 2 else _core._conv1d_backward
        # as F.conv2d_backward / F.conv1d_backward: (need_dx, need_dw, need_db, dx_out, dw_out, db_out, accumulate)
        dx, _, _ = backward(dy, x, w, *self._normalized_options(w), True, bool(want_w), bool(want_b),
                            None, gw, gb, bool(accumulate))
        return dx

    def extra_repr(self):
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0,) * self._nd:
            s += f", padding={self.padding!r}" if isinstance(self.padding, str) else f", padding={self.padding}"
        if self.dilation != (1,) * self._nd:
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        return s


class Conv2d(_ConvNd):
    """2-D convolution over (N, C, H, W), as torch.nn.Conv2d (padding_mode='zeros').

    weight (out_channels, in_channels/groups, kH, kW), bias (out_channels,); kernel_size, stride,
    padding, dilation: int or pair; padding also 'same' (stride 1) or 'valid'.
    """

    _nd = 2
    _fn = "Conv2d"


class Conv1d(_ConvNd):
    """1-D convolution over (N, C, L), as torch.nn.Conv1d; weight (out_channels, in_channels/groups, kL)."""

    _nd = 1
    _fn = "Conv1d"


class Flatten(Module):
    """Flattens dims start_dim..end_dim into one (a view when the input is contiguous), as torch.nn.Flatten."""

    def __init__(self, start_dim=1, end_dim=-1):
        super().__init__()
        self.start_dim, self.end_dim = int(start_dim), int(end_dim)
        self._shape = None

    def forward(self, x):
        nd = x.ndim
        s = self.start_dim + nd if self.start_dim < 0 else self.start_dim
        e = self.end_dim + nd if self.end_dim < 0 else self.end_dim
        if nd == 0:
            s = e = 0
        if not (0 <= s < max(nd, 1) and 0 <= e < max(nd, 1)) or s > e:
            raise ValueError(f"Flatten: start_dim={self.start_dim}, end_dim={self.end_dim} do not select dims of an "
                             f"input with shape {x.shape}")
        self._shape = x.shape
        if nd == 0:
            return x.reshape(1)
        return x.reshape(x.shape[:s] + (math.prod(x.shape[s:e + 1]),) + x.shape[e + 1:])

    def backward(self, dy):
        if self._shape is None:
            raise RuntimeError("Flatten.backward called before forward")
        return dy.reshape(self._shape)

    def extra_repr(self):
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"
