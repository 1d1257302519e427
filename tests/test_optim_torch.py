"""Fused optimizer kernels against torch.optim (torch's formulas and defaults): every configuration
of every optimizer over 32 steps on several parameters, float32 and float64, parameters and state
buffers compared; torch's fused CPU kernels too; NaN gradients behave like torch's."""

import numpy as np
import pytest

import nnkern as nk
from conftest import requires_torch, torch
from test_optim_kernels import ALL_CONFIGS, CONFIGS, call_step, config_id, make_state

pytestmark = requires_torch

TORCH_CLASS = {"adam": "Adam", "adamw": "AdamW", "sgd": "SGD", "adagrad": "Adagrad", "rmsprop": "RMSprop",
               "adadelta": "Adadelta"}
# Our functional state names -> torch's state keys.
STATE_KEYS = {"m": "exp_avg", "v": "exp_avg_sq", "v_max": "max_exp_avg_sq", "momentum_buffer": "momentum_buffer",
              "state_sum": "sum", "square_avg": "square_avg", "grad_avg": "grad_avg", "acc_delta": "acc_delta"}
SHAPES = [(5, 3), (17,), (1,), (2, 3, 4), (0,)]
STEPS = 32

# torch and nnkern round differently (FMA, operation order) by an ulp or so per operation; over 32
# steps the worst case seen is ~20% of these bounds in float32 and ~1% in float64.
TOL = {np.float32: dict(rtol=1e-5, atol=1e-6), np.float64: dict(rtol=1e-12, atol=1e-13)}


def torch_kwargs(name, cfg):
    kw = dict(cfg)
    if "decoupled" in kw:  # torch.optim.Adam spells it decoupled_weight_decay
        kw["decoupled_weight_decay"] = kw.pop("decoupled")
    if name == "sgd":
        kw.setdefault("lr", 1e-3)
    return kw


def run_pair(name, cfg, dtype, rng, fused=None, nan_at=None):
    """Runs torch's optimizer and our functional kernel side by side; returns both final states."""
    tdtype = torch.float32 if dtype == np.float32 else torch.float64
    params = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
    tparams = [torch.tensor(p.copy(), dtype=tdtype, requires_grad=True) for p in params]
    opt_kw = dict(fused=True) if fused else dict(foreach=False)
    topt = getattr(torch.optim, TORCH_CLASS[name])(tparams, **torch_kwargs(name, cfg), **opt_kw)
    ours = [p.copy() for p in params]
    states = [make_state(name, cfg, p) for p in ours]
    for t in range(1, STEPS + 1):
        grads = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
        if nan_at is not None and t == nan_at:
            grads[0].flat[1] = np.nan
            grads[1].flat[2] = np.inf
        for tp, g in zip(tparams, grads):
            tp.grad = torch.tensor(g.copy())
        topt.step()
        call_step(nk, name, ours, grads, states, t, cfg, multi=True)
    return tparams, topt, ours, states


def compare(tparams, topt, ours, states, dtype, scale=1.0):
    t = {k: v * scale for k, v in TOL[dtype].items()}
    for i, (tp, p) in enumerate(zip(tparams, ours)):
        np.testing.assert_allclose(p, tp.detach().numpy(), err_msg=f"param {i}", **t)
        tstate = topt.state[tp]
        for key, arr in states[i].items():
            np.testing.assert_allclose(arr, tstate[STATE_KEYS[key]].numpy(), err_msg=f"param {i} {key}", **t)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", ALL_CONFIGS, ids=config_id)
def test_functional_matches_torch(rng, case, dtype):
    name, i = case
    cfg = CONFIGS[name][i]
    compare(*run_pair(name, cfg, dtype, rng), dtype)


@pytest.mark.parametrize("case", [("adam", 0), ("adam", 1), ("adam", 2), ("adam", 7), ("adamw", 3), ("adamw", 4),
                                  ("sgd", 4), ("sgd", 5), ("adagrad", 1), ("adagrad", 3)], ids=config_id)
def test_functional_matches_torch_fused(rng, case):
    # torch's fused CPU kernels (one pass, like ours) for the optimizers that have one.
    name, i = case
    cfg = CONFIGS[name][i]
    compare(*run_pair(name, cfg, np.float32, rng, fused=True), np.float32)


@pytest.mark.parametrize("case", [("adam", 7), ("adamw", 3), ("sgd", 5), ("adagrad", 3), ("rmsprop", 5),
                                  ("adadelta", 2)], ids=config_id)
def test_nan_gradients_like_torch(rng, case):
    # A NaN/Inf gradient at step 10 poisons the same elements (and only those) as in torch.
    name, i = case
    cfg = CONFIGS[name][i]
    with np.errstate(all="ignore"):
        tparams, topt, ours, states = run_pair(name, cfg, np.float64, rng, nan_at=10)
    for tp, p in zip(tparams, ours):
        tv = tp.detach().numpy()
        np.testing.assert_array_equal(np.isnan(p), np.isnan(tv))
        np.testing.assert_array_equal(np.isinf(p), np.isinf(tv))
        ok = np.isfinite(tv)
        np.testing.assert_allclose(p[ok], tv[ok], **TOL[np.float64])
    assert np.isnan(ours[0].flat[1])
