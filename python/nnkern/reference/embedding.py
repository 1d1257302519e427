"""NumPy twins of nk.embedding / nk.embedding_backward."""

import numpy as np

__all__ = ["embedding", "embedding_backward"]


def _padding(padding_idx, num_embeddings):
    if padding_idx is None:
        return None
    if not -num_embeddings <= padding_idx < num_embeddings:
        raise ValueError(f"embedding: padding_idx={padding_idx} must be in [-num_embeddings, num_embeddings)")
    return padding_idx % num_embeddings


def embedding(indices, weight, padding_idx=None, *, out=None):
    """weight[indices] (shape indices.shape + (embedding_dim,))."""
    _padding(padding_idx, weight.shape[0])
    return np.take(weight, indices, axis=0, out=out)


def embedding_backward(dy, indices, num_embeddings, padding_idx=None, *, out=None, accumulate=False):
    """Scatter-add of dy's rows into (num_embeddings, embedding_dim), skipping padding_idx."""
    pad = _padding(padding_idx, num_embeddings)
    d = dy.shape[-1]
    if out is None:
        out = np.zeros((num_embeddings, d), dtype=dy.dtype)
    elif not accumulate:
        out.fill(0)
    flat = np.asarray(indices, dtype=np.int64).reshape(-1)
    rows = dy.reshape(flat.size, d)
    if pad is not None:
        keep = flat != pad
        flat, rows = flat[keep], rows[keep]
    np.add.at(out, flat, rows)
    return out
