"""Bad inputs to the optimizer step kernels raise clear errors (and change nothing): every in-place
buffer with a wrong dtype, strided, read-only, wrong shape or overlapping another argument; bad
gradients; bad hyperparameters and steps; malformed *_multi lists."""

import numpy as np
import pytest

import nnkern as nk

N = 12

# For each optimizer: the in-place buffers of a call that uses all of them, and the call.
CALLS = {
    "adam": (["p", "m", "v", "v_max"],
             lambda a: nk.adam_step(a["p"], a["g"], a["m"], a["v"], 3, amsgrad=True, v_max=a["v_max"])),
    "adamw": (["p", "m", "v", "v_max"],
              lambda a: nk.adamw_step(a["p"], a["g"], a["m"], a["v"], 3, amsgrad=True, v_max=a["v_max"])),
    "sgd": (["p", "momentum_buffer"],
            lambda a: nk.sgd_step(a["p"], a["g"], a["momentum_buffer"], 2, lr=0.1, momentum=0.9)),
    "adagrad": (["p", "state_sum"], lambda a: nk.adagrad_step(a["p"], a["g"], a["state_sum"], 1)),
    "rmsprop": (["p", "square_avg", "momentum_buffer", "grad_avg"],
                lambda a: nk.rmsprop_step(a["p"], a["g"], a["square_avg"], a["momentum_buffer"], a["grad_avg"],
                                          momentum=0.9, centered=True)),
    "adadelta": (["p", "square_avg", "acc_delta"],
                 lambda a: nk.adadelta_step(a["p"], a["g"], a["square_avg"], a["acc_delta"])),
}
FN = {name: f"{name}_step" for name in CALLS}
CASES = [(name, buf) for name, (bufs, _) in CALLS.items() for buf in bufs]


def good_args(name, dtype=np.float64):
    bufs, _ = CALLS[name]
    rng = np.random.default_rng(0)
    args = {b: np.abs(rng.standard_normal(N)).astype(dtype) for b in bufs}
    args["g"] = rng.standard_normal(N).astype(dtype)
    return args


def expect_error(name, args, exc, match):
    _, call = CALLS[name]
    before = {k: np.array(v, copy=True) for k, v in args.items()}
    with pytest.raises(exc, match=match):
        call(args)
    for k, v in args.items():  # validation happens before anything is written
        np.testing.assert_array_equal(np.asarray(v), before[k], err_msg=k)


def test_good_args_work():
    for name in CALLS:
        _, call = CALLS[name]
        call(good_args(name))


@pytest.mark.parametrize("name,buf", CASES)
def test_wrong_dtype(name, buf):
    args = good_args(name)
    args[buf] = args[buf].astype(np.float32)
    if buf == "p":  # p fixes the dtype: the others are then wrong
        expect_error(name, args, TypeError, rf"{FN[name]}: \w+ has dtype float64, expected float32 \(the dtype of p\)")
    else:
        expect_error(name, args, TypeError,
                     rf"{FN[name]}: {buf} has dtype float32, expected float64 \(the dtype of p\); in-place buffers "
                     "are never converted")


@pytest.mark.parametrize("name,buf", CASES)
def test_strided(name, buf):
    args = good_args(name)
    args[buf] = np.repeat(args[buf], 2)[::2]
    expect_error(name, args, ValueError, rf"{FN[name]}: {buf} must be C-contiguous \(it has strides \(16,\)\)")


@pytest.mark.parametrize("name,buf", CASES)
def test_read_only(name, buf):
    args = good_args(name)
    args[buf].flags.writeable = False
    expect_error(name, args, ValueError, rf"{FN[name]}: {buf} is read-only")


@pytest.mark.parametrize("name,buf", [c for c in CASES if c[1] != "p"])
def test_wrong_shape(name, buf):
    args = good_args(name)
    args[buf] = np.zeros(N + 1)
    expect_error(name, args, ValueError,
                 rf"{FN[name]}: {buf} has shape \({N + 1},\), expected \({N},\) \(the shape of p\)")


@pytest.mark.parametrize("name,buf", [c for c in CASES if c[1] != "p"])
def test_overlaps_param(name, buf):
    args = good_args(name)
    args[buf] = args["p"]
    expect_error(name, args, ValueError, rf"{FN[name]}: p shares memory with {buf} \(in-place buffers must not")


