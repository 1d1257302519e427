"""Embedding lookup and its gradient (a deterministic scatter-add)::

    y = nk.embedding(indices, weight, padding_idx=None)                  # weight[indices]
    dweight = nk.embedding_backward(dy, indices, num_embeddings, padding_idx=None,
                                    out=None, accumulate=False)

``indices`` is an integer array of any shape; every index must be in ``[0, num_embeddings)``
(``ValueError`` names the first bad one and its position). Rows at ``padding_idx`` get no
gradient. ``accumulate=True`` adds into ``out=`` (how the Embedding layer accumulates into
``weight.grad`` without zeroing the whole table first). Each row of the gradient is summed in the
order of the positions, whatever the thread count.
"""

from .._core import embedding, embedding_backward

__all__ = ["embedding", "embedding_backward"]
