"""Batch normalisation, dropout and embedding layers (torch.nn names, arguments, defaults and
state_dict keys)."""

import numpy as np

from .. import init
from .._core import (
    batch_norm,
    batch_norm_backward,
    dropout,
    dropout_backward,
    embedding,
    embedding_backward,
)
from ..random import default_generator
from .module import Module
from .parameter import Parameter

__all__ = ["BatchNorm1d", "BatchNorm2d", "Dropout", "Embedding"]


class _BatchNorm(Module):
    """Shared code of BatchNorm1d/2d (torch.nn.modules.batchnorm._BatchNorm).

    Parameters ``weight`` (ones) and ``bias`` (zeros) when ``affine``; buffers ``running_mean``
    (zeros), ``running_var`` (ones) and ``num_batches_tracked`` (a 0-d int64 array) when
    ``track_running_stats``. Training mode normalises with the batch statistics and updates the
    running ones (``momentum=None``: cumulative average, factor ``1/num_batches_tracked``); eval
    mode normalises with the running statistics, or with the batch ones when the layer does not
    track running statistics, as torch does.
    """

    _input_rule = ""

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True,
                 dtype=np.float32):
        super().__init__()
        name = type(self).__name__
        if int(num_features) != num_features or num_features < 1:
            raise ValueError(f"{name}: num_features must be a positive int, got {num_features!r}")
        if momentum is not None and not 0.0 <= momentum <= 1.0:
            raise ValueError(f"{name}: momentum must be None or in [0, 1], got {momentum!r}")
        if not eps >= 0.0:
            raise ValueError(f"{name}: eps must be >= 0, got {eps!r}")
        self.num_features = int(num_features)
        self.eps = float(eps)
        self.momentum = momentum
        self.affine = bool(affine)
        self.track_running_stats = bool(track_running_stats)
        if self.affine:
            self.weight = Parameter(np.ones(self.num_features, dtype=dtype))
            self.bias = Parameter(np.zeros(self.num_features, dtype=dtype))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if self.track_running_stats:
            self.register_buffer("running_mean", np.zeros(self.num_features, dtype=dtype))
            self.register_buffer("running_var", np.ones(self.num_features, dtype=dtype))
            self.register_buffer("num_batches_tracked", np.zeros((), dtype=np.int64))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)
        self._saved = None

    def reset_running_stats(self):
        if self.track_running_stats:
            self.running_mean.fill(0)
            self.running_var.fill(1)
            self.num_batches_tracked.fill(0)

    def reset_parameters(self):
        self.reset_running_stats()
        if self.affine:
            init.ones_(self.weight)
            init.zeros_(self.bias)

    def _check_input(self, x):
        raise NotImplementedError

    def _dtype(self):
        if self.weight is not None:
            return self.weight.data.dtype
        if self.running_mean is not None:
            return self.running_mean.dtype
        return None

    def forward(self, x):
        name = type(self).__name__
        if not isinstance(x, np.ndarray):
            raise TypeError(f"{name}: input must be a numpy.ndarray, got {type(x).__name__}")
        self._check_input(x)
        dtype = self._dtype()
        if dtype is not None and x.dtype != dtype:
            raise TypeError(f"{name}: input has dtype {x.dtype}, expected {dtype} (the dtype of the layer; "
                            f"convert the input or call .to({x.dtype.name}) on the layer)")
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked += 1
            factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        use_batch_stats = self.training or (self.running_mean is None and self.running_var is None)
        keep_running = not self.training or self.track_running_stats
        w = None if self.weight is None else self.weight.data
        b = None if self.bias is None else self.bias.data
        y, save_mean, save_invstd = batch_norm(
            x, self.running_mean if keep_running else None, self.running_var if keep_running else None, w, b,
            use_batch_stats, factor, self.eps)
        self._saved = (x, save_mean, save_invstd, use_batch_stats)
        return y

    def backward(self, dy):
        name = type(self).__name__
        if self._saved is None:
            raise RuntimeError(f"{name}.backward called before forward")
        x, save_mean, save_invstd, use_batch_stats = self._saved
        if np.shape(dy) != x.shape:
            raise ValueError(f"{name}.backward: dy has shape {np.shape(dy)}, expected {x.shape} (the shape of the "
                             f"last input)")
        w = None if self.weight is None else self.weight.data
        dx, dweight, dbias = batch_norm_backward(dy, x, w, save_mean, save_invstd, use_batch_stats)
        if self.affine:
            self.weight.accumulate_grad(dweight)
            self.bias.accumulate_grad(dbias)
        return dx

    def extra_repr(self):
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"track_running_stats={self.track_running_stats}")


class BatchNorm1d(_BatchNorm):
    """Batch norm over (N, C) or (N, C, L) input, as torch.nn.BatchNorm1d."""

    def _check_input(self, x):
        if x.ndim not in (2, 3) or x.shape[1] != self.num_features:
            raise ValueError(f"BatchNorm1d: input has shape {x.shape}, expected (N, {self.num_features}) or "
                             f"(N, {self.num_features}, L) (num_features={self.num_features})")


