"""nk.embedding / nk.embedding_backward and nn.Embedding against the twin, torch, finite differences."""

import numpy as np
import pytest

import nnkern as nk
from nnkern import reference as ref
from conftest import assert_bitwise_equal, assert_close, nan_filled, num_threads, numerical_grad, requires_torch, torch


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("v,d,ishape", [(1, 1, (3,)), (10, 7, (4, 5)), (17, 16, (2, 3, 4)), (100, 33, (65,)),
                                        (5, 0, (3,)), (7, 3, ()), (9, 8, (0, 4))])
@pytest.mark.parametrize("padding_idx", [None, 0, -1])
def test_matches_twin(rng, v, d, ishape, dtype, padding_idx):
    w = rng.standard_normal((v, d)).astype(dtype)
    idx = rng.integers(0, v, ishape)
    y = nk.embedding(idx, w, padding_idx)
    assert y.shape == ishape + (d,) and y.dtype == dtype
    assert_bitwise_equal(y, ref.embedding(idx, w, padding_idx))
    dy = rng.standard_normal(ishape + (d,)).astype(dtype)
    dw = nk.embedding_backward(dy, idx, v, padding_idx)
    assert_close(dw, ref.embedding_backward(dy, idx, v, padding_idx), dtype)
    if padding_idx is not None and d:
        assert np.all(dw[padding_idx % v] == 0)


@pytest.mark.parametrize("accumulate", [False, True])
def test_out_and_accumulate(rng, accumulate):
    v, d = 50, 12
    idx = rng.integers(0, v, (6, 9))
    dy = rng.standard_normal((6, 9, d))
    start = rng.standard_normal((v, d)) if accumulate else nan_filled((v, d), np.float64)
    out = start.copy()
    res = nk.embedding_backward(dy, idx, v, 3, out=out, accumulate=accumulate)
    assert res is out
    expected = ref.embedding_backward(dy, idx, v, 3, out=start.copy(), accumulate=accumulate)
    assert_close(out, expected, np.float64)
    if accumulate:  # untouched rows (and the padding row) keep their values
        untouched = np.setdiff1d(np.arange(v), np.setdiff1d(idx, [3]))
        assert_bitwise_equal(out[untouched], start[untouched])
    y = nan_filled((6, 9, d), np.float64)
    w = rng.standard_normal((v, d))
    assert nk.embedding(idx, w, out=y) is y
    assert_bitwise_equal(y, w[idx])


def test_index_dtypes_and_layouts(rng):
    w = rng.standard_normal((20, 4))
    idx = rng.integers(0, 20, (5, 6))
    expected = w[idx]
    for cast in (np.int32, np.uint8, np.int16, np.uint64):
        assert_bitwise_equal(nk.embedding(idx.astype(cast), w), expected)
    assert_bitwise_equal(nk.embedding(np.asfortranarray(idx), w), expected)
    assert_bitwise_equal(nk.embedding(idx.T, w), w[idx.T])
    assert_bitwise_equal(nk.embedding(idx, np.asfortranarray(w)), expected)


def test_finite_differences(rng):
    w = rng.standard_normal((6, 3))
    idx = np.array([[0, 2, 2], [5, 0, 1]])
    proj = rng.standard_normal((2, 3, 3))

    def loss():
        return float((nk.embedding(idx, w) * proj).sum())

    for pad in (None, 2):
        num = numerical_grad(loss, w)
        if pad is not None:
            num[pad] = 0
        np.testing.assert_allclose(nk.embedding_backward(proj, idx, 6, pad), num, rtol=1e-7, atol=1e-8)


@requires_torch
@pytest.mark.parametrize("padding_idx", [None, 1, -2])
def test_matches_torch(rng, padding_idx):
    v, d = 30, 8
    w = rng.standard_normal((v, d))
    idx = rng.integers(0, v, (7, 11))
    idx[0, :3] = 1  # make sure the padding row is looked up
    idx[1, :3] = v - 2
    tw = torch.tensor(w, requires_grad=True)
    ty = torch.nn.functional.embedding(torch.from_numpy(idx), tw, padding_idx=padding_idx)
    dy = rng.standard_normal(ty.shape)
    ty.backward(torch.from_numpy(dy))
    assert_bitwise_equal(nk.embedding(idx, w, padding_idx), ty.detach().numpy())
    np.testing.assert_allclose(nk.embedding_backward(dy, idx, v, padding_idx), tw.grad.numpy(), rtol=1e-12,
                               atol=1e-12)


