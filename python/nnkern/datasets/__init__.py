"""Small real data sets bundled with nnkern (see datasets/data/README.md for their sources)."""

import gzip
import os

import numpy as np

__all__ = ["load_digits", "load_text", "train_test_split"]

_DATA = os.path.join(os.path.dirname(__file__), "data")


def load_digits(dtype=np.float32, scale=True, as_images=True):
    """The 1,797 UCI handwritten digits: returns (x, y).

    x: (1797, 1, 8, 8) images (or (1797, 64) with as_images=False), scaled to [0, 1] when scale;
    y: int64 labels 0-9.
    """
    with gzip.open(os.path.join(_DATA, "digits.csv.gz"), "rt") as f:
        raw = np.loadtxt(f, delimiter=",", dtype=np.float64)
    x = raw[:, :64]
    y = raw[:, 64].astype(np.int64)
    if scale:
        x = x / 16.0
    x = x.astype(dtype)
    if as_images:
        x = x.reshape(-1, 1, 8, 8)
    return np.ascontiguousarray(x), y


def load_text(path=None):
    """A text corpus as a str: the file at ``path``, or the bundled Shakespeare excerpt (~120 KB)."""
    if path is not None:
        with open(path, "r", encoding="utf-8") as f:
            return f.read()
    with gzip.open(os.path.join(_DATA, "shakespeare_excerpt.txt.gz"), "rt", encoding="utf-8") as f:
        return f.read()


def train_test_split(*arrays, test_fraction=0.2, rng=None, stratify=None):
    """Shuffles and splits arrays along axis 0: returns train/test pairs for each array.

    With ``stratify`` (class labels), each class is split in the same proportion.
    """
    if not arrays:
        raise ValueError("train_test_split: need at least one array")
    n = len(arrays[0])
    for a in arrays:
        if len(a) != n:
            raise ValueError(f"train_test_split: arrays have different lengths ({len(a)} vs {n})")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"train_test_split: test_fraction must be in (0, 1), got {test_fraction}")
    rng = rng if rng is not None else np.random.default_rng(0)
    if stratify is None:
        perm = rng.permutation(n)
        n_test = int(round(n * test_fraction))
        test_idx, train_idx = perm[:n_test], perm[n_test:]
    else:
        stratify = np.asarray(stratify)
        test_parts, train_parts = [], []
        for cls in np.unique(stratify):
            idx = rng.permutation(np.flatnonzero(stratify == cls))
            k = int(round(len(idx) * test_fraction))
            test_parts.append(idx[:k])
            train_parts.append(idx[k:])
        test_idx = rng.permutation(np.concatenate(test_parts))
        train_idx = rng.permutation(np.concatenate(train_parts))
    out = []
    for a in arrays:
        out.extend([a[train_idx], a[test_idx]])
    return out
