"""Gradient norms and clipping: nk.grad_norm / nk.clip_grad_norm / nk.clip_grad_value and
nnkern.nn.utils.clip_grad_norm_ / clip_grad_value_ against the NumPy twins and torch.nn.utils:
p = 1, 2, 3.5, inf (and 0, -inf, negative p), zero and huge gradients, NaN/Inf, thread-count
determinism, SIMD levels, bad inputs."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nnkern as nk
from conftest import assert_bitwise_equal, num_threads, requires_torch, torch
from nnkern import reference as ref
from nnkern.nn import Parameter
from nnkern.nn.utils import clip_grad_norm_, clip_grad_value_

SHAPES = [(0,), (1,), (7,), (16,), (17,), (33,), (65,), (3, 5), (1000,), (40_000,)]
NORMS = [2.0, 1.0, 3.5, math.inf, 0.0, -math.inf, -1.5, 0.5]


def grads_for(rng, dtype, shapes=SHAPES, scale=1.0):
    return [(scale * rng.standard_normal(s)).astype(dtype) for s in shapes]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("p", NORMS)
def test_grad_norm_matches_twin(rng, p, dtype):
    gs = grads_for(rng, dtype)
    gs[3][2] = 0.0  # a zero element (matters for p <= 0)
    got = nk.grad_norm(gs, p)
    want = ref.grad_norm(gs, p)
    # float64 accumulation for both; the order of the partial sums differs
    np.testing.assert_allclose(got, want, rtol=1e-12 if p not in (3.5, -1.5, 0.5) else 1e-11)


def test_grad_norm_single_array_and_empty():
    x = np.array([3.0, 4.0])
    assert nk.grad_norm(x) == 5.0
    assert nk.grad_norm([]) == 0.0
    assert nk.grad_norm([np.zeros(0, np.float32)]) == 0.0
    assert nk.grad_norm([np.zeros(0)], math.inf) == 0.0


@pytest.mark.parametrize("p", [2.0, 1.0, math.inf, 3.5])
def test_grad_norm_threads_and_simd_deterministic(simd_level, rng, p):
    gs = grads_for(rng, np.float32, [(300_001,), (17,), (50_000,)])
    results = []
    for threads in (1, 2, 3):
        with num_threads(threads):
            results.append(nk.grad_norm(gs, p))
    assert results[0] == results[1] == results[2]
    np.testing.assert_allclose(results[0], ref.grad_norm(gs, p), rtol=1e-12)


def test_grad_norm_nan_inf():
    assert math.isnan(nk.grad_norm([np.array([1.0, np.nan])]))
    assert math.isnan(nk.grad_norm([np.array([1.0, np.nan]), np.array([np.inf])], math.inf))
    assert math.isinf(nk.grad_norm([np.array([1.0, np.inf])]))
    assert nk.grad_norm([np.array([1.0, -np.inf])], math.inf) == math.inf


def test_grad_norm_float32_does_not_overflow():
    # float64 accumulation: 1e30 squared is fine (torch's float32 accumulation gives inf here).
    g = np.full(1000, 1e30, np.float32)
    np.testing.assert_allclose(nk.grad_norm([g]), 1e30 * math.sqrt(1000), rtol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("p", [2.0, 1.0, 3.5, math.inf])
@pytest.mark.parametrize("max_norm", [0.5, 1e6])
def test_clip_grad_norm_matches_twin(rng, p, max_norm, dtype):
    gs = grads_for(rng, dtype)
    expect = [g.copy() for g in gs]
    total = nk.clip_grad_norm(gs, max_norm, p)
    total_ref = ref.clip_grad_norm(expect, max_norm, p)
    np.testing.assert_allclose(total, total_ref, rtol=1e-12)
    for a, b in zip(gs, expect):
        np.testing.assert_allclose(a, b, rtol=1e-6 if dtype == np.float32 else 1e-14)
    if max_norm < total:  # clipped down to max_norm (up to the 1e-6 of the rule)
        np.testing.assert_allclose(nk.grad_norm(gs, p), max_norm, rtol=1e-5)


def test_clip_grad_norm_no_clip_leaves_bits(rng):
    gs = grads_for(rng, np.float32)
    before = [g.copy() for g in gs]
    nk.clip_grad_norm(gs, 1e9)
    for a, b in zip(gs, before):
        assert_bitwise_equal(a, b)


def test_clip_grad_norm_threads_bitwise(rng):
    gs = grads_for(rng, np.float32, [(300_001,), (5,), (100_000,)], scale=3.0)
    out = []
    for threads in (1, 2, 3):
        with num_threads(threads):
            c = [g.copy() for g in gs]
            total = nk.clip_grad_norm(c, 1.0)
            out.append((total, c))
    for total, c in out[1:]:
        assert total == out[0][0]
        for a, b in zip(c, out[0][1]):
            assert_bitwise_equal(a, b)


def test_clip_grad_norm_nonfinite():
    g = [np.array([1.0, np.nan, 2.0])]
    total = nk.clip_grad_norm(g, 1.0)
    assert math.isnan(total) and np.isnan(g[0]).all()  # as torch: NaN coefficient
    g = [np.array([1.0, np.inf, 2.0], np.float32)]
    total = nk.clip_grad_norm(g, 1.0)
    assert total == math.inf
    np.testing.assert_array_equal(np.isnan(g[0]), [False, True, False])  # 0 * inf
    assert g[0][0] == 0 and g[0][2] == 0
    g = [np.array([1.0, np.nan]), np.array([3.0])]
    with pytest.raises(RuntimeError, match=r"clip_grad_norm: the total norm of order 2.0 of the gradients is nan "
                                           r"\(non-finite\), so they cannot be clipped; pass error_if_nonfinite"):
        nk.clip_grad_norm(g, 1.0, error_if_nonfinite=True)
    assert g[1][0] == 3.0  # untouched


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_clip_grad_value(rng, dtype):
    gs = grads_for(rng, dtype, scale=2.0)
    gs[2][0] = np.nan
    expect = [g.copy() for g in gs]
    nk.clip_grad_value(gs, 0.7)
    ref.clip_grad_value(expect, 0.7)
    for a, b in zip(gs, expect):
        assert_bitwise_equal(a, b)
    assert np.isnan(gs[2][0])
    assert max(np.nanmax(np.abs(g), initial=0) for g in gs) <= dtype(0.7)


def test_clip_grad_value_threads_bitwise(rng):
    gs = grads_for(rng, np.float64, [(200_001,), (9,)], scale=2.0)
    a = [g.copy() for g in gs]
    with num_threads(1):
        nk.clip_grad_value(a, 1.0)
    b = [g.copy() for g in gs]
    with num_threads(3):
        nk.clip_grad_value(b, 1.0)
    for x, y in zip(a, b):
        assert_bitwise_equal(x, y)


BAD = [
    (lambda: nk.grad_norm([np.zeros(3), np.zeros(3, np.float32)]), TypeError,
     r"grad_norm: grads\[1\] has dtype float32, expected float64 \(the dtype of grads\[0\]\)"),
    (lambda: nk.grad_norm([np.zeros(3)], float("nan")), ValueError, r"grad_norm: norm_type must be a number or inf"),
    (lambda: nk.grad_norm([[1.0, 2.0]]), TypeError, r"grad_norm: grads\[0\] must be a numpy.ndarray, got list"),
    (lambda: nk.clip_grad_norm([np.zeros(3)], -1.0), ValueError,
     r"clip_grad_norm: max_norm must be >= 0 \(inf disables clipping\), got -1.0"),
    (lambda: nk.clip_grad_norm([np.zeros(3)], float("nan")), ValueError, r"clip_grad_norm: max_norm must be >= 0"),
    (lambda: nk.clip_grad_norm([np.zeros(6)[::2]], 1.0), ValueError, r"clip_grad_norm: grads\[0\] must be C-contiguous"),
    (lambda: nk.clip_grad_norm([np.zeros(3, np.int32)], 1.0), TypeError,
     r"clip_grad_norm: grads\[0\] has dtype int32, expected float32 or float64"),
    (lambda: nk.clip_grad_value([np.zeros(3), np.zeros(3, np.float32)], 1.0), TypeError,
     r"clip_grad_value: grads\[1\] has dtype float32, expected float64 \(the dtype of grads\[0\]\); in-place"),
    (lambda: nk.clip_grad_value([np.zeros(3)], -0.5), ValueError,
     r"clip_grad_value: clip_value must be >= 0 \(inf disables clipping\), got -0.5"),
    # strings and bools are not thresholds (fuzz finding: '0.1' was parsed by float())
    (lambda: nk.clip_grad_value([np.zeros(3)], "0.1"), TypeError,
     r"clip_grad_value: clip_value must be a real number, got str"),
    (lambda: nk.clip_grad_value([np.zeros(3)], True), TypeError,
     r"clip_grad_value: clip_value must be a real number, got bool"),
    (lambda: nk.clip_grad_value([np.zeros(3)], None), TypeError,
     r"clip_grad_value: clip_value must be a real number, got NoneType"),
    (lambda: nk.clip_grad_norm([np.zeros(3)], "1"), TypeError,
     r"clip_grad_norm: max_norm must be a real number, got str"),
]


@pytest.mark.parametrize("fn,exc,match", BAD, ids=[m[:50] for _, _, m in BAD])
def test_bad_inputs(fn, exc, match):
    with pytest.raises(exc, match=match):
        fn()


def test_read_only_and_overlapping_grads():
    g = np.ones(4)
    g.flags.writeable = False
    with pytest.raises(ValueError, match=r"clip_grad_norm: grads\[0\] is read-only"):
        nk.clip_grad_norm([g], 1.0)
    nk.grad_norm([g])  # reading a read-only array is fine
    base = np.ones(10)
    with pytest.raises(ValueError, match=r"clip_grad_value: grads\[0\] shares memory with grads\[1\]"):
        nk.clip_grad_value([base[:6], base[4:]], 0.5)
    with pytest.raises(ValueError, match=r"clip_grad_norm: grads\[0\] shares memory with grads\[1\]"):
        nk.clip_grad_norm([base, base], 0.5)
    np.testing.assert_array_equal(base, 1.0)


@settings(max_examples=40, deadline=None)
@given(sizes=st.lists(st.integers(0, 2000), min_size=1, max_size=6),
       p=st.sampled_from([1.0, 2.0, 3.0, math.inf]), max_norm=st.floats(0.0, 50.0),
       threads=st.integers(1, 3), seed=st.integers(0, 2**31 - 1))
def test_hypothesis_clip_vs_twin(sizes, p, max_norm, threads, seed):
    rng = np.random.default_rng(seed)
    gs = [rng.standard_normal(n) for n in sizes]
    expect = [g.copy() for g in gs]
    with num_threads(threads):
        total = nk.clip_grad_norm(gs, max_norm, p)
    np.testing.assert_allclose(total, ref.clip_grad_norm(expect, max_norm, p), rtol=1e-12)
    for a, b in zip(gs, expect):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-300)


# ---------------------------------------------------------------------------------------------
# nn.utils over Parameters, vs torch.nn.utils


def params_with_grads(rng, dtype, scale=1.0, none_at=(2,)):
    # (torch's inf norm refuses empty gradients, so no empty array here; our empty cases are above)
    ps = []
    for i, s in enumerate([(4, 3), (7,), (5,), (65,), (1,)]):
        p = Parameter(rng.standard_normal(s).astype(dtype))
        if i not in none_at:
            p.grad = (scale * rng.standard_normal(s)).astype(dtype)
        ps.append(p)
    return ps


@requires_torch
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("p", [1.0, 2.0, 3.5, math.inf])
@pytest.mark.parametrize("scale", [0.0, 1.0, "huge"])
@pytest.mark.parametrize("max_norm", [0.3, 1e20])
def test_clip_grad_norm_matches_torch(rng, p, scale, dtype, max_norm):
    if scale == "huge":  # as large as torch's float32 accumulation of |g|^3.5 stays finite
        scale = 1e9 if dtype == np.float32 else 1e60
    ps = params_with_grads(rng, dtype, scale)
    tps = []
    for q in ps:
        t = torch.tensor(q.data.copy(), requires_grad=True)
        t.grad = None if q.grad is None else torch.tensor(q.grad.copy())
        tps.append(t)
    total = clip_grad_norm_(ps, max_norm, p)
    ttotal = torch.nn.utils.clip_grad_norm_(tps, max_norm, p)
    assert isinstance(total, float)
    rtol = 2e-6 if dtype == np.float32 else 1e-12  # torch accumulates float32 norms in float32
    np.testing.assert_allclose(total, float(ttotal), rtol=rtol)
    for q, t in zip(ps, tps):
        if q.grad is None:
            assert t.grad is None
            continue
        np.testing.assert_allclose(q.grad, t.grad.numpy(), rtol=rtol, atol=0)


@requires_torch
def test_clip_grad_norm_float32_overflow_where_torch_gives_inf():
    # Documented difference: torch accumulates float32 norms in float32 and overflows to inf (then
    # zeroes every gradient); nnkern accumulates in float64 and clips by the true norm.
    p = Parameter(np.zeros(10, np.float32))
    p.grad = np.full(10, 1e20, np.float32)
    t = torch.zeros(10, requires_grad=True)
    t.grad = torch.full((10,), 1e20)
    assert math.isinf(float(torch.nn.utils.clip_grad_norm_([t], 1.0)))
    total = clip_grad_norm_([p], 1.0)
    np.testing.assert_allclose(total, 1e20 * math.sqrt(10), rtol=1e-6)
    np.testing.assert_allclose(p.grad, 1 / math.sqrt(10), rtol=1e-6)


@requires_torch
def test_clip_grad_norm_nonfinite_like_torch():
    for bad in (np.nan, np.inf):
        ps = params_with_grads(np.random.default_rng(0), np.float64)
        ps[0].grad[0, 0] = bad
        tps = [torch.tensor(q.data.copy(), requires_grad=True) for q in ps]
        for q, t in zip(ps, tps):
            t.grad = None if q.grad is None else torch.tensor(q.grad.copy())
        with np.errstate(invalid="ignore"):
            total = clip_grad_norm_(ps, 1.0)
        ttotal = torch.nn.utils.clip_grad_norm_(tps, 1.0)
        assert (math.isnan(total) and math.isnan(float(ttotal))) or total == float(ttotal)
        for q, t in zip(ps, tps):
            if q.grad is not None:
                np.testing.assert_array_equal(q.grad, t.grad.numpy())
        with pytest.raises(RuntimeError, match="non-finite"):
            clip_grad_norm_(ps, 1.0, error_if_nonfinite=True)


@requires_torch
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_clip_grad_value_matches_torch(rng, dtype):
    ps = params_with_grads(rng, dtype, 3.0)
    ps[0].grad[1, 1] = np.nan
    tps = [torch.tensor(q.data.copy(), requires_grad=True) for q in ps]
    for q, t in zip(ps, tps):
        t.grad = None if q.grad is None else torch.tensor(q.grad.copy())
    clip_grad_value_(ps, 1.5)
    torch.nn.utils.clip_grad_value_(tps, 1.5)
    for q, t in zip(ps, tps):
        if q.grad is not None:
            assert_bitwise_equal(q.grad, t.grad.numpy())


def test_nn_utils_single_parameter_mixed_dtypes_and_errors(rng):
    p = Parameter(np.zeros(2))
    p.grad = np.array([3.0, 4.0])
    assert clip_grad_norm_(p, 1.0) == 5.0
    np.testing.assert_allclose(p.grad, [3 / (5 + 1e-6), 4 / (5 + 1e-6)])
    assert clip_grad_norm_([Parameter(np.zeros(2))], 1.0) == 0.0  # no gradients at all
    # float32 and float64 gradients together: one total norm over all of them
    a, b = Parameter(np.zeros(2, np.float32)), Parameter(np.zeros(1))
    a.grad, b.grad = np.array([3.0, 0.0], np.float32), np.array([4.0])
    assert clip_grad_norm_([a, b], 1.0) == 5.0
    np.testing.assert_allclose(a.grad, [3 / 5, 0], rtol=1e-6)
    np.testing.assert_allclose(b.grad, [4 / 5], rtol=1e-6)
    a.grad, b.grad = np.array([3.0, 0.0], np.float32), np.array([4.0])
    assert clip_grad_norm_([a, b], 1.0, norm_type=math.inf) == 4.0
    a.grad, b.grad = np.array([3.0, 0.0], np.float32), np.array([-4.0])
    clip_grad_value_([a, b], 3.5)
    np.testing.assert_array_equal(b.grad, [-3.5])
    with pytest.raises(TypeError, match=r"clip_grad_norm_: parameters must be Parameters"):
        clip_grad_norm_([np.zeros(3)], 1.0)
    with pytest.raises(ValueError, match=r"max_norm must be >= 0"):
        clip_grad_norm_([a, b], -1.0)


def test_clip_kernels_every_simd_level(simd_level, rng):
    gs = grads_for(rng, np.float32, [(1,), (17,), (65,), (100_001,)], scale=2.0)
    a, b = [g.copy() for g in gs], [g.copy() for g in gs]
    np.testing.assert_allclose(nk.clip_grad_norm(a, 1.0), ref.clip_grad_norm(b, 1.0), rtol=1e-12)
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, rtol=1e-6)
    a, b = [g.copy() for g in gs], [g.copy() for g in gs]
    nk.clip_grad_value(a, 0.3)
    ref.clip_grad_value(b, 0.3)
    for x, y in zip(a, b):
        assert_bitwise_equal(x, y)