@pytest.mark.parametrize("v,d,m,accumulate", [(10000, 64, 20000, False), (50, 256, 4000, True), (3, 700, 900, False)])
def test_thread_count_invariant(rng, v, d, m, accumulate):
    # Zipf-distributed indices: a few rows get most of the updates (a load-balance worst case)
    idx = np.minimum(rng.zipf(1.3, m) - 1, v - 1)
    dy = rng.standard_normal((m, d)).astype(np.float32)
    start = rng.standard_normal((v, d)).astype(np.float32)
    results = []
    for t in (1, 2, 3):
        with num_threads(t):
            out = start.copy() if accumulate else nan_filled((v, d), np.float32)
            results.append((nk.embedding_backward(dy, idx, v, 0, out=out, accumulate=accumulate),
                            nk.embedding(idx, start)))
    for r in results[1:]:
        assert_bitwise_equal(r[0], results[0][0])
        assert_bitwise_equal(r[1], results[0][1])
    expected = ref.embedding_backward(dy.astype(np.float64), idx, v, 0,
                                      out=start.astype(np.float64) if accumulate else None, accumulate=accumulate)
    np.testing.assert_allclose(results[0][0], expected, rtol=1e-4, atol=1e-3)


def test_simd_levels(rng, simd_level):
    w = rng.standard_normal((40, 19)).astype(np.float32)
    idx = rng.integers(0, 40, 300)
    dy = rng.standard_normal((300, 19)).astype(np.float32)
    assert_bitwise_equal(nk.embedding(idx, w), w[idx])
    assert_close(nk.embedding_backward(dy, idx, 40, 5), ref.embedding_backward(dy, idx, 40, 5), np.float32, 10)


def test_errors():
    w = np.ones((10, 3), np.float32)
    with pytest.raises(ValueError, match=r"embedding: indices\[1, 2\] = 10 is out of range for num_embeddings=10 "
                                         r"\(expected 0 <= index < 10\)"):
        nk.embedding(np.array([[0, 1, 2], [3, 4, 10]]), w)
    with pytest.raises(ValueError, match=r"embedding: indices\[0\] = -1 is out of range"):
        nk.embedding(np.array([-1, 2]), w)
    with pytest.raises(TypeError, match=r"embedding: indices has dtype float64, expected an integer dtype"):
        nk.embedding(np.array([1.0]), w)
    with pytest.raises(ValueError, match=r"embedding: weight has 1 dims, expected 2 \(num_embeddings, embedding_dim\)"):
        nk.embedding(np.array([1]), np.ones(3, np.float32))
    with pytest.raises(ValueError,
                       match=r"embedding: padding_idx=10 must be in \[-num_embeddings, num_embeddings\) = \[-10, 10\)"):
        nk.embedding(np.array([1]), w, 10)
    with pytest.raises(TypeError, match=r"embedding: padding_idx must be an int or None, got float"):
        nk.embedding(np.array([1]), w, 1.5)
    # Python ints beyond 64 bits are out of range too (not pybind11's RuntimeError: fuzz finding)
    for big in (2**64 + 5, -2**64 - 5, 2**63):
        with pytest.raises(ValueError, match=rf"embedding: padding_idx={big} must be in \[-num_embeddings, "):
            nk.embedding(np.array([1]), w, big)
        with pytest.raises(ValueError, match=rf"embedding_backward: padding_idx={big} must be in "):
            nk.embedding_backward(np.ones((1, 3), np.float32), np.array([1]), 10, big)
    assert nk.embedding(np.array([1]), w, np.int64(-10)).shape == (1, 3)
    with pytest.raises(ValueError, match=r"embedding: out has shape \(2, 3\), expected \(1, 3\)"):
        nk.embedding(np.array([1]), w, out=np.empty((2, 3), np.float32))
    with pytest.raises(ValueError, match=r"embedding: out must be C-contiguous"):
        nk.embedding(np.array([1, 2]), w, out=np.empty((3, 2), np.float32).T)
    with pytest.raises(ValueError, match=r"embedding: out shares memory with weight"):
        nk.embedding(np.array([1]), w, out=w[:1])
    dy = np.ones((2, 3), np.float32)
    with pytest.raises(ValueError, match=r"embedding_backward: dy has shape \(2, 3\), expected indices.shape \+ "
                                         r"\(embedding_dim,\) "
                                         r"with indices of shape \(3,\)"):
        nk.embedding_backward(dy, np.array([0, 1, 2]), 10)
    with pytest.raises(ValueError,
                       match=r"embedding_backward: indices\[1\] = 12 is out of range for num_embeddings=10"):
        nk.embedding_backward(dy, np.array([0, 12]), 10)
    with pytest.raises(ValueError, match=r"embedding_backward: accumulate=True needs out="):
        nk.embedding_backward(dy, np.array([0, 1]), 10, accumulate=True)
    with pytest.raises(TypeError, match=r"embedding_backward: out has dtype float64, expected float32"):
        nk.embedding_backward(dy, np.array([0, 1]), 10, out=np.zeros((10, 3)))
    ro = np.zeros((10, 3), np.float32)
    ro.setflags(write=False)
    with pytest.raises(ValueError, match=r"embedding_backward: out is read-only"):
        nk.embedding_backward(dy, np.array([0, 1]), 10, out=ro)
    with pytest.raises(ValueError, match=r"embedding_backward: num_embeddings must be >= 0, got -1"):
        nk.embedding_backward(dy, np.array([0, 1]), -1)
    with pytest.raises(ValueError, match=r"embedding_backward: num_embeddings=.* is too large"):
        nk.embedding_backward(dy, np.array([0, 1]), 2**62)


