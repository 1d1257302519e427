"""nk.dropout / nk.dropout_backward and nn.Dropout: the counter-based mask, its statistics, torch."""

import numpy as np
import pytest

import nnkern as nk
from nnkern import reference as ref
from conftest import assert_bitwise_equal, nan_filled, num_threads, numerical_grad, requires_torch, torch


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1,), (7,), (16,), (17,), (3, 5, 65), (2, 1000)])
@pytest.mark.parametrize("p", [0.0, 0.1, 0.5, 0.9, 1.0])
def test_matches_twin_bitwise(rng, shape, dtype, p):
    x = rng.standard_normal(shape).astype(dtype)
    seed = int(rng.integers(0, 2**64, dtype=np.uint64))
    y, mask = nk.dropout(x, p, seed)
    ye, maske = ref.dropout(x, p, seed)
    assert mask.dtype == np.bool_ and mask.shape == shape
    assert_bitwise_equal(mask, maske)
    assert_bitwise_equal(y, ye)
    dy = rng.standard_normal(shape).astype(dtype)
    assert_bitwise_equal(nk.dropout_backward(dy, mask, p), ref.dropout_backward(dy, maske, p))


@pytest.mark.parametrize("p", [0.05, 0.3, 0.5, 0.8, 0.999])
def test_mask_statistics(p):
    n = 2_000_000
    x = np.ones(n, np.float32)
    y, mask = nk.dropout(x, p, seed=12345)
    keep = mask.mean()
    sd = np.sqrt(p * (1 - p) / n)
    assert abs(keep - (1 - p)) < 5 * sd, (keep, 1 - p)
    # inverted dropout: E[y] = x and Var[y] = p / (1 - p) for x = 1
    assert abs(y.mean(dtype=np.float64) - 1.0) < 5 * sd / (1 - p)
    np.testing.assert_allclose(y.var(dtype=np.float64), p / (1 - p), rtol=0.02 if p < 0.99 else 0.2)
    assert np.all((y == 0) | (y == np.float32(1.0 / (1.0 - p))))
    # neighbours are independent: P(both kept) = (1 - p)^2
    both = np.mean(mask[1:] & mask[:-1])
    assert abs(both - (1 - p) ** 2) < 6 * np.sqrt((1 - p) ** 2 * (1 - (1 - p) ** 2) / n)


def test_seeds_give_independent_masks():
    n, p = 1_000_000, 0.5
    masks = [nk.dropout(np.ones(n, np.float32), p, seed)[1] for seed in (0, 1, 2, 2**63, 2**64 - 1)]
    for i in range(len(masks)):
        for j in range(i + 1, len(masks)):
            agree = np.mean(masks[i] == masks[j])
            assert abs(agree - 0.5) < 6 * 0.5 / np.sqrt(n), (i, j, agree)
    # and the same seed gives the same mask
    assert_bitwise_equal(nk.dropout(np.ones(n, np.float32), p, 2)[1], masks[2])


@requires_torch
@pytest.mark.parametrize("p", [0.2, 0.5, 0.95])
def test_statistics_match_torch(p):
    # Masks come from different generators; their distributions must agree.
    n = 1_000_000
    x = np.full(n, 2.0, np.float32)
    y, mask = nk.dropout(x, p, seed=7)
    ty = torch.nn.functional.dropout(torch.from_numpy(x), p=p, training=True).numpy()
    assert set(np.unique(y)) == set(np.unique(ty))  # same two values: 0 and 2 / (1 - p) (float32)
    sd = 2.0 / (1 - p) * np.sqrt(p * (1 - p) / n)
    assert abs(y.mean(dtype=np.float64) - ty.mean(dtype=np.float64)) < 8 * sd
    np.testing.assert_allclose(y.var(dtype=np.float64), ty.var(dtype=np.float64), rtol=0.05)


@requires_torch
def test_extremes_match_torch():
    x = np.array([1.0, -2.0, np.inf, np.nan], np.float32)
    y, mask = nk.dropout(x, 0.0, 3)
    assert_bitwise_equal(y, torch.nn.functional.dropout(torch.from_numpy(x), p=0.0).numpy())
    assert mask.all()
    y, mask = nk.dropout(x, 1.0, 3)
    ty = torch.nn.functional.dropout(torch.from_numpy(x), p=1.0).numpy()
    np.testing.assert_array_equal(y, ty)  # zeros, and x * 0 = NaN for inf/nan as in torch
    assert not mask.any()
    dx = nk.dropout_backward(np.ones(4, np.float32), mask, 1.0)
    assert np.all(dx == 0)


def test_finite_differences(rng):
    x = rng.standard_normal((3, 7))
    proj = rng.standard_normal(x.shape)
    _, mask = nk.dropout(x, 0.4, 99)

    def loss():
        return float((nk.dropout(x, 0.4, 99)[0] * proj).sum())

    np.testing.assert_allclose(nk.dropout_backward(proj, mask, 0.4), numerical_grad(loss, x), rtol=1e-7, atol=1e-8)


def test_thread_and_simd_invariance(rng, simd_level):
    x = rng.standard_normal(1_000_003).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    results = []
    for t in (1, 2, 3):
        with num_threads(t):
            y, mask = nk.dropout(x, 0.3, 2024)
            results.append((y, mask, nk.dropout_backward(dy, mask, 0.3)))
    ye, me = ref.dropout(x, 0.3, 2024)
    for r in results:
        # the mask is a pure function of (seed, index): equal across threads AND SIMD levels
        assert_bitwise_equal(r[1], me)
        assert_bitwise_equal(r[0], ye)
        assert_bitwise_equal(r[2], results[0][2])


