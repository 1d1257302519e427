"""Parameter: a NumPy array with a gradient slot, as torch.nn.Parameter."""

import numpy as np

__all__ = ["Parameter"]


class Parameter:
    """A trainable array. ``.data`` is the array (replaceable); ``.grad`` is None until a backward
    writes it, then an array of the same shape and dtype that backward passes add into (``+=``),
    as in torch. ``zero_grad()`` on a module or optimizer clears it.

    ``requires_grad=False`` freezes the parameter: layers skip its gradient and optimizers skip it.
    """

    __slots__ = ("_data", "grad", "requires_grad", "__weakref__")

    def __init__(self, data, requires_grad=True):
        self.data = data
        self.grad = None
        self.requires_grad = bool(requires_grad)

    @property
    def data(self):
        return self._data

    @data.setter
    def data(self, value):
        if isinstance(value, Parameter):
            value = value.data
        if not isinstance(value, np.ndarray):
            raise TypeError(f"Parameter: data must be a numpy.ndarray, got {type(value).__name__}")
        if value.dtype not in (np.float32, np.float64):
            raise TypeError(f"Parameter: data has dtype {value.dtype}, expected float32 or float64")
        if not value.flags.c_contiguous or not value.flags.writeable:
            # Kernels update parameters in place and never copy them: make the one copy here.
            value = np.array(value, order="C", copy=True)
        self._data = value

    @property
    def shape(self):
        return self._data.shape

    @property
    def dtype(self):
        return self._data.dtype

    @property
    def size(self):
        return self._data.size

    @property
    def ndim(self):
        return self._data.ndim

    def grad_target(self):
        """Where a backward pass should put this parameter's gradient: ``(buffer, accumulate)``.

        If ``.grad`` already holds an array of the right shape/dtype, returns it with
        accumulate=True (add into it: beta=1 in a GEMM). Otherwise installs a fresh, uninitialised
        array as ``.grad`` and returns it with accumulate=False (overwrite it).
        """
        g = self.grad
        if g is not None and g.shape == self._data.shape and g.dtype == self._data.dtype \
                and g.flags.c_contiguous and g.flags.writeable:
            return g, True
        if g is not None:
            raise ValueError(
                f"Parameter: grad has shape {g.shape} and dtype {g.dtype}, expected {self._data.shape} and "
                f"{self._data.dtype} (C-contiguous, writeable) like the parameter")
        g = np.empty_like(self._data)
        self.grad = g
        return g, False

    def accumulate_grad(self, g):
        """Adds ``g`` into ``.grad`` (or makes ``g`` the gradient if there is none yet)."""
        if not self.requires_grad:
            return
        if self.grad is None:
            self.grad = np.array(g, dtype=self._data.dtype, order="C", copy=True)
        else:
            if self.grad.shape != self._data.shape:
                raise ValueError(f"Parameter: grad has shape {self.grad.shape}, expected {self._data.shape}")
            self.grad += g

    def __repr__(self):
        return f"Parameter(shape={self.shape}, dtype={self.dtype}{'' if self.requires_grad else ', frozen'})"

    def __array__(self, dtype=None, copy=None):
        if dtype is not None and dtype != self._data.dtype:
            return self._data.astype(dtype)
        return self._data
