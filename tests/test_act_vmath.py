"""Accuracy of nnkern's vectorised elementary functions (csrc/nnkern/vmath.h) against NumPy's
libm-backed functions evaluated in extended precision, at every SIMD level, over wide ranges
including overflow, underflow, subnormals, +-inf and NaN."""

import numpy as np
import pytest

import nnkern as nk

vm = nk._core._vmath
LD = np.longdouble

# Worst error allowed, in units in the last place of the correctly rounded result (vmath.h
# documents 2 ulp for exp/log/log1p, 2.5 for expm1, 3 for tanh/sigmoid/softplus).
ULP = {"exp": 2.0, "expm1": 2.5, "log": 2.0, "log1p": 2.0, "tanh": 3.0, "sigmoid": 3.0, "softplus": 3.0}


def _ref(name, x):
    """The function in extended precision (80-bit long double on x86-64)."""
    xl = x.astype(LD)
    with np.errstate(all="ignore"):
        if name == "exp":
            return np.exp(xl)
        if name == "expm1":
            return np.expm1(xl)
        if name == "log":
            return np.log(xl)
        if name == "log1p":
            return np.log1p(xl)
        if name == "tanh":
            return np.tanh(xl)
        if name == "sigmoid":
            return 1 / (1 + np.exp(-xl))
        if name == "softplus":
            return np.where(xl > 0, xl + np.log1p(np.exp(-xl)), np.log1p(np.exp(xl)))
    raise AssertionError(name)


def ulp_error(y, ref, dtype):
    """|y - ref| in ulps of the correctly rounded result (subnormals: in units of the smallest
    subnormal). Non-finite references must be matched exactly."""
    with np.errstate(all="ignore"):
        r = ref.astype(dtype)
        finite = np.isfinite(r)
        assert np.array_equal(y[~finite], r[~finite], equal_nan=True), (y[~finite], r[~finite])
        spacing = np.spacing(np.abs(r[finite])).astype(LD)
        return np.abs(y[finite].astype(LD) - ref[finite]) / spacing


# Functions that flush results below the normal range to zero (documented in vmath.h).
FLUSH = {"sigmoid"}


def _check(name, x, dtype):
    x = np.asarray(x, dtype)
    y = vm(name, x)
    assert y.dtype == dtype and y.shape == x.shape
    ref = _ref(name, x)
    if name in FLUSH:
        tiny = ref < np.finfo(dtype).tiny
        assert np.all(y[tiny] == 0), f"{name}: results below the normal range must flush to 0"
        x, y, ref = x[~tiny], y[~tiny], ref[~tiny]
    err = ulp_error(y, ref, dtype)
    worst = float(err.max()) if err.size else 0.0
    i = int(np.argmax(err)) if err.size else 0
    with np.errstate(over="ignore"):
        where = x[np.isfinite(ref.astype(dtype))][i] if err.size else None
    assert worst <= ULP[name], f"{name} {np.dtype(dtype).name}: {worst:.2f} ulp at x={where!r}"


RANGES = {
    np.float32: {
        "exp": [(-110, 95), (-1, 1), (87, 89), (-104, -87)],
        "expm1": [(-30, 95), (-1, 1), (1e-30, 1, "log")],
        "log": [(0, 3.4e38, "log"), (0.5, 2), (1e-45, 1e-37, "log")],
        "log1p": [(-1, 1), (1e-30, 1e30, "log"), (-1e-6, 1e-6)],
        "tanh": [(-12, 12), (-0.7, 0.7), (1e-30, 1, "log")],
        "sigmoid": [(-110, 40), (-5, 5)],
        "softplus": [(-110, 100), (-3, 3)],
    },
    np.float64: {
        "exp": [(-750, 712), (-1, 1), (708, 710), (-746, -707)],
        "expm1": [(-50, 712), (-1, 1), (1e-300, 1, "log")],
        "log": [(0, 1.7e308, "log"), (0.5, 2), (5e-324, 1e-307, "log")],
        "log1p": [(-1, 1), (1e-300, 1e300, "log"), (-1e-12, 1e-12)],
        "tanh": [(-25, 25), (-0.7, 0.7), (1e-300, 1, "log")],
        "sigmoid": [(-750, 50), (-5, 5)],
        "softplus": [(-750, 750), (-3, 3)],
    },
}


def _samples(rng, spec, n, dtype):
    lo, hi = spec[0], spec[1]
    if len(spec) > 2:  # log-uniform over positive values
        lo = max(lo, np.finfo(dtype).smallest_subnormal)
        return np.exp(rng.uniform(np.log(lo), np.log(hi), n))
    return rng.uniform(lo, hi, n)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", list(ULP))