@pytest.mark.parametrize("name,buf", CASES)
def test_overlaps_gradient(name, buf):
    args = good_args(name)
    base = np.zeros(N + 4)
    args[buf] = base[4:]
    args["g"] = base[:N]  # partially overlapping, read-only use
    expect_error(name, args, ValueError, rf"{FN[name]}: {buf} shares memory with g")


@pytest.mark.parametrize("name", CALLS)
def test_non_native_byte_order(name):
    args = good_args(name)
    buf = CALLS[name][0][1]
    args[buf] = args[buf].astype(">f8")
    expect_error(name, args, TypeError,
                 rf"{buf} has a non-native dtype >f8; in-place buffers must be native float64 "
                 r"\(they are never copied\)")
    args = good_args(name)
    args["p"] = args["p"].astype(">f8")  # p fixes the dtype (float64) and is in-place: same rule
    expect_error(name, args, TypeError, r"p has a non-native dtype >f8; in-place buffers must be native float64")
    # a byte-swapped gradient is a read-only input: converted (arrays.h), same result as native
    args, swapped = good_args(name), good_args(name)
    swapped["g"] = swapped["g"].astype(">f8")
    _, call = CALLS[name]
    call(args)
    call(swapped)
    for k in args:
        np.testing.assert_array_equal(np.asarray(swapped[k], np.float64), args[k], err_msg=k)


@pytest.mark.parametrize("name", CALLS)
def test_bad_gradient(name):
    args = good_args(name)
    args["g"] = np.zeros(N, np.float32)
    expect_error(name, args, TypeError, rf"{FN[name]}: g has dtype float32, expected float64 \(the dtype of p\)")
    args["g"] = np.zeros((N, 1))
    expect_error(name, args, ValueError, rf"{FN[name]}: g has shape \({N}, 1\), expected \({N},\)")
    args["g"] = [0.0] * N
    expect_error(name, args, TypeError, rf"{FN[name]}: g must be a numpy.ndarray, got list")


def test_integer_param():
    with pytest.raises(TypeError, match="adam_step: p has dtype int64, expected float32 or float64"):
        nk.adam_step(np.zeros(3, np.int64), np.zeros(3), np.zeros(3), np.zeros(3), 1)


# ---------------------------------------------------------------------------------------------
# Hyperparameters and steps

z = np.zeros


def adam(**kw):
    step = kw.pop("step", 1)
    nk.adam_step(z(3), z(3), z(3), z(3), step, **kw)


