"""NaN/Inf gradients in the optimizers and in clipping behave as torch's (hardening, issue 6).

Adds to test_optim_torch.py::test_nan_gradients_like_torch (one configuration per optimizer, NaN
and +Inf at step 10, float64, parameters only) and test_clip.py (2-norm clipping of NaN/Inf
gradients, error_if_nonfinite, clip_grad_value with NaN):
- every configuration of every optimizer, float32 and float64, NaN, +Inf and -Inf gradients at
  the FIRST step (fresh state: SGD's momentum buffer is initialised from the gradient, Adam's
  bias corrections are largest) and at a later step, parameters AND every state buffer compared
  with torch.optim (special values at the same places, finite values to torch's tolerance);
- the optimizer classes (nk.optim.*) on Parameters with bad gradients, against torch.optim;
- clip_grad_norm_ with every norm type (1, 2, 3.5, inf) and NaN / +Inf / -Inf gradients, both
  dtypes, with and without error_if_nonfinite, and clip_grad_value_ with +-Inf, against
  torch.nn.utils; then an optimizer step on the clipped gradients.
Nothing may crash, and no element without a special value in its history may become non-finite.
"""

import math

import numpy as np
import pytest

import nnkern as nk
from conftest import assert_bitwise_equal, requires_torch, torch
from test_optim_kernels import ALL_CONFIGS, CONFIGS, call_step, config_id, make_state

pytestmark = requires_torch

TORCH_CLASS = {"adam": "Adam", "adamw": "AdamW", "sgd": "SGD", "adagrad": "Adagrad", "rmsprop": "RMSprop",
               "adadelta": "Adadelta"}
STATE_KEYS = {"m": "exp_avg", "v": "exp_avg_sq", "v_max": "max_exp_avg_sq", "momentum_buffer": "momentum_buffer",
              "state_sum": "sum", "square_avg": "square_avg", "grad_avg": "grad_avg", "acc_delta": "acc_delta"}
TOL = {np.float32: dict(rtol=1e-5, atol=1e-6), np.float64: dict(rtol=1e-12, atol=1e-13)}
SHAPES = [(5, 3), (40,)]
STEPS = 4
BAD = {"nan": np.nan, "inf": np.inf, "-inf": -np.inf}


def torch_kwargs(name, cfg):
    kw = dict(cfg)
    if "decoupled" in kw:
        kw["decoupled_weight_decay"] = kw.pop("decoupled")
    if name == "sgd":
        kw.setdefault("lr", 1e-3)
    return kw


def assert_like_torch(ours, theirs, dtype, what):
    theirs = np.asarray(theirs)
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(theirs), err_msg=f"{what}: NaN positions")
    np.testing.assert_array_equal(np.isposinf(ours), np.isposinf(theirs), err_msg=f"{what}: +Inf positions")
    np.testing.assert_array_equal(np.isneginf(ours), np.isneginf(theirs), err_msg=f"{what}: -Inf positions")
    ok = np.isfinite(theirs)
    np.testing.assert_allclose(ours[ok], theirs[ok], err_msg=what, **TOL[dtype])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bad_step", [1, 3])
@pytest.mark.parametrize("case", ALL_CONFIGS, ids=config_id)
def test_optimizer_steps_with_bad_gradients_like_torch(case, bad_step, dtype):
    name, i = case
    cfg = CONFIGS[name][i]
    rng = np.random.default_rng(100 + i)
    tdtype = torch.float32 if dtype == np.float32 else torch.float64
    params = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
    tparams = [torch.tensor(p.copy(), dtype=tdtype, requires_grad=True) for p in params]
    topt = getattr(torch.optim, TORCH_CLASS[name])(tparams, **torch_kwargs(name, cfg), foreach=False)
    ours = [p.copy() for p in params]
    states = [make_state(name, cfg, p) for p in ours]
    poisoned = np.zeros(SHAPES[0], bool)
    with np.errstate(all="ignore"):
        for t in range(1, STEPS + 1):
            grads = [rng.standard_normal(s).astype(dtype) for s in SHAPES]
            if t == bad_step:
                for k, v in enumerate(BAD.values()):
                    grads[0].flat[3 * k] = v  # NaN, +Inf, -Inf in the first tensor only
                poisoned.flat[[0, 3, 6]] = True
            for tp, g in zip(tparams, grads):
                tp.grad = torch.tensor(g.copy())
            topt.step()
            call_step(nk, name, ours, grads, states, t, cfg, multi=True)
    for j, (tp, p) in enumerate(zip(tparams, ours)):
        assert_like_torch(p, tp.detach().numpy(), dtype, f"param {j}")
        for key, arr in states[j].items():
            assert_like_torch(arr, topt.state[tp][STATE_KEYS[key]].numpy(), dtype, f"param {j} {key}")
    # Elements whose gradients never held a special value stay finite (no cross-element spread).
    assert np.isfinite(ours[0][~poisoned]).all() and np.isfinite(ours[1]).all()


CLASS_CASES = [("SGD", dict(lr=0.1, momentum=0.9, nesterov=True)), ("Adam", dict(lr=0.01, amsgrad=True)),
               ("AdamW", dict(lr=0.01)), ("RMSprop", dict(lr=0.01, centered=True, momentum=0.5)),
               ("Adagrad", dict(lr=0.1)), ("Adadelta", dict(weight_decay=0.1))]