def test_accuracy_wide_ranges(simd_level, rng, name, dtype):
    n = 200_000 if simd_level == "avx512" else 40_000
    for spec in RANGES[dtype][name]:
        _check(name, _samples(rng, spec, n, dtype), dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", list(ULP))
def test_accuracy_every_float_near_one(name, dtype):
    # A dense sweep around the polynomial ranges (where reduction and polynomial join).
    if name in ("log", "log1p"):
        x = np.linspace(0.5 if name == "log" else -0.5, 2.0, 100_001)
    else:
        x = np.linspace(-2.0, 2.0, 100_001)
    _check(name, x, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_special_values(simd_level, dtype):
    f = np.finfo(dtype)
    inf, nan = dtype(np.inf), dtype(np.nan)

    def ev(name, vals):
        return vm(name, np.array(vals, dtype))

    # exp: overflow threshold, underflow to subnormals and zero, infinities, NaN
    big = np.log(LD(f.max))
    e = ev("exp", [inf, -inf, nan, 0.0, -0.0, np.nextafter(dtype(big), dtype(0)), dtype(big) * dtype(1.0001),
                   np.log(LD(f.smallest_subnormal)) - 1, -1e30, 1e30])
    assert e[0] == inf and e[1] == 0 and np.isnan(e[2]) and e[3] == 1 and e[4] == 1
    assert np.isfinite(e[5]) and e[5] > f.max / 2 and e[6] == inf
    assert e[7] == 0 and e[8] == 0 and e[9] == inf
    xs = (np.log(LD(f.tiny)) - np.array([0.5, 3.0, 10.0], LD)).astype(dtype)  # results below the normal range
    sub = ev("exp", xs)
    assert np.all(sub > 0) and np.all(sub < f.tiny)
    np.testing.assert_allclose(sub, np.exp(xs.astype(LD)).astype(dtype), rtol=0, atol=f.smallest_subnormal)
    # expm1
    em = ev("expm1", [inf, -inf, nan, 0.0, -0.0, 1e-30 if dtype == np.float32 else 1e-300, -1e30, 1e30,
                      np.nextafter(dtype(big), dtype(0))])
    assert em[0] == inf and em[1] == -1 and np.isnan(em[2]) and em[3] == 0 and em[6] == -1 and em[7] == inf
    assert em[5] == dtype(1e-30 if dtype == np.float32 else 1e-300) and np.isfinite(em[8])
    # log
    lg = ev("log", [0.0, -0.0, -1.0, -inf, inf, nan, 1.0, f.smallest_subnormal])
    assert lg[0] == -inf and lg[1] == -inf and np.isnan(lg[2]) and np.isnan(lg[3]) and lg[4] == inf
    assert np.isnan(lg[5]) and lg[6] == 0
    np.testing.assert_allclose(lg[7], np.log(LD(f.smallest_subnormal)), rtol=4 * f.eps)
    # log1p
    l1 = ev("log1p", [-1.0, -1.5, -inf, inf, nan, 0.0, -0.0, f.tiny, 1e-30 if dtype == np.float32 else 1e-300])
    assert l1[0] == -inf and np.isnan(l1[1]) and np.isnan(l1[2]) and l1[3] == inf and np.isnan(l1[4])
    assert l1[5] == 0 and l1[6] == 0 and l1[7] == f.tiny and l1[8] == dtype(1e-30 if dtype == np.float32 else 1e-300)
    # tanh
    th = ev("tanh", [inf, -inf, nan, 0.0, -0.0, 1e30, -1e30])
    assert th[0] == 1 and th[1] == -1 and np.isnan(th[2]) and th[3] == 0 and th[5] == 1 and th[6] == -1
    assert np.signbit(th[4]) and not np.signbit(th[3])
    # sigmoid / softplus
    sg = ev("sigmoid", [inf, -inf, nan, 0.0])
    assert sg[0] == 1 and sg[1] == 0 and np.isnan(sg[2]) and sg[3] == 0.5
    sp = ev("softplus", [inf, -inf, nan, 0.0, 1e30])
    assert sp[0] == inf and sp[1] == 0 and np.isnan(sp[2]) and sp[4] == dtype(1e30)
    np.testing.assert_allclose(sp[3], np.log(2.0), rtol=4 * f.eps)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_exp_nonpositive(simd_level, rng, dtype):
    """The softmax/cross-entropy exp: as exp for x <= 0 down to the normal range, 0 below it."""
    lo = np.log(LD(np.finfo(dtype).tiny))
    x = np.concatenate([rng.uniform(float(lo), 0, 50_000), -np.exp(rng.uniform(-60, 0, 5_000))]).astype(dtype)
    y = vm("exp_nonpositive", x)
    assert ulp_error(y, np.exp(x.astype(LD)), dtype).max() <= ULP["exp"]
    below = np.array([lo * 1.0001, lo - 1, -1e4, -np.inf], dtype)
    np.testing.assert_array_equal(vm("exp_nonpositive", below), 0)
    assert np.isnan(vm("exp_nonpositive", np.array([np.nan], dtype))).all()
    assert vm("exp_nonpositive", np.array([0.0, -0.0], dtype)).tolist() == [1.0, 1.0]


def test_unknown_function():
    with pytest.raises(ValueError, match=r"_vmath: unknown function 'erf'"):
        vm("erf", np.ones(3))
