"""Bad arguments to the pooling kernels raise clear errors (and never write out of bounds)."""

import numpy as np
import pytest

import nnkern as nk

X = np.ones((1, 2, 4, 4), np.float32)


@pytest.mark.parametrize("kwargs,exc,msg", [
    (dict(kernel_size=5), ValueError,
     r"max_pool2d: kernel_size \(5, 5\) does not fit the input of spatial size \(4, 4\) with padding \(0, 0\): "
     r"the output would be \(0, 0\), it must be at least \(1, 1\)"),
    (dict(kernel_size=(2, 3), dilation=(1, 2)), ValueError,
     r"kernel_size \(2, 3\) with dilation \(1, 2\) does not fit .* output would be \(2, 0\)"),
    (dict(kernel_size=0), ValueError, r"max_pool2d: kernel_size must be >= 1, got \(0, 0\)"),
    (dict(kernel_size=(2, -1)), ValueError, r"max_pool2d: kernel_size must be >= 1, got \(2, -1\)"),
    (dict(kernel_size=2, stride=0), ValueError, r"max_pool2d: stride must be >= 1, got \(0, 0\)"),
    (dict(kernel_size=2, dilation=0), ValueError, r"max_pool2d: dilation must be >= 1, got \(0, 0\)"),
    (dict(kernel_size=2, padding=-1), ValueError, r"max_pool2d: padding must be >= 0, got \(-1, -1\)"),
    (dict(kernel_size=3, padding=2), ValueError,
     r"max_pool2d: padding \(2, 2\) must be at most half of kernel_size \(3, 3\) \(padding <= kernel_size // 2"),
    (dict(kernel_size=(3, 2), padding=(1, 2)), ValueError, r"padding \(1, 2\) must be at most half of kernel_size"),
    (dict(kernel_size=(2, 3, 4)), ValueError,
     r"max_pool2d: kernel_size must be an int or a pair of ints, got a sequence of length 3"),
    (dict(kernel_size=2.0), TypeError, r"max_pool2d: kernel_size must be an int or a pair of ints, got float"),
    (dict(kernel_size=True), TypeError, r"kernel_size must be an int or a pair of ints, got bool"),
    (dict(kernel_size=(2, "a")), TypeError, r"kernel_size must be an int or a pair of ints, got \(2, 'a'\)"),
    (dict(kernel_size=2, stride=2**40), ValueError, r"max_pool2d: stride \(1099511627776, 1099511627776\) is too large"),
    (dict(kernel_size=2**63 + 5), ValueError, r"max_pool2d: kernel_size value 9223372036854775813 is too large"),
])
def test_max_pool2d_argument_errors(kwargs, exc, msg):
    with pytest.raises(exc, match=msg):
        nk.max_pool2d(X, **kwargs)


def test_window_entirely_in_padding():
    # torch returns -inf with an out-of-range index here; we refuse the configuration
    with pytest.raises(ValueError, match=r"max_pool2d: with kernel_size \(2, 2\), dilation \(2, 2\) and padding "
                                         r"\(1, 1\) the window of output row 0 covers only padding \(input height 1\)"):
        nk.max_pool2d(np.ones((1, 1, 1, 1), np.float32), 2, padding=1, dilation=2)


def _first_window_in_padding(n, out, k, s, p, d):
    """Brute force: the first output index whose window has no tap inside [0, n), or -1."""
    for i in range(out):
        if not any(0 <= i * s - p + t * d < n for t in range(k)):
            return i
    return -1