@pytest.mark.parametrize("cls, kw", CLASS_CASES, ids=[c for c, _ in CLASS_CASES])
def test_optimizer_classes_with_bad_gradients_like_torch(cls, kw):
    from nnkern.nn import Parameter

    rng = np.random.default_rng(5)
    data = [rng.standard_normal(s) for s in SHAPES]
    ps = [Parameter(d.copy()) for d in data]
    tps = [torch.tensor(d.copy(), requires_grad=True) for d in data]
    opt = getattr(nk.optim, cls)(ps, **kw)
    topt = getattr(torch.optim, cls)(tps, **kw, foreach=False)
    with np.errstate(all="ignore"):
        for t in range(3):
            for p, tp in zip(ps, tps):
                g = rng.standard_normal(p.data.shape)
                if t == 1:
                    g.flat[0], g.flat[1], g.flat[2] = np.nan, np.inf, -np.inf
                p.grad = g.copy()
                tp.grad = torch.tensor(g)
            opt.step()
            topt.step()
    for p, tp in zip(ps, tps):
        assert_like_torch(p.data, tp.detach().numpy(), np.float64, cls)
        assert np.isfinite(p.data.flat[3:]).all()


def _torch_pair(rng, dtype, bad, where):
    from nnkern.nn import Parameter

    grads = [rng.standard_normal(s).astype(dtype) for s in [(4, 5), (7,), (3, 2, 2)]]
    grads[where].flat[2] = bad
    ps = []
    for g in grads:
        p = Parameter(np.zeros_like(g))
        p.grad = g.copy()
        ps.append(p)
    tps = []
    for g in grads:
        tp = torch.zeros(g.shape, dtype=torch.float32 if dtype == np.float32 else torch.float64, requires_grad=True)
        tp.grad = torch.tensor(g.copy())
        tps.append(tp)
    return ps, tps


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("norm_type", [1.0, 2.0, 3.5, math.inf])
@pytest.mark.parametrize("bad", list(BAD), ids=list(BAD))
def test_clip_grad_norm_with_bad_gradients_like_torch(bad, norm_type, dtype):
    from nnkern.nn.utils import clip_grad_norm_

    ps, tps = _torch_pair(np.random.default_rng(9), dtype, BAD[bad], where=1)
    with np.errstate(all="ignore"):
        total = clip_grad_norm_(ps, 1.0, norm_type=norm_type)
    ttotal = float(torch.nn.utils.clip_grad_norm_(tps, 1.0, norm_type=norm_type))
    assert (math.isnan(total) and math.isnan(ttotal)) or total == ttotal, (total, ttotal)
    for p, tp in zip(ps, tps):
        # torch multiplies by clamp(max_norm / (total + 1e-6), max=1): a NaN total (or a NaN element
        # under the inf norm) makes every gradient NaN; an infinite total scales by 0 (inf * 0 = NaN).
        assert_like_torch(p.grad, tp.grad.numpy(), dtype, f"grad {p.grad.shape}")
    # error_if_nonfinite raises before touching the gradients, as torch does
    ps, tps = _torch_pair(np.random.default_rng(9), dtype, BAD[bad], where=1)
    before = [p.grad.copy() for p in ps]
    with pytest.raises(RuntimeError, match="non-finite"):
        clip_grad_norm_(ps, 1.0, norm_type=norm_type, error_if_nonfinite=True)
    with pytest.raises(RuntimeError, match="non-finite"):
        torch.nn.utils.clip_grad_norm_(tps, 1.0, norm_type=norm_type, error_if_nonfinite=True)
    for p, b in zip(ps, before):
        assert_bitwise_equal(p.grad, b)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_functional_clip_grad_norm_matches_layer_level(dtype):
    # nk.clip_grad_norm on plain arrays follows the same rule as nn.utils.clip_grad_norm_.
    for bad in BAD.values():
        ps, tps = _torch_pair(np.random.default_rng(3), dtype, bad, where=0)
        grads = [p.grad for p in ps]
        with np.errstate(all="ignore"):
            total = nk.clip_grad_norm(grads, 0.5)
        ttotal = float(torch.nn.utils.clip_grad_norm_(tps, 0.5))
        assert (math.isnan(total) and math.isnan(ttotal)) or total == ttotal
        for g, tp in zip(grads, tps):
            assert_like_torch(g, tp.grad.numpy(), dtype, "functional clip")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_clip_grad_value_with_infinities_like_torch(dtype):
    from nnkern.nn.utils import clip_grad_value_

    for bad in BAD.values():
        ps, tps = _torch_pair(np.random.default_rng(4), dtype, bad, where=2)
        clip_grad_value_(ps, 0.5)
        torch.nn.utils.clip_grad_value_(tps, 0.5)
        for p, tp in zip(ps, tps):
            assert_bitwise_equal(p.grad, tp.grad.numpy())


@pytest.mark.parametrize("bad", list(BAD), ids=list(BAD))
def test_clip_then_step_like_torch(bad):
    # The usual training step: clip the norm, then Adam, with one bad gradient element.
    from nnkern.nn.utils import clip_grad_norm_

    ps, tps = _torch_pair(np.random.default_rng(11), np.float64, BAD[bad], where=0)
    opt, topt = nk.optim.Adam(ps, lr=0.01), torch.optim.Adam(tps, lr=0.01, foreach=False)
    with np.errstate(all="ignore"):
        clip_grad_norm_(ps, 1.0)
        opt.step()
    torch.nn.utils.clip_grad_norm_(tps, 1.0)
    topt.step()
    for p, tp in zip(ps, tps):
        assert_like_torch(p.data, tp.detach().numpy(), np.float64, "after clip + Adam")
