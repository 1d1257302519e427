"""Batch normalisation and dropout kernels (plus, re-exported from here, the embedding and
image-warp kernels of the same family: ``nnkern.ops.embedding``, ``nnkern.ops.augment``).

Batch norm follows torch (DESIGN.md section 2)::

    y, save_mean, save_invstd = nk.batch_norm(x, running_mean, running_var, weight=None, bias=None,
                                              training=False, momentum=0.1, eps=1e-5)
    dx, dweight, dbias = nk.batch_norm_backward(dy, x, weight, save_mean, save_invstd, training=True)

``x`` is (N, C, *): (N, C), (N, C, L) or (N, C, H, W). Both modes return the statistics the
backward needs, so forward and backward always pair up the same way: in training they are the
batch mean and ``1/sqrt(biased var + eps)`` (and ``running_mean``/``running_var`` are updated in
place with ``momentum``, the variance unbiased); in eval mode they are ``running_mean`` and
``1/sqrt(running_var + eps)``. ``momentum`` is a number; the layers implement torch's
``momentum=None`` (cumulative average) by passing ``1/num_batches_tracked``.

Dropout is inverted dropout with a counter-based mask::

    y, mask = nk.dropout(x, p, seed)          # mask: bool, True where kept; y = x * mask / (1 - p)
    dx = nk.dropout_backward(dy, mask, p)

The mask is a pure function of ``(seed, element index)`` (a keyed 32-bit hash of the index, see
``help(nk.dropout)``), identical for any thread count and SIMD level;
``nnkern.reference.dropout`` reproduces it bit for bit.

All reductions use a fixed partition combined in a fixed order: bitwise identical results for any
number of threads.
"""

from .._core import batch_norm, batch_norm_backward, dropout, dropout_backward
from .augment import *  # noqa: F401,F403
from .augment import __all__ as _augment_all
from .embedding import *  # noqa: F401,F403
from .embedding import __all__ as _embedding_all

__all__ = ["batch_norm", "batch_norm_backward", "dropout", "dropout_backward"] + _embedding_all + _augment_all