def test_window_in_padding_rule_matches_brute_force():
    """The closed-form check (no loop over every window) agrees with a scan of all windows."""
    checked = 0
    for n in range(1, 9):
        for k in range(1, 5):
            for s in range(1, 4):
                for p in range(0, k // 2 + 1):
                    for d in range(1, 5):
                        for ceil_mode in (False, True):
                            kw = dict(kernel_size=(1, k), stride=(1, s), padding=(0, p), dilation=(1, d),
                                      ceil_mode=ceil_mode)
                            span = n + 2 * p - d * (k - 1) - 1
                            if span < 0:
                                continue
                            out = (span + (s - 1 if ceil_mode else 0)) // s + 1
                            if ceil_mode and (out - 1) * s >= n + p:
                                out -= 1
                            bad = _first_window_in_padding(n, out, k, s, p, d)
                            x = np.ones((1, 1, 1, n))
                            if bad < 0:
                                assert nk.max_pool2d(x, **kw)[0].shape == (1, 1, 1, out)
                            else:
                                with pytest.raises(ValueError, match=rf"window of output column {bad} covers only"):
                                    nk.max_pool2d(x, **kw)
                            checked += bad >= 0
    assert checked > 10  # the sweep does reach the error


@pytest.mark.parametrize("fn", [
    lambda x: nk.max_pool2d(x, 2)[0], lambda x: nk.avg_pool2d(x, 2), lambda x: nk.adaptive_avg_pool2d(x, 3),
    lambda x: nk.adaptive_max_pool2d(x, 3)[0], nk.global_avg_pool2d, lambda x: nk.global_max_pool2d(x)[0]])
def test_empty_batch_with_huge_extent_returns_empty(fn):
    """N*C == 0 with W = 2**33: nothing to compute, so no work proportional to W (fuzz finding:
    max_pool2d/avg_pool2d scanned every window, ~20 s). A hang here would show as a test timeout."""
    x = np.empty((0, 1, 3, 2**33 + 3), np.float32)
    y = fn(x)
    assert y.shape[0] == 0 and y.size == 0


@pytest.mark.parametrize("fn", [
    lambda x: nk.max_pool2d(x, 2), lambda x: nk.avg_pool2d(x, 2), lambda x: nk.adaptive_avg_pool2d(x, 2),
    lambda x: nk.adaptive_max_pool2d(x, 2)])
def test_input_errors(fn):
    with pytest.raises(TypeError, match=r"x has dtype int32, expected float32 or float64"):
        fn(X.astype(np.int32))
    with pytest.raises(TypeError, match=r"x has dtype float16, expected float32 or float64"):
        fn(X.astype(np.float16))
    with pytest.raises(ValueError, match=r"x has 2 dims, expected 4 \(N, C, H, W\) or 3 \(C, H, W\)"):
        fn(X[0, 0])
    with pytest.raises(ValueError, match=r"x has 5 dims, expected 4 \(N, C, H, W\) or 3 \(C, H, W\)"):
        fn(X[None])
    with pytest.raises(TypeError, match=r"x must be a numpy.ndarray, got list"):
        fn([[[[1.0]]]])
    with pytest.raises(ValueError, match=r"has an empty spatial size \(H, W\) = \(0, 4\); pooling needs H, W >= 1"):
        fn(np.ones((1, 2, 0, 4), np.float32))


def test_out_buffer_errors():
    with pytest.raises(TypeError, match=r"max_pool2d: out has dtype float64, expected float32"):
        nk.max_pool2d(X, 2, out=np.empty((1, 2, 2, 2)))
    with pytest.raises(ValueError, match=r"max_pool2d: out has shape \(1, 2, 3, 2\), expected \(1, 2, 2, 2\)"):
        nk.max_pool2d(X, 2, out=np.empty((1, 2, 3, 2), np.float32))
    with pytest.raises(ValueError, match=r"max_pool2d: out must be C-contiguous"):
        nk.max_pool2d(X, 2, out=np.empty((1, 2, 2, 4), np.float32)[..., ::2])
    ro = np.empty((1, 2, 2, 2), np.float32)
    ro.setflags(write=False)
    with pytest.raises(ValueError, match=r"max_pool2d: out is read-only"):
        nk.max_pool2d(X, 2, out=ro)
    x = X.copy()
    with pytest.raises(ValueError, match=r"max_pool2d: out shares memory with x"):
        nk.max_pool2d(x, 2, out=x.reshape(-1)[:8].reshape(1, 2, 2, 2))
    with pytest.raises(TypeError, match=r"max_pool2d: indices_out has dtype int32, expected native int64"):
        nk.max_pool2d(X, 2, indices_out=np.empty((1, 2, 2, 2), np.int32))
    with pytest.raises(TypeError, match=r"indices_out has dtype >i8, expected native int64"):
        nk.max_pool2d(X, 2, indices_out=np.empty((1, 2, 2, 2), ">i8"))
    ro = np.empty((1, 2, 2, 2), np.int64)
    ro.setflags(write=False)
    with pytest.raises(ValueError, match=r"max_pool2d: indices_out is read-only"):
        nk.max_pool2d(X, 2, indices_out=ro)
    with pytest.raises(ValueError, match=r"max_pool2d: indices_out has shape \(2, 2, 2\), expected \(1, 2, 2, 2\)"):
        nk.max_pool2d(X, 2, indices_out=np.empty((2, 2, 2), np.int64))
    buf = np.empty(8, np.int64)
    with pytest.raises(ValueError, match=r"max_pool2d: indices_out shares memory with out"):
        nk.max_pool2d(X, 2, out=buf.view(np.float32)[:8].reshape(1, 2, 2, 2), indices_out=buf.reshape(1, 2, 2, 2))
    with pytest.raises(ValueError, match=r"avg_pool2d: out is read-only"):
        y = np.empty((1, 2, 2, 2), np.float32)
        y.setflags(write=False)
        nk.avg_pool2d(X, 2, out=y)
    with pytest.raises(ValueError, match=r"adaptive_avg_pool2d: out has shape \(1, 2, 2, 2\), expected \(1, 2, 3, 3\)"):
        nk.adaptive_avg_pool2d(X, 3, out=np.empty((1, 2, 2, 2), np.float32))
    y, idx = nk.max_pool2d(X, 2)
    with pytest.raises(ValueError, match=r"max_pool2d_backward: out must be C-contiguous"):
        nk.max_pool2d_backward(y, idx, X.shape, out=np.empty((1, 2, 4, 8), np.float32)[..., ::2])
    with pytest.raises(TypeError, match=r"max_pool2d_backward: out has dtype float64, expected float32"):
        nk.max_pool2d_backward(y, idx, X.shape, out=np.empty(X.shape))
    with pytest.raises(ValueError, match=r"avg_pool2d_backward: out has shape"):
        nk.avg_pool2d_backward(y, X.shape, 2, out=np.empty((1, 2, 4, 3), np.float32))


def test_backward_index_errors():
    y, idx = nk.max_pool2d(X, 2)
    dy = np.ones_like(y)
    with pytest.raises(TypeError, match=r"max_pool2d_backward: indices has dtype float32, expected an integer dtype"):
        nk.max_pool2d_backward(dy, idx.astype(np.float32), X.shape)
    with pytest.raises(ValueError, match=r"max_pool2d_backward: indices has shape \(1, 2, 2, 1\), expected "
                                         r"\(1, 2, 2, 2\) \(the shape of dy\)"):
        nk.max_pool2d_backward(dy, idx[..., :1], X.shape)
    for pos, val in [((0, 1, 1, 0), 16), ((0, 0, 0, 1), -1), ((0, 1, 0, 0), 2**62)]:
        bad = idx.copy()
        bad[pos] = val
        out = np.full(X.shape, 5.0, np.float32)
        guard = np.full(64, 7.0, np.float32)  # neighbours in memory must stay untouched
        with pytest.raises(ValueError, match=rf"max_pool2d_backward: indices\[{', '.join(map(str, pos))}\] = {val} "
                                             r"is out of range for an input plane of H\*W = 16 elements "
                                             r"\(expected 0 <= index < 16\)"):
            nk.max_pool2d_backward(dy, bad, X.shape, out=out)
        assert (guard == 7.0).all()
    # the lowest bad position is reported, whatever the thread split
    big = np.zeros((64, 1, 32, 32), np.float32)
    yb, ib = nk.max_pool2d(big, 2)
    ib[40, 0, 3, 3] = 5000
    ib[50, 0, 0, 0] = -2
    with pytest.raises(ValueError, match=r"indices\[40, 0, 3, 3\] = 5000"):
        nk.max_pool2d_backward(yb, ib, big.shape)
    with pytest.raises(ValueError, match=r"adaptive_max_pool2d_backward: indices\[0, 0, 0, 0\] = 99 is out of range"):
        nk.adaptive_max_pool2d_backward(dy, np.full_like(idx, 99), X.shape)


def test_x_shape_errors():
    y, idx = nk.max_pool2d(X, 2)
    with pytest.raises(ValueError, match=r"max_pool2d_backward: dy has shape \(1, 2, 2, 2\), expected "
                                         r"\(1, 3, OH, OW\) to match x_shape \(1, 3, 4, 4\)"):
        nk.max_pool2d_backward(y, idx, (1, 3, 4, 4))
    with pytest.raises(ValueError, match=r"max_pool2d_backward: dy has 4 dims but x_shape has 3 entries"):
        nk.max_pool2d_backward(y, idx, (2, 4, 4))
    with pytest.raises(ValueError, match=r"max_pool2d_backward: x_shape has 2 entries, expected 4"):
        nk.max_pool2d_backward(y, idx, (4, 4))
    with pytest.raises(TypeError, match=r"max_pool2d_backward: x_shape must be a tuple of 4 ints"):
        nk.max_pool2d_backward(y, idx, 5)
    with pytest.raises(TypeError, match=r"max_pool2d_backward: x_shape must contain ints"):
        nk.max_pool2d_backward(y, idx, (1, 2, 4.0, 4))
    with pytest.raises(ValueError, match=r"max_pool2d_backward: x_shape must not contain negative sizes"):
        nk.max_pool2d_backward(y, idx, (1, 2, -4, 4))
    with pytest.raises(ValueError, match=r"max_pool2d_backward: x_shape has an empty spatial size"):
        nk.max_pool2d_backward(y, idx, (1, 2, 0, 4))
    with pytest.raises(ValueError, match=r"avg_pool2d_backward: dy has shape \(1, 2, 2, 2\), expected \(1, 2, 1, 1\) "
                                         r"\(the avg_pool2d output shape"):
        nk.avg_pool2d_backward(y, X.shape, 3)
    with pytest.raises(ValueError, match=r"adaptive_avg_pool2d_backward: dy has shape \(1, 3, 2, 2\), expected "
                                         r"\(1, 2, OH, OW\)"):
        nk.adaptive_avg_pool2d_backward(np.ones((1, 3, 2, 2), np.float32), X.shape)
    with pytest.raises(TypeError, match=r"max_pool2d_backward: dy has dtype int64, expected float32 or float64"):
        nk.max_pool2d_backward(idx, idx, X.shape)


def test_avg_and_adaptive_argument_errors():
    with pytest.raises(ValueError, match=r"avg_pool2d: divisor_override must not be zero"):
        nk.avg_pool2d(X, 2, divisor_override=0)
    with pytest.raises(TypeError, match=r"avg_pool2d: divisor_override must be an int or None, got float"):
        nk.avg_pool2d(X, 2, divisor_override=1.5)
    with pytest.raises(ValueError, match=r"avg_pool2d: padding \(2, 2\) must be at most half of kernel_size"):
        nk.avg_pool2d(X, 3, padding=2)
    with pytest.raises(ValueError, match=r"avg_pool2d_backward: kernel_size \(5, 5\) does not fit"):
        nk.avg_pool2d_backward(np.ones((1, 2, 1, 1), np.float32), X.shape, 5)
    with pytest.raises(ValueError, match=r"adaptive_avg_pool2d: output_size must be >= 0, got \(-1, -1\)"):
        nk.adaptive_avg_pool2d(X, -1)
    with pytest.raises(ValueError, match=r"adaptive_max_pool2d: output_size must be an int or a pair of ints \(or "
                                         r"None\), got a sequence of length 3"):
        nk.adaptive_max_pool2d(X, (2, 2, 2))
    with pytest.raises(TypeError, match=r"adaptive_avg_pool2d: output_size must be an int or a pair of ints"):
        nk.adaptive_avg_pool2d(X, 2.5)
    with pytest.raises(ValueError, match=r"adaptive_avg_pool2d: output_size \(1099511627776, 1099511627776\) is too "
                                         r"large"):
        nk.adaptive_avg_pool2d(X, 2**40)
    with pytest.raises(ValueError, match=r"adaptive_max_pool2d: the output \(1, 1, 2147483647, 2147483647\) would "
                                         r"be too large"):
        nk.adaptive_max_pool2d(np.ones((1, 1, 1, 1), np.float32), 2**31 - 1)


@pytest.mark.parametrize("batched", [True, False])
def test_global_backward_needs_a_1x1_dy(batched):
    """global_*_pool2d_backward: dy must be the global output's shape (fuzz finding: any spatial size
    was accepted and treated as an adaptive-pool gradient)."""
    x_shape = (2, 3, 4, 5) if batched else (3, 4, 5)
    lead = x_shape[:-2]
    dims = r"\(N, C, 1, 1\)" if batched else r"\(C, 1, 1\)"
    lead_s = ", ".join(map(str, lead))
    for bad in ((2, 2), (1, 2), (4, 5)):
        dy = np.ones(lead + bad, np.float32)
        with pytest.raises(ValueError, match=rf"global_avg_pool2d_backward: dy has shape \({lead_s}, {bad[0]}, {bad[1]}\), "
                                             rf"expected \({lead_s}, 1, 1\) {dims}"):
            nk.global_avg_pool2d_backward(dy, x_shape)
        with pytest.raises(ValueError, match=rf"global_max_pool2d_backward: dy has shape \({lead_s}, {bad[0]}, "):
            nk.global_max_pool2d_backward(dy, np.zeros(dy.shape, np.int64), x_shape)
    dy = np.ones(lead + (1, 1), np.float32)
    np.testing.assert_allclose(nk.global_avg_pool2d_backward(dy, x_shape), np.full(x_shape, 1 / 20, np.float32))
    assert nk.global_max_pool2d_backward(dy, np.zeros(dy.shape, np.int64), x_shape).shape == x_shape
