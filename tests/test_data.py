"""nk.data batching and nk.datasets."""

import numpy as np
import pytest

import nnkern as nk


def test_loader_covers_every_row_once_per_epoch():
    x = np.arange(10 * 3, dtype=np.float32).reshape(10, 3)
    y = np.arange(10)
    loader = nk.data.DataLoader((x, y), batch_size=4, shuffle=True, rng=np.random.default_rng(0))
    assert len(loader) == 3
    seen = np.concatenate([yb for _, yb in loader])
    assert sorted(seen) == list(range(10))
    for xb, yb in loader:
        np.testing.assert_array_equal(xb[:, 0], yb * 3)
    epoch1 = np.concatenate([yb for _, yb in loader])
    epoch2 = np.concatenate([yb for _, yb in loader])
    assert not np.array_equal(epoch1, epoch2)  # reshuffled each epoch


def test_loader_drop_last_and_transform():
    x = np.zeros((10, 2), np.float32)
    y = np.zeros(10, np.int64)
    loader = nk.data.DataLoader((x, y), batch_size=4, drop_last=True, transform=lambda xb, rng: xb + 1)
    batches = list(loader)
    assert len(batches) == len(loader) == 2
    assert all(np.all(xb == 1) for xb, _ in batches)


def test_loader_errors():
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        nk.data.DataLoader((np.zeros((3, 1)), np.zeros(3)), batch_size=0)
    with pytest.raises(ValueError, match=r"array 1 has shape \(4,\), expected first dimension 3"):
        nk.data.DataLoader((np.zeros((3, 1)), np.zeros(4)))


def test_sequence_streams_continue_each_stream():
    ids = np.arange(101)
    chunks = list(nk.data.sequence_streams(ids, batch_size=4, seq_len=10))
    # 100 usable (input, next) pairs -> 4 streams of 25, chunks of 10, 10, 5
    assert [x.shape for x, _ in chunks] == [(10, 4), (10, 4), (5, 4)]
    x = np.concatenate([c[0] for c in chunks])
    y = np.concatenate([c[1] for c in chunks])
    np.testing.assert_array_equal(x[:, 1], np.arange(25, 50))
    np.testing.assert_array_equal(y, x + 1)


def test_digits_dataset():
    x, y = nk.datasets.load_digits()
    assert x.shape == (1797, 1, 8, 8) and x.dtype == np.float32
    assert y.shape == (1797,) and set(np.unique(y)) == set(range(10))
    assert 0.0 <= x.min() and x.max() == 1.0
    xtr, xte, ytr, yte = nk.datasets.train_test_split(x, y, test_fraction=0.25, stratify=y)
    assert len(xtr) + len(xte) == 1797
    assert abs(len(xte) - 0.25 * 1797) < 10
    assert set(np.unique(yte)) == set(range(10))


def test_text_dataset():
    text = nk.datasets.load_text()
    assert text.startswith("First Citizen:") and len(text) > 100_000