BAD_HYPER = [
    (adam, dict(lr=-1.0), ValueError, r"adam_step: lr must be a finite number >= 0, got -1.0"),
    (adam, dict(lr=float("nan")), ValueError, r"adam_step: lr must be a finite number >= 0, got nan"),
    (adam, dict(lr=float("inf")), ValueError, r"adam_step: lr must be a finite number >= 0, got inf"),
    (adam, dict(betas=(1.0, 0.999)), ValueError, r"adam_step: betas\[0\] must be in \[0, 1\), got 1.0"),
    (adam, dict(betas=(0.9, -0.1)), ValueError, r"adam_step: betas\[1\] must be in \[0, 1\), got -0.1"),
    (adam, dict(betas=0.9), TypeError, r"adam_step: betas must be a pair \(beta1, beta2\), got 0.9"),
    (adam, dict(eps=-1e-8), ValueError, r"adam_step: eps must be a finite number >= 0, got -1e-08"),
    (adam, dict(weight_decay=-0.1), ValueError, r"adam_step: weight_decay must be a finite number >= 0, got -0.1"),
    (adam, dict(step=0), ValueError, r"adam_step: step must be an integer >= 1 \(the 1-based number of this step\), "
                                     r"got 0"),
    (adam, dict(step=-3), ValueError, r"adam_step: step must be an integer >= 1"),
    (adam, dict(step=1.0), TypeError, r"adam_step: step must be an integer >= 1 .*, got 1.0"),
    (adam, dict(step=True), TypeError, r"adam_step: step must be an integer >= 1 .*, got True"),
    (adam, dict(step=2**70), ValueError, r"adam_step: step is too large"),
    (adam, dict(amsgrad=True), ValueError, r"adam_step: amsgrad=True needs v_max"),
    (adam, dict(v_max=z(3)), ValueError, r"adam_step: v_max is given but only used with amsgrad=True"),
    (lambda **kw: nk.adamw_step(z(3), z(3), z(3), z(3), 1, **kw), dict(weight_decay=-1.0), ValueError,
     r"adamw_step: weight_decay must be a finite number >= 0, got -1.0"),
    (lambda **kw: nk.sgd_step(z(3), z(3), z(3), 1, **kw), dict(momentum=-0.5), ValueError,
     r"sgd_step: momentum must be a finite number >= 0, got -0.5"),
    (lambda **kw: nk.sgd_step(z(3), z(3), z(3), 1, **kw), dict(momentum=0.9, nesterov=True, dampening=0.1),
     ValueError, r"sgd_step: nesterov=True requires momentum > 0 and dampening == 0, got momentum=0.9 and "
                 r"dampening=0.1"),
    (lambda **kw: nk.sgd_step(z(3), z(3), **kw), dict(nesterov=True), ValueError,
     r"sgd_step: nesterov=True requires momentum > 0"),
    (lambda **kw: nk.sgd_step(z(3), z(3), **kw), dict(momentum=0.9), ValueError,
     r"sgd_step: momentum != 0 needs momentum_buffer"),
    (lambda **kw: nk.sgd_step(z(3), z(3), z(3), **kw), dict(momentum=0.9), ValueError,
     r"sgd_step: momentum != 0 needs step \(the 1-based step number; step 1 sets momentum_buffer"),
    (lambda **kw: nk.sgd_step(z(3), z(3), z(3), 1, **kw), dict(), ValueError,
     r"sgd_step: momentum_buffer is given but only used with momentum != 0"),
    (lambda **kw: nk.sgd_step(z(3), z(3), **kw), dict(dampening=float("nan")), ValueError,
     r"sgd_step: dampening must be finite, got nan"),
    (lambda **kw: nk.adagrad_step(z(3), z(3), z(3), 1, **kw), dict(lr_decay=-1.0), ValueError,
     r"adagrad_step: lr_decay must be a finite number >= 0, got -1.0"),
    (lambda **kw: nk.adagrad_step(z(3), z(3), z(3), 1, **kw), dict(eps=-1.0), ValueError,
     r"adagrad_step: eps must be a finite number >= 0, got -1.0"),
    (lambda **kw: nk.rmsprop_step(z(3), z(3), z(3), **kw), dict(alpha=-0.5), ValueError,
     r"rmsprop_step: alpha must be a finite number >= 0, got -0.5"),
    (lambda **kw: nk.rmsprop_step(z(3), z(3), z(3), **kw), dict(momentum=0.5), ValueError,
     r"rmsprop_step: momentum > 0 needs momentum_buffer"),
    (lambda **kw: nk.rmsprop_step(z(3), z(3), z(3), **kw), dict(centered=True), ValueError,
     r"rmsprop_step: centered=True needs grad_avg"),
    (lambda **kw: nk.rmsprop_step(z(3), z(3), z(3), grad_avg=z(3), **kw), dict(), ValueError,
     r"rmsprop_step: grad_avg is given but only used with centered=True"),
    (lambda **kw: nk.adadelta_step(z(3), z(3), z(3), z(3), **kw), dict(rho=1.5), ValueError,
     r"adadelta_step: rho must be in \[0, 1\], got 1.5"),
    (lambda **kw: nk.adadelta_step(z(3), z(3), z(3), z(3), **kw), dict(lr=-1.0), ValueError,
     r"adadelta_step: lr must be a finite number >= 0, got -1.0"),
]


@pytest.mark.parametrize("fn,kw,exc,match", BAD_HYPER, ids=[m[:60] for *_, m in BAD_HYPER])
def test_bad_hyperparameters(fn, kw, exc, match):
    with pytest.raises(exc, match=match):
        fn(**kw)