def test_out_buffers_and_in_place(rng):
    x = rng.standard_normal((5, 40))
    y0, m0 = nk.dropout(x, 0.5, 11)
    out, mout = nan_filled(x.shape, np.float64), np.full(x.shape, 7, np.uint8)
    y, m = nk.dropout(x, 0.5, 11, out=out, mask_out=mout)
    assert y is out and m is mout
    assert_bitwise_equal(out, y0)
    np.testing.assert_array_equal(mout, m0.astype(np.uint8))
    xc = x.copy()
    nk.dropout(xc, 0.5, 11, out=xc)
    assert_bitwise_equal(xc, y0)
    dy = rng.standard_normal(x.shape)
    dxo = nan_filled(x.shape, np.float64)
    assert nk.dropout_backward(dy, mout, 0.5, out=dxo) is dxo
    assert_bitwise_equal(dxo, nk.dropout_backward(dy, m0, 0.5))
    # a strided mask input is copied
    big = np.zeros((5, 80), bool)
    big[:, ::2] = m0
    assert_bitwise_equal(nk.dropout_backward(dy, big[:, ::2], 0.5), dxo)
    assert nk.dropout(np.zeros((0, 3)), 0.5, 1)[0].shape == (0, 3)


def test_errors():
    x = np.ones(4, np.float32)
    with pytest.raises(ValueError, match=r"dropout: p must be in \[0.0, 1.0\], got 1.5"):
        nk.dropout(x, 1.5, 0)
    with pytest.raises(ValueError, match=r"dropout: p must be in \[0.0, 1.0\], got nan"):
        nk.dropout(x, float("nan"), 0)
    with pytest.raises(ValueError, match=r"dropout: seed must be in \[0, 2\*\*64\), got -1"):
        nk.dropout(x, 0.5, -1)
    with pytest.raises(ValueError, match=r"dropout: seed must be in \[0, 2\*\*64\), got 18446744073709551616"):
        nk.dropout(x, 0.5, 2**64)
    with pytest.raises(TypeError, match=r"dropout: seed must be an int, got float"):
        nk.dropout(x, 0.5, 1.0)
    with pytest.raises(TypeError, match=r"dropout: x has dtype int64, expected float32 or float64"):
        nk.dropout(np.ones(3, np.int64), 0.5, 1)
    with pytest.raises(TypeError, match=r"dropout: mask_out has dtype float32, expected bool or uint8"):
        nk.dropout(x, 0.5, 1, mask_out=np.ones(4, np.float32))
    with pytest.raises(ValueError, match=r"dropout: mask_out has shape \(3,\), expected \(4,\)"):
        nk.dropout(x, 0.5, 1, mask_out=np.ones(3, bool))
    with pytest.raises(ValueError, match=r"dropout: mask_out must be C-contiguous"):
        nk.dropout(x, 0.5, 1, mask_out=np.ones(8, bool)[::2])
    big = np.ones(8, np.float32)
    with pytest.raises(ValueError, match=r"dropout: out partially overlaps x"):
        nk.dropout(big[:4], 0.5, 1, out=big[2:6])
    with pytest.raises(ValueError,
                       match=r"dropout_backward: mask has shape \(3,\), expected \(4,\) \(the shape of dy\)"):
        nk.dropout_backward(x, np.ones(3, bool), 0.5)
    with pytest.raises(TypeError, match=r"dropout_backward: mask has dtype int64, expected bool or uint8"):
        nk.dropout_backward(x, np.ones(4, np.int64), 0.5)


def test_layer_train_eval_and_seeding(rng):
    layer = nk.nn.Dropout(0.25)
    x = rng.standard_normal((64, 100)).astype(np.float32)
    nk.manual_seed(5)
    y1 = layer(x)
    dx1 = layer.backward(np.ones_like(x))
    nk.manual_seed(5)
    y2 = layer(x)
    assert_bitwise_equal(y1, y2)  # reproducible from nk.manual_seed
    y3 = layer(x)
    assert not np.array_equal(y1, y3)  # a fresh mask every call
    np.testing.assert_array_equal(dx1 != 0, y1 != 0)
    np.testing.assert_allclose(dx1[dx1 != 0], 1 / 0.75, rtol=1e-6)
    layer.eval()
    assert layer(x) is x and layer.backward(x) is x
    layer.train()
    own = nk.nn.Dropout(0.5, rng=np.random.default_rng(1))
    other = nk.nn.Dropout(0.5, rng=np.random.default_rng(1))
    assert_bitwise_equal(own(x), other(x))
    xc = x.copy()
    inplace = nk.nn.Dropout(0.5, inplace=True)
    assert inplace(xc) is xc
    assert nk.nn.Dropout(0.0)(x) is x
    with pytest.raises(ValueError, match=r"Dropout: p must be in \[0, 1\], got 1.5"):
        nk.nn.Dropout(1.5)
    with pytest.raises(ValueError, match=r"Dropout.backward: dy has shape \(3,\), expected \(64, 100\)"):
        layer(x)
        layer.backward(np.ones(3, np.float32))


@requires_torch
def test_layer_matches_torch_given_the_mask(rng):
    # With the mask nnkern drew, torch's formula y = x * mask / (1 - p) gives the same values.
    layer = nk.nn.Dropout(0.3)
    x = rng.standard_normal((8, 16)).astype(np.float32)
    y = layer(x)
    mask = torch.from_numpy(layer._mask.astype(np.float32))
    ty = torch.from_numpy(x) * mask.div_(1 - 0.3)
    np.testing.assert_allclose(y, ty.numpy(), rtol=1e-6)
