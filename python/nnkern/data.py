"""Batching and shuffling for NumPy training loops (``nk.data``).

    loader = nk.data.DataLoader((x, y), batch_size=64, shuffle=True, rng=np.random.default_rng(0))
    for xb, yb in loader: ...

Shuffling uses the generator you pass (default: nnkern's, seeded by ``nk.manual_seed``), so a
seeded run is reproducible. Augmentation is a ``transform(xb, rng) -> xb`` callable applied to the
first array of each batch (see ``nnkern.augment``).
"""

import math

import numpy as np

from .random import default_generator

__all__ = ["ArrayDataset", "DataLoader", "sequence_streams"]


class ArrayDataset:
    """Arrays sharing their first dimension (inputs, targets, ...)."""

    def __init__(self, *arrays):
        if not arrays:
            raise ValueError("ArrayDataset: need at least one array")
        arrays = tuple(np.asarray(a) for a in arrays)
        n = len(arrays[0])
        for i, a in enumerate(arrays):
            if a.ndim == 0 or len(a) != n:
                raise ValueError(f"ArrayDataset: array {i} has shape {a.shape}, expected first dimension {n}")
        self.arrays = arrays

    def __len__(self):
        return len(self.arrays[0])

    def take(self, idx):
        return tuple(np.take(a, idx, axis=0) for a in self.arrays)


class DataLoader:
    """Iterates over mini-batches of an ArrayDataset (or a tuple of arrays).

    batch_size: rows per batch; shuffle: a new permutation every epoch (every ``iter()``);
    drop_last: skip a final short batch; transform: ``f(first_array_batch, rng)`` applied to each
    batch's first array (augmentation); rng: np.random.Generator for shuffling and transforms.
    """

    def __init__(self, data, batch_size=32, shuffle=False, drop_last=False, transform=None, rng=None):
        self.dataset = data if isinstance(data, ArrayDataset) else ArrayDataset(*data)
        if int(batch_size) < 1:
            raise ValueError(f"DataLoader: batch_size must be >= 1, got {batch_size}")
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.transform = transform
        self.rng = rng

    def __len__(self):
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self):
        rng = self.rng if self.rng is not None else default_generator()
        n = len(self.dataset)
        order = rng.permutation(n) if self.shuffle else np.arange(n)
        stop = (n // self.batch_size) * self.batch_size if self.drop_last else n
        for start in range(0, stop, self.batch_size):
            idx = order[start:start + self.batch_size]
            batch = self.dataset.take(idx)
            if self.transform is not None:
                batch = (self.transform(batch[0], rng),) + batch[1:]
            yield batch


def sequence_streams(ids, batch_size, seq_len):
    """Cuts a 1-D token sequence into ``batch_size`` parallel streams for truncated BPTT.

    Yields (x, y) pairs of shape (T, batch_size) with T <= seq_len: stream b is a contiguous
    slice of ``ids``, and consecutive pairs continue each stream where the last one stopped, so the
    recurrent state can be carried from one chunk to the next. y is x shifted by one token.
    """
    ids = np.asarray(ids)
    if ids.ndim != 1:
        raise ValueError(f"sequence_streams: ids has shape {ids.shape}, expected 1-D")
    if batch_size < 1 or seq_len < 1:
        raise ValueError(f"sequence_streams: batch_size and seq_len must be >= 1, got {batch_size}, {seq_len}")
    per_stream = (len(ids) - 1) // batch_size
    if per_stream < 1:
        raise ValueError(f"sequence_streams: {len(ids)} tokens are too few for {batch_size} streams")
    inputs = ids[: per_stream * batch_size].reshape(batch_size, per_stream)
    targets = ids[1: per_stream * batch_size + 1].reshape(batch_size, per_stream)
    for t0 in range(0, per_stream, seq_len):
        t1 = min(per_stream, t0 + seq_len)
        yield np.ascontiguousarray(inputs[:, t0:t1].T), np.ascontiguousarray(targets[:, t0:t1].T)