def test_boundary_hyperparameters_accepted():
    nk.adam_step(z(3), z(3), z(3), z(3), 1, lr=0.0, betas=(0.0, 0.0), eps=0.0)
    nk.adadelta_step(z(3), z(3), z(3), z(3), rho=1.0)
    nk.adadelta_step(z(3), z(3), z(3), z(3), rho=0.0)
    nk.adam_step(z(3), z(3), z(3), z(3), np.int64(5))  # numpy integers are integers
    nk.adam_step(z(3), z(3), z(3), z(3), 2**40)


# ---------------------------------------------------------------------------------------------
# *_multi lists


def multi_args(k=3, dtype=np.float64):
    return [[np.zeros(4 + i, dtype) for i in range(k)] for _ in range(4)]


def test_multi_errors():
    p, g, m, v = multi_args()
    with pytest.raises(TypeError, match=r"adam_step_multi: p must be a list or tuple of numpy arrays, got ndarray"):
        nk.adam_step_multi(p[0], g[0], m[0], v[0], 1)
    with pytest.raises(ValueError, match=r"adam_step_multi: m has 2 arrays, expected 3 \(one per array of p\)"):
        nk.adam_step_multi(p, g, m[:2], v, 1)
    with pytest.raises(ValueError, match=r"adam_step_multi: step has 2 entries, expected 3"):
        nk.adam_step_multi(p, g, m, v, [1, 2])
    with pytest.raises(ValueError, match=r"adam_step_multi: step\[1\] must be an integer >= 1"):
        nk.adam_step_multi(p, g, m, v, [1, 0, 1])
    m[2] = m[2].astype(np.float32)
    with pytest.raises(TypeError, match=r"adam_step_multi: m\[2\] has dtype float32, expected float64 "
                                        r"\(the dtype of p\[0\]\)"):
        nk.adam_step_multi(p, g, m, v, 1)
    p, g, m, v = multi_args()
    v[1] = np.zeros(7)
    with pytest.raises(ValueError, match=r"adam_step_multi: v\[1\] has shape \(7,\), expected \(5,\) "
                                         r"\(the shape of p\[1\]\)"):
        nk.adam_step_multi(p, g, m, v, 1)
    with pytest.raises(TypeError, match=r"sgd_step_multi: momentum_buffer must be a list or tuple"):
        nk.sgd_step_multi(p, g, 3, 1, momentum=0.9)


def test_multi_overlap_between_tensors():
    # Two parameters that share memory would be updated twice: refused, whichever lists they are in.
    arena = np.zeros(20)
    p = [arena[:12], arena[8:]]
    g = [np.zeros(12), np.zeros(12)]
    m = [np.zeros(12), np.zeros(12)]
    v = [np.zeros(12), np.zeros(12)]
    with pytest.raises(ValueError, match=r"adam_step_multi: p\[0\] shares memory with p\[1\]"):
        nk.adam_step_multi(p, g, m, v, 1)
    p = [np.zeros(12), np.zeros(12)]
    v = [m[1], np.zeros(12)]
    with pytest.raises(ValueError, match=r"adam_step_multi: v\[0\] shares memory with m\[1\]"):
        nk.adam_step_multi(p, g, m, v, 1)
    # Gradients may share memory with each other (they are only read)
    shared = np.ones(12)
    nk.adam_step_multi([np.zeros(12), np.zeros(12)], [shared, shared], [np.zeros(12)] * 1 + [np.zeros(12)],
                       [np.zeros(12), np.zeros(12)], 1)


def test_multi_disjoint_views_of_one_arena_are_fine():
    arena = np.zeros(30)
    views = [arena[:10], arena[10:25], arena[25:]]
    nk.sgd_step_multi(views, [np.ones(10), np.ones(15), np.ones(5)], lr=0.5)
    np.testing.assert_array_equal(arena, -0.5)


def test_many_tensors_in_one_call():
    # Thousands of tiny tensors in one call (the overlap check sorts the buffers instead of
    # comparing all pairs, which would be 10^8 comparisons here) and the result is right.
    k = 5000
    p = [np.full(2, float(i)) for i in range(k)]
    g = [np.ones(2) for _ in range(k)]
    nk.sgd_step_multi(p, g, lr=0.5)
    np.testing.assert_array_equal(np.array(p)[:, 0], np.arange(k) - 0.5)