class BatchNorm2d(_BatchNorm):
    """Batch norm over (N, C, H, W) input, as torch.nn.BatchNorm2d."""

    def _check_input(self, x):
        if x.ndim != 4 or x.shape[1] != self.num_features:
            raise ValueError(f"BatchNorm2d: input has shape {x.shape}, expected (N, {self.num_features}, H, W) "
                             f"(num_features={self.num_features})")


class Dropout(Module):
    """Inverted dropout, as torch.nn.Dropout: in training, zeroes each element with probability p
    and scales the rest by 1/(1-p); in eval mode the identity.

    Every training forward draws a fresh seed from ``rng`` (default: nnkern's generator, seeded
    by ``nk.manual_seed``), so runs are reproducible and masks do not depend on the thread count.
    ``inplace=True`` writes the result into the input array.
    """

    def __init__(self, p=0.5, inplace=False, rng=None):
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"Dropout: p must be in [0, 1], got {p!r}")
        self.p = float(p)
        self.inplace = bool(inplace)
        self.rng = rng
        self._mask = None
        self._mask_buf = None

    def forward(self, x):
        if not self.training or self.p == 0.0:
            self._mask = None
            return x
        seed = int((self.rng or default_generator()).integers(0, 2**63))
        buf = self._mask_buf
        if buf is None or buf.shape != np.shape(x):
            buf = None
        y, mask = dropout(x, self.p, seed, out=x if self.inplace else None, mask_out=buf)
        self._mask = self._mask_buf = mask
        return y

    def backward(self, dy):
        if self._mask is None:
            return dy
        if np.shape(dy) != self._mask.shape:
            raise ValueError(f"Dropout.backward: dy has shape {np.shape(dy)}, expected {self._mask.shape} (the "
                             f"shape of the last input)")
        return dropout_backward(dy, self._mask, self.p)

    def extra_repr(self):
        return f"p={self.p}, inplace={self.inplace}"


class Embedding(Module):
    """A lookup table, as torch.nn.Embedding: ``weight`` (num_embeddings, embedding_dim), initialised
    N(0, 1) with the ``padding_idx`` row zeroed. forward(indices) -> weight[indices]; backward(dy)
    adds the scatter-added gradient into ``weight.grad`` (nothing for the padding row) and returns
    None (indices have no gradient).
    """

    def __init__(self, num_embeddings, embedding_dim, padding_idx=None, dtype=np.float32, rng=None):
        super().__init__()
        if int(num_embeddings) != num_embeddings or num_embeddings < 1:
            raise ValueError(f"Embedding: num_embeddings must be a positive int, got {num_embeddings!r}")
        if int(embedding_dim) != embedding_dim or embedding_dim < 0:
            raise ValueError(f"Embedding: embedding_dim must be an int >= 0, got {embedding_dim!r}")
        self.num_embeddings = int(num_embeddings)
        self.embedding_dim = int(embedding_dim)
        if padding_idx is not None:
            if not -self.num_embeddings <= padding_idx < self.num_embeddings:
                raise ValueError(f"Embedding: padding_idx={padding_idx} must be within num_embeddings "
                                 f"(in [-{self.num_embeddings}, {self.num_embeddings}))")
            padding_idx = int(padding_idx) % self.num_embeddings
        self.padding_idx = padding_idx
        self.weight = Parameter(np.empty((self.num_embeddings, self.embedding_dim), dtype=dtype))
        self.reset_parameters(rng)
        self._indices = None

    @classmethod
    def from_pretrained(cls, embeddings, freeze=True, padding_idx=None):
        """A layer holding a copy of ``embeddings`` (2-D), frozen unless ``freeze=False``."""
        embeddings = np.asarray(embeddings)
        if embeddings.ndim != 2:
            raise ValueError(f"Embedding.from_pretrained: embeddings must be 2-D, got shape {embeddings.shape}")
        layer = cls(embeddings.shape[0], embeddings.shape[1], padding_idx=padding_idx, dtype=embeddings.dtype)
        layer.weight.data[...] = embeddings
        layer.weight.requires_grad = not freeze
        return layer

    def reset_parameters(self, rng=None):
        init.normal_(self.weight, rng=rng)
        if self.padding_idx is not None:
            self.weight.data[self.padding_idx] = 0

    def forward(self, indices):
        indices = np.asarray(indices)
        if indices.dtype.kind not in "iu":
            raise TypeError(f"Embedding: indices have dtype {indices.dtype}, expected an integer dtype (int64)")
        y = embedding(indices, self.weight.data, self.padding_idx)
        self._indices = indices
        return y

    def backward(self, dy):
        if self._indices is None:
            raise RuntimeError("Embedding.backward called before forward")
        expected = self._indices.shape + (self.embedding_dim,)
        if np.shape(dy) != expected:
            raise ValueError(f"Embedding.backward: dy has shape {np.shape(dy)}, expected {expected} "
                             f"(indices.shape + (embedding_dim,))")
        if self.weight.requires_grad:
            g, acc = self.weight.grad_target()
            embedding_backward(dy, self._indices, self.num_embeddings, self.padding_idx, out=g, accumulate=acc)
        return None

    def extra_repr(self):
        s = f"{self.num_embeddings}, {self.embedding_dim}"
        return s + (f", padding_idx={self.padding_idx}" if self.padding_idx is not None else "")