@requires_torch
@pytest.mark.parametrize("padding_idx", [None, 0, -1])
def test_layer_matches_torch(rng, padding_idx):
    layer = nk.nn.Embedding(12, 5, padding_idx=padding_idx).to(np.float64)
    tlayer = torch.nn.Embedding(12, 5, padding_idx=padding_idx).double()
    assert list(layer.state_dict()) == list(tlayer.state_dict())
    tlayer.load_state_dict({k: torch.from_numpy(v) for k, v in layer.state_dict().items()})
    assert layer.padding_idx == tlayer.padding_idx
    for _ in range(2):  # grads accumulate over two backward passes
        idx = rng.integers(0, 12, (4, 6))
        idx[0, 0] = 11
        ty = tlayer(torch.from_numpy(idx))
        dy = rng.standard_normal(ty.shape)
        ty.backward(torch.from_numpy(dy))
        assert_bitwise_equal(layer(idx), ty.detach().numpy())
        assert layer.backward(dy) is None
    np.testing.assert_allclose(layer.weight.grad, tlayer.weight.grad.numpy(), rtol=1e-12, atol=1e-12)


def test_layer_init_and_api(rng):
    nk.manual_seed(0)
    layer = nk.nn.Embedding(2000, 50, padding_idx=3)
    w = layer.weight.data
    assert w.dtype == np.float32 and np.all(w[3] == 0)
    assert abs(w.mean()) < 0.01 and abs(w.std() - 1.0) < 0.01  # N(0, 1) as torch
    assert repr(layer) == "Embedding(2000, 50, padding_idx=3)"
    frozen = nk.nn.Embedding.from_pretrained(np.eye(4, dtype=np.float32))
    assert_bitwise_equal(frozen(np.array([2])), np.eye(4, dtype=np.float32)[[2]])
    frozen.backward(np.ones((1, 4), np.float32))
    assert frozen.weight.grad is None
    with pytest.raises(TypeError, match=r"Embedding: indices have dtype float64, expected an integer dtype"):
        layer(np.array([1.0]))
    with pytest.raises(ValueError, match=r"Embedding: padding_idx=5 must be within num_embeddings"):
        nk.nn.Embedding(5, 2, padding_idx=5)
    with pytest.raises(RuntimeError, match=r"Embedding.backward called before forward"):
        nk.nn.Embedding(5, 2).backward(np.ones((1, 2), np.float32))
    layer(np.array([[1, 2]]))
    with pytest.raises(ValueError, match=r"Embedding.backward: dy has shape \(2, 50\), expected \(1, 2, 50\)"):
        layer.backward(np.ones((2, 50), np.float32))
    with pytest.raises(ValueError, match=r"embedding: indices\[0\] = 2000 is out of range for num_embeddings=2000"):
        layer([2000])
