"""Fused optimizer step kernels (nk.*_step, nk.*_step_multi) against their NumPy twins: shapes,
dtypes, every option, multi-tensor == single-tensor bitwise, thread counts bitwise, SIMD levels,
NaN/Inf, empty arrays, hypothesis over shapes and options.

The helpers at the top (configurations, state allocation, calling conventions) are shared with
test_optim_torch.py and test_optim_errors.py.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nnkern as nk
from conftest import assert_bitwise_equal, num_threads, tol
from nnkern import reference as ref

OPTIMIZERS = ["adam", "adamw", "sgd", "adagrad", "rmsprop", "adadelta"]

# Every option on and off, alone and combined (functional argument names).
CONFIGS = {
    "adam": [dict(), dict(weight_decay=0.1), dict(amsgrad=True), dict(maximize=True), dict(betas=(0.3, 0.6)),
             dict(lr=1e-2, eps=1e-3), dict(weight_decay=0.1, decoupled=True),
             dict(weight_decay=0.05, amsgrad=True, maximize=True)],
    "adamw": [dict(), dict(weight_decay=0.0), dict(amsgrad=True), dict(maximize=True, weight_decay=0.3, lr=1e-2),
              dict(betas=(0.2, 0.9), amsgrad=True)],
    "sgd": [dict(lr=0.1), dict(lr=0.1, weight_decay=0.1), dict(lr=0.05, momentum=0.9),
            dict(lr=0.05, momentum=0.9, dampening=0.3), dict(lr=0.05, momentum=0.9, nesterov=True),
            dict(lr=0.05, momentum=0.5, weight_decay=0.1, maximize=True), dict(lr=0.1, maximize=True)],
    "adagrad": [dict(), dict(lr_decay=0.1), dict(weight_decay=0.1), dict(maximize=True, eps=1e-3),
                dict(initial_accumulator_value=0.5, lr=0.1)],
    "rmsprop": [dict(), dict(centered=True), dict(momentum=0.9), dict(weight_decay=0.1, maximize=True),
                dict(centered=True, momentum=0.5, alpha=0.3), dict(centered=True, momentum=0.9, weight_decay=0.1)],
    "adadelta": [dict(), dict(weight_decay=0.1), dict(maximize=True, rho=0.5, lr=0.5), dict(eps=1e-3)],
}

ALL_CONFIGS = [(name, i) for name in OPTIMIZERS for i in range(len(CONFIGS[name]))]
SHAPES = [(0,), (1,), (7,), (8,), (9,), (15,), (16,), (17,), (31,), (33,), (63,), (65,), (3, 5, 7), (1000,)]


def config_id(case):
    name, i = case
    return f"{name}-{i}-" + "-".join(f"{k}={v}" for k, v in CONFIGS[name][i].items())


def functional_kwargs(name, cfg):
    """The hyperparameters of a configuration as the functional kernels take them."""
    return {k: v for k, v in cfg.items() if k != "initial_accumulator_value"}


def make_state(name, cfg, p, fill_unused=np.nan):
    """Initial state buffers (torch's initial values). Buffers whose initial contents the kernel
    must ignore (SGD's momentum buffer before step 1) are filled with NaN."""
    z = np.zeros_like
    if name in ("adam", "adamw"):
        s = dict(m=z(p), v=z(p))
        if cfg.get("amsgrad"):
            s["v_max"] = z(p)
        return s
    if name == "sgd":
        return dict(momentum_buffer=np.full_like(p, fill_unused)) if cfg.get("momentum", 0) else {}
    if name == "adagrad":
        return dict(state_sum=np.full_like(p, cfg.get("initial_accumulator_value", 0.0)))
    if name == "rmsprop":
        s = dict(square_avg=z(p))
        if cfg.get("momentum", 0) > 0:
            s["momentum_buffer"] = z(p)
        if cfg.get("centered"):
            s["grad_avg"] = z(p)
        return s
    return dict(square_avg=z(p), acc_delta=z(p))


def call_step(mod, name, p, g, s, step, cfg, multi=False):
    """One step through `mod` (nnkern or nnkern.reference), single-tensor or (multi=True, lists) multi."""
    kw = functional_kwargs(name, cfg)
    f = getattr(mod, f"{name}_step_multi" if multi else f"{name}_step")

    keys = make_state(name, cfg, np.zeros(0)).keys()

    def get(key):
        if key not in keys:
            return None
        return [x[key] for x in s] if multi else s[key]

    if name in ("adam", "adamw"):
        f(p, g, get("m"), get("v"), step, v_max=get("v_max"), **kw)
    elif name == "sgd":
        f(p, g, get("momentum_buffer"), step if cfg.get("momentum", 0) else None, **kw)
    elif name == "adagrad":
        f(p, g, get("state_sum"), step, **kw)
    elif name == "rmsprop":
        f(p, g, get("square_avg"), get("momentum_buffer"), get("grad_avg"), **kw)
    else:
        f(p, g, get("square_avg"), get("acc_delta"), **kw)


def random_problem(rng, shapes, dtype, steps):
    params = [rng.standard_normal(s).astype(dtype) for s in shapes]
    grads = [[rng.standard_normal(s).astype(dtype) for s in shapes] for _ in range(steps)]
    return params, grads


def run(mod, name, cfg, params, grads, multi=False):
    """Runs len(grads) steps from copies of params; returns (params, states)."""
    ps = [p.copy() for p in params]
    ss = [make_state(name, cfg, p) for p in ps]
    for t, gs in enumerate(grads, start=1):
        if multi:
            call_step(mod, name, ps, gs, ss, t, cfg, multi=True)
        else:
            for p, g, s in zip(ps, gs, ss):
                call_step(mod, name, p, g, s, t, cfg)
    return ps, ss


def assert_runs_close(a, b, dtype, scale=1.0):
    (pa, sa), (pb, sb) = a, b
    for x, y in zip(pa, pb):
        np.testing.assert_allclose(x, y, **tol(dtype, scale))
    for s1, s2 in zip(sa, sb):
        assert s1.keys() == s2.keys()
        for k in s1:
            np.testing.assert_allclose(s1[k], s2[k], **tol(dtype, scale), err_msg=k)


def assert_runs_bitwise(a, b):
    (pa, sa), (pb, sb) = a, b
    for x, y in zip(pa, pb):
        assert_bitwise_equal(x, y)
    for s1, s2 in zip(sa, sb):
        for k in s1:
            assert_bitwise_equal(s1[k], s2[k], k)


# ---------------------------------------------------------------------------------------------
# vs the NumPy twins


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", ALL_CONFIGS, ids=config_id)
def test_matches_twin_all_configs(rng, case, dtype):
    name, i = case
    cfg = CONFIGS[name][i]
    params, grads = random_problem(rng, [(40,), (3, 7)], dtype, 5)
    # Reassociation differences (FMA, lerp form) grow a little over steps; float32 gets 10 ulp-ish.
    assert_runs_close(run(nk, name, cfg, params, grads), run(ref, name, cfg, params, grads), dtype,
                      scale=1.0 if dtype == np.float64 else 4.0)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("name", OPTIMIZERS)
def test_matches_twin_shapes(rng, name, shape, dtype):
    cfg = CONFIGS[name][-1]  # the most options at once
    params, grads = random_problem(rng, [shape], dtype, 3)
    assert_runs_close(run(nk, name, cfg, params, grads), run(ref, name, cfg, params, grads), dtype,
                      scale=1.0 if dtype == np.float64 else 4.0)


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_multi_threaded_size_matches_twin(rng, name):
    # Large enough that 2 threads really split the work.
    params, grads = random_problem(rng, [(150_001,)], np.float64, 2)
    cfg = CONFIGS[name][-1]
    with num_threads(2):
        out = run(nk, name, cfg, params, grads)
    assert_runs_close(out, run(ref, name, cfg, params, grads), np.float64)


# ---------------------------------------------------------------------------------------------
# Determinism: multi == single, thread counts, SIMD levels

MULTI_SHAPES = [(0,), (1,), (7,), (8,), (9,), (15,), (16,), (17,), (31,), (33,), (63,), (65,), (4, 25_000),
                (70_001,), (3,)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", [(n, len(CONFIGS[n]) - 1) for n in OPTIMIZERS] + [("sgd", 2), ("adam", 0)],
                         ids=config_id)
def test_multi_equals_single_bitwise(rng, case, dtype):
    name, i = case
    cfg = CONFIGS[name][i]
    params, grads = random_problem(rng, MULTI_SHAPES, dtype, 3)
    for threads in (1, 2):
        with num_threads(threads):
            single = run(nk, name, cfg, params, grads)
            multi = run(nk, name, cfg, params, grads, multi=True)
        assert_runs_bitwise(single, multi)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", OPTIMIZERS)
def test_threads_bitwise(rng, name, dtype):
    cfg = CONFIGS[name][-1]
    params, grads = random_problem(rng, [(200_003,), (65,), (1000, 70)], dtype, 2)
    results = []
    for threads in (1, 2, 3):
        with num_threads(threads):
            results.append(run(nk, name, cfg, params, grads, multi=True))
    assert_runs_bitwise(results[0], results[1])
    assert_runs_bitwise(results[0], results[2])


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_simd_levels(simd_level, rng, name):
    # Every code path against the twin, and bitwise equal to itself across thread counts.
    cfg = CONFIGS[name][-1]
    for dtype in (np.float32, np.float64):
        params, grads = random_problem(rng, [(1,), (17,), (33,), (65,), (100_000,)], dtype, 2)
        with num_threads(1):
            one = run(nk, name, cfg, params, grads, multi=True)
        with num_threads(2):
            two = run(nk, name, cfg, params, grads, multi=True)
        assert_runs_bitwise(one, two)
        assert_runs_close(one, run(ref, name, cfg, params, grads), dtype, scale=1.0 if dtype == np.float64 else 4.0)


def test_flat_arena_equals_per_view_steps(rng):
    # A flat arena holding many parameters is a single-tensor call; per-parameter views stepped
    # with the multi-tensor call give the same values.
    sizes = [7, 300, 65, 1, 40_000]
    arena = rng.standard_normal(sum(sizes)).astype(np.float32)
    grad = rng.standard_normal(arena.size).astype(np.float32)
    m, v = np.zeros_like(arena), np.zeros_like(arena)
    views = lambda a: np.split(a, np.cumsum(sizes)[:-1])  # noqa: E731
    arena2, m2, v2 = arena.copy(), m.copy(), v.copy()
    for t in (1, 2, 3):
        nk.adam_step(arena, grad, m, v, t, weight_decay=0.1)
        nk.adam_step_multi(views(arena2), views(grad), views(m2), views(v2), t, weight_decay=0.1)
    np.testing.assert_allclose(arena2, arena, rtol=1e-6, atol=1e-7)


def test_per_tensor_steps(rng):
    # Tensors at different steps in one call (params that missed some steps' gradients).
    params, grads = random_problem(rng, [(10,), (20,)], np.float64, 1)
    ps = [p.copy() for p in params]
    ms = [np.zeros_like(p) for p in ps]
    vs = [np.zeros_like(p) for p in ps]
    nk.adam_step_multi(ps, grads[0], ms, vs, [3, 7])
    for p, g, step, got in zip(params, grads[0], (3, 7), ps):
        q, m, v = p.copy(), np.zeros_like(p), np.zeros_like(p)
        ref.adam_step(q, g, m, v, step)
        np.testing.assert_allclose(got, q, **tol(np.float64))


# ---------------------------------------------------------------------------------------------
# Special values


@pytest.mark.parametrize("name", OPTIMIZERS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nan_inf_propagate_like_twin(rng, name, dtype):
    cfg = CONFIGS[name][-1]
    params, grads = random_problem(rng, [(64,)], dtype, 3)
    grads[1][0][3] = np.nan
    grads[1][0][10] = np.inf
    grads[2][0][20] = -np.inf
    params[0][30] = np.nan
    with np.errstate(all="ignore"):
        ours = run(nk, name, cfg, params, grads)
        theirs = run(ref, name, cfg, params, grads)
    p_ours, p_ref = ours[0][0], theirs[0][0]
    np.testing.assert_array_equal(np.isnan(p_ours), np.isnan(p_ref))
    np.testing.assert_array_equal(np.isinf(p_ours), np.isinf(p_ref))
    finite = np.isfinite(p_ref)
    assert finite.sum() >= 40  # elements without special values stay finite and correct
    np.testing.assert_allclose(p_ours[finite], p_ref[finite], **tol(dtype, 4.0))


@pytest.mark.parametrize("mod", [nk, ref], ids=["nnkern", "twin"])
def test_lerp_with_infinite_gradient_follows_torch(mod):
    """m = torch.lerp(m, g, 1 - beta1): torch evaluates a + w (b - a) for w < 0.5 (m -> inf for
    g = inf) and b - (b - a)(1 - w) otherwise (inf - inf = NaN); torch 2.13 gives [inf] and [nan]
    for m = 0.5, g = inf, beta1 = 0.9 / 0.3. The twin used one formula and gave NaN for both
    (fuzz finding). Same for rmsprop's centered grad_avg = lerp(grad_avg, g, 1 - alpha)."""
    for beta1, want in ((0.9, np.inf), (0.3, np.nan)):
        p, g, m, v = np.array([1.0]), np.array([np.inf]), np.array([0.5]), np.array([0.25])
        mod.adam_step(p, g, m, v, 1, betas=(beta1, 0.999))
        np.testing.assert_array_equal(m, [want])
    for alpha, want in ((0.9, -np.inf), (0.3, np.nan)):
        p, g, sq, ga = np.array([1.0]), np.array([-np.inf]), np.array([0.5]), np.array([0.25])
        mod.rmsprop_step(p, g, sq, None, ga, alpha=alpha, centered=True)
        np.testing.assert_array_equal(ga, [want])


def test_sgd_first_step_ignores_buffer_contents(rng):
    # The momentum buffer of step 1 may hold anything (NaN-prefilled): it is set, never read.
    p = rng.standard_normal(100)
    g = rng.standard_normal(100)
    buf = np.full_like(p, np.nan)
    q = p.copy()
    nk.sgd_step(p, g, buf, 1, lr=0.1, momentum=0.9, dampening=0.5, nesterov=False)
    np.testing.assert_array_equal(buf, g)
    np.testing.assert_allclose(p, q - 0.1 * g, **tol(np.float64))
    # step 2 reads it
    nk.sgd_step(p, g, buf, 2, lr=0.1, momentum=0.9, dampening=0.5)
    np.testing.assert_allclose(buf, 0.9 * g + 0.5 * g, **tol(np.float64))


def test_amsgrad_max_propagates_nan():
    # torch.maximum semantics: a NaN in v or v_max stays in v_max.
    p = np.zeros(4)
    g = np.array([1.0, np.nan, 1.0, 1.0])
    m, v, vmax = np.zeros(4), np.zeros(4), np.array([0.0, 0.0, np.nan, 0.0])
    nk.adam_step(p, g, m, v, 1, amsgrad=True, v_max=vmax)
    assert np.isnan(vmax[1]) and np.isnan(vmax[2]) and np.isfinite(vmax[[0, 3]]).all()
    assert np.isnan(p[1]) and np.isnan(p[2])


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_empty_and_zero_tensors(name):
    cfg = CONFIGS[name][-1]
    # Empty arrays, and an empty list for the multi variant, are no-ops.
    p = np.zeros((0, 3), np.float32)
    s = make_state(name, cfg, p)
    call_step(nk, name, p, p.copy(), s, 1, cfg)
    call_step(nk, name, [], [], [], 1, cfg, multi=True)


@pytest.mark.parametrize("case", ALL_CONFIGS, ids=config_id)
def test_zero_d_parameters_match_twin(rng, case):
    """0-d parameters (scalars) in every configuration; the twin used to fail on them with
    weight_decay or maximize (numpy returns a scalar where an out= array was needed: fuzz finding)."""
    name, i = case
    cfg = CONFIGS[name][i]
    params = [np.array(rng.standard_normal())]
    grads = [[np.array(rng.standard_normal())] for _ in range(3)]
    assert_runs_close(run(nk, name, cfg, params, grads), run(ref, name, cfg, params, grads), np.float64)
    assert_runs_close(run(nk, name, cfg, params, grads, multi=True), run(ref, name, cfg, params, grads, multi=True),
                      np.float64)


def test_decoupled_weight_decay_without_grad_signal():
    # AdamW with zero gradients only decays: p * (1 - lr * wd) exactly, up to the zero update.
    p = np.array([1.0, -2.0, 3.0])
    nk.adamw_step(p, np.zeros(3), np.zeros(3), np.zeros(3), 1, lr=0.1, weight_decay=0.5)
    np.testing.assert_array_equal(p, np.array([1.0, -2.0, 3.0]) * (1 - 0.1 * 0.5))


def test_strided_gradient_is_accepted(rng):
    # g is only read: a strided g is copied once and gives the same result.
    p = rng.standard_normal(50)
    big = rng.standard_normal(100)
    q = p.copy()
    m1, v1, m2, v2 = (np.zeros(50) for _ in range(4))
    nk.adam_step(p, big[::2], m1, v1, 1)
    nk.adam_step(q, big[::2].copy(), m2, v2, 1)
    assert_bitwise_equal(p, q)


# ---------------------------------------------------------------------------------------------
# hypothesis: random shapes, options, steps and thread counts


@settings(max_examples=60, deadline=None)
@given(
    name=st.sampled_from(OPTIMIZERS),
    cfg_index=st.integers(0, 7),
    sizes=st.lists(st.integers(0, 300), min_size=1, max_size=5),
    dtype=st.sampled_from([np.float32, np.float64]),
    threads=st.integers(1, 3),
    seed=st.integers(0, 2**31 - 1),
)
def test_hypothesis_vs_twin(name, cfg_index, sizes, dtype, threads, seed):
    cfg = CONFIGS[name][cfg_index % len(CONFIGS[name])]
    rng = np.random.default_rng(seed)
    params, grads = random_problem(rng, [(n,) for n in sizes], dtype, 2)
    with num_threads(threads):
        ours = run(nk, name, cfg, params, grads, multi=True)
    assert_runs_close(ours, run(ref, name, cfg, params, grads), dtype, scale=1.0 if dtype == np.float64 else 4.0)


def test_public_names_and_twin_signatures():
    import inspect

    for name in nk.ops.optim.__all__:
        ours = getattr(nk, name)
        twin = getattr(ref, name)
        params = [p for p in inspect.signature(twin).parameters.values() if p.name != "scratch"]
        assert list(inspect.signature(ours).parameters.values()) == params, name
